"""asyncio: await CPU-bound work without blocking the event loop."""

import asyncio

from interpool import InterpreterPoolExecutor


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def main() -> None:
    with InterpreterPoolExecutor(2) as pool:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        clock = asyncio.create_task(ticker())
        one = await pool.run(fib, 25)  # one call
        many = [r async for r in pool.amap(fib, range(20, 26))]  # results in order
        loop_result = await asyncio.get_running_loop().run_in_executor(pool, fib, 20)  # the stdlib way
        clock.cancel()
    assert one == 75025 and many[-1] == 75025 and loop_result == 6765
    print(f"fib(25) = {one}; amap -> {many}; the event loop ticked {ticks} times meanwhile")


if __name__ == "__main__":
    asyncio.run(main())
