"""python -m interpool: check, info, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import interpool

HERE = os.path.dirname(os.path.abspath(__file__))
# A module built into the interpreter that refuses own-GIL interpreters (no file to copy, so
# isolation cannot help it): _suggestions on 3.13+; 3.12 has none left once workers get a
# stand-in for faulthandler, and there readline (a file, but isolate= needs 3.13) serves.
REFUSED_BUILTIN = "_suggestions" if sys.version_info >= (3, 13) else "readline"


def cli(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "interpool", *args], capture_output=True, text=True, timeout=120, env=env
    )


def check_json(*modules: str, path: str | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = cli("check", "--json", *modules, path=path)
    assert proc.stderr == "" or "Traceback" not in proc.stderr, proc.stderr
    document = json.loads(proc.stdout)
    return proc.returncode, {report["module"]: report for report in document["modules"]}


def in_worker(fn: Any, *args: Any) -> Any:
    """In a plain worker (check's first verdict is about those; the default isolates)."""
    with interpool.InterpreterPoolExecutor(1, fallback=None, isolate=None) as pool:
        return pool.submit(fn, *args).result(timeout=60)


@pytest.mark.timeout(120)
def test_check_reports_each_module() -> None:
    proc = cli("check", "json", "decimal", "no_such_module_xyz")
    assert proc.returncode == 1
    assert "ok        json: works in a worker" in proc.stdout
    assert "ok        decimal: works in a worker" in proc.stdout
    assert "FAIL      no_such_module_xyz: fails: ModuleNotFoundError" in proc.stdout


@pytest.mark.timeout(120)
def test_check_says_which_modules_work_only_in_the_lane_and_why() -> None:
    # _suggestions is built into the interpreter (no file to copy): isolation cannot help it
    proc = cli("check", REFUSED_BUILTIN)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # usable: through the lane
    for name in (REFUSED_BUILTIN,):
        assert f"LANE      {name}: works only in the fallback lane" in proc.stdout
        assert f"extension module {name!r} (standard library)" in proc.stdout
        assert f"module {name} does not support loading in subinterpreters" in proc.stdout
        assert f"fix: use {name} in the main interpreter only" in proc.stdout


@pytest.mark.timeout(120)
def test_check_says_which_modules_work_only_isolated() -> None:
    # readline is a single-phase module in lib-dynload: a private copy loads in a worker
    from interpool import _check

    if not _check.isolation_supported():
        pytest.skip("isolate= needs CPython 3.13+")
    proc = cli("check", "readline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ISOLATED  readline: works only isolated: InterpreterPoolExecutor(isolate=['readline'])" in proc.stdout


@pytest.mark.timeout(120)
def test_check_explains_extensions_that_cannot_load() -> None:
    pytest.importorskip("_testsinglephase")
    # single-phase, in lib-dynload: refused in a plain worker, loads from a private copy
    from interpool import _check

    code, reports = check_json("_testsinglephase")
    assert code == 0
    report = reports["_testsinglephase"]
    if _check.isolation_supported():
        assert report["status"] == "isolated" and report["isolate"] == ["_testsinglephase"]
    else:
        assert report["status"] == "lane"
    assert "does not support loading in subinterpreters" in report["refused"][0]["message"]


@pytest.mark.one_python
@pytest.mark.timeout(120)
def test_check_json_and_exit_status() -> None:
    code, reports = check_json("json", REFUSED_BUILTIN, "no_such_module_xyz")
    assert code == 1
    assert reports["json"]["status"] == "worker" and not reports["json"]["degraded"]
    assert reports[REFUSED_BUILTIN]["status"] == "lane"
    assert reports[REFUSED_BUILTIN]["refused"][0]["module"] == REFUSED_BUILTIN
    assert reports["no_such_module_xyz"]["status"] == "fails"
    assert "ModuleNotFoundError" in reports["no_such_module_xyz"]["error"]
    assert check_json("json", REFUSED_BUILTIN)[0] == 0


@pytest.mark.timeout(120)
def test_check_strict_fails_anything_not_fully_usable_in_a_worker() -> None:
    assert cli("check", "--strict", "json").returncode == 0
    assert cli("check", "--strict", "json", REFUSED_BUILTIN).returncode == 1


@pytest.mark.timeout(120)
def test_check_fails_an_import_that_swallows_a_refusal_and_warns(tmp_path: Any) -> None:
    """Like polars: the package catches the refusal of its binary and only warns; its calls
    then fail at first use, and nothing moves them to the lane (no import failed)."""
    (tmp_path / "swallows_and_warns.py").write_text(
        textwrap.dedent(
            f"""
            import warnings
            try:
                import {REFUSED_BUILTIN}
            except ImportError:
                warnings.warn("binary is missing!", UserWarning)
            """
        )
    )
    (tmp_path / "swallows_quietly.py").write_text(
        f"try:\n    import {REFUSED_BUILTIN}\nexcept ImportError:\n    pass\n"
    )
    proc = cli("check", "swallows_and_warns", path=str(tmp_path))
    assert proc.returncode == 1
    assert (
        "FAIL      swallows_and_warns: fails in a worker: it imports, but without its extension module" in proc.stdout
    )
    assert REFUSED_BUILTIN in proc.stdout and "expect calls to fail at first use" in proc.stdout
    assert "(it imports fully in a separate process)" in proc.stdout
    assert "warning: UserWarning: binary is missing!" in proc.stdout
    # Without a warning it is a lost accelerator: it works, slower.
    proc = cli("check", "swallows_quietly", path=str(tmp_path))
    assert proc.returncode == 0
    assert "DEGRADED  swallows_quietly: works in a worker: it imports, but without its accelerator" in proc.stdout
    assert cli("check", "--strict", "swallows_quietly", path=str(tmp_path)).returncode == 1


@pytest.mark.timeout(120)
def test_check_finds_accelerators_a_package_loads_only_when_used(tmp_path: Any) -> None:
    """Like protobuf's upb: the import does not load the extension; check loads the
    distribution's extension modules after it. A copy of readline's extension (it refuses
    own-GIL interpreters) stands in for the accelerator."""
    import importlib.machinery
    import shutil

    readline = importlib.machinery.PathFinder.find_spec("readline")
    if readline is None or not readline.origin or not readline.origin.endswith(".so"):
        pytest.skip("readline is not an extension module file here")
    package = tmp_path / "lazyacc"
    package.mkdir()
    (package / "__init__.py").write_text("def speed():\n    from . import readline\n")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    shutil.copy(readline.origin, package / f"readline{suffix}")
    info = tmp_path / "lazyacc-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lazyacc\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"lazyacc/__init__.py,,\nlazyacc/readline{suffix},,\nlazyacc-1.0.dist-info/RECORD,,\n")
    code, reports = check_json("lazyacc", path=str(tmp_path))
    assert code == 0
    report = reports["lazyacc"]
    assert (report["status"], report["degraded"], report["distribution"]) == ("worker", True, "lazyacc")
    assert [(r["module"], r["later"]) for r in report["refused"]] == [("lazyacc.readline", True)]
    text = cli("check", "lazyacc", path=str(tmp_path)).stdout
    assert "its extension module lazyacc.readline (lazyacc), loaded only when used, cannot load here" in text


def _packer_module() -> str:
    import msgpack  # type: ignore[import-untyped]

    return str(msgpack.Packer.__module__)


def _yaml_has_libyaml() -> bool:
    import yaml  # type: ignore[import-untyped]

    return bool(yaml.__with_libyaml__)


@pytest.mark.timeout(120)
def test_check_agrees_with_a_worker_about_lost_accelerators() -> None:
    """pyyaml and msgpack import in a worker, silently without their C code; check says so
    exactly when a real task sees the pure-Python fallback."""
    pytest.importorskip("msgpack")
    pytest.importorskip("yaml")
    _, reports = check_json("msgpack", "yaml")
    msgpack_lost = _packer_module() != in_worker(_packer_module)
    assert reports["msgpack"]["degraded"] == msgpack_lost
    if msgpack_lost:
        assert [r["module"] for r in reports["msgpack"]["refused"]] == ["msgpack._cmsgpack"]
        assert reports["msgpack"]["refused"][0]["distribution"] == "msgpack"
    yaml_lost = _yaml_has_libyaml() and not in_worker(_yaml_has_libyaml)
    assert reports["yaml"]["degraded"] == yaml_lost
    if yaml_lost:
        assert "yaml._yaml" in [r["module"] for r in reports["yaml"]["refused"]]
        assert reports["yaml"]["refused"][0]["distribution"] == "PyYAML"
        text = cli("check", "yaml").stdout
        assert "without its accelerator yaml._yaml (PyYAML); a pure-Python fallback runs instead" in text


@pytest.mark.one_python
@pytest.mark.timeout(120)
def test_check_names_the_full_module_and_its_distribution() -> None:
    pytest.importorskip("psutil")
    _, reports = check_json("psutil")
    # CPython's own message calls it `_psutil_linux` on Linux; check gives the full name.
    refused = reports["psutil"]["refused"][0]
    assert refused["module"].startswith("psutil._psutil_"), refused
    assert refused["distribution"] == "psutil"
    assert reports["psutil"]["status"] in ("isolated", "lane")


@pytest.mark.timeout(120)
def test_check_numpy_agrees_with_the_lane() -> None:
    pytest.importorskip("numpy")
    _, reports = check_json("numpy")
    expected = "isolated" if reports["numpy"]["isolate"] else "lane"
    assert reports["numpy"]["status"] == expected
    assert reports["numpy"]["distribution"] == "numpy"


@pytest.mark.timeout(120)
def test_check_reports_modules_that_work_only_isolated() -> None:
    from interpool import _check

    if not _check.isolation_supported():
        pytest.skip("this interpool has no isolate= (a private copy of extension modules per worker)")
    pytest.importorskip("numpy")
    _, reports = check_json("numpy")
    assert reports["numpy"]["status"] == "isolated"
    assert reports["numpy"]["isolate"] == ["numpy"]
    assert (
        "ISOLATED  numpy: works only isolated: InterpreterPoolExecutor(isolate=['numpy'])"
        in cli("check", "numpy").stdout
    )


def test_info() -> None:
    proc = cli("info")
    assert proc.returncode == 0, proc.stderr
    assert "interpool 0.1.0" in proc.stdout and "self-test: a worker interpreter" in proc.stdout
    assert ("GIL disabled" in proc.stdout) == (not getattr(sys, "_is_gil_enabled", lambda: True)())


@pytest.mark.one_python
def test_bench_checks_results_and_prints_a_table() -> None:
    proc = cli("bench", "--seconds", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert "interpool" in proc.stdout and "sequential" in proc.stdout


@pytest.mark.one_python
def test_usage_errors() -> None:
    assert cli().returncode == 2
    assert cli("check").returncode == 2


def test_check_grows_the_isolated_packages_until_the_import_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolation rounds of check, with a simulated worker: pandas needs numpy and itself
    isolated (each round isolates the packages refused in the previous one)."""
    from interpool import _check

    tried: list[list[str] | None] = []

    def fake_worker(name: str, call: str | None = None, **options: Any) -> dict[str, Any]:
        isolate = options.get("isolate")
        tried.append(isolate)
        blocked = next((p for p in ("numpy", "pandas") if p not in (isolate or [])), None)
        if blocked is None:
            return {"ok": True, "file": "/x/pandas/__init__.py", "refused": [], "later": [], "warnings": []}
        module = f"{blocked}._core"
        message = f"module {module} does not support loading in subinterpreters"
        return {
            "ok": False,
            "error": f"ImportError: {message}",
            "refusal": True,
            "refused_module": module,
            "refused": [[module, message]],
            "later": [],
            "warnings": [],
        }

    monkeypatch.setattr(_check, "_in_worker", fake_worker)
    monkeypatch.setattr(_check, "isolation_supported", lambda: True)
    monkeypatch.setattr(_check, "_together", lambda name, **options: {"ok": True, "what": "a call", "refused": []})
    report = _check.check_module("pandas")
    assert tried == [None, ["numpy"], ["numpy", "pandas"]]
    assert (report["status"], report["isolate"]) == ("isolated", ["numpy", "pandas"])
    assert _check.format_report(report) == [
        "ISOLATED  pandas: works only isolated: InterpreterPoolExecutor(isolate=['numpy', 'pandas'])"
        " (as the default, isolate='auto', does) (a real call in 2 workers at once: a call)"
    ]
    assert not _check.failed(report, strict=False) and _check.failed(report, strict=True)


def _fake_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """check's import step, simulated: the module imports with isolate=['numpy', 'pandas']."""
    from interpool import _check

    def fake_worker(name: str, call: str | None = None, **options: Any) -> dict[str, Any]:
        if options.get("isolate"):
            return {"ok": True, "file": "/x/pandas/__init__.py", "refused": [], "later": [], "warnings": []}
        message = "module numpy._core does not support loading in subinterpreters"
        refused = [["numpy._core", message], ["pandas._libs", message]]
        return {
            "ok": False,
            "error": f"ImportError: {message}",
            "refusal": True,
            "refused_module": "numpy._core",
            "refused": refused,
            "later": [],
            "warnings": [],
        }

    monkeypatch.setattr(_check, "_in_worker", fake_worker)
    monkeypatch.setattr(_check, "isolation_supported", lambda: True)


def test_check_grows_isolate_with_what_the_real_call_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas imports, but its real call (2 workers at once) loads pyarrow, refused until
    isolated too: check answers with what the call needed."""
    from interpool import _check

    _fake_import(monkeypatch)
    calls: list[list[str]] = []

    def fake_together(name: str, **options: Any) -> dict[str, Any]:
        calls.append(options.get("isolate") or [])
        if "pyarrow" in (options.get("isolate") or []):
            return {"ok": True, "what": "pyarrow columns", "refused": []}
        message = "module pyarrow.lib does not support loading in subinterpreters"
        return {"ok": False, "error": f"ImportError: {message}", "refused": [["pyarrow.lib", message]]}

    monkeypatch.setattr(_check, "_together", fake_together)
    report = _check.check_module("pandas")
    assert calls == [["numpy", "pandas"], ["numpy", "pandas", "pyarrow"]]
    assert (report["status"], report["isolate"], report["operation"]) == (
        "isolated",
        ["numpy", "pandas", "pyarrow"],
        "pyarrow columns",
    )


def test_check_fails_a_module_whose_real_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """An import that works proves little: pyarrow's numpy bridge failed only in the second
    worker that called it (ArrowTypeError), and check said ISOLATED. Now it says FAIL."""
    from interpool import _check

    _fake_import(monkeypatch)
    error = "ArrowTypeError: Input object was not a NumPy array"
    monkeypatch.setattr(_check, "_together", lambda name, **options: {"ok": False, "error": error, "refused": []})
    report = _check.check_module("pandas")
    assert report["status"] == "fails" and _check.failed(report, strict=False)
    assert _check.format_report(report) == [
        "FAIL      pandas: fails: it imports, but a real call fails in 2 workers at once "
        f"(isolate=['numpy', 'pandas']): {error}"
    ]


@pytest.mark.timeout(120)
def test_check_fails_an_import_that_starts_a_daemon_thread(tmp_path: Any) -> None:
    """Workers refuse daemon threads, and isolate= cannot change that: check must not say ok
    (a call that imports it fails in a worker), though it imports in a process."""
    (tmp_path / "daemon_at_import.py").write_text(
        "import threading\nthreading.Thread(target=lambda: None, daemon=True).start()\n"
    )
    proc = cli("check", "daemon_at_import", path=str(tmp_path))
    assert proc.returncode == 1
    assert "FAIL      daemon_at_import: fails: RuntimeError: daemon threads are disabled" in proc.stdout
    assert "it imports in a separate process, but not in a worker interpreter" in proc.stdout


DAEMON_PACKAGE = """
import threading

def complete():
    # as jedi.Script(...).complete() does: a daemon thread that reads a subprocess's stderr
    thread = threading.Thread(target=lambda: None, daemon=True)
    thread.start()
    thread.join()
    return ["path"]

def parse():
    return ["tree"]
"""


@pytest.mark.timeout(120)
def test_check_runs_the_call_it_is_given_where_the_module_imports(tmp_path: Any) -> None:
    """The module imports in a worker, but a call starts a daemon thread, which workers
    refuse: check says FAIL with the error (and that the call works in a process), not ok."""
    (tmp_path / "daemon_at_call.py").write_text(DAEMON_PACKAGE)
    assert "ok        daemon_at_call: works in a worker" in cli("check", "daemon_at_call", path=str(tmp_path)).stdout
    proc = cli("check", "daemon_at_call", "--call", "daemon_at_call=daemon_at_call.complete()", path=str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    head, _, tail = proc.stdout.partition("RuntimeError: daemon threads are disabled in this ")
    assert head == "FAIL      daemon_at_call: fails: it imports, but daemon_at_call.complete() fails in a worker: "
    assert (
        ". Its calls are not moved to the fallback lane, since no import fails (the call works in a separate process)"
        in tail
    )
    assert "fix: run such calls in the main interpreter or on a ProcessPoolExecutor" in proc.stdout
    code, reports = check_json(
        "daemon_at_call", "json", "--call", "daemon_at_call=daemon_at_call.complete()", path=str(tmp_path)
    )
    assert code == 1 and reports["json"]["call"] is None
    report = reports["daemon_at_call"]
    assert report["status"] == "fails"
    assert report["call"]["code"] == "daemon_at_call.complete()" and report["call"]["in_process"] is True
    assert report["call"]["error"].startswith("RuntimeError: daemon threads are disabled in this ")
    # A call that works there is said to have run.
    proc = cli("check", "daemon_at_call", "--call", "daemon_at_call=assert daemon_at_call.parse()", path=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok        daemon_at_call: works in a worker (" in proc.stdout
    assert proc.stdout.rstrip().endswith("; assert daemon_at_call.parse() ran there")


def test_check_call_usage_errors() -> None:
    proc = cli("check", "json", "--call", "json.dumps(1)")
    assert proc.returncode == 2 and "--call 'json.dumps(1)': expected MODULE=CODE" in proc.stderr
    proc = cli("check", "json", "--call", "pickle=pickle.dumps(1)")
    assert proc.returncode == 2 and "--call names 'pickle', which is not among the modules to check" in proc.stderr


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    (3, 12) <= sys.version_info < (3, 12, 4),
    reason="CPython 3.12.0-3.12.3 abort at exit after a worker's keyword call into an extension function "
    "(gh-119213: `double free or corruption` once jedi's completion ran in a worker); interpool refuses "
    "these Pythons unless INTERPOOL_UNSAFE_PY312=1",
)
def test_check_jedi_runs_a_completion() -> None:
    """jedi imports in a worker, but its completion starts a subprocess and a daemon thread
    that workers refuse: check runs a completion (KNOWN_CALLS) and says FAIL, with the fix
    that works in a worker."""
    pytest.importorskip("jedi")
    proc = cli("check", "jedi")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith('FAIL      jedi: fails: it imports, but jedi.Script("import os\\nos.pa").complete()')
    assert "daemon threads are disabled in this interpreter" in proc.stdout
    assert "(the call works in a separate process)" in proc.stdout
    assert "fix: jedi.Script(..., environment=jedi.InterpreterEnvironment())" in proc.stdout
    assert "pathsep" in in_worker(complete_in_this_interpreter)


def complete_in_this_interpreter() -> list[str]:
    import jedi

    script = jedi.Script("import os\nos.pa", environment=jedi.InterpreterEnvironment())
    return [completion.name for completion in script.complete()]
