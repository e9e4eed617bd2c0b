"""The process lane (``fallback="process"``, the default): calls run in child processes.

Up to ``max_workers`` processes, started lazily with the ``forkserver`` method (``spawn``
where there is none; never ``fork``: worker interpreters are alive), each running the pool's
initializer and replaced after ``max_tasks_per_worker`` calls. One runner thread per process
sends it a call at a time over a pipe and waits for the reply, the process's end or the
call's deadline. Stopping a call (timeout, ``interrupt()``, shutdown) terminates its process;
the next call starts a new one. Arguments and results are pickled (``_pickling``'s rules, so
lambdas and ``__main__`` functions travel as they do to workers) when the call enters the
lane; ``Queue`` and ``SharedBuffer`` cannot reach another process and are refused with a
``NotShareableError``. The invariant of every lane, that a task ends exactly once, is stated
in ``_lane_base.py``.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from concurrent.futures import BrokenExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # multiprocessing is imported when the lane starts its first process
    from multiprocessing.connection import Connection

from . import _pickling, _worker
from ._dispatch import decode_exception
from ._errors import NotShareableError, stopped_error
from ._interpool import Queue, SharedBuffer
from ._lane_base import Lane, LaneTask, complete, unwrap_constants


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


# The variables BLAS and OpenMP libraries read when they load (loky sets the same ones).
BLAS_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def child_main(conn: Connection, init: bytes | None, blas_threads: int | None = None) -> None:
    """A process of the lane: run the initializer, then one call per message until the pipe
    closes (or an empty message). Replies are pickled ``(True, result)`` or ``(False,
    exception description)``, as workers describe exceptions (``_worker.describe``).
    ``blas_threads``: the pool's BLAS thread limit, for the libraries this process loads
    (a variable the user set is kept)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops lane calls
    if blas_threads is not None:
        for variable in BLAS_VARIABLES:
            os.environ.setdefault(variable, str(blas_threads))
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

    def __init__(self, context: Any, name: str, init: bytes | None, blas_threads: int | None = None) -> None:
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=child_main, args=(child_end, init, blas_threads), name=name, daemon=False)
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
            child = _Child(self._context, f"{self.name}_{next(self._numbers)}", self._init_bytes, self.blas_threads)
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
        """The outcome of a call whose process ended (``None``: interrupted, its future ended
        cancelled then)."""
        if task.stop is not None:
            return stopped_error(task.stop, task.timeout, note=_STARTING if starting else _TERMINATED)
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
            claimed = self._claim(task)
        if claimed:  # not after an interrupt, which claimed it: its future ended cancelled
            complete(task.future, result, exc)


_TERMINATED = "its process in the fallback process lane was terminated; a new one takes its place"
_STARTING = (
    "it was waiting for a new process of the fallback process lane, whose initializer had not finished; "
    "that process was terminated"
)
