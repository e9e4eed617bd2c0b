"""Run Dask distributed tasks on interpool workers (own-GIL subinterpreters).

A dask.distributed ``Worker`` hands every task to its executor; with anything but a
thread pool it submits ``distributed.worker._run_task_simple(task, data, delay)``. That
function lives in ``distributed.worker``, which imports psutil, an extension module that
cannot load in subinterpreters, so a plain ``InterpreterPoolExecutor`` fails every task.

:class:`DaskExecutor` recognizes those calls: the task itself (``task(data)``, which only
needs ``dask``) runs in a worker interpreter, and the bookkeeping record Dask expects
(timings, size, errors) is built here, in the Dask worker's own interpreter. Other calls
are passed through. Usage, with an in-process worker::

    from distributed import Client, LocalCluster
    from interpool.dask import DaskExecutor

    with LocalCluster(n_workers=1, processes=False, executor=DaskExecutor(4)) as cluster:
        with Client(cluster) as client:
            print(client.gather(client.map(cpu_heavy, range(100))))

What works: pure-Python task functions (and anything importable in a subinterpreter),
including ``dask.bag`` pipelines; values travel like any interpool argument. Dask's
functions come from cytoolz when it is installed, and cytoolz cannot load in
subinterpreters as it is, so DaskExecutor adds ``"cytoolz"`` to the pool's ``isolate=``
(each worker loads a private copy; docs/isolation.md). Tasks that use other such extension
modules (numpy, pandas, ...) need them in ``isolate=`` too. What does not work:
``distributed.get_worker()`` and other worker state inside tasks, and coroutine tasks (Dask
runs those on its event loop).
With ``processes=True``, or workers started from the command line, each Dask worker process
needs its own ``DaskExecutor``: this module is a Dask preload that installs one::

    dask worker tcp://SCHEDULER:8786 --nthreads 4 --preload interpool.dask
    dask worker ... --preload interpool.dask --interpool-workers 8 --interpool-isolate numpy

(``--interpool-workers``: the pool's size, default the worker's ``--nthreads``;
``--interpool-isolate``: a module for ``isolate=``, repeatable, or ``auto``.) The preload's
``dask_setup`` replaces the worker's default executor and ``dask_teardown`` shuts it down with
the worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from typing import Any

from ._executor import InterpreterPoolExecutor


def _call_task(task: Any, data: dict[str, Any]) -> Any:
    """Runs in the worker interpreter: only dask's task object and its inputs are needed."""
    return task(data)


def _with_cytoolz(isolate: Iterable[str] | str | None) -> Iterable[str] | str | None:
    """``isolate=`` plus cytoolz, where Dask will use it (it refuses subinterpreters)."""
    import importlib.util

    from . import _isolate

    if isolate == "auto" or not _isolate.supported() or importlib.util.find_spec("cytoolz") is None:
        return isolate  # (3.12: no isolation, and Dask's tests skip it for ctypes anyway)
    names = [] if isolate is None else [isolate] if isinstance(isolate, str) else list(isolate)
    return names if "cytoolz" in names else [*names, "cytoolz"]


def _is_dask_run_task(fn: object) -> bool:
    return (
        getattr(fn, "__name__", None) == "_run_task_simple" and getattr(fn, "__module__", None) == "distributed.worker"
    )


class DaskExecutor(Executor):
    """A ``concurrent.futures`` executor for ``distributed.Worker(executor=...)`` that runs
    Dask tasks on an :class:`interpool.InterpreterPoolExecutor` (same arguments)."""

    def __init__(self, max_workers: int | None = None, *args: Any, **kwargs: Any) -> None:
        kwargs["isolate"] = _with_cytoolz(kwargs.get("isolate"))
        self.pool = InterpreterPoolExecutor(max_workers, *args, **kwargs)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not _is_dask_run_task(fn) or kwargs or len(args) != 3:
            return self.pool.submit(fn, *args, **kwargs)
        task, data, time_delay = args
        outer: Future[Any] = Future()
        outer.set_running_or_notify_cancel()
        start = time.time()
        inner = self.pool.submit(_call_task, task, data)

        def finish(done: Future[Any]) -> None:
            stop = time.time()
            try:
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


def _install(worker: Any, max_workers: int | None, isolate: Iterable[str] | str | None) -> DaskExecutor:
    """Make ``worker`` (a ``distributed.Worker``) run its tasks on a new DaskExecutor."""
    if not hasattr(worker, "executors") or not hasattr(worker, "state"):
        raise TypeError(
            f"interpool.dask is a preload for Dask workers (dask worker --preload interpool.dask), "
            f"not for a {type(worker).__name__}"
        )
    executor = DaskExecutor(max_workers or worker.state.nthreads, isolate=isolate)
    previous = worker.executors.get("default")
    worker.executors["default"] = executor
    if previous is not None and previous is not executor and previous is not worker.executors.get("offload"):
        previous.shutdown(wait=False)  # the thread pool the worker made for itself: never used
    return executor


def _teardown(worker: Any) -> None:
    executor = getattr(worker, "executors", {}).get("default")
    if isinstance(executor, DaskExecutor):
        executor.shutdown(wait=True)


try:
    import click
except ImportError:  # distributed (which needs click) is not installed: no preload then
    pass
else:

    @click.command()
    @click.option("--interpool-workers", type=int, default=None, help="worker interpreters (default: --nthreads)")
    @click.option(
        "--interpool-isolate", multiple=True, help="a module for isolate= (repeatable), or 'auto'", metavar="MODULE"
    )
    def dask_setup(worker: Any, interpool_workers: int | None, interpool_isolate: tuple[str, ...]) -> None:
        """Dask preload: run this worker's tasks on interpool worker interpreters."""
        isolate: Iterable[str] | str | None = None
        if interpool_isolate == ("auto",):
            isolate = "auto"
        elif interpool_isolate:
            isolate = list(interpool_isolate)
        _install(worker, interpool_workers, isolate)

    def dask_teardown(worker: Any) -> None:
        """Dask preload: shut the worker's interpool executor down with the worker."""
        _teardown(worker)
