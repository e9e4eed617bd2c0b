"""Tasks of bench_zero_copy.py (module level: every executor imports them by name)."""

from __future__ import annotations

from typing import Any


def first(a: Any) -> float:
    return float(a[0])


def make(n: int) -> Any:
    import numpy as np

    return np.arange(n, dtype=np.float64)


def total(a: Any) -> float:
    return float(a.sum())
