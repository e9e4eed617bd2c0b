"""The examples in examples/ run as documented (each in a fresh process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The examples use the public API only; what they exercise that depends on the Python is tested
# on every Python by the other files.
pytestmark = pytest.mark.one_python

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")))
def test_example_runs(name: str) -> None:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "an example prints what it did"
