"""The Python side of a worker interpreter: start-up, and the hooks Rust calls on failure.

Rust (``src/worker.rs``) runs every task itself: it decodes the call, calls the function and
encodes the result, so no Python code of interpool runs per task. This module provides:

* :func:`bootstrap`, called once per interpreter, and :func:`initialize` for the pool's
  initializer; a ``str`` result refuses the worker's start (which breaks the pool);
* :func:`describe`, which turns an exception into what the owner re-raises, and
  :func:`unsendable_result`, for a result that cannot be sent back;
* :func:`exec_script` and :func:`run_chunk`, the functions behind script tasks and batched
  ``map`` calls.
"""

from __future__ import annotations

import sys

from . import _main

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:  # keep typing and traceback out of worker start-up
    from collections.abc import Callable, Iterable
    from types import ModuleType
    from typing import Any

# True in worker interpreters (set by bootstrap()).
_in_worker = False

_NO_SUBINTERP = "does not support loading in subinterpreters"


def in_worker() -> bool:
    """Whether this interpreter is an interpool worker."""
    return _in_worker


def bootstrap(settings: dict[str, Any], index: int) -> ModuleType:
    """Prepare this interpreter (``settings`` come from the owner); return the hooks."""
    global _in_worker
    _in_worker = True
    _main.set_source(settings.get("main"))
    return sys.modules[__name__]


def initialize(init: tuple[Callable[..., object] | str, tuple[Any, ...]]) -> str | None:
    """Run the pool's initializer; a ``str`` (the traceback) refuses the worker's start."""
    try:
        fn, initargs = init
        if isinstance(fn, str):
            exec_script(fn)
        else:
            fn(*initargs)
    except BaseException as exc:
        return format_failure(exc)
    return None


def format_failure(exc: BaseException) -> str:
    """The traceback text of a start-up failure."""
    import traceback

    return "".join(traceback.format_exception(_explain(exc)))


def exec_script(source: str) -> None:
    """A script task (``pool.submit("code")``): run it in this worker's ``__main__``."""
    exec(source, vars(sys.modules["__main__"]))  # a documented feature: script tasks


def run_chunk(fn: Callable[..., Any], chunk: Iterable[tuple[Any, ...]]) -> list[Any]:
    """A batch of ``map`` calls sent as one task."""
    return [fn(*args) for args in chunk]


def _explain(exc: BaseException) -> BaseException:
    """Replace CPython's terse error for extensions that cannot load here."""
    if isinstance(exc, ImportError) and _NO_SUBINTERP in str(exc):
        import re

        match = re.search(r"module (\S+) " + _NO_SUBINTERP, str(exc))
        if match:
            name = match.group(1)
            better = ImportError(
                f"extension module {name!r} does not support loading in subinterpreters, so it cannot "
                f"be imported in an interpool worker. Use {name} in the main interpreter only (for "
                "example, call it before or after the pool's work), run this work on a "
                "ProcessPoolExecutor, or ask the maintainers of that module for PEP 684 support "
                "(multi-phase init with Py_mod_multiple_interpreters).",
                name=name,
            )
            better.__cause__ = exc
            return better
    return exc


def describe(exc: BaseException) -> tuple[bytes | None, str, str, str, str]:
    """What the owner needs to re-raise ``exc``: the pickled exception (``None`` if it cannot
    be pickled), its type's module and qualified name, its message and the traceback text."""
    import traceback

    from . import _pickling

    exc = _explain(exc)
    formatted = "".join(traceback.format_exception(exc))
    try:
        exc_bytes: bytes | None = _pickling.dumps(exc)
    except Exception:
        exc_bytes = None
    kind = type(exc)
    try:
        text = str(exc)
    except Exception:
        text = f"<str() of {kind.__qualname__} failed>"
    return (exc_bytes, kind.__module__, kind.__qualname__, text, formatted)


def unsendable_result(fn: object, exc: BaseException) -> tuple[bytes | None, str, str, str, str]:
    """``describe`` of the error for a result that cannot be sent back (``exc`` says why)."""
    from . import _pickling
    from ._errors import NotShareableError

    error = NotShareableError(
        f"the result of {_pickling.describe(fn, call=True)} cannot be sent back from the worker interpreter: {exc}"
    )
    error.__cause__ = exc
    return describe(error)
