"""isolate=: each worker loads its own private copy of extension modules.

Dependency-free: the extension modules are built from tests/isolation_ext/*.c for the
running Python (a single-phase module with a C counter linking a bundled library through
``$ORIGIN``, a multi-phase one that does not declare own-GIL support, one whose init
fails). Real packages (numpy, ...) are in test_isolation_packages.py.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from typing import Any

import isolation_tasks as tasks
import pytest

from interpool import InterpreterPoolExecutor, Queue, _interpool, _isolate

from conftest import run_script

needs_isolation = pytest.mark.skipif(not _isolate.supported(), reason="isolate= needs CPython 3.13+")


@pytest.fixture(scope="module")
def ext_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from isolation_ext.build import build

    path = build(str(tmp_path_factory.mktemp("isolation_ext")))
    sys.path.insert(0, path)
    yield path
    sys.path.remove(path)
    for name in [m for m in sys.modules if m.partition(".")[0] in ("ipt_pkg", "ipt_other")]:
        del sys.modules[name]


def test_refused_without_isolate_names_the_option(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, fallback=None, isolate=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60)
    message = str(info.value)
    assert "extension module 'ipt_pkg._multi' (package ipt_pkg) cannot be loaded" in message
    assert "does not support loading in subinterpreters" in message
    assert ("isolate=['ipt_pkg']" in message) == _isolate.supported()


# ---- the default, isolate="auto" (issue 23, item 5)


@needs_isolation
def test_by_default_refusing_extension_modules_load_in_workers(ext_path: str) -> None:
    # isolation_tasks.bump imports the module inside the task (the call has started): with
    # isolate=None that call would fail (test_refused_without_isolate_names_the_option)
    with InterpreterPoolExecutor(2) as pool:
        counts = list(pool.map(tasks.bump, ["ipt_pkg._multi", "ipt_pkg._single"] * 2, timeout=60))
        assert all(len(c) == 1 and c[0] in (1, 2) for c in counts), counts  # each worker's own counter
        assert pool.submit(tasks.bump, "ipt_other._multi").result(timeout=60) == [1]
        stats = pool.stats()
    assert stats.get("lane_submitted") == 0 and stats["isolated_files"] >= 2


@needs_isolation
def test_the_default_costs_nothing_until_an_extension_outside_the_stdlib_is_imported(ext_path: str) -> None:
    # No directory, no import of interpool._isolate in workers, no finder: the stdlib's own
    # extension modules (lib-dynload: _json, _csv, _decimal...) load as they are.
    stdlib = ["json", "csv", "decimal", "array", "hashlib", "xml.etree.ElementTree"]
    with InterpreterPoolExecutor(1, max_tasks_per_worker=2) as pool:
        assert pool._isolation is not None and pool._isolation["names"] is None  # "auto"
        first = pool.submit(tasks.imported, stdlib).result(timeout=60)
        assert first == {"interpool._isolate": False, **dict.fromkeys(stdlib, True)}
        assert pool.submit(tasks.imported, []).result(timeout=60) == {"interpool._isolate": False}
        assert _isolate.pool_dir(pool._isolation) == ""
        assert pool.stats()["isolated_files"] == 0
        # (a new worker: max_tasks_per_worker=2)
        assert pool.submit(tasks.imported, ["ipt_pkg._multi"]).result(timeout=60)["interpool._isolate"]
        directory = _isolate.pool_dir(pool._isolation)
        assert os.path.isdir(directory) and pool.stats()["isolated_files"] == 1


@needs_isolation
def test_auto_leaves_the_stdlib_to_the_lane() -> None:
    # "auto" never copies the stdlib's own modules: readline still refuses workers, and its
    # calls move to the lane as without isolation.
    import lane_late

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with InterpreterPoolExecutor(1, fallback="thread") as pool:
            assert pool.submit(lane_late.import_first, 4).result(timeout=60) == 16
            stats = pool.stats()
    assert stats["lane_submitted"] == 1 and stats["isolated_files"] == 0


@needs_isolation
def test_by_default_numpy_runs_in_workers_also_imported_inside_the_function() -> None:
    np = pytest.importorskip("numpy")
    import lane_numpy

    with InterpreterPoolExecutor(2) as pool:
        results = list(pool.map(tasks.numpy_inside, [[1, 2], [3, 4], [5, 6]], timeout=120))
        assert [total for total, _ in results] == [3, 7, 11]
        assert all(interp != 0 for _, interp in results), "ran in worker interpreters, not the main one"
        assert pool.submit(lane_numpy.total, [1, 2, 3]).result(timeout=60) == 6  # numpy at its module's top
        array = pool.submit(lane_numpy.arange, 4).result(timeout=60)
        assert isinstance(array, np.ndarray) and array.tolist() == [0, 1, 2, 3]
        stats = pool.stats()
    assert stats.get("lane_submitted") == 0 and stats["isolated_files"] >= 1


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ isolates")
def test_py312_default_and_auto_isolate_nothing() -> None:
    for pool in (InterpreterPoolExecutor(1), InterpreterPoolExecutor(1, isolate="auto")):
        with pool:
            assert pool._isolation is None
            assert pool.submit(abs, -2).result(timeout=60) == 2


@needs_isolation
@pytest.mark.parametrize("module", ["ipt_pkg._single", "ipt_pkg._multi"])
def test_each_worker_has_its_own_copy(ext_path: str, module: str) -> None:
    # Two workers held busy together, so that each task runs on a different worker: each
    # sees a C counter of its own, starting at 1.
    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"]) as pool:
        futures = [pool.submit(tasks.bump, module, 3) for _ in range(2)]
        results = [f.result(timeout=60) for f in futures]
        ids = pool.stats()
    assert results == [[1, 2, 3], [1, 2, 3]] or sorted(results) == [[1, 2, 3], [4, 5, 6]], results
    assert ids["isolated_files"] >= 1


@needs_isolation
def test_workers_count_separately_in_parallel(ext_path: str) -> None:
    from interpool import Queue

    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"]) as pool:
        first = [pool.submit(tasks.bump, "ipt_pkg._multi", 1) for _ in range(2)]
        assert [f.result(timeout=60) for f in first] in ([[1], [1]], [[1], [2]])
        Queue()  # a queue alongside isolation: still works
        many = [pool.submit(tasks.bump, "ipt_pkg._multi", 100) for _ in range(20)]
        counts = [f.result(timeout=60) for f in many]
    assert all(c == list(range(c[0], c[0] + 100)) for c in counts)


@needs_isolation
def test_main_interpreter_keeps_the_original(ext_path: str) -> None:
    import importlib

    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"]) as pool:
        facts = pool.submit(tasks.module_facts, "ipt_pkg._multi").result(timeout=60)
        worker_counts = pool.submit(tasks.bump, "ipt_pkg._multi", 2).result(timeout=60)
    original = importlib.import_module("ipt_pkg._multi")
    assert facts["executed"] == 1  # the exec slot ran in the worker
    assert facts["file"] == original.__file__  # __file__ is the original, not the copy
    assert original.bump() == 1  # the main interpreter's counter is untouched by workers
    assert worker_counts == [1, 2]


@needs_isolation
def test_bundled_library_is_loaded_once(ext_path: str) -> None:
    # libiptdep.so is found through $ORIGIN/../ipt_pkg.libs, which a copy elsewhere would
    # not find: it is loaded from where it is, once, and every copy links to that instance.
    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"]) as pool:
        values = [f.result(timeout=60) for f in [pool.submit(tasks.dep) for _ in range(10)]]
    assert sorted(values) == list(range(min(values), min(values) + 10))


def _libs(ext_path: str) -> str:
    return os.path.join(ext_path, "ipt_pkg.libs")


def test_elf_reader_finds_python_links_and_library_names(ext_path: str) -> None:
    libs = _libs(ext_path)
    pylib = _isolate._Elf(os.path.join(libs, "libiptpy.so.1"))
    assert pylib.links_python and pylib.soname == "libiptpy.so.1" and pylib.needed == ["libiptdep.so"]
    assert not _isolate._Elf(os.path.join(libs, "libiptdep.so")).links_python
    chained = _isolate._Elf(os.path.join(libs, "libiptpy2.so.1"))
    assert not chained.links_python and chained.needed == ["libiptpy.so.1"]
    ext = os.path.join(ext_path, "ipt_pkg", f"_pylinked{sysconfig.get_config_var('EXT_SUFFIX')}")
    assert _isolate._Elf(ext).bundled(ext) == [
        ("libiptpy2.so.1", os.path.join(os.path.realpath(libs), "libiptpy2.so.1")),
        ("libiptpy.so.1", os.path.join(os.path.realpath(libs), "libiptpy.so.1")),
    ]
    for path in (os.path.join(libs, "libiptpy.so.1"), ext):
        with open(path, "rb") as f:
            data = f.read()
        for name, offsets in _isolate._Elf(path).names.items():
            for offset in offsets:  # each offset starts the name's string, NUL-terminated
                assert data[offset : offset + len(name) + 1] == name.encode() + b"\0"
    assert not _isolate._Elf(__file__).names  # not an ELF file: empty


# The fact that makes a renamed copy necessary, measured in a fresh process with ctypes:
# directories A and B each hold libiptpy.so.1 and libiptpy2.so.1 (which needs it through
# $ORIGIN); A's libiptpy.so.1 is loaded first (RTLD_LOCAL), then B's (by path: a second
# instance), then B's libiptpy2.so.1. RENAME: B's copies renamed as isolate= does.
_SONAME_PROBE = """
import ctypes, json, os, shutil, sys
libs, work, rename = sys.argv[1], sys.argv[2], sys.argv[3] == "rename"
from interpool import _isolate
for d in "AB":
    os.mkdir(os.path.join(work, d))
    for name in ("libiptpy.so.1", "libiptpy2.so.1", "libiptdep.so"):
        shutil.copyfile(os.path.join(libs, name), os.path.join(work, d, name))
new = b"i0.0-py.so.1"
if rename:
    for name in ("libiptpy.so.1", "libiptpy2.so.1"):
        path = os.path.join(work, "B", name)
        offsets = _isolate._Elf(path).names["libiptpy.so.1"]
        with open(path, "r+b") as f:
            for offset in offsets:
                f.seek(offset)
                f.write(new)
mode = os.RTLD_NOW | os.RTLD_LOCAL
a = ctypes.CDLL(os.path.join(work, "A", "libiptpy.so.1"), mode=mode)
b = ctypes.CDLL(os.path.join(work, "B", "libiptpy.so.1"), mode=mode)
b2 = ctypes.CDLL(os.path.join(work, "B", "libiptpy2.so.1"), mode=mode)
a.py_bump.restype = b.py_bump.restype = b2.py2_bump_twice.restype = ctypes.c_long
print(json.dumps({"a": a.py_bump(), "b2_twice": b2.py2_bump_twice(), "a_after": a.py_bump(), "b_after": b.py_bump()}))
"""


@pytest.mark.parametrize("rename", [False, True])
def test_loaded_soname_wins_over_runpath(ext_path: str, tmp_path: Any, rename: bool) -> None:
    work = tmp_path / ("renamed" if rename else "same")
    work.mkdir()
    mode = "rename" if rename else "same"
    proc = subprocess.run(
        [sys.executable, "-c", _SONAME_PROBE, _libs(ext_path), str(work), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    if rename:  # B's libiptpy2 binds to B's renamed libiptpy: A's counter is untouched
        assert counts == {"a": 1, "b2_twice": 2, "a_after": 2, "b_after": 3}
    else:  # B's libiptpy2 binds to A's, the first object loaded with that SONAME (RTLD_LOCAL or not)
        assert counts == {"a": 1, "b2_twice": 3, "a_after": 4, "b_after": 1}


@needs_isolation
def test_python_linked_library_is_private_per_worker(ext_path: str) -> None:
    # libiptpy.so.1 links against Python (as pyarrow's libarrow_python.so): each worker gets
    # a copy under a SONAME of its own, and so does libiptpy2.so.1, which needs it; the
    # shared libiptdep.so stays one per process. Both workers at a rendezvous, then at once.
    import importlib

    from interpool import Queue

    arrive: Queue[int] = Queue()
    go: Queue[None] = Queue()
    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"]) as pool:
        futures = [pool.submit(tasks.pylinked, arrive, go) for _ in range(2)]
        arrived = [arrive.get(timeout=60), arrive.get(timeout=60)]
        go.put(None)
        go.put(None)
        results = [f.result(timeout=60) for f in futures]
        stats = pool.stats()
    assert sorted(r["interp"] for r in results) == sorted(arrived) and arrived[0] != arrived[1]
    for r in results:
        assert r["first"] is True  # not the other worker's copy
        assert r["bumps"] == [1, 2, 3] and r["twice"] == 5  # libiptpy2 calls this worker's libiptpy
    deps = sorted(r["dep"] for r in results)
    assert deps[1] == deps[0] + 1  # one libiptdep for the process
    assert stats["isolated_files"] >= 6  # per worker: the extension and two libraries
    original = importlib.import_module("ipt_pkg._pylinked")  # the main interpreter: the originals
    assert original.first() is True and original.bump() == 1


@needs_isolation
@pytest.mark.parametrize("recycle", [None, 1])
def test_threads_of_a_copy_call_back_into_their_worker(ext_path: str, recycle: int | None) -> None:
    """PyGILState_Ensure on a thread of an isolated extension's own attaches to the worker
    that owns the copy (src/gilstate.rs), not to the main interpreter as CPython's does (which
    ran the callback in the main interpreter: Arrow's to_pandas aborted the process); on the
    worker's own thread, detached or not, it is that thread's thread state. With recycling,
    each new worker gets a slot of its own, and an ended one's slot is given back."""
    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"], max_tasks_per_worker=recycle) as pool:
        for _ in range(3):
            arrive, go = Queue(), Queue()
            futures = [pool.submit(tasks.threads_call_back, arrive, go) for _ in range(2)]
            arrived = [arrive.get(timeout=60), arrive.get(timeout=60)]
            go.put(None)
            go.put(None)
            results = [f.result(timeout=60) for f in futures]
            assert arrived[0] != arrived[1]
            for r in results:
                assert r == {"here": r["here"], "thread": r["here"], "threads": r["here"], "detached": r["here"]}
    # The main interpreter's own copy (the original file) keeps CPython's functions.
    original = importlib.import_module("ipt_pkg._threads")
    main_id = _interpool.interpreter_id()
    assert original.call_in_thread(_interpool.interpreter_id) == main_id == 0
    assert original.call_detached(_interpool.interpreter_id) == main_id


@needs_isolation
def test_recycled_workers_get_fresh_copies(ext_path: str) -> None:
    # A new interpreter must never reuse a copy that an ended one used (its C globals
    # would point into freed memory): every task here runs on a new worker.
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], max_tasks_per_worker=1) as pool:
        results = [pool.submit(tasks.bump, "ipt_pkg._single", 2).result(timeout=60) for _ in range(4)]
        stats = pool.stats()
    assert results == [[1, 2]] * 4
    assert stats["recycled"] >= 3
    assert stats["isolated_files"] >= 4  # ended workers' copies stay mapped, and are counted


@needs_isolation
def test_out_of_scope_modules_stay_refused(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"]) as pool:
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [1]
        message = pool.submit(tasks.try_import, "ipt_other._multi").result(timeout=60)
    assert "does not support loading in subinterpreters" in message  # the policy is back on


@needs_isolation
def test_auto_isolates_every_extension(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, isolate="auto") as pool:
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [1]
        assert pool.submit(tasks.bump, "ipt_other._multi").result(timeout=60) == [1]
        assert pool.submit(tasks.bump, "ipt_pkg._single").result(timeout=60) == [1]


@needs_isolation
def test_initializer_can_import_isolated_modules(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], initializer=tasks.bump, initargs=("ipt_pkg._multi",)) as pool:
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [2]


@needs_isolation
def test_failing_init_names_package_file_and_reason(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], fallback=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(tasks.bump, "ipt_pkg._broken").result(timeout=60)
        # the worker is still usable
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [1]
    message = str(info.value)
    assert "'ipt_pkg._broken'" in message and "package 'ipt_pkg'" in message
    assert os.path.join("ipt_pkg", "_broken") in message
    assert "RuntimeError: this module refuses to start" in message


@needs_isolation
def test_stats_report_the_copies(ext_path: str) -> None:
    with InterpreterPoolExecutor(2, isolate=["ipt_pkg"]) as pool:
        assert pool.stats()["isolated_files"] == 0  # nothing imported yet
        pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60)
        stats = pool.stats()
    assert stats["isolated_files"] == 1
    assert stats["isolated_mapped_bytes"] > 0
    assert stats["isolated_disk_bytes"] == 0  # a copy is removed once loaded
    with InterpreterPoolExecutor(1, isolate=None) as plain:
        assert plain.stats()["isolated_files"] == 0


@needs_isolation
@pytest.mark.parametrize("planted", ["nothing", "directory", "symlink"])
def test_workers_never_recreate_the_copy_directory(ext_path: str, tmp_path: Any, planted: str) -> None:
    # The pool's directory vanished (a temp cleaner, another process judging it stale) and
    # maybe someone put a directory or a link at its path: the import fails, and nothing is
    # created or copied there. Before: os.makedirs(exist_ok=True) re-created (or accepted)
    # it and a .so copied into it was dlopen()ed.
    import shutil

    # (max_tasks_per_worker=1: the second task's worker is a new interpreter, which opens the
    # pool's directory that the first one made)
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], max_tasks_per_worker=1) as pool:
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [1]
        directory = _isolate.pool_dir(pool._isolation)
        assert os.path.isdir(directory)
        shutil.rmtree(directory)
        foreign = str(tmp_path / "foreign")
        os.mkdir(foreign, 0o755)
        if planted == "directory":
            os.mkdir(directory, 0o777)
            os.chmod(directory, 0o777)
        elif planted == "symlink":
            os.symlink(foreign, directory)
        with pytest.raises(ImportError, match="never re-created by a worker") as info:
            pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60)
        assert directory in str(info.value)
        if planted == "nothing":
            assert not os.path.exists(directory)
        elif planted == "directory":
            assert os.listdir(directory) == []
        assert os.listdir(foreign) == []


@needs_isolation
@pytest.mark.parametrize(
    "prefix", [os.pardir, os.curdir, os.path.join(os.pardir, os.pardir), os.path.join("a", os.pardir, os.pardir), ""]
)
def test_a_pool_name_never_puts_copies_outside_the_process_root(ext_path: str, prefix: str) -> None:
    # Before: thread_name_prefix=".." put every worker's copies directly in $TMPDIR, never
    # removed, and stats() walked the whole temp dir.
    root = os.path.realpath(_isolate.root())
    with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], thread_name_prefix=prefix) as pool:
        assert pool.submit(tasks.bump, "ipt_pkg._multi").result(timeout=60) == [1]
        directory = os.path.realpath(_isolate.pool_dir(pool._isolation))
        assert os.path.dirname(directory) == root
        assert pool.stats()["isolated_files"] >= 1


@needs_isolation
def test_copies_are_removed_at_exit(ext_path: str) -> None:
    result = run_script(
        f"""
        import sys
        sys.path.insert(0, {ext_path!r})
        import isolation_tasks
        from interpool import InterpreterPoolExecutor, _isolate
        pool = InterpreterPoolExecutor(1, isolate=["ipt_pkg"], max_tasks_per_worker=1)
        print(pool.submit(isolation_tasks.bump, "ipt_pkg._single").result())
        print(_isolate.root())
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "[1]"
    assert os.path.basename(lines[1]).startswith("interpool-")
    assert not os.path.exists(lines[1])


@needs_isolation
def test_a_module_that_fails_isolated_runs_in_the_lane(ext_path: str) -> None:
    # isolate= does not help (the copy fails outside the main interpreter), so calls whose
    # module needs it run in the fallback lane, transparently: the worker fails to load the
    # function's module before the call starts.
    import warnings

    import isolation_lane_tasks

    import interpool

    # (The pool is made inside catch_warnings: on 3.14t its threads inherit this context.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InterpreterPoolExecutor(1, isolate=["ipt_pkg"], fallback="thread") as pool:
            assert pool.submit(isolation_lane_tasks.where).result(timeout=60) == "main"
            assert pool.submit(isolation_lane_tasks.where).result(timeout=60) == "main"
            stats = pool.stats()
    assert stats["lane_submitted"] == 2 and stats["lane_functions"] == 1
    fallback = [w for w in caught if issubclass(w.category, interpool.FallbackWarning)]
    assert len(fallback) == 1
    assert "isolate= did not help" in str(fallback[0].message)
    assert "_mainonly works in the main interpreter only" in str(fallback[0].message)


def test_stale_directories_are_removed_only_when_proven_dead(tmp_path: Any) -> None:
    # Proof of death: the root's .lock can be locked (its process held it while alive). A PID
    # that does not exist here may be a live process in another PID namespace sharing the temp
    # dir: before, every directory named after a missing PID was removed, live or not.
    import fcntl
    import subprocess

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    tmp = str(tmp_path)

    def make(name: str, lock: bool) -> str:
        path = os.path.join(tmp, name)
        os.makedirs(os.path.join(path, "pool"))
        os.chmod(path, 0o700)
        if lock:
            open(os.path.join(path, ".lock"), "w").close()
        return path

    stale = make(f"interpool-{dead}-stale", lock=True)
    unproven = make(f"interpool-{dead}-nolock", lock=False)
    alive = make(f"interpool-{dead}-alive", lock=True)  # a live process of another namespace
    target = make("elsewhere", lock=True)
    link = os.path.join(tmp, f"interpool-{dead}-link")
    os.symlink(target, link)
    holder = os.open(os.path.join(alive, ".lock"), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        _isolate._remove_stale(tmp)
    finally:
        os.close(holder)
    assert not os.path.exists(stale)
    assert os.path.isdir(unproven) and os.path.isdir(alive)
    assert os.path.islink(link) and os.path.isdir(os.path.join(target, "pool"))


@needs_isolation
@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("numpy", TypeError, "write isolate=['numpy']"),
        (42, TypeError, "not int"),
        ([1], TypeError, "isolate names must be str"),
        (["numpy.linalg"], ValueError, "write isolate=['numpy']"),
        (["interpool"], ValueError, "cannot contain 'interpool'"),
        (["sys"], ValueError, "built into the interpreter"),
        (["no_such_module_xyz"], ValueError, "no module named 'no_such_module_xyz'"),
    ],
)
def test_bad_isolate_values(value: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        InterpreterPoolExecutor(1, isolate=value)  # type: ignore[arg-type]


@needs_isolation
def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="did you mean 'tasks'"):
        InterpreterPoolExecutor(1, isolate=["taskz"])


def test_isolation_never_runs_in_the_main_interpreter() -> None:
    with pytest.raises(RuntimeError, match="worker interpreters"):
        _isolate.install({"names": ["x"], "root": None, "dir": None, "prefix": "x-"}, print, print)


def test_init_symbol_names() -> None:
    assert _isolate._init_symbol("numpy._core._multiarray_umath") == "PyInit__multiarray_umath"
    assert _isolate._init_symbol("pkg.spam") == "PyInit_spam"
    assert _isolate._init_symbol("pkg.\u00e9t\u00e9").startswith("PyInitU_")


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ isolates")
def test_py312_refuses_isolation_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match=r"needs CPython 3\.13 or newer"):
        InterpreterPoolExecutor(1, isolate=["json"])


def test_a_refusal_wrapped_by_the_importer_runs_in_the_lane(ext_path: str) -> None:
    # ipt_wrap catches the refusal of ipt_pkg._multi and raises its own ImportError from it
    # (pandas: "Unable to import required dependency numpy"): the chain tells the refusal, so
    # the call moves to the lane as with an unwrapped one.
    import warnings

    import isolation_wrap_tasks

    import interpool

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InterpreterPoolExecutor(1, fallback="thread", isolate=None) as pool:
            first = pool.submit(isolation_wrap_tasks.bump).result(timeout=60)
            # (the thread lane: the main interpreter's module, whose counter goes on)
            assert pool.submit(isolation_wrap_tasks.bump).result(timeout=60) == first + 1
            stats = pool.stats()
    assert stats["lane_submitted"] == 2 and stats["lane_functions"] == 1
    fallback = [w for w in caught if issubclass(w.category, interpool.FallbackWarning)]
    assert len(fallback) == 1
    assert "'ipt_pkg._multi'" in str(fallback[0].message)


def test_a_wrapped_refusal_is_explained_without_the_lane(ext_path: str) -> None:
    with InterpreterPoolExecutor(1, fallback=None, isolate=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(tasks.bump, "ipt_wrap").result(timeout=60)
    message = str(info.value)
    assert "extension module 'ipt_pkg._multi' (package ipt_pkg) cannot be loaded" in message
    assert "raised as ImportError: Unable to import required dependency ipt_pkg" in message


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13+ runs a worker's extension init in the main interpreter")
# (CPython reports the init's exception as unraisable in the main interpreter)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_init_that_fails_in_the_main_interpreter_moves_the_call_to_the_lane(ext_path: str) -> None:
    # Since 3.13 a worker's extension init function runs in the main interpreter; when it
    # fails there (black's mypyc module on 3.13: "frame does not exist"), the worker gets only
    # "failed to import from subinterpreter due to exception", naming nothing. The module
    # cannot load in a worker either way, so the call moves to the lane, which runs it (black)
    # or fails with the module's own error (here).
    import interpool

    with InterpreterPoolExecutor(1, fallback=None, isolate=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(tasks.bump, "ipt_pkg._broken").result(timeout=60)
    assert info.value.name == "ipt_pkg._broken"
    assert "extension module 'ipt_pkg._broken' (package ipt_pkg) cannot be loaded" in str(info.value)
    # The warning comes from the thread that takes the reply, a dispatcher: made inside
    # catch_warnings, it shares its filters where warnings are context-aware (3.14t).
    with (
        warnings.catch_warnings(record=True) as caught,
        InterpreterPoolExecutor(1, fallback="thread", isolate=None) as pool,
    ):
        warnings.simplefilter("always", interpool.FallbackWarning)
        with pytest.raises(ImportError):
            pool.submit(tasks.bump, "ipt_pkg._broken").result(timeout=60)  # started: not run again
        assert any("ipt_pkg._broken" in str(w.message) for w in caught), [str(w.message) for w in caught]
        with pytest.raises(RuntimeError, match="this module refuses to start"):
            pool.submit(tasks.bump, "ipt_pkg._broken").result(timeout=60)  # in the lane: its own error
        assert pool.stats()["lane_submitted"] == 1
