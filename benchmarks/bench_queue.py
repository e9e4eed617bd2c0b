"""Cross-interpreter queues: interpool.Queue vs the stdlib concurrent.interpreters queue.

Scenarios, each run side by side in one process on the same Python (3.14+ for the stdlib
side), results checked:

* ping-pong: the main thread puts a small int, a worker interpreter echoes it back; the
  median round trip over ``--rounds`` exchanges; also with the two threads pinned to
  different CPUs and to one CPU (Linux, 2+ CPUs), where a waiter's spin (different CPUs)
  or its yield (one CPU) decides the latency;
* one-way: a worker interpreter puts ``--items`` small ints, the main thread gets them all;
  items per second;
* buffer: pass a 1 MiB and a 64 MiB buffer to a worker, which reads its last byte and
  replies; median time per pass. interpool sends a SharedBuffer (zero-copy); the stdlib
  sends bytes.

    python benchmarks/bench_queue.py [--rounds N] [--items N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import interpool

import workloads

MiB = 1024 * 1024


class Side:
    """One queue implementation plus a way to run a function in another interpreter."""

    def __init__(self, name: str, make_queue: Callable[[], Any], start: Callable[..., Callable[[], Any]]) -> None:
        self.name = name
        self.make_queue = make_queue
        self.start = start  # start(fn, *args) -> join() returning fn's result


def interpool_side(pool: interpool.InterpreterPoolExecutor) -> Side:
    def start(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        return pool.submit(fn, *args).result

    return Side("interpool.Queue", interpool.Queue, start)


def stdlib_side() -> Side | None:
    try:
        from concurrent import interpreters
    except ImportError:
        return None
    interp = interpreters.create()

    def start(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        thread = interp.call_in_thread(fn, *args)
        return lambda: thread.join()

    return Side("stdlib concurrent.interpreters queue", interpreters.create_queue, start)


def round_trips(side: Side, worker: Callable[..., Any], messages: list[Any], expect: Callable[[Any], Any]) -> float:
    """Median time to put each message to a worker interpreter and get its reply, which is
    checked against ``expect(message)``."""
    inbox, outbox = side.make_queue(), side.make_queue()
    join = side.start(worker, inbox, outbox, len(messages))
    times = []
    for message in messages:
        t0 = time.perf_counter()
        inbox.put(message)
        got = outbox.get()
        times.append(time.perf_counter() - t0)
        assert got == expect(message), (got, expect(message))
    join()
    return statistics.median(times)


def ping_pong(side: Side, rounds: int) -> float:
    return round_trips(side, workloads.echo, list(range(rounds)), lambda i: i)


def pinned_ping_pong(side: Side, rounds: int, main_cpu: int, worker_cpu: int) -> float:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {main_cpu})  # this thread only
    try:
        inbox, outbox = side.make_queue(), side.make_queue()
        join = side.start(workloads.echo_on_cpu, inbox, outbox, rounds, worker_cpu)
        times = []
        for i in range(rounds):
            t0 = time.perf_counter()
            inbox.put(i)
            got = outbox.get()
            times.append(time.perf_counter() - t0)
            assert got == i
        join()
    finally:
        os.sched_setaffinity(0, before)
    return statistics.median(times)


def one_way(side: Side, items: int) -> float:
    q = side.make_queue()
    t0 = time.perf_counter()
    join = side.start(workloads.produce, q, items)
    for i in range(items):
        got = q.get()
        assert got == i
    elapsed = time.perf_counter() - t0
    join()
    return items / elapsed


def buffer_pass(side: Side, size: int, passes: int) -> float:
    data = bytearray(size)
    data[-1] = 7
    payload: Any = interpool.SharedBuffer(data) if side.name.startswith("interpool") else bytes(data)
    return round_trips(side, workloads.take_buffers, [payload] * passes, lambda _: size + 7)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is reported")
    args = parser.parse_args()

    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, {platform.node()}")
    with interpool.InterpreterPoolExecutor(1) as pool:
        pool.submit(workloads.spin, 1).result()  # worker ready
        sides = [interpool_side(pool)]
        std = stdlib_side()
        if std is not None:
            sides.append(std)
        else:
            print("(no concurrent.interpreters on this Python: interpool only)")
        rows: dict[str, dict[str, float]] = {}
        for side in sides:
            r = rows.setdefault(side.name, {})
            # The stdlib's blocking get polls every 10 ms: fewer rounds keep it short.
            rounds = args.rounds if side is sides[0] else max(50, args.rounds // 20)
            r["ping-pong round trip (us)"] = min(ping_pong(side, rounds) for _ in range(args.repeat)) * 1e6
            cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if len(cpus) >= 2:
                for label, pair in (("different CPUs", (cpus[0], cpus[1])), ("one CPU", (cpus[0], cpus[0]))):
                    best = min(pinned_ping_pong(side, rounds, *pair) for _ in range(args.repeat))
                    r[f"ping-pong, threads on {label} (us)"] = best * 1e6
            r["one-way small items (items/s)"] = max(one_way(side, args.items) for _ in range(args.repeat))
            for size in (MiB, 64 * MiB):
                key = f"pass a {size // MiB} MiB buffer (us)"
                r[key] = min(buffer_pass(side, size, args.passes) for _ in range(args.repeat)) * 1e6
            print(f"  measured {side.name}", file=sys.stderr, flush=True)
        threading.enumerate()

    names = list(rows)
    metrics = list(rows[names[0]])
    header = "| scenario | " + " | ".join(names) + (" | interpool advantage |" if len(names) > 1 else " |")
    print(header)
    print("|" + "---|" * (len(names) + 1 + (len(names) > 1)))
    for m in metrics:
        cells = [f"{rows[n][m]:,.1f}" for n in names]
        line = f"| {m} | " + " | ".join(cells)
        if len(names) > 1:
            ours, theirs = rows[names[0]][m], rows[names[1]][m]
            ratio = ours / theirs if "items/s" in m else theirs / ours
            line += f" | {ratio:,.1f}x"
        print(line + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
