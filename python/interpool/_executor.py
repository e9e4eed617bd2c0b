"""``interpool.InterpreterPoolExecutor``: a ``concurrent.futures`` executor whose workers are
long-lived own-GIL subinterpreters driven by the Rust pool in ``interpool._interpool``.

Data flow (drawn in docs/design.md): ``submit`` hands ``(fn, args, kwargs)`` to Rust, which
encodes them into one ``Value`` (natively; functions by reference; only what has no native
form is pickled) and queues it; a worker thread attaches its interpreter, rebuilds the call
there, runs it and sends a ``Value`` reply back; one dispatcher thread per pool (in the
owner's interpreter) turns replies into future results. Worker threads never touch the
owner's interpreter: no Python object crosses, and nothing needs the owner's GIL except
completing futures.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, NoReturn, TypedDict, TypeVar, cast

from . import _interpool, _isolate, _lane, _logging, _main, _process, _progress, _worker
from ._dispatch import PoolState, TaskFuture
from ._errors import BrokenInterpreterPool, NotShareableError

_T = TypeVar("_T")

_pool_counter = itertools.count()
# amap submits at most this many tasks before letting the event loop run.
_AMAP_SLICE = 64


class _Counters(TypedDict):
    """The counters every executor's ``stats()`` has (see :class:`PoolStats`)."""

    max_workers: int
    threads: int
    workers: int
    busy: int
    queued: int
    submitted: int
    completed: int
    recycled: int
    pending: int
    abandoned: int
    stuck: int
    isolated_files: int
    isolated_mapped_bytes: int
    isolated_resident_bytes: int
    isolated_disk_bytes: int


# (total=False, not NotRequired[]: with string annotations, only the former is seen at run time)
class PoolStats(_Counters, total=False):
    """What :meth:`InterpreterPoolExecutor.stats` returns (every value an ``int``). The
    ``lane_*`` counters are there when the executor has a fallback lane (``fallback`` not
    ``None``); the others always are."""

    lane_workers: int
    lane_busy: int
    lane_queued: int
    lane_submitted: int
    lane_completed: int
    lane_cancelled: int
    lane_pending: int
    lane_replaced: int
    lane_recycled: int
    lane_abandoned: int
    lane_stuck: int
    lane_functions: int


def _default_workers() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


def _blas_threads(value: object, max_workers: int) -> int | None:
    """The BLAS thread limit of ``blas_threads=value`` for a pool of ``max_workers``."""
    if value is None:
        return None
    if value == "auto" and isinstance(value, str):
        cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        return max(1, cores // max_workers)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f'blas_threads must be "auto", None or a number of threads (>= 1), not {value!r}')
    return value


def _bootstrap_source() -> str:
    # Workers import tasks' modules by name: give them the owner's import path.
    return (
        "import sys\n"
        f"sys.path[:] = {list(sys.path)!r}\n"
        "from interpool._worker import bootstrap as __interpool_bootstrap__\n"
    )


def _is_context_run(fn: object) -> bool:
    return getattr(fn, "__name__", None) == "run" and type(getattr(fn, "__self__", None)) is contextvars.Context


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _check_seconds(name: str, value: object, *, optional: bool = True) -> float | None:
    """A duration argument: a positive number of seconds (or None where allowed)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of seconds{' or None' if optional else ''}, not {type(value).__name__}"
        )
    seconds = float(value)
    if not seconds > 0 or seconds == float("inf"):  # also rejects NaN
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if seconds > threading.TIMEOUT_MAX:  # as the stdlib's waits refuse it (OverflowError there)
        raise ValueError(
            f"{name} must be at most threading.TIMEOUT_MAX ({threading.TIMEOUT_MAX:.0f} s), got {value!r}; "
            "pass None for no time limit"
        )
    return seconds


def _batches(iterables: tuple[Iterable[Any], ...], chunksize: int) -> Iterator[tuple[Any, ...] | list[Any]]:
    """The argument tuples of ``map``, or (``chunksize > 1``) tuples of ``chunksize`` of them;
    with one iterable, lists of ``chunksize`` single arguments (no tuple per call to build,
    send and unpack: ``_worker.run_chunk1``)."""
    if chunksize > 1 and len(iterables) == 1:
        args = iter(iterables[0])
        return iter(lambda: list(itertools.islice(args, chunksize)), [])
    calls = zip(*iterables, strict=False)
    if chunksize == 1:
        return calls
    return iter(lambda: tuple(itertools.islice(calls, chunksize)), ())


class _Flat(itertools.chain):  # type: ignore[type-arg]
    """The results of a chunked ``map``: the items of each chunk's result list, iterated in C
    (a generator's ``yield from`` costs a resume per item, a third of a tiny call's cost),
    with ``close()`` as a generator has (it stops the tasks not finished)."""

    __slots__ = ("_chunks",)
    _chunks: Generator[list[Any], None, None]

    @classmethod
    def of(cls, chunks: Generator[list[Any], None, None]) -> _Flat:
        flat = cast("_Flat", cls.from_iterable(chunks))  # from_iterable makes a `cls`
        flat._chunks = chunks
        return flat

    def close(self) -> None:
        self._chunks.close()  # its clean-up stops the tasks not finished
        for _ in self:  # the rest of the chunk being iterated: then the chain ends too
            pass


def _as_results(value: Any, chunksize: int) -> list[Any]:
    return value if chunksize > 1 else [value]


def _result_or_cancel(future: Future[Any], timeout: float | None) -> Any:
    # As in concurrent.futures._base: cancel on timeout, and drop the reference promptly.
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future


class InterpreterPoolExecutor(ThreadPoolExecutor):
    """Runs calls in parallel on a pool of own-GIL subinterpreters.

    A drop-in replacement for :class:`concurrent.futures.InterpreterPoolExecutor` (3.14):
    the same constructor, ``submit``, ``map``, ``shutdown`` and exceptions. Arguments and
    results are converted natively where they are built-in values, and pickled otherwise;
    module-level functions go by reference, and lambdas, closures and ``__main__`` functions
    by value when cloudpickle is installed (see ``_pickling.py``).

    Like the stdlib's interpreter pool it is a ``ThreadPoolExecutor`` subclass (it shares no
    code with it), so asyncio accepts it as its default executor.

    ``isolate`` (default ``"auto"``): each worker loads a private copy of the extension modules
    outside the stdlib that it imports, so that packages which refuse own-GIL interpreters
    (numpy, orjson, black...) run in workers; nothing is done until a worker imports one.
    ``None``: modules load as CPython loads them (refusals go to ``fallback``); a list of
    top-level package names isolates only those. On CPython 3.12 ``"auto"`` isolates nothing
    and a list is refused. See docs/isolation.md.

    ``fallback`` says where calls go that cannot run in a worker interpreter because a module
    they need refuses own-GIL interpreters: ``"process"`` (a process pool the executor owns,
    started on first need), ``"thread"`` (threads of the main interpreter) or ``None`` (they
    fail with the ImportError). See ``_lane.py``.

    ``zero_copy`` (default True): large buffers of pickled arguments (numpy arrays, pandas
    blocks, ``PickleBuffer``, 256 KiB and up; an int sets the size in bytes) are not copied
    but lent: the worker gets a read-only view of the caller's memory, which must not change
    until the task ends. With ``False`` they are copied as pickle copies them. See
    docs/design.md, "Out-of-band buffers".

    ``blas_threads`` (default ``"auto"``: the cores divided by ``max_workers``, at least 1):
    the BLAS library that isolated numpy and scipy share (OpenBLAS, MKL, BLIS, FlexiBLAS)
    has one thread pool for the whole process, so workers calling it at once would each
    start ``cores`` threads. Once a worker loads it, the library uses this many threads,
    process-wide, until the pool is shut down (the smallest value of the pools alive);
    processes of the fallback lane get it through ``OPENBLAS_NUM_THREADS`` and the like
    where those are not set. An int sets it; ``None`` leaves the library alone. See
    docs/design.md, "BLAS threads".

    ``max_tasks_per_worker`` replaces a worker's interpreter after that many tasks;
    ``max_tasks_per_child``, ``ProcessPoolExecutor``'s name for it, is accepted too.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | str | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_worker: int | None = None,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        interrupt_grace: float = 5.0,
        isolate: Iterable[str] | str | None = "auto",
        fallback: Literal["process", "thread"] | None = "process",
        zero_copy: bool | int = True,
        blas_threads: int | Literal["auto"] | None = "auto",
    ) -> None:
        isolated = _isolate.normalize(isolate)
        lane_kind = _lane.check_fallback(fallback)
        self._task_timeout = _check_seconds("task_timeout", task_timeout)
        grace = _check_seconds("interrupt_grace", interrupt_grace, optional=False) or 5.0
        if max_workers is None:
            max_workers = _default_workers()
        _check_int("max_workers", max_workers)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if not isinstance(thread_name_prefix, str):
            raise TypeError(f"thread_name_prefix must be a str, not {type(thread_name_prefix).__name__}")
        try:
            initargs = tuple(initargs)
        except TypeError:
            raise TypeError(f"initargs must be a tuple, not {type(initargs).__name__}") from None
        if not isinstance(zero_copy, int) or (zero_copy < 0 and not isinstance(zero_copy, bool)):
            raise TypeError(f"zero_copy must be True, False or a size in bytes (>= 0), not {zero_copy!r}")
        from ._pickling import OUT_OF_BAND_MIN

        lend_min = None if zero_copy is False else OUT_OF_BAND_MIN if zero_copy is True else zero_copy
        blas = _blas_threads(blas_threads, max_workers)
        recycle_name = "max_tasks_per_worker"
        if max_tasks_per_child is not None:  # ProcessPoolExecutor's name for it
            if max_tasks_per_worker is not None:
                raise TypeError(
                    "pass max_tasks_per_worker or max_tasks_per_child (ProcessPoolExecutor's name for it), not both"
                )
            recycle_name, max_tasks_per_worker = "max_tasks_per_child", max_tasks_per_child
        if max_tasks_per_worker is not None:
            _check_int(recycle_name, max_tasks_per_worker)
        if isinstance(initializer, str):
            if initargs:
                raise ValueError(f"an initializer script does not take args, got {initargs!r}")
        elif initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable or a script string")
        if max_tasks_per_worker is not None and max_tasks_per_worker <= 0:
            raise ValueError(f"{recycle_name} must be greater than 0")
        if _process.exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        _process.check_python()
        if _main.loading_main():
            raise RuntimeError(
                "an InterpreterPoolExecutor was created while a worker interpreter was importing the main "
                "script as __mp_main__ (to find a function defined there): the script creates its pool at "
                'import time. Protect the entry point with `if __name__ == "__main__":`, or install '
                "cloudpickle so that functions from __main__ are sent by value"
            )
        _lane.check_not_importing_main()
        if not _worker.in_worker():
            # Results that refer to the worker's __mp_main__ resolve to our __main__, as in
            # multiprocessing.
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        self._max_workers = max_workers
        self._path, self._path_len = sys.path, len(sys.path)
        self._thread_name_prefix = thread_name_prefix or f"InterpreterPoolExecutor-{next(_pool_counter)}"
        self._shutdown = False
        self._logging, forwarding = _logging.start(self._thread_name_prefix)
        self._isolation = _isolate.plan(isolated, self._thread_name_prefix)
        settings = {
            "main": _main.main_source(),
            "logging": forwarding,
            "name": self._thread_name_prefix,
            "isolate": self._isolation,
        }
        init = None if initializer is None else (initializer, tuple(initargs))
        self._stack_size = threading.stack_size()
        try:
            pool = _interpool.Pool(
                max_workers,
                self._thread_name_prefix,
                _bootstrap_source(),
                settings,
                init,
                max_tasks_per_worker or 0,
                self._stack_size,  # workers get the stack a threading.Thread gets (spares too)
                self._task_timeout,  # an initializer that hangs is bounded too
                grace,
                lend_min,
            )
        except BaseException as exc:
            if self._logging is not None:
                self._logging.close()
            if isinstance(exc, NotShareableError):
                raise NotShareableError(
                    f"the initializer and initargs cannot be sent to the worker interpreters: {exc}"
                ) from exc
            raise
        if not _worker.in_worker():
            _process.guard_subprocess()
            _process.pool_created()
        self._state = PoolState(pool, self._thread_name_prefix, self._logging)
        # Inside a worker interpreter a lane would refuse the same modules: none there.
        self._lane = (
            None
            if _worker.in_worker()
            else _lane.make(
                lane_kind,
                max_workers,
                self._thread_name_prefix,
                initializer,
                initargs,
                max_tasks_per_worker,
                grace,
                blas,
            )
        )
        self._state.lane = self._lane
        if blas is not None:
            self._state.blas = blas
            _interpool._blas_limit(blas)  # applied once a worker loads a BLAS library
        self._state.start()
        self._finalizer = weakref.finalize(self, PoolState.close, self._state)
        self._finalizer.atexit = False

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> TaskFuture[_T]:
        """As :meth:`concurrent.futures.Executor.submit`; the future is a
        :class:`interpool.TaskFuture`, whose ``interrupt()`` also stops the call once it runs."""
        # The common case inline (tiny tasks are bounded by this path): a pool taking tasks,
        # a plain callable, no fallback lane route, no time limit, sys.path unchanged.
        state, lane = self._state, self._lane
        if (
            state.epoch is not _process.epoch
            or self._task_timeout is not None
            or isinstance(fn, str)
            or type(fn) is functools.partial
            or sys.path is not self._path
            or len(self._path) != self._path_len
            or (lane is not None and lane.routes)
        ):
            return self._submit(fn, args, kwargs, self._task_timeout)
        return self._send(TaskFuture(), fn, args, kwargs, None)

    def schedule(
        self,
        fn: Callable[..., _T],
        /,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> TaskFuture[_T]:
        """``submit`` with a time limit (pebble's name and signature): the task is stopped if it
        runs longer than ``timeout`` seconds once started (not counting its wait in the queue),
        and its future raises :class:`TimeoutError`. ``timeout`` overrides the executor's
        ``task_timeout``; ``None`` keeps it."""
        limit = _check_seconds("timeout", timeout)
        return self._submit(fn, tuple(args), dict(kwargs or {}), limit or self._task_timeout)

    def _submit(
        self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> TaskFuture[_T]:
        state = self._state
        if state.epoch is not _process.epoch:
            self._refuse()
        if isinstance(fn, str):
            if args or kwargs:
                raise TypeError("a script task takes no arguments; pass values inside the script")
            fn, args = _worker.exec_script, (fn,)
        elif type(fn) is functools.partial and _is_context_run(fn.func):
            # asyncio.to_thread() (and run_in_executor with a context) wraps the call in
            # `partial(context.run, func, *args)`; context variables cannot cross interpreters,
            # so the worker calls `func(*args)` in its own context.
            wrapped: functools.partial[Any] = fn
            fn, args, kwargs = wrapped.args[0], wrapped.args[1:] + args, {**wrapped.keywords, **kwargs}
        if sys.path is not self._path or len(sys.path) != self._path_len:
            self._refresh_path()
        future: TaskFuture[_T] = TaskFuture()
        lane = self._lane
        if lane is not None and lane.routes and lane.wants(fn, args):  # its module cannot load in a worker
            future._timeout = timeout
            lane.submit(future, fn, args, kwargs, timeout)
            return future
        return self._send(future, fn, args, kwargs, timeout)

    def _send(
        self, future: TaskFuture[_T], fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> TaskFuture[_T]:
        """Queue the call in the Rust pool, ``future`` in the pending table until its reply."""
        state = self._state
        if self._lane is not None:
            future._call = (fn, args, kwargs)  # in case a worker cannot load it
        task_id = next(state.ids)
        future._owner = state
        future._task_id = task_id
        if timeout is not None:
            future._timeout = timeout
            future._fn = fn  # named in the exit message if the task gets stuck
        state.pending[task_id] = future
        try:
            future._ticket = state.pool.submit(task_id, fn, args, kwargs, timeout)
        except BaseException as exc:
            self._submit_failed(future, fn, exc)
        return future

    def _refuse(self) -> NoReturn:
        """Raise why this executor takes no new tasks (``PoolState.epoch`` changed)."""
        state = self._state
        if state.broken is not None:
            raise BrokenInterpreterPool(state.broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _process.exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        raise RuntimeError(
            "this InterpreterPoolExecutor was created before fork(): its workers did not survive it; "
            "create a new one in the child"
        )

    def _submit_failed(self, future: TaskFuture[Any], fn: Any, exc: BaseException) -> None:
        """The Rust pool did not take a task: its future fails, as the stdlib executors report
        submission problems, unless the pool broke or shut down meanwhile (then raise)."""
        state = self._state
        del state.pending[future._task_id]
        future._call = None
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise exc
        if isinstance(exc, NotShareableError):
            from ._pickling import describe

            error = NotShareableError(
                f"cannot send the call to {describe(fn, call=True)} to a worker interpreter: {exc}"
            )
            error.__cause__ = exc
            future.set_exception(error)
            return
        if state.pool.broken() is not None:
            raise BrokenInterpreterPool(state.pool.broken()) from None
        if isinstance(exc, RuntimeError) and (self._shutdown or _process.exiting):
            raise exc  # shut down meanwhile, from another thread
        future.set_exception(exc)

    def _refresh_path(self) -> None:
        """New workers start with the main interpreter's current ``sys.path``."""
        self._path, self._path_len = sys.path, len(sys.path)
        self._state.pool.set_bootstrap(_bootstrap_source())

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] = False,
    ) -> Iterator[_T]:
        """Like :meth:`concurrent.futures.Executor.map`; ``chunksize > 1`` really batches:
        each task runs ``chunksize`` calls, which cuts per-task overhead for small calls.
        ``buffersize`` (as in 3.14) bounds how many tasks are submitted ahead of the
        consumer. Results come in order; the first exception is raised when reached.
        ``progress`` counts items as they complete: ``True`` shows a tqdm bar (a plain line
        on stderr without tqdm), a callable gets each completed task's item count."""
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if not isinstance(chunksize, int) or isinstance(chunksize, bool):
            raise TypeError("chunksize must be an integer")
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        items = _batches(iterables, chunksize)
        advance, close_progress = _progress.tracker(progress, _progress.total_of(iterables))

        def submit_one(executor: InterpreterPoolExecutor, item: Any) -> TaskFuture[Any]:
            return executor._submit_item(fn, item, chunksize, advance)

        first = itertools.islice(items, buffersize) if buffersize else items
        pending = collections.deque(submit_one(self, item) for item in first)
        # Hold the executor weakly, so an abandoned iterator does not keep it alive.
        executor_ref = weakref.ref(self)

        def result_iterator() -> Generator[Any, None, None]:
            try:
                pending.reverse()
                while pending:
                    if buffersize and (executor := executor_ref()) is not None:
                        item = next(items, None)
                        if item is not None:
                            pending.appendleft(submit_one(executor, item))
                        del executor
                    remaining = None if end_time is None else end_time - time.monotonic()
                    yield _result_or_cancel(pending.pop(), remaining)
            finally:
                for future in pending:  # closed early: stop what has not finished
                    future.interrupt()
                close_progress()

        if chunksize > 1:  # each result is a list of `chunksize` results
            return _Flat.of(result_iterator())
        return result_iterator()

    def _submit_item(
        self,
        fn: Callable[..., Any],
        item: tuple[Any, ...] | list[Any],
        chunksize: int,
        advance: _progress.Tracker | None,
    ) -> TaskFuture[Any]:
        """One task of ``map``/``amap``: a call, or a batch of ``chunksize`` calls; its item
        count goes to ``advance`` when it completes."""
        if chunksize > 1:
            run = _worker.run_chunk1 if type(item) is list else _worker.run_chunk
            task = self._submit(run, (fn, item), {}, self._task_timeout)
        else:
            task = self._submit(fn, tuple(item), {}, self._task_timeout)  # a tuple already
        if advance is not None:
            count = len(item) if chunksize > 1 else 1
            task.add_done_callback(lambda _: advance(count))
        return task

    async def run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``await pool.run(fn, *args, **kwargs)``: run the call in a worker and wait for it
        without blocking the event loop (``asyncio.wrap_future`` over :meth:`submit`).
        Cancelling the awaiting task cancels the call if it has not started."""
        import asyncio

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def amap(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | Callable[[int], object] = False,
    ) -> AsyncIterator[_T]:
        """``async for result in pool.amap(fn, items)``: like :meth:`map`, in order, without
        blocking the event loop: tasks are submitted a small slice at a time, letting the loop
        run in between. ``buffersize`` bounds how many tasks run ahead of the consumer (by
        default 16 per worker, at least 256: hundreds of thousands of pending futures would
        stall the loop in garbage collection); leaving the loop early stops the tasks not
        finished. ``progress`` as for :meth:`map`."""
        import asyncio

        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and (not isinstance(buffersize, int) or buffersize < 1):
            raise ValueError("buffersize must be None or > 0")
        items = _batches(iterables, chunksize)
        # Each entry: the task's future and the asyncio future awaiting it.
        pending: collections.deque[tuple[TaskFuture[Any], asyncio.Future[Any]]] = collections.deque()
        exhausted = False
        if buffersize is None:
            buffersize = max(256, 16 * self._max_workers)
        advance, close_progress = _progress.tracker(progress, _progress.total_of(iterables))

        def submit_slice() -> None:
            nonlocal exhausted
            for _ in range(_AMAP_SLICE):
                if exhausted or len(pending) >= buffersize:
                    return
                item = next(items, None)
                if item is None:
                    exhausted = True
                    return
                task = self._submit_item(fn, item, chunksize, advance)
                pending.append((task, asyncio.wrap_future(task)))

        try:
            submit_slice()
            while pending:
                room = not exhausted and len(pending) < buffersize
                if room and not pending[0][1].done():
                    submit_slice()  # submit ahead while the first result is not ready...
                    await asyncio.sleep(0)  # ...a slice at a time, letting the loop run
                    continue
                for result in _as_results(await pending.popleft()[1], chunksize):
                    yield result
                submit_slice()
        finally:
            for task, waiter in pending:  # left early: stop what has not finished
                waiter.cancel()
                task.interrupt()
            close_progress()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, interrupt: bool = False) -> None:
        """As :meth:`concurrent.futures.Executor.shutdown`; with ``interrupt=True``, running
        tasks are also stopped (their futures end cancelled), queued ones cancelled."""
        first = not self._shutdown
        threads = self._state.pool.stats()["threads"] if first else 0  # workers it started
        self._shutdown = True
        self._state.epoch = None
        self._state.stop(cancel_futures or interrupt, interrupt)
        if wait:
            self._state.join()
        if first and not _worker.in_worker():
            _process.pool_finished(threads, self._stack_size)

    # What code and tests written for the stdlib's pools read (ThreadPoolExecutor's meaning).
    @property
    def _broken(self) -> str | Literal[False]:  # type: ignore[override]
        """``False``, or why the pool is broken (a worker failed to start)."""
        return self._state.broken or False

    @property
    def _threads(self) -> frozenset[str]:  # type: ignore[override]
        """One entry (its name) per worker thread started so far, as a ThreadPoolExecutor's
        set of threads; they start as tasks need them, up to ``_max_workers``."""
        started = self._state.pool.stats()["threads"]
        return frozenset(f"{self._thread_name_prefix}_{i}" for i in range(started))

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool | None:
        # Leaving the block with an exception (Ctrl-C above all) stops the work instead of
        # waiting for it; a normal exit waits, as the stdlib executors do.
        self.shutdown(wait=True, interrupt=exc_type is not None)
        return None

    def stats(self) -> PoolStats:
        """Counters: ``max_workers``; ``threads`` (worker threads started so far: they start
        as tasks need them), ``workers`` (interpreters ready), ``busy``, ``queued``,
        ``submitted``, ``completed``, ``recycled``; ``pending`` (futures not done yet, in
        the lane too); ``abandoned`` (tasks given up because they did not stop in time) and
        ``stuck`` (threads of such tasks whose call has still not returned). With a fallback
        lane, its calls are counted apart: ``lane_workers`` (processes or threads alive),
        ``lane_busy``, ``lane_queued``, ``lane_submitted``, ``lane_completed`` (calls that
        ran), ``lane_cancelled`` (calls that never ran), ``lane_pending``, ``lane_replaced``
        (processes ended by a stop or a crash, threads given up), ``lane_recycled``,
        ``lane_abandoned``, ``lane_stuck`` and ``lane_functions`` (functions whose calls go
        straight to the lane). With ``isolate=``, the cost of the private copies:
        ``isolated_files``, ``isolated_mapped_bytes``, ``isolated_resident_bytes`` and
        ``isolated_disk_bytes`` (see docs/isolation.md)."""
        counts: dict[str, int] = self._state.pool.stats()
        counts.update(_isolate.stats(self._isolation))
        counts["max_workers"] = self._max_workers
        counts["pending"] = len(self._state.pending)
        if self._lane is not None:
            counts.update(self._lane.stats())
            counts["pending"] += counts["lane_pending"]
        return cast("PoolStats", counts)
