"""Soak: the realistic programs that aborted the process, run round after round (issue 25).

    python scripts/soak.py [--rounds N] [--only NAME ...] [--list]

Every round of every scenario runs in a fresh process (a crash at exit must count), checks
the exit status, the exact results (each equal to what the main interpreter computes) and that
nothing on stderr looks like a heap error. Scenarios:

- ``dask-inprocess``: a ``distributed.LocalCluster(processes=False)`` whose worker runs its tasks
  on ``DaskExecutor`` (pure-Python tasks and a ``dask.bag`` pipeline), while a plain pool beside
  it runs calls that go to the fallback lane (their module imports ``distributed``). Dask's
  profiler samples every thread's frames all the while.
- ``dask-cli``: ``dask scheduler`` and two ``dask worker --preload interpool.dask`` processes
  started from the command line on loopback; a client maps CPU-bound tasks, then shuts the
  cluster down; every process must exit cleanly.
- ``isolate``: an ``isolate=`` pool of 2 or 4 workers (alternating) runs a real operation of one
  package of the isolation set on every worker at once, the package changing each round, with
  and without the main interpreter importing it first (alternating); compared with the main
  interpreter's result.
- ``lane-exit``: a call whose module refuses workers moves to the fallback lane (process and
  thread lanes alternating), then the process exits.
- ``recycle``: ``max_tasks_per_worker=2`` over 120 tasks that import datetime and json.
- ``shutdown-busy``: shutdown while every worker is busy (cancelling what waits, interrupting
  what runs, alternating), then exit.

`make soak` runs 50 rounds of each on 3.13, 3.14 and 3.14t; tests/test_soak.py runs two rounds
of each in `make test` (one in the fast tier, docs/testing.md). Exit status 1 if any round
failed; the table says how.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
# What a heap error or a crash prints (glibc, CPython's fatal errors, faulthandler).
HEAP_ERRORS = (
    "free(): ",
    "double free",
    "corruption",
    "munmap_chunk",
    "Fatal Python error",
    "Segmentation fault",
    "malloc(): ",
    "interpool debug:",
)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))


@dataclass
class Outcome:
    ok: bool
    why: str = ""


@dataclass
class Tally:
    rounds: int = 0
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    first: str = ""

    def add(self, outcome: Outcome) -> None:
        self.rounds += 1
        if outcome.ok:
            self.ok += 1
            return
        kind = outcome.why.split(":", 1)[0]
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.first = self.first or outcome.why


def run(script: str, expected: list[str], timeout: float = 240) -> Outcome:
    """Run ``script`` in a fresh process; its stdout's words must be ``expected``."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env(),
            cwd=TESTS,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(False, f"hang: no exit within {timeout:.0f} s: {(exc.stderr or b'')[-2000:]!r}")
    return judge(proc.returncode, proc.stdout, proc.stderr, expected)


def judge(returncode: int, stdout: str, stderr: str, expected: list[str]) -> Outcome:
    errors = [marker for marker in HEAP_ERRORS if marker in stderr]
    if returncode < 0 or errors:
        return Outcome(False, f"abort: exit status {returncode}, {errors}: {stderr[-3000:]}")
    if returncode != 0:
        return Outcome(False, f"error: exit status {returncode}: {stderr[-3000:]}")
    if stdout.split() != expected:
        return Outcome(False, f"wrong: {stdout[-2000:]!r} != {expected!r}; {stderr[-1000:]}")
    return Outcome(True)


# -- scenarios ---------------------------------------------------------------------------------


def dask_inprocess(i: int) -> Outcome:
    return run(
        """
        import warnings
        warnings.simplefilter("ignore")
        import dask.bag as db
        import dask_tasks, lane_distributed
        from distributed import Client, LocalCluster
        from interpool import InterpreterPoolExecutor
        from interpool.dask import DaskExecutor

        if __name__ == "__main__":
            inputs = [20_000 + i for i in range(16)]
            with LocalCluster(n_workers=1, processes=False, threads_per_worker=2, executor=DaskExecutor(2),
                              dashboard_address=None) as cluster, Client(cluster) as client:
                print(client.gather(client.map(dask_tasks.spin, inputs)) == [dask_tasks.spin(n) for n in inputs])
                print(db.from_sequence(range(100), npartitions=4).map(lambda x: x * x).sum().compute())
                with InterpreterPoolExecutor(2) as pool:  # beside the cluster; its calls go to the lane
                    print(list(pool.map(lane_distributed.spin, inputs)) == [dask_tasks.spin(n) for n in inputs])
        """,
        ["True", "328350", "True"],
    )


def dask_cli(i: int) -> Outcome:
    bindir = os.path.dirname(sys.executable)
    dask = os.path.join(bindir, "dask")
    if not os.path.exists(dask):
        dask = shutil.which("dask") or "dask"
    work = tempfile.mkdtemp(prefix="interpool-soak-")
    scheduler_file = os.path.join(work, "scheduler.json")
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    procs: list[subprocess.Popen[str]] = []
    logs = []
    try:

        def start(args: list[str], name: str) -> None:
            log = open(os.path.join(work, f"{name}.log"), "w+")  # closed in the finally below
            logs.append((name, log))
            procs.append(
                subprocess.Popen([dask, *args], stdout=log, stderr=subprocess.STDOUT, text=True, env=env(), cwd=TESTS)
            )

        start(["scheduler", "--scheduler-file", scheduler_file, "--port", "0", *common], "scheduler")
        for n in range(2):
            start(
                ["worker", "--scheduler-file", scheduler_file, "--nthreads", "2", "--nworkers", "1",
                 "--preload", "interpool.dask", *common],
                f"worker{n}",
            )  # fmt: skip
        outcome = run(
            f"""
            import warnings
            warnings.simplefilter("ignore")
            import dask_tasks
            from distributed import Client

            if __name__ == "__main__":
                with Client(scheduler_file={scheduler_file!r}, timeout=120) as client:
                    client.wait_for_workers(2, timeout=120)
                    inputs = [30_000 + i for i in range(24)]
                    print(client.gather(client.map(dask_tasks.spin, inputs)) == [dask_tasks.spin(n) for n in inputs])
                    ids = client.gather(client.map(dask_tasks.where, range(8)))
                    print(0 not in set(ids))  # ran in worker interpreters, not a worker's main one
                    client.shutdown()
            """,
            ["True", "True"],
        )
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                codes.append(proc.wait(timeout=30))
        text = ""
        for name, log in logs:
            log.seek(0)
            text += f"--- {name}\n" + log.read()
        if outcome.ok:
            bad = [marker for marker in HEAP_ERRORS if marker in text]
            if bad or any(code < 0 for code in codes):
                outcome = Outcome(False, f"abort: process exit statuses {codes}, {bad}: {text[-3000:]}")
            elif any(code != 0 for code in codes):
                outcome = Outcome(False, f"error: process exit statuses {codes}: {text[-3000:]}")
        else:
            outcome.why += "\n" + text[-3000:]
        return outcome
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for _, log in logs:
            log.close()
        shutil.rmtree(work, ignore_errors=True)


# package -> (its isolate= list, the op_<name> of tests/isolation_package_tasks.py)
ISOLATION = [
    ("numpy", ["numpy"]),
    ("pandas", ["pandas", "numpy"]),
    ("scipy", ["scipy", "numpy"]),
    ("pydantic", ["pydantic", "pydantic_core"]),
    ("orjson", ["orjson"]),
    ("msgspec", ["msgspec"]),
    ("regex", ["regex"]),
    ("lxml", ["lxml"]),
    ("cryptography", ["cryptography"]),
    ("yaml", ["yaml"]),
    ("rapidfuzz", ["rapidfuzz"]),
    ("black", ["black", "pytokens"]),  # black imports pytokens, mypyc-compiled even where black is not (3.14t)
    ("cytoolz", ["cytoolz"]),
]
# 3.14t refuses the switch that isolate= needs for PyO3 submodules (tests/test_isolation_packages.py).
REFUSED_FREE_THREADED = {"pydantic", "cryptography"}


def isolation_set() -> list[tuple[str, list[str]]]:
    return [
        (name, [module for module in modules if has(module)])
        for name, modules in ISOLATION
        if has(modules[0]) and not (FREE_THREADED and name in REFUSED_FREE_THREADED)
    ]


def isolate(i: int) -> Outcome:
    packages = isolation_set()
    if not packages or sys.version_info < (3, 13):
        return Outcome(True)  # nothing to isolate here (3.12: isolate= is refused by design)
    name, modules = packages[i % len(packages)]
    workers = 2 if (i // len(packages)) % 2 == 0 else 4
    main_first = (i // (2 * len(packages))) % 2 == 1
    return run(
        f"""
        import json
        import isolation_package_tasks as tasks
        from interpool import InterpreterPoolExecutor

        if __name__ == "__main__":
            if {main_first!r}:
                import {modules[0]}
            with InterpreterPoolExecutor({workers}, isolate={modules!r}) as pool:
                results = list(pool.map(tasks.run_op, [{name!r}] * {2 * workers}))
            expected = tasks.run_op({name!r})  # in the main interpreter, after the pool
            same = [json.dumps(r, sort_keys=True, default=repr) == json.dumps(expected, sort_keys=True, default=repr)
                    for r in results]
            print(len(results), all(same))
        """,
        [str(2 * workers), "True"],
    )


def lane_exit(i: int) -> Outcome:
    kind = ("process", "thread")[i % 2]
    module, fn, arg = (
        ("lane_regex", "lane_regex.letters", "'abc'")
        if has("regex")
        else ("lane_distributed", "lane_distributed.spin", "1000")
    )
    call = f"{fn}({arg})"
    return run(
        f"""
        import warnings
        warnings.simplefilter("ignore")
        import {module}
        from interpool import InterpreterPoolExecutor

        if __name__ == "__main__":
            # (isolate=None: by default regex would load isolated in the worker)
            with InterpreterPoolExecutor(1, fallback={kind!r}, isolate=None) as pool:
                got = [pool.submit({fn}, {arg}).result(timeout=120) for _ in range(3)]
            print(got == [{call}] * 3, pool.stats()["lane_completed"] >= 1)
        """,
        ["True", "True"],
    )


def recycle(i: int) -> Outcome:
    return run(
        """
        import tasks
        from interpool import InterpreterPoolExecutor

        if __name__ == "__main__":
            with InterpreterPoolExecutor(2, max_tasks_per_worker=2) as pool:
                got = list(pool.map(tasks.dated_square, range(120)))
                recycled = pool.stats()["recycled"]
            print(got == [tasks.dated_square(n) for n in range(120)], recycled >= 50)
        """,
        ["True", "True"],
    )


def shutdown_busy(i: int) -> Outcome:
    how = ("cancel_futures=True", "interrupt=True")[i % 2]
    return run(
        f"""
        import concurrent.futures as cf
        import tasks
        from interpool import InterpreterPoolExecutor

        if __name__ == "__main__":
            pool = InterpreterPoolExecutor(2)
            futures = [pool.submit(tasks.spin, 3_000_000) for _ in range(8)]
            while pool.stats()["busy"] < 2:
                pass
            pool.shutdown(wait=True, {how})
            done = sum(f.done() for f in futures)
            outcomes = sum(f.cancelled() or f.exception() is not None or f.result() == tasks.spin_expected(3_000_000)
                           for f in futures)
            print(done, outcomes)
        """,
        ["8", "8"],
    )


def dask_unavailable() -> str | None:
    if not has("distributed"):
        return "distributed is not installed"
    if sys.version_info < (3, 13):
        return "CPython 3.12: dask imports ctypes, whose C module is single-phase there (refused by workers)"
    return None


SCENARIOS: dict[str, tuple[Callable[[int], Outcome], Callable[[], str | None]]] = {
    # name: (one round, why it cannot run here or None)
    "dask-inprocess": (dask_inprocess, dask_unavailable),
    "dask-cli": (dask_cli, dask_unavailable),
    "isolate": (isolate, lambda: None if sys.version_info >= (3, 13) else "isolate= needs CPython 3.13+"),
    "lane-exit": (lane_exit, lambda: None),
    "recycle": (recycle, lambda: None),
    "shutdown-busy": (shutdown_busy, lambda: None),
}


def soak(rounds: int, names: list[str], out: Callable[[str], None] = print) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for name in names:
        scenario, unavailable = SCENARIOS[name]
        why = unavailable()
        if why is not None:
            out(f"{name}: skipped ({why})")
            continue
        tally = tallies[name] = Tally()
        started = time.monotonic()
        for i in range(rounds):
            tally.add(scenario(i))
        out(
            f"{name}: {tally.ok}/{tally.rounds} rounds ok in {time.monotonic() - started:.0f} s"
            + "".join(f", {n} {kind}" for kind, n in tally.failures.items())
        )
        if tally.first:
            out(f"  first failure: {tally.first[:4000]}")
    return tallies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    args = parser.parse_args()
    print(
        f"soak: {sys.version.split()[0]}{' free-threaded' if FREE_THREADED else ''}, {args.rounds} rounds", flush=True
    )
    tallies = soak(args.rounds, args.only or list(SCENARIOS), lambda line: print(line, flush=True))
    total = sum(t.rounds for t in tallies.values())
    bad = sum(t.rounds - t.ok for t in tallies.values())
    print(f"soak: {total - bad} of {total} rounds ok, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
