"""interpool.Queue: FIFO semantics, timeouts, close, copies, and exact accounting across
interpreters. (How fast a blocked get wakes is measured by benchmarks/bench_queue.py.)"""

from __future__ import annotations

import pickle
import queue
import sys
import threading
import time

import pytest

import interpool
from interpool import Queue, QueueClosed, QueueEmpty, QueueFull

import tasks


def test_fifo_sizes_and_nowait_errors() -> None:
    q = Queue(2)
    assert (q.maxsize, q.qsize(), q.empty(), q.full()) == (2, 0, True, False)
    q.put(1)
    q.put_nowait("two")
    assert q.full() and q.qsize() == 2
    with pytest.raises(QueueFull):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    assert q.get() == 1 and q.get_nowait() == "two"
    with pytest.raises(QueueEmpty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    assert Queue().maxsize == 0 and Queue(maxsize=-1).maxsize == 0


@pytest.mark.skipif(sys.version_info < (3, 14), reason="stdlib classes are new in 3.14")
def test_exceptions_are_the_stdlib_ones_too() -> None:
    from concurrent import interpreters

    assert issubclass(QueueEmpty, interpreters.QueueEmpty)
    assert issubclass(QueueFull, interpreters.QueueFull)


@pytest.mark.parametrize("timeout", [0.002, 0.05, 0.2])
def test_a_wait_with_a_timeout_waits_that_long_then_raises(timeout: float) -> None:
    q = Queue(1)
    waits = [(lambda: q.get(timeout=timeout), QueueEmpty), (lambda: (q.put(0), q.put(1, timeout=timeout)), QueueFull)]
    for op, error in waits:
        t0 = time.perf_counter()
        with pytest.raises(error):
            op()
        assert time.perf_counter() - t0 >= timeout, "it waited"
        while not q.empty():
            q.get()


def test_invalid_arguments() -> None:
    q = Queue()
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(TypeError):
        q.get(timeout="soon")
    with pytest.raises(TypeError, match="unexpected keyword argument 'blocking'"):
        q.put(1, blocking=False)
    with pytest.raises(TypeError):
        Queue("big")


def test_items_are_copies() -> None:
    q = Queue()
    item = {"a": [1, 2]}
    q.put(item)
    item["a"].append(3)
    got = q.get()
    assert got == {"a": [1, 2]} and got is not item


def test_close_refuses_puts_drains_gets_and_wakes_waiters() -> None:
    q = Queue()
    q.put("left")
    waiter_result: list[object] = []
    empty = Queue()
    waiter = threading.Thread(target=lambda: waiter_result.append(_get_or_exc(empty)))
    waiter.start()
    time.sleep(0.05)
    empty.close()
    waiter.join(tasks.PATIENCE)
    assert isinstance(waiter_result[0], QueueClosed)
    q.close()
    assert q.closed
    with pytest.raises(QueueClosed):
        q.put(1)
    assert q.get() == "left"
    with pytest.raises(QueueClosed):
        q.get()
    if sys.version_info >= (3, 13):
        assert issubclass(QueueClosed, queue.ShutDown)


def _get_or_exc(q: Queue) -> object:
    try:
        return q.get()
    except Exception as exc:
        return exc


def test_a_blocked_get_releases_the_gil_and_a_put_wakes_it() -> None:
    q = Queue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)  # (most likely) blocked in get() by now
    # The main thread runs Python meanwhile: a get() that kept the GIL would stop it here.
    assert sum(range(100_000)) == 4_999_950_000 and t.is_alive() and not got
    q.put("go")
    t.join(tasks.PATIENCE)
    assert got == ["go"]


def test_queue_pickles_within_the_process() -> None:
    q = Queue()
    clone = pickle.loads(pickle.dumps(q))
    clone.put(5)
    assert q.get() == 5


def test_queue_as_task_argument_ping_pong_with_a_worker() -> None:
    inbox, outbox = Queue(), Queue()
    with interpool.InterpreterPoolExecutor(1) as pool:
        done = pool.submit(tasks.queue_echo, inbox, outbox, 200)
        for i in range(200):
            inbox.put((i, [i] * 3))
            assert outbox.get(timeout=tasks.PATIENCE) == (i, [i] * 3)
        assert done.result() == 200


def test_queue_in_initializer_reaches_every_worker() -> None:
    q = Queue()
    with interpool.InterpreterPoolExecutor(2, initializer=tasks.put_interpreter_id, initargs=(q,)) as pool:
        slow = [pool.submit(tasks.sleep_then, 0.3, None) for _ in range(2)]  # both workers start
        ids = {pool.submit(tasks.interpreter_id).result() for _ in range(20)}
        assert [f.result() for f in slow] == [None, None]
    seen = set()
    while not q.empty():
        seen.add(q.get())
    assert ids <= seen and len(seen) == 2


@pytest.mark.timeout(120)
def test_many_producers_and_consumers_across_interpreters_exactly_once() -> None:
    q = Queue(64)
    producers, per = 3, 3000
    with interpool.InterpreterPoolExecutor(5) as pool:
        consumers = [pool.submit(tasks.queue_consume, q) for _ in range(2)]
        main_got: list[int] = []
        main_consumer = threading.Thread(target=lambda: main_got.extend(tasks.queue_consume(q)))
        main_consumer.start()
        made = [pool.submit(tasks.queue_produce, q, p * per, per) for p in range(producers)]
        main_made = tasks.queue_produce(q, producers * per, per)
        assert sum(f.result(timeout=60) for f in made) + main_made == (producers + 1) * per
        q.close()
        main_consumer.join(60)
        received = main_got + [x for f in consumers for x in f.result(timeout=60)]
    assert sorted(received) == list(range((producers + 1) * per)), "an item was lost or duplicated"
