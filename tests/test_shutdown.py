"""shutdown(): waiting, cancelling queued work, not waiting, and executors never shut down."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

import interpool

import tasks
from conftest import Fifo, make_executor, run_script, stdlib_gap, wait_until


def test_shutdown_wait_completes_every_future(kind: str) -> None:
    pool = make_executor(kind, 2)
    sleeps = [pool.submit(time.sleep, 0.01) for _ in range(10)]
    futures = [pool.submit(tasks.square, i) for i in range(20)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in sleeps + futures)
    assert [f.result() for f in futures] == [i * i for i in range(20)]


def test_shutdown_cancel_futures_cancels_queued_tasks(kind: str, tmp_path: Path) -> None:
    stdlib_gap(kind, "cannot send functions that use module globals (NotShareableError)")
    gate = str(tmp_path / "gate")
    pool = make_executor(kind, 1)
    blocker = pool.submit(tasks.wait_for_file, gate)
    queued = [pool.submit(tasks.touch, str(tmp_path / f"t{i}")) for i in range(8)]
    if kind == "process":
        time.sleep(0.3)  # let the worker pick up the blocker (its future runs once in the call queue)
    else:
        wait_until(blocker.running, "the worker picks up the blocker")
    if kind == "process":
        # A process pool holds back the task already in its call queue after
        # shutdown(wait=False, cancel_futures=True); open the gate first instead (its call
        # queue holds a task or two anyway, hence the lower count below).
        tasks.touch(gate)
        pool.shutdown(wait=True, cancel_futures=True)
    else:
        # Cancel while the blocker still runs, so no queued task can start first; then let
        # the blocker finish and join.
        pool.shutdown(wait=False, cancel_futures=True)
        tasks.touch(gate)
        pool.shutdown(wait=True)
    assert blocker.result() == gate
    assert all(f.done() for f in queued)
    cancelled = [f for f in queued if f.cancelled()]
    # A process pool has already handed a couple of tasks to its call queue; the others
    # cancel everything that had not started.
    assert len(cancelled) >= (6 if kind == "process" else 8)
    for i, f in enumerate(queued):
        assert os.path.exists(tmp_path / f"t{i}") == (not f.cancelled())


def test_shutdown_without_wait_returns_at_once_and_work_still_finishes(kind: str, tmp_path: Path) -> None:
    fifo = Fifo(str(tmp_path))
    pool = make_executor(kind, 1)
    # The first call waits at the FIFO until the test opens it; the two behind it wait in the
    # queue. Had shutdown(wait=False) waited for them, the guard would release the FIFO after
    # PATIENCE, and the assertion fail.
    futures = [pool.submit(*fifo.wait), pool.submit(time.sleep, 0), pool.submit(time.sleep, 0)]
    guard = threading.Timer(tasks.PATIENCE, fifo.release)
    guard.start()
    try:
        pool.shutdown(wait=False)
        assert not any(f.done() for f in futures), "shutdown(wait=False) waited for the work"
    finally:
        guard.cancel()
        guard.join()
        if not futures[0].done():
            fifo.release()
    fd = futures[0].result(timeout=tasks.PATIENCE)
    assert [f.result(timeout=tasks.PATIENCE) for f in futures[1:]] == [None, None]
    pool.shutdown(wait=True)  # joins what is left
    if kind != "process":
        os.close(fd)  # opened in this process


def test_shutdown_is_idempotent_and_context_manager_shuts_down(kind: str) -> None:
    with make_executor(kind, 1) as pool:
        assert pool.submit(tasks.square, 4).result() == 16
    pool.shutdown()
    pool.shutdown(wait=False)


def test_shutdown_from_a_done_callback() -> None:
    pool = interpool.InterpreterPoolExecutor(1)
    seen: list[int] = []

    def callback(f: object) -> None:
        pool.shutdown(wait=False)
        seen.append(1)

    pool.submit(tasks.square, 2).add_done_callback(callback)
    pool.shutdown(wait=True)
    assert seen == [1]


@pytest.mark.parametrize("fallback", ["process", "thread", None])
def test_shutdown_wait_from_a_done_callback_returns(fallback: str | None) -> None:
    # Issue 22, 2: with a fallback lane (the default), even one never used, shutdown(wait=True)
    # from a done-callback waited for the lane to be sealed, which only the last dispatcher
    # does when it ends: the callback runs in a dispatcher, so it never returned and the
    # process never exited (before: the script below timed out; fallback=None returned).
    script = f"""
import tasks
import interpool
pool = interpool.InterpreterPoolExecutor(1, fallback={fallback!r})
seen = []
def callback(future):
    pool.shutdown(wait=True)
    seen.append(future.result())
later = [pool.submit(tasks.sleep_then, 0.05, i) for i in range(3)]
first = pool.submit(tasks.square, 3)
first.add_done_callback(callback)
pool.shutdown(wait=True)
print(seen, [f.result() for f in later], pool.stats()["pending"])
"""
    proc = run_script(script, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "[9] [0, 1, 2] 0"


def test_executor_dropped_without_shutdown_finishes_its_work() -> None:
    pool = interpool.InterpreterPoolExecutor(2)
    futures = [pool.submit(tasks.sleep_then, 0.01, i) for i in range(10)]
    del pool
    gc.collect()
    assert [f.result(timeout=30) for f in futures] == list(range(10))
    # Its threads exit on their own; conftest's leak check joins and verifies them.
