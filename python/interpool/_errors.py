"""Exceptions raised by interpool."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):
    from concurrent.futures.interpreter import BrokenInterpreterPool as _BrokenBase
else:  # 3.12 and 3.13 have no stdlib interpreter pool
    from concurrent.futures import BrokenExecutor as _BrokenBase


class BrokenInterpreterPool(_BrokenBase):
    """Raised when a worker interpreter failed to start (e.g. the initializer raised).

    A :class:`concurrent.futures.BrokenExecutor`; on Python 3.14 also the stdlib's
    ``concurrent.futures.interpreter.BrokenInterpreterPool``, so ``except`` clauses written
    for the stdlib executor keep working.
    """


class ExecutionFailed(RuntimeError):
    """An exception raised by a task in a worker interpreter.

    Attached as ``__cause__`` of the re-raised original exception (as the stdlib's
    ``concurrent.interpreters.ExecutionFailed`` is); raised directly when the original
    exception could not be sent back (e.g. it is not picklable).
    """

    def __init__(self, type_module: str, type_name: str, msg: str, formatted: str) -> None:
        self.type_module = type_module
        self.type_name = type_name
        self.msg = msg
        self.formatted = formatted
        super().__init__(f"{type_name}: {msg}" if msg else type_name)

    def __str__(self) -> str:
        head = super().__str__()
        return f"{head}\n\nUncaught in the worker interpreter:\n\n{self.formatted}"

    def __reduce__(self) -> tuple[type[ExecutionFailed], tuple[str, str, str, str]]:
        return (type(self), (self.type_module, self.type_name, self.msg, self.formatted))
