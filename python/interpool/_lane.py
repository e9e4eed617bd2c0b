"""The fallback lane: where calls run that cannot run in a worker interpreter, and which
calls go there (this module); the lanes themselves are ``_lane_base.py`` (what both share, and
their invariant: every lane task ends exactly once), ``_lane_process.py`` and
``_lane_thread.py``.

A call cannot run in a worker when a module it needs refuses own-GIL interpreters
(``_refusal.py``). The worker reports that as an ImportError, with one of two statuses:

* ``NOT_STARTED``: loading the function or its arguments failed (the module is imported at the
  top of the task's module, or an argument's class needs it). The call has not started, so the
  executor runs it in the lane instead, transparently, and remembers the function: its later
  calls go straight to the lane (:meth:`Fallback.take_over`, :meth:`Fallback.wants`).
* ``RAISED``: the import happened inside the running call. A call is never run twice, so its
  future fails with the ImportError, with a note; later calls of the function use the lane.
  Unless the function failed in the imports it starts with (``def f(x): import numpy``): then
  nothing else ran, the worker says so (``_worker.failed_before_effects``), and the call moves
  as a ``NOT_STARTED`` one does.

Either way one :class:`~interpool.FallbackWarning` per function says so.

Two lanes, chosen by ``InterpreterPoolExecutor(fallback=...)``: ``"process"`` (the default;
child processes, ``_lane_process.ProcessLane``) and ``"thread"`` (threads of the main
interpreter, ``_lane_thread.ThreadLane``).

A lane task's future is the same ``TaskFuture`` a worker task has (``future._lane`` is its
``LaneTask``), so results, original exception types, ``cancel``, ``interrupt``, time limits
(stopped tasks fail as worker tasks do: ``_errors.stopped_error``), ``map`` (with
``chunksize``: a batch moves as a whole) and shutdown behave as for worker tasks. The pool's
``PoolState`` stops and joins the lane after its own workers and dispatchers. A reply still
on its way may move one more call to the lane after ``stop()``, so the lane's runners stay
until the pool's last dispatcher has ended and *sealed* the lane (CPython 3.12 cannot start
threads during exit). The lane also registers itself for the exit hook (``_process``) while
its threads run.
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from collections.abc import Callable, Hashable
from typing import Any

from . import _refusal, _worker
from ._dispatch import TaskFuture
from ._errors import FallbackWarning
from ._lane_base import Lane, call_target, describe_call
from ._lane_process import ProcessLane
from ._lane_thread import ThreadLane

LANES = ("process", "thread")

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
    blas_threads: int | None = None,
) -> Fallback | None:
    """The lane for ``fallback`` (nothing starts until a call needs it), or ``None``;
    ``blas_threads`` goes to the environment of the process lane's children."""
    if fallback is None:
        return None
    kind = ProcessLane if fallback == "process" else ThreadLane
    lane = kind(max_workers, name, initializer, initargs, max_tasks, grace)
    lane.blas_threads = blas_threads
    return Fallback(lane)


def route_key(fn: Any, args: tuple[Any, ...]) -> Hashable:
    """What the lane remembers of a call: its function (unwrapped from partials, bound
    methods and ``map`` batches; a callable instance by its class), or a script's text."""
    if fn is _worker.exec_script and args:
        return ("script", args[0])
    try:
        target = call_target(fn, args)
        while isinstance(target, functools.partial):
            target = target.func
        target = getattr(target, "__func__", target)
        if not hasattr(target, "__qualname__"):
            target = type(target)
        return (getattr(target, "__module__", None), target.__qualname__, getattr(target, "__code__", None))
    except Exception:  # an object whose attributes raise: keyed by its type
        return ("?", type(fn).__qualname__, None)


class Fallback:
    """An executor's fallback: which functions go to its lane (``routes``), and the lane.
    What the executor and its ``PoolState`` call on the lane goes through here."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.kind = lane.kind
        # Functions whose calls go straight to the lane, with the module that sent them here.
        self.routes: dict[Hashable, str] = {}
        self._lock = threading.Lock()

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
        with self._lock:
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
                "the task's module, or first in the function, to make the switch transparent: the call then "
                "fails before anything else of it ran, and runs in the lane at once."
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
            owner = _refusal.top_level(getattr(call_target(fn, args), "__module__", None) or module)
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
        target = call_target(fn, args)
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

    def submit(
        self,
        future: TaskFuture[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> None:
        self.lane.submit(future, fn, args, kwargs, timeout)

    def seal(self) -> None:
        self.lane.seal()

    def stop(self, cancel: bool, interrupt: bool = False) -> None:
        self.lane.stop(cancel, interrupt)

    def join(self, timeout: float | None = None, stuck: bool = False, sealed: bool = True) -> bool:
        return self.lane.join(timeout, stuck, sealed)

    def stuck_tasks(self) -> list[str]:
        return self.lane.stuck_tasks()

    def stats(self) -> dict[str, int]:
        """``lane_*`` counters for ``InterpreterPoolExecutor.stats()``."""
        return {**self.lane.stats(), "lane_functions": len(self.routes)}
