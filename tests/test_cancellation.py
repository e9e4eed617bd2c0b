"""Future.cancel(): queued tasks are withdrawn and never run; running ones can't be."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import interpool

import tasks
from conftest import make_executor, stdlib_gap, wait_until


def test_cancel_queued_tasks(kind: str, tmp_path: Path) -> None:
    stdlib_gap(kind, "cannot send functions that use module globals (NotShareableError)")
    gate = str(tmp_path / "gate")
    with make_executor(kind, 1) as pool:
        blocker = pool.submit(tasks.wait_for_file, gate)
        queued = [pool.submit(tasks.touch, str(tmp_path / f"t{i}")) for i in range(6)]
        time.sleep(0.3)
        victims = queued[3:]
        assert all(f.cancel() for f in victims)
        assert all(f.cancelled() and f.done() for f in victims)
        tasks.touch(gate)
        assert blocker.result(timeout=30) == gate
        assert [f.result(timeout=30) for f in queued[:3]] == [str(tmp_path / f"t{i}") for i in range(3)]
    for i in range(3, 6):
        assert not os.path.exists(tmp_path / f"t{i}"), "a cancelled task ran"


def test_running_task_cannot_be_cancelled(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with interpool.InterpreterPoolExecutor(1) as pool:
        running = pool.submit(tasks.wait_for_file, gate)
        wait_until(lambda: pool.stats()["busy"] == 1, "the task runs")
        assert running.running() and not running.done()
        assert not running.cancel()
        assert not running.cancelled()
        tasks.touch(gate)
        assert running.result(timeout=30) == gate
        assert not running.running()


@pytest.mark.timeout(120)
def test_racing_cancels_account_for_every_task_exactly_once() -> None:
    n = 3000
    with interpool.InterpreterPoolExecutor(2) as pool:
        futures = [pool.submit(tasks.identity, i) for i in range(n)]
        cancelled: list[bool] = [False] * n

        def canceller(start: int) -> None:
            for i in range(start, n, 3):
                cancelled[i] = futures[i].cancel()

        threads = [threading.Thread(target=canceller, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, f in enumerate(futures):
            assert f.done() or not cancelled[i]
            if cancelled[i]:
                assert f.cancelled()
            else:
                assert f.result(timeout=30) == i
        ran = sum(1 for c in cancelled if not c)
    assert pool.stats()["completed"] == ran


def test_cancelled_futures_count_as_done_for_wait_and_as_completed(tmp_path: Path) -> None:
    """wait()/as_completed() only see CANCELLED_AND_NOTIFIED futures: interpool notifies at
    once, since a cancelled task never reaches a worker."""
    import concurrent.futures as cf

    gate = str(tmp_path / "gate")
    with interpool.InterpreterPoolExecutor(1) as pool:
        blocker = pool.submit(tasks.wait_for_file, gate)
        queued = [pool.submit(tasks.square, i) for i in range(4)]
        wait_until(blocker.running, "the blocker runs")
        assert all(f.cancel() for f in queued)
        # Notified by cancel() itself: a wait that does not wait at all sees them done.
        done, not_done = cf.wait(queued, timeout=0)
        assert len(done) == 4 and not not_done
        assert len(list(cf.as_completed(queued, timeout=0))) == 4
        pool.shutdown(wait=False, cancel_futures=True)
        tasks.touch(gate)
        assert blocker.result(timeout=30) == gate


def test_a_thread_waiting_in_result_sees_cancel_and_interrupt_promptly() -> None:
    """result() first waits briefly for the reply to come to its own thread (see
    _dispatch.TaskFuture.result); a cancellation, after which no reply comes, and an
    interruption still end the wait at once."""
    with interpool.InterpreterPoolExecutor(1) as pool:
        running = pool.submit(tasks.spin, 10**10)  # a Python loop: interruptible
        queued = pool.submit(abs, -1)
        outcomes: dict[str, object] = {}

        def wait(name: str, future: object) -> None:
            try:
                future.result(timeout=tasks.PATIENCE)  # type: ignore[attr-defined]
            except BaseException as exc:
                outcomes[name] = type(exc).__name__  # TimeoutError if nothing ended the wait

        waiters = [threading.Thread(target=wait, args=args) for args in (("queued", queued), ("running", running))]
        for t in waiters:
            t.start()
        time.sleep(0.2)
        assert queued.cancel()
        assert running.interrupt()
        for t in waiters:
            t.join()
        assert outcomes == {"queued": "CancelledError", "running": "CancelledError"}


def test_the_waiting_thread_takes_the_reply_of_a_task_longer_than_its_first_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """result() keeps waiting for the reply itself past its first short wait: a task of 50 ms
    is completed by the thread that waits for it, not by a dispatcher that then wakes it (a
    thread hand-off, a millisecond and more on a busy machine: 1.3-2.6x the time of a 2.6 ms
    numpy sum in benchmarks/bench_zero_copy.py before)."""
    from interpool._dispatch import TaskFuture

    settled_by: list[str] = []
    settle = TaskFuture._settle

    def recording(self: TaskFuture[object], result: object) -> bool:
        settled_by.append(threading.current_thread().name)
        return settle(self, result)

    monkeypatch.setattr(TaskFuture, "_settle", recording)
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.sleep_then, 0.05, "slept").result() == "slept"
        assert pool.submit(tasks.sleep_then, 0.05, "again").result(timeout=tasks.PATIENCE) == "again"
    assert settled_by == [threading.current_thread().name] * 2


def test_results_taken_by_waiting_threads_and_by_the_dispatcher_mix() -> None:
    """Replies come to the thread waiting in result() or through the dispatchers: either way
    each future completes once, with its done-callbacks, and wait()/as_completed see it."""
    import concurrent.futures as cf

    with interpool.InterpreterPoolExecutor(2) as pool:
        seen: list[int] = []
        futures = [pool.submit(abs, -i) for i in range(300)]
        for f in futures:
            f.add_done_callback(lambda f: seen.append(f.result()))
        assert [f.result() for f in futures[::2]] == list(range(0, 300, 2))
        done, _ = cf.wait(futures, timeout=30)
        assert len(done) == 300
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == list(range(300))
        assert sorted(seen) == list(range(300))
