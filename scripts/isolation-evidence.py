#!/usr/bin/env python
"""numpy's own tests inside 2 concurrent interpool workers, compared with the main interpreter.

The evidence issue 12 asks of ``isolate=``: numpy's test files (FILES below) run with pytest
inside two own-GIL worker interpreters at the same time (``isolate=["numpy", "hypothesis"]``:
hypothesis, which numpy's conftest imports, has a native module of its own since 6.156; on
the free-threaded build, which cannot isolate it, pin ``hypothesis<6.156``), and once in the
main interpreter. Outcomes are compared per test id; every test that fails only in a worker
must be listed, with its reason, in tests/isolation/numpy_known_failures.txt.

    python scripts/isolation-evidence.py              # one round: main + 2 concurrent workers
    python scripts/isolation-evidence.py --repeat 20  # main once, then 20 worker rounds (no crash?)
    python scripts/isolation-evidence.py --json out.json --files numpy/fft/tests/test_pocketfft.py

Each context runs in a fresh subprocess of this Python, so a crash is an exit status (a
negative one: the signal), reported as such, never the end of the script. The exit status is
0 when every round exited cleanly, ran on two distinct workers, and every worker-only failure
is a known one.

pytest runs with ``--capture=sys`` (fd-level capture would redirect the process's file
descriptors under the other worker's feet), without the faulthandler, timeout and cache
plugins (process-wide state), with a ``--basetemp`` of its own per context, and with numpy's
own conftest (hypothesis' "np.test() profile": derandomized, no database). In workers,
pytest does not set ``PYTEST_CURRENT_TEST`` in the (process-wide) environment and does not
try to import readline: two pytest sessions in one process race there (see run_pytest).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KNOWN_FAILURES = os.path.join(ROOT, "tests", "isolation", "numpy_known_failures.txt")
FILES = [
    "numpy/_core/tests/test_umath.py",
    "numpy/_core/tests/test_numeric.py",
    "numpy/linalg/tests/test_linalg.py",
    "numpy/random/tests/test_generator_mt19937.py",
    "numpy/fft/tests/test_pocketfft.py",
]
ISOLATE = ["numpy", "hypothesis"]
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

        with InterpreterPoolExecutor(WORKERS, isolate=ISOLATE) as pool:
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
    differ = {t: [main.get(t, "not run"), o] for t, o in sorted(worker.items()) if main.get(t) != o}
    return {
        "only_worker": only_worker,
        "missing": missing,
        "unknown": unknown,
        "only_main": only_main,
        "differ": differ,
    }


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
    parser.add_argument("--files", nargs="+", default=FILES, help="test files, relative to site-packages")
    parser.add_argument("--json", help="write every round's results here")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per round (default 3600)")
    parser.add_argument("--child", choices=["main", "workers"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    print(f"Python {sys.version.split()[0]} ({sys.executable}), numpy {numpy.__version__}")
    print(f"files: {' '.join(args.files)}")
    print(f"workers: {WORKERS} concurrent, isolate={ISOLATE}\n", flush=True)

    ok = True
    base, why = spawn("main", args.files, args.timeout)
    if base is None:
        print(f"main interpreter: FAILED to run: {why}")
        return 1
    main_outcomes: dict[str, str] = base["runs"][0]["outcomes"]
    main_reasons: dict[str, str] = base["runs"][0]["reasons"]
    print(f"main interpreter: {describe(base['runs'][0])}", flush=True)
    rounds: list[dict[str, Any]] = []
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
    print(
        f"\nsummary: {len(rounds)} worker rounds ({WORKERS} concurrent workers each), {len(crashes)} crashed or failed "
        f"to finish; {len(first_unknown)} unexplained worker-only failures: {'OK' if ok else 'NOT OK'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            main_failed = {t: main_reasons.get(t) for t, o in main_outcomes.items() if o in BAD}
            report = {"python": sys.version, "numpy": numpy.__version__, "files": args.files}
            report |= {"main": {"counts": counts(main_outcomes), "failed": main_failed}, "rounds": rounds}
            json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
