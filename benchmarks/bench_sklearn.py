"""scikit-learn's GridSearchCV (RandomForestClassifier on load_digits, cv=3, n_jobs=2) on joblib's
loky and threading backends and on interpool's (worker interpreters; sklearn, numpy and scipy
isolated by the default, isolate="auto"), side by side in one run; each result is checked
against loky's.

    python benchmarks/bench_sklearn.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

from joblib import parallel_config
from joblib.externals.loky import get_reusable_executor
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV

import interpool
import interpool.joblib

GRID = {"n_estimators": [20, 40], "max_depth": [6, 12]}
BACKENDS: dict[str, dict[str, Any]] = {
    "loky": {},
    "threading": {},
    "interpool": {},  # isolate="auto", the default
}


def search(backend: str, X: Any, y: Any) -> tuple[float, Any]:
    grid = GridSearchCV(RandomForestClassifier(random_state=0), GRID, cv=3)
    started = time.perf_counter()
    with parallel_config(backend=backend, n_jobs=2, **BACKENDS[backend]):
        grid.fit(X, y)
    return time.perf_counter() - started, grid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    warnings.simplefilter("error", interpool.FallbackWarning)  # a fit in the lane is a failure here
    best: dict[str, float] = {}
    first: dict[str, float] = {}
    reference = None
    for backend in BACKENDS:
        times = []
        for _ in range(args.repeat):
            seconds, grid = search(backend, X, y)
            times.append(seconds)
            scores = (grid.best_params_, list(grid.cv_results_["mean_test_score"]))
            if reference is None:
                reference = scores
            assert scores == reference, f"{backend} differs from loky: {scores} != {reference}"
        first[backend], best[backend] = times[0], min(times)
    get_reusable_executor().shutdown(wait=True)
    interpool.joblib.shutdown()
    print(f"{'backend':<10} {'first s':>8} {'best s':>8} {'loky/x':>7}")
    for backend in BACKENDS:
        print(f"{backend:<10} {first[backend]:>8.2f} {best[backend]:>8.2f} {best['loky'] / best[backend]:>7.2f}")
    print("results equal to loky's: yes")


if __name__ == "__main__":
    main()
