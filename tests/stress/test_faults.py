"""Faults inside tasks stay inside the task; a worker left unusable is replaced."""

from __future__ import annotations

import signal
import sys

import pytest

import interpool

import tasks
from conftest import run_script


@pytest.fixture(scope="module")
def pool() -> object:
    with interpool.InterpreterPoolExecutor(2) as pool:
        yield pool


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("os", FileNotFoundError),
        ("unicode", UnicodeDecodeError),
        ("key", KeyError),
        ("zero", ZeroDivisionError),
        ("group", ExceptionGroup),
        ("chained", RuntimeError),
        ("notes", ValueError),
        ("custom", tasks.CustomError),
        ("recursion", RecursionError),
        ("memory", MemoryError),
    ],
)
def test_every_kind_of_exception_fails_only_its_task(
    pool: interpool.InterpreterPoolExecutor, kind: str, exc_type: type
) -> None:
    with pytest.raises(exc_type) as info:
        pool.submit(tasks.raise_exception, kind).result(timeout=60)
    exc = info.value
    assert isinstance(exc.__cause__, interpool.ExecutionFailed)
    if kind == "os":
        assert exc.filename == "/missing" and exc.errno == 2
    if kind == "group":
        assert [type(e) for e in exc.exceptions] == [ValueError, TypeError]
    if kind == "notes":
        assert exc.__notes__ == ["a note"]
    if kind == "custom":
        assert exc.code == 1 and exc.args == (1, "two", [3])
    if kind == "chained":
        assert "KeyError: 'inner'" in exc.__cause__.formatted
    assert pool.submit(tasks.square, 3).result(timeout=60) == 9


def test_memory_error_replaces_the_worker() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        with pytest.raises(MemoryError):
            pool.submit(tasks.raise_exception, "memory").result(timeout=60)
        assert pool.submit(tasks.square, 3).result(timeout=60) == 9
        assert pool.stats()["recycled"] == 1


def test_task_that_starts_a_thread(pool: interpool.InterpreterPoolExecutor) -> None:
    assert pool.submit(tasks.start_thread, 0.2).result(timeout=60).startswith("Thread")
    assert pool.submit(tasks.square, 2).result(timeout=60) == 4
    with pytest.raises(RuntimeError, match="daemon threads are disabled"):
        pool.submit(tasks.start_daemon_thread).result(timeout=60)


def test_objects_left_behind_are_freed_with_the_interpreter() -> None:
    with interpool.InterpreterPoolExecutor(1, max_tasks_per_worker=1) as pool:
        for _ in range(5):
            assert pool.submit(tasks.leave_garbage, 20).result(timeout=60) == 20 * 1024 * 1024


def test_unusable_worker_is_replaced() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        before = pool.submit(tasks.interpreter_id).result(timeout=60)
        with pytest.raises(interpool.ExecutionFailed, match="machinery failed"):
            pool.submit(tasks.break_worker).result(timeout=60)
        after = pool.submit(tasks.interpreter_id).result(timeout=60)
        assert after != before
        assert pool.stats()["recycled"] == 1


def test_keyboard_interrupt_while_waiting_then_clean_exit() -> None:
    proc = run_script(
        f"""
        import os, signal, threading, tasks
        from interpool import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        futures = [pool.submit(tasks.sleep_then, 0.3, i) for i in range(8)]
        threading.Timer(0.2, os.kill, (os.getpid(), {int(signal.SIGINT)})).start()
        try:
            list(pool.map(tasks.sleep_then, [0.5] * 6, range(6)))
            print("not interrupted")
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            print("interrupted", all(f.done() for f in futures))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted True"


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_fork_with_a_live_pool_fails_clearly_in_the_child_and_not_in_the_parent() -> None:
    # CPython cannot survive fork() with live subinterpreters in the child (gh-139759: it
    # crashes with SIGSEGV/SIGABRT, the stdlib pool too). interpool turns that into exit
    # status 70 with an explanation; the parent's pool is unaffected; subprocess works.
    proc = run_script(
        """
        import os, subprocess, sys, warnings, tasks
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        from interpool import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        assert pool.submit(tasks.square, 3).result() == 9
        pid = os.fork()
        if pid == 0:
            os._exit(0)  # never reached: the guard ends the child first
        _, status = os.waitpid(pid, 0)
        child = os.waitstatus_to_exitcode(status)
        sub = subprocess.run([sys.executable, "-c", "print('sub ok')"], capture_output=True, text=True)
        print(child, pool.submit(tasks.square, 5).result(), sub.stdout.strip())
        pool.shutdown()
        pid = os.fork()  # no interpreter alive any more: an ordinary fork
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["70", "25", "sub", "ok", "0"]
    assert "CPython gh-139759" in proc.stderr and "Shut the pools down before forking" in proc.stderr


def test_signal_module_is_unaffected() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
