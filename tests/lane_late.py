"""Task functions that import ``readline`` (which refuses own-GIL interpreters) inside
their body: a worker loads them, starts the call, and the import fails while it runs."""

from __future__ import annotations


def log_then_import(path: str) -> bool:
    with open(path, "a") as f:
        f.write("ran\n")
    import readline

    return callable(readline.get_line_buffer)


def import_first(x: int) -> int:
    """As many tasks are written: the import first, inside the function."""
    import readline
    from readline import get_line_buffer

    assert callable(readline.get_line_buffer) and callable(get_line_buffer)
    return x * x


def import_first_again(x: int) -> int:
    import readline

    return x + int(callable(readline.get_line_buffer))


def import_after_a_call(x: int) -> int:
    """A call before the import: the call has started when the import fails."""
    y = abs(x)
    import readline

    return y + int(callable(readline.get_line_buffer))


def import_unless_zero(x: int) -> int:
    if x == 0:
        return 0
    import readline

    return x + int(callable(readline.get_line_buffer))
