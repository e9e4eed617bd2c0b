from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import interpool

from tasks import PATIENCE

HERE = os.path.dirname(os.path.abspath(__file__))

# A test run started with SIGINT ignored (a background job of a shell without job control:
# `make test &` in a script) passes the ignore on to every process the tests start, and
# CPython keeps an inherited ignore: the Ctrl-C tests' children would never see their Ctrl-C
# (they hung until pytest-timeout ended the run). A handler installed here is not inherited
# across exec, so the children start with the default disposition, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Test tiers (docs/testing.md; the Makefile's test-python). The full suite runs on one Python
# of the matrix, FULL_PYTHON (the debug-mode run); the others run the fast tier
# (INTERPOOL_TEST_TIER=fast): without the tests marked `one_python`, whose behaviour does not
# depend on the Python (the stdlib-reference executors, integrations over the public API, the
# executor's pure-Python mechanics), and with repeated tests repeated fewer times (rounds()).
FAST_TIER = os.environ.get("INTERPOOL_TEST_TIER", "full") == "fast"
REFERENCE_KINDS = ("stdlib", "process")


def rounds(full: int, fast: int) -> int:
    """How many times a repeated test repeats: ``fast`` in the fast tier."""
    return fast if FAST_TIER else full


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and any(params.params.get(name) in REFERENCE_KINDS for name in ("kind", "interp_kind")):
            item.add_marker(pytest.mark.one_python)  # the reference executors, not interpool
        (dropped if FAST_TIER and item.get_closest_marker("one_python") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Like CPython's concurrent.futures tests: a test must not leave threads behind."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(PATIENCE)
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


def wait_until(condition: Callable[[], object], what: str, patience: float = PATIENCE) -> None:
    """Poll ``condition`` until it holds; fail, naming ``what``, if it still does not after
    ``patience`` seconds (the suite's one bound, tasks.PATIENCE: it only ends hangs)."""
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not the case after {patience:g}s")
        time.sleep(0.01)


class Fifo:
    """A FIFO that a call in any kind of pool can wait at: ``pool.submit(*fifo.wait)`` calls
    ``os.open(path, O_RDONLY)`` (a builtin, which every pool can send), which returns (a file
    descriptor, in the worker's process) only once the test opened the FIFO for writing."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "fifo")
        os.mkfifo(self.path)
        self.wait = (os.open, self.path, os.O_RDONLY)

    def reached(self) -> bool:
        """Whether a call waits at the FIFO; if one does, it goes on."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no call waits yet
            return False
        return True

    def release(self) -> None:
        """Let the call that waits (or is about to wait) at the FIFO go on."""
        wait_until(self.reached, "a call waits at the FIFO")


def ctrl_c(
    source: str, presses: int = 1, *, ready: str = "busy", settle: float = 0.3, gap: float = 0.1
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh process (the tests directory importable), wait until it prints
    the line ``ready``, let its workers settle into their tasks, then press Ctrl-C (SIGINT)
    ``presses`` times, ``gap`` seconds apart; how the process ended (stdout without ``ready``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(None),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != ready:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the script printed {line!r}, not {ready!r}: {out}{err}")
        time.sleep(settle)
        for press in range(presses):
            if press:
                time.sleep(gap)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.returncode is None:  # it hangs: the caller's assertion says so
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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
