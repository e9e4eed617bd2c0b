"""asyncio integration: loop.run_in_executor and asyncio.wrap_future."""

from __future__ import annotations

import asyncio

import tasks
from conftest import make_executor


def test_run_in_executor(kind: str) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        with make_executor(kind, 2) as pool:
            return list(await asyncio.gather(*(loop.run_in_executor(pool, tasks.square, i) for i in range(10))))

    assert asyncio.run(main()) == [i * i for i in range(10)]


def test_wrap_future_and_exceptions(kind: str) -> None:
    async def main() -> tuple[int, str]:
        with make_executor(kind, 1) as pool:
            value = await asyncio.wrap_future(pool.submit(tasks.add2, 2, 3))
            try:
                await asyncio.wrap_future(pool.submit(tasks.fail, "async boom"))
            except ValueError as exc:
                return value, str(exc)
        raise AssertionError("no exception")

    assert asyncio.run(main()) == (5, "async boom")


def test_event_loop_stays_responsive_while_tasks_run() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        with make_executor("interpool", 1) as pool:
            slow = loop.run_in_executor(pool, tasks.sleep_then, 0.3, "done")
            ticks = 0
            while not slow.done():
                await asyncio.sleep(0.01)
                ticks += 1
            assert await slow == "done"
        return ticks

    assert asyncio.run(main()) >= 10
