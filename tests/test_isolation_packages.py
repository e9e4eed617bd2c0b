"""isolate= with real packages: a real operation in 2 concurrent workers, equal to the main
interpreter's result (issue 12, "Evidence the feature must produce").

Every package here refuses worker interpreters without isolation (or, for pyyaml and
rapidfuzz, silently loses its C/C++ implementation). Each test holds both workers of a
2-worker pool at a rendezvous before the operation runs (so the two tasks run on two
distinct interpreters, at the same time), then compares each worker's result with the same
function called in the main interpreter. A test skips when its package is not installed for
this Python (requirements-isolation.txt; scripts/setup.sh installs what has a wheel).

The main interpreter's result is computed in a fresh process (its main interpreter): this
test process does not import a dozen packages, some of which (lxml) would enable the GIL of
a free-threaded build for the tests that run after these.

numpy's own test suite in workers is scripts/isolation-evidence.py (minutes, not a unit test).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from typing import Any

import isolation_package_tasks as tasks
import pytest

from interpool import (
    InterpreterPoolExecutor,
    Queue,
    SharedBuffer,
    _isolate,
)

from conftest import PATIENCE, _child_env, run_script

pytestmark = pytest.mark.skipif(not _isolate.supported(), reason="isolate= needs CPython 3.13+ (docs/isolation.md)")

WORKERS = 2
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
# On the free-threaded build, CPython refuses _imp._override_multi_interp_extensions_check,
# which isolate= lifts (on other builds) while a copy's code runs, so a module that the copy's
# code creates from a definition of its own without declaring own-GIL support (PyO3 nested
# submodules: cryptography's "asn1", pydantic_core's "_schema_gather") is refused.
PYO3_SUBMODULES_REFUSED = (
    "3.14t: the package's PyO3 extension creates submodules from definitions that do not declare "
    "own-GIL support, and the free-threaded build refuses the switch that lets isolate= accept them"
)


# CPython 3.12 workers get the pure-Python datetime: the C module crashes in a second
# interpreter (gh-117953), so they have no datetime C API (datetime.datetime_CAPI).
PY312 = sys.version_info[:2] == (3, 12)
NO_DATETIME_CAPI = (
    "CPython 3.12: workers have no datetime C API (gh-117953), which {} uses: numpy, pandas, scipy and "
    "pydantic-core fail to load with an ImportError, orjson and msgspec crash the process"
)
USES_DATETIME_CAPI = {"numpy", "pandas", "scipy", "pydantic", "orjson", "msgspec"}


def need(module: str) -> None:
    """Skip unless ``module`` is installed for this Python (without importing it here) and
    can work in a worker of this Python."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed for this Python (requirements-isolation.txt)")
    if PY312 and module in USES_DATETIME_CAPI:
        pytest.skip(NO_DATETIME_CAPI.format(module))


def has_extension(package: str, name: str) -> bool:
    """Whether ``package`` (installed) has the extension module ``name`` (not imported here)."""
    spec = importlib.util.find_spec(package)
    where = (spec.submodule_search_locations or []) if spec is not None else []
    return any(f.startswith(name + ".") and f.endswith(".so") for d in where for f in os.listdir(d))


def in_main_interpreter(op: Callable[..., Any], *args: Any) -> Any:
    """``op(*args)`` run in the main interpreter of a fresh process."""
    code = (
        f"import pickle, sys, {tasks.__name__} as t; "
        f"sys.stdout.buffer.write(pickle.dumps(t.{op.__name__}(*pickle.load(sys.stdin.buffer))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(args), capture_output=True, timeout=120, env=_child_env(None)
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return pickle.loads(proc.stdout)


def run_together(
    isolate: list[str] | str | None, op: Callable[..., Any], *args: Any, each: list[tuple[Any, ...]] | None = None
) -> list[Any]:
    """Run ``op(*args)`` (or ``op(*args, *each[i])`` on worker i) once on each of 2 workers,
    at the same time; their results."""
    arrive: Queue[int] = Queue()
    go: Queue[None] = Queue()
    with InterpreterPoolExecutor(WORKERS, isolate=isolate) as pool:
        extra = each or [()] * WORKERS
        futures = [pool.submit(tasks.together, arrive, go, op, *args, *extra[i]) for i in range(WORKERS)]
        arrived: list[int] = []
        deadline = time.monotonic() + 3 * PATIENCE  # big packages, imported twice at once
        while len(arrived) < WORKERS:
            for f in futures:
                if f.done() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
            assert time.monotonic() < deadline, f"only {len(arrived)} of {WORKERS} tasks reached the rendezvous"
            try:
                arrived.append(arrive.get(timeout=0.2))
            except Exception:  # QueueEmpty
                continue
        for _ in range(WORKERS):
            go.put(None)
        results = [f.result(timeout=90) for f in futures]
    ids = [interp for interp, _ in results]
    assert len(set(ids)) == WORKERS and sorted(ids) == sorted(arrived), (ids, arrived)
    return [result for _, result in results]


def check_same_as_main(isolate: list[str], op: Callable[[], Any]) -> Any:
    expected = in_main_interpreter(op)
    for result in run_together(isolate, op):
        assert result == expected
    return expected


def test_pandas_groupby() -> None:
    need("pandas")
    # pandas imports numpy: a worker needs a private copy of both
    result = check_same_as_main(["pandas", "numpy"], tasks.op_pandas)
    assert set(result["grouped"]) == {"Lima", "Oslo", "Pune"}


def test_pyarrow_numpy_bridge() -> None:
    need("pyarrow")
    # pyarrow's numpy bridge is libarrow_python.so, a bundled library that links against
    # Python: each worker needs a copy of its own (before, the second worker's
    # pa.array(ndarray) failed with ArrowTypeError: the library held the first one's numpy)
    result = check_same_as_main(["pyarrow", "numpy"], tasks.op_pyarrow)
    assert result["sum"] == 198 and result["filtered"] == 5


def test_pandas_with_pyarrow() -> None:
    need("pandas")
    need("pyarrow")
    # pyarrow-backed columns and DataFrame <-> Arrow table, in 2 workers at once
    result = check_same_as_main(["pandas", "numpy", "pyarrow"], tasks.op_pandas_pyarrow)
    assert result["dtypes"][1:] == ["double[pyarrow]", "int64[pyarrow]"]
    assert result["numeric"] == {"x": [1.5, 2.5, None], "n": [1, 2, 3]}


def test_arrows_threads_call_back_into_their_worker() -> None:
    """Arrow's thread pool calls back into Python with PyGILState_Ensure, which attaches a
    thread to the *main* interpreter: the copies' calls go to their worker's instead
    (src/gilstate.rs). Before, `Table.to_pandas()` in a worker aborted the process (`free():
    invalid pointer`: arrays made in the main interpreter's heap, freed by the worker's). Here
    with the main interpreter converting at the same time on the same (shared) Arrow pool,
    and with workers recycled after each task (their slots given back and reused); a crash
    is the child's exit status."""
    need("pandas")
    need("pyarrow")
    proc = run_script(
        """
        import threading
        import isolation_package_tasks as tasks
        from interpool import InterpreterPoolExecutor

        expected = tasks.arrow_to_pandas_on_arrows_threads(20_000)
        stop = threading.Event()

        def main_converts():
            while not stop.is_set():
                assert tasks.arrow_to_pandas_on_arrows_threads(20_000) == expected

        beside = threading.Thread(target=main_converts)
        beside.start()
        try:
            for recycle in (None, 1):
                with InterpreterPoolExecutor(
                    2, isolate=["pyarrow", "numpy", "pandas"], max_tasks_per_worker=recycle
                ) as pool:
                    out = list(pool.map(tasks.arrow_to_pandas_on_arrows_threads, [20_000] * 8))
                assert out == [expected] * 8, out
        finally:
            stop.set()
            beside.join()
        print("converted")
        """,
        timeout=300,
        env={"PYTHONMALLOC": "debug", "INTERPOOL_DEBUG": "1"},
    )
    assert proc.returncode == 0 and "converted" in proc.stdout, (proc.returncode, proc.stderr[-3000:])


def test_scipy_minimize() -> None:
    need("scipy")
    result = check_same_as_main(["scipy", "numpy"], tasks.op_scipy)
    assert result["success"] and result["x"] == pytest.approx([1.0] * 5, abs=1e-4)


def refused_on_free_threaded(isolate: list[str], op: Callable[[], Any], package: str) -> None:
    with pytest.raises(ImportError) as info:
        run_together(isolate, op)
    # the error names the package and its file, not the submodule the policy refused
    assert f"package {package!r}" in str(info.value) and "failed to load from its private copy" in str(info.value)
    pytest.xfail(PYO3_SUBMODULES_REFUSED)


def test_pydantic_validation() -> None:
    need("pydantic")
    if FREE_THREADED:
        refused_on_free_threaded(["pydantic", "pydantic_core"], tasks.op_pydantic, "pydantic_core")
    # pydantic's validation is pydantic_core, a PyO3 extension in a package of its own
    result = check_same_as_main(["pydantic", "pydantic_core"], tasks.op_pydantic)
    assert result["dump"]["id"] == 17 and result["errors"]


def test_orjson() -> None:
    need("orjson")
    check_same_as_main(["orjson"], tasks.op_orjson)


def test_msgspec() -> None:
    need("msgspec")
    result = check_same_as_main(["msgspec"], tasks.op_msgspec)
    assert result["roundtrip"]


def test_regex() -> None:
    need("regex")
    result = check_same_as_main(["regex"], tasks.op_regex)
    assert len(result["fuzzy"]) == 4


def test_lxml() -> None:
    need("lxml")
    result = check_same_as_main(["lxml"], tasks.op_lxml)
    assert result["old"] == ["The Fellowship", "The Hobbit"]


def test_cryptography_hash() -> None:
    need("cryptography")
    if FREE_THREADED:
        refused_on_free_threaded(["cryptography"], tasks.op_cryptography, "cryptography")
    import hashlib

    result = check_same_as_main(["cryptography"], tasks.op_cryptography)
    data = b"interpool isolates cryptography's Rust extension" * 1000
    assert result["digests"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_pyyaml_c_loader() -> None:
    need("yaml")
    if not has_extension("yaml", "_yaml"):
        pytest.skip("this PyYAML was built without libyaml: it has no CSafeLoader")
    result = check_same_as_main(["yaml"], tasks.op_yaml)
    assert result["with_libyaml"] and result["c_parser"]  # the C loader ran, in the workers too
    assert result["data"]["anchors"]["job"] == {"retries": 3, "backoff": 0.5, "name": "nightly"}


def test_rapidfuzz_cpp_scorer() -> None:
    need("rapidfuzz")
    result = check_same_as_main(["rapidfuzz"], tasks.op_rapidfuzz)
    # the C++ implementation, not the pure-Python fallback (rapidfuzz.fuzz_py)
    assert result["fuzz_impl"].startswith("rapidfuzz.fuzz_cpp"), result["fuzz_impl"]
    assert result["process_impl"].startswith("rapidfuzz.process_cpp"), result["process_impl"]
    assert not result["distance_impl"].endswith("_py"), result["distance_impl"]


def test_black_mypyc_compiled() -> None:
    need("black")
    init = importlib.util.find_spec("black")
    if init is None or not (init.origin or "").endswith(".so"):
        pytest.skip("this black is the pure-Python wheel (no mypyc build for this Python)")
    result = check_same_as_main(["black"], tasks.op_black)
    assert result["compiled"] and result["file"] == "so" and result["linegen_file"] == "so"
    assert "def f(a, b=1, *args, **kwargs):" in result["formatted"]


def test_auto_isolates_every_package_at_once() -> None:
    # isolate="auto": every extension module outside the stdlib, nested ones included
    # (pandas -> numpy, pyarrow -> its private libarrow_python, pydantic -> pydantic_core,
    # scipy's modules caching numpy's C API)
    packages = ["pandas", "pyarrow", "scipy", "pydantic", "orjson", "msgspec", "regex", "lxml", "cryptography", "yaml"]
    names = [p for p in [*packages, "rapidfuzz", "black"] if importlib.util.find_spec(p) is not None]  # op_<p>
    if FREE_THREADED:
        names = [n for n in names if n not in ("pydantic", "cryptography")]  # PYO3_SUBMODULES_REFUSED
    if PY312:
        names = [n for n in names if n not in USES_DATETIME_CAPI]
    if "yaml" in names and not has_extension("yaml", "_yaml"):
        names.remove("yaml")
    if len(names) < 2:
        pytest.skip("fewer than 2 of the packages are installed for this Python")
    expected = in_main_interpreter(tasks.op_several, names)
    for result in run_together("auto", tasks.op_several, names):
        assert result == expected


def test_numpy_arrays_to_and_from_workers() -> None:
    need("numpy")
    import numpy as np

    a = np.arange(64.0).reshape(8, 8) % 7 - 3
    b = np.linspace(-1, 1, 8 * 5).reshape(8, 5)
    expected = tasks.np_compute(a, b)
    for result in run_together(["numpy"], tasks.np_compute, a, b):
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            if key == "type":
                assert result[key] == value == "numpy"
            else:
                # arrives as an array of the main interpreter's numpy
                assert type(result[key]) is np.ndarray and result[key].dtype == value.dtype
                np.testing.assert_array_equal(result[key], value)


def test_numpy_shared_buffer_filled_in_slices() -> None:
    need("numpy")
    import numpy as np

    rows, cols, nparts = 800, 300, 8
    buf = SharedBuffer(rows * cols * 8)
    array = np.frombuffer(memoryview(buf), dtype=np.float64).reshape(rows, cols)  # zero-copy, in main
    assert not array.any()
    # each of the 2 workers, at the same time, fills every other block of rows of one array
    each = [(list(range(w, nparts, WORKERS)), nparts) for w in range(WORKERS)]
    done = run_together(["numpy"], tasks.np_fill, buf, rows, cols, each=each)
    assert sorted(part for parts in done for part in parts) == list(range(nparts))
    np.testing.assert_array_equal(array, tasks.expected_block(0, rows, cols))


# The isolation set (requirements-isolation.txt) as modules, each with this file's operation.
CHECKED = ["numpy", "pandas", "pyarrow", "scipy", "pydantic", "orjson", "msgspec", "regex", "lxml"]
CHECKED += ["cryptography", "yaml", "rapidfuzz", "black", "cytoolz"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("module", CHECKED)
def test_check_agrees_with_a_real_call(module: str) -> None:
    # `python -m interpool check MODULE` says where MODULE works, with which isolate=; a real
    # call in 2 concurrent workers must agree: work (equal to the main interpreter's result)
    # where check says ok/ISOLATED, and fail in a worker where it says LANE or FAIL.
    need(module)
    # in a process of its own, as users run it: check's first try, a plain worker, makes 3.13
    # run a single-phase init in the main interpreter, which may print an unraisable error
    proc = subprocess.run(
        [sys.executable, "-m", "interpool", "check", "--json", module],
        capture_output=True,
        text=True,
        timeout=240,
        env=_child_env(None),
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)["modules"][0]
    op = getattr(tasks, f"op_{module}")
    if module == "pandas" and importlib.util.find_spec("pyarrow") is not None:
        op = tasks.op_pandas_pyarrow  # the common install: pandas uses pyarrow
    if report["status"] in ("worker", "isolated"):
        assert report["operation"], report  # check ran its own real call too
        expected = in_main_interpreter(op)
        for result in run_together(report["isolate"], op):
            assert result == expected
    else:
        with InterpreterPoolExecutor(1, isolate=report["isolate"], fallback=None) as pool:
            with pytest.raises(ImportError):
                pool.submit(op).result(timeout=120)
