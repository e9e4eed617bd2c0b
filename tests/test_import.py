"""interpool imports in the main interpreter, in its own workers, and in own-GIL
subinterpreters created by the stdlib."""

from __future__ import annotations

import sys

import pytest

import interpool
from interpool import _interpool

import tasks


def test_import_in_main_interpreter() -> None:
    assert _interpool.interpreter_id() == 0
    assert set(interpool.__all__) >= {"InterpreterPoolExecutor", "BrokenInterpreterPool", "ExecutionFailed"}


def test_import_inside_worker_interpreters() -> None:
    with interpool.InterpreterPoolExecutor(2) as pool:
        infos = [pool.submit(tasks.whoami).result() for _ in range(6)]
    interps = {info["interp"] for info in infos}
    assert 0 not in interps, "tasks must not run in the main interpreter"
    assert 1 <= len(interps) <= 2
    assert all(info["version"] == interpool.__version__ for info in infos)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="concurrent.interpreters is new in 3.14")
def test_import_in_stdlib_concurrent_interpreters() -> None:
    from concurrent import interpreters

    interp = interpreters.create()
    try:
        interp.exec("import interpool\nfrom interpool import _interpool\nassert _interpool.interpreter_id() != 0")
        assert interp.call(tasks.interpreter_id) == interp.id
    finally:
        interp.close()


def test_import_in_low_level_own_gil_subinterpreter() -> None:
    # 3.13 has no concurrent.interpreters; its private _interpreters module creates the
    # same isolated (own GIL, check_multi_interp_extensions) interpreters.
    try:
        import _interpreters
    except ImportError:  # pragma: no cover
        pytest.skip("no _interpreters module")
    interp_id = _interpreters.create()
    try:
        script = "import interpool\nfrom interpool import _interpool\nassert _interpool.interpreter_id() != 0\n"
        assert _interpreters.exec(interp_id, script) is None
    finally:
        _interpreters.destroy(interp_id)


def test_pool_created_inside_a_worker() -> None:
    """A pool can be created from inside a worker interpreter (nested pools)."""
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.nested_pool_sum, 5).result() == sum(i * i for i in range(5))
