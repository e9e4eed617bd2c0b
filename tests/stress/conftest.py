"""Stress tests: modest sizes under `make test`; set INTERPOOL_STRESS=1 for the large ones."""

from __future__ import annotations

import os

LARGE = os.environ.get("INTERPOOL_STRESS", "") not in ("", "0")


def size(small: int, large: int) -> int:
    return large if LARGE else small


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
