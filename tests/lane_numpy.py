"""numpy tasks for tests/test_lane.py (numpy refuses own-GIL interpreters)."""

from __future__ import annotations

from typing import Any

import numpy as np


def total(values: Any) -> int:
    return int(np.asarray(values).sum())


def arange(n: int) -> Any:
    return np.arange(n)


def blas_environment() -> str:
    """``OPENBLAS_NUM_THREADS:OMP_NUM_THREADS`` as this process sees them."""
    import os

    return f"{os.environ.get('OPENBLAS_NUM_THREADS')}:{os.environ.get('OMP_NUM_THREADS')}"
