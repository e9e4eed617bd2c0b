"""Runs inside every worker interpreter: decodes tasks, runs them, encodes replies.

The Rust worker loop calls :func:`bootstrap` once per interpreter and then the returned
runner once per task; no Python object ever crosses between interpreters.

Tasks and replies cross as ``Packed`` values (converted natively by Rust; only objects
without a native form are pickled). A task is ``(fn, args, kwargs)``; a reply is
``(status, payload)``:

* ``STATUS_RESULT``: the return value;
* ``STATUS_EXCEPTION``: ``(pickled exception or None, module, qualname, str, traceback)``.

Bit ``REPLACE_FLAG`` of the status asks Rust to replace this interpreter after the task
(kept in sync with ``src/worker.rs``).
"""

from __future__ import annotations

import sys
import types

from . import _interpool, _pickling

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:  # keep typing and traceback out of worker start-up
    from collections.abc import Callable, Iterable
    from typing import Any

STATUS_RESULT = 0
STATUS_EXCEPTION = 1
STATUS_INTERNAL = 0x7F
REPLACE_FLAG = 0x80

# Set by bootstrap(): how to re-create the owner's __main__ here (see _pickling.py).
_main_source: tuple[str, str] | None = None
# True while the owner's main script runs here as __mp_main__ (see loading_main()).
_loading_main = False
# True in worker interpreters (set by bootstrap()).
_in_worker = False

_NO_SUBINTERP = "does not support loading in subinterpreters"


def in_worker() -> bool:
    """Whether this interpreter is an interpool worker."""
    return _in_worker


def loading_main() -> bool:
    """Whether this interpreter is running the owner's main script as ``__mp_main__``.

    A script without an ``if __name__ == "__main__":`` guard would create a pool again at
    that point, and every worker would do the same (CPython gh-136659); the executor refuses
    instead, with an error that says to add the guard."""
    return _loading_main


def from_main(qualname: str) -> Any:
    """Resolve a function or class of the owner's ``__main__`` (sent by reference)."""
    module = sys.modules.get("__mp_main__") or _load_main()
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _load_main() -> types.ModuleType:
    global _loading_main
    import runpy

    if _main_source is None:
        raise RuntimeError(
            "this task uses a function or class defined in __main__, but the main program has no "
            "script file to re-run in the worker (interactive session or python -c): install "
            "cloudpickle (pip install cloudpickle) to send it by value, or move it to a module"
        )
    kind, where = _main_source
    module = types.ModuleType("__mp_main__")
    sys.modules["__mp_main__"] = module
    _loading_main = True
    try:
        if kind == "path":
            namespace = runpy.run_path(where, run_name="__mp_main__")
        else:
            namespace = runpy.run_module(where, run_name="__mp_main__", alter_sys=False)
    except BaseException as exc:
        del sys.modules["__mp_main__"]
        raise RuntimeError(
            f"interpool could not re-create __main__ in a worker interpreter by running {where} as "
            f"__mp_main__: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        _loading_main = False
    module.__dict__.update(namespace)
    return module


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


def encode_exception(exc: BaseException) -> tuple[int, tuple[bytes | None, str, str, str, str]]:
    """Describe ``exc`` so the owner can re-raise the original type with the remote
    traceback attached, or at least its type name, message and traceback text."""
    import traceback

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
    return (STATUS_EXCEPTION, (exc_bytes, kind.__module__, kind.__qualname__, text, formatted))


def run(task: Any) -> Any:
    """Run one task, handed over as a ``Packed`` ``(fn, args, kwargs)``; reply likewise."""
    fn: Any = None
    try:
        fn, args, kwargs = task.unpack()
        result = fn(*args, **kwargs)
    except BaseException as exc:  # SystemExit & co. fail the task, not the worker
        status, info = encode_exception(exc)
        if isinstance(exc, MemoryError):
            status |= REPLACE_FLAG  # the interpreter's heap may be in a bad state: start afresh
        return _interpool.pack((status, info))
    try:
        return _interpool.pack((STATUS_RESULT, result))
    except BaseException as exc:
        from ._errors import NotShareableError

        error = NotShareableError(
            f"the result of {_pickling.describe(fn, call=True)} cannot be sent back from the worker interpreter: "
            f"{type(result).__module__}.{type(result).__qualname__} object is not picklable ({exc})"
        )
        return _interpool.pack(encode_exception(error))


def bootstrap(config: bytes, index: int) -> Callable[[Any], Any] | str:
    """Prepare this interpreter; return the task runner, or a ``str`` that explains why
    the worker cannot start (which breaks the pool)."""
    global _main_source, _in_worker
    _in_worker = True
    try:
        import pickle

        settings: dict[str, Any] = pickle.loads(config)
        _main_source = settings.get("main")
        # Pickled separately: it may refer to __main__, which needs _main_source first.
        initializer = settings.get("initializer")
        if initializer is not None:
            fn, initargs = pickle.loads(initializer)
            if isinstance(fn, str):
                exec_script(fn)
            else:
                fn(*initargs)
    except BaseException as exc:
        import traceback

        return "".join(traceback.format_exception(_explain(exc)))
    return run
