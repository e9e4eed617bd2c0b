"""Stopping work that runs: per-task timeouts, interrupt(), shutdown(interrupt=True), leaving
a `with` block by an exception, Ctrl-C, and calls stuck in C."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import time

import pytest

import interpool
from interpool import InterpreterPoolExecutor, Queue

import tasks
from conftest import ctrl_c, run_script, wait_until


def test_a_loop_past_its_timeout_raises_timeout_error_and_the_worker_runs_the_next_task() -> None:
    with InterpreterPoolExecutor(1, interrupt_grace=tasks.PATIENCE) as pool:
        before = pool.submit(tasks.interpreter_id).result(timeout=60)
        future = pool.schedule(tasks.busy_forever, timeout=0.2)  # it never ends by itself
        with pytest.raises(TimeoutError, match=r"0\.2s timeout") as info:
            future.result(timeout=60)
        assert isinstance(info.value.__cause__, interpool.ExecutionFailed)
        assert "busy_forever" in info.value.__cause__.formatted, "the traceback shows where it stopped"
        assert pool.submit(tasks.interpreter_id).result(timeout=60) == before, "the same worker"
        assert pool.stats()["abandoned"] == 0


def test_task_timeout_applies_to_every_task_and_schedule_overrides_it() -> None:
    with InterpreterPoolExecutor(1, task_timeout=0.5) as pool:
        with pytest.raises(TimeoutError):
            pool.submit(tasks.busy_forever).result(timeout=60)
        with pytest.raises(TimeoutError):
            list(pool.map(tasks.busy_for, [tasks.PATIENCE]))
        # A call that runs longer than the executor's limit, under its own (schedule's); a call
        # queued behind it waits longer than that limit, which does not count: both succeed.
        longer = pool.schedule(tasks.busy_for, (0.8,), timeout=tasks.PATIENCE)
        queued = pool.submit(tasks.square, 4)
        assert longer.result(timeout=60) > 0
        assert queued.result(timeout=60) == 16, "waiting in the queue does not count"


def test_interrupt_stops_a_running_task_its_finally_runs_and_the_future_is_cancelled() -> None:
    q: Queue[str] = Queue()
    with InterpreterPoolExecutor(1) as pool:
        future = pool.submit(tasks.busy_then_note, q)
        while not future.running():
            time.sleep(0.01)
        assert future.interrupt() is True
        assert future.cancelled() and future.done()
        with pytest.raises(cf.CancelledError):
            future.result()
        assert q.get(timeout=30) == "finally ran"
        assert pool.submit(tasks.square, 5).result(timeout=60) == 25
        done = pool.submit(tasks.square, 2)
        assert done.result(timeout=60) == 4
        assert done.interrupt() is False, "a finished task cannot be interrupted"


def test_interrupt_cancels_a_queued_task() -> None:
    with InterpreterPoolExecutor(1) as pool:
        blocker = pool.submit(tasks.busy_for, 0.5)
        queued = pool.submit(tasks.square, 3)
        assert queued.interrupt() is True and queued.cancelled()
        assert blocker.result(timeout=60) > 0
        cf.wait([queued], timeout=tasks.PATIENCE)
        assert pool.stats()["pending"] == 0


def test_shutdown_with_interrupt_stops_busy_workers() -> None:
    pool = InterpreterPoolExecutor(2, interrupt_grace=tasks.PATIENCE)
    futures = [pool.submit(tasks.busy_forever) for _ in range(4)]
    wait_until(lambda: pool.stats()["busy"] == 2, "both workers busy")
    pool.shutdown(wait=True, interrupt=True)  # the tasks never end by themselves
    assert all(f.cancelled() for f in futures)
    assert pool.stats()["abandoned"] == 0, "stopped by the interrupt, not given up after the grace period"


def test_leaving_a_with_block_by_an_exception_interrupts_running_tasks() -> None:
    futures = []
    with pytest.raises(RuntimeError, match="leave"), InterpreterPoolExecutor(2, interrupt_grace=tasks.PATIENCE) as pool:
        futures = [pool.submit(tasks.busy_forever) for _ in range(3)]  # they never end by themselves
        wait_until(lambda: pool.stats()["busy"] == 2, "both workers busy")
        raise RuntimeError("leave")
    assert all(f.cancelled() for f in futures)
    assert pool.stats()["abandoned"] == 0, "stopped by the interrupt, not given up after the grace period"


def test_a_task_that_keeps_catching_the_interrupt_is_given_up_then_interrupted_again() -> None:
    q: Queue[str] = Queue()
    with InterpreterPoolExecutor(1, interrupt_grace=0.5) as pool:
        future = pool.schedule(tasks.ignore_interrupts, (q, 2.0), timeout=0.1)
        with pytest.raises(TimeoutError) as info:
            future.result(timeout=60)
        assert "stuck" in " ".join(getattr(info.value, "__notes__", []))
        caught = 0
        while not q.empty():
            q.get()
            caught += 1
        assert caught >= 1, "interrupted (once during the grace period: clean-up runs undisturbed)"
        assert pool.stats()["abandoned"] == 1
        assert pool.submit(tasks.square, 6).result(timeout=60) == 36, "a new worker took its place"
        # Interrupts keep coming after it was given up: once it stops catching them, it ends.
        wait_until(lambda: pool.stats()["stuck"] == 0, "the given-up task ended")


@pytest.mark.timeout(120)
def test_a_call_blocked_in_c_is_given_up_after_the_grace_period_and_the_pool_keeps_its_capacity() -> None:
    read_end, write_end = os.pipe()
    try:
        with InterpreterPoolExecutor(1, interrupt_grace=0.3) as pool:
            stuck = pool.schedule(tasks.hang_until_written, (read_end,), timeout=0.2)
            other = pool.submit(tasks.square, 7)  # queued behind the stuck call
            with pytest.raises(TimeoutError):
                stuck.result(timeout=60)
            # Both while the call is still blocked (nothing written yet): given up after its
            # timeout and the grace period, not when the call returned.
            assert other.result(timeout=60) == 49
            stats = pool.stats()
            assert (stats["abandoned"], stats["stuck"]) == (1, 1)
            os.write(write_end, b"x")
            wait_until(lambda: pool.stats()["stuck"] == 0, "the stuck thread ends when its call returns")
    finally:
        os.close(write_end)  # first: a read still blocked then ends (EOF)
        os.close(read_end)


def test_an_initializer_that_hangs_breaks_the_pool_after_the_task_timeout() -> None:
    with InterpreterPoolExecutor(1, initializer=tasks.busy_forever, task_timeout=0.3) as pool:
        with pytest.raises(interpool.BrokenInterpreterPool, match=r"TaskInterrupted|timeout"):
            pool.submit(tasks.square, 2).result(timeout=60)


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), float("inf")])
def test_bad_timeouts_are_value_errors(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        InterpreterPoolExecutor(1, task_timeout=bad)
    with InterpreterPoolExecutor(1) as pool, pytest.raises(ValueError, match="positive"):
        pool.schedule(tasks.square, (1,), timeout=bad)


@pytest.mark.parametrize("bad", ["1", [1], True])
def test_non_number_timeouts_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="number of seconds"):
        InterpreterPoolExecutor(1, task_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="number of seconds"):
        InterpreterPoolExecutor(1, interrupt_grace=bad)  # type: ignore[arg-type]


def test_interrupts_racing_with_completion_leave_exactly_one_outcome() -> None:
    with InterpreterPoolExecutor(2) as pool:
        futures = [pool.submit(tasks.busy_for, 0.001 * (i % 5)) for i in range(300)]
        interrupted = [f.interrupt() for f in futures[::2]]
        cf.wait(futures, timeout=60)
        for f, said in zip(futures[::2], interrupted, strict=True):
            assert f.done()
            assert f.cancelled() == said, "interrupt() says True exactly when the future ends cancelled"
        for f in futures[1::2]:
            assert f.result() >= 0
        assert pool.stats()["pending"] == 0


@pytest.mark.skipif(sys.platform != "linux", reason="signals as on Linux")
@pytest.mark.timeout(120)
def test_ctrl_c_with_busy_workers_stops_their_tasks_and_returns_to_the_shell() -> None:
    # The tasks never end by themselves: the process ends with Ctrl-C's status only if it
    # stops them (had exit waited for them, or given them up, the status or the counts would
    # differ). How fast it returns: make bench-interrupt.
    proc = ctrl_c(
        """
        import time, tasks
        from interpool import InterpreterPoolExecutor, Queue
        notes = Queue()
        try:
            with InterpreterPoolExecutor(2, interrupt_grace=tasks.PATIENCE) as pool:
                futures = [pool.submit(tasks.busy_then_note, notes) for _ in range(2)]
                while pool.stats()["busy"] < 2:
                    time.sleep(0.01)
                print("busy", flush=True)
                futures[0].result()
        finally:
            print(pool.stats()["abandoned"], notes.qsize(), flush=True)
        """
    )
    assert proc.returncode in (130, -signal.SIGINT), f"status {proc.returncode}: {proc.stderr}"
    assert "KeyboardInterrupt" in proc.stderr and "Fatal" not in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["0", "2"], "both tasks stopped (their finally blocks ran), none given up"


def test_tasks_of_recycled_workers_are_stopped_in_time_not_given_up() -> None:
    # Before: a worker thread kept its first interpreter's interrupter, so after recycling
    # (max_tasks_per_worker) a timed-out pure-Python loop was reported "stuck in a C call",
    # kept its core busy, and exit waited for it (60 timed-out tasks, recycling every 3: 14 stuck).
    with InterpreterPoolExecutor(1, max_tasks_per_worker=1, task_timeout=0.1, interrupt_grace=tasks.PATIENCE) as pool:
        futures = [pool.submit(tasks.spin, 10**12) for _ in range(4)]
        for future in futures:
            with pytest.raises(TimeoutError):
                future.result(timeout=60)
        stats = pool.stats()
        assert (stats["stuck"], stats["abandoned"]) == (0, 0)
        # (its own limit: a fresh interpreter's first call, importing tasks, may take 0.1 s)
        assert pool.schedule(tasks.square, (7,), timeout=tasks.PATIENCE).result(timeout=60) == 49


@pytest.mark.timeout(300)
def test_a_signal_handler_exception_while_result_waits_never_loses_the_reply() -> None:
    # Issue 22, 1: the thread waiting in result() took the reply from the task's mailbox; a
    # KeyboardInterrupt (from a signal handler, at the next bytecode boundary) then lost it, and
    # the future stayed pending forever (before: 10 of 20 futures lost on 3.14, all Pythons
    # alike). A timer thread sends SIGINT every millisecond; the handler raises only while
    # result() waits, and the waiter then waits again, as after Ctrl-C in a REPL.
    script = """
import os, signal, sys, threading, time
import tasks
from conftest import ctrl_c, run_script, wait_until
from interpool import InterpreterPoolExecutor

armed = False
def handler(signum, frame):
    if armed:
        raise KeyboardInterrupt
signal.signal(signal.SIGINT, handler)
stop = threading.Event()
def pester():
    while not stop.is_set():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.001)

with InterpreterPoolExecutor(2) as pool:
    pool.submit(tasks.square, 1).result()
    pesterer = threading.Thread(target=pester)
    pesterer.start()
    futures, interrupts, lost = [], 0, None
    try:
        for i in range(150):
            future = pool.submit(tasks.sleep_then, 0.0005 * (i % 4), i)
            futures.append(future)
            give_up = time.monotonic() + tasks.PATIENCE  # a lost reply never comes
            while time.monotonic() < give_up:
                try:
                    armed = True
                    future.result(timeout=0.5)
                    armed = False
                    break
                except KeyboardInterrupt:
                    armed = False
                    interrupts += 1
                except TimeoutError:
                    armed = False
            else:
                lost = i
                break
    finally:
        armed = False
        stop.set()
        pesterer.join()
    if lost is not None:
        print("lost", lost, "after", interrupts, "interrupts", flush=True)
        os._exit(3)
    outcomes = [(f.exception(timeout=0), f.result(timeout=0)) for f in futures]
    assert outcomes == [(None, i) for i in range(150)], [o for o in outcomes if o[0] is not None][:3]
    print("interrupts", interrupts)
"""
    proc = run_script(script, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    interrupts = int(proc.stdout.split()[-1])
    assert interrupts > 0, "the waits were interrupted"


@pytest.mark.parametrize("how", ["timeout", "interrupt"])
def test_a_stopped_task_s_clean_up_runs_to_the_end_undisturbed(how: str) -> None:
    # Issue 22, 5: the watchdog repeated the stop request every 20 ms and each one raised
    # TaskInterrupted again, in the `finally` block or `__exit__` of the first: clean-up longer
    # than that was cut short (before: neither note arrived). Now a stop raises once per task.
    q: Queue[str] = Queue()
    with InterpreterPoolExecutor(1, interrupt_grace=30) as pool:
        if how == "timeout":
            future = pool.schedule(tasks.busy_then_slow_clean_up, (q, 0.3), timeout=0.1)
            with pytest.raises(TimeoutError):
                future.result(timeout=60)
        else:
            future = pool.submit(tasks.busy_then_slow_clean_up, q, 0.3)
            while not future.running():
                time.sleep(0.01)
            assert future.interrupt() is True
            assert pool.submit(tasks.square, 3).result(timeout=60) == 9  # after the clean-up
        assert [q.get(timeout=30), q.get(timeout=30)] == ["finally done", "__exit__ done"]
        assert (pool.stats()["abandoned"], pool.stats()["stuck"]) == (0, 0)


@pytest.mark.timeout(120)
def test_a_task_waiting_in_an_interpool_queue_can_be_stopped() -> None:
    # Issue 22, 4: a task blocked in interpool's own Queue.get() (or put() on a full queue)
    # waited in Rust, where the stop request (a pending call) never ran: it was given up as
    # stuck in C, and exit waited 10 s, then called os._exit(1). Now such a wait raises
    # TaskInterrupted: time limits, interrupt() and shutdown(interrupt=True) stop it.
    script = """
import time, tasks
from interpool import InterpreterPoolExecutor, Queue
empty, full = Queue(), Queue(maxsize=1)
full.put(0)
outcomes = []
with InterpreterPoolExecutor(1, interrupt_grace=3) as pool:
    for fn, args in [(tasks.wait_in_get, (empty,)), (tasks.wait_in_put, (full, 1))]:
        try:
            pool.schedule(fn, args, timeout=0.2).result(timeout=60)
        except TimeoutError as exc:
            outcomes.append(("timeout", type(exc.__cause__).__name__))
        future = pool.submit(fn, *args)
        while not future.running():
            time.sleep(0.01)
        outcomes.append(("interrupt", future.interrupt(), future.cancelled()))
    outcomes.append(("next task", pool.submit(tasks.square, 4).result(timeout=60)))
    last = pool.submit(tasks.wait_in_get, empty)
    while not last.running():
        time.sleep(0.01)
    stats = pool.stats()
    outcomes.append(("stats", stats["abandoned"], stats["stuck"]))
    pool.shutdown(wait=True, interrupt=True)
    outcomes.append(("shutdown", last.cancelled(), pool.stats()["abandoned"], pool.stats()["stuck"]))
print(outcomes)
"""
    proc = run_script(script, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(
        [
            ("timeout", "ExecutionFailed"),
            ("interrupt", True, True),
            ("timeout", "ExecutionFailed"),
            ("interrupt", True, True),
            ("next task", 16),
            ("stats", 0, 0),
            ("shutdown", True, 0, 0),
        ]
    ), proc.stdout + proc.stderr
