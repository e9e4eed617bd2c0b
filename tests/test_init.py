"""initializer/initargs: callables, script strings, and failures that break the pool."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import sys

import pytest

import interpool

import tasks
from conftest import make_executor, stdlib_gap


def test_initializer_runs_in_every_worker(kind: str) -> None:
    stdlib_gap(kind, "cannot send this initializer and its args (NotShareableError)")
    with make_executor(kind, 2, initializer=tasks.set_global, initargs=("ready",)) as pool:
        assert {pool.submit(tasks.get_global).result() for _ in range(10)} == {"ready"}


def test_initializer_script_string() -> None:
    script = "import tasks\ntasks.set_global('from script')"
    with interpool.InterpreterPoolExecutor(2, initializer=script) as pool:
        assert pool.submit(tasks.get_global).result() == "from script"


def test_initializer_script_takes_no_args() -> None:
    with pytest.raises(ValueError, match="an initializer script does not take args"):
        interpool.InterpreterPoolExecutor(1, initializer="x = 1", initargs=(1,))


def test_initializer_must_be_callable(kind: str) -> None:
    stdlib_gap(kind, "accepts any initializer and only fails in the worker")
    with pytest.raises(TypeError, match="initializer must be a callable"):
        make_executor(kind, 1, initializer=42)


def test_failing_initializer_breaks_the_pool(interp_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    pool = make_executor(interp_kind, 2, initializer=tasks.broken_init)
    try:
        future = pool.submit(tasks.square, 3)
        with pytest.raises(cf.BrokenExecutor) as info:
            future.result(timeout=30)
        if interp_kind == "interpool":
            assert isinstance(info.value, interpool.BrokenInterpreterPool)
            assert "initializer exploded" in str(info.value)
        if sys.version_info >= (3, 14):
            from concurrent.futures.interpreter import BrokenInterpreterPool

            assert isinstance(info.value, BrokenInterpreterPool)
        with pytest.raises(cf.BrokenExecutor):
            pool.submit(tasks.square, 3)
    finally:
        pool.shutdown(wait=True)
    assert any(r.levelno == logging.CRITICAL and r.name == "concurrent.futures" for r in caplog.records)


def test_unpicklable_initargs_are_refused_at_construction() -> None:
    import threading

    with pytest.raises(interpool.NotShareableError, match="initializer"):
        interpool.InterpreterPoolExecutor(1, initializer=tasks.set_global, initargs=(threading.Lock(),))
