"""How CPU-bound work scales with workers, on every executor side by side (issue 15's
"scale beyond 2 cores" table).

For each worker count W (1, 2, 4, 8, 16 by default, up to the machine's cores) and each
executor (interpool, the stdlib InterpreterPoolExecutor where present, ProcessPoolExecutor
with forkserver, ThreadPoolExecutor): 2 x W tasks of a CPU-bound kernel (the ``total += i*i``
loop and pyperformance's n-body), speed-up = the best of 5 sequential runs of one task in the
main interpreter x tasks / the best of 5 parallel runs (noise only ever adds time, so minima
are the stable estimate). At the largest W, also the throughput of 100k tiny tasks via
``submit`` (all submitted, then gathered) and ``map(chunksize=tasks/(4 x W))``. Every result
is checked. The verdict line applies the issue's target: at least 14x at 16 workers on the
CPU-bound kernels and never behind the process pool.

Meant for a free-threaded build (3.14t), where ThreadPoolExecutor scales too::

    python benchmarks/scaling.py [--workers 1,2,4,8,16] [--quick] [--out FILE]

The report is printed and written to ``scaling.md`` in the suite's results directory (``--out``
elsewhere, ``--out -`` not at all). ``make bench-scaling`` runs it on the 3.14t venv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import suite  # the executors and the machine line, shared with the suite

import workloads

PEERS = ("interpool", "stdlib InterpreterPool", "ProcessPool (forkserver)", "ThreadPool")


def speedups(factory: suite.Factory, workers: int, kernels: dict[str, tuple[Any, int]]) -> dict[str, float]:
    expected = {name: fn(arg) for name, (fn, arg) in kernels.items()}
    out = {}
    with factory(workers) as pool:
        list(pool.map(workloads.sleep_for, [0.01] * workers))  # every worker up
        time.sleep(0.3)  # let what earlier pools left running settle
        tasks = 2 * workers
        for name, (fn, arg) in kernels.items():
            out[name] = suite.speedup(pool, fn, arg, expected[name], tasks)
    return out


def throughput(factory: suite.Factory, workers: int, count: int) -> dict[str, float]:
    expected = list(range(count))
    with factory(workers) as pool:
        list(pool.map(workloads.sleep_for, [0.01] * workers))
        t0 = time.perf_counter()
        futures = [pool.submit(abs, -i) for i in range(count)]
        assert [f.result() for f in futures] == expected
        submit = count / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert list(pool.map(abs, range(count), chunksize=max(1, count // (4 * workers)))) == expected
        mapped = count / (time.perf_counter() - t0)
    return {"submit": submit, "map": mapped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts (capped at the machine's cores)")
    parser.add_argument("--executors", default=",".join(PEERS), help="executor names (prefixes) to run")
    parser.add_argument("--quick", action="store_true", help="small kernels (a smoke run)")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "scaling.md"),
        help="also write the report to this file ('-': do not)",
    )
    args = parser.parse_args()
    counts = sorted({int(w) for w in args.workers.split(",") if 0 < int(w) <= max(2, suite.CORES)})
    found = suite.executors([s for s in args.executors.split(",") if s])
    found = {name: factory for name, factory in found.items() if name in PEERS}
    kernels: dict[str, tuple[Any, int]] = {
        "spin": (workloads.spin, 300_000 if args.quick else 3_000_000),
        "nbody": (workloads.nbody, 2_000 if args.quick else 15_000),
    }
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in found}
    rates: dict[str, dict[str, float]] = {}
    for name, factory in found.items():
        for w in counts:
            print(f"  {name}: {w} workers", file=sys.stderr, flush=True)
            results[name][w] = speedups(factory, w, kernels)
        print(f"  {name}: tiny tasks at {counts[-1]} workers", file=sys.stderr, flush=True)
        rates[name] = throughput(factory, counts[-1], 20_000 if args.quick else 100_000)

    names = list(found)
    lines = [
        "# CPU-bound scaling",
        "",
        f"Machine: {suite.machine_line()}.",
        "",
        "Speed-up over running the tasks one after another in the main interpreter (2 tasks per",
        "worker, best of 5 runs each; ideal: the worker count, up to the cores).",
        "",
    ]
    for kernel in kernels:
        lines += [f"## {kernel}", "", "| workers | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for w in counts:
            lines.append(f"| {w} | " + " | ".join(f"{results[n][w][kernel]:.1f}x" for n in names) + " |")
        lines.append("")
    lines += [f"## Tiny tasks at {counts[-1]} workers", "", "| tasks/s | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for key, label in (("submit", "via submit"), ("map", "via map, chunksize=auto")):
        lines.append(f"| {label} | " + " | ".join(f"{rates[n][key]:,.0f}" for n in names) + " |")
    lines.append("")
    if "interpool" in results:
        top = counts[-1]
        ours = min(results["interpool"][top].values())
        procs = results.get("ProcessPool (forkserver)", {})
        behind = [
            f"{w} workers {k}"
            for w in counts
            for k in kernels
            if procs and results["interpool"][w][k] < procs[w][k] * 0.95  # 5%: run-to-run noise
        ]
        want = min(14.0, 14.0 * top / 16)
        lines.append(
            f"Verdict: interpool's lowest speed-up at {top} workers is {ours:.1f}x (target {want:.1f}x at this "
            f"worker count: 14x at 16); behind the process pool (by more than 5%): "
            + (", ".join(behind) or "never" if procs else "not run")
            + "."
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out != "-":
        with open(args.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
