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


def test_native_run_and_amap() -> None:
    import interpool

    async def main() -> tuple[int, list[int], list[int]]:
        with interpool.InterpreterPoolExecutor(2) as pool:
            one = await pool.run(tasks.add3, 1, 2, c=3)
            ordered = [r async for r in pool.amap(tasks.square, range(20))]
            chunked = [r async for r in pool.amap(tasks.add2, range(30), range(30), chunksize=7)]
            return one, ordered, chunked

    one, ordered, chunked = asyncio.run(main())
    assert one == 6
    assert ordered == [i * i for i in range(20)]
    assert chunked == [2 * i for i in range(30)]


def test_amap_with_buffersize_stops_early_and_cancels_the_rest() -> None:
    import interpool

    async def main() -> tuple[list[int], dict[str, int]]:
        with interpool.InterpreterPoolExecutor(1) as pool:
            got = []
            async for r in pool.amap(tasks.sleep_then, [0.01] * 1000, range(1000), buffersize=3):
                got.append(r)
                if len(got) == 5:
                    break
            await asyncio.sleep(0.05)
            return got, pool.stats()

    got, stats = asyncio.run(main())
    assert got == [0, 1, 2, 3, 4]
    assert stats["submitted"] <= 5 + 3, "buffersize bounds how far amap runs ahead"


def test_awaiting_run_propagates_exceptions() -> None:
    import interpool

    async def main() -> None:
        with interpool.InterpreterPoolExecutor(1) as pool:
            await pool.run(tasks.fail, "async failure")

    import pytest

    with pytest.raises(ValueError, match="async failure"):
        asyncio.run(main())
