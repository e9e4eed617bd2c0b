"""numpy arrays into and out of tasks: interpool's out-of-band buffers against the alternatives.

Issue 26's benchmark, every executor side by side in one run, every result checked:

* transfer in: a 64 MiB float64 array passed to a task that returns one element;
* transfer out: a task that returns a 64 MiB array (made in the worker; the time includes
  making it, the same work for every executor);
* sum: the same array's ``sum()`` in a task (about 9 ms of numpy work), against the sum in the
  calling thread (timed alternately with each executor's, call by call, so that the machine's
  load weighs on both alike);
* many medium tasks: 64 tasks each reducing a 4 MiB slice of one 256 MiB array.

Executors (2 workers each): interpool with ``isolate=["numpy"]`` (zero-copy arguments, the
default), the same with ``zero_copy=False`` (pickle copies, as before issue 26), a
``ProcessPoolExecutor`` with the forkserver start method, ``ThreadPoolExecutor``, and the
stdlib's ``InterpreterPoolExecutor`` where it exists (numpy refuses its interpreters: shown as
failing). Times are the median of N runs on warm pools; ratios are the process pool's time over
each executor's (higher is faster). Run it on 3.14 and on 3.14t for the free-threaded threads.

    python benchmarks/bench_zero_copy.py [--runs N]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import zero_copy_tasks as tasks

from interpool import InterpreterPoolExecutor

MiB = 1 << 20


def executors() -> dict[str, Callable[[], cf.Executor]]:
    made: dict[str, Callable[[], cf.Executor]] = {
        "interpool": lambda: InterpreterPoolExecutor(2, isolate=["numpy"]),
        "interpool zero_copy=False": lambda: InterpreterPoolExecutor(2, isolate=["numpy"], zero_copy=False),
        "process (forkserver)": lambda: cf.ProcessPoolExecutor(2, mp_context=mp.get_context("forkserver")),
        "threads": lambda: cf.ThreadPoolExecutor(2),
    }
    stdlib = getattr(cf, "InterpreterPoolExecutor", None)
    if stdlib is not None:
        made["stdlib interpreters"] = lambda: stdlib(2)
    return made


def timed(run: Callable[[], Any], check: Callable[[Any], bool], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        out = run()
        samples.append(time.perf_counter() - start)
        if not check(out):
            raise AssertionError(f"wrong result: {out!r:.80}")
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    big = np.arange(64 * MiB // 8, dtype=np.float64)
    total = float(big.sum())
    slices = np.random.default_rng(0).random(256 * MiB // 8)
    slice_len = 4 * MiB // 8
    parts = [slices[i : i + slice_len] for i in range(0, len(slices), slice_len)]
    expected_parts = [float(p.sum()) for p in parts]
    assert float(big.sum()) == total

    def sum_here() -> float:
        return float(big.sum())

    cases: dict[str, tuple[Callable[[cf.Executor], Any], Callable[[Any], bool]]] = {
        "64 MiB in (returns one element)": (lambda ex: ex.submit(tasks.first, big).result(), lambda r: r == 0.0),
        "64 MiB out (made in the task)": (
            lambda ex: ex.submit(tasks.make, 64 * MiB // 8).result(),
            lambda r: r.shape == (64 * MiB // 8,) and r[-1] == 64 * MiB // 8 - 1,
        ),
        "sum of 64 MiB": (lambda ex: ex.submit(tasks.total, big).result(), lambda r: r == total),
        "64 tasks x 4 MiB slice": (
            lambda ex: list(ex.map(tasks.total, parts)),
            lambda r: r == expected_parts,
        ),
    }
    threaded = " free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else ""
    print(
        f"Python {sys.version.split()[0]}{threaded}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; median of {runs} runs"
    )
    results: dict[str, dict[str, float | str]] = {}
    here: dict[str, float] = {}  # the sum in the calling thread, timed alternately with each executor's
    for name, make in executors().items():
        results[name] = {}
        with make() as ex:
            for case, (run, check) in cases.items():
                try:
                    run(ex)  # warm up: workers started, numpy imported
                    if case == "sum of 64 MiB":
                        samples = [
                            (timed(sum_here, check, 1), timed(lambda run=run, ex=ex: run(ex), check, 1))  # type: ignore[misc]
                            for _ in range(runs)
                        ]
                        here[name] = statistics.median(h for h, _ in samples)
                        results[name][case] = statistics.median(t for _, t in samples)
                    else:
                        results[name][case] = timed(lambda run=run, ex=ex: run(ex), check, runs)  # type: ignore[misc]
                except Exception as exc:  # the stdlib's interpreters refuse numpy
                    results[name][case] = f"fails: {type(exc).__name__}"
    base = results["process (forkserver)"]
    for case in cases:
        print(f"\n{case}")
        for name, row in results.items():
            value = row[case]
            if isinstance(value, str):
                print(f"  {name:<28} {value}")
                continue
            ref = base[case]
            ratio = f"{ref / value:8.1f}x vs process" if isinstance(ref, float) else ""
            extra = ""
            if case == "sum of 64 MiB":
                extra = (
                    f"  ({value / here[name]:.2f}x the calling thread's {here[name] * 1e3:.2f} ms, timed alternately)"
                )
            print(f"  {name:<28} {value * 1e3:10.3f} ms {ratio}{extra}")


if __name__ == "__main__":
    main()
