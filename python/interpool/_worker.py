"""Runs inside every worker interpreter: decodes tasks, runs them, encodes replies.

The Rust worker loop calls :func:`bootstrap` once per interpreter and then the returned
runner once per task, passing ``bytes`` in and getting ``bytes`` back; no Python object
ever crosses between interpreters.

A reply is one status byte followed by a pickle:

* ``STATUS_RESULT``: the pickled return value;
* ``STATUS_EXCEPTION``: ``(pickled exception or None, module, qualname, str, traceback)``.

Bit ``REPLACE_FLAG`` of the status byte asks Rust to replace this interpreter after the
task (kept in sync with ``src/worker.rs``).
"""

from __future__ import annotations

import pickle
import sys
import traceback
from collections.abc import Callable
from typing import Any

STATUS_RESULT = 0
STATUS_EXCEPTION = 1
STATUS_INTERNAL = 0x7F
REPLACE_FLAG = 0x80

_PROTOCOL = pickle.HIGHEST_PROTOCOL


def encode_exception(exc: BaseException, status: int = STATUS_EXCEPTION) -> bytes:
    """Encode ``exc`` so the owner can re-raise the original type with the remote
    traceback attached, or at least its type name, message and traceback text."""
    formatted = "".join(traceback.format_exception(exc))
    try:
        exc_bytes: bytes | None = pickle.dumps(exc, _PROTOCOL)
    except Exception:
        exc_bytes = None
    kind = type(exc)
    try:
        text = str(exc)
    except Exception:
        text = f"<str() of {kind.__qualname__} failed>"
    body = pickle.dumps((exc_bytes, kind.__module__, kind.__qualname__, text, formatted), _PROTOCOL)
    return bytes((status,)) + body


def run(payload: bytes) -> bytes:
    """Run one task: ``payload`` is the pickled ``(fn, args, kwargs)``."""
    try:
        fn, args, kwargs = pickle.loads(payload)
        result = fn(*args, **kwargs)
    except BaseException as exc:
        return encode_exception(exc)
    try:
        return bytes((STATUS_RESULT,)) + pickle.dumps(result, _PROTOCOL)
    except BaseException as exc:
        error = TypeError(
            f"cannot send the result of {_describe(fn)} back: "
            f"{type(result).__qualname__} object is not picklable ({exc})"
        )
        return encode_exception(error)


def _describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', '?')}.{name}()"


def bootstrap(config: bytes, index: int) -> Callable[[bytes], bytes] | str:
    """Prepare this interpreter; return the task runner, or a ``str`` that explains why
    the worker cannot start (which breaks the pool)."""
    try:
        settings: dict[str, Any] = pickle.loads(config)
        initializer = settings.get("initializer")
        if initializer is not None:
            fn, initargs = initializer
            if isinstance(fn, str):
                exec(fn, vars(sys.modules["__main__"]))
            else:
                fn(*initargs)
    except BaseException as exc:
        return "".join(traceback.format_exception(exc))
    return run
