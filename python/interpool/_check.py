"""``python -m interpool check MODULE...``: where each module can run, told in full.

For each module, in the order the executor itself tries:

1. import it in a fresh worker interpreter (``fallback=None``, one interpreter per module, so an
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

Statuses: ``worker`` (works in a worker; ``degraded`` when extension modules were refused),
``isolated`` (works only isolated), ``lane`` (works only in the fallback lane), ``fails``
(why; also an import that succeeds only after swallowing a refusal *and warning*, as polars
does: its calls fail at first use, and the executor cannot move them to the lane, since no
import failed). The exit status is 1 when a module fails (``--strict``: also when any is not
fully usable in a plain worker).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import _lane, _refusal
from ._dispatch import TaskFuture
from ._executor import InterpreterPoolExecutor

# How many times isolation is retried with the packages refused in the previous attempt.
_ISOLATION_ROUNDS = 4
# At most this many of a distribution's extension modules are loaded after its import.
_MAX_EXTENSIONS = 200


def _watch(cls: type, attr: str, sink: list[tuple[str, str]]) -> Callable[[], None]:
    """Wrap the loader method ``cls.attr`` to record refusals into ``sink``; returns the undo."""
    raw = cls.__dict__.get(attr)
    if raw is None:
        return lambda: None
    wrapper = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
    func = raw.__func__ if wrapper is not None else raw

    @functools.wraps(func)
    def watched(*args: Any) -> Any:
        try:
            return func(*args)
        except ImportError as exc:
            if _refusal.is_refusal(exc):
                target = args[-1] if args else None
                name = getattr(target, "name", None) or getattr(target, "__name__", None) or "?"
                sink.append((str(name), str(exc)))
            raise

    setattr(cls, attr, wrapper(watched) if wrapper is not None else watched)
    return lambda: setattr(cls, attr, raw)


def _blocker(exc: BaseException, refused: list[tuple[str, str]]) -> str | None:
    """The full name of the module whose refusal failed the import: CPython's message may
    give only the name the module calls itself (``_psutil_linux``); the loaders saw its spec."""
    name = _refusal.refused_module(exc)
    if name is None:
        return refused[-1][0] if refused else None
    tail = name.rpartition(".")[2]
    return next((full for full, _ in reversed(refused) if full == name or full.rpartition(".")[2] == tail), name)


def _unloaded_extensions(name: str) -> list[str]:
    """The extension modules of ``name``'s distribution that are not loaded (yet)."""
    from importlib import machinery, metadata

    dist = _refusal.distribution(name)
    if dist is None:
        return []
    try:
        files = metadata.files(dist) or []
    except Exception:
        return []
    suffixes = sorted(machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    found = []
    for path in files:
        text = str(path).replace("\\", "/")
        suffix = next((s for s in suffixes if text.endswith(s)), None)
        if suffix is None:
            continue
        parts = text[: -len(suffix)].split("/")
        if all(part.isidentifier() for part in parts):  # not a bundled library (numpy.libs/...)
            module = ".".join(parts)
            if module not in sys.modules:
                found.append(module)
    return found[:_MAX_EXTENSIONS]


def probe(name: str) -> dict[str, Any]:
    """Import ``name`` in this interpreter (a worker, or a process of the lane) and report:
    ``ok``, ``file`` or the error, the extension modules refused on the way (``refused``:
    ``[module, message]`` pairs, also when the import succeeded), those of its distribution
    refused when loaded after it (``later``), and the warnings the import raised."""
    import importlib
    import warnings
    from importlib import machinery

    refused: list[tuple[str, str]] = []
    undo = [
        _watch(loader, attr, refused)
        for loader in (machinery.ExtensionFileLoader, machinery.BuiltinImporter)
        for attr in ("create_module", "exec_module")
    ]
    result: dict[str, Any]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                module = importlib.import_module(name)
            except BaseException as exc:
                result = {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "refusal": _refusal.is_refusal(exc),
                    "refused_module": _blocker(exc, refused) if _refusal.is_refusal(exc) else None,
                }
            else:
                result = {"ok": True, "file": getattr(module, "__file__", None) or "(built in)"}
            during, during_warnings = len(refused), len(caught)
            if result["ok"]:  # accelerators that packages load only when first used
                for extension in _unloaded_extensions(name):
                    try:
                        importlib.import_module(extension)
                    except Exception:  # refusals are recorded; anything else is not ours to judge
                        pass
    finally:
        for restore in undo:
            restore()
    first = _unique(refused[:during], {})
    result["refused"] = [list(pair) for pair in first.items()]
    result["later"] = [list(pair) for pair in _unique(refused[during:], first).items()]
    result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught[:during_warnings]]
    return result


def _unique(pairs: list[tuple[str, str]], skip: dict[str, str]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for module_name, message in pairs:
        if module_name not in skip:
            seen.setdefault(module_name, message)
    return seen


def isolation_supported() -> bool:
    """Whether ``InterpreterPoolExecutor`` takes ``isolate=`` here."""
    return "isolate" in inspect.signature(InterpreterPoolExecutor).parameters


def _in_worker(name: str, **options: Any) -> dict[str, Any]:
    with InterpreterPoolExecutor(1, max_tasks_per_worker=1, fallback=None, **options) as pool:
        try:
            result: dict[str, Any] = pool.submit(probe, name).result()
        except BaseException as exc:  # the probe itself could not run (e.g. the worker broke)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "refused": [], "warnings": []}
    result.setdefault("later", [])
    return result


def _in_lane_process(name: str) -> dict[str, Any]:
    lane = _lane.ProcessLane(1, "interpool-check", None, (), 1, 5.0)
    lane.seal()  # used alone: nothing else moves calls here
    future: TaskFuture[dict[str, Any]] = TaskFuture()
    lane.submit(future, probe, (name,), {}, None)
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


def _isolated(name: str, refused: list[list[str]]) -> tuple[list[str], dict[str, Any]] | None:
    """Try ``isolate=`` with the packages of the refused modules; the packages and the
    result of the first clean import, or ``None``."""
    packages: list[str] = []
    for _ in range(_ISOLATION_ROUNDS):
        new = [top for top in dict.fromkeys(_refusal.top_level(m) for m, _ in refused) if top not in packages]
        if not new:
            return None
        packages += new
        result = _in_worker(name, isolate=list(packages))
        if result["ok"] and not result["refused"]:
            return packages, result
        refused = result["refused"]
    return None


def check_module(name: str) -> dict[str, Any]:
    """The report for one module (see the module docstring)."""
    worker = _in_worker(name)
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
        "fixes": [],
    }
    isolated = _isolated(name, all_refused) if all_refused and isolation_supported() else None
    if worker["ok"] and not swallowed:
        report["status"] = "worker"
        if isolated is not None:
            report["isolate"] = isolated[0]
            report["fixes"].append(f"InterpreterPoolExecutor(isolate={isolated[0]!r}) keeps them")
        return report
    if isolated is not None:
        report.update(
            status="isolated", isolate=isolated[0], file=isolated[1]["file"], warnings=isolated[1]["warnings"]
        )
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
    lane = _in_lane_process(name)
    if refusal and lane["ok"]:
        # The module whose refusal failed the import (others refused on the way were optional).
        blocker = worker.get("refused_module") or (worker["refused"][-1][0] if worker["refused"] else name)
        report.update(status="lane", file=lane["file"], blocker=blocker)
        report["fixes"] = _refusal.fixes(blocker, lane=False)
        if isolation_supported() and worker["refused"]:  # tried above: it did not help
            report["fixes"] = [fix for fix in report["fixes"] if "isolate=" not in fix]
            packages = list(dict.fromkeys(_refusal.top_level(m) for m, _ in worker["refused"]))
            report["fixes"].append(f"isolate={packages!r} does not make it load in a worker")
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


def format_report(report: dict[str, Any]) -> list[str]:
    """The text lines for one module."""
    name, status = report["module"], report["status"]
    label = "DEGRADED" if status == "worker" and report["degraded"] else _LABELS[status]
    if status == "worker":
        text = f"works in a worker ({report['file']})"
        if report["degraded"]:
            text = f"works in a worker: it imports, but {_accelerators(report)}"
    elif status == "isolated":
        text = f"works only isolated: InterpreterPoolExecutor(isolate={report['isolate']!r})"
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
    lines = [f"{label:<9} {name}: {text}"]
    lines += [f"{'':<10}warning: {warning}" for warning in report["warnings"]]
    lines += [f"{'':<10}fix: {fix}" for fix in report["fixes"]]
    return lines


def failed(report: dict[str, Any], strict: bool) -> bool:
    if report["status"] == "fails":
        return True
    return strict and (report["status"] != "worker" or report["degraded"] or bool(report["warnings"]))


def main(modules: Sequence[str], as_json: bool = False, strict: bool = False) -> int:
    reports = [check_module(name) for name in modules]
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
