"""Extension modules that refuse own-GIL interpreters: recognize their ImportError, name the
module as users know it (full dotted name, the distribution that installed it), and say what
helps.

Used in worker interpreters (``_worker._explain`` rewrites CPython's terse message), by the
fallback lane (``_lane.py``: which calls move there, and the ``FallbackWarning``) and by
``python -m interpool check`` (``_check.py``). Imported on failure paths only.

A module refuses in one of these ways, each an ``ImportError`` raised while it loads:

* CPython's own check (``Python/import.c``): single-phase init, or no
  ``Py_mod_multiple_interpreters`` slot: "module X does not support loading in
  subinterpreters" (numpy, PyO3 modules, mypyc-compiled modules, faulthandler, readline);
* the module's own guard against process-wide C state: "cannot load module more than once per
  process" (numpy's ``_multiarray_umath``), "module 'curses' can only be loaded once per
  process", PyO3's "PyO3 modules do not yet support subinterpreters", Cython's "Interpreter
  change detected - this module can only be loaded into one interpreter per process";
* since 3.13, an init function that fails in the main interpreter, where CPython runs it for
  a subinterpreter: "failed to import from subinterpreter due to exception" (black's mypyc
  module on 3.13 when a worker imports it first; the worker's loader wrapper,
  ``_worker._gate``, names the module, as the message does not).

An importer may catch the refusal and raise its own ImportError from it (pandas: "Unable to
import required dependency numpy"): :func:`find_refusal` follows the chain.
"""

from __future__ import annotations

import re
import sys

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

# Phrases of the messages above (matched case-insensitively).
MARKERS = (
    "does not support loading in subinterpreters",
    "more than once per process",
    "loaded once per process",
    "do not yet support subinterpreters",
    "into one interpreter per process",
    # CPython 3.13 (Python/import.c) runs an extension's init function in the main interpreter
    # when a subinterpreter imports it first; when that fails (black's mypyc module: "frame
    # does not exist"), the subinterpreter gets only this. The module is single-phase (a
    # multi-phase init cannot fail there), so a worker would refuse it anyway.
    "failed to import from subinterpreter due to exception",
    # isolate= (_isolate.py): the private copy did not load either
    "failed to load from its private copy",
)
_CPYTHON = re.compile(r"module (\S+) does not support loading in subinterpreters")
# How _isolate.py's errors start.
_ISOLATE_ERROR = "isolate: "
# Marks a message that explain() already rewrote (it keeps the original message inside).
_EXPLAINED = "cannot be loaded in an interpool worker interpreter"


# How many links of an exception's chain (``__cause__``, ``__context__``) are searched for a
# refusal: an importer may wrap it (pandas: "Unable to import required dependency numpy"),
# and the owner's rebuilt exception adds an ExecutionFailed link per hop.
_CHAIN_LINKS = 16


def _refuses(exc: ImportError) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in MARKERS)


def find_refusal(exc: BaseException) -> ImportError | None:
    """The refusal that made ``exc`` fail: ``exc`` itself, or, when ``exc`` is an ImportError,
    the first refusal in its chain (``__cause__`` before ``__context__``, at most
    ``_CHAIN_LINKS`` links, each once), as when an importer catches the refusal and raises its
    own ImportError from it."""
    if not isinstance(exc, ImportError):
        return None  # (a task that turned the refusal into another error wants that error)
    if _refuses(exc):
        return exc
    seen = {id(exc)}
    pending: list[BaseException] = [exc]
    links = 0
    while pending:
        current = pending.pop(0)
        for linked in (current.__cause__, current.__context__):
            if linked is None or id(linked) in seen:
                continue
            if links == _CHAIN_LINKS:
                return None
            seen.add(id(linked))
            links += 1
            if isinstance(linked, ImportError) and _refuses(linked):
                return linked
            pending.append(linked)
    return None


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is the ImportError of a module that cannot load in an own-GIL
    interpreter (as CPython, PyO3, Cython or the module itself raise it, or as explained), or
    an ImportError raised from one (:func:`find_refusal`)."""
    return find_refusal(exc) is not None


def isolation_failure(exc: BaseException) -> str | None:
    """When ``exc`` is isolate='s error (the private copy did not load), or an ImportError
    raised from it: what it says."""
    text = str(find_refusal(exc) or exc)
    return text[len(_ISOLATE_ERROR) :] if text.startswith(_ISOLATE_ERROR) else None


def refused_module(exc: BaseException) -> str | None:
    """The full dotted name of the module whose loading raised ``exc`` (a refusal, or an
    ImportError raised from one), when the error tells it."""
    exc = find_refusal(exc) or exc
    if isinstance(exc, ImportError) and _EXPLAINED in str(exc) and exc.name:
        return exc.name
    match = _CPYTHON.search(str(exc))
    if match is None:
        return exc.name if isinstance(exc, ImportError) else None
    name = match.group(1)
    # CPython names the module as it names itself: `_psutil_linux` for psutil._psutil_linux.
    return name if "." in name else _full_name(name, exc.__traceback__)


def _full_name(short: str, tb: TracebackType | None) -> str:
    """``short`` qualified with the package of the module that imported it, when its file is
    there. (CPython trims the import system's frames from an ImportError's traceback, so the
    innermost frame is the importing module's.)"""
    if tb is None:
        return short
    while tb.tb_next is not None:
        tb = tb.tb_next
    namespace = tb.tb_frame.f_globals
    package, path = namespace.get("__package__"), namespace.get("__file__")
    if not package or not isinstance(path, str):
        return short
    import os
    from importlib.machinery import PathFinder

    try:
        found = PathFinder.find_spec(short, [os.path.dirname(path)])
    except Exception:
        found = None
    return f"{package}.{short}" if found is not None else short


def importer(exc: BaseException) -> str | None:
    """The module whose code was importing when ``exc`` was raised (its innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_globals.get("__name__")
    return name if isinstance(name, str) else None


def top_level(module: str) -> str:
    return module.partition(".")[0]


def in_stdlib(module: str) -> bool:
    top = top_level(module)
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


_packages: Mapping[str, list[str]] | None = None


def distribution(module: str) -> str | None:
    """The distribution (as pip knows it) that installed ``module``, or ``None`` (the standard
    library, or not found)."""
    global _packages
    if in_stdlib(module):
        return None
    packages = _packages
    if packages is None:
        try:
            from importlib import metadata

            packages = metadata.packages_distributions()
        except Exception:  # broken metadata must not hide the real error
            packages = {}
        _packages = packages
    names = packages.get(top_level(module)) or []
    return names[0] if names else None


def mypyc_compiled(module: str, dist: str | None) -> bool:
    """Whether the module comes from a wheel compiled with mypyc (black, isort, tomli, chardet,
    charset-normalizer...), whose pure-Python ``py3-none-any`` wheel works in workers."""
    if "__mypyc" in module:
        return True
    if dist is None:
        return False
    try:
        from importlib import metadata

        return any("__mypyc" in path.name for path in metadata.files(dist) or ())
    except Exception:
        return False


def isolation_available() -> bool:
    """Whether ``InterpreterPoolExecutor(isolate=...)`` works here (a private copy of an
    extension module per worker, ``interpool._isolate``; CPython 3.13+)."""
    from . import _isolate

    return _isolate.supported()


def name_of(module: str) -> str:
    """``'numpy._core._multiarray_umath' (package numpy, distribution numpy)``, or
    ``'faulthandler' (standard library)``."""
    if in_stdlib(module):
        return f"{module!r} (standard library)"
    dist = distribution(module)
    where = f"package {top_level(module)}" + (f", distribution {dist}" if dist else "")
    return f"{module!r} ({where})"


def fixes(module: str, lane: bool = True) -> list[str]:
    """What helps a call that needs ``module`` (refused by own-GIL interpreters); ``lane``:
    including the fallback lane."""
    top = top_level(module)
    dist = distribution(module)
    found = []
    if mypyc_compiled(module, dist):
        name = dist or top
        found.append(
            f"{name} is compiled with mypyc; its pure-Python wheel works in workers: pip download --no-deps "
            f"--only-binary=:all: --platform any {name}, then pip install --force-reinstall --no-deps the "
            "downloaded *-py3-none-any.whl"
        )
    if isolation_available() and module not in sys.builtin_module_names:
        found.append(f"InterpreterPoolExecutor(isolate=[{top!r}]) gives each worker a private copy of it")
    if lane:
        found.append(
            "fallback='process' (the default) runs the calls that need it in a process instead: transparently "
            f"when {top} is imported at the top of the task's module or first in the function (fallback='thread': in "
            "a thread of the main interpreter)"
        )
    if in_stdlib(module):
        found.append(f"use {top} in the main interpreter only")
    return found


def explain(exc: BaseException) -> BaseException:
    """``exc`` rewritten for users when it is a refusal (or an ImportError raised from one): an
    ImportError that names the full dotted module (its ``name``; when the message does not tell
    it, the module that imported it), its distribution, the refusal's message and the fixes;
    ``exc`` otherwise."""
    refusal = find_refusal(exc)
    if refusal is None or _EXPLAINED in str(exc) or _EXPLAINED in str(refusal):
        return exc
    if str(refusal).startswith(_ISOLATE_ERROR):
        return exc  # (isolate='s own error already names the module, the file and the reason)
    module = refused_module(refusal)
    if module is not None:
        subject = f"extension module {name_of(module)}"
    else:
        module = importer(refusal)
        if module is None:
            return exc
        subject = f"an extension module imported by {name_of(module)}"
    steps = "; ".join(f"({n}) {text}" for n, text in enumerate(fixes(module), 1))
    wrapped = "" if refusal is exc else f" (raised as {type(exc).__name__}: {exc})"
    better = ImportError(
        f"{subject} {_EXPLAINED} (each has its own GIL, PEP 684): {refusal}{wrapped}. What helps: {steps}.",
        name=module,
    )
    better.__cause__ = exc
    return better
