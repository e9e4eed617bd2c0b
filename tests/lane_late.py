"""Task functions that import ``readline`` (which refuses own-GIL interpreters) inside
their body: a worker loads them, starts the call, and the import fails while it runs."""

from __future__ import annotations


def log_then_import(path: str) -> bool:
    with open(path, "a") as f:
        f.write("ran\n")
    import readline

    return callable(readline.get_line_buffer)
