"""Exceptions raised by interpool.

On Python 3.14, where the stdlib has an interpreter pool, interpool uses the stdlib's own
classes wherever they can carry the information: ``ExecutionFailed``, ``NotShareableError``,
``QueueEmpty`` and ``QueueFull`` are ``concurrent.interpreters``' classes and
``BrokenInterpreterPool`` is ``concurrent.futures.interpreter``'s, so code that checks
``type(exc) is concurrent.interpreters.ExecutionFailed`` or catches the stdlib classes keeps
working after switching the import. On 3.12 and 3.13 they are interpool's own classes with
the same bases (``TypeError``, ``queue.Empty``, ``queue.Full``, ``BrokenExecutor``).

Always build an ``ExecutionFailed`` with :func:`execution_failed`, and the exception of a task
that was stopped (worker or fallback lane) with :func:`stopped_error`.
"""

from __future__ import annotations

import queue
import sys
from types import SimpleNamespace
from typing import Any

TYPE_CHECKING = False

if sys.version_info >= (3, 13):
    from queue import ShutDown as _ClosedBase
else:
    _ClosedBase = Exception

if TYPE_CHECKING or sys.version_info < (3, 14):
    from concurrent.futures import BrokenExecutor

    class BrokenInterpreterPool(BrokenExecutor):
        """A worker interpreter failed to start (e.g. the initializer raised): the pool is
        unusable. A :class:`concurrent.futures.BrokenExecutor` (on 3.14, the stdlib's
        ``concurrent.futures.interpreter.BrokenInterpreterPool`` itself)."""

    class NotShareableError(TypeError):
        """A callable, argument or result cannot be sent between interpreters (it has no
        native form and cannot be pickled). A ``TypeError`` (on 3.14, the stdlib's
        ``concurrent.interpreters.NotShareableError`` itself)."""

    class QueueEmpty(queue.Empty):
        """``Queue.get`` found no item (non-blocking, or by the timeout). A ``queue.Empty``."""

    class QueueFull(queue.Full):
        """``Queue.put`` found no room (non-blocking, or by the timeout). A ``queue.Full``."""

    class ExecutionFailed(Exception):
        """An exception raised by a task in a worker interpreter: the ``__cause__`` of the
        re-raised original exception, or raised itself when the original could not be sent
        back. ``type_module``, ``type_name``, ``msg`` and ``formatted`` (the remote traceback)
        describe the original. (On 3.14, the stdlib's ``concurrent.interpreters.ExecutionFailed``
        itself, with the same attributes and its ``excinfo``.)"""

        type_module: str
        type_name: str
        msg: str
        formatted: str

        if sys.version_info >= (3, 14):  # for type checkers: the stdlib class's constructor
            excinfo: Any

            def __init__(self, excinfo: Any) -> None: ...

        def __str__(self) -> str:
            return _failure_text(self)

        def __reduce__(self) -> tuple[object, tuple[str, str, str, str]]:
            return (execution_failed, (self.type_module, self.type_name, self.msg, self.formatted))

else:
    import copyreg

    # Re-exported as they are (the stdlib's own classes).
    from concurrent.futures.interpreter import BrokenInterpreterPool as BrokenInterpreterPool
    from concurrent.interpreters import ExecutionFailed as ExecutionFailed
    from concurrent.interpreters import NotShareableError as NotShareableError
    from concurrent.interpreters import QueueEmpty as QueueEmpty
    from concurrent.interpreters import QueueFull as QueueFull

    def _reduce_execution_failed(exc: ExecutionFailed) -> tuple[object, tuple[str, str, str, str]]:
        info = exc.excinfo
        kind = info.type
        return (
            execution_failed,
            (kind.__module__, kind.__qualname__, info.msg, getattr(exc, "formatted", info.errdisplay)),
        )

    # The stdlib class cannot be pickled as it is (its __init__ needs the excinfo object, its
    # args hold a str); teach pickle to rebuild it.
    copyreg.pickle(ExecutionFailed, _reduce_execution_failed)


def _failure_text(exc: ExecutionFailed) -> str:
    head = f"{exc.type_name}: {exc.msg}" if exc.msg else exc.type_name
    return f"{head}\n\nUncaught in the interpreter:\n\n{exc.formatted}"  # the stdlib's wording


def execution_failed(type_module: str, type_name: str, msg: str, formatted: str) -> ExecutionFailed:
    """An ``ExecutionFailed`` for an exception of type ``type_module.type_name`` with message
    ``msg`` and remote traceback ``formatted``."""
    if sys.version_info >= (3, 14):
        head = f"{type_name}: {msg}" if msg else type_name
        kind = SimpleNamespace(__name__=type_name.rpartition(".")[2], __qualname__=type_name, __module__=type_module)
        exc = ExecutionFailed(SimpleNamespace(type=kind, msg=msg, formatted=head, errdisplay=formatted))
    else:
        exc = ExecutionFailed(f"{type_name}: {msg}" if msg else type_name)
    exc.type_module, exc.type_name, exc.msg, exc.formatted = type_module, type_name, msg, formatted
    return exc


def stopped_error(
    why: str, timeout: float | None, cause: BaseException | None = None, note: str | None = None
) -> BaseException | None:
    """The exception of a task that was asked to stop (``why``: ``"timeout"`` or
    ``"interrupt"``), worded once for worker tasks (``_dispatch``) and the fallback lane's:
    ``None`` for an interrupted one (its future ends cancelled); for one stopped by its time
    limit a ``TimeoutError``, chained from where it stopped (``cause``, with its traceback), or
    with ``note`` saying why there is none: it returned anyway (``STOP_RESULT_DROPPED``), it was
    given up while stuck (``_stuck_note``), or its lane process was ended. The texts that the
    extension shares (``STOP_*``, ``_stuck_note``) are worded in ``src/interrupt.rs``."""
    if why == "interrupt":
        return None
    limit = f"its {timeout:g}s timeout" if timeout is not None else "its timeout"
    error = TimeoutError(f"the task ran longer than {limit} and was stopped")
    if cause is not None:
        error.__cause__ = cause
    if note is not None:
        error.add_note(note)
    return error


class FallbackWarning(RuntimeWarning):
    """Calls of a function run in the executor's fallback lane (a process or a thread of the
    main interpreter), not in worker interpreters, because a module they need cannot load in
    an own-GIL interpreter. Emitted once per function; the message names the module, the
    lane, why, and what to do (``isolate=[...]``, or ``fallback=None`` to turn the lane off).
    A warnings filter that turns it into an error (``-W error``) turns the fallback off too:
    the call then fails with this warning, chained from the ImportError."""


class QueueClosed(_ClosedBase):
    """The queue was closed: ``put`` is refused, ``get`` has drained every item. A
    ``queue.ShutDown`` on 3.13+."""
