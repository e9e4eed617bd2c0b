"""What the default ``isolate="auto"`` costs a pure-Python pool, against ``isolate=None``.

Issue 23 (item 5): the default must cost nothing until a worker imports an extension module
outside the standard library. Each round runs one fresh child process per setting, the
settings taking turns (``auto`` first in odd rounds, ``None`` first in even ones), so that
the noise of a shared machine hits both alike; every figure is a median over the rounds.
Each child measures, in this order:

* ``first``: from ``InterpreterPoolExecutor(W, isolate=...)`` to the first result;
* ``ready``: from construction until every one of the W workers ran a task (W tasks that
  sleep ``--nap`` seconds each, minus the nap);
* ``rss start``: the process's RSS after that, minus its RSS before the pool;
* ``rss tasks``: the same after ``--tasks`` trivial calls (``abs``, ``map``);
* ``imports``: a worker's time to import 50 stdlib modules it had not imported (pure-Python
  ones and the stdlib's own extension modules in lib-dynload: what an import hook would
  slow down), timed in the worker, on every worker;

and checks every result, that no directory for copies exists (``$TMPDIR/interpool-<pid>-*``)
and that ``stats()["isolated_files"]`` is 0 with ``auto``, that the workers'
``sys.meta_path`` holds the same finders with both settings, and that no worker imported
``interpool._isolate`` (it is imported on the first extension module outside the stdlib).

    python benchmarks/bench_default.py [--rounds 9] [--workers 4] [--tasks 5000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MiB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def copy_dirs() -> list[str]:
    prefix = f"interpool-{os.getpid()}-"
    return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith(prefix)]


def child(setting: str, workers: int, tasks: int, nap: float) -> dict[str, Any]:
    import auto_tasks

    import interpool

    isolate = None if setting == "none" else setting
    gc.collect()
    base = rss()
    t0 = time.perf_counter()
    pool = interpool.InterpreterPoolExecutor(workers, isolate=isolate)
    assert pool.submit(abs, -3).result() == 3
    first = time.perf_counter() - t0
    pids = [f.result() for f in [pool.submit(auto_tasks.nap, nap) for _ in range(workers)]]
    ready = time.perf_counter() - t0 - nap
    assert pids == [os.getpid()] * workers
    assert pool.stats()["workers"] == workers, pool.stats()
    gc.collect()
    rss_start = rss() - base
    assert list(pool.map(abs, range(-tasks, 0))) == list(range(tasks, 0, -1))
    gc.collect()
    rss_tasks = rss() - base
    # Every worker imports the modules once (each worker's first call of import_all; the
    # workers are held apart by the naps so that each takes one).
    futures = [pool.submit(auto_tasks.import_all) for _ in range(workers)]
    imports = [f.result() for f in futures]
    finders = pool.submit(auto_tasks.meta_path).result()
    stats = pool.stats()
    dirs = copy_dirs()
    pool.shutdown()
    return {
        "first": first,
        "ready": ready,
        "rss_start": rss_start,
        "rss_tasks": rss_tasks,
        "imports": statistics.median(seconds for seconds, new in imports if new > 0),
        "new_modules": max(new for _, new in imports),
        "finders": finders,
        "isolated_files": stats["isolated_files"],
        "copy_dirs": dirs,
    }


def run_child(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", setting]
    cmd += ["--workers", str(args.workers), "--tasks", str(args.tasks), "--nap", str(args.nap)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {setting} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--nap", type=float, default=0.2)
    parser.add_argument("--child", choices=["auto", "none"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.workers, args.tasks, args.nap)))
        return 0
    from interpool import _isolate

    if not _isolate.supported():
        print("isolate= needs CPython 3.13+: the default there is None, nothing to compare")
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"auto": [], "none": []}
    for i in range(args.rounds):
        for setting in ("auto", "none") if i % 2 == 0 else ("none", "auto"):
            runs[setting].append(run_child(setting, args))
    problems = []
    for setting, results in runs.items():
        for result in results:
            if result["copy_dirs"] or result["isolated_files"]:
                problems.append(f"{setting}: a directory for copies or a copy exists: {result}")
    if any("imported: True" in f for r in runs["auto"] for f in r["finders"]):
        problems.append("a worker of an isolate='auto' pool imported interpool._isolate")
    if runs["auto"][0]["finders"] != runs["none"][0]["finders"]:
        problems.append(f"meta_path differs: auto {runs['auto'][0]['finders']}, None {runs['none'][0]['finders']}")
    rows = [
        ("first result", "first", 1e3, "ms"),
        (f"{args.workers} workers ready", "ready", 1e3, "ms"),
        (f"RSS after start ({args.workers} workers)", "rss_start", 1 / MiB, "MiB"),
        (f"RSS after {args.tasks} tasks", "rss_tasks", 1 / MiB, "MiB"),
        (f"a worker imports {runs['none'][0]['new_modules']} stdlib modules", "imports", 1e3, "ms"),
    ]
    gil = "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL"
    print(f"Python {sys.version.split()[0]} ({gil}), {os.cpu_count()} CPUs, {args.rounds} rounds, medians")
    print("| metric | isolate='auto' | isolate=None | auto / None |\n|---|---|---|---|")
    for label, key, scale, unit in rows:
        a = statistics.median(r[key] for r in runs["auto"]) * scale
        n = statistics.median(r[key] for r in runs["none"]) * scale
        ratio = f"{a / n:.2f}" if n > 0 else "-"
        print(f"| {label} | {a:.2f} {unit} | {n:.2f} {unit} | {ratio} |")
    print(f"workers' sys.meta_path: auto {runs['auto'][0]['finders']}; None {runs['none'][0]['finders']}")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
