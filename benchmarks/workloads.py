"""Workloads shared by the benchmarks (module-level so every executor can import them)."""

from __future__ import annotations


def spin(n: int) -> int:
    """CPU-bound pure Python: the sum of squares below ``n``."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_expected(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6
