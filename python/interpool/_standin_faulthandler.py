"""``faulthandler`` in a worker interpreter, where the built-in module refuses to load.

CPython's ``faulthandler`` (Modules/faulthandler.c) is a multi-phase module without a
``Py_mod_multiple_interpreters`` slot, so it counts as "supported in subinterpreters, not with
their own GIL", and an own-GIL interpreter refuses it ("module faulthandler does not support
loading in subinterpreters"; a shared-GIL one loads it). Its state is the *process's*: one
set of signal handlers for SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL; one watchdog thread for
``dump_traceback_later``; one table of ``register``-ed signals; each holding a file object and
the interpreter that enabled it. A worker that changed it would leave the main interpreter's
handler writing to a file object of the worker's (freed with the worker) or dumping the
wrong interpreter's threads.

joblib imports it (through loky), and scikit-learn imports joblib, so without this module
neither can load in a worker. ``_worker._StandIns`` loads this module under the name
``faulthandler`` in a worker only when the built-in one refuses (it tries the built-in first).
It never touches the process-wide state. What each function does here:

* ``is_enabled()`` is ``False`` and ``enable()`` does nothing (after checking ``file`` as the
  stdlib does): this interpreter has no fault handler of its own. The process's handler, when
  the main interpreter enabled it (``python -X faulthandler``, ``PYTHONFAULTHANDLER=1``,
  ``faulthandler.enable()``), is process-wide and also fires on a fatal signal in a worker's
  thread. ``disable()`` returns ``False`` ("was not enabled"), as the stdlib does when disabled.
* ``dump_traceback(file, all_threads)`` works: it writes this interpreter's Python traceback
  (the current thread's, or all of this interpreter's threads') in faulthandler's format. It
  reads only this interpreter's frames (``sys._current_frames()`` is limited to the calling
  interpreter in interpool's workers: src/threads.rs).
* ``dump_c_stack(file)`` (3.14) writes the stdlib's line for a platform without C stack
  support: the C stack walker is the C module's.
* ``dump_traceback_later()`` and ``register()`` raise ``RuntimeError``: their watchdog thread
  and signal handlers are process-wide, and a silent no-op would leave a hang or a signal
  unreported. ``cancel_dump_traceback_later()`` does nothing and ``unregister()`` returns
  ``False``, as the stdlib does when nothing was scheduled or registered.
* The stdlib's crash helpers for its own tests (``_sigsegv``, ``_read_null``...) are absent.
"""

import os
import sys

_WHERE = "in an interpool worker interpreter"


def _fd(file: object) -> int:
    """The file descriptor of ``file`` (``None``: ``sys.stderr``), flushed, as the stdlib
    checks it (Modules/faulthandler.c, ``faulthandler_get_fileno``)."""
    if file is None:
        file = sys.stderr
        if file is None:
            raise RuntimeError("sys.stderr is None")
    if isinstance(file, int):
        if file < 0:
            raise ValueError("file is not a valid file descriptor")
        return file
    fileno = file.fileno()  # type: ignore[attr-defined]
    if not isinstance(fileno, int) or fileno < 0:
        raise RuntimeError("file.fileno() is not a valid file descriptor")
    flush = getattr(file, "flush", None)
    if flush is not None:
        try:
            flush()
        except Exception:
            pass  # as the stdlib: ignore flush() errors
    return fileno


def is_enabled() -> bool:
    """``False``: this interpreter has no fault handler of its own (see the module docs)."""
    return False


def enable(file: object = None, all_threads: bool = True, c_stack: bool = True) -> None:
    """Check ``file`` as the stdlib does, then do nothing: the fatal-signal handlers are the
    process's, set by the main interpreter (``python -X faulthandler``), whose handler also
    reports a crash in a worker's thread."""
    _fd(file)


def disable() -> bool:
    """``False``: the fault handler was not enabled by this interpreter."""
    return False


def dump_traceback(file: object = None, all_threads: bool = True) -> None:
    """Write the Python traceback of this thread (``all_threads``: of each of this
    interpreter's threads, the current one first) into ``file``, in faulthandler's format."""
    fd = _fd(file)
    current = sys._getframe(1)
    ident = _thread_ident()
    if all_threads:
        frames = dict(sys._current_frames())
        frames[ident] = current
        order = [ident] + [tid for tid in frames if tid != ident]
        blocks = [_format(tid, frames[tid], tid == ident, True) for tid in order]
    else:
        blocks = [_format(ident, current, True, False)]
    os.write(fd, "\n".join(blocks).encode("utf-8", "backslashreplace"))


def _thread_ident() -> int:
    import _thread

    return _thread.get_ident()


def _format(ident: int, frame: object, current: bool, named: bool) -> str:
    if named:
        head = f"{'Current thread' if current else 'Thread'} 0x{ident:016x} (most recent call first):\n"
    else:
        head = "Stack (most recent call first):\n"
    lines = [head]
    while frame is not None:
        code = frame.f_code  # type: ignore[attr-defined]
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno} in {code.co_name}\n')  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    return "".join(lines)


if sys.version_info >= (3, 14):

    def dump_c_stack(file: object = None) -> None:
        """Write the stdlib's line for a platform without C stack dumps: the walker is the
        C module's, which cannot load here."""
        os.write(_fd(file), b"Current thread's C stack trace (most recent call first):\n  <cannot get C stack here>\n")


def dump_traceback_later(timeout: float, repeat: bool = False, file: object = None, exit: bool = False) -> None:
    """Refused: the watchdog thread is the process's (one per process, shared with the main
    interpreter), and a silent no-op would leave a hang unreported."""
    raise RuntimeError(
        f"faulthandler.dump_traceback_later() is not available {_WHERE}: its watchdog thread is process-wide "
        "(the main interpreter's). Call it in the main interpreter (it dumps the main interpreter's threads), or "
        "use the executor's task_timeout= to stop a task that hangs"
    )


def cancel_dump_traceback_later() -> None:
    """Nothing to cancel: this interpreter cannot schedule a dump."""


def register(signum: int, file: object = None, all_threads: bool = True, chain: bool = False) -> None:
    """Refused: signal handlers are the process's."""
    raise RuntimeError(
        f"faulthandler.register() is not available {_WHERE}: signal handlers are process-wide (the main "
        "interpreter's). Call it in the main interpreter"
    )


def unregister(signum: int, /) -> bool:
    """``False``: no handler was registered by this interpreter."""
    return False
