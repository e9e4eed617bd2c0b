"""A task module that needs an extension module which loads in the main interpreter only:
isolated or not, a worker cannot load this module, so its calls run in the fallback lane."""

from __future__ import annotations

from ipt_pkg import _mainonly  # type: ignore[import-not-found]


def where() -> str:
    return str(_mainonly.WHERE)
