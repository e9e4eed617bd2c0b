"""Module-level task functions for the tests (workers import them by name)."""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def spin(n: int) -> int:
    """CPU-bound pure-Python work: sum of squares below ``n``."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_expected(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


def whoami() -> dict[str, object]:
    """Where the task runs: interpreter id, thread, process, and whether interpool imports."""
    import threading

    import interpool
    from interpool import _interpool

    return {
        "interp": _interpool.interpreter_id(),
        "thread": threading.get_native_id(),
        "pid": os.getpid(),
        "version": interpool.__version__,
    }


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def raise_system_exit() -> None:
    raise SystemExit(3)


def record_init(path: str, marker: str) -> None:
    with open(path, "a") as f:
        f.write(marker + "\n")


def broken_init() -> None:
    raise RuntimeError("initializer exploded")


def interpreter_id() -> int:
    from interpool import _interpool

    return _interpool.interpreter_id()


def nested_pool_sum(n: int) -> int:
    from interpool import InterpreterPoolExecutor

    with InterpreterPoolExecutor(2) as pool:
        return sum(pool.map(square, range(n)))
