"""What both fallback lanes share: a lane task and its states, the queue of calls, runner
threads, cancel/interrupt/shutdown, and the accounting. Which calls come to the lane is
``_lane.py``'s business; the lanes are ``_lane_process.py`` (child processes) and
``_lane_thread.py`` (threads of the main interpreter).

**Invariant: every lane task ends exactly once.**

* Its state only moves forward, under the lane's lock: ``QUEUED -> RUNNING -> DONE`` (it ran:
  it returned or raised, or was stopped or given up while running) or ``QUEUED -> CANCELLED``
  (it never ran: cancelled, or refused by :meth:`Lane.submit`: it cannot be sent to a
  process, the lane is broken, stopping with ``interrupt``, or cannot start a thread).
* Its future gets exactly one outcome (a result, an exception, or cancellation), from
  whoever *claims* the task (:meth:`Lane._claim`, under the lock; it succeeds once): the
  runner when the call ends, ``cancel()``/``interrupt()``, ``stop()``, a lane that breaks,
  the thread lane's watchdog when it gives up a call stuck in C, or ``submit`` refusing it.
  A path whose claim fails leaves the future alone, and futures are completed with
  ``set_result``/``set_exception``/``cancel``, which refuse a second outcome: a lane bug that
  completes one twice raises instead of passing unseen.
* The counters follow the states, so that under the lock ``submitted == queued + busy +
  stuck + completed + cancelled`` (``stuck``: given up, the call still running).
* A stop request (``task.stop``: ``"timeout"`` or ``"interrupt"``) is made at most once per
  task, and only while it is RUNNING; an interrupt claims the task (its future ends cancelled
  whatever the call does next), a time limit leaves the outcome to the runner or watchdog.

``tests/stress/test_lane_accounting.py`` checks all of it, for both lanes, with submit,
cancel, interrupt and shutdown racing from several threads.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future
from concurrent.futures import wait as wait_futures
from typing import Any

from . import _pickling, _process, _worker
from ._dispatch import TaskFuture, cancel_and_notify
from ._interpool import Constant

# LaneTask.state
QUEUED, RUNNING, DONE, CANCELLED = range(4)


def call_target(fn: Any, args: tuple[Any, ...]) -> Any:
    """What a task really calls: the function of a ``map`` batch or a joblib batch."""
    if (fn is _worker.run_chunk or fn is _worker.run_chunk1) and args:
        return args[0]
    if fn is _worker.run_calls and args and args[0]:
        return args[0][0][0]
    return fn


def describe_call(fn: Any, args: tuple[Any, ...]) -> str:
    if fn is _worker.exec_script:
        return "a script task"
    target = call_target(fn, args)
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


def complete(future: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Give a claimed task's future its outcome (``InvalidStateError`` if it had one)."""
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class LaneTask:
    """One call in the lane, and its future's handle (``TaskFuture._lane``)."""

    __slots__ = (
        "abandoned",
        "args",
        "claimed",
        "data",
        "fn",
        "future",
        "kwargs",
        "lane",
        "runner",
        "started",
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
        self.claimed = False  # its future's outcome is decided (Lane._claim)
        self.stop: str | None = None  # "timeout" or "interrupt" once asked to stop
        self.runner: threading.Thread | None = None
        self.started = False  # thread lane: its runner is inside the handlers a stop lands in
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
    """The queue of calls, runner threads started as calls need them (up to
    ``max_workers``), cancel/interrupt, shutdown and counters. Subclasses run a claimed task
    (``_run``) and stop a running one (``_stop_running``)."""

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
        self.blas_threads: int | None = None  # the process lane's children get it (_lane_process)
        # Constants in initargs reach the initializer as their values, as in a worker.
        self._initializer = None if initializer is None else (initializer, unwrap_constants(tuple(initargs)))
        self._max_tasks = max_tasks
        self._grace = grace
        # Reentrant only so that a thread can tell whether it holds it (ThreadLane._returned).
        self._lock = threading.RLock()
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

    # -- submit, runners -------------------------------------------------------------------

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
        refusal = self._prepare(task)
        with self._lock:
            self._counts["submitted"] += 1
            if refusal is None and self._broken is not None:
                refusal = self._broken_error()
            cancel = refusal is None and self._cancel_new
            if refusal is None and not cancel:
                self._queue.append(task)
                self._tasks.add(task)
                self._counts["queued"] += 1
                if self._idle:
                    self._idle -= 1
                    self._work.notify()
                elif len(self._runners) < self.max_workers:
                    failure = self._spawn()
                    if failure is not None and not self._runners:  # no thread can ever take it
                        self._queue.remove(task)
                        refusal = RuntimeError(
                            f"{task.describe()} cannot run in a worker interpreter, and the fallback {self.kind} "
                            f"lane cannot start a thread now: {failure}"
                        )
            if refusal is not None or cancel:
                self._end_unrun(task)
            else:
                future._lane = task  # from now on cancel() and interrupt() go to the task
        if cancel:
            cancel_and_notify(future)
        elif refusal is not None:
            complete(future, exc=refusal)

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

    def _run(self, me: threading.Thread) -> None:
        raise NotImplementedError

    def _stop_running(self, task: LaneTask) -> None:
        """Stop the running ``task`` (lock held; ``task.stop`` says why)."""
        raise NotImplementedError

    # -- how a task ends (lock held) -------------------------------------------------------

    def _claim(self, task: LaneTask) -> bool:
        """Whether the caller decides ``task``'s outcome: true once per task."""
        if task.claimed:
            return False
        task.claimed = True
        return True

    def _end_unrun(self, task: LaneTask) -> bool:
        """End a task that has not run (QUEUED: waiting, or being refused by ``submit``) as
        CANCELLED, claimed by the caller; false if it is no longer QUEUED."""
        if task.state != QUEUED or not self._claim(task):
            return False
        task.state = CANCELLED
        task.release()
        if task in self._tasks:  # it was queued (it may stay in the deque: runners skip it)
            self._tasks.discard(task)
            self._counts["queued"] -= 1
        self._counts["cancelled"] += 1
        return True

    def _finished(self, task: LaneTask) -> None:
        """The call returned, or its process ended."""
        if task.state == RUNNING:
            task.state = DONE
            task.release()
            self._tasks.discard(task)
            self._counts["completed"] += 1
            if task.abandoned:
                self._stuck.pop(task, None)
            else:
                self._counts["busy"] -= 1

    # -- cancel, interrupt, shutdown -------------------------------------------------------

    def _cancel(self, task: LaneTask) -> bool:
        with self._lock:
            return self._end_unrun(task)

    def _interrupt(self, task: LaneTask) -> bool:
        with self._lock:
            if self._end_unrun(task):
                return True
            if task.state != RUNNING or not self._claim(task):
                return False  # it ended, or its outcome is decided (it was given up while stuck)
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
                stopped += [task for task in self._queue if self._end_unrun(task)]
                self._queue.clear()
            if interrupt:
                self._cancel_new = True
                for task in list(self._tasks):
                    if task.state == RUNNING and self._claim(task):
                        if task.stop is None:
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
            failed = [task for task in self._queue if self._end_unrun(task)]
            self._queue.clear()
            self._work.notify_all()
        if first and initializer:  # as the stdlib logs it
            logging.getLogger("concurrent.futures").critical("Exception in initializer: %s\n%s", summary, text)
        for task in failed:
            complete(task.future, exc=self._broken_error())

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
                "lane_cancelled": counts["cancelled"],
                "lane_pending": sum(not task.future.done() for task in self._tasks),
                "lane_replaced": counts["replaced"],
                "lane_recycled": counts["recycled"],
                "lane_abandoned": counts["abandoned"],
                "lane_stuck": len(self._stuck),
            }
