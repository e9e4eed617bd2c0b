"""Worker interpreters get stand-ins for the built-in modules ``faulthandler`` and
``_tracemalloc``, which refuse own-GIL interpreters (their state is the process's): the
stand-ins offer the API without touching that state (python/interpool/_standin_*.py)."""

from __future__ import annotations

import faulthandler
import sys
import tracemalloc

import pytest
import standin_tasks

import interpool


@pytest.fixture(scope="module")
def pool() -> interpool.InterpreterPoolExecutor:
    with interpool.InterpreterPoolExecutor(1, fallback=None) as pool:
        yield pool


def test_faulthandler_imports_in_a_worker_and_answers_as_when_disabled(pool: interpool.InterpreterPoolExecutor) -> None:
    main_enabled = faulthandler.is_enabled()
    info = pool.submit(standin_tasks.faulthandler_in_worker).result(timeout=60)
    assert info["file"] is not None and info["file"].endswith("_standin_faulthandler.py")
    assert (info["enabled_after_enable"], info["disable"], info["unregister"], info["cancel"]) == (
        False,
        False,
        False,
        None,
    )
    # dump_traceback works: this interpreter's own frames, in faulthandler's format
    assert info["dumped"].startswith("Stack (most recent call first):\n")
    assert "Current thread 0x" in info["dumped"] and "in faulthandler_in_worker" in info["dumped"]
    assert len(info["refused"]) == 2 and all("process-wide" in text for text in info["refused"])
    assert faulthandler.is_enabled() == main_enabled, "the worker left the process's handler alone"


def test_tracemalloc_imports_in_a_worker_and_does_not_trace(pool: interpool.InterpreterPoolExecutor) -> None:
    info = pool.submit(standin_tasks.tracemalloc_in_worker).result(timeout=60)
    assert info["file"].endswith("_standin_tracemalloc.py")
    assert (info["tracing"], info["traced"], info["stop"], info["object"]) == (False, (0, 0), None, None)
    assert "main interpreter" in info["start"] and not info["tracing_after_start"]
    assert "must be tracing memory allocations" in info["snapshot"]
    assert not tracemalloc.is_tracing()


def test_the_main_interpreter_keeps_the_real_modules() -> None:
    assert standin_tasks.stand_in_of("faulthandler") is None  # built in
    assert standin_tasks.stand_in_of("_tracemalloc") is None


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.12's _ctypes (which joblib imports) refuses workers")
def test_joblib_imports_in_a_worker(pool: interpool.InterpreterPoolExecutor) -> None:
    pytest.importorskip("joblib")
    # loky imports faulthandler at its top: joblib could not load in a worker before
    assert pool.submit(standin_tasks.stand_in_of, "joblib.externals.loky.process_executor").result(timeout=120)
