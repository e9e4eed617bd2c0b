"""Task functions that import ``faulthandler`` (which refuses own-GIL interpreters) inside
their body: a worker loads them, starts the call, and the import fails while it runs."""

from __future__ import annotations


def log_then_import(path: str) -> bool:
    with open(path, "a") as f:
        f.write("ran\n")
    import faulthandler

    return faulthandler.is_enabled() in (True, False)
