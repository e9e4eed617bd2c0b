#!/usr/bin/env python
"""numpy's own tests inside 2 concurrent interpool workers, compared with the main interpreter.

The evidence issues 12 and 23 ask of ``isolate=``: numpy's test suite (SUITE below: every
test file of numpy's packages but f2py's, typing's and _pyinstaller's, test_multiarray.py
included) runs with pytest inside two own-GIL worker interpreters at the same time
(``isolate=ISOLATE``: numpy and the native packages its tests import: hypothesis, which
numpy's conftest imports, has a PyO3 module since 6.156 (on the free-threaded build, which
cannot isolate it, pin ``hypothesis<6.156``), cffi, mypy, _testbuffer), and once in the main
interpreter. Outcomes are compared per test id; every test that fails only in a worker must
be listed, with its reason, in tests/isolation/numpy_known_failures.txt. The tests passed in
each worker are counted against those passed in the main interpreter, in total and per file
(issue 23: at least 99%).

    python scripts/isolation-evidence.py              # one round: main + 2 concurrent workers
    python scripts/isolation-evidence.py --repeat 20  # main once, then 20 worker rounds (no crash?)
    python scripts/isolation-evidence.py --quick --repeat 20   # issue 12's five files only
    python scripts/isolation-evidence.py --json out.json --files numpy/fft/tests/test_pocketfft.py

Each context runs in a fresh subprocess of this Python, so a crash is an exit status (a
negative one: the signal), reported as such, never the end of the script. The exit status is
0 when every round exited cleanly, ran on two distinct workers, every worker-only failure is
a known one, and every worker passed at least ``--min-ratio`` (0.99) of the tests that pass
in the main interpreter (the ratio is printed in total and for each file where it differs;
``--per-file``: for every file).

pytest runs with ``--capture=sys`` (fd-level capture would redirect the process's file
descriptors under the other worker's feet), without the faulthandler, timeout and cache
plugins (process-wide state), with a ``--basetemp`` of its own per context, and with numpy's
own conftest (hypothesis' "np.test() profile": derandomized, no database). In workers,
pytest does not set ``PYTEST_CURRENT_TEST`` in the (process-wide) environment and does not
try to import readline: two pytest sessions in one process race there (see run_pytest).
Every context gets the same ``NPY_AVAILABLE_MEM`` (``--available-memory``, 3GB): numpy's
``@requires_memory`` tests (up to 19 GB) otherwise read the machine's free memory, which two
workers (or two processes) read at the same moment and then both allocate.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KNOWN_FAILURES = os.path.join(ROOT, "tests", "isolation", "numpy_known_failures.txt")
# numpy's test suite as issue 23 measures it: every test file of these packages (pytest
# collects a directory's test_*.py). Left out: numpy/f2py/tests (each test compiles Fortran
# or C with meson and a compiler, skipped or failing without them, and slow with them),
# numpy/typing/tests (runs mypy over numpy's stubs: minutes, and nothing of numpy's C code),
# numpy/_pyinstaller (needs PyInstaller).
SUITE = [
    "numpy/_core/tests",
    "numpy/lib/tests",
    "numpy/linalg/tests",
    "numpy/fft/tests",
    "numpy/random/tests",
    "numpy/ma/tests",
    "numpy/matrixlib/tests",
    "numpy/polynomial/tests",
    "numpy/testing/tests",
    "numpy/tests",
]
# Issue 12's five files: a quick round (--quick), e.g. for many repeats.
QUICK = [
    "numpy/_core/tests/test_umath.py",
    "numpy/_core/tests/test_numeric.py",
    "numpy/linalg/tests/test_linalg.py",
    "numpy/random/tests/test_generator_mt19937.py",
    "numpy/fft/tests/test_pocketfft.py",
]
# The packages with extension modules that numpy's tests import: numpy; hypothesis (numpy's
# conftest; a PyO3 module since 6.156); cffi's _cffi_backend (numpy/random/tests' test_cffi);
# mypy, mypyc-compiled (numpy/tests/test_public_api.py imports numpy.typing.mypy_plugin);
# CPython's own single-phase test module _testbuffer (test_multiarray.py's
# test_no_suboffsets, skipped without it). Those not installed here are left out (isolate=
# takes importable names only).
ISOLATE = ["numpy", "hypothesis", "_cffi_backend", "mypy", "_testbuffer"]


def isolate_here() -> list[str]:
    import importlib.util

    return [name for name in ISOLATE if importlib.util.find_spec(name) is not None]


WORKERS = 2
BAD = ("failed", "error")


# ---------------------------------------------------------------- runs in a worker (or main)


def run_pytest(site: str, files: list[str], basetemp: str) -> dict[str, Any]:
    """Run pytest on ``files`` (relative to ``site``) in this interpreter; the outcome of
    every test id, the reason of each failure, and where and when it ran."""
    import contextlib
    import io
    import threading

    import pytest

    try:
        from interpool import _interpool

        interpreter = int(_interpool.interpreter_id())
    except Exception:
        interpreter = -1

    class Collector:
        def __init__(self) -> None:
            self.outcomes: dict[str, str] = {}
            self.reasons: dict[str, str] = {}

        def _set(self, nodeid: str, outcome: str, report: Any) -> None:
            if self.outcomes.get(nodeid) in BAD:
                return  # the first failure (setup, call) is the one to report
            self.outcomes[nodeid] = outcome
            if outcome in BAD:
                crash = getattr(report.longrepr, "reprcrash", None)
                text = crash.message if crash is not None else str(report.longrepr)
                self.reasons[nodeid] = " ".join(text.split())[:400]
            elif outcome == "skipped" and isinstance(report.longrepr, tuple):
                self.reasons[nodeid] = str(report.longrepr[2])[:400]

        def pytest_runtest_logreport(self, report: Any) -> None:
            if report.when == "call":
                if hasattr(report, "wasxfail"):
                    self._set(report.nodeid, "xfailed" if report.skipped else "xpassed", report)
                else:
                    self._set(report.nodeid, report.outcome, report)
            elif report.failed:
                self._set(report.nodeid, "error", report)
            elif report.skipped and report.when == "setup":
                self._set(report.nodeid, "xfailed" if hasattr(report, "wasxfail") else "skipped", report)

        def pytest_collectreport(self, report: Any) -> None:
            if report.failed:
                self._set(report.nodeid or "<collection>", "error", report)

    ini = os.path.join(basetemp + "-ini", "pytest.ini")
    os.makedirs(os.path.dirname(ini), exist_ok=True)
    with open(ini, "w") as f:
        f.write("[pytest]\n")
    args = [
        *(os.path.join(site, f) for f in files),
        "-q",
        "-c",
        ini,
        f"--rootdir={site}",
        f"--basetemp={basetemp}",
        "--capture=sys",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:faulthandler",
        "-p",
        "no:timeout",
        "-p",
        "no:randomly",
    ]
    if interpreter > 0:
        # pytest sets os.environ["PYTEST_CURRENT_TEST"] in every phase of every test. The
        # environment is the process's: the other worker's putenv() churn races with this
        # one's subprocess spawns (which read environ), and glibc gives no safety there: a
        # spawn failed with EFAULT once in 40 runs, and the race can crash a process (also
        # with threads on a free-threaded build). That is two pytest sessions in one
        # process, not numpy in a worker: workers do not publish the variable.
        import _pytest.capture
        import _pytest.runner

        _pytest.runner._update_current_test_var = lambda item, when: None
        # pytest tries `import readline` at start-up (a Windows console workaround). readline
        # is single-phase, and CPython 3.13+ runs a single-phase init function in the main
        # interpreter before refusing the module in a worker; on the free-threaded build
        # nothing serializes two workers doing so, and GNU readline's global state crashed
        # the process (1 round in 20 here; without isolation too: 10 of 300 fresh processes
        # whose 2 workers try `import readline` at once). Not numpy's doing: skip it.
        _pytest.capture._readline_workaround = lambda: None
    collector = Collector()
    out = io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = pytest.main(args, plugins=[collector])
    return {
        "rc": int(rc),
        "interpreter": interpreter,
        "thread": threading.get_ident(),
        "start": start,
        "end": time.time(),
        "outcomes": collector.outcomes,
        "reasons": collector.reasons,
        "tail": out.getvalue()[-4000:],
    }


# ---------------------------------------------------------------- a child process


def _site() -> str:
    import numpy

    return os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))


def child(context: str, files: list[str], out: str) -> None:
    site = _site()
    tmp = tempfile.mkdtemp(prefix="isolation-evidence-")
    if context == "main":
        runs = [run_pytest(site, files, os.path.join(tmp, "main"))]
    else:
        from interpool import InterpreterPoolExecutor

        with InterpreterPoolExecutor(WORKERS, isolate=isolate_here()) as pool:
            futures = [pool.submit(run_pytest, site, files, os.path.join(tmp, f"w{i}")) for i in range(WORKERS)]
            runs = [f.result() for f in futures]
            stats = pool.stats()
        for run in runs:
            run["isolated_files"] = stats["isolated_files"]
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    with open(out, "w") as f:
        json.dump({"context": context, "python": sys.version, "runs": runs}, f)


# ---------------------------------------------------------------- the owner


def load_known(path: str) -> list[tuple[str, str]]:
    """``(pattern, reason)`` pairs: a ``## reason`` line names the reason of the test ids
    (fnmatch patterns) below it."""
    known: list[tuple[str, str]] = []
    reason = ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if line.startswith("## "):
                reason = line[3:].strip()
            elif line and not line.startswith("#"):
                if not reason:
                    raise SystemExit(f"{path}: {line!r} has no reason (a '## reason' line above it)")
                known.append((line, reason))
    return known


def known_reason(nodeid: str, known: list[tuple[str, str]]) -> str | None:
    for pattern, reason in known:
        if nodeid == pattern or fnmatch.fnmatchcase(nodeid, pattern):
            return reason
    return None


def spawn(context: str, files: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one context in a fresh process: its results, or None and what happened."""
    fd, out = tempfile.mkstemp(suffix=".json", prefix=f"isolation-evidence-{context}-")
    os.close(fd)
    command = [sys.executable, "-X", "faulthandler", os.path.abspath(__file__), "--child", context, "--out", out]
    command += ["--files", *files]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.unlink(out)
        return None, f"timed out after {timeout:.0f} s"
    took = time.perf_counter() - start
    try:
        if proc.returncode != 0:
            what = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            if proc.returncode == -9:
                what += " (SIGKILL: on Linux most often the kernel's OOM killer; see dmesg)"
            return None, f"{what} after {took:.0f} s; stderr tail:\n{proc.stderr[-3000:]}"
        with open(out, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        data["seconds"] = took
        return data, "exit status 0"
    finally:
        os.unlink(out)


def counts(outcomes: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for outcome in outcomes.values():
        out[outcome] = out.get(outcome, 0) + 1
    return dict(sorted(out.items()))


def compare(main: dict[str, str], worker: dict[str, str], known: list[tuple[str, str]]) -> dict[str, Any]:
    only_worker = sorted(t for t, o in worker.items() if o in BAD and main.get(t) not in BAD)
    missing = sorted(t for t in main if t not in worker)
    unknown = [t for t in only_worker if known_reason(t, known) is None]
    unknown += [t for t in missing if known_reason(t, known) is None]
    only_main = sorted(t for t, o in main.items() if o in BAD and worker.get(t) not in BAD)
    # Passed in main, skipped (or xfailed...) in the worker: no failure, but not passed either.
    not_passed = sorted(t for t, o in worker.items() if o not in BAD and o != "passed" and main.get(t) == "passed")
    differ = {t: [main.get(t, "not run"), o] for t, o in sorted(worker.items()) if main.get(t) != o}
    return {
        "only_worker": only_worker,
        "missing": missing,
        "unknown": unknown,
        "only_main": only_main,
        "not_passed": not_passed,
        "differ": differ,
    }


def test_file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def passed_per_file(outcomes: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for nodeid, outcome in outcomes.items():
        out.setdefault(test_file(nodeid), 0)
        if outcome == "passed":
            out[test_file(nodeid)] += 1
    return out


def ratio(worker: int, main: int) -> float:
    return worker / main if main else 1.0


def percent(share: float) -> str:
    """Rounded down: 50,702 of 50,704 is 99.99%, not 100.00%."""
    return f"{math.floor(share * 10000) / 100:.2f}%"


def pass_ratios(main: dict[str, str], runs: list[dict[str, str]]) -> dict[str, Any]:
    """Tests passed in the workers against the main interpreter, in total and per file: for
    each, the main interpreter's count and the lowest count of any worker run."""
    main_files = passed_per_file(main)
    run_files = [passed_per_file(run) for run in runs]
    files = sorted(set(main_files).union(*run_files))
    per_file = {}
    for name in files:
        worker = min((counts.get(name, 0) for counts in run_files), default=0)
        per_file[name] = {"main": main_files.get(name, 0), "worker": worker}
        per_file[name]["ratio"] = ratio(worker, main_files.get(name, 0))
    main_total = sum(main_files.values())
    worker_total = min((sum(counts.values()) for counts in run_files), default=0)
    return {
        "total": {"main": main_total, "worker": worker_total, "ratio": ratio(worker_total, main_total)},
        "per_file": per_file,
    }


def print_ratios(ratios: dict[str, Any], runs: int, all_files: bool) -> None:
    total = ratios["total"]
    print(
        f"\ntests passed, worker / main (the lowest of {runs} worker runs): "
        f"{total['worker']} / {total['main']} = {percent(total['ratio'])}"
    )
    shown = {f: r for f, r in ratios["per_file"].items() if all_files or r["worker"] != r["main"]}
    if shown:
        print("  per file" + ("" if all_files else " (those that differ; --per-file shows all)") + ":")
    width = max((len(f) for f in shown), default=0)
    for name, r in shown.items():
        print(f"  {name:<{width}}  {r['worker']:>6} / {r['main']:<6} {percent(r['ratio']):>8}")


def describe(run: dict[str, Any]) -> str:
    c = counts(run["outcomes"])
    return ", ".join(f"{v} {k}" for k, v in c.items()) + f" ({run['end'] - run['start']:.0f} s)"


def has_native_hypothesis() -> bool:
    import importlib.util

    spec = importlib.util.find_spec("hypothesis")
    where = (spec.submodule_search_locations or []) if spec is not None else []
    return any(f.startswith("_native.") for d in where for f in os.listdir(d))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="worker rounds, each in a fresh process (default 1)")
    parser.add_argument(
        "--files",
        nargs="+",
        default=SUITE,
        help="test files or directories, relative to site-packages (default: numpy's suite, SUITE above)",
    )
    parser.add_argument("--quick", action="store_true", help="issue 12's five test files only (QUICK above)")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.99,
        help="exit with status 1 when a worker run passed fewer than this share of the tests that pass in the main "
        "interpreter (default 0.99)",
    )
    parser.add_argument(
        "--per-file", action="store_true", help="print the pass ratio of every file, not only those that differ"
    )
    parser.add_argument(
        "--available-memory",
        default="3GB",
        metavar="SIZE",
        help="NPY_AVAILABLE_MEM for every context (default 3GB): numpy's tests that need more skip, in the main "
        "interpreter and in the workers alike ('' leaves it unset: numpy then reads MemAvailable)",
    )
    parser.add_argument("--json", help="write every round's results here")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per round (default 3600)")
    parser.add_argument("--child", choices=["main", "workers"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.files = QUICK
    if args.child:
        child(args.child, args.files, args.out)
        return 0

    try:
        import numpy
    except ImportError:
        print("numpy is not installed for this Python: nothing to run", file=sys.stderr)
        return 2
    if sys.version_info < (3, 13):
        print("numpy cannot load in CPython 3.12 workers (no datetime C API there, gh-117953)", file=sys.stderr)
        return 2
    if sysconfig.get_config_var("Py_GIL_DISABLED") and has_native_hypothesis():
        print(
            "hypothesis >= 6.156 has a PyO3 module with submodules, which the free-threaded build refuses "
            "to load isolated (docs/isolation.md): pip install 'hypothesis<6.156' (pure Python) to run this",
            file=sys.stderr,
        )
        return 2
    known = load_known(KNOWN_FAILURES)
    if args.available_memory:
        # numpy's @requires_memory tests (up to 19 GB: test_huge_vectordot, test_arbitrary_number_of_ops_error)
        # read MemAvailable when this is unset. Two workers read it at the same moment, both see
        # the memory free, both allocate it, and the kernel's OOM killer ends the process (round
        # 1 of the first whole-suite run on this 24 GB machine: SIGKILL after 126 s). Two
        # processes would do the same: every context gets the same budget instead.
        os.environ["NPY_AVAILABLE_MEM"] = args.available_memory
    print(f"Python {sys.version.split()[0]} ({sys.executable}), numpy {numpy.__version__}")
    print(f"files: {' '.join(args.files)}")
    print(f"workers: {WORKERS} concurrent, isolate={isolate_here()}")
    print(f"NPY_AVAILABLE_MEM={os.environ.get('NPY_AVAILABLE_MEM', '(unset)')} in every context\n", flush=True)

    ok = True
    base, why = spawn("main", args.files, args.timeout)
    if base is None:
        print(f"main interpreter: FAILED to run: {why}")
        return 1
    main_outcomes: dict[str, str] = base["runs"][0]["outcomes"]
    main_reasons: dict[str, str] = base["runs"][0]["reasons"]
    print(f"main interpreter: {describe(base['runs'][0])}", flush=True)
    rounds: list[dict[str, Any]] = []
    worker_outcomes: list[dict[str, str]] = []
    first_unknown: dict[str, str] = {}
    for r in range(1, args.repeat + 1):
        data, why = spawn("workers", args.files, args.timeout)
        record: dict[str, Any] = {"round": r, "status": why if data is None else "exit status 0"}
        rounds.append(record)
        if data is None:
            ok = False
            print(f"round {r}: CRASH or FAILURE: {why}", flush=True)
            continue
        runs = data["runs"]
        ids = sorted({run["interpreter"] for run in runs})
        overlap = min(run["end"] for run in runs) - max(run["start"] for run in runs)
        record["interpreters"] = ids
        record["overlap_s"] = overlap
        record["workers"] = []
        line = [
            f"round {r}: exit status 0, {data['seconds']:.0f} s, interpreters {ids}, concurrent for {overlap:.0f} s"
        ]
        if len(ids) != WORKERS or overlap <= 0:
            ok = False
            line.append("  NOT two concurrent workers")
        for i, run in enumerate(runs):
            worker_outcomes.append(run["outcomes"])
            diff = compare(main_outcomes, run["outcomes"], known)
            record["workers"].append({"counts": counts(run["outcomes"]), **diff})
            line.append(f"  worker {i}: {describe(run)}")
            line.append(
                f"    fail only in the worker: {len(diff['only_worker'])} "
                f"(known: {len(diff['only_worker']) - len(diff['unknown'])}, NOT known: {len(diff['unknown'])}); "
                f"not run in the worker: {len(diff['missing'])}; fail only in main: {len(diff['only_main'])}"
            )
            for t in diff["unknown"]:
                first_unknown.setdefault(t, run["reasons"].get(t, "not run in the worker"))
                ok = False
            for t in diff["only_main"]:
                line.append(f"    fails only in main: {t}: {main_reasons.get(t, '')}")
            for t in diff["not_passed"]:
                why = run["reasons"].get(t, "")
                line.append(
                    f"    passed in main, {run['outcomes'][t]} in the worker: {t}" + (f": {why}" if why else "")
                )
        print("\n".join(line), flush=True)

    if first_unknown:
        print(f"\n{len(first_unknown)} worker-only failures are not in {os.path.relpath(KNOWN_FAILURES, ROOT)}:")
        for t, reason in sorted(first_unknown.items()):
            print(f"  {t}\n      {reason}")
    failed_somewhere = {t for r in rounds for w in r.get("workers", ()) for t in w["only_worker"] + w["missing"]}
    unused = [p for p, _ in known if not any(fnmatch.fnmatchcase(t, p) for t in failed_somewhere)]
    if unused:
        print(f"\nlisted as known but passed in every worker here (other Pythons or files may need them): {unused}")
    crashes = [r for r in rounds if r["status"] != "exit status 0"]
    ratios = pass_ratios(main_outcomes, worker_outcomes)
    print_ratios(ratios, len(worker_outcomes), args.per_file)
    low = ratios["total"]["ratio"] < args.min_ratio or not worker_outcomes
    ok = ok and not low
    print(
        f"\nsummary: {len(rounds)} worker rounds ({WORKERS} concurrent workers each), {len(crashes)} crashed or failed "
        f"to finish; {len(first_unknown)} unexplained worker-only failures; passed in the workers: "
        f"{percent(ratios['total']['ratio'])} of main (at least {100 * args.min_ratio:g}% wanted): "
        f"{'OK' if ok else 'NOT OK'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            main_failed = {t: main_reasons.get(t) for t, o in main_outcomes.items() if o in BAD}
            report = {"python": sys.version, "numpy": numpy.__version__, "files": args.files}
            report |= {"main": {"counts": counts(main_outcomes), "failed": main_failed}, "rounds": rounds}
            report["passed_ratio"] = ratios
            json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
