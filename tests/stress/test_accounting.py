"""Every submitted task ends exactly once (result, exception or cancellation), under
concurrent submitters, random cancels, worker recycling and shutdown from other threads."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import CancelledError, Future

import pytest

from interpool import InterpreterPoolExecutor, Queue

import tasks
from .conftest import size


def drain(q: Queue) -> list[int]:
    items = []
    while not q.empty():
        items.append(q.get())
    return items


def check_exactly_once(futures: dict[int, Future[int]], ran: list[int]) -> tuple[int, int]:
    assert len(ran) == len(set(ran)), "a task ran twice"
    ran_set = set(ran)
    results = cancelled = 0
    for i, f in futures.items():
        assert f.done(), f"task {i} never ended"
        if f.cancelled():
            assert i not in ran_set, f"cancelled task {i} ran"
            cancelled += 1
        else:
            assert f.result() == i
            assert i in ran_set
            results += 1
    assert results == len(ran_set), "a task ran without delivering its result"
    return results, cancelled


@pytest.mark.timeout(600)
def test_concurrent_submitters_cancels_and_recycling() -> None:
    n = size(4000, 200_000)
    ran = Queue()
    rng = random.Random(1234)
    futures: dict[int, Future[int]] = {}
    lock = threading.Lock()
    # Recycle often, but not so often that the large run ends thousands of interpreters:
    # CPython 3.13 and 3.14t leak 2-6 MiB per ended interpreter (see test_leaks.py).
    recycle = size(97, 2003)
    with InterpreterPoolExecutor(3, max_tasks_per_worker=recycle) as pool:

        def submitter(start: int) -> None:
            for i in range(start, n, 4):
                f = pool.submit(tasks.record_and_echo, ran, i)
                with lock:
                    futures[i] = f

        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for _ in range(n // 10):  # cancel at random while submissions race
            with lock:
                victim = futures.get(rng.randrange(n))
            if victim is not None:
                victim.cancel()
        for t in threads:
            t.join()
    results, cancelled = check_exactly_once(futures, drain(ran))
    assert results + cancelled == n
    assert pool.stats()["recycled"] >= results // recycle - 3


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", ["wait", "nowait", "cancel", "other-thread", "callback"])
def test_shutdown_under_load_repeatedly(how: str) -> None:
    rounds = size(6, 40)
    for r in range(rounds):
        ran = Queue()
        pool = InterpreterPoolExecutor(2, max_tasks_per_worker=50 if r % 2 else None)
        futures = {i: pool.submit(tasks.record_and_echo, ran, i) for i in range(300)}
        time.sleep(random.random() * 0.01)
        if how == "wait":
            pool.shutdown(wait=True)
        elif how == "nowait":
            pool.shutdown(wait=False)
        elif how == "cancel":
            pool.shutdown(wait=True, cancel_futures=True)
        elif how == "other-thread":
            t = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
            t.start()
            t.join()
        else:
            futures[10].add_done_callback(lambda _f, p=pool: p.shutdown(wait=False, cancel_futures=True))
        for f in futures.values():
            # Wait for each outcome; a future may be cancelled between a cancelled() check and
            # exception() by the shutdown that a done-callback runs on a dispatcher thread (seen
            # on 3.14t), so the cancellation is taken as the outcome it is.
            with contextlib.suppress(CancelledError):
                f.exception(timeout=60)
        pool.shutdown(wait=True)
        check_exactly_once(futures, drain(ran))


@pytest.mark.timeout(300)
def test_executors_dropped_without_shutdown_under_load() -> None:
    import gc

    all_futures: list[Future[int]] = []
    for _ in range(size(5, 50)):
        pool = InterpreterPoolExecutor(2)
        all_futures += [pool.submit(tasks.square, i) for i in range(200)]
        del pool
        gc.collect()
    assert all(f.result(timeout=60) == (i % 200) ** 2 for i, f in enumerate(all_futures))
