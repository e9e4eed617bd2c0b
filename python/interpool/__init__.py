"""interpool: run Python in parallel on a pool of own-GIL subinterpreters.

``from interpool import InterpreterPoolExecutor`` is a drop-in replacement for the
``concurrent.futures`` executors for CPU-bound pure-Python work.

Every worker interpreter imports this package, so it loads its submodules lazily (PEP 562):
a worker pays only for what it uses, which keeps pool start-up fast and workers small.
"""

from . import _setup
from ._interpool import Constant, Queue, SharedBuffer, TaskInterrupted

_setup.configure()  # pickler, exception classes, fork hooks: once per interpreter

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from typing import Any

    from ._dispatch import TaskFuture
    from ._errors import (
        BrokenInterpreterPool,
        ExecutionFailed,
        FallbackWarning,
        NotShareableError,
        QueueClosed,
        QueueEmpty,
        QueueFull,
    )
    from ._executor import InterpreterPoolExecutor, PoolStats

__version__ = "0.1.0"

__all__ = [
    "BrokenInterpreterPool",
    "Constant",
    "ExecutionFailed",
    "FallbackWarning",
    "InterpreterPoolExecutor",
    "NotShareableError",
    "PoolStats",
    "Queue",
    "QueueClosed",
    "QueueEmpty",
    "QueueFull",
    "SharedBuffer",
    "TaskFuture",
    "TaskInterrupted",
    "__version__",
]

_ERRORS = {
    "BrokenInterpreterPool",
    "ExecutionFailed",
    "FallbackWarning",
    "NotShareableError",
    "QueueClosed",
    "QueueEmpty",
    "QueueFull",
}


def __getattr__(name: str) -> "Any":
    if name in ("InterpreterPoolExecutor", "PoolStats"):
        from . import _executor

        return getattr(_executor, name)
    if name == "TaskFuture":  # what submit() and schedule() return
        from ._dispatch import TaskFuture

        return TaskFuture
    if name in _ERRORS:
        from . import _errors

        return getattr(_errors, name)
    raise AttributeError(f"module 'interpool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
