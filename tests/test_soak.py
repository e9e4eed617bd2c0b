"""A bounded slice of `make soak` (scripts/soak.py): two rounds (one in the fast tier) of every
scenario that aborted the process before (a Dask cluster in-process and from the command line,
isolated pools, calls moved to the fallback lane then exit, recycling, shutdown while busy),
each round in a fresh process, its exit status and results checked."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import soak

from conftest import rounds

ROUNDS = int(os.environ.get("INTERPOOL_SOAK_ROUNDS", rounds(2, 1)))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(soak.SCENARIOS))
def test_soak_slice(name: str) -> None:
    why = soak.SCENARIOS[name][1]()
    if why is not None:
        pytest.skip(why)
    lines: list[str] = []
    tally = soak.soak(ROUNDS, [name], lines.append)[name]
    assert tally.ok == tally.rounds == ROUNDS, "\n".join(lines)
