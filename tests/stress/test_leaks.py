"""No leaks: process RSS stays within a bound over many tasks and many pool lifetimes."""

from __future__ import annotations

import gc
import sys

import pytest

from interpool import InterpreterPoolExecutor

import tasks
from .conftest import rss_bytes, size
from conftest import run_in_bare_interpreter

MiB = 1024 * 1024


@pytest.mark.timeout(900)
def test_rss_is_flat_over_many_tasks() -> None:
    n = size(20_000, 200_000)
    batch = 5000

    def run_batch(pool: InterpreterPoolExecutor) -> None:
        futures = [pool.submit(tasks.identity, [i, "x", {"k": (2.5, None)}]) for i in range(batch)]
        assert [f.result()[0] for f in futures] == list(range(batch))

    with InterpreterPoolExecutor(2) as pool:
        # Warm up with the same batch shape: RSS settles at the high-water mark of
        # `batch` tasks in flight (about 18 MiB here; measured flat from 40k to 160k tasks).
        for _ in range(4):
            run_batch(pool)
        gc.collect()
        before = rss_bytes()
        for _ in range(n // batch):
            run_batch(pool)
        gc.collect()
        growth = rss_bytes() - before
    print(f"RSS growth over {n} tasks: {growth / MiB:.1f} MiB")
    assert growth < 8 * MiB, f"RSS grew {growth / MiB:.1f} MiB over {n} tasks"


def cpython_growth_per_interpreter(count: int) -> float:
    """RSS growth per interpreter created, used and destroyed by CPython alone: CPython 3.13
    leaks about 1.5-2.6 MiB per ended own-GIL interpreter (measured here with bare
    _interpreters.create/destroy); 3.14 leaks nothing."""
    # The same start-up work as a worker (importing interpool's worker module), done by a
    # bare CPython interpreter: what remains above this is interpool's own.
    script = f"import sys\nsys.path[:] = {sys.path!r}\nimport interpool._worker, tasks\ntasks.square(2)\n"

    def cycle() -> None:
        run_in_bare_interpreter(script)

    for _ in range(3):
        cycle()
    gc.collect()
    before = rss_bytes()
    for _ in range(count):
        cycle()
    gc.collect()
    return (rss_bytes() - before) / count


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="the free-threaded build leaks 6-12 MiB per ended interpreter itself (measured with bare "
    "_interpreters.create/destroy), varying run to run by more than interpool's whole share",
)
def test_rss_is_flat_over_pool_lifetimes() -> None:
    cycles = size(20, 200)
    baseline = cpython_growth_per_interpreter(2 * cycles)
    for _ in range(3):
        with InterpreterPoolExecutor(2) as pool:
            pool.submit(tasks.square, 2).result()
    gc.collect()
    before = rss_bytes()
    for _ in range(cycles):
        with InterpreterPoolExecutor(2) as pool:
            assert pool.submit(tasks.square, 2).result() == 4
    gc.collect()
    growth = rss_bytes() - before
    ours = growth - baseline * 2 * cycles
    print(
        f"RSS growth over {cycles} pool lifetimes: {growth / MiB:.1f} MiB "
        f"(CPython's own: {baseline / MiB:.2f} MiB per interpreter; interpool's share: {ours / MiB:.1f} MiB)"
    )
    assert ours < 24 * MiB, f"interpool added {ours / MiB:.1f} MiB over {cycles} pools beyond CPython's own"


@pytest.mark.timeout(900)
def test_rss_is_flat_over_1000_timeouts_in_a_row() -> None:
    n = size(1000, 5000)
    with InterpreterPoolExecutor(1) as pool:

        def time_out(count: int) -> None:
            for _ in range(count):
                with pytest.raises(TimeoutError):
                    pool.schedule(tasks.busy_forever, timeout=0.002).result(timeout=60)

        time_out(100)  # warm up
        gc.collect()
        before = rss_bytes()
        time_out(n)
        gc.collect()
        growth = rss_bytes() - before
        assert pool.stats()["abandoned"] == 0, "every loop stopped at the interrupt"
    print(f"RSS growth over {n} timeouts: {growth / MiB:.1f} MiB")
    assert growth < 4 * MiB, f"RSS grew {growth / MiB:.1f} MiB over {n} timeouts"


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    sys.version_info < (3, 14) or not getattr(sys, "_is_gil_enabled", lambda: True)(),
    reason="3.13 and the free-threaded build leak megabytes per ended interpreter themselves",
)
def test_recycled_workers_with_warning_filters_release_their_heap() -> None:
    """A worker that ends with a compiled-pattern warning filter in place (pandas adds them on
    import; isolation adds one for numpy) kept its whole heap: 2.8 MiB per recycled worker on
    3.14 (interpool clears the filters at the worker's end, `_worker._forget_warning_filters`)."""
    recycles = size(30, 200)

    def growth_per_recycle(fn: object) -> float:
        with InterpreterPoolExecutor(1, max_tasks_per_worker=1) as pool:
            for _ in range(3):
                pool.submit(fn).result(timeout=60)
            gc.collect()
            before = rss_bytes()
            for _ in range(recycles):
                pool.submit(fn).result(timeout=60)
            assert pool.stats()["recycled"] >= recycles
        gc.collect()
        return (rss_bytes() - before) / recycles

    plain = growth_per_recycle(tasks.noop)
    filtered = growth_per_recycle(tasks.add_warning_filter)
    print(f"RSS per recycled worker: {plain / MiB:.2f} MiB plain, {filtered / MiB:.2f} MiB with a filter")
    assert filtered - plain < 1 * MiB, f"{filtered / MiB:.2f} MiB per recycled worker with a filter"
