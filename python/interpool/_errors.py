"""Exceptions raised by interpool.

On Python 3.14 each one also subclasses its stdlib counterpart, so ``except`` clauses written
for ``concurrent.futures.InterpreterPoolExecutor`` / ``concurrent.interpreters`` keep working
after switching the import.
"""

from __future__ import annotations

import queue
import sys
from types import SimpleNamespace

if sys.version_info >= (3, 14):
    from concurrent.futures.interpreter import BrokenInterpreterPool as _BrokenBase
    from concurrent.interpreters import ExecutionFailed as _ExecutionFailedBase
    from concurrent.interpreters import NotShareableError as _NotShareableBase
    from concurrent.interpreters import QueueEmpty as _EmptyBase
    from concurrent.interpreters import QueueFull as _FullBase
else:  # 3.12 and 3.13 have no stdlib interpreter pool
    from concurrent.futures import BrokenExecutor as _BrokenBase

    _ExecutionFailedBase = Exception
    _NotShareableBase = TypeError
    _EmptyBase = queue.Empty
    _FullBase = queue.Full

if sys.version_info >= (3, 13):
    from queue import ShutDown as _ClosedBase
else:
    _ClosedBase = Exception


class BrokenInterpreterPool(_BrokenBase):
    """Raised when a worker interpreter failed to start (e.g. the initializer raised).

    A :class:`concurrent.futures.BrokenExecutor`; on Python 3.14 also the stdlib's
    ``concurrent.futures.interpreter.BrokenInterpreterPool``.
    """


class NotShareableError(_NotShareableBase):
    """A callable, argument or result cannot be sent between interpreters (it cannot be
    pickled). A ``TypeError``; on 3.14 also ``concurrent.interpreters.NotShareableError``."""


class ExecutionFailed(_ExecutionFailedBase):
    """An exception raised by a task in a worker interpreter.

    Attached as ``__cause__`` of the re-raised original exception, like the stdlib's
    ``concurrent.interpreters.ExecutionFailed``; raised itself when the original exception
    could not be sent back (it is not picklable). ``type_name``, ``msg`` and ``formatted``
    (the remote traceback) describe the original; on 3.14 ``excinfo`` mirrors the stdlib's.
    """

    def __init__(self, type_module: str, type_name: str, msg: str, formatted: str) -> None:
        self.type_module = type_module
        self.type_name = type_name
        self.msg = msg
        self.formatted = formatted
        head = f"{type_name}: {msg}" if msg else type_name
        if sys.version_info >= (3, 14):
            name = type_name.rpartition(".")[2]
            kind = SimpleNamespace(__name__=name, __qualname__=type_name, __module__=type_module)
            info = SimpleNamespace(type=kind, msg=msg, formatted=head, errdisplay=formatted)
            super().__init__(info)
        else:
            super().__init__(head)
        self._head = head

    def __str__(self) -> str:
        return f"{self._head}\n\nUncaught in the worker interpreter:\n\n{self.formatted}"

    def __reduce__(self) -> tuple[type[ExecutionFailed], tuple[str, str, str, str]]:
        return (type(self), (self.type_module, self.type_name, self.msg, self.formatted))


class QueueEmpty(_EmptyBase):
    """``Queue.get`` found no item (non-blocking, or by the timeout). A ``queue.Empty``."""


class QueueFull(_FullBase):
    """``Queue.put`` found no room (non-blocking, or by the timeout). A ``queue.Full``."""


class QueueClosed(_ClosedBase):
    """The queue was closed: ``put`` is refused, ``get`` has drained every item. A
    ``queue.ShutDown`` on 3.13+."""
