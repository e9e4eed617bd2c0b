"""Task functions of the isolation tests (workers import them by name)."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def bump(module: str, times: int = 1) -> list[int]:
    """Import an extension module and increment its C counter ``times`` times."""
    mod: Any = importlib.import_module(module)
    return [mod.bump() for _ in range(times)]


def dep() -> int:
    """Increment the counter of the library bundled with ``ipt_pkg`` (one per process)."""
    from ipt_pkg import _single  # type: ignore[import-not-found]

    return int(_single.dep())


def module_facts(module: str) -> dict[str, Any]:
    mod = importlib.import_module(module)
    return {
        "file": mod.__file__,
        "executed": getattr(mod, "EXECUTED", None),
        "in_sys_modules": module in sys.modules,
    }


def try_import(module: str) -> str:
    """'ok', or the ImportError's message."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return str(exc)
    return "ok"


def pylinked(arrive: Any, go: Any) -> dict[str, Any]:
    """Wait at a rendezvous (``arrive``/``go``: interpool queues) so that every worker of the
    pool runs this at the same time, then use ``ipt_pkg._pylinked``: its bundled libraries
    libiptpy.so.1 (links against Python) and libiptpy2.so.1 (needs it) must be this worker's
    own, libiptdep.so the process's."""
    from interpool import _interpool

    arrive.put(_interpool.interpreter_id())
    go.get(timeout=120)
    from ipt_pkg import _pylinked  # type: ignore[import-not-found]

    return {
        "interp": _interpool.interpreter_id(),
        "first": _pylinked.first(),
        "bumps": [_pylinked.bump() for _ in range(3)],
        "twice": _pylinked.bump_twice(),
        "dep": _pylinked.dep(),
    }


def imported(names: list[str]) -> dict[str, bool]:
    """Import ``names``; then which of interpool's isolation module and the names are in
    ``sys.modules``."""
    for name in names:
        importlib.import_module(name)
    return {name: name in sys.modules for name in ["interpool._isolate", *names]}


def numpy_inside(values: list[int]) -> tuple[int, int]:
    """How tasks are often written: the import inside the function. The sum, and where it ran."""
    import numpy as np

    from interpool import _interpool

    return int(np.asarray(values).sum()), _interpool.interpreter_id()


def threads_call_back(arrive: Any, go: Any) -> dict[str, int]:
    """After a rendezvous of every worker of the pool (``arrive``/``go``: interpool queues), call
    back into Python from ``ipt_pkg._threads``' own thread (PyGILState_Ensure on a thread with
    no thread state) and from this thread detached and attached: the interpreter each call ran
    in, with this one's."""
    from interpool import _interpool

    arrive.put(_interpool.interpreter_id())
    go.get(timeout=120)
    from ipt_pkg import _threads  # type: ignore[import-not-found]

    return {
        "here": _interpool.interpreter_id(),
        "thread": _threads.call_in_thread(_interpool.interpreter_id),
        "threads": sum(_threads.call_in_thread(_interpool.interpreter_id) for _ in range(50)) // 50,
        "detached": _threads.call_detached(_interpool.interpreter_id),
    }
