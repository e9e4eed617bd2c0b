"""Out-of-band pickle buffers (protocol 5): large buffers of pickled arguments are lent to
workers read-only, without a copy; results come back as one writable copy; the lease is given
back in the owner's interpreter (docs/design.md, "Out-of-band buffers")."""

from __future__ import annotations

import gc
import time

import pytest

from interpool import InterpreterPoolExecutor, Queue, _pickling

import tasks
from conftest import run_script

BIG = _pickling.OUT_OF_BAND_MIN  # the smallest buffer that goes out of band


@pytest.fixture(scope="module")
def pool() -> object:
    with InterpreterPoolExecutor(2) as pool:
        yield pool


def test_large_buffers_arrive_as_read_only_views(pool: InterpreterPoolExecutor) -> None:
    blob = tasks.Blob(bytearray(b"\x02") * BIG)
    facts = pool.submit(tasks.blob_facts, blob).result(timeout=60)
    assert facts == {"readonly": True, "len": BIG, "sum": 128, "last": 2}
    with pytest.raises(TypeError, match="read-only"):
        pool.submit(tasks.blob_write, blob).result(timeout=60)


def test_the_view_is_the_callers_memory(pool: InterpreterPoolExecutor) -> None:
    data = bytearray(b"\x05") * BIG
    q: Queue[str] = Queue()
    future = pool.submit(tasks.blob_wait_for_change, tasks.Blob(data), q, 5)
    assert q.get(timeout=60) == "holding"
    data[0] = 9  # seen by the worker: no copy was made
    assert future.result(timeout=60) == 9


@pytest.mark.parametrize("zero_copy, size", [(False, BIG), (True, BIG - 1)])
def test_copied_when_turned_off_or_small(zero_copy: bool, size: int) -> None:
    # A copy arrives writable (pickle rebuilds a bytearray); a view would be read-only.
    with InterpreterPoolExecutor(1, zero_copy=zero_copy) as pool:
        facts = pool.submit(tasks.blob_facts, tasks.Blob(bytearray(b"\x05") * size)).result(timeout=60)
    assert facts["readonly"] is False and facts["len"] == size


def test_results_come_back_as_writable_copies(pool: InterpreterPoolExecutor) -> None:
    for size in (BIG, 4 * BIG, 100):
        blob = pool.submit(tasks.make_blob, size, 7).result(timeout=60)
        assert not blob.data.readonly and blob.data.nbytes == size and bytes(blob.data[:3]) == b"\x07" * 3
        blob.data[0] = 1  # ours to change


def test_the_lease_is_given_back(pool: InterpreterPoolExecutor) -> None:
    """While lent, the caller's bytearray cannot be resized (its buffer is exported); once
    the worker dropped its view, the pin is released in the main interpreter."""
    data = bytearray(b"\x01") * BIG
    assert pool.submit(tasks.blob_facts, tasks.Blob(data)).result(timeout=60)["len"] == BIG
    deadline = time.monotonic() + 30
    while True:
        gc.collect()
        try:
            data.append(0)
            break
        except BufferError:
            assert time.monotonic() < deadline, "the lent buffer was never released"
            time.sleep(0.01)
    assert len(data) == BIG + 1


def test_many_concurrent_leases_are_all_given_back(pool: InterpreterPoolExecutor) -> None:
    buffers = [bytearray([i]) * BIG for i in range(16)]
    futures = [pool.submit(tasks.blob_facts, tasks.Blob(b)) for b in buffers for _ in range(4)]
    assert [f.result(timeout=60)["last"] for f in futures] == [i for i in range(16) for _ in range(4)]
    deadline = time.monotonic() + 30
    for b in buffers:
        while True:
            try:
                b.append(0)
                break
            except BufferError:
                assert time.monotonic() < deadline, "a lent buffer was never released"
                time.sleep(0.01)


def test_a_worker_ending_with_a_view_gives_it_back() -> None:
    """A worker that keeps a view (in a global) until its pool ends: the lease comes back when
    its interpreter ends, and nothing is freed from the wrong heap (debug allocator)."""
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        data = bytearray(b"\\x03") * (1 << 20)
        with InterpreterPoolExecutor(2, max_tasks_per_worker=2) as pool:
            for _ in range(6):
                assert pool.submit(tasks.keep, tasks.Blob(data)).result(timeout=60) is None
        import gc; gc.collect()
        data.append(0)  # no export left
        print("released")
        """,
        env={"PYTHONMALLOC": "debug", "INTERPOOL_DEBUG": "1"},
    )
    assert proc.returncode == 0 and "released" in proc.stdout, proc.stderr


def test_bad_zero_copy_value() -> None:
    for bad in ("yes", -1, 1.5):
        with pytest.raises(TypeError, match="zero_copy must be True, False or a size in bytes"):
            InterpreterPoolExecutor(1, zero_copy=bad)  # type: ignore[arg-type]


def test_zero_copy_sets_the_smallest_buffer_lent() -> None:
    with InterpreterPoolExecutor(1, zero_copy=1000) as pool:
        small = pool.submit(tasks.blob_facts, tasks.Blob(bytearray(999))).result(timeout=60)
        lent = pool.submit(tasks.blob_facts, tasks.Blob(bytearray(1000))).result(timeout=60)
    assert (small["readonly"], lent["readonly"]) == (False, True)
