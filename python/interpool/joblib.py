"""A joblib parallel backend that runs ``Parallel`` calls in interpool worker interpreters.

Importing this module registers the backend under the name ``"interpool"``::

    import interpool.joblib  # noqa: F401  (registers the backend)
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="interpool", n_jobs=4):
        results = Parallel()(delayed(f)(i) for i in range(100))

Workers can import joblib (loky imports ``faulthandler``, which workers get as a stand-in:
``_standin_faulthandler.py``), but the backend never sends joblib's objects: each batch
travels as its list of ``(function, args, kwargs)`` calls and the worker runs them with a
plain loop, without importing joblib. What joblib users rely on holds: ``n_jobs=-1`` (all
CPUs, by ``joblib.cpu_count()``), automatic batching, ``return_as="list" | "generator" |
"generator_unordered"``, ``Parallel(timeout=)``, and errors re-raised with their original
types (the worker's traceback as ``__cause__``). When a task fails or the timeout passes,
the batches still queued are cancelled and the running ones interrupted (not left to run, as
loky must).

Constructor parameters (``parallel_config(backend="interpool", max_tasks_per_worker=100)``)
are passed to :class:`interpool.InterpreterPoolExecutor`: ``max_tasks_per_worker``,
``initializer``, ``initargs``, ``task_timeout``, ``interrupt_grace``, ``isolate`` (a private
copy of extension modules per worker, as numpy's: docs/isolation.md), ``zero_copy``,
``blas_threads`` (joblib's ``inner_max_num_threads`` sets it when it is not given).
joblib's memory-mapping settings keep their meaning without files: arrays larger than
``max_nbytes`` (default 1 MiB) reach the workers as read-only views of the caller's memory
(``mmap_mode="r"``, the default), the others as copies; ``max_nbytes=None`` or
``mmap_mode="c"`` copies them all; ``"r+"``/``"w+"`` (writable sharing) are refused. Like loky's reusable
executor, one pool serves successive ``Parallel`` calls with the same ``n_jobs`` and
parameters, so workers (and what they imported) are reused. ``n_jobs=1`` runs sequentially in
the calling interpreter, as with every joblib backend. ``require="sharedmem"`` makes joblib
pick its threading backend, since worker interpreters share no objects with the caller.
"""

from __future__ import annotations

import threading
from abc import ABCMeta
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import joblib  # type: ignore[import-untyped]
from joblib._parallel_backends import (  # type: ignore[import-untyped]
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from . import _worker
from ._executor import InterpreterPoolExecutor

__all__ = ["InterpoolBackend", "register", "shutdown"]

_EXECUTOR_OPTIONS = frozenset(
    {
        "max_tasks_per_worker",
        "initializer",
        "initargs",
        "task_timeout",
        "interrupt_grace",
        "isolate",
        "zero_copy",
        "blas_threads",
    }
)


def _zero_copy(max_nbytes: int | None, mmap_mode: str | None) -> bool | int:
    """The executor's ``zero_copy`` for joblib's memory-mapping settings. joblib's process
    backends memory-map arrays larger than ``max_nbytes`` (default 1 MiB) with ``mmap_mode``
    (default ``"r"``: workers get read-only arrays), and copy the others. Here the same
    arrays are lent to workers as read-only views of the caller's memory (no file, no copy):
    docs/design.md, "Out-of-band buffers"."""
    if mmap_mode in ("r+", "w+"):
        raise ValueError(
            f"mmap_mode={mmap_mode!r} would share writable arrays with the workers; the interpool joblib "
            "backend gives workers read-only views (mmap_mode='r', the default) or copies (mmap_mode='c' or "
            "max_nbytes=None). To fill one array from several workers, view an interpool.SharedBuffer with "
            "numpy.frombuffer in each (README, 'Shared buffers')"
        )
    if max_nbytes is None or mmap_mode in (None, "c"):
        return False  # copies: writable and private, as joblib's without memory-mapping
    return int(max_nbytes) + 1  # joblib maps arrays *larger* than max_nbytes


class _SharedPool:
    """One executor at a time shared by the backends of successive ``Parallel`` calls (as
    loky's reusable executor). A call that needs other settings replaces it; the old one
    shuts down once the calls still using it have released it."""

    lock = threading.Lock()
    current: _SharedPool | None = None

    def __init__(self, key: tuple[Any, ...], executor: InterpreterPoolExecutor) -> None:
        self.key = key
        self.executor = executor
        self.users = 0

    @classmethod
    def acquire(cls, n_jobs: int, options: dict[str, Any]) -> _SharedPool:
        key = (n_jobs, tuple(sorted((name, repr(value)) for name, value in options.items())))
        retired = None
        with cls.lock:
            entry = cls.current
            if entry is None or entry.key != key or entry.executor._shutdown:
                if entry is not None and entry.users == 0:
                    retired = entry
                entry = cls.current = _SharedPool(
                    key, InterpreterPoolExecutor(n_jobs, thread_name_prefix="joblib-interpool", **options)
                )
            entry.users += 1
        if retired is not None:
            retired.executor.shutdown(wait=False)
        return entry

    def release(self) -> None:
        with _SharedPool.lock:
            self.users -= 1
            retire = self.users == 0 and _SharedPool.current is not self
        if retire:
            self.executor.shutdown(wait=False)


# (metaclass spelled out: joblib is untyped, so type checkers cannot see its ABCMeta)
class InterpoolBackend(AutoBatchingMixin, ParallelBackendBase, metaclass=ABCMeta):  # type: ignore[misc]
    """The joblib backend ``"interpool"``: batches of calls run in worker interpreters."""

    supports_inner_max_num_threads = True  # it becomes the pool's blas_threads
    supports_retrieve_callback = True  # results and errors arrive through future callbacks
    supports_return_generator = True
    supports_timeout = True
    supports_sharedmem = False  # worker interpreters share no objects with the caller
    uses_threads = False
    default_n_jobs = 1

    def __init__(
        self, nesting_level: int | None = None, inner_max_num_threads: int | None = None, **options: Any
    ) -> None:
        unknown = set(options) - _EXECUTOR_OPTIONS
        if unknown:
            raise TypeError(
                f"the interpool joblib backend got unknown parameters {sorted(unknown)}; it accepts "
                f"{sorted(_EXECUTOR_OPTIONS)} (passed to interpool.InterpreterPoolExecutor)"
            )
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        self.options = options
        self._pool: _SharedPool | None = None
        self._futures: set[Future[Any]] = set()
        self._futures_lock = threading.Lock()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if not isinstance(n_jobs, int):
            raise TypeError(f"n_jobs must be an int, got {n_jobs!r}")
        if n_jobs < 0:
            return max(int(joblib.cpu_count()) + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, **backend_kwargs: Any) -> int:
        """Called by ``Parallel`` before each call (or once, for ``with Parallel(...)``).
        ``max_nbytes`` and ``mmap_mode`` decide which arrays workers get as read-only views
        rather than copies (:func:`_zero_copy`), unless the backend was given ``zero_copy``;
        ``temp_folder`` concerns memory-mapped files, which this backend does not make."""
        n_jobs = self.effective_n_jobs(n_jobs)
        zero_copy = _zero_copy(backend_kwargs.get("max_nbytes", 1 << 20), backend_kwargs.get("mmap_mode", "r"))
        if n_jobs == 1:
            # As every joblib backend: one job runs sequentially in the caller.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._release()
        options = self.options if "zero_copy" in self.options else {**self.options, "zero_copy": zero_copy}
        if self.inner_max_num_threads is not None and "blas_threads" not in options:
            options = {**options, "blas_threads": self.inner_max_num_threads}
        self._pool = _SharedPool.acquire(n_jobs, options)
        return n_jobs

    def submit(self, func: Any, callback: Callable[[Future[Any]], Any] | None = None) -> Future[Any]:
        """Run a batch (joblib's ``BatchedCalls``) in a worker; ``callback`` gets the future."""
        if self._pool is None:
            raise RuntimeError("the interpool joblib backend was not configured by a Parallel call")
        calls = [(fn, tuple(args), dict(kwargs)) for fn, args, kwargs in func.items]
        future: Future[Any] = self._pool.executor.submit(_worker.run_calls, calls)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    apply_async = submit  # the name joblib < 1.5 calls

    def _forget(self, future: Future[Any]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        return out.result()  # the task's own exception, with the worker's traceback as __cause__

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A task failed or ``Parallel``'s timeout passed: cancel the queued batches of this
        call and interrupt its running ones. The shared pool stays usable."""
        with self._futures_lock:
            futures = list(self._futures)
        for future in futures:
            interrupt = getattr(future, "interrupt", None)
            if interrupt is not None:
                interrupt()
            else:  # a submission that failed before reaching the pool
                future.cancel()

    def terminate(self) -> None:
        self._release()

    def _release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release()

    def get_nested_backend(self) -> tuple[Any, int | None]:
        # Parallel calls made from the caller's threads while this backend is active (the
        # workers cannot import joblib) run sequentially.
        nesting_level = (self.nesting_level or 0) + 1
        return SequentialBackend(nesting_level=nesting_level), None

    @contextmanager
    def retrieval_context(self) -> Iterator[None]:
        yield


def shutdown(wait: bool = True) -> None:
    """Shut down the pool that successive ``Parallel`` calls share (it also ends at exit). The
    next call starts a new one. Calls still running on it finish first."""
    with _SharedPool.lock:
        entry, _SharedPool.current = _SharedPool.current, None
    if entry is not None:
        entry.executor.shutdown(wait=wait)


def register() -> None:
    """Register the backend as ``"interpool"`` (done when this module is imported)."""
    joblib.register_parallel_backend("interpool", InterpoolBackend)


register()
