"""Real parallelism: own-GIL workers run pure-Python CPU work on several cores at once."""

from __future__ import annotations

import os
import time

import pytest

from interpool import InterpreterPoolExecutor

import tasks

N = 2_500_000  # about 0.15-0.3 s of pure Python per task on these machines


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_two_workers_run_four_cpu_tasks_in_parallel() -> None:
    expected = tasks.spin_expected(N)
    best_seq = best_par = float("inf")
    with InterpreterPoolExecutor(2) as pool:
        pool.submit(tasks.square, 1).result()  # workers ready: time the work, not start-up
        for _ in range(10):  # shared machines are noisy: compare the best times
            t0 = time.perf_counter()
            sequential = [tasks.spin(N) for _ in range(4)]
            t1 = time.perf_counter()
            parallel = list(pool.map(tasks.spin, [N] * 4))
            t2 = time.perf_counter()
            assert sequential == parallel == [expected] * 4
            best_seq, best_par = min(best_seq, t1 - t0), min(best_par, t2 - t1)
            if best_seq / best_par >= 1.7:
                break
    speedup = best_seq / best_par
    # Generous on purpose: on this project's shared 2-vCPU VMs the same run measures 1.6x to
    # 2.0x (figures in the issue notes); anything sharing one GIL stays at or below 1.0x.
    assert speedup >= 1.4, f"speed-up of 2 workers over sequential was only {speedup:.2f}x"


def test_tasks_run_on_distinct_threads_and_interpreters() -> None:
    with InterpreterPoolExecutor(2) as pool:
        futures = [pool.submit(tasks.sleep_then, 0.2, i) for i in range(2)]
        infos = [pool.submit(tasks.whoami) for _ in range(2)]
        assert [f.result() for f in futures] == [0, 1]
        infos_r = [f.result() for f in infos]
    assert all(i["pid"] == os.getpid() for i in infos_r)
