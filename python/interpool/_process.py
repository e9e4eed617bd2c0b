"""Process-wide lifecycle of pools: exit, fork() and subprocess.

* Exit: every pool of this interpreter is stopped and joined from a
  ``threading._register_atexit`` hook, before the runtime starts finalizing, while ending
  worker interpreters is still safe (docs/design.md, "Exit"). The hook never raises: Ctrl-C
  during the wait cancels what has not started and keeps waiting, because finalizing with
  live subinterpreters crashes CPython.
* fork(): only pools that existed before a fork are unusable in the child (their threads
  did not survive it). The child, or a process forked from a parent without live pools, can
  create pools of its own.
* subprocess with ``preexec_fn``: the child must run Python code after fork(), which CPython
  cannot do while subinterpreters are alive (gh-139759), so such a call raises a clear error
  in the parent instead of a child that silently never runs.
* Spare interpreters: once a process has created a second pool, each pool that shuts down
  leaves spare interpreters made in the background (as many as it had workers, at most
  ``INTERPOOL_SPARES``, default 8; 0 turns them off), which the next pools adopt instead of
  creating interpreters (CPython's creation is ~90% of a worker's start-up). A spare not
  adopted within ``SPARE_LINGER`` seconds ends itself; all end before a fork() and at exit.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Protocol

from . import _interpool


class Joinable(Protocol):
    """What exit needs from a pool (``_dispatch.PoolState``)."""

    def stop(self, cancel: bool, interrupt: bool = False) -> None: ...
    def join(self, timeout: float | None = None, stuck: bool = False) -> bool: ...
    def stuck_tasks(self) -> list[str]: ...


# How long exit waits for threads of tasks given up while stuck in a call.
STUCK_WAIT = 10.0


# Pools of this interpreter whose threads may still run; joined at exit.
_live: set[Joinable] = set()
_live_lock = threading.Lock()
exiting = False
# Incremented in a forked child: pools remember the generation they were created in.
fork_generation = 0
# Replaced when the process starts exiting and in a forked child: a pool whose remembered
# epoch differs (or that shut down or broke: `PoolState.epoch` is then None) refuses new
# tasks, which ``submit`` checks with one identity test.
epoch = object()


# How long a spare interpreter waits to be adopted before it ends itself.
SPARE_LINGER = 5.0
_pools_created = 0


def _spare_limit() -> int:
    try:
        return max(0, int(os.environ.get("INTERPOOL_SPARES", "8")))
    except ValueError:
        return 8


def pool_created() -> None:
    """A pool of the main interpreter was created (spares start after the second one)."""
    global _pools_created
    _pools_created += 1


def pool_finished(threads: int, stack_size: int) -> None:
    """A pool that started ``threads`` workers shut down: leave spares for the next pool,
    if this process creates pools repeatedly (see the module docstring)."""
    want = min(threads, _spare_limit())
    if exiting or _pools_created < 2 or want <= 0:
        return
    try:
        _interpool._fill_spares(want, stack_size, SPARE_LINGER)
    except RuntimeError:
        pass  # no thread for a spare: the next pool creates its interpreters itself


def end_spares() -> None:
    """End every spare interpreter now (before fork(), at exit of the main interpreter).

    Spares belong to the process and only the main interpreter ends them. A worker interpreter
    that imported interpool (a task using ``interpool.dask``, a nested pool) runs this module's
    exit hook inside ``Py_EndInterpreter``, which on 3.12 and 3.13 holds the process-wide lock
    that spare threads need to make or end their interpreters: joining them there deadlocked
    the process (a Dask cluster's shutdown hung every time on 3.13). ``_end_spares`` does
    nothing outside the main interpreter."""
    _interpool._end_spares()


def check_python() -> None:
    """Refuse to create worker interpreters on CPython releases where they crash the process.

    CPython 3.12.0-3.12.3: the first keyword-argument call of an extension function from a
    subinterpreter caches its keyword names with that interpreter's allocator, and the process
    aborts at exit (gh-119213, fixed in 3.12.4). It takes only e.g. ``zlib.compress(data,
    level=1)`` in a task, and no workaround covers every function.
    """
    if sys.version_info[:2] == (3, 12) and sys.version_info < (3, 12, 4):
        if os.environ.get("INTERPOOL_UNSAFE_PY312") != "1":
            import platform

            raise RuntimeError(
                f"interpool cannot run worker interpreters safely on CPython {platform.python_version()}: a "
                "keyword-argument call of an extension function in a subinterpreter makes the process "
                "crash at exit (CPython gh-119213, fixed in 3.12.4). Use CPython 3.12.4 or later, or 3.13+. "
                "(INTERPOOL_UNSAFE_PY312=1 skips this check at your own risk.)"
            )
    if sys.version_info[:2] == (3, 12):
        # _datetime and _decimal are single-phase: 3.12 runs their init function in a
        # subinterpreter before refusing them, which corrupts their static types, and the next
        # import anywhere aborts (gh-117953, never fixed in 3.12). Once the main interpreter has
        # loaded them, subinterpreters are refused before the init runs.
        import datetime  # noqa: F401
        import decimal  # noqa: F401


def register(pool: Joinable) -> None:
    with _live_lock:
        _live.add(pool)


def unregister(pool: Joinable) -> None:
    with _live_lock:
        _live.discard(pool)


def _python_exit() -> None:
    global exiting, epoch
    exiting = True
    epoch = object()
    end_spares()
    with _live_lock:
        pools = list(_live)
    # After an unhandled Ctrl-C, stop the work instead of waiting for it.
    interrupted = isinstance(getattr(sys, "last_exc", None), KeyboardInterrupt)
    for pool in pools:  # close them all first, so they wind down in parallel
        pool.stop(interrupted, interrupted)
    for pool in pools:
        while True:
            try:
                pool.join()
                break
            except KeyboardInterrupt:
                # Finalizing while workers run would crash: stop the work and keep waiting.
                if not interrupted:
                    interrupted = True
                    print("interpool: interrupted; stopping the running tasks", file=sys.stderr, flush=True)
                for other in pools:
                    other.stop(True, True)
            except BaseException:
                break  # an exit hook must not raise; the pool's own threads still end it
    _wait_for_stuck(pools, interrupted)


def _wait_for_stuck(pools: list[Joinable], interrupted: bool) -> None:
    """Threads of tasks that were given up (stuck in a C call) still run an interpreter;
    finalizing around them could crash CPython. Wait a bounded time for their calls to
    return; if they do not, say which tasks are stuck and end the process at once."""
    import time

    deadline = time.monotonic() + STUCK_WAIT
    for pool in pools:
        try:
            if pool.join(max(0.0, deadline - time.monotonic()), True):
                continue
        except BaseException:
            pass
        stuck = [name for p in pools for name in p.stuck_tasks()]
        # Tasks stopped by cancel/interrupt (not by a time limit) are not named: their
        # futures were done before their calls were given up.
        which = f"{len(stuck)} task(s) stuck" if stuck else "tasks that were stopped but are still stuck"
        print(
            f"interpool: exiting without waiting for {which} in code that does not return to Python"
            f"{': ' + ', '.join(stuck) if stuck else ''}. Ending the process now (finalizing around them "
            "could crash CPython).",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(130 if interrupted else 1)


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


def _after_fork_in_child() -> None:
    global fork_generation, epoch
    fork_generation += 1
    epoch = object()
    _live.clear()  # their threads did not survive the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


_PREEXEC_ARG = 21  # position of preexec_fn in _posixsubprocess.fork_exec (3.12-3.14)


def _guarded(fork_exec: Any) -> Any:
    def fork_exec_checked(*args: Any) -> Any:
        uses_preexec = len(args) > _PREEXEC_ARG and args[_PREEXEC_ARG] is not None
        if uses_preexec and _interpool._interpreters_alive():
            end_spares()  # spares are no reason to refuse: they end at once
        if uses_preexec and _interpool._interpreters_alive():
            raise RuntimeError(
                "subprocess cannot use preexec_fn while interpool worker interpreters are alive: the child "
                "would have to run Python code after fork(), which CPython cannot do with live "
                "subinterpreters (gh-139759). Use Popen's process_group=, start_new_session=, user=, "
                "group=, extra_groups= or umask= instead, or shut the pools down first."
            )
        return fork_exec(*args)

    fork_exec_checked.__wrapped__ = fork_exec  # type: ignore[attr-defined]
    return fork_exec_checked


def guard_subprocess() -> None:
    """Make ``subprocess`` refuse ``preexec_fn`` while interpreters are alive (idempotent;
    called when the first pool of the main interpreter is created)."""
    try:
        import _posixsubprocess
    except ImportError:  # not POSIX
        return
    if not hasattr(_posixsubprocess.fork_exec, "__wrapped__"):
        _posixsubprocess.fork_exec = _guarded(_posixsubprocess.fork_exec)
    subprocess = sys.modules.get("subprocess")
    current = getattr(subprocess, "_fork_exec", None)
    if current is not None and not hasattr(current, "__wrapped__"):
        subprocess._fork_exec = _guarded(current)  # type: ignore[union-attr]
