"""Workers calling BLAS at once: interpool's ``blas_threads`` against the library's default.

Issue 26, item 4. With ``isolate=["numpy"]`` every worker links to the one BLAS library the
process loads (numpy's OpenBLAS), and that library has one thread pool of ``cores`` threads;
N workers multiplying matrices at once share it. ``blas_threads`` (default ``"auto"``: cores
// max_workers, at least 1) limits it while the pool lives, as loky limits the BLAS threads
of its worker processes.

Two workloads, each as ``--tasks`` calls spread over the workers: large products (800x800,
6 per call) and many medium ones (256x256, 60 per call). Executors, side by side in one run,
interleaved round by round, one pool at a time (the limit is process-wide): interpool with
``blas_threads=None`` (the library's default), ``"auto"``, and each count from 1 to the
cores; ThreadPoolExecutor (the same shared library, its default threads); a forkserver
ProcessPoolExecutor (a library per process, default threads: what an unconfigured process
pool does) and the same with OPENBLAS_NUM_THREADS set to cores // workers in its processes
(loky's default); and the calls one after the other in this thread. Every result is checked
against the sequential one; the BLAS thread count the workers saw is printed. Ratios are the
``blas_threads=None`` time over each (higher is faster).

    python benchmarks/bench_blas.py [--workers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# The tasks are the tests' (tests/blas_tasks.py), as bench_dask.py uses tests/dask_cluster.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import blas_tasks as tasks

from interpool import InterpreterPoolExecutor


def _limited_child(threads: int) -> None:
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)


def executors(workers: int, cores: int) -> dict[str, Callable[[], cf.Executor]]:
    made: dict[str, Callable[[], cf.Executor]] = {
        "interpool blas_threads=None": lambda: InterpreterPoolExecutor(workers, isolate=["numpy"], blas_threads=None),
        'interpool blas_threads="auto"': lambda: InterpreterPoolExecutor(workers, isolate=["numpy"]),
    }
    for n in range(1, cores + 1):
        made[f"interpool blas_threads={n}"] = lambda n=n: InterpreterPoolExecutor(  # type: ignore[misc]
            workers, isolate=["numpy"], blas_threads=n
        )
    made["threads"] = lambda: cf.ThreadPoolExecutor(workers)
    forkserver = mp.get_context("forkserver")
    made["process (forkserver)"] = lambda: cf.ProcessPoolExecutor(workers, mp_context=forkserver)
    limited = max(1, cores // workers)
    made[f"process, OPENBLAS_NUM_THREADS={limited}"] = lambda: cf.ProcessPoolExecutor(
        workers, mp_context=forkserver, initializer=_limited_child, initargs=(limited,)
    )
    return made


def run_batch(executor: cf.Executor, n: int, reps: int, count: int) -> list[float]:
    return list(executor.map(tasks.matmuls, [n] * count, [reps] * count, range(count)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=None, help="workers per executor (default: the cores)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per executor and workload")
    parser.add_argument("--tasks", type=int, default=None, help="calls per workload (default: 4 per worker)")
    args = parser.parse_args()
    cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    workers = args.workers or cores
    count = args.tasks or 4 * workers
    workloads = {"large (800x800, 6 products)": (800, 6), "medium (256x256, 60 products)": (256, 60)}
    expected = {name: [tasks.matmuls(n, reps, seed) for seed in range(count)] for name, (n, reps) in workloads.items()}
    sequential = {}
    for name, (n, reps) in workloads.items():
        start = time.perf_counter()
        for seed in range(count):
            tasks.matmuls(n, reps, seed)
        sequential[name] = time.perf_counter() - start
    load = os.getloadavg()[0]
    threaded = " free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else ""
    version = sys.version.split()[0] + threaded
    print(f"Python {version}, {cores} cores, {workers} workers, {count} calls each, load {load:.1f}")

    made = executors(workers, cores)
    times: dict[tuple[str, str], list[float]] = {}
    seen: dict[str, Any] = {}
    failures = 0
    # The BLAS library is process-wide, and so is the limit of the pools alive: one pool at a
    # time, made and warmed (workers started, numpy imported) before each timed batch.
    for _round in range(args.rounds):
        for name, (n, reps) in workloads.items():
            for label, make in made.items():
                with make() as pool:
                    run_batch(pool, 64, 1, workers)
                    if label.startswith("interpool"):
                        seen[label] = sorted(set(pool.map(tasks.blas_threads, range(workers))))
                    start = time.perf_counter()
                    result = run_batch(pool, n, reps, count)
                    times.setdefault((name, label), []).append(time.perf_counter() - start)
                if result != expected[name]:
                    failures += 1
                    print(f"  WRONG RESULT: {label}, {name}")
    for name in workloads:
        base = statistics.median(times[(name, "interpool blas_threads=None")])
        print(f"\n{name}: sequential in this thread {sequential[name]:.2f} s")
        for label in made:
            t = statistics.median(times[(name, label)])
            note = f"  (BLAS threads in its workers: {seen[label]})" if label in seen else ""
            print(f"  {label:40s} {t:7.2f} s  {base / t:5.2f}x{note}")
    print(f"\nload at the end {os.getloadavg()[0]:.1f}; results checked: {'all equal' if not failures else failures} ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
