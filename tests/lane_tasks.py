"""Task functions for tests/test_lane.py. This module imports ``readline`` at its top, and
readline refuses own-GIL interpreters (on every Python of the matrix): a worker cannot load
any function of this module, so their calls move to the fallback lane before they start."""

from __future__ import annotations

import os
import readline
import threading
import time
from typing import Any

from tasks import PATIENCE


def where() -> dict[str, Any]:
    """Where the call runs: process, interpreter, thread."""
    from interpool import _interpool

    return {
        "pid": os.getpid(),
        "interp": _interpool.interpreter_id(),
        "thread": threading.current_thread().name,
        "readline": callable(readline.get_line_buffer),
    }


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


class HttpError(Exception):
    """An exception whose ``__init__`` takes other arguments than its ``args``."""

    def __init__(self, code: int, url: str) -> None:
        super().__init__(f"{code} at {url}")
        self.code, self.url = code, url


def raise_http_error(code: int) -> None:
    raise HttpError(code, "https://example.org")


def spin_forever(flag: str | None = None) -> None:
    """Pure-Python loop that never ends (a stop request must end it); touches ``flag`` first."""
    if flag is not None:
        open(flag, "w").close()
    n = 0
    while n >= 0:
        n += 1


def sleep(seconds: float, flag: str | None = None) -> float:
    if flag is not None:
        open(flag, "w").close()
    time.sleep(seconds)
    return seconds


def wait_for(path: str, timeout: float = PATIENCE) -> str:
    """Block until the file at ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return path


def meet(directory: str, me: str, other: str) -> str:
    """Arrive (a file ``me`` in ``directory``), then wait for ``other`` to arrive too: two such
    calls both return only if they run at the same time."""
    open(os.path.join(directory, me), "w").close()
    wait_for(os.path.join(directory, other))
    return me


def read_byte(fd: int) -> bytes:
    """Wait in C until a byte arrives on the pipe ``fd`` (the test decides when)."""
    return os.read(fd, 1)


def append(path: str, text: str) -> int:
    with open(path, "a") as f:
        f.write(text + "\n")
    return os.getpid()


def crash(code: int) -> None:
    os._exit(code)


def size(obj: Any) -> int:
    return len(obj)  # type: ignore[arg-type]


def read_init_value() -> str:
    import tasks

    return tasks.INIT_VALUE


def pid() -> int:
    return os.getpid()


def qsize(q: Any) -> int:
    return int(q.qsize())


class Payload:
    """An argument whose lifetime tests watch (weakref-able, picklable)."""

    def __init__(self, size: int) -> None:
        self.data = bytes(size)

    def __len__(self) -> int:
        return len(self.data)


def echo(*args: Any, **kwargs: Any) -> str:
    """What the call received, as text (a wrapper object shows as itself)."""
    return repr((args, kwargs))


def record(path: str, i: int, spin: int = 0) -> int:
    """Append ``i`` to the file at ``path`` as the call starts (one short write to a file
    opened for appending: records of several processes never interleave), then loop ``spin``
    times in Python (where a stop request lands); returns ``i``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"%d\n" % i)
    finally:
        os.close(fd)
    n = 0
    while n < spin:
        n += 1
    return i


def record_and_sleep(path: str, i: int, seconds: float) -> int:
    """``record``, then block in C (``time.sleep``) for ``seconds``: a stop request waits."""
    record(path, i)
    time.sleep(seconds)
    return i


def _busy_until(deadline: float) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1


def catch_the_first_stop(path: str, seconds: float) -> None:
    """Loop in Python, catching the first ``TaskInterrupted`` (as CPython loses one raised in a
    weakref callback), for at most ``seconds``; append how it ended to the file at ``path``:
    ``stopped again`` or ``ran out``."""
    from interpool import TaskInterrupted

    deadline = time.monotonic() + seconds
    # The loops run in a call: on 3.12 and 3.13 an asynchronous exception raised at the jump
    # of a loop written inside a try block can skip its handler (docs/design.md).
    try:
        try:
            _busy_until(deadline)
        except TaskInterrupted:
            pass
        _busy_until(deadline)
    except TaskInterrupted:
        append(path, "stopped again")
        raise
    append(path, "ran out")
