"""The owner's side of a pool: futures, the table of pending tasks, and the dispatcher
threads that turn the workers' replies into future results.

Dispatchers block in Rust (``Pool.next_events``, the GIL released) and complete futures a
batch at a time. Completing a future runs its done-callbacks, which may block (a callback
may wait for another future of the same pool, or submit a follow-up task and wait for it).
So completing futures must never depend on a callback returning: a pool starts with two
dispatchers, and a thread about to run a future's done-callbacks (or to break the pool)
while no dispatcher is waiting for events starts one more first. A callback that blocks costs one
thread while it blocks; once more than two dispatchers wait, the ones that finish a batch end
(threads must not pile up: each was kept for the pool's life, 4 -> 12 over 150,000 tasks on
3.14t, each with its own allocator heap, +20 MiB).

A thread waiting in ``result()`` for a pending task takes its reply itself for a short while
(``TaskFuture._take_reply``), skipping the dispatcher's hand-off; see docs/design.md.
"""

from __future__ import annotations

import importlib
import itertools
import pickle
import threading
import time
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from . import _interpool, _process
from ._errors import BrokenInterpreterPool, ExecutionFailed, execution_failed, stopped_error
from ._interpool import (
    STATUS_INTERRUPTED,
    STATUS_NOT_STARTED,
    STATUS_RAISED,
    STATUS_RETURNED,
    STATUS_TIMED_OUT,
    STATUS_UNREADABLE,
    STATUS_WORKER_FAILED,
    TaskInterrupted,
)

_T = TypeVar("_T")

_BATCH = 256
# A thread waiting for a result takes the reply itself (see TaskFuture.result), in waits of
# growing length, from the first to the last: between two, it looks whether the future was
# completed by other means (cancelled while queued, the pool shut down or broken: no reply
# follows), and Python runs signal handlers (Ctrl-C). So that is at most how long such an
# outcome waits to be seen by a thread that waits for the result.
_TAKE_REPLY_FIRST_S = 0.002
_TAKE_REPLY_LAST_S = 0.02
_NOT_DONE = ("PENDING", "RUNNING")


def cancel_and_notify(future: Future[Any]) -> bool:
    """Cancel a future whose task will never run, and notify ``wait()``/``as_completed()``
    at once: they only count a cancelled future as done once it is CANCELLED_AND_NOTIFIED,
    which the stdlib pools reach when a worker dequeues it, but our workers skip cancelled
    tasks in Rust without touching the future."""
    if not Future.cancel(future):
        return False
    with future._condition:  # an RLock: re-entered below
        if future._state == "CANCELLED":  # not yet notified
            future.set_running_or_notify_cancel()  # -> CANCELLED_AND_NOTIFIED
    return True


class LaneHandle(Protocol):
    """A task in the fallback lane (``_lane_base.LaneTask``): its future delegates to it."""

    def running(self) -> bool: ...
    def cancel(self) -> bool: ...
    def interrupt(self) -> bool: ...


class Fallback(Protocol):
    """The fallback lane of a pool (``_lane.Fallback``), as the dispatcher and exit see it."""

    def take_over(self, future: TaskFuture[Any], call: Any, exc: BaseException, started: bool) -> bool: ...
    def seal(self) -> None: ...
    def stop(self, cancel: bool, interrupt: bool = False) -> None: ...
    def join(self, timeout: float | None = None, stuck: bool = False, sealed: bool = True) -> bool: ...
    def stuck_tasks(self) -> list[str]: ...


class _Lazy:
    """An attribute of a future made on first use: ``_condition`` (a ``threading.Condition``),
    ``_waiters`` and ``_done_callbacks`` (lists), which ``Future.__init__`` makes for every
    future. Most of our futures are completed before anyone waits on them or adds a
    callback, so they never need any (see ``TaskFuture``). A non-data descriptor: once made,
    the value is the instance's own attribute and found without calling this again."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, future: Any, owner: type | None = None) -> Any:
        if future is None:
            return self
        with _WATCH:  # the completion's fast path checks `_watched` under the same lock
            value = future.__dict__.get(self.name)
            if value is None:
                value = self.make()
                setattr(future, self.name, value)
                future._watched = True
        return value


# Guards the moment a future gets its condition against its completion without one.
_WATCH = threading.Lock()
_FINISHED = "FINISHED"


class TaskFuture(Future[_T]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also withdraws the queued task
    from the Rust queue (so a cancelled task never runs) and from the pending table, and
    which can stop a running task (:meth:`interrupt`).

    It is light: creating one makes no objects (``Future.__init__`` makes a Condition with
    its RLock, a deque and two lists, 1.3 us), and its condition, waiter and callback lists
    are made only when something uses them (``_Lazy``). A future nobody has waited on or
    added a callback to is completed by setting two attributes (``PoolState._complete``,
    under ``_WATCH``), and ``result()`` of a finished future returns at once."""

    # Future's state, as class defaults until set (Future.__init__ is not called).
    _state = "PENDING"
    _result: Any = None
    _exception: BaseException | None = None
    _condition = _Lazy(threading.Condition)
    _waiters = _Lazy(list)
    _done_callbacks = _Lazy(list)
    _watched = False  # whether `_condition` (and so possibly a waiter) exists

    _ticket: Any = None
    _owner: PoolState | None = None
    _task_id = 0
    _timeout: float | None = None
    _fn: Any = None  # what the task calls (kept for messages when it has a time limit)
    # The call (fn, args, kwargs), kept until its reply in case it must move to the fallback
    # lane; and the lane's handle once it runs there (then cancel/interrupt/running go to it).
    _call: tuple[Any, tuple[Any, ...], dict[str, Any]] | None = None
    _lane: LaneHandle | None = None

    __init__ = object.__init__  # see the class docstring

    def result(self, timeout: float | None = None) -> _T:
        if self._state in _NOT_DONE:
            timeout = self._take_reply(timeout)
        # `_state` is set last (see `_finish`): once it reads FINISHED, `_result` is in place.
        if self._state == _FINISHED and self._exception is None:
            result: _T = self._result
            return result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state in _NOT_DONE:
            timeout = self._take_reply(timeout)
        if self._state == _FINISHED:
            return self._exception
        return super().exception(timeout)

    def done(self) -> bool:
        return self._state not in _NOT_DONE

    def cancelled(self) -> bool:
        return self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED")

    def _finish(self, result: Any, exception: BaseException | None) -> None:
        """Complete the future: by setting its state if nobody can be waiting on it or have
        added a callback (no condition was made), else as ``Future.set_result`` does."""
        with _WATCH:
            if not self._watched:
                if exception is not None:
                    self._exception = exception
                else:
                    self._result = result
                self._state = _FINISHED  # last: `result()` reads the state first, unlocked
                return
        if exception is not None:
            self.set_exception(exception)
        else:
            self.set_result(result)

    def _invoke_callbacks(self) -> None:
        # A callback may block (wait for another task of this pool): the thread completing
        # this future may be a dispatcher, so another must go on taking replies. Checked
        # here, after the state changed, since a callback added before that is run here.
        owner = self._owner
        if owner is not None and self.__dict__.get("_done_callbacks"):
            owner._spare()
        super()._invoke_callbacks()  # type: ignore[misc]

    def _take_reply(self, timeout: float | None) -> float | None:
        """Wait for the task's reply to come to this thread and complete the future here: the
        dispatcher thread would take it and then wake this one, a thread hand-off more (tens
        of microseconds on a quiet machine, a scheduling delay of a millisecond and more on a
        busy one). Returns what is left of ``timeout``."""
        owner, ticket = self._owner, self._ticket
        if owner is None or ticket is None or (timeout is not None and timeout <= 0):
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        wait, spin = _TAKE_REPLY_FIRST_S, True
        while True:
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return 0.0
            # Completes this future through `_settle`; see there and Pool.wait_reply for why
            # an exception raised meanwhile (Ctrl-C) never loses the reply.
            taken = owner.pool.wait_reply(ticket, wait, self, spin)
            if taken is not None or self._state not in _NOT_DONE:
                break  # taken here, gone to a dispatcher, or completed by other means
            wait, spin = min(2 * wait, _TAKE_REPLY_LAST_S), False
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _settle(self, result: Any) -> bool:
        """Complete the future with the result its reply carried, in the thread that waited
        for it (called by ``Pool.wait_reply``, which holds the reply until this returns).

        A signal handler's exception (Ctrl-C) may be raised at any bytecode boundary here:
        this function's entry, after each C call. So the outcome is recorded in one step
        with none before it (``_state`` last, under ``_WATCH``); if the exception comes
        first, ``wait_reply`` hands the reply to a dispatcher, which completes the future.
        Only a future nobody else watches is completed here (a condition, waiters or
        callbacks mean Python code, which an exception could cut short): ``False`` leaves
        the others to the dispatcher too."""
        owner = self._owner
        with _WATCH:
            if self._watched or self._state not in _NOT_DONE or owner is None:
                return False
            self._call = None
            self._result = result
            self._state = _FINISHED
            owner.pending.pop(self._task_id, None)  # runs before any exception can land
        return True

    def running(self) -> bool:
        if self._lane is not None:
            return self._lane.running() and not self.done()
        # The state lives in Rust: a worker claimed the task and it has not finished yet.
        ticket = self._ticket
        return ticket is not None and ticket.started() and not self.done()

    def cancel(self) -> bool:
        with self._condition:
            state = self._state
            if state in ("CANCELLED", "CANCELLED_AND_NOTIFIED"):
                return True
            if state != "PENDING":
                return False
        if self._lane is not None:
            return self._lane.cancel() and cancel_and_notify(self)
        ticket = self._ticket
        if ticket is not None and not ticket.cancel():
            return False  # a worker already started it
        owner = self._owner
        if owner is not None:
            owner.pending.pop(self._task_id, None)  # no reply will ever come for it
        self._call = None
        return cancel_and_notify(self)

    def interrupt(self) -> bool:
        """Cancel the task if it is still queued, or stop it if it is running (an exception,
        :class:`interpool.TaskInterrupted`, is raised in it at its next bytecode boundary).
        Either way the future ends cancelled, at once. Returns whether it did either:
        ``False`` for a task that already finished (its outcome stands)."""
        with self._condition:
            if self._state != "PENDING":
                return self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED")
        if self._lane is not None:
            return self._lane.interrupt() and cancel_and_notify(self)
        owner, ticket = self._owner, self._ticket
        if owner is None or ticket is None or not owner.pool.interrupt(ticket):
            return False  # it ended already: its reply completes this future
        owner.pending.pop(self._task_id, None)  # its reply no longer matters
        self._call = None
        return cancel_and_notify(self)  # False only if its result won the race


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module("__main__" if module == "__mp_main__" else module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _rebuild(desc: dict[str, Any], depth: int = 0) -> BaseException | None:
    """The exception a worker described (``_worker.describe``): unpickled when that works,
    else rebuilt without calling ``__init__`` (args and attributes set directly), so classes
    whose ``__init__`` takes other arguments than ``args`` come back as themselves."""
    exc: Any = None
    if desc["pickled"] is not None:
        try:
            exc = pickle.loads(desc["pickled"])
        except Exception:
            exc = None
        if not isinstance(exc, BaseException):  # a __reduce__ that returns something else
            exc = None
    if exc is None and desc["args"] is not None:
        try:
            cls = _resolve(desc["module"], desc["qualname"])
            if isinstance(cls, type) and issubclass(cls, BaseException):
                exc = BaseException.__new__(cls, *desc["args"])
                exc.args = desc["args"]
                vars(exc).update(desc["attrs"] or {})
        except Exception:
            exc = None
    if exc is None:
        return None
    if desc["notes"] and not getattr(exc, "__notes__", None):
        exc.__notes__ = list(desc["notes"])
    if depth < 16:
        for link in ("cause", "context"):
            if desc[link] is not None:
                linked = _rebuild(desc[link], depth + 1) or _failure(desc[link])
                setattr(exc, f"__{link}__", linked)
    exc.__suppress_context__ = desc["suppress_context"]
    rebuilt: BaseException = exc
    return rebuilt


def _failure(desc: dict[str, Any]) -> ExecutionFailed:
    return execution_failed(desc["module"], desc["qualname"], desc["message"], desc["formatted"])


def _stopped(status: int, payload: Any, timeout: float | None) -> BaseException | None:
    """The exception for a task that was stopped (``None``: its future ends cancelled)."""
    if status == STATUS_INTERRUPTED:
        return None
    if isinstance(payload, dict):  # the exception raised where it stopped, with its traceback
        raised = decode_exception(payload)
        cause = raised.__cause__ if isinstance(raised, TaskInterrupted) else raised
        return stopped_error("timeout", timeout, cause=cause)
    return stopped_error("timeout", timeout, note=str(payload))  # it returned anyway, or was stuck and given up


def decode_exception(desc: dict[str, Any]) -> BaseException:
    """The exception to raise in the owner for a task that raised: the original type (args,
    attributes, notes, context kept) whose ``__cause__`` is :class:`ExecutionFailed` with the
    remote traceback, which in turn has the original ``__cause__`` as its own cause."""
    failure = _failure(desc)
    exc = _rebuild(desc)
    if exc is None:
        return failure
    if exc.__cause__ is not None:
        failure.__cause__ = exc.__cause__
    exc.__cause__ = failure
    return exc


def _not_rebuilt(exc: BaseException) -> BaseException:
    """The outcome of a call that a worker could not rebuild (its function or an argument did
    not unpickle there): as the stdlib's pool, a ``NotShareableError`` ('args not shareable')
    caused by the error, except for a module that refuses own-GIL interpreters, whose
    ImportError stays (``fallback=None`` documents it)."""
    from . import _refusal
    from ._errors import NotShareableError

    if _refusal.is_refusal(exc):
        return exc
    error = NotShareableError(
        f"args not shareable: the call could not be rebuilt in the worker interpreter: {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


class PoolState:
    """Owner-side state of one pool: the Rust pool, the futures it will complete, and the
    dispatcher threads. Kept apart from the executor so that an executor dropped without
    ``shutdown()`` can be garbage collected while its queued tasks still finish."""

    def __init__(self, pool: Any, name: str, logging: Any = None) -> None:
        self.pool = pool
        self.name = name
        self.logging = logging  # the listener of forwarded log records, if any
        self.pending: dict[int, TaskFuture[Any]] = {}
        # Descriptions of tasks given up while stuck in a call (for the exit message).
        self.stuck: dict[int, str] = {}
        self.broken: str | None = None
        self.lane: Fallback | None = None  # where calls go that cannot run in a worker (_lane.py)
        self.ids = itertools.count(1)
        self.generation = _process.fork_generation
        # `_process.epoch` while the pool takes tasks; None once shut down or broken.
        self.epoch: object = _process.epoch
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # the dispatchers alive or joined last
        self._numbers = itertools.count()
        self._waiting = 0  # dispatchers waiting for events
        self._running = 0  # dispatcher threads alive
        self.blas: int | None = None  # the BLAS thread limit the pool holds (_interpool._blas_limit)

    def start(self) -> None:
        _process.register(self)
        with self._lock:
            self._spawn()
            self._spawn()

    def _spawn(self) -> None:
        # Not daemons: own-GIL subinterpreters refuse daemon threads, and none is needed,
        # since threading's atexit hooks (ours closes the pool) run before they are joined.
        number = next(self._numbers)
        thread = threading.Thread(target=self._dispatch, name=f"{self.name}_dispatch_{number}", daemon=False)
        try:
            thread.start()
        except RuntimeError:
            # CPython 3.12 refuses new threads during exit ("can't create new thread at
            # interpreter shutdown"): the dispatchers alive go on without a spare.
            if self._running == 0:
                raise
            return
        self._threads.append(thread)
        self._waiting += 1
        self._running += 1

    def _spare(self) -> None:
        """Before running code that may block (a done-callback, the log handlers of a
        break): start another dispatcher if none is waiting for events. None once every
        dispatcher has ended (no reply can come any more; and at exit, 3.12 refuses new
        threads: `_spawn` raised then, and the callbacks never ran)."""
        with self._lock:
            if self._waiting == 0 and self._running > 0:
                self._spawn()

    def _dispatch(self) -> None:
        retire = False
        try:
            while (events := self.pool.next_events(_BATCH)) is not None:
                with self._lock:
                    self._waiting -= 1
                try:
                    for task_id, status_or_message, payload in events:
                        if task_id is None:
                            self._spare()
                            self._break(status_or_message, payload)
                        else:
                            self._complete(task_id, status_or_message, payload)
                finally:
                    with self._lock:
                        # Spares started for callbacks that blocked end once two others wait
                        # (a dispatcher is a thread, and on free-threaded builds a heap). One
                        # that ends is never counted as waiting: `_spare` must not rely on it.
                        retire = self._waiting >= 2
                        if not retire:
                            self._waiting += 1
                if retire:
                    break
        finally:
            with self._lock:
                if not retire:
                    self._waiting -= 1
                self._running -= 1
                last = self._running == 0
                if retire:
                    self._threads.remove(threading.current_thread())
            # Threads of tasks given up while stuck still run an interpreter: exit must wait
            # for them, so such a pool stays registered.
            if last and self.lane is not None:
                self.lane.seal()  # no reply can move a call to the lane any more
            if last and not self.pool.stats()["stuck"]:
                _process.unregister(self)
            if last and self.logging is not None:
                self.logging.close()  # no task runs any more: the listener drains and ends

    def _complete(self, task_id: int, status: int, payload: Any) -> None:
        future = self.pending.pop(task_id, None)
        if future is None:
            return
        call = future._call
        if call is not None:
            future._call = None
        try:
            if status == STATUS_RETURNED:
                future._finish(payload, None)
            elif status in (STATUS_RAISED, STATUS_NOT_STARTED):
                exc = decode_exception(payload)
                # A module that cannot load in a worker: the lane may run the call instead. A
                # call that failed in its function's leading imports ran nothing else: it
                # counts as not started (_worker.failed_before_effects).
                started = status == STATUS_RAISED and not payload.get("before_effects")
                lane = self.lane
                if lane is None or not lane.take_over(future, call, exc, started):
                    if status == STATUS_NOT_STARTED:
                        exc = _not_rebuilt(exc)
                    future._finish(None, exc)
            elif status == STATUS_UNREADABLE:
                future.set_exception(payload)
            elif status == STATUS_WORKER_FAILED:
                future.set_exception(execution_failed("interpool", "InternalError", payload, payload))
            elif status in (STATUS_TIMED_OUT, STATUS_INTERRUPTED):
                if isinstance(payload, str) and "stuck" in payload:
                    fn = future._fn
                    self.stuck[task_id] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}()"
                error = _stopped(status, payload, future._timeout)
                if error is None:
                    cancel_and_notify(future)
                else:
                    future.set_exception(error)
            else:
                future.set_exception(RuntimeError(f"interpool: unknown reply status {status}"))
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)

    def _break(self, message: str, abandoned: list[int]) -> None:
        import logging

        self.broken = message
        self.epoch = None
        # As the stdlib's pool logs it (its exception is an ExecutionFailed: "ExecutionFailed:
        # Exception: spam", then "Uncaught in the interpreter:" and the traceback), with the
        # original type and message in the log line.
        summary = next((line for line in reversed(message.splitlines()) if line.strip()), "")
        logging.getLogger("concurrent.futures").critical(
            "Exception in initializer: ExecutionFailed: %s\nUncaught in the interpreter:\n\n%s", summary, message
        )
        error_text = "A worker interpreter failed to start; the pool is unusable:\n" + message
        for task_id in abandoned:
            future = self.pending.pop(task_id, None)
            if future is not None and not future.done():
                future.set_exception(BrokenInterpreterPool(error_text))

    def stuck_tasks(self) -> list[str]:
        """The tasks given up while stuck, if their threads still run."""
        stuck = list(self.stuck.values()) if self.pool.stats()["stuck"] else []
        return stuck + (self.lane.stuck_tasks() if self.lane is not None else [])

    def stop(self, cancel: bool, interrupt: bool = False) -> None:
        """Take no more tasks; with ``cancel``, cancel the queued ones; with ``interrupt``,
        stop the running ones."""
        for task_id in self.pool.shutdown(cancel, interrupt):
            future = self.pending.pop(task_id, None)
            if future is not None:
                future._call = None
                cancel_and_notify(future)
        if self.lane is not None:
            self.lane.stop(cancel, interrupt)
        blas, self.blas = self.blas, None
        if blas is not None:
            _interpool._blas_release(blas)

    def join(self, timeout: float | None = None, stuck: bool = False) -> bool:
        """Wait for the workers (after ``stop``), the dispatchers and then the fallback lane to
        finish; with ``stuck``, also for the threads of tasks given up while stuck in a call
        (up to ``timeout``)."""
        if not self.pool.join(timeout, not stuck):
            return False
        if self.logging is not None:
            self.logging.close()
        me = threading.current_thread()
        while True:  # a dispatcher may start another while the last events are handled
            with self._lock:
                threads = [thread for thread in self._threads if thread is not me and thread.is_alive()]
            if not threads:
                break
            for thread in threads:
                thread.join()
        if self.lane is None:
            return True
        # From a done-callback, which runs in a dispatcher: the lane is sealed only when this
        # dispatcher ends, so wait for the calls in the lane instead of for its runners.
        return self.lane.join(timeout, stuck, sealed=me not in self._threads)

    def close(self) -> None:
        """The executor was garbage collected without ``shutdown()``: stop taking tasks;
        queued ones still run and their futures complete."""
        self.stop(False)
