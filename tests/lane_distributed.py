"""A task module that imports ``distributed`` at its top: its functions' calls cannot run in a
worker interpreter (psutil refuses them) and move to the fallback lane (scripts/soak.py)."""

from __future__ import annotations

import distributed  # noqa: F401  (the refusal is the point)


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total
