"""Bad input gets a clear error (naming the problem) and leaves the pool working."""

from __future__ import annotations

import pytest

import interpool
from interpool import InterpreterPoolExecutor, Queue, SharedBuffer

import tasks


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"max_workers": "4"}, TypeError, "max_workers must be an int, not str"),
        ({"max_workers": 2.5}, TypeError, "max_workers must be an int, not float"),
        ({"max_workers": True}, TypeError, "max_workers must be an int, not bool"),
        ({"max_workers": 0}, ValueError, "max_workers must be greater than 0"),
        ({"max_workers": 1, "thread_name_prefix": 7}, TypeError, "thread_name_prefix must be a str"),
        ({"max_workers": 1, "initializer": tasks.set_global, "initargs": 5}, TypeError, "initargs must be a tuple"),
        ({"max_workers": 1, "max_tasks_per_worker": "3"}, TypeError, "max_tasks_per_worker must be an int"),
        ({"max_workers": 1, "max_tasks_per_worker": 0}, ValueError, "max_tasks_per_worker must be greater than 0"),
        # ProcessPoolExecutor's spelling: its errors name it.
        ({"max_workers": 1, "max_tasks_per_child": "3"}, TypeError, "max_tasks_per_child must be an int"),
        ({"max_workers": 1, "max_tasks_per_child": 0}, ValueError, "max_tasks_per_child must be greater than 0"),
        (
            {"max_tasks_per_worker": 2, "max_tasks_per_child": 2},
            TypeError,
            "max_tasks_per_worker or max_tasks_per_child",
        ),
        ({"max_workers": 1, "initializer": 3}, TypeError, "initializer must be a callable or a script string"),
        # Before: accepted, then a Rust panic killed the worker (task lost) or the watchdog.
        ({"max_workers": 1, "task_timeout": 1e19}, ValueError, r"task_timeout must be at most threading\.TIMEOUT_MAX"),
        ({"max_workers": 1, "task_timeout": float("inf")}, ValueError, "positive, finite number of seconds"),
    ],
)
def test_constructor_arguments(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        InterpreterPoolExecutor(**kwargs)  # type: ignore[arg-type]


def test_bad_calls_leave_the_pool_working() -> None:
    with InterpreterPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match="'NoneType' object is not callable"):
            pool.submit(None).result(timeout=60)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="chunksize must be an integer"):
            pool.map(tasks.square, [1], chunksize="2")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout must be a number"):
            pool.map(tasks.square, [1], timeout="soon")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            pool.submit(tasks.square).result()  # wrong arity: fails in the worker
        with pytest.raises(TypeError):
            pool.submit(tasks.square, "x").result()
        assert pool.submit(tasks.square, 10**40).result() == 10**80  # huge ints are fine
        assert pool.submit(tasks.square, 3).result() == 9


def test_queue_and_buffer_bad_input() -> None:
    with pytest.raises(TypeError):
        Queue(maxsize="big")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at most 1 argument"):
        Queue(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="needs a size or a C-contiguous bytes-like object"):
        SharedBuffer(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SharedBuffer()  # type: ignore[call-arg]


def test_use_after_shutdown() -> None:
    pool = InterpreterPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(tasks.square, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        list(pool.map(tasks.square, [1]))
    assert pool.stats()["workers"] == 0


def test_private_core_rejects_misuse() -> None:
    from interpool import _interpool

    with pytest.raises(ValueError, match="between 1 and 4096"):
        _interpool.Pool(0, "x", "", {}, None, 0, 0, None, 5.0, None)
    with pytest.raises(TypeError, match="Pool\\(\\) takes exactly 10 positional arguments"):
        _interpool.Pool(1)  # type: ignore[call-arg]
    assert interpool.__version__


def test_time_limits_beyond_what_a_deadline_holds_are_refused_and_the_largest_allowed_works() -> None:
    import threading

    with InterpreterPoolExecutor(1) as pool:
        for huge in (1e10, 1e19, 2e19, 1e300):
            with pytest.raises(ValueError, match=r"timeout must be at most threading\.TIMEOUT_MAX"):
                pool.schedule(tasks.square, (3,), timeout=huge)
        # The largest accepted limit is no limit in practice: the call runs, the watchdog (which
        # overflowed `Instant + Duration` before) keeps enforcing other limits.
        assert pool.schedule(tasks.square, (4,), timeout=threading.TIMEOUT_MAX).result(timeout=60) == 16
        with pytest.raises(TimeoutError):
            pool.schedule(tasks.spin, (10**12,), timeout=0.2).result(timeout=60)
