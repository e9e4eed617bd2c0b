"""Task functions for tests/test_dask.py (importable by Dask and by interpool workers)."""

from tasks import spin  # noqa: F401  (Dask sends it by reference: tasks.spin)


def where(_):
    from interpool import _interpool

    return _interpool.interpreter_id()


def boom(x):
    raise ValueError(f"bad {x}")


def address_inside(_):
    """Imports distributed while it runs: in a worker interpreter the import fails (psutil)."""
    from distributed import get_worker

    return get_worker().address


def numpy_sum(n):
    """Needs numpy: (the interpreter that ran it, a sum)."""
    import numpy as np

    from interpool import _interpool

    return _interpool.interpreter_id(), int(np.arange(n).sum())


def pandas_groups(n):
    """Needs pandas: (the interpreter that ran it, sums by group)."""
    import pandas as pd

    from interpool import _interpool

    frame = pd.DataFrame({"key": [i % 3 for i in range(n)], "value": range(n)})
    return _interpool.interpreter_id(), {int(k): int(v) for k, v in frame.groupby("key")["value"].sum().items()}
