"""interpool: run Python in parallel on a pool of own-GIL subinterpreters.

``from interpool import InterpreterPoolExecutor`` is a drop-in replacement for the
``concurrent.futures`` executors for CPU-bound pure-Python work.
"""

from __future__ import annotations

from ._errors import (
    BrokenInterpreterPool,
    ExecutionFailed,
    NotShareableError,
    QueueClosed,
    QueueEmpty,
    QueueFull,
)
from ._executor import InterpreterPoolExecutor
from ._interpool import Queue, SharedBuffer

__version__ = "0.1.0"

__all__ = [
    "BrokenInterpreterPool",
    "ExecutionFailed",
    "InterpreterPoolExecutor",
    "NotShareableError",
    "Queue",
    "QueueClosed",
    "QueueEmpty",
    "QueueFull",
    "SharedBuffer",
    "__version__",
]
