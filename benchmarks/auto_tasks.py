"""Task functions for benchmarks/bench_default.py (workers import them by name)."""

from __future__ import annotations

import importlib
import os
import sys
import time

# Pure-Python stdlib modules and the stdlib's own extension modules (lib-dynload) that a
# fresh worker has not imported: what an isolation import hook would slow down.
IMPORTS = (
    "json",
    "csv",
    "decimal",
    "fractions",
    "statistics",
    "datetime",
    "email.parser",
    "email.message",
    "http.client",
    "urllib.parse",
    "xml.etree.ElementTree",
    "html.parser",
    "configparser",
    "argparse",
    "logging",
    "pathlib",
    "tempfile",
    "shutil",
    "textwrap",
    "dataclasses",
    "enum",
    "typing",
    "inspect",
    "ast",
    "difflib",
    "pprint",
    "string",
    "uuid",
    "zlib",
    "array",
    "select",
    "socket",
    "struct",
    "bisect",
    "heapq",
    "random",
    "math",
    "cmath",
    "unicodedata",
    "binascii",
    "base64",
    "hashlib",
    "pickle",
    "copy",
    "queue",
    "contextlib",
    "functools",
    "operator",
    "itertools",
    "collections",
)


def import_all(names: tuple[str, ...] = IMPORTS) -> tuple[float, int]:
    """Import ``names`` here; seconds taken and how many modules were new."""
    before = len(sys.modules)
    t0 = time.perf_counter()
    for name in names:
        importlib.import_module(name)
    return time.perf_counter() - t0, len(sys.modules) - before


def meta_path() -> list[str]:
    """The classes on this interpreter's ``sys.meta_path``, and whether interpool's isolation
    module was imported here."""
    finders = [(finder if isinstance(finder, type) else type(finder)).__qualname__ for finder in sys.meta_path]
    return [*finders, f"interpool._isolate imported: {'interpool._isolate' in sys.modules}"]


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def pandas_sum(n: int) -> tuple[int, int]:
    """A small pandas group-by (pandas and numpy imported in the task); the result and the
    process it ran in."""
    import pandas as pd

    frame = pd.DataFrame({"key": [i % 3 for i in range(n)], "value": range(n)})
    return int(frame.groupby("key")["value"].sum().sum()), os.getpid()
