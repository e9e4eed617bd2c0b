"""The ``python -m interpool`` command line: check modules, describe this installation,
quick benchmark. (Its task functions live here, in an importable module, so workers
import them by reference.)

    python -m interpool check MODULE [MODULE ...]   where can each module run: in a worker, isolated,
                                                    in the fallback lane, or not at all (--json, --strict,
                                                    --call MODULE=CODE: run a call after the import)
    python -m interpool info                          versions, build, GIL mode, cores
    python -m interpool bench [--seconds S]           interpool vs the alternatives, here
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

import interpool


def cmd_check(modules: Sequence[str], as_json: bool = False, strict: bool = False, calls: Sequence[str] = ()) -> int:
    """Where each module can run (``interpool/_check.py``)."""
    from interpool import _check

    by_module: dict[str, str] = {}
    for item in calls:
        module, sep, code = item.partition("=")
        if not sep or not module.strip() or not code.strip():
            print(
                f"interpool check: --call {item!r}: expected MODULE=CODE, e.g. --call "
                "'jedi=jedi.Script(\"import os\").complete()'",
                file=sys.stderr,
            )
            return 2
        if module.strip() not in modules:
            print(
                f"interpool check: --call names {module.strip()!r}, which is not among the modules to check",
                file=sys.stderr,
            )
            return 2
        by_module[module.strip()] = code
    return _check.main(modules, as_json, strict, by_module)


def cmd_info() -> int:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    try:
        import cloudpickle  # type: ignore[import-untyped]

        cp = f"cloudpickle {cloudpickle.__version__} (lambdas, closures and __main__ sent by value)"
    except ImportError:
        cp = "cloudpickle not installed (lambdas and closures cannot be sent; pip install cloudpickle)"
    lines = [
        f"interpool {interpool.__version__} ({os.path.dirname(interpool.__file__)})",
        f"Python {platform.python_version()} {platform.python_implementation()} "
        f"({'free-threaded build, GIL disabled' if not gil else 'GIL enabled'}), {sys.executable}",
        f"platform {platform.platform()}, {os.cpu_count()} CPUs",
        "workers: own-GIL subinterpreters (PEP 684), one OS thread each",
        cp,
    ]
    with interpool.InterpreterPoolExecutor(1) as pool:
        worker = pool.submit(interpool._interpool.interpreter_id).result()
    lines.append(f"self-test: a worker interpreter (id {worker}) ran a task")
    print("\n".join(lines))
    return 0


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cmd_bench(seconds: float) -> int:
    """Time the same CPU-bound job sequentially and on each executor available here."""
    import concurrent.futures as cf

    workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    _spin(200_000)
    per_task = max(1, int(200_000 * (seconds / max(1, 4 * workers)) / (time.perf_counter() - t0) / 4))
    tasks = 4 * workers
    expected = [_spin(per_task)] * tasks
    runners: list[tuple[str, Callable[[], list[int]]]] = [
        ("sequential", lambda: [_spin(per_task) for _ in range(tasks)]),
        ("ThreadPoolExecutor", lambda: _run(cf.ThreadPoolExecutor(workers), per_task, tasks)),
    ]
    std = getattr(cf, "InterpreterPoolExecutor", None)
    if std is not None:
        runners.append(("stdlib InterpreterPoolExecutor", lambda: _run(std(workers), per_task, tasks)))
    runners.append(("interpool", lambda: _run(interpool.InterpreterPoolExecutor(workers), per_task, tasks)))
    print(f"{tasks} tasks of pure-Python arithmetic, {workers} workers (pool start-up included)")
    base = None
    for name, run in runners:
        t0 = time.perf_counter()
        result = run()
        elapsed = time.perf_counter() - t0
        if result != expected:
            print(f"{name}: wrong result", file=sys.stderr)
            return 1
        base = base or elapsed
        print(f"  {name:<32} {elapsed * 1000:8.0f} ms   {base / elapsed:5.2f}x")
    return 0


def _run(pool: object, per_task: int, tasks: int) -> list[int]:
    with pool:  # type: ignore[attr-defined]
        return list(pool.map(_spin, [per_task] * tasks))  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interpool", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="where can these modules run: in a worker interpreter, isolated, in the fallback lane, or not at all?",
    )
    check.add_argument("modules", nargs="+", metavar="MODULE")
    check.add_argument("--json", action="store_true", help="print a JSON document for tools")
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 unless every module works fully in a plain worker (not only isolated or in the "
        "lane, no extension module refused, no warning)",
    )
    check.add_argument(
        "--call",
        action="append",
        default=[],
        metavar="MODULE=CODE",
        help="after importing MODULE, run CODE (Python, with MODULE's top-level package bound to its name) where it "
        "imported: a call that fails there (a daemon thread, fork, a signal handler...) makes the module FAIL. "
        "Some packages have one built in (jedi)",
    )
    sub.add_parser("info", help="versions, build and GIL mode")
    bench = sub.add_parser("bench", help="quick comparison of executors on this machine")
    bench.add_argument("--seconds", type=float, default=2.0, help="rough duration of the sequential run")
    args = parser.parse_args(argv)
    if args.command == "check":
        return cmd_check(args.modules, args.json, args.strict, args.call)
    if args.command == "info":
        return cmd_info()
    return cmd_bench(args.seconds)
