"""A task module that needs ``ipt_wrap``, whose import raises its own ImportError from the
refusal of ``ipt_pkg._multi`` (as pandas does with numpy's): a worker cannot load this module,
so its calls run in the fallback lane."""

from __future__ import annotations

import ipt_wrap  # type: ignore[import-not-found]


def bump() -> int:
    return int(ipt_wrap.bump())
