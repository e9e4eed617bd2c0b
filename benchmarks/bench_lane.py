"""A mixed workload on interpool with its fallback lane vs ProcessPoolExecutor alone.

Tasks of two kinds with the same CPU work (``rounds`` passes over a list of ints): pure-Python
ones (``lane_pure``), which interpool runs in worker interpreters, and ones whose module
imports numpy (when installed) and faulthandler (``lane_ext``), which cannot load in a worker
and run in interpool's fallback lane, a process pool it owns. For each share of pure-Python
tasks (0%, 25%, ..., 100%, interleaved), the same list of calls is submitted to
``InterpreterPoolExecutor(W)`` and to ``ProcessPoolExecutor(W, forkserver)``, best of
``--repeat`` runs each, on warm pools (processes started, interpool's lane already knows
the ``lane_ext`` function), alternating which goes first, and every result is checked. The
ratio is ProcessPool time over interpool time. Expected: about 1.0 with no pure-Python
tasks (both run them in processes; "never slower"), growing with the pure-Python share.

    python benchmarks/bench_lane.py [--tasks N] [--workers W] [--rounds R] [--repeat K]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interpool import FallbackWarning, InterpreterPoolExecutor

import lane_ext
import lane_pure

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def calls(tasks: int, share: float) -> list[Callable[[list[int], int], int]]:
    """``tasks`` functions, pure-Python ones spread evenly at the given share."""
    return [lane_pure.squares if int((i + 1) * share) > int(i * share) else lane_ext.squares for i in range(tasks)]


def run(pool: cf.Executor, fns: list[Callable[[list[int], int], int]], values: list[int], rounds: int) -> float:
    expected = sum(x * x for x in values) * rounds
    t0 = time.perf_counter()
    futures = [pool.submit(fn, values, rounds) for fn in fns]
    results = [f.result() for f in futures]
    elapsed = time.perf_counter() - t0
    if results != [expected] * len(fns):
        raise AssertionError("wrong results")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=50, help="passes over the list per task (task size)")
    parser.add_argument("--size", type=int, default=200, help="ints in each task's list")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    values = list(range(args.size))
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.workers} workers; {args.tasks} tasks of "
        f"{args.rounds} x {args.size} squares; extension tasks use {lane_ext.USES}; best of {args.repeat}"
    )
    warnings.simplefilter("ignore", FallbackWarning)  # expected: lane_ext.squares moves to the lane
    interpool = InterpreterPoolExecutor(args.workers)
    process = cf.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context(method))
    pools: list[tuple[str, cf.Executor]] = [("interpool + lane", interpool), (f"ProcessPool ({method})", process)]
    try:
        warm = calls(8 * args.workers, 0.5)
        for _, pool in pools:  # start every process and worker; the lane learns lane_ext.squares
            run(pool, warm, values, 1)
            run(pool, warm, values, 1)
        stats = interpool.stats()
        assert stats["lane_functions"] == 1 and stats["lane_workers"] >= 1, stats
        header = f"{'pure-Python share':>18} | {'interpool + lane':>16} | {'ProcessPool':>12} | {'ratio':>6}"
        print(header)
        print("-" * len(header))
        ratios: dict[float, float] = {}
        for share in SHARES:
            fns = calls(args.tasks, share)
            best: dict[str, float] = {}
            for repeat in range(args.repeat):
                for name, pool in pools if repeat % 2 == 0 else pools[::-1]:  # neither always goes second
                    elapsed = run(pool, fns, values, args.rounds)
                    best[name] = min(best.get(name, elapsed), elapsed)
            mine, theirs = best["interpool + lane"], best[pools[1][0]]
            ratios[share] = theirs / mine
            print(f"{share:>17.0%} | {mine * 1000:>13.0f} ms | {theirs * 1000:>9.0f} ms | {theirs / mine:>5.2f}x")
        lane = interpool.stats()
    finally:
        for _, pool in pools:
            pool.shutdown()
    never_slower = min(ratios.values()) >= 0.9  # 10%: the noise of a shared 2-core machine
    growing = ratios[1.0] > ratios[0.0]
    print(
        f"lane: {lane['lane_completed']} calls in {lane['lane_workers']} processes; "
        f"never slower (ratio >= 0.9 everywhere): {'met' if never_slower else 'MISSED'}; "
        f"faster as the pure-Python share grows ({ratios[0.0]:.2f}x -> {ratios[1.0]:.2f}x): "
        f"{'met' if growing else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
