"""Static typing of the public API, checked by mypy in `make lint` (never executed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future
from typing import assert_type

import interpool
from interpool import InterpreterPoolExecutor, Queue, SharedBuffer


def square(x: int) -> int:
    return x * x


def label(x: int, suffix: str) -> str:
    return f"{x}{suffix}"


async def use_async(pool: InterpreterPoolExecutor) -> None:
    assert_type(await pool.run(square, 3), int)
    assert_type(pool.amap(label, [1, 2], ["a", "b"]), AsyncIterator[str])


def use(pool: InterpreterPoolExecutor) -> None:
    executor: Executor = pool  # a concurrent.futures.Executor
    assert_type(pool.submit(square, 2), Future[int])
    assert_type(pool.map(square, range(3)), Iterator[int])
    assert_type(pool.map(label, range(3), ["x"] * 3, chunksize=2), Iterator[str])
    assert_type(pool.stats(), dict[str, int])
    q: Queue[int] = Queue(10)
    assert_type(q.get(timeout=1.0), int)
    q.put(5, block=False)
    buf = SharedBuffer(bytearray(10))
    assert_type(len(buf), int)
    assert_type(memoryview(buf), memoryview)
    assert isinstance(interpool.__version__, str)
    del executor


def construct() -> None:
    InterpreterPoolExecutor(2, isolate=["numpy", "pandas"])
    InterpreterPoolExecutor(2, isolate="auto")
    InterpreterPoolExecutor(2, isolate=None)
    InterpreterPoolExecutor(2, isolate=("numpy",))


def use_fallback() -> None:
    with InterpreterPoolExecutor(2, fallback="thread") as threads, InterpreterPoolExecutor(fallback=None) as none:
        assert_type(threads.submit(square, 2), Future[int])
        del none
    warning: type[RuntimeWarning] = interpool.FallbackWarning
    del warning
