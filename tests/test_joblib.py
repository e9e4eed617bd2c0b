"""joblib's Parallel on the "interpool" backend (interpool.joblib), against the real joblib."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasks
from conftest import run_script, wait_until

joblib = pytest.importorskip("joblib")
from joblib import Parallel, delayed, parallel_config  # noqa: E402

import interpool.joblib  # noqa: E402  (registers the backend)
from interpool import ExecutionFailed, Queue  # noqa: E402

# joblib's backend is Python code over the public API (its interrupts are test_interrupt's).
pytestmark = pytest.mark.one_python


@pytest.fixture(autouse=True)
def shared_pool_ends() -> Iterator[None]:
    yield
    interpool.joblib.shutdown()


def test_results_in_order_from_worker_interpreters() -> None:
    with parallel_config(backend="interpool", n_jobs=2):
        results = Parallel()(delayed(tasks.square)(i) for i in range(100))
    assert results == [i * i for i in range(100)]
    with parallel_config(backend="interpool", n_jobs=2):
        where = set(Parallel()(delayed(tasks.interpreter_id)() for _ in range(20)))
    assert tasks.interpreter_id() not in where, "the calls ran in worker interpreters"


def test_keyword_arguments_and_mixed_functions() -> None:
    calls = [delayed(tasks.add)(i, b=1) if i % 2 else delayed(tasks.square)(i) for i in range(20)]
    results = Parallel(backend="interpool", n_jobs=2, batch_size=3)(calls)
    assert results == [i + 1 if i % 2 else i * i for i in range(20)]


def test_joblib_is_not_imported_in_the_workers() -> None:
    with parallel_config(backend="interpool", n_jobs=2):
        imported = Parallel()(delayed(tasks.is_imported)("joblib") for _ in range(4))
    assert imported == [False] * 4


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_generators(return_as: str) -> None:
    parallel = Parallel(backend="interpool", n_jobs=2, return_as=return_as)
    out = parallel(delayed(tasks.square)(i) for i in range(50))
    assert not isinstance(out, list)
    results = list(out)
    if return_as == "generator":
        assert results == [i * i for i in range(50)]
    else:
        assert sorted(results) == [i * i for i in range(50)]


def test_unordered_generator_yields_fast_results_first(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    parallel = Parallel(backend="interpool", n_jobs=2, return_as="generator_unordered", batch_size=1)
    # The first call returns only once the other three results arrived: yielded in order,
    # they never would (its wait fails after PATIENCE).
    results: list[object] = []
    for result in parallel([delayed(tasks.wait_for_file)(gate)] + [delayed(tasks.square)(i) for i in (1, 2, 3)]):
        results.append(result)
        if len(results) == 3:
            tasks.touch(gate)
    assert sorted(results[:3]) == [1, 4, 9] and results[3] == gate  # type: ignore[type-var]


def test_errors_keep_their_type_and_the_worker_traceback() -> None:
    with pytest.raises(ZeroDivisionError) as info:
        Parallel(backend="interpool", n_jobs=2)(delayed(tasks.divide)(1, i) for i in (3, 2, 0, 1))
    assert isinstance(info.value.__cause__, ExecutionFailed)
    assert "divide" in info.value.__cause__.formatted


def stopped_not_waited_for(notes: Queue[str]) -> None:
    """The shared pool's tasks of a ``Parallel`` call that failed end, every one that ran by a
    stop (``tasks.spin_until_stopped`` notes which), none given up after the grace period."""
    assert interpool.joblib._SharedPool.current is not None
    pool = interpool.joblib._SharedPool.current.executor
    wait_until(lambda: pool.stats()["busy"] == 0, "the spinning batches ended")
    outcomes = []
    while not notes.empty():
        outcomes.append(notes.get())
    assert outcomes and set(outcomes) == {"stopped"}, outcomes
    assert pool.stats()["abandoned"] == 0


def test_a_failure_interrupts_the_rest_and_the_pool_stays_usable() -> None:
    notes: Queue[str] = Queue()
    with parallel_config(backend="interpool", n_jobs=2, interrupt_grace=tasks.PATIENCE):
        with pytest.raises(ValueError, match="boom"):
            Parallel(batch_size=1)(
                [delayed(tasks.fail)("boom")] + [delayed(tasks.spin_until_stopped)(notes) for _ in range(4)]
            )
        stopped_not_waited_for(notes)
        assert Parallel()(delayed(tasks.square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_parallel_timeout_stops_running_tasks() -> None:
    notes: Queue[str] = Queue()
    # joblib raises multiprocessing's TimeoutError, whatever the backend.
    with parallel_config(backend="interpool", n_jobs=2, interrupt_grace=tasks.PATIENCE):
        with pytest.raises(multiprocessing.TimeoutError):
            Parallel(timeout=0.5)(delayed(tasks.spin_until_stopped)(notes) for _ in range(2))
        stopped_not_waited_for(notes)


def test_n_jobs_minus_one_uses_every_cpu() -> None:
    backend = interpool.joblib.InterpoolBackend()
    assert backend.effective_n_jobs(-1) == joblib.cpu_count()
    assert backend.effective_n_jobs(-2) == max(joblib.cpu_count() - 1, 1)
    with parallel_config(backend="interpool", n_jobs=-1):
        assert Parallel()(delayed(tasks.square)(i) for i in range(10)) == [i * i for i in range(10)]
    with pytest.raises(ValueError, match="n_jobs == 0"):
        Parallel(backend="interpool", n_jobs=0)(delayed(tasks.square)(1) for _ in range(1))


def test_one_job_runs_sequentially_in_the_caller() -> None:
    assert (
        Parallel(backend="interpool", n_jobs=1)(delayed(tasks.interpreter_id)() for _ in range(3))
        == [tasks.interpreter_id()] * 3
    )


def test_successive_calls_reuse_the_pool_and_its_workers() -> None:
    first = set(Parallel(backend="interpool", n_jobs=2)(delayed(tasks.interpreter_id)() for _ in range(20)))
    pool = interpool.joblib._SharedPool.current
    second = set(Parallel(backend="interpool", n_jobs=2)(delayed(tasks.interpreter_id)() for _ in range(20)))
    assert interpool.joblib._SharedPool.current is pool, "the second call used the first call's pool"
    # Which of the 2 workers ran which batch is up to the scheduler (the first call's batches
    # may all have gone to one of them): no third interpreter was ever started.
    assert len(first | second) <= 2, (first, second)


def test_context_managed_parallel_and_executor_options() -> None:
    with parallel_config(backend="interpool", n_jobs=2, max_tasks_per_worker=1), Parallel(batch_size=1) as parallel:
        a = parallel(delayed(tasks.interpreter_id)() for _ in range(6))
        b = parallel(delayed(tasks.square)(i) for i in range(6))
    assert len(set(a)) == 6, "max_tasks_per_worker=1 gives each batch a fresh interpreter"
    assert b == [i * i for i in range(6)]


def test_unknown_backend_parameter_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="unknown parameters \\['max_nbytez'\\]"):
        with parallel_config(backend="interpool", max_nbytez=3):
            pass


def test_unsendable_argument_fails_with_not_shareable_error() -> None:
    import threading

    from interpool import NotShareableError

    with pytest.raises(NotShareableError, match="lock"):
        Parallel(backend="interpool", n_jobs=2)(delayed(tasks.square)(threading.Lock()) for _ in range(2))


def test_sharedmem_requirement_falls_back_to_threads() -> None:
    with parallel_config(backend="interpool", n_jobs=2):
        where = Parallel(require="sharedmem")(delayed(tasks.interpreter_id)() for _ in range(4))
    assert where == [tasks.interpreter_id()] * 4


def test_works_from_a_script_with_functions_in_main() -> None:
    proc = run_script(
        """
        import interpool.joblib
        from joblib import Parallel, delayed

        def cube(x):
            return x ** 3

        if __name__ == "__main__":
            print(sum(Parallel(backend="interpool", n_jobs=2)(delayed(cube)(i) for i in range(100))))
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(sum(i**3 for i in range(100)))


@pytest.mark.skipif(not interpool._isolate.supported(), reason="isolate= needs CPython 3.13+")
def test_isolate_is_passed_to_the_executor(tmp_path_factory: pytest.TempPathFactory) -> None:
    # ipt_pkg._multi refuses worker interpreters; isolated, each fresh worker (one batch
    # each) loads its own copy, whose C counter starts at 1.
    import sys

    import isolation_tasks
    from isolation_ext.build import build

    path = build(str(tmp_path_factory.mktemp("isolation_ext")))
    sys.path.insert(0, path)
    try:
        with parallel_config(backend="interpool", n_jobs=2, isolate=["ipt_pkg"], max_tasks_per_worker=1):
            counts = Parallel(batch_size=1)(delayed(isolation_tasks.bump)("ipt_pkg._multi") for _ in range(4))
            current = interpool.joblib._SharedPool.current
            assert current is not None and current.executor.stats()["isolated_files"] >= 1
    finally:
        sys.path.remove(path)
        for name in [m for m in sys.modules if m.partition(".")[0] in ("ipt_pkg", "ipt_other")]:
            del sys.modules[name]
    assert counts == [[1]] * 4


@pytest.mark.parametrize(
    "config, small, large",
    [
        ({}, False, True),  # joblib's defaults: arrays over 1 MiB shared read-only, others copied
        ({"max_nbytes": "100K"}, True, True),
        ({"max_nbytes": None}, False, False),
        ({"mmap_mode": "c"}, False, False),
    ],
)
def test_memory_mapping_settings_keep_their_meaning(config: dict[str, object], small: bool, large: bool) -> None:
    """Which buffers a worker gets read-only (lent, like joblib's memory-mapped arrays) and
    which as private copies follows max_nbytes and mmap_mode."""
    blobs = [tasks.Blob(bytearray(512 * 1024)), tasks.Blob(bytearray(2 * 1024 * 1024))]
    with parallel_config(backend="interpool", n_jobs=2, **config):
        facts = Parallel()(delayed(tasks.blob_facts)(b) for b in blobs)
    assert [f["readonly"] for f in facts] == [small, large]


@pytest.mark.parametrize(("config", "expected"), [({"inner_max_num_threads": 3}, 3), ({}, None)])
def test_inner_max_num_threads_sets_the_pools_blas_threads(config: dict[str, object], expected: int | None) -> None:
    """joblib's limit of the threads a job's libraries start is the pool's BLAS limit; without
    it the pool uses its default ("auto")."""
    with parallel_config(backend="interpool", n_jobs=2, **config):
        assert Parallel()(delayed(tasks.square)(i) for i in range(4)) == [0, 1, 4, 9]
        pool = interpool.joblib._SharedPool.current
    assert pool is not None
    options = dict(pool.key[1])
    assert options.get("blas_threads") == (None if expected is None else repr(expected))


@pytest.mark.parametrize("mode", ["r+", "w+"])
def test_writable_memory_mapping_is_refused_with_the_way_out(mode: str) -> None:
    with pytest.raises(ValueError, match="SharedBuffer"):
        with parallel_config(backend="interpool", n_jobs=2, mmap_mode=mode):
            Parallel()(delayed(tasks.square)(i) for i in range(2))


@pytest.mark.timeout(300)
@pytest.mark.skipif(not interpool._isolate.supported(), reason="isolate= needs CPython 3.13+")
def test_sklearn_grid_search_fits_in_worker_interpreters_as_on_loky() -> None:
    # scikit-learn imports joblib, which imports faulthandler (through loky): workers get a
    # stand-in for it; sklearn's, numpy's and scipy's extension modules load from private copies.
    import warnings

    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV

    X, y = load_digits(return_X_y=True)

    def search(backend: str, **options: Any) -> Any:
        grid = GridSearchCV(RandomForestClassifier(random_state=0), {"n_estimators": [3, 6], "max_depth": [4, 8]}, cv=3)
        with parallel_config(backend=backend, n_jobs=2, **options):
            return grid.fit(X, y)

    from joblib.externals.loky import get_reusable_executor

    expected = search("loky")
    get_reusable_executor().shutdown(wait=True)  # (its threads would count as leaked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = search("interpool", isolate=["sklearn", "numpy", "scipy"])
        current = interpool.joblib._SharedPool.current
        assert current is not None
        stats = current.executor.stats()
    assert not [w for w in caught if issubclass(w.category, interpool.FallbackWarning)]
    assert stats["completed"] >= 12 and stats.get("lane_submitted", 0) == 0, stats  # 4 candidates x 3 folds
    assert got.best_params_ == expected.best_params_
    assert list(got.cv_results_["mean_test_score"]) == list(expected.cv_results_["mean_test_score"])
