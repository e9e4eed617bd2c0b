"""interpool.SharedBuffer: zero-copy sharing and leases that never free or release memory
while another interpreter may still read it."""

from __future__ import annotations

import array
import mmap
import pickle
import zlib
from pathlib import Path

import pytest

import interpool
from interpool import SharedBuffer

import tasks


@pytest.fixture(scope="module")
def pool() -> object:
    with interpool.InterpreterPoolExecutor(2) as pool:
        yield pool


def test_allocated_buffer_is_shared_both_ways(pool: interpool.InterpreterPoolExecutor) -> None:
    buf = SharedBuffer(1000)
    assert len(buf) == 1000 and not buf.readonly and not buf.zero_copy
    assert bytes(memoryview(buf)) == bytes(1000)
    assert pool.submit(tasks.buffer_fill, buf, 7).result() == 1000
    assert bytes(memoryview(buf)) == b"\x07" * 1000  # written by the worker, seen here


@pytest.mark.parametrize("make", [bytearray, lambda b: array.array("B", b), lambda b: memoryview(bytearray(b))])
def test_wrapping_is_zero_copy_in_the_main_interpreter(pool: interpool.InterpreterPoolExecutor, make: object) -> None:
    source = make(b"\x01" * 4096)  # type: ignore[operator]
    buf = SharedBuffer(source)
    assert buf.zero_copy
    memoryview(source)[0] = 200  # type: ignore[arg-type]
    assert pool.submit(tasks.buffer_sum, buf).result() == 4095 + 200
    pool.submit(tasks.buffer_fill, buf, 3).result()
    assert bytes(memoryview(source))[:3] == b"\x03\x03\x03"  # type: ignore[arg-type]


def test_mmap_and_readonly_sources(pool: interpool.InterpreterPoolExecutor, tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"\x02" * 8192)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        buf = SharedBuffer(m)
        assert pool.submit(tasks.buffer_sum, buf).result() == 2 * 8192
        del buf
    ro = SharedBuffer(b"read only")
    assert ro.readonly
    with pytest.raises(TypeError, match="read-only"):
        pool.submit(tasks.buffer_fill, ro, 1).result()


def test_64_mib_buffer_arrives_intact(pool: interpool.InterpreterPoolExecutor) -> None:
    data = bytearray(range(256)) * (64 * 1024 * 1024 // 256)
    buf = SharedBuffer(data)
    assert pool.submit(tasks.buffer_checksum, buf).result() == (len(data), zlib.crc32(data))


def test_owner_dropped_early_memory_stays_pinned_until_the_last_lease(
    pool: interpool.InterpreterPoolExecutor, tmp_path: Path
) -> None:
    data = bytearray(b"\x05" * 1000)
    buf = SharedBuffer(data)
    with pytest.raises(BufferError):
        data.append(1)  # pinned: the bytearray cannot move its memory
    gate = str(tmp_path / "gate")
    reader = pool.submit(tasks.hold_buffer_until, buf, gate)
    del buf  # the owner object goes away first
    with pytest.raises(BufferError):
        data.append(1)  # still pinned: a worker holds a lease
    tasks.touch(gate)
    assert reader.result(timeout=30) == 5000  # read intact memory
    SharedBuffer(1)  # any SharedBuffer operation sweeps released leases
    data.append(1)  # released in this (the owning) interpreter
    assert len(data) == 1001


def test_releasing_right_away_when_no_lease_is_out() -> None:
    data = bytearray(10)
    buf = SharedBuffer(data)
    del buf
    data.extend(b"more")


def test_buffer_made_in_a_worker_outlives_that_interpreter() -> None:
    with interpool.InterpreterPoolExecutor(1, max_tasks_per_worker=1) as pool:
        buf = pool.submit(tasks.make_shared_buffer, b"from the worker").result()
        pool.submit(tasks.square, 2).result()  # the creating interpreter has been replaced
        assert pool.stats()["recycled"] >= 1
    assert not buf.zero_copy  # copied once into interpool-owned memory
    assert bytes(memoryview(buf)) == b"from the worker"


def test_shared_buffer_cannot_be_pickled_and_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="pass it to tasks directly"):
        pickle.dumps(SharedBuffer(4))
    with pytest.raises(TypeError, match="not dict"):
        SharedBuffer({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        SharedBuffer(-1)
