"""interpool demo: the same CPU-bound pure-Python job on every executor, side by side.

Runs ``TASKS`` equal tasks (the ``total += i*i`` loop) sequentially in the main
interpreter, then on a ThreadPoolExecutor, a ProcessPoolExecutor, the stdlib
InterpreterPoolExecutor (Python 3.14+) and interpool's InterpreterPoolExecutor, each with
one worker per core. Every result is checked. Wall times include creating and shutting down
the pool, as a user's script would pay them; ratios are the numbers to compare, since
absolute times on shared machines are noisy.

    python benchmarks/demo.py [--tasks N] [--size N] [--workers N]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import interpool

import workloads


def run_sequential(tasks: int, size: int, workers: int) -> list[int]:
    return [workloads.spin(size) for _ in range(tasks)]


def make_pool_runner(factory: Callable[[int], cf.Executor]) -> Callable[[int, int, int], list[int]]:
    def run(tasks: int, size: int, workers: int) -> list[int]:
        with factory(workers) as pool:
            return list(pool.map(workloads.spin, [size] * tasks))

    return run


def executors() -> list[tuple[str, Callable[[int, int, int], list[int]]]]:
    import multiprocessing as mp

    found: list[tuple[str, Callable[[int, int, int], list[int]]]] = [
        ("sequential (main interpreter)", run_sequential),
        ("ThreadPoolExecutor", make_pool_runner(lambda w: cf.ThreadPoolExecutor(w))),
        (
            "ProcessPoolExecutor (forkserver)",
            make_pool_runner(lambda w: cf.ProcessPoolExecutor(w, mp_context=mp.get_context("forkserver"))),
        ),
    ]
    std = getattr(cf, "InterpreterPoolExecutor", None)
    if std is not None:
        found.append(("stdlib InterpreterPoolExecutor", make_pool_runner(lambda w: std(w))))
    found.append(
        ("interpool.InterpreterPoolExecutor", make_pool_runner(lambda w: interpool.InterpreterPoolExecutor(w)))
    )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, default=cores, help="pool size (default: cores)")
    parser.add_argument("--tasks", type=int, default=None, help="number of tasks (default: 4 x workers)")
    parser.add_argument("--size", type=int, default=4_000_000, help="loop length per task")
    parser.add_argument("--repeat", type=int, default=3, help="runs per executor; the best is reported")
    args = parser.parse_args()
    tasks = args.tasks or 4 * args.workers
    expected = [workloads.spin_expected(args.size)] * tasks

    gil = "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL"
    print(f"Python {platform.python_version()} ({gil}), {platform.machine()}, {cores} cores")
    print(f"workload: {tasks} tasks x spin({args.size:,}), {args.workers} workers, best of {args.repeat}")
    print("(wall time includes pool start-up and shutdown)\n")

    times: dict[str, float] = {}
    for name, run in executors():
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run(tasks, args.size, args.workers)
            best = min(best, time.perf_counter() - t0)
            if result != expected:
                print(f"{name}: WRONG RESULT", file=sys.stderr)
                return 1
        times[name] = best
        print(f"  ran {name}", file=sys.stderr, flush=True)

    seq = times["sequential (main interpreter)"]
    ours = times["interpool.InterpreterPoolExecutor"]
    print(f"| {'executor':<34} | {'wall time':>10} | {'speed-up vs sequential':>22} | {'interpool is faster by':>22} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 24}|{'-' * 24}|")
    for name, t in times.items():
        print(f"| {name:<34} | {t * 1000:>8.0f}ms | {seq / t:>21.2f}x | {t / ours:>21.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
