"""Run Dask distributed tasks on interpool workers (own-GIL subinterpreters).

A dask.distributed ``Worker`` hands every task to its executor; with anything but a
thread pool it submits ``distributed.worker._run_task_simple(task, data, delay)``. That
function lives in ``distributed.worker``, which imports psutil, an extension module that
cannot load in subinterpreters, so a plain ``InterpreterPoolExecutor`` fails every task.

:class:`DaskExecutor` recognizes those calls: the task itself (``task(data)``, which only
needs ``dask``) runs in a worker interpreter (``_dask_task.call``), and the bookkeeping record
Dask expects (timings, size, errors) is built here, in the Dask worker's own interpreter.
Other calls are passed through. Three ways to use it:

* a command-line worker: ``dask worker SCHEDULER --preload interpool.dask`` (this module is a
  Dask preload; ``--interpool-workers N``, ``--interpool-isolate MODULE``, comma-separated or
  repeated);
* a cluster created from Python: ``client.register_plugin(InterpoolPlugin(workers=4,
  isolate=["numpy"]))`` installs a DaskExecutor on every worker, those that join later too;
* an in-process worker: ``LocalCluster(processes=False, executor=DaskExecutor(4))``.

What works: pure-Python task functions (and anything importable in a subinterpreter),
including ``dask.bag`` pipelines; values travel like any interpool argument. As with
:class:`~interpool.InterpreterPoolExecutor`, ``isolate="auto"`` is the default: each worker
interpreter loads a private copy of the extension modules outside the stdlib that it imports
(numpy, pandas, cytoolz, from which Dask's functions come when it is installed;
docs/isolation.md), except psutil, so that ``distributed`` (which imports it) still cannot
load there (below). With ``isolate=None`` or a list of names, DaskExecutor adds
``"cytoolz"`` to it, as cytoolz cannot load in subinterpreters as it is.

Tasks that need ``distributed`` (``get_worker()``, ``get_client()``, ``worker_client()``,
Dask's own P2P shuffle tasks) or another module that cannot load in a worker interpreter run
in the Dask worker's own thread pool instead, as Dask runs them (``fallback="dask"``, the
default): a task whose function or inputs cannot load in a worker interpreter (its module
imports ``distributed`` at its top) moves there before it starts, and the later tasks of the
same functions go straight there, with one :class:`~interpool.FallbackWarning` per function.
A task that imports such a module while it runs fails with the ImportError and a note that
says why and what to do (a call never runs twice), and the later ones run in the thread.
Coroutine tasks do not reach executors (Dask runs them on its event loop).
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Hashable, Iterable
from concurrent.futures import Executor, Future
from typing import Any

from . import _dask_task
from ._executor import InterpreterPoolExecutor

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # distributed is not installed: DaskExecutor alone (no plugin, no preload)
    WorkerPlugin = object  # type: ignore[misc,assignment]

FALLBACKS = ("dask", None)
# How many links of an exception's chain are searched for the mark of a started task.
_CHAIN_LINKS = 16


def _with_cytoolz(isolate: Iterable[str] | str | None) -> Iterable[str] | str | None:
    """``isolate=`` plus cytoolz, where Dask will use it (it refuses subinterpreters). With
    ``"auto"`` (the default), every extension module outside the stdlib but psutil: a task
    that needs ``distributed`` (which imports psutil) must still fail to load in a worker
    interpreter, and so move to the Dask worker's own threads, where ``get_worker()`` works."""
    import importlib.util

    from . import _isolate

    if isolate == "auto":
        return _isolate.auto_except("psutil")
    if not _isolate.supported() or importlib.util.find_spec("cytoolz") is None:
        return isolate  # (3.12: no isolation; Dask's own tests skip that case anyway)
    names = [] if isolate is None else [isolate] if isinstance(isolate, str) else list(isolate)
    return names if "cytoolz" in names else [*names, "cytoolz"]


def _is_dask_run_task(fn: object) -> bool:
    return (
        getattr(fn, "__name__", None) == "_run_task_simple" and getattr(fn, "__module__", None) == "distributed.worker"
    )


def _functions(node: Any, found: list[Any], depth: int = 0) -> None:
    """The functions a Dask task calls: its own, those of the tasks fused into it (a subgraph)
    and of tasks nested in its arguments."""
    if depth > 8:
        return
    func = getattr(node, "func", None)
    if func is None:
        return
    args = getattr(node, "args", ())
    if getattr(func, "__name__", None) == "_execute_subgraph" and args and isinstance(args[0], dict):
        for inner in args[0].values():
            _functions(inner, found, depth + 1)
        return
    found.append(func)
    for arg in args:
        if hasattr(arg, "func"):
            _functions(arg, found, depth + 1)


def _signature(task: Any) -> Hashable:
    """What the executor remembers of a task that must run in the Dask worker's thread: the
    functions it calls (see ``_lane.route_key``)."""
    from . import _lane

    found: list[Any] = []
    _functions(task, found)
    return frozenset(_lane.route_key(func, ()) for func in found) if found else ("task", type(task).__qualname__)


def _describe(task: Any) -> str:
    found: list[Any] = []
    _functions(task, found)
    names = sorted({f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}" for f in found})
    return "Dask task " + (", ".join(names) if names else repr(getattr(task, "key", task)))


def _started(exc: BaseException) -> bool:
    """Whether ``exc`` (a worker's ImportError) was raised while the task ran (``_dask_task``
    marked it), not while its function or inputs loaded."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_LINKS:
        if getattr(current, _dask_task.STARTED, False):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _copy_outcome(source: Future[Any], target: Future[Any]) -> None:
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class DaskExecutor(Executor):
    """A ``concurrent.futures`` executor for ``distributed.Worker(executor=...)`` that runs
    Dask tasks on an :class:`interpool.InterpreterPoolExecutor` (same arguments, but for
    ``fallback``).

    ``fallback`` says where tasks go that cannot run in a worker interpreter (a module they
    need refuses own-GIL interpreters, ``distributed`` included): ``"dask"`` (the default),
    the Dask worker's own thread pool, as Dask runs tasks, where ``get_worker()`` and the rest
    of ``distributed`` work; ``None``: they fail with the ImportError."""

    def __init__(
        self, max_workers: int | None = None, *args: Any, fallback: str | None = "dask", **kwargs: Any
    ) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(
                f"DaskExecutor's fallback must be 'dask' (tasks that cannot run in a worker interpreter run in a "
                f"thread of the Dask worker, as Dask runs them, where get_worker() works) or None (they fail with "
                f"the ImportError), got {fallback!r}: a process or a thread of interpool's own lane has no Dask "
                "worker for them"
            )
        kwargs["isolate"] = _with_cytoolz(kwargs.get("isolate", "auto"))
        # Dask tasks must not go to the pool's own lane: it would remember `_dask_task.call`,
        # the function of every Dask task, and send them all there.
        self.pool = InterpreterPoolExecutor(max_workers, *args, fallback=None, **kwargs)
        self.fallback = fallback
        self.worker: Any = None  # the distributed.Worker it serves, when installed on one
        self._lane: Executor | None = None  # the Dask worker's thread pool (made on first need)
        self._lock = threading.Lock()
        # Signatures (_signature) of tasks that run in the Dask worker's thread pool.
        self.routes: dict[Hashable, str] = {}

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not _is_dask_run_task(fn) or kwargs or len(args) != 3:
            return self.pool.submit(fn, *args, **kwargs)
        task, data, time_delay = args
        if self.routes and _signature(task) in self.routes:
            return self._dask_lane().submit(self._run_in_dask_thread, fn, task, data, time_delay)
        outer: Future[Any] = Future()
        outer.set_running_or_notify_cancel()
        start = time.time()
        inner = self.pool.submit(_dask_task.call, task, data)

        def finish(done: Future[Any]) -> None:
            stop = time.time()
            try:
                if self._moved(done, outer, fn, args):
                    return
                msg = self._record(done)
            except BaseException as exc:  # SystemExit/KeyboardInterrupt go to Dask, as there
                outer.set_exception(exc)
                return
            msg["start"] = start + time_delay
            msg["stop"] = stop + time_delay
            msg["thread"] = threading.get_ident()
            outer.set_result(msg)

        inner.add_done_callback(finish)
        return outer

    # -- tasks that cannot run in a worker interpreter ------------------------------------

    def _moved(self, done: Future[Any], outer: Future[Any], fn: Any, args: tuple[Any, ...]) -> bool:
        """When a module the task needs refuses worker interpreters: remember its functions
        for the Dask worker's thread pool, and run it there if it had not started (returns
        True: ``outer`` is taken care of). A started task keeps its error, with a note."""
        from . import _refusal
        from ._errors import FallbackWarning

        exc = done.exception()
        if exc is None or self.fallback is None or not _refusal.is_refusal(exc):
            return False
        task, data, time_delay = args
        started = _started(exc)
        module = _refusal.refused_module(exc) or "?"
        top = _refusal.top_level(module)
        what = _describe(task)
        key = _signature(task)
        with self._lock:
            first = key not in self.routes
            self.routes[key] = module
        if started:
            exc.add_note(
                f"interpool.dask: {what} imported {module} while it ran in a worker interpreter, which cannot load "
                f"it (each has its own GIL, PEP 684){self._needs_distributed(top)}. The task was not run again "
                f"(a call never runs twice); later tasks of the same functions run in a thread of the Dask worker, "
                f"as Dask runs tasks. To make that transparent, import {top} at the top of the task's module: "
                f"the task then moves there before it starts.{self._isolate_hint(top)}"
            )
            return False
        if first:
            try:
                warnings.warn(
                    FallbackWarning(
                        f"{what} runs in a thread of the Dask worker, not in interpool's worker interpreters: it "
                        f"needs {_refusal.name_of(module)}, which cannot load in an own-GIL interpreter"
                        f"{self._needs_distributed(top)}. This task and later ones of the same functions run "
                        f"there.{self._isolate_hint(top)}"
                    ),
                    stacklevel=1,
                )
            except Warning as warning:  # a filter made it an error: no fallback then
                warning.__cause__ = exc
                outer.set_exception(warning)
                return True
        lane = self._dask_lane().submit(self._run_in_dask_thread, fn, task, data, time_delay)
        lane.add_done_callback(lambda moved: _copy_outcome(moved, outer))
        return True

    @staticmethod
    def _needs_distributed(top: str) -> str:
        return (
            " (distributed imports psutil; get_worker() and the rest of distributed work in the Dask worker's "
            "own threads only)"
            if top in ("distributed", "psutil")
            else ""
        )

    @staticmethod
    def _isolate_hint(top: str) -> str:
        from . import _refusal

        if top in ("distributed", "psutil") or not _refusal.isolation_available() or _refusal.in_stdlib(top):
            return ""
        return (
            f" To run it in worker interpreters instead, give each a private copy of {top}: "
            f"DaskExecutor(isolate=[{top!r}]), InterpoolPlugin(isolate=[{top!r}]) or "
            f"dask worker --preload interpool.dask --interpool-isolate {top}."
        )

    def _dask_lane(self) -> Executor:
        lane = self._lane
        if lane is None:
            with self._lock:
                lane = self._lane
                if lane is None:
                    from distributed.threadpoolexecutor import ThreadPoolExecutor

                    lane = self._lane = ThreadPoolExecutor(  # type: ignore[no-untyped-call]
                        self.pool._max_workers, thread_name_prefix="interpool-Dask-Default-Threads"
                    )
        return lane

    def _worker_for(self, key: Any) -> Any:
        """The distributed.Worker running the task ``key`` on this executor."""
        if self.worker is not None:
            return self.worker
        from distributed.worker import Worker

        for worker in list(Worker._instances):
            executors = getattr(worker, "executors", {})
            if key in getattr(worker, "active_keys", ()) and any(e is self for e in executors.values()):
                return worker
        return None

    def _run_in_dask_thread(self, fn: Any, task: Any, data: dict[str, Any], time_delay: float) -> Any:
        """Run a task as Dask runs it in its thread pool: with the worker's execution state,
        so that get_worker(), get_client(), secede() work."""
        from distributed import worker as dask_worker

        worker = self._worker_for(getattr(task, "key", None))
        run_task = getattr(dask_worker, "_run_task", None)
        if worker is None or run_task is None:
            return fn(task, data, time_delay)
        return run_task(
            task,
            data,
            worker.execution_state,
            task.key,
            worker.active_threads,
            worker.active_threads_lock,
            time_delay,
        )

    @staticmethod
    def _record(done: Future[Any]) -> dict[str, Any]:
        """Dask's result record, as ``_run_task_simple`` would have built it."""
        from dask.sizeof import sizeof
        from distributed.core import error_message

        exc = done.exception()
        if exc is None:
            result = done.result()
            return {
                "op": "task-finished",
                "status": "OK",
                "result": result,
                "nbytes": sizeof(result),
                "type": type(result) if result is not None else None,
            }
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise exc
        msg: dict[str, Any] = dict(error_message(exc))
        msg["op"] = "task-erred"
        msg["actual_exception"] = exc
        return msg

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        lane = self._lane
        if lane is not None and self.worker is None:  # (a worker's own pool: the worker shuts it)
            lane.shutdown(wait=wait)


def _install(worker: Any, max_workers: int | None, isolate: Iterable[str] | str | None) -> DaskExecutor:
    """Make ``worker`` (a ``distributed.Worker``) run its tasks on a new DaskExecutor, its own
    thread pool serving as the executor's fallback."""
    if not hasattr(worker, "executors") or not hasattr(worker, "state"):
        raise TypeError(
            f"interpool.dask installs on Dask workers (dask worker --preload interpool.dask, or "
            f"client.register_plugin(InterpoolPlugin())), not on a {type(worker).__name__}"
        )
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)):
        raise TypeError(f"interpool.dask: workers must be an int (worker interpreters), not {max_workers!r}")
    executor = DaskExecutor(max_workers or worker.state.nthreads, isolate=isolate)
    previous = worker.executors.get("default")
    if isinstance(previous, DaskExecutor):  # installed twice (preload and plugin): the new one wins
        executor._lane = previous._lane
        previous.worker = None
        previous._lane = None
        previous.shutdown(wait=False)
    elif previous is not None and previous is not worker.executors.get("offload"):
        executor._lane = previous  # the thread pool the worker made for itself: the fallback
    executor.worker = worker
    worker.executors["default"] = executor
    return executor


def _teardown(worker: Any) -> None:
    """Put the worker's own thread pool back as its default executor and shut the
    DaskExecutor down (its running tasks finish first)."""
    executors = getattr(worker, "executors", {})
    executor = executors.get("default")
    if isinstance(executor, DaskExecutor):
        lane = executor._lane
        if lane is not None:
            executors["default"] = lane
        executor.shutdown(wait=True)


class InterpoolPlugin(WorkerPlugin):
    """A Dask worker plugin that runs each worker's tasks on interpool worker interpreters::

        client.register_plugin(InterpoolPlugin(workers=4, isolate=["numpy", "pandas"]))

    ``setup`` installs a :class:`DaskExecutor` (``workers`` worker interpreters, default the
    worker's ``nthreads``; ``isolate=`` as for :class:`~interpool.InterpreterPoolExecutor`)
    as the worker's default executor, on every worker, including those that join later;
    ``teardown`` (the worker closes, or the plugin is removed) shuts it down and gives the
    worker its thread pool back."""

    name = "interpool"
    idempotent = False

    def __init__(self, workers: int | None = None, isolate: Iterable[str] | str | None = "auto") -> None:
        if WorkerPlugin is object:
            raise ImportError("InterpoolPlugin needs distributed (pip install distributed)")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0):
            raise ValueError(f"InterpoolPlugin(workers=...) must be a positive int or None, got {workers!r}")
        # (Only the kind is checked here: the modules need to be importable on the workers.)
        if isolate is not None and not isinstance(isolate, str):
            isolate = list(isolate)
            if not all(isinstance(name, str) for name in isolate):
                raise TypeError(f"InterpoolPlugin(isolate=...) takes module names (str), got {isolate!r}")
        elif isinstance(isolate, str) and isolate != "auto":
            isolate = [isolate]
        self.workers = workers
        self.isolate: list[str] | str | None = isolate

    def setup(self, worker: Any) -> None:
        _install(worker, self.workers, self.isolate)

    def teardown(self, worker: Any) -> None:
        _teardown(worker)


try:
    import click
except ImportError:  # distributed (which needs click) is not installed: no preload then
    pass
else:

    @click.command()
    @click.option("--interpool-workers", type=int, default=None, help="worker interpreters (default: --nthreads)")
    @click.option(
        "--interpool-isolate",
        multiple=True,
        help="modules for isolate= (comma-separated, repeatable), 'auto' (the default) or 'none'",
        metavar="MODULE",
    )
    def dask_setup(worker: Any, interpool_workers: int | None, interpool_isolate: tuple[str, ...]) -> None:
        """Dask preload: run this worker's tasks on interpool worker interpreters."""
        if interpool_workers is None and not interpool_isolate and any(a.startswith("--interpool-") for a in sys.argv):
            raise click.UsageError(
                "interpool.dask: the dask worker command line has --interpool-... options, but Dask did not pass "
                "them to the preload: with --scheduler-file and no scheduler address, Dask takes the first of "
                "them for the address. Give the address (dask worker tcp://HOST:PORT --preload interpool.dask "
                "--interpool-workers N ...)"
            )
        isolate: Iterable[str] | str | None = "auto"
        if interpool_isolate == ("none",):
            isolate = None
        elif interpool_isolate and interpool_isolate != ("auto",):
            isolate = [name.strip() for value in interpool_isolate for name in value.split(",") if name.strip()]
        _install(worker, interpool_workers, isolate)

    def dask_teardown(worker: Any) -> None:
        """Dask preload: shut the worker's interpool executor down with the worker."""
        _teardown(worker)
