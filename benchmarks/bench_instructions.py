"""Instructions per trivial task (``submit(abs, -i).result()``, one worker), per thread, counted
by callgrind: deterministic where timings on a shared machine are not.

Runs the same program twice under ``valgrind --tool=callgrind --separate-threads=yes``, with
``SMALL`` and ``LARGE`` round trips, and divides the difference of each thread's total by
``LARGE - SMALL``, so that start-up and shutdown cancel out. ``INTERPOOL_NO_SPIN=1`` turns off
every spin-before-sleep loop, which would otherwise count waiting as work. Target (issue 15):
the worker thread at most 4k instructions per task.

    python benchmarks/bench_instructions.py [--small 200] [--large 1200]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

PROGRAM = """
import sys, interpool
n = int(sys.argv[1])
pool = interpool.InterpreterPoolExecutor(1)
pool.submit(abs, 1).result()
for i in range(n):
    assert pool.submit(abs, -i).result() == i
pool.shutdown()
"""


def thread_totals(count: int, workdir: str) -> dict[int, int]:
    out = os.path.join(workdir, f"cg{count}.out")
    env = dict(os.environ, INTERPOOL_NO_SPIN="1")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
    subprocess.run([*cmd, sys.executable, "-c", PROGRAM, str(count)], env=env, check=True, capture_output=True)
    totals = {}
    for path in glob.glob(out + "-*"):
        with open(path) as f:
            for line in f:
                if line.startswith("totals:"):
                    totals[int(path.rsplit("-", 1)[1])] = int(line.split()[1])
                    break
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        small, large = thread_totals(args.small, workdir), thread_totals(args.large, workdir)
    per_task = {t: (large[t] - small.get(t, 0)) / (args.large - args.small) for t in large}
    # Thread 1 is the main thread; the worker is the busiest of the others (the rest are the
    # dispatchers, idle when the waiting thread takes its replies itself).
    worker = max((t for t in per_task if t != 1), key=lambda t: per_task[t])
    print(f"Python {sys.version.split()[0]}: instructions per trivial task (callgrind, INTERPOOL_NO_SPIN=1)")
    print(f"| thread | per task |\n|---|---|\n| main (submit + result) | {per_task[1]:,.0f} |")
    print(f"| worker | {per_task[worker]:,.0f} |")
    for t in sorted(per_task):
        if t not in (1, worker):
            print(f"| other thread {t} | {per_task[t]:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
