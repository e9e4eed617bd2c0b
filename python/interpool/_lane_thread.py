"""The thread lane (``fallback="thread"``): calls run in threads of the main interpreter.

Calls get the very objects passed to ``submit`` (nothing is copied). Stopping a call is best
effort: ``TaskInterrupted`` is raised in its thread at its next bytecode boundary (the
extension's ``_interrupt_thread``, ``PyThreadState_SetAsyncExc``); a call blocked in C is
given up after the pool's ``interrupt_grace`` (its future fails, a new thread takes its place,
the old one ends when the call returns). A watchdog thread enforces time limits and gives up
calls that do not stop.

A stop request lands anywhere in the runner once sent (wherever CPython checks for one: after
every call, a lock's ``acquire()`` included), so it is sent only while the runner is inside
the handlers of :meth:`ThreadLane._execute` (``task.started``, set and cleared under the
lane's lock), once per task (and once more when the call is given up: both may land after
the call returned, and the runner has a handler for each), and withdrawn under the lock when
the call returns (a request not delivered yet must not hit the next call); the runner takes
the lock there so that a request landing as it is acquired does not leave it held. The
invariant of every lane, that a task ends exactly once, is stated in ``_lane_base.py``.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
import time
from concurrent.futures import BrokenExecutor
from concurrent.futures.thread import BrokenThreadPool
from typing import Any

from . import _worker
from ._errors import stopped_error
from ._interpool import (
    STOP_INTERRUPTED,
    STOP_RESULT_DROPPED,
    STOP_TIMED_OUT,
    TaskInterrupted,
    _interrupt_thread,
    _stuck_note,
)
from ._lane_base import RUNNING, Lane, LaneTask, complete


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
        self._watching = False  # a watchdog thread runs and will look at the timers again
        self._watchdogs: list[threading.Thread] = []

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
        # Stop requests land only between _begin() and _returned() (task.started), inside these
        # handlers. At most two are sent per task (its stop, and the watchdog's when it gives
        # the call up: _send_stop), and both may land after the call returned, before
        # _returned() withdrew what was not delivered yet: in _returned() itself, or in the
        # handler that caught the first as it calls _returned() again (the runner was
        # descheduled there until the call was given up). Each of the two outer handlers catches
        # one; no third can come, so the last _returned() withdraws and ends the call.
        outcome: tuple[bool, Any] = (False, None)
        try:
            try:
                try:
                    if self._begin(task):
                        fn, args, kwargs = task.fn, task.args, task.kwargs
                        assert fn is not None  # released only once the call returned
                        if fn is _worker.exec_script:  # scripts run in the lane thread's namespace, not __main__
                            fn, args = functools.partial(exec, args[0], namespace), ()
                        outcome = (True, fn(*args, **kwargs))
                except BaseException as exc:
                    outcome = (False, exc)
                self._returned(task)
            except TaskInterrupted:  # a request landed after the call returned
                self._returned(task)
        except TaskInterrupted:  # the other one landed too, in the handler above
            self._returned(task)
        self._settle_outcome(task, *outcome)

    def _begin(self, task: LaneTask) -> bool:
        """Whether to make the call: not if it was interrupted before it began. From here on,
        stop requests are raised in this thread, and its time limit runs."""
        with self._lock:
            if task.stop is not None:
                return False
            task.started = True
            if task.timeout is not None:
                self._schedule(time.monotonic() + task.timeout, task, "timeout")
            return True

    def _returned(self, task: LaneTask) -> None:
        # A request sent but not delivered yet lands at the next check CPython makes, and it
        # checks after every call: after the lock's acquire() too (a `with` statement's
        # __enter__ on 3.14), which would leave the lock held. Hence no `with` here.
        lock = self._lock
        try:
            lock.acquire()
        except TaskInterrupted:
            if lock._is_owned():  # type: ignore[attr-defined]
                lock.release()
            raise
        try:
            # First: withdraw a request not delivered yet; no new one comes under the lock.
            if task.started and task.stop is not None:
                _interrupt_thread(threading.get_ident(), False)
            task.started = False
            self._finished(task)
            if task.timed:
                self._timers = [entry for entry in self._timers if entry[2] is not task]
                heapq.heapify(self._timers)
        finally:
            lock.release()

    def _settle_outcome(self, task: LaneTask, ok: bool, value: Any) -> None:
        with self._lock:
            if not self._claim(task):
                return  # interrupted (its future ended cancelled), or given up while stuck
        if isinstance(value, TaskInterrupted) and not value.args and task.stop is not None:
            # The extension raises the class: word it as a worker's (src/interrupt.rs).
            value.args = (STOP_TIMED_OUT if task.stop == "timeout" else STOP_INTERRUPTED,)
        if task.stop == "timeout":  # its traceback shows where it stopped, unless it returned
            error = stopped_error(
                "timeout", task.timeout, cause=None if ok else value, note=STOP_RESULT_DROPPED if ok else None
            )
            complete(task.future, exc=error)
        elif ok:
            complete(task.future, value)
        else:
            complete(task.future, exc=value)

    def _stop_running(self, task: LaneTask) -> None:
        if not task.started:
            return  # not begun yet: _begin() sees task.stop
        self._send_stop(task)
        self._schedule(time.monotonic() + self._grace, task, "grace")

    def _send_stop(self, task: LaneTask) -> None:
        """Raise ``TaskInterrupted`` in the runner of ``task`` if it is inside the call's
        handlers (lock held). Twice per task at most: its stop (``task.stop`` is set once) and
        when it is given up (``task.abandoned``, once); :meth:`_execute` has a handler for each."""
        if task.started and task.runner is not None and task.runner.ident is not None:
            _interrupt_thread(task.runner.ident, True)

    def _schedule(self, when: float, task: LaneTask, action: str) -> None:
        """Do ``action`` to ``task`` at ``when`` (lock held)."""
        task.timed = True
        heapq.heappush(self._timers, (when, next(self._order), task, action))
        if not self._watching:
            watchdog = threading.Thread(target=self._watch, name=f"{self.name}_watchdog", daemon=False)
            watchdog.start()
            self._watching = True
            self._watchdogs = [*(t for t in self._watchdogs if t.is_alive()), watchdog]
        self._ticks.notify()

    def _watch(self) -> None:
        leave = False
        while not leave:
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
                        if self._claim(task):  # a time limit's (an interrupt claimed its task)
                            given_up.append(task)
                leave = not self._timers and self._closed  # after failing the calls it gave up
                self._watching = not leave
                if not given_up and not leave:
                    self._ticks.wait(self._timers[0][0] - now if self._timers else None)
            for task in given_up:
                complete(task.future, exc=stopped_error("timeout", task.timeout, note=_stuck_note(self._grace)))

    def _give_up(self, task: LaneTask) -> None:
        """A call did not stop within the grace period: its runner stops counting, another may
        start (lock held). Its stop request is raised once more, as a worker's is: the first
        may have been lost (CPython ignores an exception raised in a weakref callback or a
        ``__del__`` that the collector ran in that thread), and its clean-up no longer counts."""
        self._send_stop(task)
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
            if not self._closed:
                return True
            watchdogs = [t for t in self._watchdogs if t is not threading.current_thread()]
            self._ticks.notify_all()
        for watchdog in watchdogs:
            watchdog.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if watchdog.is_alive():
                return False
        return True
