"""numpy tasks for tests/test_lane.py (numpy refuses own-GIL interpreters)."""

from __future__ import annotations

from typing import Any

import numpy as np


def total(values: Any) -> int:
    return int(np.asarray(values).sum())


def arange(n: int) -> Any:
    return np.arange(n)
