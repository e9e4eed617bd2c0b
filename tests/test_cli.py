"""python -m interpool: check, info, bench."""

from __future__ import annotations

import subprocess
import sys

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interpool", *args], capture_output=True, text=True, timeout=120)


def test_check_reports_each_module() -> None:
    proc = cli("check", "json", "decimal", "no_such_module_xyz")
    assert proc.returncode == 1
    assert "ok    json" in proc.stdout and "ok    decimal" in proc.stdout
    assert "FAIL  no_such_module_xyz: ModuleNotFoundError" in proc.stdout


def test_check_explains_extensions_that_cannot_load() -> None:
    pytest.importorskip("_testsinglephase")
    proc = cli("check", "_testsinglephase")
    assert proc.returncode == 1
    assert "does not support loading in subinterpreters" in proc.stdout
    assert "ProcessPoolExecutor" in proc.stdout


def test_info() -> None:
    proc = cli("info")
    assert proc.returncode == 0, proc.stderr
    assert "interpool 0.1.0" in proc.stdout and "self-test: a worker interpreter" in proc.stdout
    assert ("GIL disabled" in proc.stdout) == (not getattr(sys, "_is_gil_enabled", lambda: True)())


def test_bench_checks_results_and_prints_a_table() -> None:
    proc = cli("bench", "--seconds", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert "interpool" in proc.stdout and "sequential" in proc.stdout


def test_usage_errors() -> None:
    assert cli().returncode == 2
    assert cli("check").returncode == 2
