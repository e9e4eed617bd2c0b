"""max_tasks_per_worker: a worker's interpreter is replaced after N tasks."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

import interpool

import tasks


def test_interpreter_is_replaced_after_max_tasks() -> None:
    with interpool.InterpreterPoolExecutor(1, max_tasks_per_worker=2) as pool:
        ids = [pool.submit(tasks.interpreter_id).result() for _ in range(6)]
        stats = pool.stats()
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]
    assert len(set(ids)) == 3
    assert stats["recycled"] >= 2


def test_max_tasks_per_child_is_accepted_as_process_pool_executor_spells_it() -> None:
    with interpool.InterpreterPoolExecutor(1, max_tasks_per_child=2) as pool:
        ids = [pool.submit(tasks.interpreter_id).result() for _ in range(4)]
    assert ids[0] == ids[1] != ids[2] == ids[3]


def test_recycled_interpreter_starts_fresh_and_reruns_the_initializer() -> None:
    with interpool.InterpreterPoolExecutor(
        1, initializer=tasks.set_global, initargs=("init",), max_tasks_per_worker=2
    ) as pool:
        assert pool.submit(tasks.get_global).result() == "init"
        pool.submit(tasks.set_global, "changed").result()
        assert pool.submit(tasks.get_global).result() == "init"  # a new interpreter


@pytest.mark.parametrize("bad", [0, -3])
def test_max_tasks_per_worker_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="max_tasks_per_worker must be greater than 0"):
        interpool.InterpreterPoolExecutor(1, max_tasks_per_worker=bad)


def test_no_task_is_lost_while_workers_recycle() -> None:
    with interpool.InterpreterPoolExecutor(2, max_tasks_per_worker=3) as pool:
        assert list(pool.map(tasks.square, range(60))) == [i * i for i in range(60)]
        assert pool.stats()["completed"] == 60


def test_many_interpreters_created_and_ended_at_once() -> None:
    """Workers start in parallel (3.14+; serialized on 3.12/3.13, see src/interp.rs): several
    pools started together from several threads, each worker also replaced after every task,
    so creations and endings overlap throughout."""
    rounds, pools, workers = 2, 3, 2
    start = threading.Barrier(pools)

    def run_pool(seed: int) -> list[int]:
        start.wait()
        with interpool.InterpreterPoolExecutor(workers, max_tasks_per_worker=1) as pool:
            return list(pool.map(tasks.square, range(seed, seed + 3 * workers)))

    for _ in range(rounds):
        with concurrent.futures.ThreadPoolExecutor(pools) as starters:
            outcomes = list(starters.map(run_pool, range(0, 100 * pools, 100)))
        assert outcomes == [[i * i for i in range(s, s + 3 * workers)] for s in range(0, 100 * pools, 100)]
