"""interpool.Constant: data converted once per worker interpreter, then shared by its tasks."""

from __future__ import annotations

import gc
import pickle
import threading
import weakref

import pytest

import interpool
from interpool import _interpool

import tasks


def test_tasks_receive_the_value() -> None:
    grid = tuple(tuple(range(i, i + 10)) for i in range(10))
    constant = interpool.Constant(grid)
    assert constant.value is grid
    with interpool.InterpreterPoolExecutor(2) as pool:
        assert pool.submit(tasks.identity, constant).result() == grid
        assert pool.submit(tasks.add, interpool.Constant(2), b=interpool.Constant(3)).result() == 5
        # Inside containers and keyword arguments too.
        assert pool.submit(tasks.identity, [constant, {"c": constant}]).result() == [grid, {"c": grid}]


def test_each_worker_converts_once() -> None:
    constant = interpool.Constant(tasks.Counted(list(range(100))))
    with interpool.InterpreterPoolExecutor(2) as pool:
        seen = [pool.submit(tasks.constant_seen, constant) for _ in range(50)]
        seen += [pool.submit(tasks.constant_seen, value=constant) for _ in range(50)]
        results = [f.result() for f in seen]
    by_worker: dict[int, set[int]] = {}
    for interp, obj_id, loads, payload in results:
        assert payload == list(range(100))
        assert loads == 1, "a worker rebuilt the constant more than once"
        by_worker.setdefault(interp, set()).add(obj_id)
    assert all(len(ids) == 1 for ids in by_worker.values()), by_worker


def test_plain_argument_is_converted_per_task() -> None:
    # The contrast that makes Constant worth having.
    value = tasks.Counted(1)
    with interpool.InterpreterPoolExecutor(1) as pool:
        loads = [pool.submit(tasks.constant_seen, value).result()[2] for _ in range(3)]
    assert loads == [1, 2, 3]


def test_constant_as_initarg() -> None:
    constant = interpool.Constant(tasks.Counted("ready"))
    with interpool.InterpreterPoolExecutor(1, initializer=tasks.constant_in_initializer, initargs=(constant,)) as pool:
        assert pool.submit(tasks.get_global).result() == "'ready'"
        assert pool.submit(tasks.constant_seen, constant).result()[2] == 1  # the initializer's copy


def test_constant_refuses_queues_and_pickling() -> None:
    with pytest.raises(interpool.NotShareableError, match="Queue"):
        interpool.Constant([interpool.Queue()])
    with pytest.raises(interpool.NotShareableError):
        interpool.Constant(threading.Lock())
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(interpool.Constant(1))
    buffer = interpool.SharedBuffer(b"abc")
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.buffer_sum, interpool.Constant(buffer)).result() == sum(b"abc")


def test_cache_keeps_one_object_and_releases_it() -> None:
    constant = interpool.Constant(tasks.Counted(7))
    first = _interpool.roundtrip(constant)
    assert _interpool.roundtrip(constant) is first
    assert _interpool.roundtrip([constant, constant]) == [first, first]
    ref = weakref.ref(first)
    del first, constant
    gc.collect()
    assert ref() is not None, "cached while the constant may still be in use"
    _interpool.roundtrip(interpool.Constant(tasks.Counted(8)))  # caching another one sweeps
    gc.collect()
    assert ref() is None


def test_constant_value_is_read_only_by_contract() -> None:
    # Documented behaviour: a task that mutates the object changes what later tasks of the
    # same worker see, and nothing elsewhere.
    constant = interpool.Constant([0])
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.append_and_len, constant).result() == 2
        assert pool.submit(tasks.append_and_len, constant).result() == 3
    assert constant.value == [0]
