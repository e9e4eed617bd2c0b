"""Stopping running tasks: how fast an interrupt lands, and what the timeout machinery costs.

* latency: a pure-Python loop scheduled with ``timeout=T`` reports its start time through an
  interpool.Queue; the latency is the time from ``start + T`` to the future being done
  (``TimeoutError`` raised), over N runs: p50, p95, max. Target: under 50 ms.
* overhead: the trivial round trip on one worker, the same call submitted without and with
  a time limit (60 s, never reached), alternating call by call on the same pool (through the
  executor's internal submit, so that only the timeout differs, not the argument handling of
  ``schedule``); the ratio of the medians. Target: under 1.05 (5%).

    python benchmarks/bench_interrupt.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interpool import InterpreterPoolExecutor, Queue

import workloads


def latency(runs: int, timeout: float) -> list[float]:
    late: list[float] = []
    q: Queue[float] = Queue()
    with InterpreterPoolExecutor(1) as pool:
        pool.submit(abs, -1).result()  # the worker is ready
        for _ in range(runs):
            future = pool.schedule(workloads.report_start_then_spin, (q,), timeout=timeout)
            started = q.get(timeout=30)
            try:
                future.result(timeout=30)
            except TimeoutError:
                pass
            else:
                raise AssertionError("the loop was not stopped")
            late.append(time.monotonic() - (started + timeout))
            assert pool.submit(abs, -7).result() == 7  # the worker is still usable
    return late


def overhead(count: int) -> tuple[float, float]:
    plain, timed = [], []
    with InterpreterPoolExecutor(1) as pool:
        for i in range(count + 200):  # alternating, so both see the same machine noise
            t0 = time.perf_counter()
            assert pool._submit(abs, (-i,), {}, None).result() == i
            t1 = time.perf_counter()
            assert pool._submit(abs, (-i,), {}, 60.0).result() == i
            t2 = time.perf_counter()
            if i >= 200:  # warmed up
                plain.append(t1 - t0)
                timed.append(t2 - t1)
    return statistics.median(plain), statistics.median(timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=0.05)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    late = sorted(latency(args.runs, args.timeout))
    p50, p95 = statistics.median(late), late[int(0.95 * (len(late) - 1))]
    print(
        f"interrupt latency after the deadline ({args.runs} runs of a pure-Python loop, timeout "
        f"{args.timeout * 1000:.0f} ms): p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"max {late[-1] * 1000:.1f} ms "
        f"(target < 50 ms: {'met' if p95 < 0.05 else 'MISSED'})"
    )
    plain, timed = overhead(5000)
    ratio = timed / plain
    print(
        f"trivial round trip p50: {plain * 1e6:.1f} us without a timeout, {timed * 1e6:.1f} us with timeout=60: "
        f"ratio {ratio:.3f} (target < 1.05: {'met' if ratio < 1.05 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
