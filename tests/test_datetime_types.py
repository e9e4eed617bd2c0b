"""CPython 3.13's ``_datetime`` static types and the interpreters' heaps.

On 3.13 the first interpreter to import ``_datetime`` allocates its types' ``tp_bases`` and
``tp_mro`` tuples from its own heap, and the interpreter that finalizes the types last frees
them with its own allocator (CPython gh-136423). When a worker imported datetime first and
another interpreter ended last (a second worker, or the main interpreter at exit), that
corrupted the heap: an abort or a segfault at shutdown, after every result came back right.
The main interpreter now imports ``_datetime`` before any worker exists
(``_setup._own_datetime_types``). Each case runs in a fresh process, whose main interpreter
has not imported datetime (pytest's has).
"""

from __future__ import annotations

import os
import sys

import pytest

from conftest import run_script

RUNS = int(os.environ.get("INTERPOOL_EXIT_RUNS", "20")) // 4 or 1


def check(script: str, expected: str, runs: int = 1) -> None:
    for i in range(runs):
        proc = run_script(script)
        assert proc.returncode == 0, f"run {i}: exit status {proc.returncode}\n{proc.stderr}"
        assert proc.stdout.split() == expected.split(), f"run {i}: {proc.stdout!r} {proc.stderr!r}"
        assert "Fatal" not in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_worker_imports_datetime_before_the_main_interpreter() -> None:
    # ... while the worker lives (so the worker ends first). Before: the main interpreter
    # freed the worker's tuples at exit, every run.
    check(
        """
        import sys, tasks
        from interpool import InterpreterPoolExecutor
        print("datetime" in sys.modules)
        with InterpreterPoolExecutor(1) as pool:
            print(pool.submit(tasks.import_after, "datetime", 0).result(timeout=60))
            import datetime
            print(datetime.date(2026, 1, 2))
        """,
        "False datetime 2026-01-02",
    )


@pytest.mark.timeout(300)
def test_two_workers_import_datetime() -> None:
    # Before: whenever the worker that imported it first ended first (8 of 10 runs).
    check(
        """
        import sys, tasks
        from interpool import InterpreterPoolExecutor
        print("datetime" in sys.modules)
        with InterpreterPoolExecutor(2) as pool:
            print(*pool.map(tasks.import_after, ["datetime"] * 4, [0.1] * 4))
        """,
        "False" + " datetime" * 4,
        runs=RUNS,
    )


@pytest.mark.timeout(300)
@pytest.mark.skipif(sys.version_info < (3, 13), reason="isolate= needs CPython 3.13+")
def test_isolated_orjson_in_two_workers() -> None:
    # orjson's init imports datetime (its C API) in each worker's private copy.
    pytest.importorskip("orjson")
    check(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(2, isolate=["orjson"]) as pool:
            print(*pool.map(tasks.import_after, ["orjson"] * 4, [0.1] * 4))
        """,
        " orjson" * 4,
        runs=RUNS,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fallback", ["thread", "process"])
def test_call_moved_to_the_lane_by_a_third_party_refusal(fallback: str) -> None:
    # The worker's refusal message names regex's distribution (importlib.metadata imports
    # datetime through email.utils), then the main interpreter does the same for the
    # FallbackWarning; the worker ends first. Before: every run.
    pytest.importorskip("regex")
    check(
        f"""
        import warnings
        warnings.simplefilter("ignore")
        import lane_regex
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1, fallback={fallback!r}, isolate=None) as pool:
            print(pool.submit(lane_regex.letters, "abc").result(timeout=60), pool.stats()["lane_submitted"])
        """,
        "True 1",
    )
