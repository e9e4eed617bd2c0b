"""The pure-Python tasks of bench_lane.py (they load in worker interpreters)."""

from __future__ import annotations


def squares(values: list[int], rounds: int) -> int:
    """CPU-bound pure Python: ``rounds`` times the sum of the squares of ``values``."""
    total = 0
    for _ in range(rounds):
        for x in values:
            total += x * x
    return total
