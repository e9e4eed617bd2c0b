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
