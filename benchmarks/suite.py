"""interpool benchmark suite: every workload on every executor, side by side, in one run.

Executors (same Python, same process, same run): interpool, the stdlib
InterpreterPoolExecutor (3.14+), ProcessPoolExecutor (forkserver and fork),
ThreadPoolExecutor; with ``--ft-python`` also ThreadPoolExecutor and interpool on a
free-threaded build, run in a subprocess and merged into the same report.

Workloads (every result is checked):

* start-up: pool creation until N workers each ran a task (N = 1, 2, 4, 8), and the RSS
  of the whole process tree per idle worker (8 workers);
* round trip: ``submit(abs, -i).result()`` one at a time, p50 and p99; also with one worker
  per in-process executor, their calls interleaved call by call (so noise hits all alike);
* throughput: tiny tasks via ``submit`` (all submitted, then gathered) and via ``map``
  with ``chunksize=1`` and ``chunksize=auto`` (tasks / (4 x workers));
* CPU-bound scaling: the ``total += i*i`` loop and pyperformance's n-body, 2 tasks per
  worker, speed-up over running the same tasks sequentially in the main interpreter
  (best of 5 sequential vs best of 5 parallel runs);
* transfer: ``identity(x)`` round trip for an int, a small tuple, a list and a dict of
  1000 items, 1 MiB and 64 MiB of bytes (interpool also with a 64 MiB SharedBuffer);
* GIL-releasing stdlib work: sha256 over 4 KiB blocks;
* data used by many tasks: a read-only 1000x1000 tuple grid given to 32 tasks that each sum
  one row, passed plainly, through an initializer (a global in each worker), and (interpool)
  as an ``interpool.Constant``; pool start included, median of 3 interleaved runs.

Writes ``results.md``, ``results.json`` and ``results.png`` into ``--out``.

    python benchmarks/suite.py [--quick] [--out DIR] [--ft-python PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import interpool

import workloads

# fork() with threads alive warns (DeprecationWarning) on 3.12+; the fork pool is measured
# on purpose, as users still pick it.
warnings.simplefilter("ignore", DeprecationWarning)

Factory = Callable[[int], cf.Executor]
MiB = 1024 * 1024
CORES = os.cpu_count() or 1


def executors(selected: list[str] | None) -> dict[str, Factory]:
    found: dict[str, Factory] = {"interpool": lambda n: interpool.InterpreterPoolExecutor(n)}
    std = getattr(cf, "InterpreterPoolExecutor", None)
    if std is not None:
        found["stdlib InterpreterPool"] = lambda n: std(n)
    found["ProcessPool (forkserver)"] = lambda n: cf.ProcessPoolExecutor(n, mp_context=mp.get_context("forkserver"))
    found["ProcessPool (fork)"] = lambda n: cf.ProcessPoolExecutor(n, mp_context=mp.get_context("fork"))
    found["ThreadPool"] = lambda n: cf.ThreadPoolExecutor(n)
    if selected:
        found = {k: v for k, v in found.items() if any(k.lower().startswith(s.lower()) for s in selected)}
    return found


def tree_rss() -> int:
    """Resident memory of this process and all its descendants, in bytes."""
    total, stack, seen = 0, [os.getpid()], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def bench_startup(factory: Factory, quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    nap = 0.2
    for n in (1, 2, 4, 8):
        samples = []
        for _ in range(2 if quick else 3):
            if n == 8:
                # Spare interpreters (interpool, docs/design.md) made before `base` would
                # hide the memory of the workers that adopt them: none for this sample.
                end_spares = getattr(getattr(sys.modules.get("interpool"), "_process", None), "end_spares", None)
                if end_spares is not None:
                    end_spares()
            gc.collect()
            base = tree_rss()
            t0 = time.perf_counter()
            pool = factory(n)
            futures = [pool.submit(workloads.sleep_for, nap) for _ in range(n)]
            assert [f.result() for f in futures] == [nap] * n
            samples.append(time.perf_counter() - t0 - nap)
            if n == 8:
                out["rss_per_worker_mib"] = (tree_rss() - base) / n / MiB
            pool.shutdown()
        out[f"ready_{n}_ms"] = statistics.median(samples) * 1000
    return out


def bench_round_trip(pool: cf.Executor, count: int) -> dict[str, float]:
    pool.submit(abs, 1).result()
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        assert pool.submit(abs, -i).result() == i
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50_us": times[len(times) // 2] * 1e6, "p99_us": times[int(len(times) * 0.99)] * 1e6}


def bench_round_trip_interleaved(factories: dict[str, Factory], count: int) -> dict[str, float]:
    """p50 of the trivial round trip with one worker per executor, the executors taking turns
    call by call."""
    pools = {name: factory(1) for name, factory in factories.items()}
    times: dict[str, list[float]] = {name: [] for name in pools}
    try:
        for pool in pools.values():
            pool.submit(abs, 1).result()
        for i in range(count):
            for name, pool in pools.items():
                t0 = time.perf_counter()
                assert pool.submit(abs, -i).result() == i
                times[name].append(time.perf_counter() - t0)
    finally:
        for pool in pools.values():
            pool.shutdown()
    return {name: statistics.median(t) * 1e6 for name, t in times.items()}


def bench_throughput(pool: cf.Executor, workers: int, count: int) -> dict[str, float]:
    out = {}
    expected = list(range(count))
    t0 = time.perf_counter()
    futures = [pool.submit(abs, -i) for i in range(count)]
    assert [f.result() for f in futures] == expected
    out["submit_per_s"] = count / (time.perf_counter() - t0)
    for label, chunksize in (("map_c1_per_s", 1), ("map_auto_per_s", max(1, count // (4 * workers)))):
        t0 = time.perf_counter()
        assert list(pool.map(abs, range(count), chunksize=chunksize)) == expected
        out[label] = count / (time.perf_counter() - t0)
    return out


def bench_cpu(factory: Factory, worker_counts: list[int], spin_n: int, nbody_steps: int) -> dict[str, float]:
    """Speed-up of 2 tasks per worker over running them one after another in the main
    interpreter. Sequential and parallel runs alternate 5 times and the best time of each
    is used: noise on a shared machine only ever adds time, so minima are the stable
    estimate (a median of per-run ratios swung from 1.2x to 2.6x on 2 cores here)."""
    out = {}
    kernels = {"spin": (workloads.spin, spin_n), "nbody": (workloads.nbody, nbody_steps)}
    expected = {name: fn(arg) for name, (fn, arg) in kernels.items()}
    for w in worker_counts:
        with factory(w) as pool:
            list(pool.map(workloads.sleep_for, [0.01] * w))  # workers up
            time.sleep(0.3)  # let what earlier pools left running settle (exiting processes, spares)
            tasks = 2 * w
            for name, (fn, arg) in kernels.items():
                if name == "nbody" and w != worker_counts[-1]:
                    continue
                out[f"{name}_speedup_{w}"] = speedup(pool, fn, arg, expected[name], tasks)
    return out


def speedup(pool: cf.Executor, fn: Callable[[Any], Any], arg: Any, expected: Any, tasks: int) -> float:
    """`tasks` calls of `fn(arg)` on `pool` vs one after another here: the best of 5 runs of
    each (results checked)."""
    best_one = best_par = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        assert fn(arg) == expected
        best_one = min(best_one, time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert list(pool.map(fn, [arg] * tasks)) == [expected] * tasks
        best_par = min(best_par, time.perf_counter() - t0)
    return best_one * tasks / best_par


def transfer_payloads() -> dict[str, Any]:
    return {
        "int": 12345,
        "small tuple": (1, "two", 3.0),
        "list of 1k": list(range(1000)),
        "dict of 1k": {f"k{i}": i for i in range(1000)},
        "1 MiB bytes": bytes(MiB),
        "64 MiB bytes": bytes(64 * MiB),
    }


def bench_transfer(pool: cf.Executor, name: str, quick: bool) -> dict[str, float]:
    out = {}
    for label, payload in transfer_payloads().items():
        # 64 MiB: 5 round trips; 1 MiB (~0.1-3 ms each): 50, as a median of 5 swung 2x here.
        reps = 5 if "64 MiB" in label else (50 if quick or "MiB" in label else 200)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            got = pool.submit(workloads.identity, payload).result()
            times.append(time.perf_counter() - t0)
            assert got == payload
        out[f"{label}_us"] = statistics.median(times) * 1e6
    if name.startswith("interpool"):
        buf = interpool.SharedBuffer(bytearray(64 * MiB))
        # Untimed first: a worker frees the 64 MiB reply it lent in the rows above when it
        # next attaches (at its next task, ~4-15 ms here), which is not this row's cost.
        for _ in range(4):
            assert pool.submit(workloads.buffer_len, buf).result() == 64 * MiB
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            assert pool.submit(workloads.buffer_len, buf).result() == 64 * MiB
            times.append(time.perf_counter() - t0)
        out["64 MiB SharedBuffer_us"] = statistics.median(times) * 1e6
    return out


def bench_hash(pool: cf.Executor, workers: int, blocks: int) -> dict[str, float]:
    expected = workloads.hash_blocks(blocks)
    tasks = 2 * workers
    t0 = time.perf_counter()
    assert list(pool.map(workloads.hash_blocks, [blocks] * tasks)) == [expected] * tasks
    return {"sha256_mib_per_s": tasks * blocks * 4096 / MiB / (time.perf_counter() - t0)}


def bench_shared_data(name: str, factory: Factory, workers: int, quick: bool) -> dict[str, float]:
    rows = 200 if quick else 1000
    table = workloads.grid(rows)
    count = 32
    picks = [i * rows // count for i in range(count)]
    expected = [sum(table[r]) for r in picks]

    def plain() -> list[int]:
        with factory(workers) as pool:
            return list(pool.map(workloads.grid_row_sum, [table] * count, picks))

    def constant() -> list[int]:
        shared = interpool.Constant(table)
        with factory(workers) as pool:
            return list(pool.map(workloads.grid_row_sum, [shared] * count, picks))

    def initializer() -> list[int]:
        make: Any = type(factory(1))  # the executor class, to pass initializer=
        kwargs: dict[str, Any] = {}
        if name.startswith("ProcessPool"):
            kwargs["mp_context"] = mp.get_context("forkserver" if "forkserver" in name else "fork")
        with make(workers, initializer=workloads.set_grid, initargs=(table,), **kwargs) as pool:
            return list(pool.map(workloads.global_grid_row_sum, picks))

    variants = {"grid_plain_ms": plain}
    if not name.startswith("stdlib"):  # its workers' tasks do not see the globals its initializer set
        variants["grid_initializer_ms"] = initializer
    if name.startswith("interpool"):
        variants["grid_constant_ms"] = constant
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):
        for key, run in variants.items():
            t0 = time.perf_counter()
            assert run() == expected
            times[key].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def run_all(selected: list[str] | None, quick: bool, suffix: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    workers = min(CORES, 8)
    worker_counts = sorted({1, 2, workers, *([4] if CORES >= 4 else []), *([8] if CORES >= 8 else [])})
    worker_counts = [w for w in worker_counts if w <= max(2, CORES)]
    fast_count = 20_000 if quick else 100_000
    print("  every executor: interleaved round trips, one worker each", file=sys.stderr, flush=True)
    # Process pools sit this one out: a fork pool cannot fork while interpreter pools live.
    in_process = {k: v for k, v in executors(selected).items() if not k.startswith("ProcessPool")}
    interleaved = bench_round_trip_interleaved(in_process, 300 if quick else 2000)
    for name, factory in executors(selected).items():
        label = name + suffix
        slow = not name.startswith(("interpool", "ThreadPool"))
        row: dict[str, float] = {"p50_1w_interleaved_us": interleaved[name]} if name in interleaved else {}
        print(f"  {label}: start-up", file=sys.stderr, flush=True)
        row.update(bench_startup(factory, quick))
        with factory(workers) as pool:
            print(f"  {label}: per-task", file=sys.stderr, flush=True)
            row.update(bench_round_trip(pool, 500 if slow and quick else 2000))
            row.update(bench_throughput(pool, workers, fast_count // (5 if slow and quick else 1)))
            print(f"  {label}: transfer and hashing", file=sys.stderr, flush=True)
            row.update(bench_transfer(pool, name, quick))
            row.update(bench_hash(pool, workers, 500 if quick else 2000))
        print(f"  {label}: data used by many tasks", file=sys.stderr, flush=True)
        row.update(bench_shared_data(name, factory, workers, quick))
        print(f"  {label}: CPU-bound scaling", file=sys.stderr, flush=True)
        row.update(bench_cpu(factory, worker_counts, 300_000 if quick else 3_000_000, 2_000 if quick else 15_000))
        results[label] = row
    return results


def machine_line() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gil = "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL"
    return (
        f"{platform.system()} {platform.machine()}, {CORES} cores ({model}), "
        f"CPython {platform.python_version()} ({gil}), interpool {interpool.__version__}"
    )


ROWS: list[tuple[str, str, str, bool]] = [
    # (section, metric key, label, higher is better)
    ("Start-up and memory", "ready_1_ms", "pool ready, 1 worker (ms)", False),
    ("Start-up and memory", "ready_2_ms", "pool ready, 2 workers (ms)", False),
    ("Start-up and memory", "ready_4_ms", "pool ready, 4 workers (ms)", False),
    ("Start-up and memory", "ready_8_ms", "pool ready, 8 workers (ms)", False),
    ("Start-up and memory", "rss_per_worker_mib", "RSS per idle worker (MiB)", False),
    ("Per-task overhead", "p50_us", "trivial round trip p50 (us)", False),
    ("Per-task overhead", "p99_us", "trivial round trip p99 (us)", False),
    ("Per-task overhead", "p50_1w_interleaved_us", "trivial round trip p50, 1 worker, interleaved (us)", False),
    ("Per-task overhead", "submit_per_s", "tiny tasks via submit (/s)", True),
    ("Per-task overhead", "map_c1_per_s", "tiny tasks via map, chunksize=1 (/s)", True),
    ("Per-task overhead", "map_auto_per_s", "tiny tasks via map, chunksize=auto (/s)", True),
    ("Transfer (identity round trip)", "int_us", "int (us)", False),
    ("Transfer (identity round trip)", "small tuple_us", "small tuple (us)", False),
    ("Transfer (identity round trip)", "list of 1k_us", "list of 1k ints (us)", False),
    ("Transfer (identity round trip)", "dict of 1k_us", "dict of 1k items (us)", False),
    ("Transfer (identity round trip)", "1 MiB bytes_us", "1 MiB bytes (us)", False),
    ("Transfer (identity round trip)", "64 MiB bytes_us", "64 MiB bytes (us)", False),
    ("Transfer (identity round trip)", "64 MiB SharedBuffer_us", "64 MiB SharedBuffer (us)", False),
    ("GIL-releasing stdlib work", "sha256_mib_per_s", "sha256 over 4 KiB blocks (MiB/s)", True),
    ("Data used by many tasks (1000x1000 grid, 32 tasks)", "grid_plain_ms", "passed plainly (ms)", False),
    ("Data used by many tasks (1000x1000 grid, 32 tasks)", "grid_initializer_ms", "via initializer (ms)", False),
    ("Data used by many tasks (1000x1000 grid, 32 tasks)", "grid_constant_ms", "as interpool.Constant (ms)", False),
]


def cpu_rows(results: dict[str, dict[str, float]]) -> list[tuple[str, str, str, bool]]:
    keys = sorted(
        {k for r in results.values() for k in r if k.startswith(("spin_speedup_", "nbody_speedup_"))},
        key=lambda k: (k.split("_")[0], int(k.rsplit("_", 1)[1])),
    )
    return [
        (
            "CPU-bound speed-up over sequential (ideal: min(workers, cores))",
            k,
            f"{k.split('_')[0]} loop, {k.rsplit('_', 1)[1]} workers (x)",
            True,
        )
        for k in keys
    ]


def render_markdown(results: dict[str, dict[str, float]], machine: str, seconds: float) -> str:
    names = list(results)
    ours = "interpool"
    lines = [
        "# interpool benchmark results",
        "",
        f"Machine: {machine}. Suite took {seconds:.0f} s.",
        "",
        "Every workload ran on every executor in the same run; every result was checked. "
        "`vs interpool` is how many times better interpool is (>1: interpool wins).",
    ]
    section = None
    for sec, key, label, higher in ROWS + cpu_rows(results):
        if not any(key in results[n] for n in names):
            continue
        if sec != section:
            section = sec
            lines += ["", f"## {sec}", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        cells = []
        for n in names:
            if key not in results[n]:
                cells.append("")
                continue
            v = results[n][key]
            cell = f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"
            if n != ours and ours in results and key in results[ours] and v > 0 and results[ours][key] > 0:
                ratio = results[ours][key] / v if higher else v / results[ours][key]
                cell += f" ({ratio:.2f}x vs interpool)" if not math.isclose(ratio, 1) else ""
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_plot(results: dict[str, dict[str, float]], machine: str, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = list(results)
    ax = axes[0][0]
    for n in names:
        pts = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in results[n].items() if k.startswith("spin_speedup_"))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=n)
    ax.set(title="CPU-bound speed-up (total += i*i)", xlabel="workers", ylabel="x over sequential")
    ax.legend(fontsize=7)
    for ax, key, title, log in (
        (axes[0][1], "p50_us", "trivial round trip p50 (us, lower is better)", True),
        (axes[1][0], "submit_per_s", "tiny tasks via submit per second (higher is better)", True),
        (axes[1][1], "ready_8_ms", "pool ready with 8 workers (ms, lower is better)", False),
    ):
        present = [n for n in names if key in results[n]]
        ax.barh(present, [results[n][key] for n in present], color="tab:blue")
        ax.set_title(title)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--executors", default="", help="comma-separated name prefixes (default: all)")
    parser.add_argument("--ft-python", default="", help="a free-threaded python to add ThreadPool/interpool (3.14t)")
    parser.add_argument("--json", default="", help="(internal) write raw results here and stop")
    parser.add_argument("--suffix", default="", help="(internal) label suffix")
    args = parser.parse_args()
    selected = [s for s in args.executors.split(",") if s] or None
    started = time.perf_counter()
    print(machine_line(), file=sys.stderr)
    results = run_all(selected, args.quick, args.suffix)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_line(), "results": results}, f)
        return 0
    machines = [machine_line()]
    if args.ft_python:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            path = tmp.name
        cmd = [args.ft_python, __file__, "--executors", "ThreadPool,interpool", "--json", path, "--suffix", " (3.14t)"]
        subprocess.run(cmd + (["--quick"] if args.quick else []), check=True)
        with open(path) as f:
            extra = json.load(f)
        os.unlink(path)
        results.update(extra["results"])
        machines.append(extra["machine"])
    machine = "; free-threaded run: ".join(machines)
    os.makedirs(args.out, exist_ok=True)
    markdown = render_markdown(results, machine, time.perf_counter() - started)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "results": results}, f, indent=1)
    render_plot(results, machine, os.path.join(args.out, "results.png"))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
