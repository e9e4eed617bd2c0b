"""BLAS threads (issue 26, item 4): the BLAS library that isolated numpy shares has one thread
pool for the whole process; a pool limits it once a worker loads it, and gives the count back
when it shuts down (docs/design.md, "BLAS threads"). Each case runs in a fresh process, so
that the limit of one case cannot leak into another; the limits are the library's own count
plus 1 or 2 (OpenBLAS takes counts above the cores), so that every change is visible on any
machine."""

from __future__ import annotations

import importlib.util

import pytest

from interpool import InterpreterPoolExecutor, _isolate

from conftest import run_script

needs_numpy = pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed")
needs_isolation = pytest.mark.skipif(not _isolate.supported(), reason="isolate= needs CPython 3.13+")

PRELUDE = """
import os
from interpool import InterpreterPoolExecutor, _interpool
import blas_tasks

def main_threads():
    counts = {threads for _path, family, threads in _interpool._blas_libraries() if family == "openblas"}
    assert len(counts) == 1, _interpool._blas_libraries()
    return counts.pop()

def worker_threads(pool):
    return sorted(set(pool.map(blas_tasks.blas_threads, range(4))))

B = blas_tasks.blas_threads()  # loads numpy's library in this (the main) interpreter
"""


def run(body: str, env: dict[str, str] | None = None) -> list[str]:
    proc = run_script(PRELUDE + body, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "all", "1"])
def test_bad_blas_threads_value(bad: object) -> None:
    with pytest.raises(TypeError, match=r'blas_threads must be "auto", None or a number of threads \(>= 1\)'):
        InterpreterPoolExecutor(1, blas_threads=bad)  # type: ignore[arg-type]


@needs_numpy
@needs_isolation
def test_workers_get_the_limit_and_the_library_gets_its_count_back() -> None:
    out = run(
        """
        print(B)
        with InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=B + 2) as pool:
            print(main_threads() - B, worker_threads(pool) == [B + 2], main_threads() - B)
        print(main_threads() - B)
        r = blas_tasks.matmuls(64, 2, 0)
        with InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=B + 1) as pool:
            assert pool.submit(blas_tasks.matmuls, 64, 2, 0).result() == r
        """.replace("\n        ", "\n")
    )
    # Nothing changes before a worker loads the library; while the pool lives, the workers
    # and the main interpreter (one library) see the limit; after shutdown, the count is back.
    assert out[1:] == ["0", "True", "2", "0"], out


@needs_numpy
@needs_isolation
def test_none_leaves_the_library_alone_and_auto_divides_the_cores() -> None:
    out = run(
        """
        with InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=None) as pool:
            print(worker_threads(pool) == [B])
        cores = getattr(os, "process_cpu_count", os.cpu_count)()
        with InterpreterPoolExecutor(2, isolate=["numpy"]) as pool:
            print(worker_threads(pool) == [max(1, cores // 2)])
        print(main_threads() == B)
        """.replace("\n        ", "\n")
    )
    assert out == ["True", "True", "True"]


@needs_numpy
@needs_isolation
def test_the_smallest_limit_of_the_pools_alive_applies() -> None:
    out = run(
        """
        a = InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=B + 2)
        print(worker_threads(a)[0] - B)
        b = InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=B + 1)
        print(worker_threads(b)[0] - B, main_threads() - B)
        b.shutdown()
        print(main_threads() - B)
        a.shutdown()
        print(main_threads() - B)
        """.replace("\n        ", "\n")
    )
    assert out == ["2", "1", "1", "2", "0"]


@needs_numpy
@needs_isolation
def test_a_pool_whose_workers_never_load_blas_changes_nothing() -> None:
    out = run(
        """
        with InterpreterPoolExecutor(2, isolate=["numpy"], blas_threads=B + 1) as pool:
            assert pool.submit(sum, [1, 2]).result() == 3
            print(main_threads() - B)
        """.replace("\n        ", "\n")
    )
    assert out == ["0"]


@needs_numpy
@pytest.mark.parametrize(("preset", "expected"), [(None, "1:1"), ("3", "3:1")])
def test_processes_of_the_lane_get_the_limit_in_their_environment(preset: str | None, expected: str) -> None:
    # A variable the user set is kept; the others get the pool's limit.
    out = run(
        f"""
        import lane_numpy
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ.pop(name, None)
        if {preset!r}:
            os.environ["OPENBLAS_NUM_THREADS"] = {preset!r}
        with InterpreterPoolExecutor(1, isolate=None, blas_threads=1) as pool:
            print(pool.submit(lane_numpy.blas_environment).result())
        """.replace("\n        ", "\n"),
        env={"PYTHONWARNINGS": "ignore"},  # the FallbackWarning
    )
    assert out[-1] == expected
