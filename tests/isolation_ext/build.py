"""Build the test extension packages of tests/test_isolation.py with the running Python's
headers (a C compiler is on every machine that builds interpool: Rust links with it).

Layout, as a wheel repaired by auditwheel would have it:

    ipt_pkg/__init__.py
    ipt_pkg/_single<EXT>   single-phase, a C counter, links libiptdep through $ORIGIN
    ipt_pkg/_multi<EXT>    multi-phase without Py_mod_multiple_interpreters, a C counter
    ipt_pkg/_broken<EXT>   its init function raises
    ipt_pkg/_mainonly<EXT> its exec slot fails outside the main interpreter
    ipt_pkg/_pylinked<EXT> single-phase, links libiptpy2.so.1 and libiptpy.so.1 through $ORIGIN
    ipt_pkg/_threads<EXT>  multi-phase; its own threads call back into Python (PyGILState_Ensure)
    ipt_pkg.libs/libiptdep.so
    ipt_pkg.libs/libiptpy.so.1   links against Python (as libarrow_python.so), needs libiptdep.so
    ipt_pkg.libs/libiptpy2.so.1  no Python symbols, needs libiptpy.so.1
    ipt_other/__init__.py, ipt_other/_multi<EXT>
    ipt_wrap/__init__.py   pure Python: imports ipt_pkg._multi and, as pandas does with numpy,
                           raises its own ImportError from the refusal
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))


_WRAP = '''"""Needs ipt_pkg._multi, and wraps its ImportError as pandas wraps numpy's."""

try:
    from ipt_pkg._multi import bump
except ImportError as _e:
    raise ImportError(
        "Unable to import required dependency ipt_pkg. Please see the traceback for details."
    ) from _e

WHERE = "imported"
'''


def _cc(*args: str) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", *args], check=True, capture_output=True, text=True)


def build(dest: str) -> str:
    """Build the packages under ``dest`` (a directory to put on ``sys.path``); return it."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    include = sysconfig.get_paths()["include"]
    libs = os.path.join(dest, "ipt_pkg.libs")
    for package in ("ipt_pkg", "ipt_other"):
        os.makedirs(os.path.join(dest, package), exist_ok=True)
        with open(os.path.join(dest, package, "__init__.py"), "w") as f:
            f.write('"""A test package with extension modules that refuse worker interpreters."""\n')
    os.makedirs(os.path.join(dest, "ipt_wrap"), exist_ok=True)
    with open(os.path.join(dest, "ipt_wrap", "__init__.py"), "w") as f:
        f.write(_WRAP)
    os.makedirs(libs, exist_ok=True)
    _cc(os.path.join(HERE, "dep.c"), "-o", os.path.join(libs, "libiptdep.so"), "-Wl,-soname,libiptdep.so")
    _cc(
        f"-I{include}",
        os.path.join(HERE, "single.c"),
        "-o",
        os.path.join(dest, "ipt_pkg", "_single" + suffix),
        f"-L{libs}",
        "-liptdep",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../ipt_pkg.libs",
    )
    pylib, pylib2 = os.path.join(libs, "libiptpy.so.1"), os.path.join(libs, "libiptpy2.so.1")
    origin = "-Wl,--enable-new-dtags,-rpath,$ORIGIN"
    _cc(
        f"-I{include}",
        os.path.join(HERE, "pylib.c"),
        "-o",
        pylib,
        "-Wl,-soname,libiptpy.so.1",
        f"-L{libs}",
        "-liptdep",
        origin,
    )
    _cc(os.path.join(HERE, "pylib2.c"), "-o", pylib2, "-Wl,-soname,libiptpy2.so.1", pylib, origin)
    _cc(
        f"-I{include}",
        os.path.join(HERE, "pylinked.c"),
        "-o",
        os.path.join(dest, "ipt_pkg", "_pylinked" + suffix),
        pylib2,
        pylib,
        origin + "/../ipt_pkg.libs",
    )
    for package in ("ipt_pkg", "ipt_other"):
        _cc(f"-I{include}", os.path.join(HERE, "multi.c"), "-o", os.path.join(dest, package, "_multi" + suffix))
    _cc(
        f"-I{include}",
        os.path.join(HERE, "threads.c"),
        "-o",
        os.path.join(dest, "ipt_pkg", "_threads" + suffix),
        "-pthread",
    )
    for name in ("broken", "mainonly"):
        _cc(f"-I{include}", os.path.join(HERE, f"{name}.c"), "-o", os.path.join(dest, "ipt_pkg", f"_{name}" + suffix))
    return dest
