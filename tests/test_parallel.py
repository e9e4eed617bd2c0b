"""Real parallelism: own-GIL workers run pure-Python CPU work on several cores at once."""

from __future__ import annotations

import os
import sys
from concurrent.futures import Executor, ThreadPoolExecutor

import pytest

from interpool import InterpreterPoolExecutor, SharedBuffer

import tasks

N = 2_500_000  # about 0.15-0.3 s of pure Python per task on these machines


def _race(pool: Executor, budget: float) -> int:
    """The longest run of iterations in which one of two tasks racing on a shared buffer saw
    the other's counter move every time (see tasks.race)."""
    buffer = SharedBuffer(16)
    futures = [pool.submit(tasks.race, buffer, slot, budget) for slot in (0, 1)]
    return max(f.result(timeout=60) for f in futures)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_two_workers_run_at_the_same_time() -> None:
    # Parallelism without a timed assertion (speed-ups are in benchmarks/): two workers see
    # each other's writes to shared memory on 100 iterations in a row, which threads that
    # take turns (one GIL, or one CPU) cannot.
    with InterpreterPoolExecutor(2) as pool:
        best = _race(pool, 30.0)
    assert best >= 100, f"the workers never ran at the same time (longest run: {best})"


@pytest.mark.skipif(not getattr(sys, "_is_gil_enabled", lambda: True)(), reason="threads share no GIL here")
def test_the_parallelism_check_fails_for_threads_sharing_a_gil() -> None:
    # The control: the same race on a thread pool (one GIL) stays far below the threshold.
    with ThreadPoolExecutor(2) as pool:
        best = _race(pool, 1.0)
    assert best < 100, best


def test_cpu_tasks_give_correct_results_in_parallel() -> None:
    expected = tasks.spin_expected(N)
    with InterpreterPoolExecutor(2) as pool:
        assert list(pool.map(tasks.spin, [N] * 4)) == [expected] * 4


def test_tasks_run_on_distinct_threads_and_interpreters() -> None:
    with InterpreterPoolExecutor(2) as pool:
        futures = [pool.submit(tasks.sleep_then, 0.2, i) for i in range(2)]
        infos = [pool.submit(tasks.whoami) for _ in range(2)]
        assert [f.result() for f in futures] == [0, 1]
        infos_r = [f.result() for f in infos]
    assert all(i["pid"] == os.getpid() for i in infos_r)
