"""submit() and map(): results, arguments, ordering, batching, validation, introspection."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import time
from pathlib import Path

import pytest

import interpool

import tasks
from conftest import Fifo, make_executor, stdlib_gap


def test_submit_returns_results_with_args_and_kwargs(kind: str) -> None:
    with make_executor(kind, 2) as pool:
        futures = [pool.submit(tasks.add3, i, 10, c=100) for i in range(20)]
        assert all(isinstance(f, cf.Future) for f in futures)
        assert [f.result(timeout=30) for f in futures] == [i + 110 for i in range(20)]


def test_functions_with_default_arguments(interp_kind: str) -> None:
    stdlib_gap(interp_kind, "cannot send functions with defaults (NotShareableError)")
    with make_executor(interp_kind, 1) as pool:
        assert pool.submit(tasks.add, 1, c=2).result() == 3


@pytest.mark.one_python
def test_map_keeps_order_over_several_iterables(kind: str) -> None:
    with make_executor(kind, 2) as pool:
        assert list(pool.map(tasks.add2, range(50), range(0, 100, 2))) == [3 * i for i in range(50)]
        assert list(pool.map(tasks.square, [])) == []


@pytest.mark.one_python
@pytest.mark.parametrize("chunksize", [1, 7, 100])
def test_map_with_chunks(kind: str, chunksize: int) -> None:
    with make_executor(kind, 2) as pool:
        assert list(pool.map(tasks.square, range(95), chunksize=chunksize)) == [i * i for i in range(95)]


@pytest.mark.one_python
def test_chunksize_really_batches() -> None:
    with interpool.InterpreterPoolExecutor(2) as pool:
        assert list(pool.map(tasks.square, range(100), chunksize=10)) == [i * i for i in range(100)]
        assert pool.stats()["submitted"] == 10


@pytest.mark.one_python
def test_map_raises_the_first_error_when_reached(kind: str) -> None:
    with make_executor(kind, 2) as pool:
        results = pool.map(tasks.fail_if_negative, [1, 2, -3, 4])
        assert next(results) == 1
        assert next(results) == 2
        with pytest.raises(ValueError, match="-3"):
            next(results)


def test_map_timeout(kind: str) -> None:
    with make_executor(kind, 1) as pool:
        results = pool.map(time.sleep, [2.0], timeout=0.1)
        with pytest.raises(TimeoutError):
            list(results)


@pytest.mark.one_python
def test_map_buffersize_is_lazy_on_infinite_input() -> None:
    with interpool.InterpreterPoolExecutor(2) as pool:
        results = pool.map(tasks.square, itertools.count(), buffersize=4)
        assert list(itertools.islice(results, 10)) == [i * i for i in range(10)]
        assert pool.stats()["submitted"] <= 10 + 4
        results.close()


@pytest.mark.one_python
def test_chunked_map_of_several_iterables_and_of_one() -> None:
    with interpool.InterpreterPoolExecutor(2) as pool:
        # One iterable: chunks of single arguments; several: chunks of argument tuples.
        assert list(pool.map(tasks.add2, range(23), range(100, 123), chunksize=5)) == [i + 100 + i for i in range(23)]
        assert list(pool.map(tasks.square, iter(range(23)), chunksize=5)) == [i * i for i in range(23)]
        assert list(pool.map(tasks.square, [], chunksize=5)) == []


def test_closing_a_chunked_map_early_stops_the_rest() -> None:
    notes: interpool.Queue[str] = interpool.Queue()
    with interpool.InterpreterPoolExecutor(1, interrupt_grace=tasks.PATIENCE) as pool:
        # A chunk of calls that return at once, then one of Python loops that run until
        # stopped (a C sleep would be given up after the grace period and left running).
        results = pool.map(tasks.spin_until_stopped, [notes] * 6, [0.0] * 3 + [tasks.PATIENCE] * 3, chunksize=3)
        assert next(results) == "not stopped"
        results.close()  # the chunks still queued or running are cancelled or interrupted
        assert list(results) == []
        pool.shutdown(wait=True)
        assert pool.stats()["abandoned"] == 0
    outcomes = []
    while not notes.empty():
        outcomes.append(notes.get())
    # The first chunk; then the first call of the second, stopped, if it had started.
    assert outcomes in (["not stopped"] * 3, ["not stopped"] * 3 + ["stopped"]), outcomes


@pytest.mark.one_python
@pytest.mark.parametrize(
    ("args", "exc", "msg"),
    [
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
        ({"buffersize": 0}, ValueError, "buffersize must be None or > 0"),
        ({"buffersize": 1.5}, TypeError, "buffersize must be an integer or None"),
    ],
)
def test_map_validates_arguments(args: dict[str, object], exc: type[Exception], msg: str) -> None:
    with interpool.InterpreterPoolExecutor(1) as pool, pytest.raises(exc, match=msg):
        pool.map(tasks.square, range(3), **args)  # type: ignore[arg-type]


@pytest.mark.one_python
@pytest.mark.parametrize("bad", [0, -1])
def test_max_workers_must_be_positive(kind: str, bad: int) -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        make_executor(kind, bad)


def test_default_max_workers_matches_the_stdlib() -> None:
    count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    with interpool.InterpreterPoolExecutor() as pool:
        assert pool.stats()["max_workers"] == min(32, count + 4)
        assert pool.stats()["threads"] == 0, "workers start when tasks need them, as in the stdlib"


@pytest.mark.one_python
def test_submit_after_shutdown_is_refused(kind: str) -> None:
    pool = make_executor(kind, 1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(tasks.square, 2)


@pytest.mark.one_python
def test_submission_problems_are_reported_through_the_future(kind: str) -> None:
    """As every stdlib executor does: submit() returns a future even for a non-callable or an
    argument that cannot be sent, and the future carries the error."""
    stdlib_gap(kind, "reports a non-callable as NotShareableError, not TypeError")
    import threading

    with make_executor(kind, 1) as pool:
        bad_call = pool.submit(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'int' object is not callable"):
            bad_call.result(timeout=60)
        bad_arg = pool.submit(tasks.identity, threading.Lock())
        with pytest.raises(TypeError, match="lock"):
            bad_arg.result(timeout=60)
        assert pool.submit(tasks.square, 3).result(timeout=60) == 9


@pytest.mark.one_python
def test_as_completed_and_wait(kind: str, tmp_path: Path) -> None:
    with make_executor(kind, 2) as pool:
        futures = [pool.submit(tasks.square, i) for i in range(12)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [i * i for i in range(12)]
        done, not_done = cf.wait(futures, timeout=30, return_when=cf.ALL_COMPLETED)
        assert len(done) == 12 and not not_done
        fifo = Fifo(str(tmp_path))
        slow = pool.submit(*fifo.wait)  # waits until the FIFO is opened for writing
        fast = pool.submit(tasks.square, 5)
        done, _ = cf.wait([slow, fast], timeout=tasks.PATIENCE, return_when=cf.FIRST_COMPLETED)
        assert done == {fast}
        fifo.release()
        fd = slow.result(timeout=tasks.PATIENCE)
        if kind != "process":
            os.close(fd)  # opened in this process


def test_the_types_that_submit_and_stats_return_are_exported() -> None:
    with interpool.InterpreterPoolExecutor(1, fallback=None) as pool:
        assert set(pool.stats()) == interpool.PoolStats.__required_keys__  # no lane: no lane_* keys
        for future in (pool.submit(tasks.square, 3), pool.schedule(tasks.square, (3,), timeout=tasks.PATIENCE)):
            assert type(future) is interpool.TaskFuture and isinstance(future, cf.Future)
            assert future.result() == 9 and future.interrupt() is False


@pytest.mark.one_python
def test_stats_counts_tasks() -> None:
    with interpool.InterpreterPoolExecutor(2) as pool:
        keys = {"max_workers", "threads", "workers", "busy", "queued", "submitted", "completed", "recycled"}
        keys |= {"pending", "abandoned", "stuck"}
        keys |= {"isolated_files", "isolated_mapped_bytes", "isolated_resident_bytes", "isolated_disk_bytes"}
        lane = {"workers", "busy", "queued", "submitted", "completed", "cancelled", "pending", "replaced", "recycled"}
        keys |= {f"lane_{key}" for key in lane | {"abandoned", "stuck", "functions"}}  # the fallback lane
        assert set(pool.stats()) == keys
        # interpool.PoolStats, its type, says the same: the lane's keys are there with a lane.
        assert interpool.PoolStats.__required_keys__ == {key for key in keys if not key.startswith("lane_")}
        assert interpool.PoolStats.__optional_keys__ == {key for key in keys if key.startswith("lane_")}
        list(pool.map(tasks.square, range(30)))
        stats = pool.stats()
        assert stats["submitted"] == stats["completed"] == 30
        assert stats["threads"] == 2 and stats["busy"] == 0 and stats["queued"] == 0 and stats["pending"] == 0
    assert pool.stats()["workers"] == 0
