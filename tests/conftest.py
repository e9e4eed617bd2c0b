from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

import interpool

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Like CPython's concurrent.futures tests: a test must not leave threads behind."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked by the test: {still}"


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra or {})
    return env


def run_script(source: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``source`` with ``python -c`` in a fresh process, the tests directory importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(env),
    )


def run_file(path: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the script at ``path`` as ``__main__`` in a fresh process."""
    return subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=timeout, env=_child_env(env))


def run_in_bare_interpreter(script: str) -> None:
    """Create an own-GIL interpreter with CPython's own module (no interpool), run ``script``
    in it and destroy it: 3.12 has ``_xxsubinterpreters``, 3.13+ ``_interpreters``."""
    try:
        import _interpreters  # type: ignore[import-not-found]
    except ImportError:
        import _xxsubinterpreters as legacy  # type: ignore[import-not-found]

        interp = legacy.create(isolated=True)
        try:
            legacy.run_string(interp, script)
        finally:
            legacy.destroy(interp)
        return
    interp = _interpreters.create()
    try:
        failure = _interpreters.exec(interp, script)
        assert failure is None, failure
    finally:
        _interpreters.destroy(interp)


KINDS = ["interpool", "stdlib", "process"]


def make_executor(kind: str, *args: object, **kwargs: object) -> cf.Executor:
    """An executor of the given kind; the same behaviour tests run against all of them."""
    if kind == "interpool":
        return interpool.InterpreterPoolExecutor(*args, **kwargs)  # type: ignore[arg-type]
    if kind == "stdlib":
        std = getattr(cf, "InterpreterPoolExecutor", None)
        if std is None:
            pytest.skip("the stdlib InterpreterPoolExecutor is new in 3.14")
        return std(*args, **kwargs)  # type: ignore[no-any-return]
    if kind == "process":
        kwargs.setdefault("mp_context", multiprocessing.get_context("forkserver"))
        return cf.ProcessPoolExecutor(*args, **kwargs)  # type: ignore[arg-type]
    raise AssertionError(kind)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Parametrize a test over interpool, the stdlib interpreter pool and a process pool."""
    return str(request.param)


@pytest.fixture(params=["interpool", "stdlib"])
def interp_kind(request: pytest.FixtureRequest) -> str:
    """Parametrize over the two interpreter pools only."""
    return str(request.param)


def stdlib_gap(kind: str, why: str) -> None:
    """Mark a shared test as not applicable to the stdlib pool, saying why (its gaps are
    what interpool fixes)."""
    if kind == "stdlib":
        if not hasattr(cf, "InterpreterPoolExecutor"):
            pytest.skip("the stdlib InterpreterPoolExecutor is new in 3.14")
        pytest.xfail(f"stdlib InterpreterPoolExecutor: {why}")
