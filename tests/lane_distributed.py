"""A task module that imports ``distributed`` at its top: its functions' calls cannot run in a
worker interpreter (psutil refuses them) and move to the fallback lane (scripts/soak.py)."""

from __future__ import annotations

import distributed  # noqa: F401  (the refusal is the point)

import tasks


def spin(n: int) -> int:
    """tasks.spin, called from this module: a worker cannot load it, so the call moves."""
    return tasks.spin(n)
