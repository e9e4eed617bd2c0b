"""Explicit set-up of the extension module in every interpreter that imports interpool.

``interpool/__init__.py`` calls :func:`configure` once per interpreter (the main one and
every worker). It installs, in the module state of ``interpool._interpool``:

* the pickler for values without a native form (``_pickling.dumps``/``loads``), loaded on
  first use, so that a worker that only ever sees native values never imports ``pickle``;
* the resolver of interpool's exception classes (``_errors``), also loaded on first use;

and, in the main interpreter, the fork hooks of the fork guard (``src/fork_guard.rs``) and,
on CPython 3.13, the ``_datetime`` module (:func:`_own_datetime_types`).

It also replaces ``sys._current_frames`` and ``sys._current_exceptions`` in this interpreter
with versions that see only its own threads (``src/threads.rs``): CPython's walk every
interpreter and hand this one's objects to the others, which corrupts the heap while workers
run Python code (Dask's profiler calls ``sys._current_frames()`` every 10 ms).
"""

import os
import sys

from . import _interpool

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from types import ModuleType


def _pickling() -> "ModuleType":
    """Import the pickling rules and hand their functions to Rust directly from now on."""
    from . import _pickling

    _interpool._configure(dumps=_pickling.dumps_value, loads=_pickling.loads)
    return _pickling


def _first_dumps(obj: object, out_of_band: "int | None") -> "bytes | tuple[bytes, list[memoryview]]":
    return _pickling().dumps_value(obj, out_of_band)  # type: ignore[no-any-return]


def _first_loads(data: bytes, buffers: "list[object] | None" = None) -> object:
    return _pickling().loads(data, buffers)


def _error_class(name: str) -> type[BaseException]:
    from . import _errors

    cls: type[BaseException] = getattr(_errors, name)
    return cls


def _before_fork() -> None:
    # Spare interpreters (see _process.py) end first: they are no reason for a child to fail.
    _interpool._end_spares()
    _interpool._python_fork(True)


def _own_datetime_types() -> None:
    """On CPython 3.13, import ``_datetime`` in the main interpreter before any worker exists.

    3.13's ``_datetime`` keeps static types shared by all interpreters. The first interpreter
    to import it readies them, allocating their ``tp_bases`` and ``tp_mro`` tuples from *its*
    heap; the interpreter that finalizes them last (a process-wide count reaching one) frees
    those tuples with its own allocator (``_PyTypes_FiniExtTypes``, CPython gh-136423; two
    interpreters readying them at once is gh-136421). When a worker was first (a task, or an
    isolated copy of orjson importing ``datetime``, or ``importlib.metadata`` in a worker's
    refusal message) and another interpreter ended last (a second worker, or the main
    interpreter at exit), that free corrupted the heap at shutdown. Imported here first, the
    types belong to the main interpreter, which also ends last. 3.14 readies them at start-up
    (gh-136583); 3.12 workers do not load ``_datetime`` (gh-117953)."""
    if sys.version_info[:2] != (3, 13):
        return
    try:
        import _datetime  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass  # a build without it: workers cannot load it either


def _prime_keyword_parsers() -> None:
    """On CPython 3.12.0-3.12.3, make in the main interpreter the keyword calls into extension
    functions that workers make (``pickle.loads(..., buffers=...)`` for out-of-band buffers).
    An extension function's argument parser keeps a tuple of its keyword names in a static,
    made by the first interpreter that calls it with keywords; a worker's tuple is freed with
    the worker, and the main interpreter later frees it again (gh-119213, fixed in 3.12.4:
    "double free or corruption" at exit). Made here first, the tuples are the main
    interpreter's. Pools on these versions need ``INTERPOOL_UNSAFE_PY312=1`` (see _process)."""
    if sys.version_info[:2] != (3, 12) or sys.version_info >= (3, 12, 4):
        return
    import pickle

    pickle.loads(pickle.dumps(None, 5), buffers=())


def configure() -> None:
    _interpool._configure(dumps=_first_dumps, loads=_first_loads, error_class=_error_class)
    sys._current_frames = _interpool.current_frames
    sys._current_exceptions = _interpool.current_exceptions
    if _interpool.interpreter_id() == 0:
        _own_datetime_types()
        _prime_keyword_parsers()
        # A child forked while worker interpreters live cannot survive (CPython gh-139759):
        # the Rust fork guard turns that into a clear exit, for forks made from Python.
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=lambda: _interpool._python_fork(False),
            after_in_child=lambda: _interpool._python_fork(False),
        )
