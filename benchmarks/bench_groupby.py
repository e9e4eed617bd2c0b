"""A chunked pandas group-by on 2 workers: interpool (pandas, numpy and pyarrow isolated by
the default, isolate="auto"; chunks lent without a copy; no call may go to the fallback
lane) against a forkserver process pool, threads and the calling thread.

Issue 26's benchmark, every executor side by side in one run, every result checked against
the sequential one. The job: a DataFrame of 3 M rows (a key of 1,000 groups, two float
columns) cut into 8 chunks; each task sums and counts both columns per key in its chunk, and
the caller adds the partial results. Timed: the whole job on a warm pool (chunks sent,
partials returned and combined), median of N runs. Memory: each executor runs in a fresh
process of its own, which samples the resident memory of its whole process tree (itself and
its children) every 5 ms; the peak is reported.

    python benchmarks/bench_groupby.py [--rows N] [--runs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import groupby_tasks as tasks

EXECUTORS = ["sequential", "interpool", "interpool zero_copy=False", "process (forkserver)", "threads"]
CHUNKS = 8


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, StopIteration):
            pass
    return total


def make(name: str) -> cf.Executor | None:
    from interpool import InterpreterPoolExecutor

    # isolate="auto" (the default): pandas, numpy and, where it is installed, pyarrow (a
    # pandas 3 DataFrame's str column index unpickles through it)
    if name == "interpool":
        return InterpreterPoolExecutor(2)
    if name == "interpool zero_copy=False":
        return InterpreterPoolExecutor(2, zero_copy=False)
    if name == "process (forkserver)":
        return cf.ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver"))
    if name == "threads":
        return cf.ThreadPoolExecutor(2)
    return None


def run_one(name: str, rows: int, runs: int) -> dict[str, Any]:
    """In a fresh process: time the job on `name` and sample the tree's peak RSS."""
    import pandas as pd

    df = tasks.frame(rows)
    chunks = [df.iloc[i * len(df) // CHUNKS : (i + 1) * len(df) // CHUNKS] for i in range(CHUNKS)]
    expected = tasks.partial(df)
    peak = [tree_rss(os.getpid())]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], tree_rss(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ex = make(name)
    try:

        def job() -> Any:
            parts = [tasks.partial(c) for c in chunks] if ex is None else list(ex.map(tasks.partial, chunks))
            return pd.concat(parts).groupby(level=0).sum()

        job()  # warm up: workers started, pandas imported
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            out = job()
            samples.append(time.perf_counter() - start)
            pd.testing.assert_frame_equal(out, expected)
        lane = getattr(ex, "stats", dict)().get("lane_submitted", 0)
        if lane:  # a benchmark of worker interpreters must not time the fallback lane
            raise AssertionError(f"{name}: {lane} calls ran in the fallback lane, not in workers")
    finally:
        if ex is not None:
            ex.shutdown()
        stop.set()
        sampler.join()
    return {"time": statistics.median(samples), "peak": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.rows, args.runs)))
        return
    import pandas as pd

    threaded = " free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else ""
    print(
        f"Python {sys.version.split()[0]}{threaded}, pandas {pd.__version__}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; {args.rows:,} rows in {CHUNKS} chunks, median of {args.runs} runs"
    )
    results = {}
    for name in EXECUTORS:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--rows", str(args.rows), "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results["process (forkserver)"]
    for name, r in results.items():
        print(
            f"  {name:<28} {r['time'] * 1e3:8.1f} ms  {base['time'] / r['time']:5.2f}x vs process   "
            f"peak RSS {r['peak'] / 2**20:7.1f} MiB ({r['peak'] / base['peak']:.2f}x the process tree)"
        )


if __name__ == "__main__":
    main()
