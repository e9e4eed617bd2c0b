"""What ``python -m interpool check`` runs where a module is tried (a fresh worker
interpreter, or a process of the fallback lane): import it while watching the import
system's extension and built-in loaders, so that extension modules refused on the way are
recorded even when the import succeeds; then load the distribution's other extension
modules (some packages load their accelerator only when first used). Kept apart from
``_check.py`` so that a worker imports only this and ``_refusal``."""

from __future__ import annotations

import functools
import sys

from . import _refusal

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

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


def probe(name: str, call: str | None = None) -> dict[str, Any]:
    """Import ``name`` in this interpreter (a worker, or a process of the lane) and report:
    ``ok``, ``file`` or the error, the extension modules refused on the way (``refused``:
    ``[module, message]`` pairs, also when the import succeeded), those of its distribution
    refused when loaded after it (``later``), and the warnings the import raised. With
    ``call`` (Python code), run it after a successful import, with the module's top-level
    package bound to its name, and report ``call_error`` (``None`` when it ran)."""
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
            # The warning an isolated numpy gives in any subinterpreter does not apply to a
            # private copy (docs/isolation.md); isolated workers filter it, as here.
            warnings.filterwarnings("ignore", message="NumPy was imported from a Python sub-interpreter")
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
    if call is not None and result["ok"]:
        result["call_error"] = _run_call(name, call)
    return result


def _run_call(name: str, call: str) -> str | None:
    """Run ``call`` as a user's code would after ``import name``: ``None``, or the error it
    raised, followed by the errors it was explicitly raised from (``raise ... from``) whose
    message it does not already carry."""
    import importlib

    top = name.partition(".")[0]
    namespace: dict[str, Any] = {"__name__": "__interpool_check__", top: importlib.import_module(top)}
    try:
        exec(compile(call, "<interpool check --call>", "exec"), namespace)
    except BaseException as exc:
        text = f"{type(exc).__name__}: {exc}"
        cause, seen = exc.__cause__, {id(exc)}
        while cause is not None and id(cause) not in seen and len(seen) < 4:
            seen.add(id(cause))
            if str(cause) not in text:
                text += f"; raised from {type(cause).__name__}: {cause}"
            cause = cause.__cause__
        return text
    return None


def _unique(pairs: list[tuple[str, str]], skip: dict[str, str]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for module_name, message in pairs:
        if module_name not in skip:
            seen.setdefault(module_name, message)
    return seen
