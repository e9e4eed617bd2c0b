"""Tasks of tests/test_blas.py and benchmarks/bench_blas.py (module level: workers import them
by name)."""

from __future__ import annotations


def matmuls(n: int, reps: int, seed: int) -> float:
    """``reps`` products of an ``n x n`` float64 matrix (BLAS dgemm); a checksum."""
    import numpy as np

    a = np.random.default_rng(seed).random((n, n))
    for _ in range(reps):
        a = (a @ a) / n
    return float(a.sum())


def blas_threads(_: object = None) -> int:
    """The thread count of the BLAS library this interpreter's numpy uses (-1: not one)."""
    import numpy  # noqa: F401  (loads the library)

    from interpool import _interpool

    counts = {threads for _path, _family, threads in _interpool._blas_libraries()}
    return counts.pop() if len(counts) == 1 else -1
