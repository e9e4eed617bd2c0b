"""Tasks of bench_groupby.py (module level: every executor imports them by name)."""

from __future__ import annotations

from typing import Any


def frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"key": rng.integers(0, 1000, rows), "a": rng.random(rows), "b": rng.standard_normal(rows)})


def partial(chunk: Any) -> Any:
    """Per-key sums and counts of a chunk (what the caller adds up)."""
    grouped = chunk.groupby("key")
    out = grouped[["a", "b"]].sum()
    out["n"] = grouped.size()
    return out
