"""Task functions for tests/test_standins.py: ``faulthandler`` and ``tracemalloc`` in a worker."""

from __future__ import annotations

import os
from typing import Any


def faulthandler_in_worker() -> dict[str, Any]:
    import faulthandler

    read, write = os.pipe()
    try:
        faulthandler.dump_traceback(write, all_threads=False)
        faulthandler.dump_traceback(write, all_threads=True)
    finally:
        os.close(write)
    with os.fdopen(read) as f:
        dumped = f.read()
    faulthandler.enable(file=2)
    refused = []
    for call in (lambda: faulthandler.dump_traceback_later(5), lambda: faulthandler.register(10)):
        try:
            call()
        except RuntimeError as exc:
            refused.append(str(exc))
    return {
        "file": getattr(faulthandler, "__file__", None),
        "enabled_after_enable": faulthandler.is_enabled(),
        "disable": faulthandler.disable(),
        "unregister": faulthandler.unregister(10),
        "cancel": faulthandler.cancel_dump_traceback_later(),
        "dumped": dumped,
        "refused": refused,
    }


def tracemalloc_in_worker() -> dict[str, Any]:
    import sys
    import tracemalloc

    out: dict[str, Any] = {
        "file": getattr(sys.modules["_tracemalloc"], "__file__", None),
        "tracing": tracemalloc.is_tracing(),
        "traced": tracemalloc.get_traced_memory(),
        "stop": tracemalloc.stop(),
        "object": tracemalloc.get_object_traceback(object()),
    }
    for name, call in (("start", tracemalloc.start), ("snapshot", tracemalloc.take_snapshot)):
        try:
            call()
        except RuntimeError as exc:
            out[name] = str(exc)
    out["tracing_after_start"] = tracemalloc.is_tracing()
    return out


def stand_in_of(name: str) -> str | None:
    """The file of the module ``name`` loaded as in this interpreter (``None``: built in)."""
    import importlib

    return getattr(importlib.import_module(name), "__file__", None)
