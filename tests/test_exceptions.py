"""Task failures come back as the original exception with the remote traceback attached,
and never break the pool."""

from __future__ import annotations

import sys
import threading

import pytest

import interpool

import tasks
from conftest import make_executor


def test_original_exception_type_with_remote_traceback(interp_kind: str) -> None:
    with make_executor(interp_kind, 1) as pool:
        with pytest.raises(ValueError, match="boom") as info:
            pool.submit(tasks.fail, "boom").result()
    cause = info.value.__cause__
    assert cause is not None
    if interp_kind == "interpool":
        assert isinstance(cause, interpool.ExecutionFailed)
        assert "tasks.py" in cause.formatted and "in fail" in cause.formatted
        assert cause.type_name == "ValueError" and cause.msg == "boom"
        assert "Uncaught in the" in str(cause) and "in fail" in str(cause)
    if sys.version_info >= (3, 14):
        from concurrent.interpreters import ExecutionFailed

        assert type(cause) is ExecutionFailed, "the stdlib's own class"
        assert "ValueError" in cause.excinfo.formatted


def test_process_pool_raises_the_same_type(kind: str) -> None:
    with make_executor(kind, 1) as pool, pytest.raises(ValueError, match="boom"):
        pool.submit(tasks.fail, "boom").result()


def test_unpicklable_exception_arrives_as_execution_failed() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        with pytest.raises(interpool.ExecutionFailed) as info:
            pool.submit(tasks.raise_unpicklable).result()
        assert info.value.type_name == "Unpicklable"
        assert info.value.msg == "cannot travel"
        assert "raise_unpicklable" in info.value.formatted
        assert pool.submit(tasks.square, 3).result() == 9


@pytest.mark.parametrize("fn", [tasks.raise_system_exit, tasks.raise_keyboard_interrupt])
def test_system_exit_and_keyboard_interrupt_fail_the_task_not_the_pool(fn: object) -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        future = pool.submit(fn)  # type: ignore[arg-type]
        exc = future.exception(timeout=30)
        assert isinstance(exc, (SystemExit, KeyboardInterrupt))
        assert [pool.submit(tasks.square, i).result() for i in range(3)] == [0, 1, 4]
        assert pool.stats()["workers"] == 1


def test_unpicklable_argument_fails_that_future_only() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        future = pool.submit(tasks.identity, threading.Lock())
        with pytest.raises(interpool.NotShareableError, match="lock") as info:
            future.result()
        assert isinstance(info.value, TypeError)
        assert "tasks.identity" in str(info.value)
        assert pool.submit(tasks.square, 5).result() == 25


def test_unpicklable_result_fails_that_future_only() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        with pytest.raises(interpool.NotShareableError, match="lock") as info:
            pool.submit(tasks.return_lock).result()
        assert "tasks.return_lock" in str(info.value)
        assert pool.submit(tasks.square, 6).result() == 36


def test_extension_that_cannot_load_in_subinterpreters_is_named() -> None:
    pytest.importorskip("_testsinglephase")
    with interpool.InterpreterPoolExecutor(1, fallback=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(tasks.import_single_phase).result()
        message = str(info.value)
        assert "'_testsinglephase'" in message
        assert "does not support loading in subinterpreters" in message
        assert "fallback='process'" in message and "main interpreter" in message
        assert info.value.name == "_testsinglephase"
        assert pool.submit(tasks.square, 2).result() == 4


def test_result_that_cannot_be_rebuilt_in_the_caller_fails_only_its_future() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        with pytest.raises(AttributeError, match="Ghost"):
            pool.submit(tasks.return_worker_only_object).result()
        assert pool.submit(tasks.square, 4).result() == 16
