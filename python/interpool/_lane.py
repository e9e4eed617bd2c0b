"""The fallback lane: where calls run that cannot run in a worker interpreter.

A call cannot run in a worker when a module it needs refuses own-GIL interpreters
(``_refusal.py``). The worker reports that as an ImportError, with one of two statuses:

* ``NOT_STARTED``: loading the function or its arguments failed (the module is imported at the
  top of the task's module, or an argument's class needs it). The call has not started, so the
  executor runs it in the lane instead, transparently, and remembers the function: its later
  calls go straight to the lane (:meth:`Lane.take_over`, :meth:`Lane.wants`).
* ``RAISED``: the import happened inside the running call. A call is never run twice, so its
  future fails with the ImportError, with a note; later calls of the function use the lane.

Either way one :class:`~interpool.FallbackWarning` per function says so.

Two lanes, chosen by ``InterpreterPoolExecutor(fallback=...)``:

* :class:`ProcessLane` (``"process"``, the default): up to ``max_workers`` child processes,
  started lazily with the ``forkserver`` method (``spawn`` where there is none; never ``fork``:
  worker interpreters are alive), each running the pool's initializer and replaced after
  ``max_tasks_per_worker`` calls. One runner thread per process sends it a call at a time over
  a pipe and waits for the reply, the process's end or the call's deadline. Stopping a call
  (timeout, ``interrupt()``, shutdown) terminates its process; the next call starts a new one.
  Arguments and results are pickled (``_pickling``'s rules, so lambdas and ``__main__``
  functions travel as they do to workers); ``Queue`` and ``SharedBuffer`` cannot reach another
  process and are refused with a ``NotShareableError``.
* :class:`ThreadLane` (``"thread"``): up to ``max_workers`` threads of the main interpreter
  (useful for numeric code that releases the GIL, and on free-threaded builds). Calls get the
  very objects passed to ``submit`` (nothing is copied). Stopping a call is best effort: an
  exception (:class:`~interpool.TaskInterrupted`) is raised in its thread at its next bytecode
  boundary (``PyThreadState_SetAsyncExc``); a call blocked in C is given up after the pool's
  ``interrupt_grace`` (its future fails, a new thread takes its place, the old one ends when
  the call returns).

A lane task's future is the same ``TaskFuture`` a worker task has (``future._lane`` is its
:class:`LaneTask`), so results, original exception types, ``cancel``, ``interrupt``, time limits,
``map`` (with ``chunksize``: a batch moves as a whole) and shutdown behave as for worker tasks.
The pool's ``PoolState`` stops and joins the lane after its own workers and dispatchers. A
reply still on its way may move one more call to the lane after ``stop()``, so the lane's
runners stay until the pool's last dispatcher has ended and *sealed* the lane (CPython 3.12
cannot start threads during exit). The lane also registers itself for the exit hook
(``_process``) while its threads run.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import pickle
import sys
import threading
import time
import warnings
from collections.abc import Callable, Hashable
from concurrent.futures import BrokenExecutor, Future, InvalidStateError
from concurrent.futures import wait as wait_futures
from concurrent.futures.thread import BrokenThreadPool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # multiprocessing is imported when the process lane starts its first process
    from multiprocessing.connection import Connection

from . import _pickling, _process, _refusal, _worker
from ._dispatch import TaskFuture, cancel_and_notify, decode_exception
from ._errors import FallbackWarning, NotShareableError
from ._interpool import Constant, Queue, SharedBuffer, TaskInterrupted

LANES = ("process", "thread")

# LaneTask.state
QUEUED, RUNNING, DONE, CANCELLED = range(4)

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def check_fallback(value: object) -> str | None:
    """The ``fallback=`` argument, validated."""
    if value is None or (isinstance(value, str) and value in LANES):
        return value
    raise ValueError(
        f"fallback must be 'process' (calls that cannot run in a worker interpreter run in a process), "
        f"'thread' (in a thread of the main interpreter) or None (they fail with the ImportError), got {value!r}"
    )


def check_not_importing_main() -> None:
    """Refuse a pool created while a process of the lane imports the main script (as
    multiprocessing does in its children): the script creates its pool at import time."""
    process = sys.modules.get("multiprocessing.process")
    if process is not None and getattr(process.current_process(), "_inheriting", False):
        raise RuntimeError(
            "an InterpreterPoolExecutor was created while a process of interpool's fallback lane was importing "
            "the main script (as multiprocessing does in every process it starts): the script creates its pool "
            'at import time. Protect the entry point with `if __name__ == "__main__":`, as a '
            "ProcessPoolExecutor needs, or pass fallback='thread' or fallback=None"
        )


def make(
    fallback: str | None,
    max_workers: int,
    name: str,
    initializer: Callable[..., object] | str | None,
    initargs: tuple[Any, ...],
    max_tasks: int | None,
    grace: float,
) -> Lane | None:
    """The lane for ``fallback`` (nothing starts until a call needs it), or ``None``."""
    if fallback is None:
        return None
    kind = ProcessLane if fallback == "process" else ThreadLane
    return kind(max_workers, name, initializer, initargs, max_tasks, grace)


def _target(fn: Any, args: tuple[Any, ...]) -> Any:
    """What a task really calls: the function of a ``map`` batch or a joblib batch."""
    if (fn is _worker.run_chunk or fn is _worker.run_chunk1) and args:
        return args[0]
    if fn is _worker.run_calls and args and args[0]:
        return args[0][0][0]
    return fn


def route_key(fn: Any, args: tuple[Any, ...]) -> Hashable:
    """What the lane remembers of a call: its function (unwrapped from partials, bound
    methods and ``map`` batches; a callable instance by its class), or a script's text."""
    if fn is _worker.exec_script and args:
        return ("script", args[0])
    try:
        target = _target(fn, args)
        while isinstance(target, functools.partial):
            target = target.func
        target = getattr(target, "__func__", target)
        if not hasattr(target, "__qualname__"):
            target = type(target)
        return (getattr(target, "__module__", None), target.__qualname__, getattr(target, "__code__", None))
    except Exception:  # an object whose attributes raise: keyed by its type
        return ("?", type(fn).__qualname__, None)


def describe_call(fn: Any, args: tuple[Any, ...]) -> str:
    if fn is _worker.exec_script:
        return "a script task"
    target = _target(fn, args)
    while isinstance(target, functools.partial):
        target = target.func
    return _pickling.describe(target, call=True)


_CONTAINERS = (tuple, list, dict, set, frozenset)


def _has_constant(obj: Any, seen: set[int]) -> bool:
    """Whether a ``Constant`` is in ``obj`` where the codec would find one: ``obj`` itself, or
    inside exact tuples, lists, dicts (keys and values), sets and frozensets."""
    kind = type(obj)
    if kind is Constant:
        return True
    if kind not in _CONTAINERS or id(obj) in seen:
        return False
    seen.add(id(obj))
    items = itertools.chain.from_iterable(obj.items()) if kind is dict else obj
    return any(_has_constant(item, seen) for item in items)


def _unwrap(obj: Any, memo: dict[int, Any]) -> Any:
    kind = type(obj)
    if kind is Constant:
        return obj.value
    if kind not in _CONTAINERS:
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if kind is list:
        new_list: list[Any] = []
        memo[id(obj)] = new_list  # before the items: a list may contain itself
        new_list.extend(_unwrap(item, memo) for item in obj)
        return new_list
    if kind is dict:
        new_dict: dict[Any, Any] = {}
        memo[id(obj)] = new_dict
        for key, value in obj.items():
            new_dict[_unwrap(key, memo)] = _unwrap(value, memo)
        return new_dict
    result = kind(_unwrap(item, memo) for item in obj)
    memo[id(obj)] = result
    return result


def unwrap_constants(values: Any) -> Any:
    """``values`` with every ``Constant`` replaced by its value, where the codec would decode
    one for a worker (itself, or inside exact tuples, lists, dicts, sets and frozensets): the
    lane is transparent, so a lane call (and the initializer of a lane process or thread) gets
    what a worker would. Returned unchanged (the same object) when there is no Constant; else
    its built-in containers are copied (as they are for a worker), other objects shared."""
    if not _has_constant(values, set()):
        return values
    return _unwrap(values, {})


def _settle(future: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``future``, unless an interrupt cancelled it meanwhile (that outcome stands)."""
    try:
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    except InvalidStateError:
        pass


class LaneTask:
    """One call in the lane, and its future's handle (``TaskFuture._lane``)."""

    __slots__ = (
        "abandoned",
        "args",
        "data",
        "fn",
        "future",
        "kwargs",
        "lane",
        "runner",
        "state",
        "stop",
        "timed",
        "timeout",
    )

    def __init__(
        self,
        lane: Lane,
        future: TaskFuture[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> None:
        self.lane, self.future = lane, future
        self.fn: Callable[..., Any] | None = fn
        self.args, self.kwargs = args, kwargs
        self.timeout = timeout
        self.state = QUEUED
        self.stop: str | None = None  # "timeout" or "interrupt" once asked to stop
        self.runner: threading.Thread | None = None
        self.abandoned = False  # thread lane: given up while stuck in a call
        self.timed = False  # thread lane: has entries in the watchdog's heap
        self.data: bytes | None = None  # process lane: the call, pickled when it was submitted

    def running(self) -> bool:
        return self.state == RUNNING

    def cancel(self) -> bool:
        return self.lane._cancel(self)

    def interrupt(self) -> bool:
        return self.lane._interrupt(self)

    def describe(self) -> str:
        return describe_call(self.fn, self.args) if self.fn is not None else "a call"

    def release(self) -> None:
        """Drop the call once it ran or was cancelled: a future kept by the caller must not
        keep its arguments alive."""
        self.fn, self.args, self.kwargs, self.data = None, (), {}, None


class Lane:
    """What both lanes share: the queue of calls, runner threads started as calls need them
    (up to ``max_workers``), cancel/interrupt, shutdown, counters, and which functions go to
    the lane. Subclasses run a claimed task (``_run``) and stop a running one
    (``_stop_running``)."""

    kind = ""

    def __init__(
        self,
        max_workers: int,
        name: str,
        initializer: Callable[..., object] | str | None,
        initargs: tuple[Any, ...],
        max_tasks: int | None,
        grace: float,
    ) -> None:
        self.max_workers = max_workers
        self.name = f"{name}_{self.kind}_lane"
        # Constants in initargs reach the initializer as their values, as in a worker.
        self._initializer = None if initializer is None else (initializer, unwrap_constants(tuple(initargs)))
        self._max_tasks = max_tasks
        self._grace = grace
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: collections.deque[LaneTask] = collections.deque()
        self._tasks: set[LaneTask] = set()  # queued or running
        self._runners: set[threading.Thread] = set()  # counted toward max_workers
        self._threads: list[threading.Thread] = []  # every runner started, joined by join()
        self._stuck: dict[LaneTask, str] = {}  # thread lane: given up, call still running
        self._idle = 0  # runners waiting for a task, not yet notified
        self._closed = False
        # Set when no more calls can be moved here (the owning pool's dispatchers ended).
        self._sealed = threading.Event()
        self._cancel_new = False  # after a shutdown that interrupts: moved calls are cancelled
        self._broken: str | None = None
        self._registered = False
        self._numbers = itertools.count()
        self._counts = collections.Counter[str]()
        # Functions whose calls go straight to the lane, with the module that sent them here.
        self.routes: dict[Hashable, str] = {}
        self._routes_lock = threading.Lock()

    # -- which calls come here -------------------------------------------------------------

    def wants(self, fn: Any, args: tuple[Any, ...]) -> bool:
        """Whether this call goes straight to the lane (its function was moved here)."""
        return route_key(fn, args) in self.routes

    def take_over(self, future: TaskFuture[Any], call: Call | None, exc: BaseException, started: bool) -> bool:
        """A worker failed ``call`` with ``exc``. If a module it needs refuses own-GIL
        interpreters, remember its function for the lane (with a FallbackWarning), and run
        the call here when it had not ``started``. Returns whether ``future`` was taken care
        of (otherwise the caller sets ``exc``, which may have gained a note)."""
        if call is None or not _refusal.is_refusal(exc):
            return False
        fn, args, kwargs = call
        key = route_key(fn, args)
        module = _refusal.refused_module(exc) or "?"
        with self._routes_lock:
            if key not in self.routes:
                try:
                    self._warn(fn, args, module, started, _refusal.isolation_failure(exc))
                except Warning as warning:  # a filter made it an error: no fallback for this call
                    if started:
                        return False
                    warning.__cause__ = exc
                    future.set_exception(warning)
                    return True
                self.routes[key] = module
        what = describe_call(fn, args)
        if started:
            exc.add_note(
                f"interpool: this call of {what} had already started in a worker interpreter when the import of "
                f"{module} failed, so it was not run again elsewhere (a call never runs twice). Later calls of "
                f"{what} run in the fallback {self.kind} lane. Import {_refusal.top_level(module)} at the top of "
                "the task's module to make the switch transparent: the call then fails before it starts, and "
                "runs in the lane at once."
            )
            return False
        self.submit(future, fn, args, kwargs, future._timeout)
        return True

    def _warn(
        self, fn: Any, args: tuple[Any, ...], module: str, started: bool, isolation_failure: str | None = None
    ) -> None:
        what = describe_call(fn, args)
        fixes = []
        if isolation_failure is not None:
            fixes.append(f"isolate= did not help ({isolation_failure})")
        elif _refusal.isolation_available() and not _refusal.in_stdlib(module):
            # (stdlib modules are built in or refuse for process-wide state: no copy helps.) A
            # call may need other refusing packages after this one (scikit-learn: numpy, scipy):
            # `check` tries isolation with each package it meets and names the full list.
            owner = _refusal.top_level(getattr(_target(fn, args), "__module__", None) or module)
            fixes.append(
                f"InterpreterPoolExecutor(isolate=[{_refusal.top_level(module)!r}]) may load it in workers "
                f"(`python -m interpool check {owner}` lists every package the import needs isolated)"
            )
        fixes.append("fallback=None turns the lane off (the ImportError is raised instead)")
        where = "This call had already started, so it failed; later calls" if started else "This call and later ones"
        lane = (
            "in a process of the executor (arguments and results are pickled)"
            if self.kind == "process"
            else "in a thread of the main interpreter"
        )
        message = (
            f"{what} runs in interpool's fallback {self.kind} lane, not in worker interpreters: extension "
            f"module {_refusal.name_of(module)} cannot load in an own-GIL interpreter. {where} run {lane}. "
            f"To change that: {'; '.join(fixes)}."
        )
        target = _target(fn, args)
        while isinstance(target, functools.partial):
            target = target.func
        code = getattr(getattr(target, "__func__", target), "__code__", None)
        warnings.warn_explicit(
            FallbackWarning(message),
            FallbackWarning,
            code.co_filename if code is not None else "<interpool>",
            code.co_firstlineno if code is not None else 0,
            module=getattr(target, "__module__", None) or "interpool",
        )

    # -- queue and runners -----------------------------------------------------------------

    def submit(
        self,
        future: TaskFuture[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> None:
        """Run the call in the lane; ``future`` completes with its outcome. Accepted after
        ``stop()`` too: a worker's reply may move a call here during shutdown, and a worker
        had claimed that call, so only a stop that interrupts running calls cancels it."""
        task = LaneTask(self, future, fn, args, kwargs, timeout)
        future._lane = task
        unsendable = self._prepare(task)
        if unsendable is not None:
            task.state = CANCELLED
            task.release()
            _settle(future, exc=unsendable)
            return
        refused: RuntimeError | None = None
        with self._lock:
            broken, cancel = self._broken, self._cancel_new
            if broken is None and not cancel:
                self._queue.append(task)
                self._tasks.add(task)
                self._counts["submitted"] += 1
                self._counts["queued"] += 1
                if self._idle:
                    self._idle -= 1
                    self._work.notify()
                elif len(self._runners) < self.max_workers:
                    refused = self._spawn()
                    if refused is not None and not self._runners:  # no thread can ever take it
                        self._queue.remove(task)
                        self._tasks.discard(task)
                        self._counts["queued"] -= 1
                        task.state = CANCELLED
        if broken is not None:
            task.state = CANCELLED
            _settle(future, exc=self._broken_error())
        elif cancel:
            task.state = CANCELLED
            cancel_and_notify(future)
        elif refused is not None and task.state == CANCELLED:
            error = RuntimeError(
                f"{task.describe()} cannot run in a worker interpreter, and the fallback {self.kind} lane cannot "
                f"start a thread now: {refused}"
            )
            _settle(future, exc=error)

    def _prepare(self, task: LaneTask) -> BaseException | None:
        """Make the call ready to run when it is submitted (or moved here), not when a runner
        takes it: later changes to its arguments must not change what runs. The error that
        fails it instead, if any."""
        task.args, task.kwargs = unwrap_constants(task.args), unwrap_constants(task.kwargs)
        return None

    def _spawn(self) -> RuntimeError | None:
        """Start a runner thread (lock held); the error if Python refuses (at exit, 3.12)."""
        thread = threading.Thread(target=self._runner, name=f"{self.name}_{next(self._numbers)}", daemon=False)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't create new thread at interpreter shutdown"
            return exc
        self._runners.add(thread)
        self._threads.append(thread)
        if not self._registered:
            self._registered = True
            _process.register(self)
        return None

    def _runner(self) -> None:
        me = threading.current_thread()
        with self._lock:  # _spawn() registers the thread after it started
            pass
        try:
            self._run(me)
        finally:
            with self._lock:
                self._runners.discard(me)
                if self._queue and not self._runners and self._broken is None:
                    self._spawn()  # calls that arrived as this runner was leaving
                elif self._closed and not self._runners and not self._stuck and self._registered:
                    self._registered = False
                    _process.unregister(self)

    def _next_task(self, me: threading.Thread) -> LaneTask | None:
        """The next call for runner ``me`` (marked running), or ``None`` when it must end."""
        with self._lock:
            while True:
                while self._queue:
                    task = self._queue.popleft()
                    if task.state == QUEUED:
                        task.state = RUNNING
                        task.runner = me
                        self._counts["queued"] -= 1
                        self._counts["busy"] += 1
                        return task
                if (self._closed and self._sealed.is_set()) or self._broken is not None or me not in self._runners:
                    return None
                self._idle += 1
                self._work.wait()

    def _finished(self, task: LaneTask) -> None:
        """The call returned (lock held)."""
        if task.state == RUNNING:
            task.state = DONE
            task.release()
            self._tasks.discard(task)
            self._counts["completed"] += 1
            if task.abandoned:
                self._stuck.pop(task, None)
            else:
                self._counts["busy"] -= 1

    def _run(self, me: threading.Thread) -> None:
        raise NotImplementedError

    def _stop_running(self, task: LaneTask) -> None:
        """Stop the running ``task`` (lock held; ``task.stop`` says why)."""
        raise NotImplementedError

    # -- cancel, interrupt, shutdown -------------------------------------------------------

    def _cancel(self, task: LaneTask) -> bool:
        with self._lock:
            if task.state != QUEUED:
                return False
            task.state = CANCELLED
            task.release()
            self._tasks.discard(task)
            self._counts["queued"] -= 1
            return True

    def _interrupt(self, task: LaneTask) -> bool:
        with self._lock:
            if task.state == QUEUED:
                task.state = CANCELLED
                task.release()
                self._tasks.discard(task)
                self._counts["queued"] -= 1
                return True
            if task.state != RUNNING or task.abandoned:
                return False
            if task.stop is None:
                task.stop = "interrupt"
                self._stop_running(task)
            return True

    def stop(self, cancel: bool, interrupt: bool = False) -> None:
        """Take no more calls once the queue is empty; with ``cancel``, cancel the queued ones;
        with ``interrupt``, stop the running ones (and cancel calls moved here later)."""
        with self._lock:
            self._closed = True
            stopped: list[LaneTask] = []
            if cancel:
                for task in self._queue:
                    if task.state == QUEUED:
                        task.state = CANCELLED
                        task.release()
                        self._tasks.discard(task)
                        self._counts["queued"] -= 1
                        stopped.append(task)
                self._queue.clear()
            if interrupt:
                self._cancel_new = True
                for task in list(self._tasks):
                    if task.state == RUNNING and task.stop is None and not task.abandoned:
                        task.stop = "interrupt"
                        self._stop_running(task)
                        stopped.append(task)
            self._idle = 0
            self._work.notify_all()
            self._wake()
        for task in stopped:
            cancel_and_notify(task.future)

    def _wake(self) -> None:
        """Wake helper threads after ``stop`` (lock held)."""

    def seal(self) -> None:
        """No more calls can be moved here (the owning pool's dispatchers ended): once
        stopped, the runners may leave when the queue is empty."""
        with self._lock:
            self._sealed.set()
            self._idle = 0
            self._work.notify_all()

    def join(self, timeout: float | None = None, stuck: bool = False, sealed: bool = True) -> bool:
        """Wait (up to ``timeout``) for the owning pool to seal the lane and then for the
        runners to end after ``stop``; runners of calls given up while stuck only with
        ``stuck``. Without ``sealed`` (a done-callback in one of the pool's dispatchers, which
        seal the lane when they end), wait only for the calls here to finish: the runners end
        once that dispatcher has ended, and exit waits for them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not sealed:
            with self._lock:
                futures = [task.future for task in self._tasks]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return not wait_futures(futures, left).not_done
        if not self._sealed.wait(timeout):
            return False
        me = threading.current_thread()
        while True:
            with self._lock:
                skip = {task.runner for task in self._stuck} if not stuck else set()
                threads = [t for t in self._threads if t.is_alive() and t is not me and t not in skip]
                self._threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                return self._join_helpers(deadline)
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    return False

    def _join_helpers(self, deadline: float | None) -> bool:
        return True

    def stuck_tasks(self) -> list[str]:
        with self._lock:
            return [f"{what} (fallback {self.kind} lane)" for what in self._stuck.values()]

    # -- broken lane, stats ----------------------------------------------------------------

    def _broken_class(self) -> type[BrokenExecutor]:
        return BrokenExecutor

    def _broken_error(self) -> BrokenExecutor:
        return self._broken_class()(f"interpool's fallback {self.kind} lane cannot run calls: {self._broken}")

    def _break(self, text: str, initializer: bool = True) -> None:
        """The lane cannot start (its initializer failed): fail the queued calls and every
        later one."""
        summary = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        with self._lock:
            first = self._broken is None
            self._broken = f"its initializer failed:\n{text}" if initializer else text
            failed = [task for task in self._queue if task.state == QUEUED]
            for task in failed:
                task.state = CANCELLED
                task.release()
                self._tasks.discard(task)
                self._counts["queued"] -= 1
            self._queue.clear()
            self._work.notify_all()
        if first and initializer:  # as the stdlib logs it
            logging.getLogger("concurrent.futures").critical("Exception in initializer: %s\n%s", summary, text)
        for task in failed:
            _settle(task.future, exc=self._broken_error())

    def _live_workers(self) -> int:
        return len(self._runners)

    def stats(self) -> dict[str, int]:
        """``lane_*`` counters for ``InterpreterPoolExecutor.stats()``."""
        with self._lock:
            counts = self._counts
            return {
                "lane_workers": self._live_workers(),
                "lane_busy": counts["busy"],
                "lane_queued": counts["queued"],
                "lane_submitted": counts["submitted"],
                "lane_completed": counts["completed"],
                "lane_pending": sum(not task.future.done() for task in self._tasks),
                "lane_replaced": counts["replaced"],
                "lane_recycled": counts["recycled"],
                "lane_abandoned": counts["abandoned"],
                "lane_stuck": len(self._stuck),
                "lane_functions": len(self.routes),
            }


# -- the process lane ----------------------------------------------------------------------


class _LanePickler(_pickling._Pickler):
    """The workers' pickling rules, refusing what cannot reach another process."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is Queue or kind is SharedBuffer:
            raise NotShareableError(
                f"an interpool.{kind.__name__} cannot reach another process, and this call runs in the fallback "
                "process lane (a module it needs cannot load in a worker interpreter). Pass the values "
                "themselves, use fallback='thread' (the lane then runs in this process, where queues and "
                "buffers work), or make the module load in workers"
            )
        return super().reducer_override(obj)


def _dumps(obj: object) -> bytes:
    import io

    buf = io.BytesIO()
    _LanePickler(buf, _pickling.PROTOCOL).dump(obj)
    return buf.getvalue()


_MAIN_HINT = (
    "The main script runs again in each process the lane starts, as with a ProcessPoolExecutor: if it "
    'creates its pool at import time, protect its entry point with `if __name__ == "__main__":`'
)


def _context() -> Any:
    """Where lane processes come from: ``forkserver`` (``spawn`` where there is none), never
    ``fork``."""
    import multiprocessing

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def child_main(conn: Connection, init: bytes | None) -> None:
    """A process of the lane: run the initializer, then one call per message until the pipe
    closes (or an empty message). Replies are pickled ``(True, result)`` or ``(False,
    exception description)``, as workers describe exceptions (``_worker.describe``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops lane calls
    failure = None
    if init is not None:
        try:
            initializer = pickle.loads(init)
        except BaseException as exc:
            failure = _worker.format_failure(exc)
        else:
            failure = _worker.initialize(initializer)
    conn.send_bytes(pickle.dumps(failure))  # None: ready
    if failure is not None:
        return
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not data:
            return
        conn.send_bytes(_run_call(data))


def _run_call(data: bytes) -> bytes:
    fn: Any = None
    try:
        fn, args, kwargs = pickle.loads(data)
        reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:
        reply = (False, _worker.describe(exc))
    try:
        return _pickling.dumps(reply)
    except Exception as exc:
        return _pickling.dumps((False, _worker.unsendable_result(fn, exc)))


class _Child:
    """One process of the lane and the parent's end of its pipe."""

    def __init__(self, context: Any, name: str, init: bytes | None) -> None:
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=child_main, args=(child_end, init), name=name, daemon=False)
        try:
            self.process.start()
        finally:
            child_end.close()
        self.calls = 0

    def receive(self, deadline: float | None) -> bytes | None:
        """The next message; ``None`` if the process ended first. ``TimeoutError`` at the
        deadline."""
        from multiprocessing.connection import wait

        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = wait([self.conn, self.process.sentinel], timeout)
        if self.conn in ready:
            try:
                message: bytes = self.conn.recv_bytes()
            except (EOFError, OSError):
                return None
            return message
        if ready:
            return None
        raise TimeoutError

    def kill(self) -> None:
        """Terminate the process (any thread may call this)."""
        try:
            self.process.terminate()
        except (OSError, ValueError):  # already gone, or closed
            pass

    def close(self, graceful: bool) -> None:
        """End the process: ask it to leave (``graceful``), else terminate it; reap it."""
        if graceful:
            try:
                self.conn.send_bytes(b"")
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process.close()


class ProcessLane(Lane):
    """Calls run in child processes (one runner thread per process)."""

    kind = "process"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._context: Any = None  # set when the first process starts
        self._children: dict[threading.Thread, _Child] = {}
        self._init_bytes: bytes | None = None

    def _broken_class(self) -> type[BrokenExecutor]:
        from concurrent.futures.process import BrokenProcessPool

        return BrokenProcessPool

    def _live_workers(self) -> int:
        return len(self._children)

    def _stop_running(self, task: LaneTask) -> None:
        child = self._children.get(task.runner) if task.runner is not None else None
        if child is not None:
            child.kill()  # the runner sees the process end, and replaces it
        # Not started yet: _start sees task.stop once the process exists.

    def _run(self, me: threading.Thread) -> None:
        child: _Child | None = None
        try:
            while (task := self._next_task(me)) is not None:
                try:
                    child = self._execute(me, task, child)
                except Exception as exc:  # interpool's own failure: this call fails, the lane goes on
                    if child is not None:
                        self._replace(me, child)
                        child = None
                    self._done(task, exc=RuntimeError(f"interpool's fallback process lane failed: {exc!r}"))
        finally:
            if child is not None:
                self._retire(me, child, graceful=True)

    def _retire(self, me: threading.Thread, child: _Child, graceful: bool) -> None:
        with self._lock:
            self._children.pop(me, None)
        child.close(graceful)

    def _replace(self, me: threading.Thread, child: _Child) -> None:
        """End a process that was stopped or died; the next call starts a new one."""
        self._retire(me, child, graceful=False)
        with self._lock:
            self._counts["replaced"] += 1

    def _prepare(self, task: LaneTask) -> BaseException | None:
        """Pickle the call now, as a worker's call is encoded at ``submit()``: a later change
        to an argument does not change what runs."""
        try:
            task.data = _dumps((task.fn, unwrap_constants(task.args), unwrap_constants(task.kwargs)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            unsendable = NotShareableError(
                f"cannot send the call to {task.describe()} to the fallback process lane: {exc}"
            )
            unsendable.__cause__ = exc
            return unsendable
        return None

    def _execute(self, me: threading.Thread, task: LaneTask, child: _Child | None) -> _Child | None:
        """Run ``task`` in ``child`` (started if ``None``); return the process for the next call."""
        data = task.data
        assert data is not None  # pickled by _prepare; released only once the call ran
        task.data = None
        if child is None:
            child = self._start(me, task)
            if child is None:
                return None
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        try:
            child.conn.send_bytes(data)
            del data
            reply = child.receive(deadline)
        except TimeoutError:
            with self._lock:
                task.stop = task.stop or "timeout"
            reply = None
        except OSError:  # the pipe broke: the process ended
            reply = None
        if reply is None:  # stopped, or the process died
            error = self._stopped(task, child)
            self._replace(me, child)
            self._done(task, exc=error)
            return None
        try:
            ok, payload = pickle.loads(reply)
            del reply
            if ok:
                self._done(task, result=payload)
            else:
                self._done(task, exc=decode_exception(payload))
        except BaseException as exc:  # the reply cannot be rebuilt here
            self._done(task, exc=exc)
        if task.stop is not None:  # asked to stop as it replied: its process may be terminated already
            self._replace(me, child)
            return None
        child.calls += 1
        if self._max_tasks and child.calls >= self._max_tasks:
            self._retire(me, child, graceful=True)
            with self._lock:
                self._counts["recycled"] += 1
            return None
        return child

    def _start(self, me: threading.Thread, task: LaneTask) -> _Child | None:
        """A new process for ``task``, ready (initializer run); ``None`` when ``task`` was
        settled instead (stopped, the initializer failed, the process could not start)."""
        try:
            if self._initializer is not None and self._init_bytes is None:
                self._init_bytes = _dumps(self._initializer)
            if self._context is None:
                self._context = _context()
            child = _Child(self._context, f"{self.name}_{next(self._numbers)}", self._init_bytes)
        except BaseException as exc:
            if isinstance(exc, NotShareableError):
                text = f"its initializer and initargs cannot be sent to its processes: {exc}"
            else:
                text = f"its process could not start: {type(exc).__name__}: {exc}. {_MAIN_HINT}"
            self._break(text, initializer=False)
            self._done(task, exc=self._broken_error())
            return None
        with self._lock:
            self._children[me] = child
            if task.stop is not None:
                child.kill()
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        try:
            message = child.receive(deadline)
        except TimeoutError:  # a hanging initializer is bounded by the task's time limit
            with self._lock:
                task.stop = task.stop or "timeout"
            message = None
        failure: str | None = pickle.loads(message) if message else None  # the initializer's traceback
        if message is not None and failure is None:
            return child  # ready
        error = self._stopped(task, child, starting=True)
        if message is None and task.stop is None:  # it died while starting: it would again
            child.process.join(1)
            self._break(
                f"its process exited with code {child.process.exitcode} while starting, before it could run "
                f"anything (its error, if any, is on stderr). {_MAIN_HINT}",
                initializer=False,
            )
            error = self._broken_error()
        elif failure is not None:
            self._break(failure)
            error = self._broken_error()
        self._retire(me, child, graceful=False)
        self._done(task, exc=error)
        return None

    def _stopped(self, task: LaneTask, child: _Child, starting: bool = False) -> BaseException | None:
        """The outcome of a call whose process ended (``None``: interrupted, it ends cancelled)."""
        if task.stop == "interrupt":
            return None
        if task.stop == "timeout":
            what = "its process did not become ready" if starting else "the task ran longer than"
            return TimeoutError(
                f"{what} its {task.timeout:g}s timeout in the fallback process lane; its process was terminated "
                "(a new one takes its place)"
            )
        child.process.join(1)
        code = child.process.exitcode
        return self._broken_class()(
            f"the process of the fallback lane running {task.describe()} ended unexpectedly"
            + (f" (exit code {code})" if code is not None else "")
            + "; a new process takes its place for the next call"
        )

    def _done(self, task: LaneTask, result: Any = None, exc: BaseException | None = None) -> None:
        with self._lock:
            self._finished(task)
        if task.stop == "interrupt":
            return  # its future ended cancelled when it was interrupted
        _settle(task.future, result, exc)


# -- the thread lane -----------------------------------------------------------------------


def _async_raise(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode boundary (``None``: clear a
    pending one). A no-op where ctypes is missing."""
    try:
        import ctypes
    except ImportError:
        return
    target = ctypes.py_object(exc_type) if exc_type is not None else ctypes.c_void_p(None)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), target)


class ThreadLane(Lane):
    """Calls run in threads of the main interpreter; a watchdog thread enforces time limits
    and gives up calls that do not stop."""

    kind = "thread"

    def _broken_class(self) -> type[BrokenExecutor]:
        return BrokenThreadPool

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._timers: list[tuple[float, int, LaneTask, str]] = []
        self._order = itertools.count()
        self._ticks = threading.Condition(self._lock)
        self._watchdog: threading.Thread | None = None

    def _run(self, me: threading.Thread) -> None:
        namespace: dict[str, Any] = {"__name__": "__interpool_lane__"}  # for script tasks
        if self._initializer is not None:
            failure = self._initialize(namespace)
            if failure is not None:
                self._break(failure)
                return
        while (task := self._next_task(me)) is not None:
            self._execute(task, namespace)
            if task.abandoned:
                return  # replaced while stuck: leave

    def _initialize(self, namespace: dict[str, Any]) -> str | None:
        assert self._initializer is not None
        fn, initargs = self._initializer
        try:
            if isinstance(fn, str):
                exec(fn, namespace)  # a documented feature: script initializers
            else:
                fn(*initargs)
        except BaseException as exc:
            return _worker.format_failure(exc)
        return None

    def _execute(self, task: LaneTask, namespace: dict[str, Any]) -> None:
        # A stop request may land anywhere in this thread once the task is RUNNING: the outer
        # handler catches one that lands after the call, before _returned() withdraws it.
        outcome: tuple[bool, Any] = (False, None)
        try:
            try:
                fn, args, kwargs = task.fn, task.args, task.kwargs
                assert fn is not None  # released only once the call returned
                if fn is _worker.exec_script:  # scripts run in the lane thread's namespace, not __main__
                    fn, args = functools.partial(exec, args[0], namespace), ()
                if task.timeout is not None:
                    with self._lock:
                        self._schedule(time.monotonic() + task.timeout, task, "timeout")
                outcome = (True, fn(*args, **kwargs))
            except BaseException as exc:
                outcome = (False, exc)
            self._returned(task)
        except TaskInterrupted:
            self._returned(task)
        self._settle_outcome(task, *outcome)

    def _returned(self, task: LaneTask) -> None:
        with self._lock:
            self._finished(task)
            if task.stop is not None and task.runner is not None and task.runner.ident is not None:
                _async_raise(task.runner.ident, None)  # a request not yet delivered must not land later
            if task.timed:
                self._timers = [entry for entry in self._timers if entry[2] is not task]
                heapq.heapify(self._timers)

    def _settle_outcome(self, task: LaneTask, ok: bool, value: Any) -> None:
        if task.abandoned or task.stop == "interrupt":
            return  # its future failed when it was given up, or ended cancelled when interrupted
        if task.stop == "timeout":
            error = TimeoutError(f"the task ran longer than its {task.timeout:g}s timeout and was stopped")
            if isinstance(value, TaskInterrupted):
                error.__cause__ = value  # its traceback shows where it stopped
            else:
                error.add_note("the task ended after it was asked to stop; its result was dropped")
            _settle(task.future, exc=error)
        elif ok:
            _settle(task.future, value)
        else:
            _settle(task.future, exc=value)

    def _stop_running(self, task: LaneTask) -> None:
        if task.runner is not None and task.runner.ident is not None:
            _async_raise(task.runner.ident, TaskInterrupted)
        self._schedule(time.monotonic() + self._grace, task, "grace")

    def _schedule(self, when: float, task: LaneTask, action: str) -> None:
        """Do ``action`` to ``task`` at ``when`` (lock held)."""
        task.timed = True
        heapq.heappush(self._timers, (when, next(self._order), task, action))
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}_watchdog", daemon=False)
            self._watchdog.start()
        self._ticks.notify()

    def _watch(self) -> None:
        while True:
            given_up: list[LaneTask] = []
            with self._lock:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, task, action = heapq.heappop(self._timers)
                    if task.state != RUNNING or task.abandoned:
                        continue
                    if action == "timeout" and task.stop is None:
                        task.stop = "timeout"
                        self._stop_running(task)
                    elif action == "grace":
                        self._give_up(task)
                        given_up.append(task)
                if not self._timers and self._closed:
                    return
                if not given_up:
                    self._ticks.wait(self._timers[0][0] - now if self._timers else None)
            for task in given_up:
                if task.stop == "timeout":
                    _settle(
                        task.future,
                        exc=TimeoutError(
                            f"the task ran longer than its {task.timeout:g}s timeout and did not stop within "
                            f"{self._grace:.1f}s after it was asked to: it is stuck in code that does not return to "
                            "Python (a C call). Its thread in the fallback lane was replaced; it ends when the call "
                            "returns."
                        ),
                    )

    def _give_up(self, task: LaneTask) -> None:
        """A call did not stop within the grace period: its runner stops counting, another may
        start (lock held)."""
        task.abandoned = True
        self._stuck[task] = task.describe()
        self._counts["busy"] -= 1
        self._counts["abandoned"] += 1
        self._counts["replaced"] += 1
        if task.runner is not None:
            self._runners.discard(task.runner)
        if self._queue and len(self._runners) < self.max_workers:
            self._spawn()

    def _wake(self) -> None:
        self._ticks.notify_all()

    def _join_helpers(self, deadline: float | None) -> bool:
        with self._lock:
            watchdog = self._watchdog
            if not self._closed:
                return True
            self._ticks.notify_all()
        if watchdog is None or watchdog is threading.current_thread():
            return True
        watchdog.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not watchdog.is_alive()
