"""Isolation's bill (issue 23, item 6): what an isolated pandas + numpy worker costs, against a
forkserver ProcessPoolExecutor worker, in one run.

Each round runs one fresh child process per executor, the executors taking turns. A child
creates the pool (W workers), times the first result of a task that imports pandas (and so
numpy) inside the function, then has every worker run it (a rendezvous of naps keeps each
worker busy once), and measures PSS from ``/proc/PID/smaps_rollup``: for interpool the
process's PSS after minus before the pool, divided by W (the copies, the interpreters'
heaps); for the process pool the sum of its worker processes' PSS divided by W (the
forkserver itself is not counted: it serves every pool of the program). Results are checked.

    python benchmarks/bench_bill.py [--rounds 3] [--workers 2]
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
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MiB = 1024 * 1024
N = 3000
EXPECTED = N * (N - 1) // 2


def pss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss")


def child(kind: str, workers: int) -> dict[str, Any]:
    import auto_tasks

    import interpool

    if kind == "forkserver":  # the server is per program: start it first, as a later pool finds it
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver")) as warm:
            warm.submit(abs, 1).result()
    base = pss()
    t0 = time.perf_counter()
    pool: cf.Executor
    if kind == "interpool":
        pool = interpool.InterpreterPoolExecutor(workers)
    else:
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"))
    with pool:
        total, _ = pool.submit(auto_tasks.pandas_sum, N).result()
        first = time.perf_counter() - t0
        assert total == EXPECTED, total
        naps = [pool.submit(auto_tasks.nap, 0.5) for _ in range(workers)]
        [f.result() for f in naps]
        results = [f.result() for f in [pool.submit(auto_tasks.pandas_sum, N) for _ in range(4 * workers)]]
        assert all(total == EXPECTED for total, _ in results)
        time.sleep(0.2)
        if kind == "interpool":
            per_worker = (pss() - base) / workers
            stats = pool.stats()  # type: ignore[attr-defined]
            assert stats.get("lane_submitted") == 0 and stats["isolated_files"] > 0, stats
            extra = {"isolated_files": stats["isolated_files"] // workers}
        else:
            pids = list(pool._processes)  # type: ignore[attr-defined]
            per_worker = sum(pss(pid) for pid in pids) / len(pids)
            extra = {}
    return {"first": first, "pss": per_worker, **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", choices=["interpool", "forkserver"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.workers)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"interpool": [], "forkserver": []}
    for i in range(args.rounds):
        for kind in ("interpool", "forkserver") if i % 2 == 0 else ("forkserver", "interpool"):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--workers", str(args.workers)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{kind} failed:\n{done.stdout}\n{done.stderr}")
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.workers} workers, {args.rounds} rounds")
    print("| | first result (pandas imported in the task) | PSS per worker |\n|---|---|---|")
    for kind, label in (
        ("interpool", "interpool, isolate='auto' (default)"),
        ("forkserver", "ProcessPool (forkserver)"),
    ):
        firsts = [r["first"] * 1e3 for r in runs[kind]]
        psses = [r["pss"] / MiB for r in runs[kind]]
        print(
            f"| {label} | {statistics.median(firsts):.0f} ms ({min(firsts):.0f}-{max(firsts):.0f}) "
            f"| {statistics.median(psses):.1f} MiB ({min(psses):.1f}-{max(psses):.1f}) |"
        )
    print(f"isolated files per interpool worker: {runs['interpool'][0].get('isolated_files')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
