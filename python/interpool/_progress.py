"""``progress=`` of ``map`` and ``amap``: count items as they complete.

``True`` shows a tqdm bar when tqdm is installed and a plain line on stderr otherwise; a
callable is called with the number of items each completed task adds (so ``bar.update`` of a
tqdm bar, or ``lambda n: progress.advance(task_id, n)`` of rich, can be passed as it is).
Items are counted, not tasks: with ``chunksize=20`` a completed task adds 20.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

Tracker = Callable[[int], object]


class _Line:
    """A progress line on stderr (when tqdm is not installed)."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += n
            of = f"/{self.total}" if self.total is not None else ""
            sys.stderr.write(f"\r{self.done}{of} items")
            sys.stderr.flush()

    def close(self) -> None:
        with self.lock:
            sys.stderr.write("\n")
            sys.stderr.flush()


def total_of(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The number of calls ``map`` will make, when every iterable knows its length."""
    if not iterables:
        return 0  # map(fn) with no iterables: no calls (min() of nothing would raise)
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


def tracker(progress: bool | Tracker, total: int | None) -> tuple[Tracker | None, Callable[[], None]]:
    """The function to call with each completed task's item count, and the one that closes
    the display when the iteration ends."""
    if progress is False or progress is None:
        return None, lambda: None
    if progress is True:
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            line = _Line(total)
            return line, line.close
        bar = tqdm(total=total, unit="item")
        return bar.update, bar.close
    if callable(progress):
        return progress, lambda: None
    raise TypeError(
        f"progress must be True, False or a callable taking a number of completed items, not {type(progress).__name__}"
    )
