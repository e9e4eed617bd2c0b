"""A progress bar for long runs: as_completed with tqdm when installed, plain text otherwise."""

from concurrent.futures import as_completed

from interpool import InterpreterPoolExecutor


def work(n: int) -> int:
    return sum(i * i for i in range(n))


def run_with_progress(pool: InterpreterPoolExecutor, items: list[int]) -> list[int]:
    futures = {pool.submit(work, n): i for i, n in enumerate(items)}
    results: list[int] = [0] * len(items)
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="task")
    except ImportError:
        bar = None
    for done, future in enumerate(as_completed(futures), 1):
        results[futures[future]] = future.result()
        if bar is not None:
            bar.update()
        elif done % 50 == 0 or done == len(items):
            print(f"{done}/{len(items)} done", flush=True)
    if bar is not None:
        bar.close()
    return results


if __name__ == "__main__":
    items = [20_000 + i for i in range(200)]
    with InterpreterPoolExecutor(2) as pool:
        results = run_with_progress(pool, items)
    assert results == [work(n) for n in items]
    print("all", len(results), "results in order")
