"""Static typing of the public API, checked by mypy in `make lint` (never executed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future
from typing import assert_type

import interpool
from interpool import InterpreterPoolExecutor, PoolStats, Queue, SharedBuffer, TaskFuture


def square(x: int) -> int:
    return x * x


def label(x: int, suffix: str) -> str:
    return f"{x}{suffix}"


async def use_async(pool: InterpreterPoolExecutor) -> None:
    assert_type(await pool.run(square, 3), int)
    assert_type(pool.amap(label, [1, 2], ["a", "b"]), AsyncIterator[str])


def use(pool: InterpreterPoolExecutor) -> None:
    executor: Executor = pool  # a concurrent.futures.Executor
    assert_type(pool.submit(square, 2), TaskFuture[int])
    assert_type(pool.schedule(square, (2,), timeout=1.0), TaskFuture[int])
    future: Future[int] = pool.submit(square, 2)  # a concurrent.futures.Future
    assert_type(pool.submit(square, 2).interrupt(), bool)
    assert_type(pool.map(square, range(3)), Iterator[int])
    assert_type(pool.map(label, range(3), ["x"] * 3, chunksize=2), Iterator[str])
    stats = pool.stats()
    assert_type(stats, PoolStats)
    assert_type(stats["busy"], int)
    assert_type(stats.get("lane_busy", 0), int)  # lane_* only with a fallback lane
    q: Queue[int] = Queue(10)
    assert_type(q.get(timeout=1.0), int)
    q.put(5, block=False)
    buf = SharedBuffer(bytearray(10))
    assert_type(len(buf), int)
    assert_type(memoryview(buf), memoryview)
    assert isinstance(interpool.__version__, str)
    del executor, future


def crunch(data: bytes) -> int:
    return len(data)


def parse(doc: str) -> list[str]:
    return doc.split()


def readme_interrupt_example(doc: str, data: bytes) -> None:
    """README's "Stopping tasks that run", as written there."""
    with InterpreterPoolExecutor(task_timeout=30) as pool:  # every task: at most 30 s running
        f = pool.schedule(parse, (doc,), timeout=0.5)  # this one: 0.5 s (pebble's API)
        f.result()  # raises TimeoutError, its __cause__ shows where the task was stopped
        g = pool.submit(crunch, data)
        g.interrupt()  # cancels it if queued, stops it if running; g ends cancelled
        pool.shutdown(interrupt=True)  # stop the running tasks too


def construct() -> None:
    InterpreterPoolExecutor(2, max_tasks_per_worker=10)
    InterpreterPoolExecutor(2, max_tasks_per_child=10)  # ProcessPoolExecutor's spelling
    InterpreterPoolExecutor(2, isolate=["numpy", "pandas"])
    InterpreterPoolExecutor(2, isolate="auto")
    InterpreterPoolExecutor(2, isolate=None)
    InterpreterPoolExecutor(2, isolate=("numpy",))


def use_fallback() -> None:
    with InterpreterPoolExecutor(2, fallback="thread") as threads, InterpreterPoolExecutor(fallback=None) as none:
        assert_type(threads.submit(square, 2), TaskFuture[int])
        del none
    warning: type[RuntimeWarning] = interpool.FallbackWarning
    del warning
