"""The extension-using tasks of bench_lane.py. This module imports faulthandler, and numpy
when it is installed; both refuse own-GIL interpreters, so interpool runs its functions in
the fallback lane (a process), as a ProcessPoolExecutor would."""

from __future__ import annotations

import faulthandler  # noqa: F401 - refuses own-GIL interpreters: calls of this module go to the lane
from typing import Any

np: Any
try:
    import numpy as np
except ImportError:  # faulthandler alone keeps the benchmark dependency-free
    np = None

USES = "numpy" if np is not None else "faulthandler"


def squares(values: list[int], rounds: int) -> int:
    """The same work as ``lane_pure.squares``, checked with numpy where it is installed."""
    total = 0
    for _ in range(rounds):
        for x in values:
            total += x * x
    if np is not None:
        array = np.asarray(values, dtype=np.int64)
        assert int((array * array).sum()) * rounds == total
    return total
