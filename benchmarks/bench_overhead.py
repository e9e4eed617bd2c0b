"""Per-task overhead and start-up against their peers, interleaved in one run (issue 15's targets).

Every figure is a median over rounds in which the competitors take turns, so that the noise
of a shared machine hits them alike; every result is checked. Prints one table with the
ratios the targets are stated in:

* start-up: ``InterpreterPoolExecutor(8)`` until every worker ran a task (``ready_8``), and
  the first result of a fresh executor (``first``), vs ProcessPoolExecutor(forkserver), in a
  program that creates executors one after another (after its second one, interpool keeps
  spare interpreters for the next: docs/design.md, "Start-up"; ``INTERPOOL_SPARES=0``
  measures without them);
* trivial round trip ``submit(abs, -i).result()`` p50, one worker each, vs ThreadPoolExecutor
  (the executors alternate call by call);
* submit-then-gather throughput of tiny tasks (``abs``), vs ThreadPoolExecutor (the same
  number of workers: ``--workers``, default 2);
* chunked ``map`` of tiny calls, items per second, vs its absolute target (8M/s);
* the codec's round trip of containers of 1k items vs pickle's.

    python benchmarks/bench_overhead.py [--rounds N] [--only startup,round_trip,throughput,chunked_map,containers]
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

import suite

import interpool

import workloads


def forkserver(n: int) -> cf.Executor:
    return cf.ProcessPoolExecutor(n, mp_context=mp.get_context("forkserver"))


def startup(rounds: int) -> list[tuple[str, float, float, str]]:
    """(metric, interpool ms, forkserver ms, target) for 8 workers ready and first result."""
    makers = {"interpool": interpool.InterpreterPoolExecutor, "forkserver": forkserver}
    ready: dict[str, list[float]] = {k: [] for k in makers}
    first: dict[str, list[float]] = {k: [] for k in makers}
    nap = 0.2
    # The forkserver process itself starts once per program: start it before measuring, as
    # every pool after the first one in a program finds it running.
    with forkserver(1) as pool:
        pool.submit(abs, 1).result()
    settle = 0.3
    for _ in range(rounds):
        for name, make in makers.items():
            gc.collect()
            t0 = time.perf_counter()
            pool = make(1)
            assert pool.submit(abs, -3).result() == 3
            first[name].append(time.perf_counter() - t0)
            pool.shutdown()
            # What a shutdown leaves running (processes exiting; interpool's spare
            # interpreters being made, see docs/design.md) must not slow the next measurement,
            # whichever executor it is.
            time.sleep(settle)
            gc.collect()
            t0 = time.perf_counter()
            pool = make(8)
            futures = [pool.submit(workloads.sleep_for, nap) for _ in range(8)]
            assert [f.result() for f in futures] == [nap] * 8
            ready[name].append(time.perf_counter() - t0 - nap)
            pool.shutdown()
            time.sleep(settle)
    med = {k: statistics.median(v) * 1e3 for k, v in ready.items()}
    fmed = {k: statistics.median(v) * 1e3 for k, v in first.items()}
    return [
        ("8 workers ready (ms)", med["interpool"], med["forkserver"], "<= 1.0"),
        ("first result, fresh executor (ms)", fmed["interpool"], fmed["forkserver"], "<= 0.5"),
    ]


def round_trip(rounds: int) -> list[tuple[str, float, float, str]]:
    # The suite's measurement: one worker each, the executors taking turns call by call.
    med = suite.bench_round_trip_interleaved(
        {"interpool": interpool.InterpreterPoolExecutor, "thread": cf.ThreadPoolExecutor}, rounds * 1000
    )
    return [("round trip p50, 1 worker (us)", med["interpool"], med["thread"], "<= 0.25")]


def throughput(rounds: int, workers: int) -> list[tuple[str, float, float, str]]:
    count = 20_000
    pools = {"interpool": interpool.InterpreterPoolExecutor(workers), "thread": cf.ThreadPoolExecutor(workers)}
    rates: dict[str, list[float]] = {k: [] for k in pools}
    expected = list(range(count))
    try:
        for pool in pools.values():
            list(pool.map(abs, range(100)))
        for _ in range(rounds):
            for name, pool in pools.items():
                t0 = time.perf_counter()
                futures = [pool.submit(abs, -i) for i in range(count)]
                assert [f.result() for f in futures] == expected
                rates[name].append(count / (time.perf_counter() - t0))
                del futures
                gc.collect()
    finally:
        for pool in pools.values():
            pool.shutdown()
    med = {k: statistics.median(v) / 1e3 for k, v in rates.items()}
    # Higher is better: the ratio is interpool / peer.
    return [(f"submit-then-gather, {workers} workers (k tasks/s)", med["interpool"], med["thread"], ">= 2.5")]


def chunked_map(rounds: int, workers: int) -> list[tuple[str, float, float, str]]:
    """Items per second through ``map(abs, range(100_000), chunksize=12_500)`` (the suite's
    ``chunksize=auto`` with 2 workers); its target is absolute, so the "peer" column holds
    the target, 8M items/s."""
    count = 100_000
    expected = list(range(count))
    rates: list[float] = []
    with interpool.InterpreterPoolExecutor(workers) as pool:
        for _ in range(2):  # warm up: workers started, the heap grown to the results' size
            assert list(pool.map(abs, range(count), chunksize=count // 8)) == expected
        for _ in range(rounds):
            t0 = time.perf_counter()
            assert list(pool.map(abs, range(count), chunksize=count // 8)) == expected
            rates.append(count / (time.perf_counter() - t0))
            gc.collect()
    rate = statistics.median(rates) / 1e6
    return [(f"chunked map, {workers} workers (M items/s; peer: the target)", rate, 8.0, ">= 1.0")]


def containers(rounds: int) -> list[tuple[str, float, float, str]]:
    """The codec's round trip (``_interpool.roundtrip``: encode, then decode in the same
    interpreter) vs pickle's (``loads(dumps(obj, 5))``) for containers of 1k items, median of
    medians over interleaved rounds, results checked."""
    import pickle

    from interpool import _interpool

    payloads = {
        "list of 1k ints": list(range(1000)),
        "list of 1k str": [f"item{i}" for i in range(1000)],
        "dict of 1k int->int": {i: i * 2 for i in range(1000)},
        "dict of 1k str->int": {f"k{i}": i for i in range(1000)},
        "dict of 1k str->str": {f"k{i}": f"v{i}" for i in range(1000)},
    }

    def timed(fn: Callable[[Any], Any], obj: Any, n: int = 100) -> float:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn(obj)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    def pickled(obj: Any) -> Any:
        return pickle.loads(pickle.dumps(obj, 5))

    rows = []
    for name, obj in payloads.items():
        assert _interpool.roundtrip(obj) == obj == pickled(obj)
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(timed(_interpool.roundtrip, obj))
            theirs.append(timed(pickled, obj))
        rows.append(
            (
                f"codec round trip, {name} (us; peer: pickle)",
                statistics.median(ours) * 1e6,
                statistics.median(theirs) * 1e6,
                "<= 0.6",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="startup,round_trip,throughput,chunked_map,containers")
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows: list[tuple[str, float, float, str]] = []
    if "startup" in only:
        rows += startup(args.rounds)
    if "round_trip" in only:
        rows += round_trip(args.rounds)
    if "throughput" in only:
        rows += throughput(args.rounds, args.workers)
    if "chunked_map" in only:
        rows += chunked_map(args.rounds, args.workers)
    if "containers" in only:
        rows += containers(args.rounds)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, medians of {args.rounds} interleaved rounds")
    print("| metric | interpool | peer | ratio | target |")
    print("|---|---|---|---|---|")
    for metric, ours, peer, target in rows:
        print(f"| {metric} | {ours:,.1f} | {peer:,.1f} | {ours / peer:.2f}x | {target} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
