"""numpy on 2 workers: interpool with isolate=["numpy"] vs a process pool, threads, sequential.

Issue 12's benchmark, every executor side by side in one run, every result checked against
the sequential one:

* workload: per-row features of a (rows x 1024) float64 array (mean, std, sort, quantiles,
  rfft, convolve, histogram, cumsum, dot: many small numpy calls per row), in 8 blocks on 2
  workers; output (rows x 12). interpool and threads view one input and one output
  ``SharedBuffer`` with ``np.frombuffer`` (zero-copy); the process pool gets each block and
  returns its features by pickle (its usual way), and, as its best case, once more with
  both arrays in ``multiprocessing.shared_memory`` (the input copied there before timing).
  Best of N runs on a warm pool (numpy already imported in every worker); speed-up =
  sequential / parallel.
* start-up: pool creation until each of the 2 workers has imported numpy and returned a
  result (each task sleeps ``nap`` after its import so that the other task runs on the other
  worker; the nap is subtracted); median of N fresh pools. The process pool is measured in a
  fresh process of its own twice: with a forkserver that preloads numpy (3.14's forkserver
  preloads ``__main__``, so a script that imports numpy at the top gets this) and with one
  that does not (each worker imports numpy, as interpool's workers do). The forkserver
  process itself is started before the first sample (once per program).
* RSS per worker, with numpy imported in every worker: interpool, the growth of this
  process's RSS divided by the workers; the process pool, each worker process's own RSS
  (``/proc/<pid>/status``), averaged (it counts the pages it shares with other processes,
  libpython and numpy's code, in full, as RSS does).

Targets (issue 12): speed-up at least the process pool's; start-up no slower than the
process pool's; RSS per worker at most 1.5x a process worker's.

    python benchmarks/bench_isolation.py [--rows N] [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import isolation_workloads as wl
import numpy as np

from interpool import InterpreterPoolExecutor, SharedBuffer

WORKERS = 2
BLOCKS = 8
COLS = 1024
MiB = 1024 * 1024


def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def interpool_pool() -> cf.Executor:
    return InterpreterPoolExecutor(WORKERS, isolate=["numpy"])


def process_pool() -> cf.Executor:
    return cf.ProcessPoolExecutor(WORKERS, mp_context=mp.get_context("forkserver"))


def thread_pool() -> cf.Executor:
    return cf.ThreadPoolExecutor(WORKERS)


class SharedMemoryProcessPool(cf.ProcessPoolExecutor):
    """A process pool whose tasks view the arrays in multiprocessing.shared_memory."""


def shm_process_pool() -> cf.Executor:
    return SharedMemoryProcessPool(WORKERS, mp_context=mp.get_context("forkserver"))


def numpy_everywhere(pool: cf.Executor, nap: float) -> None:
    """Run one task per worker, each importing numpy; check they ran on distinct workers."""
    who = [f.result() for f in [pool.submit(wl.numpy_ready, nap) for _ in range(WORKERS)]]
    assert len(set(who)) == WORKERS, f"the start-up tasks did not run on {WORKERS} distinct workers: {who}"


def startup(factory: Callable[[], cf.Executor], nap: float) -> float:
    """Seconds from creating a pool until every worker has imported numpy and answered."""
    gc.collect()
    t0 = time.perf_counter()
    pool = factory()
    numpy_everywhere(pool, nap)
    took = time.perf_counter() - t0 - nap
    pool.shutdown()
    return took


def rss_per_worker(name: str, factory: Callable[[], cf.Executor], nap: float) -> tuple[float, str]:
    gc.collect()
    time.sleep(0.2)
    base = rss()
    pool = factory()
    try:
        numpy_everywhere(pool, nap)
        gc.collect()
        time.sleep(0.2)
        if isinstance(pool, cf.ProcessPoolExecutor):
            pids = list(pool._processes)
            per = [rss(pid) for pid in pids]
            return statistics.mean(per) / MiB, "each worker process's RSS: " + ", ".join(f"{p / MiB:.1f}" for p in per)
        growth = (rss() - base) / WORKERS / MiB
        note = "growth of this process's RSS / workers"
        if isinstance(pool, InterpreterPoolExecutor):
            stats = pool.stats()
            note += f"; of it, isolated copies' code: {stats['isolated_resident_bytes'] / WORKERS / MiB:.1f} MiB/worker"
        return growth, note
    finally:
        pool.shutdown()


_shm: dict[str, Any] = {}


def shm_run(pool: cf.Executor, x: Any, bounds: list[tuple[int, int]]) -> Any:
    """The input is copied into shared memory once, outside the timing (the process pool's
    best case: data born there); the output is read from shared memory."""
    from multiprocessing import shared_memory

    rows = x.shape[0]
    if "in" not in _shm:
        _shm["in"] = shared_memory.SharedMemory(create=True, size=x.nbytes)
        np.ndarray(x.shape, dtype=np.float64, buffer=_shm["in"].buf)[:] = x
        _shm["out"] = shared_memory.SharedMemory(create=True, size=rows * wl.FEATURES * 8)
        return None  # the set-up run: not timed
    names = (_shm["in"].name, _shm["out"].name)
    done = [pool.submit(wl.shm_block, *names, rows, COLS, a, b) for a, b in bounds]
    assert sum(f.result() for f in done) == rows
    return np.ndarray((rows, wl.FEATURES), dtype=np.float64, buffer=_shm["out"].buf).copy()


def shm_release() -> None:
    for block in _shm.values():
        block.close()
        block.unlink()
    _shm.clear()


def one_run(pool: cf.Executor | None, x: Any, inbuf: SharedBuffer) -> tuple[float, Any]:
    """Wall time of the whole array on ``pool`` (None: sequential), and the output."""
    rows = x.shape[0]
    step = rows // BLOCKS
    bounds = [(b * step, (b + 1) * step if b < BLOCKS - 1 else rows) for b in range(BLOCKS)]
    t0 = time.perf_counter()
    if pool is None:
        out = np.empty((rows, wl.FEATURES))
        wl.row_features(x, out)
    elif isinstance(pool, SharedMemoryProcessPool):
        out = shm_run(pool, x, bounds)
    elif isinstance(pool, cf.ProcessPoolExecutor):
        parts = [pool.submit(wl.pickled_block, x[a:b]) for a, b in bounds]
        out = np.concatenate([f.result() for f in parts])
    else:
        outbuf = SharedBuffer(rows * wl.FEATURES * 8)
        done = [pool.submit(wl.shared_block, inbuf, outbuf, rows, COLS, a, b) for a, b in bounds]
        assert sum(f.result() for f in done) == rows
        out = np.frombuffer(memoryview(outbuf), dtype=np.float64).reshape(rows, wl.FEATURES)
    return time.perf_counter() - t0, out


def process_pool_child(preload: list[str], nap: float, with_rss: bool) -> None:
    """In a fresh process: one start-up sample of the process pool with this forkserver
    preload (and its RSS per worker)."""
    import json

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    ctx.Process(target=os.getpid).start()  # start the forkserver: once per program
    data: dict[str, Any] = {"startup_s": startup(process_pool, nap)}
    if with_rss:
        data["rss_mib"], data["note"] = rss_per_worker("process", process_pool, nap)
    print(json.dumps(data))


def process_pool_figures(preload: list[str], nap: float, with_rss: bool) -> dict[str, Any]:
    import json
    import subprocess

    command = [sys.executable, os.path.abspath(__file__), "--child-preload", ",".join(preload) or "-"]
    command += ["--nap", str(nap)] + (["--child-rss"] if with_rss else [])
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


PRELOADED = "  same, forkserver preloads numpy"
SHM = "  same, arrays in shared_memory"
INTERPOOL, PROCESS, THREADS = "interpool (isolate=['numpy'])", "ProcessPool (forkserver)", "ThreadPool"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16384, help="rows of the input (x 1024 float64)")
    parser.add_argument("--runs", type=int, default=5, help="rounds of the workload (median of the ratios)")
    parser.add_argument("--samples", type=int, default=5, help="fresh pools per start-up figure (median)")
    parser.add_argument("--nap", type=float, default=0.3, help="seconds each start-up task holds its worker")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, 2 runs, 2 samples")
    parser.add_argument("--child-preload", help=argparse.SUPPRESS)
    parser.add_argument("--child-rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_preload:
        process_pool_child([m for m in args.child_preload.split(",") if m != "-"], args.nap, args.child_rss)
        return 0
    if args.quick:
        args.rows, args.runs, args.samples = 2048, 2, 2

    print(f"CPython {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, {WORKERS} workers")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((args.rows, COLS))
    print(f"workload: features of {args.rows} rows x {COLS} float64 ({x.nbytes / MiB:.0f} MiB) in {BLOCKS} blocks")
    print("(measurements interleaved round by round, so that every executor sees the same machine load)\n")

    # Start-up and RSS: one fresh pool per executor per round; the process pool in fresh
    # processes (a forkserver of its own per preload setting).
    starts: dict[str, list[float]] = {INTERPOOL: [], PROCESS: [], PRELOADED: [], THREADS: []}
    rss_mib: dict[str, float] = {}
    notes: dict[str, str] = {}
    for sample in range(args.samples):
        starts[INTERPOOL].append(startup(interpool_pool, args.nap))
        starts[THREADS].append(startup(thread_pool, args.nap))
        for label, preload in ((PROCESS, []), (PRELOADED, ["numpy"])):
            data = process_pool_figures(preload, args.nap, with_rss=sample == 0)
            starts[label].append(data["startup_s"])
            if sample == 0:
                rss_mib[label], notes[label.strip()] = data["rss_mib"], data["note"]
    for name, factory in ((INTERPOOL, interpool_pool), (THREADS, thread_pool)):
        rss_mib[name], notes[name] = rss_per_worker(name, factory, args.nap)
    startup_ms = {name: statistics.median(v) * 1000 for name, v in starts.items()}

    # The workload: all pools warm at once (numpy imported in every worker), then round by
    # round: sequential, then each pool; speed-up = the median of sequential / pool.
    pools = {INTERPOOL: interpool_pool(), PROCESS: process_pool(), SHM: shm_process_pool(), THREADS: thread_pool()}
    inbuf = SharedBuffer(x)  # zero-copy: x's own memory
    times: dict[str, list[float]] = {"sequential": [], **{name: [] for name in pools}}
    try:
        for pool in pools.values():
            numpy_everywhere(pool, args.nap)
        shm_run(pools[SHM], x, [])  # set up the shared memory, untimed
        expected = None
        for _ in range(args.runs):
            runs: list[tuple[str, cf.Executor | None]] = [("sequential", None), *pools.items()]
            for name, executor in runs:
                took, out = one_run(executor, x, inbuf)
                if expected is None:
                    expected = out
                assert out.shape == expected.shape and np.array_equal(out, expected), f"{name}: wrong result"
                times[name].append(took)
    finally:
        for pool in pools.values():
            pool.shutdown()
        shm_release()
    seq = times["sequential"]
    ratios = {name: [a / b for a, b in zip(seq, t, strict=True)] for name, t in times.items()}
    speedup = {name: statistics.median(r) for name, r in ratios.items()}
    spread = {name: (min(r), max(r)) for name, r in ratios.items()}

    print(f"{'':32} {'workload':>9} {'speed-up (min-max)':>20} {'start-up':>9} {'RSS/worker':>11}")
    for name in ["sequential", INTERPOOL, PROCESS, PRELOADED, SHM, THREADS]:
        cells = [f"{name:32}"]
        if name in times:
            lo, hi = spread[name]
            cells.append(f"{statistics.median(times[name]):8.2f}s {speedup[name]:7.2f}x ({lo:4.2f}-{hi:4.2f}x)")
        else:
            cells.append(f"{'':9} {'':20}")
        cells.append(f"{startup_ms[name]:7.0f}ms" if name in startup_ms else f"{'':9}")
        cells.append(f"{rss_mib[name]:8.1f}MiB" if name in rss_mib else "")
        print(" ".join(cells))
    print()
    for name, note in notes.items():
        print(f"RSS, {name}: {note}")
    print(f"every executor's output equals the sequential one (np.array_equal), {args.runs} rounds\n")

    checks = [
        ("speed-up vs the process pool's", speedup[INTERPOOL] / speedup[PROCESS], ">= 1.0", 1.0, True),
        ("start-up vs the process pool's", startup_ms[INTERPOOL] / startup_ms[PROCESS], "<= 1.0", 1.0, False),
        (
            "start-up vs the process pool's whose forkserver preloads numpy",
            startup_ms[INTERPOOL] / startup_ms[PRELOADED],
            "<= 1.0",
            1.0,
            False,
        ),
        ("RSS per worker vs a process worker's", rss_mib[INTERPOOL] / rss_mib[PROCESS], "<= 1.5", 1.5, False),
    ]
    for what, ratio, target, limit, at_least in checks:
        met = ratio >= limit if at_least else ratio <= limit
        print(f"interpool {what}: {ratio:.2f} (target {target}: {'met' if met else 'MISSED'})")
    shm_ratio = speedup[INTERPOOL] / speedup[SHM]
    print(f"interpool speed-up vs the process pool's with arrays in shared_memory: {shm_ratio:.2f}")
    print(f"interpool speed-up vs the thread pool's: {speedup[INTERPOOL] / speedup[THREADS]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
