"""Task functions for tests/test_dask.py (importable by Dask and by interpool workers)."""


def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def where(_):
    from interpool import _interpool

    return _interpool.interpreter_id()


def boom(x):
    raise ValueError(f"bad {x}")
