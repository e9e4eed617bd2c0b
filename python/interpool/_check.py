"""``python -m interpool check MODULE...``: where each module can run, told in full.

For each module, in the order the executor itself tries:

1. import it in a fresh plain worker interpreter (``isolate=None, fallback=None``, one
   interpreter per module, so an
   import's side effects cannot hide another's failure). While it imports, extension modules
   that refuse the interpreter are recorded (:func:`probe` watches the import system's
   extension and built-in loaders), so an import that *succeeds* without its accelerator
   (pyyaml without ``yaml._yaml``, msgpack without ``msgpack._cmsgpack``...) is reported as
   such, and so are the warnings the import raised (polars: "Polars binary is missing!").
2. if extension modules were refused and this interpool has ``isolate=``, import it again in a
   worker of ``InterpreterPoolExecutor(isolate=[...])`` (the top-level packages of the refused
   modules, grown as new refusals show up);
3. if it still cannot import, import it in a process of the fallback lane: the executor's
   default (``fallback="process"``) runs such calls there.

After an import that succeeds, the distribution's other extension modules are loaded too:
some packages load their accelerator only when first used (protobuf's upb), and a worker
refuses it then just as silently.

For the packages it knows (``_operations``: the isolation set), check then runs a real
operation in 2 workers at once (both held at a rendezvous, so two distinct interpreters run
it concurrently), with the ``isolate=`` found above: an import proves little when C state that
only a call reaches is process-wide (pyarrow's numpy bridge failed only in the second worker).
Extension modules refused during the call are added to ``isolate=`` as for the import; a call
that still fails makes the status ``fails``.

An import says nothing of what a call does at run time that a worker refuses (a daemon
thread, ``os.fork()``, a signal handler): jedi imports in a worker, but
``jedi.Script(...).complete()`` starts a subprocess with a daemon thread that reads its
stderr, and fails. So for the packages of ``KNOWN_CALLS``, and for any module given a call
(``--call MODULE=CODE``), that call runs after the import, where the import ran; a call that
fails there makes the module ``fails`` (its calls are not moved to the fallback lane: no
import fails), with the error, whether it runs in a separate process, and the known fix.

Statuses: ``worker`` (works in a worker; ``degraded`` when extension modules were refused),
``isolated`` (works only isolated), ``lane`` (works only in the fallback lane), ``fails``
(why; also an import that succeeds only after swallowing a refusal *and warning*, as polars
does: its calls fail at first use, and the executor cannot move them to the lane, since no
import failed). The exit status is 1 when a module fails (``--strict``: also when any is not
fully usable in a plain worker).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from . import _lane_process, _operations, _refusal
from ._dispatch import TaskFuture
from ._executor import InterpreterPoolExecutor
from ._interpool import Queue
from ._probe import probe

# How many times isolation is retried with the packages refused in the previous attempt.
_ISOLATION_ROUNDS = 4


# Packages that import in a worker but whose main use reaches something a worker refuses:
# the call check runs after the import (the top-level package is bound to its name), and
# the fix when it fails in a worker.
KNOWN_CALLS: dict[str, tuple[str, str]] = {
    # jedi infers in a subprocess of the "environment" (the current venv's Python), and
    # starts a daemon thread that reads its stderr: "daemon threads are disabled in this
    # interpreter" (workers are created with allow_daemon_threads = 0, as CPython's isolated
    # interpreters: a daemon thread still running when the interpreter ends would run on a
    # freed interpreter; docs/design.md, "Thread states").
    "jedi": (
        'jedi.Script("import os\\nos.pa").complete()',
        "jedi.Script(..., environment=jedi.InterpreterEnvironment()), or jedi.Interpreter(...), infers in the "
        "worker itself, without jedi's subprocess and its daemon thread",
    ),
}


def isolation_supported() -> bool:
    """Whether ``isolate=`` works here (CPython 3.13+)."""
    return _refusal.isolation_available()


def _in_worker(name: str, call: str | None = None, **options: Any) -> dict[str, Any]:
    with InterpreterPoolExecutor(1, max_tasks_per_worker=1, fallback=None, **options) as pool:
        try:
            result: dict[str, Any] = pool.submit(probe, name, call).result()
        except BaseException as exc:  # the probe itself could not run (e.g. the worker broke)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "refused": [], "warnings": []}
    result.setdefault("later", [])
    return result


def _in_lane_process(name: str, call: str | None = None) -> dict[str, Any]:
    lane = _lane_process.ProcessLane(1, "interpool-check", None, (), 1, 5.0)
    lane.seal()  # used alone: nothing else moves calls here
    future: TaskFuture[dict[str, Any]] = TaskFuture()
    lane.submit(future, probe, (name, call), {}, None)
    try:
        result: dict[str, Any] = future.result()
    except BaseException as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "refused": [], "warnings": []}
    finally:
        lane.stop(False)
        lane.join()
    return result


def _refused_entries(pairs: list[list[str]], later: bool = False) -> list[dict[str, Any]]:
    return [
        {"module": module, "distribution": _refusal.distribution(module), "message": message, "later": later}
        for module, message in pairs
    ]


def _can_isolate(package: str) -> bool:
    """Whether ``isolate=`` can take it: not a module built into the interpreter (no file)."""
    return package not in sys.builtin_module_names


def _isolated(name: str, refused: list[list[str]], call: str | None) -> tuple[list[str], dict[str, Any]] | None:
    """Try ``isolate=`` with the packages of the refused modules; the packages and the
    result of the first clean import, or ``None``."""
    packages: list[str] = []
    for _ in range(_ISOLATION_ROUNDS):
        new = [
            top
            for top in dict.fromkeys(_refusal.top_level(m) for m, _ in refused)
            if top not in packages and _can_isolate(top)
        ]
        if not new:
            return None
        packages += new
        result = _in_worker(name, call, isolate=list(packages))
        if result["ok"] and not result["refused"]:
            return packages, result
        refused = result["refused"]
    return None


def _together(name: str, workers: int = 2, **options: Any) -> dict[str, Any]:
    """Run ``name``'s real operation (:mod:`._operations`) on ``workers`` workers at once; the
    first failure, or the first result (``ok``, ``what``), with the refusals of all of them."""
    arrive: Queue[int] = Queue()
    go: Queue[None] = Queue()
    results: list[dict[str, Any]] = []
    with InterpreterPoolExecutor(workers, max_tasks_per_worker=1, fallback=None, **options) as pool:
        futures = [pool.submit(_operations.run_together, arrive, go, name) for _ in range(workers)]
        arrived = 0
        while arrived < workers and not any(f.done() for f in futures):
            try:
                arrive.get(timeout=0.2)
                arrived += 1
            except Exception:  # QueueEmpty
                continue
        for _ in range(workers):
            go.put(None)
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # the worker itself broke
                results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}", "refused": []})
    refused = list({m: [m, msg] for r in results for m, msg in r["refused"]}.values())
    failed = [r for r in results if not r["ok"]]
    return {**(failed[0] if failed else results[0]), "refused": refused}


def _real_call(name: str, report: dict[str, Any]) -> None:
    """Run ``name``'s real operation in 2 workers at once with the ``isolate=`` the import
    needed, growing it with the packages refused during the call; on failure the status
    becomes ``fails`` (see the module docstring)."""
    if not _operations.known(name):
        return
    packages: list[str] = list(report["isolate"] or []) if report["status"] == "isolated" else []
    for _ in range(_ISOLATION_ROUNDS + 1):
        result = _together(name, isolate=list(packages)) if packages else _together(name)
        if result["ok"]:
            report["operation"] = result["what"]
            if packages and (report["status"] == "worker" or packages != report["isolate"]):
                # the call needed more than the import: what it needed is the answer
                report.update(status="isolated", isolate=packages, degraded=False, fixes=[])
            return
        new = [
            top
            for top in dict.fromkeys(_refusal.top_level(m) for m, _ in result["refused"])
            if top not in packages and _can_isolate(top)
        ]
        if not new or not isolation_supported():
            break
        packages += new
    where = f"isolate={packages!r}" if packages else "a plain worker"
    report.update(
        status="fails",
        degraded=False,
        error=f"it imports, but a real call fails in 2 workers at once ({where}): {result['error']}",
    )


def check_module(name: str, call: str | None = None) -> dict[str, Any]:
    """The report for one module (see the module docstring); ``call``: code to run after the
    import (default: ``KNOWN_CALLS``' for the module)."""
    known_fix = None
    if call is None and name in KNOWN_CALLS:
        call, known_fix = KNOWN_CALLS[name]
    report = _check_import(name, call)
    ran = report.pop("_ran", None)
    report["call"] = None
    if call is None:
        return report
    report["call"] = {"code": call, "error": None if ran is None else ran.get("call_error")}
    if ran is None or report["call"]["error"] is None:
        return report
    error = report["call"]["error"]
    fixes = [known_fix] if known_fix else []
    if report["status"] == "lane":
        report["call"]["in_process"] = False
        report["error"] = f"it imports in the fallback lane's process, but {call} fails there: {error}"
    else:
        process = _in_lane_process(name, call)
        in_process = bool(process["ok"] and process.get("call_error") is None)
        report["call"]["in_process"] = in_process
        report["error"] = (
            f"it imports, but {call} fails in a worker: {error}. Its calls are not moved to the fallback lane, "
            "since no import fails" + (" (the call works in a separate process)" if in_process else "")
        )
        if in_process:
            fixes.append("run such calls in the main interpreter or on a ProcessPoolExecutor")
    report.update(status="fails", fixes=fixes)
    return report


def _check_import(name: str, call: str | None) -> dict[str, Any]:
    """Where ``name`` imports; ``_ran`` in the report: the probe that ran ``call`` where the
    module imports (a worker, an isolated worker, the lane's process), if one did."""
    worker = _in_worker(name, call, isolate=None)  # a plain worker first (the default isolates)
    all_refused = worker["refused"] + worker["later"]
    # Refused and warned (polars): its calls fail at first use, and no import fails.
    swallowed = bool(worker["ok"] and worker["refused"] and worker["warnings"])
    report: dict[str, Any] = {
        "module": name,
        "status": "fails",
        "degraded": bool(worker["ok"] and all_refused),
        "file": worker.get("file"),
        "distribution": _refusal.distribution(name),
        "refused": _refused_entries(worker["refused"]) + _refused_entries(worker["later"], later=True),
        "warnings": worker["warnings"],
        "error": None if worker["ok"] else worker["error"],
        "isolate": None,
        "operation": None,
        "fixes": [],
    }
    isolated = _isolated(name, all_refused, call) if all_refused and isolation_supported() else None
    if worker["ok"] and not swallowed:
        report["status"] = "worker"
        report["_ran"] = worker
        if isolated is not None:
            report["isolate"] = isolated[0]
            report["fixes"].append(f"InterpreterPoolExecutor(isolate={isolated[0]!r}) keeps them{_auto(isolated[0])}")
        _real_call(name, report)
        return report
    if isolated is not None:
        report.update(
            status="isolated", isolate=isolated[0], file=isolated[1]["file"], warnings=isolated[1]["warnings"]
        )
        report["_ran"] = isolated[1]
        _real_call(name, report)
        return report
    if swallowed:
        lane = _in_lane_process(name)
        fully = lane["ok"] and not lane["refused"]
        report["error"] = (
            f"it imports, but {_accelerators(report)}. Its calls are not moved to the fallback lane, since no "
            "import fails" + (" (it imports fully in a separate process)" if fully else "")
        )
        fixes = _refusal.fixes(worker["refused"][-1][0], lane=False)
        report["fixes"] = [fix for fix in fixes if "isolate=" not in fix] or [
            "use it in the main interpreter, or on a ProcessPoolExecutor"
        ]
        return report
    refusal = worker.get("refusal") or bool(worker["refused"])
    lane = _in_lane_process(name, call)
    if refusal and lane["ok"]:
        # The module whose refusal failed the import (others refused on the way were optional).
        blocker = worker.get("refused_module") or (worker["refused"][-1][0] if worker["refused"] else name)
        report.update(status="lane", file=lane["file"], blocker=blocker, _ran=lane)
        report["fixes"] = _refusal.fixes(blocker, lane=False)
        if isolation_supported() and worker["refused"]:  # tried above: it did not help
            report["fixes"] = [fix for fix in report["fixes"] if "isolate=" not in fix]
            packages = list(dict.fromkeys(_refusal.top_level(m) for m, _ in worker["refused"]))
            copyable = [package for package in packages if _can_isolate(package)]
            if copyable:  # (built-in modules have no file to copy: isolation is not an option)
                report["fixes"].append(f"isolate={copyable!r} does not make it load in a worker")
    elif lane["ok"]:  # imports in a process, but a worker fails it for another reason
        report["error"] = f"{worker['error']} (it imports in a separate process, but not in a worker interpreter)"
    else:
        report["error"] = lane["error"] if not refusal else f"{worker['error']}; in a process: {lane['error']}"
    return report


_LABELS = {"worker": "ok", "isolated": "ISOLATED", "lane": "LANE", "fails": "FAIL"}


def _names(entries: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{entry['module']}" + (f" ({entry['distribution']})" if entry["distribution"] else "") for entry in entries
    )


def _accelerators(report: dict[str, Any]) -> str:
    """What was refused, as a clause: "without its accelerator ...; ..."."""
    during = [entry for entry in report["refused"] if not entry["later"]]
    later = [entry for entry in report["refused"] if entry["later"]]
    if report["warnings"] and during:
        return (
            f"without its extension module(s) {_names(during)} (refused here), and it warned: expect calls to fail "
            "at first use"
        )
    parts = []
    if during:
        plural = "s" if len(during) > 1 else ""
        parts.append(
            f"without its accelerator{plural} {_names(during)}; a pure-Python fallback runs instead, expect it to "
            "be slower"
        )
    if later:
        plural = "s" if len(later) > 1 else ""
        parts.append(
            f"its extension module{plural} {_names(later)}, loaded only when used, cannot load here: code that "
            f"needs {'them' if plural else 'it'} runs a pure-Python fallback if the package has one (slower), or "
            "fails"
        )
    return "; ".join(parts)


def _auto(packages: list[str]) -> str:
    """Whether the default, ``isolate="auto"``, isolates these packages too (not the stdlib's)."""
    if any(_refusal.in_stdlib(package) for package in packages):
        return ""
    return " (as the default, isolate='auto', does)"


def format_report(report: dict[str, Any]) -> list[str]:
    """The text lines for one module."""
    name, status = report["module"], report["status"]
    label = "DEGRADED" if status == "worker" and report["degraded"] else _LABELS[status]
    if status == "worker":
        text = f"works in a worker ({report['file']})"
        if report["degraded"]:
            text = f"works in a worker: it imports, but {_accelerators(report)}"
    elif status == "isolated":
        text = f"works only isolated: InterpreterPoolExecutor(isolate={report['isolate']!r}){_auto(report['isolate'])}"
    elif status == "lane":
        blocker = next((entry for entry in report["refused"] if entry["module"] == report.get("blocker")), None)
        why = (
            f"extension module {_refusal.name_of(blocker['module'])} cannot load in an own-GIL interpreter "
            f"({blocker['message']})"
            if blocker
            else (report["error"] or "it cannot load in a worker interpreter")
        )
        text = f"works only in the fallback lane (calls that need it run in a process): {why}"
    else:
        text = f"fails in a worker: {report['error']}" if report["degraded"] else f"fails: {report['error']}"
    if report.get("operation") and status in ("worker", "isolated"):
        text += f" (a real call in 2 workers at once: {report['operation']})"
    if report.get("call") and report["call"]["error"] is None:
        text += f"; {report['call']['code']} ran there"
    lines = [f"{label:<9} {name}: {text}"]
    lines += [f"{'':<10}warning: {warning}" for warning in report["warnings"]]
    lines += [f"{'':<10}fix: {fix}" for fix in report["fixes"]]
    return lines


def failed(report: dict[str, Any], strict: bool) -> bool:
    if report["status"] == "fails":
        return True
    return strict and (report["status"] != "worker" or report["degraded"] or bool(report["warnings"]))


def main(
    modules: Sequence[str], as_json: bool = False, strict: bool = False, calls: Mapping[str, str] | None = None
) -> int:
    """``calls``: module name -> code to run after its import (``--call MODULE=CODE``)."""
    calls = calls or {}
    reports = [check_module(name, calls.get(name)) for name in modules]
    if as_json:
        document = {
            "python": sys.version.split()[0],
            "isolation_available": isolation_supported(),
            "modules": reports,
        }
        print(json.dumps(document, indent=2))
    else:
        for report in reports:
            print("\n".join(format_report(report)))
    return 1 if any(failed(report, strict) for report in reports) else 0
