"""Isolation: each worker interpreter loads its own private copy of extension modules.

An extension module refuses own-GIL interpreters for one of two reasons: the import system
refuses it (it did not declare support), or it keeps process-wide C state and so can exist
once per process. Both go away when each interpreter loads its own physical copy of the
extension's file: a different file is a different module to CPython and a different set of
C globals to the dynamic loader, so each copy sees exactly one interpreter, which is what
its authors assumed. docs/isolation.md has the facts this relies on.

Two halves:

* in the main interpreter, :func:`plan` checks ``isolate=`` and makes the pool's settings
  (names, and the cells in which the directories for copies will be recorded), and
  :func:`stats` reports the copies' cost;
* in a worker, :func:`install` wraps the import system's ``ExtensionFileLoader``. For an
  extension module in scope it copies the file into the worker's own directory (laid out
  like the ``sys.path`` entry it came from), loads the copy with the Rust loader
  (``src/isolate.rs``: the init function runs in this interpreter), and unlinks the copy:
  the mapping stays valid, and no other interpreter can ever load the same file. Bundled
  libraries that link against Python (pyarrow's ``libarrow_python.so``) are copied for each
  worker too, under a SONAME of its own (:meth:`_State.load_libraries`).

Nothing is done before it is needed (``isolate="auto"`` is the default, so a pure-Python pool
must not pay for it): :func:`plan` makes no directory and imports nothing, a worker imports
this module only when it first loads an extension module outside the stdlib's
``lib-dynload`` (``_worker._isolate_later``), and the process's directory and the pool's are
made by the first worker that copies a file. Interpreters share what they made through
*cells*: an ``interpool.Queue`` of one item, taken to read or change it and put back.

The import policy switch ``_imp._override_multi_interp_extensions_check`` is per
interpreter; it is lifted only in a worker that asked for isolation, and only while one of
its isolated loads runs, so an extension outside the scope is still refused cleanly instead
of loading the shared original.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

AUTO = "auto"


class _AutoExcept(str):
    """``"auto"`` but for some top-level packages, which stay refused in workers
    (``interpool.dask``: psutil, so that a task that needs ``distributed`` still moves to the
    Dask worker's own threads)."""

    exclude: tuple[str, ...]


def auto_except(*exclude: str) -> str:
    """``isolate=`` for ``"auto"`` except the packages ``exclude``."""
    value = _AutoExcept(AUTO)
    value.exclude = exclude
    return value


# mypyc puts a compiled package's shared runtime in a top-level module named like this.
_MYPYC_SUFFIX = "__mypyc"

# numpy warns on import in any subinterpreter; a private copy sees a single interpreter,
# which is the case the warning is about.
_NUMPY_WARNING = "NumPy was imported from a Python sub-interpreter"


# ---------------------------------------------------------------- the main interpreter


def _is_mypyc_runtime(top: str) -> bool:
    head = top[: -len(_MYPYC_SUFFIX)]
    return top.endswith(_MYPYC_SUFFIX) and len(head) == 20 and all(c in "0123456789abcdef" for c in head)


def _close_matches(name: str) -> str:
    import difflib
    import pkgutil

    names = {module.name for module in pkgutil.iter_modules()}
    matches = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def supported() -> bool:
    """Whether this Python can isolate: CPython 3.13 or newer."""
    return sys.version_info >= (3, 13)


def normalize(isolate: object) -> tuple[str, ...] | str | None:
    """Check ``isolate=``: ``None``, ``"auto"`` or an iterable of top-level module names.

    Raises TypeError for a value of the wrong kind and ValueError for a name that is not a
    top-level module importable here."""
    if isolate is None:
        return None
    if isolate == AUTO and isinstance(isolate, str):
        # the default: isolate what this Python can, which on 3.12 is nothing
        return isolate if supported() else None
    if not supported():
        raise RuntimeError(
            "isolate= needs CPython 3.13 or newer: on 3.12, private copies of Cython-compiled modules "
            "(msgpack, PyYAML's _yaml) crash the process, and modules that need datetime's C API (numpy) "
            "cannot load in 3.12 workers (CPython gh-117953)"
        )
    if isinstance(isolate, str):
        if isolate == AUTO:
            return AUTO
        raise TypeError(
            f"isolate must be None, 'auto' or a list of top-level package names, not the string {isolate!r}: "
            f"write isolate=[{isolate!r}]"
        )
    try:
        names = list(isolate)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"isolate must be None, 'auto' or a list of top-level package names, not {type(isolate).__name__}"
        ) from None
    import importlib.util

    checked: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"isolate names must be str, not {type(name).__name__}: {name!r}")
        if "." in name:
            top = name.partition(".")[0]
            raise ValueError(f"isolate takes top-level package names: {name!r} is in {top!r}, write isolate=[{top!r}]")
        if name == "interpool":
            raise ValueError("isolate cannot contain 'interpool' itself: it loads in every worker as it is")
        if name in sys.builtin_module_names:
            raise ValueError(f"{name!r} is built into the interpreter: it has no file of which to make a copy")
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"isolate: cannot find the module {name!r}: {exc}") from exc
        if spec is None:
            raise ValueError(f"isolate: no module named {name!r} is installed{_close_matches(name)}")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def _dynload_dirs() -> tuple[str, ...]:
    """The ``lib-dynload`` entries of ``sys.path``, as they are (no ``realpath``, no import):
    the quick test of :func:`_stdlib_dirs`."""
    return tuple(p.rstrip(os.sep) + os.sep for p in sys.path if os.path.basename(p.rstrip(os.sep)) == "lib-dynload")


def _stdlib_dirs() -> tuple[str, ...]:
    """Where the stdlib's own extension modules are: ``lib-dynload`` (not the stdlib
    directory as a whole: a system Python's ``site-packages`` is below it, and a venv's
    ``platstdlib`` is the venv itself)."""
    import sysconfig

    dirs = {p for p in sys.path if os.path.basename(p.rstrip(os.sep)) == "lib-dynload"}
    dirs.add(sysconfig.get_config_var("DESTSHARED") or "")
    return tuple(sorted(os.path.realpath(d) + os.sep for d in dirs if d and os.path.isdir(d)))


_LOCK = ".lock"  # in a copy root: flock()ed by its process for as long as it lives
_NOFOLLOW_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NO_ROOT = ("", -1)  # a root cell's value before the root is made: (path, descriptor of its lock)


def _check_private(st: os.stat_result, what: str) -> None:
    """Raise unless ``st`` is a directory of this user, mode 0700 (no other user can have
    put anything in it, nor can replace what is in it)."""
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{what} is not a directory (a symbolic link?)")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{what} belongs to user id {st.st_uid}, not to this process's ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        raise PermissionError(f"{what} has mode {stat.S_IMODE(st.st_mode):o}, not 700")


def open_private_dir(path: str, dir_fd: int | None = None) -> int:
    """A descriptor of the directory ``path`` (relative to ``dir_fd`` if given), opened
    without following a symbolic link and checked to be ours and private
    (:func:`_check_private`); ``PermissionError`` or ``OSError`` otherwise."""
    fd = os.open(path, _NOFOLLOW_DIR, dir_fd=dir_fd)
    try:
        _check_private(os.fstat(fd), repr(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale(tmp: str) -> None:
    """Remove the copy directories of interpool processes that are proven dead: their root's
    lock file (``flock``ed by the process while it lives, released by the kernel when it
    dies, whatever its PID namespace) can be locked. A directory without the lock, not ours,
    a symbolic link, or locked by a live process is left alone: a PID that does not exist
    here may be a live process of another PID namespace sharing this temp dir."""
    import fcntl
    import shutil

    try:
        entries = os.listdir(tmp)
    except OSError:
        return
    for entry in entries:
        parts = entry.split("-")
        if len(parts) != 3 or parts[0] != "interpool" or not parts[1].isdigit():
            continue
        path = os.path.join(tmp, entry)
        try:
            fd = open_private_dir(path)
        except OSError:
            continue  # not ours, not a directory, or gone
        try:
            lock = os.open(_LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            os.close(fd)
            continue  # no lock file: its process's life cannot be proven over
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: its process lives
        else:
            shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: never follows links
        finally:
            os.close(lock)
            os.close(fd)


def _owned_root(path: str) -> bool:
    try:
        os.close(open_private_dir(path))
    except OSError:
        return False
    return True


def _mkdtemp(directory: str, prefix: str) -> str:
    """A new directory ``<directory>/<prefix><random>``, mode 0700 (as ``tempfile.mkdtemp``
    makes it, without importing tempfile: ``mkdir`` fails if anything is at that path)."""
    while True:
        path = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def _new_cell(value: Any) -> Any:
    from ._interpool import Queue

    cell: Any = Queue(1)
    cell.put(value)
    return cell


def _update(cell: Any, change: Any, timeout: float | None = None) -> Any:
    """Take the cell's value, put back ``change(value)`` (the value unchanged if ``change``
    raises), and return what was put back. Other interpreters wait meanwhile."""
    value = cell.get(timeout=timeout)
    try:
        value = change(value)
    finally:
        cell.put(value)
    return value


def _make_root() -> tuple[str, int]:
    """A new directory for this process's copies in the temp dir (ours, 0700) and the
    descriptor of its ``.lock``, ``flock``ed while the process lives (:func:`_remove_stale`
    removes the directories of dead processes first)."""
    import fcntl
    import tempfile

    tmp = tempfile.gettempdir()
    _remove_stale(tmp)
    path = _mkdtemp(tmp, f"interpool-{os.getpid()}-")
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(os.path.join(path, _LOCK), flags, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


def _ensure_root(cell: Any) -> str:
    """The process's directory for copies, recorded in the root ``cell``; made on first use,
    in whichever interpreter needs it first (again, under a new name, if it vanished or is
    no longer ours: the pools whose directories were in it then fail their isolated imports,
    :meth:`_State.copy_dir`)."""

    def change(value: tuple[str, int]) -> tuple[str, int]:
        path, fd = value
        if path and _owned_root(path):
            return value
        if fd >= 0:
            os.close(fd)
        return _make_root()

    return str(_update(cell, change)[0])


# The main interpreter's root cell (made by the first plan(); each pool's settings carry it to
# its workers), and the PID that made it: a forked child makes its own.
_root_cell: Any = None
_root_pid = 0


def _main_root_cell() -> Any:
    global _root_cell, _root_pid
    if _root_cell is None or _root_pid != os.getpid():
        import atexit

        _root_cell, _root_pid = _new_cell(_NO_ROOT), os.getpid()
        atexit.register(_remove_root, _root_cell, _root_pid)
    return _root_cell


def _remove_root(cell: Any, pid: int) -> None:
    """At the main interpreter's exit: remove the process's directory for copies, if one was
    made (never in a forked child: the directory is its parent's)."""
    if pid != os.getpid():
        return
    try:
        path, _fd = _update(cell, lambda value: value, timeout=10)
    except Exception:
        return
    if path:
        import shutil

        shutil.rmtree(path, True)


def root() -> str:
    """The process's directory for copies (in the temp dir, made by ``mkdtemp``: ours, 0700),
    made on first use (again, under a new name, if it vanished or is no longer ours) and
    removed when the main interpreter exits. Its ``.lock`` is ``flock``ed while the process
    lives (:func:`_remove_stale`)."""
    return _ensure_root(_main_root_cell())


def _forget_root() -> None:
    global _root_cell
    _root_cell = None  # a forked child makes its own (the parent removes its directory)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_root)


def safe_name(pool_name: str) -> str:
    """A pool's name as a file name: letters, digits, ``_`` and ``-`` only (never ``.`` or
    ``..``, which would put copies in the temp dir itself), at most 64 characters."""
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in pool_name)
    return name[:64].strip("_") or "pool"


def plan(isolate: tuple[str, ...] | str | None, pool_name: str) -> dict[str, Any] | None:
    """The settings a pool's workers isolate with (``None``: no isolation). Nothing is made
    here: the first worker that copies a file makes the process's directory (if no pool made
    it yet) and the pool's, and records them in the cells (``root``, ``dir``)."""
    if isolate is None:
        return None
    return {
        "names": None if isolate == AUTO else list(isolate),
        "exclude": list(getattr(isolate, "exclude", ())),
        "root": _main_root_cell(),
        "dir": _new_cell(""),
        "prefix": safe_name(pool_name) + "-",
    }


def pool_dir(settings: dict[str, Any] | None) -> str:
    """The pool's directory for copies, ``""`` while no worker of it has copied a file."""
    if settings is None:
        return ""
    try:
        return str(_update(settings["dir"], lambda value: value, timeout=10))
    except Exception:  # (a worker holding the cell for 10 s: not made yet, as far as we know)
        return ""


def stats(settings: dict[str, Any] | None) -> dict[str, int]:
    """The cost of a pool's copies: ``isolated_files`` (copies loaded, by every worker so
    far: ended workers' copies stay mapped), ``isolated_mapped_bytes`` (their size in the
    address space), ``isolated_resident_bytes`` (of which in memory now) and
    ``isolated_disk_bytes`` (files on disk now; copies are removed once loaded)."""
    out = {"isolated_files": 0, "isolated_mapped_bytes": 0, "isolated_resident_bytes": 0, "isolated_disk_bytes": 0}
    directory = pool_dir(settings)
    if not directory:
        return out  # no copy yet (no /proc/self/smaps to read)
    prefix = directory + os.sep
    files: set[str] = set()
    current = False
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    fields = line.split(None, 5)
                    path = fields[5].rstrip("\n") if len(fields) > 5 else ""
                    current = path.startswith(prefix)
                    if current:
                        files.add(fields[4])  # the inode: one per copy
                elif current and line.startswith(("Size:", "Rss:")):
                    kib = int(line.split()[1]) * 1024
                    out["isolated_mapped_bytes" if line[0] == "S" else "isolated_resident_bytes"] += kib
    except OSError:
        pass  # not Linux: only the disk figure
    out["isolated_files"] = len(files)
    for walked, _dirs, names in os.walk(directory):
        for name in names:
            try:
                out["isolated_disk_bytes"] += os.lstat(os.path.join(walked, name)).st_size
            except OSError:
                pass
    return out


# ---------------------------------------------------------------- a worker interpreter


# CPython's functions that attach a thread to the *main* interpreter, which a copy calls for
# its worker's instead (src/gilstate.rs), and the names those have (the same lengths).
_GILSTATE = {b"PyGILState_Ensure": b"ip_gs_ensure_", b"PyGILState_Release": b"ip_gs_release_"}


class _Elf:
    """What isolation reads from an ELF64 little-endian shared object's dynamic section:
    ``needed`` (DT_NEEDED names, in order), ``soname`` (DT_SONAME or ``None``), ``runpath``
    (DT_RUNPATH, else DT_RPATH, directories), ``names`` (every library name in its dynamic
    string table, DT_NEEDED, DT_SONAME and the files of its version needs, with the file
    offsets where each occurrence starts, for a same-length rewrite), ``links_python``
    (its dynamic symbol table has undefined ``Py*``/``_Py*`` symbols: it calls the C API of
    the interpreter that loads it) and ``gilstate`` (the file offsets of the names of its
    undefined ``PyGILState_Ensure``/``PyGILState_Release`` symbols, with the name: a copy
    calls its worker's instead, :meth:`_State.gilstate_patches`). Anything that is not such
    an object reads as empty."""

    __slots__ = ("gilstate", "links_python", "names", "needed", "runpath", "soname")

    def __init__(self, path: str) -> None:
        import struct

        self.needed: list[str] = []
        self.soname: str | None = None
        self.runpath: list[str] = []
        self.names: dict[str, list[int]] = {}
        self.links_python = False
        self.gilstate: list[tuple[int, bytes]] = []
        rpath: list[str] = []
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return
            (shoff,) = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
            tables: dict[int, bytes] = {}

            def read(index: int) -> bytes:
                if index not in tables:
                    f.seek(sections[index][4])
                    tables[index] = f.read(sections[index][5])
                return tables[index]

            def text(strtab: int, offset: int) -> str:
                strings = read(strtab)
                return strings[offset : strings.index(b"\0", offset)].decode("utf-8", "surrogateescape")

            def name_at(strtab: int, offset: int) -> str:
                name = text(strtab, offset)
                self.names.setdefault(name, [])
                where = sections[strtab][4] + offset
                if where not in self.names[name]:
                    self.names[name].append(where)
                return name

            for index, section in enumerate(sections):
                kind, link = section[1], section[6]
                if kind == 6:  # SHT_DYNAMIC
                    dynamic = read(index)
                    for offset in range(0, len(dynamic) - 15, 16):
                        tag, value = struct.unpack_from("<qQ", dynamic, offset)
                        if tag == 0:
                            break
                        if tag == 1:  # DT_NEEDED
                            self.needed.append(name_at(link, value))
                        elif tag == 14:  # DT_SONAME
                            self.soname = name_at(link, value)
                        elif tag == 15:  # DT_RPATH
                            rpath.extend(text(link, value).split(":"))
                        elif tag == 29:  # DT_RUNPATH
                            self.runpath.extend(text(link, value).split(":"))
                elif kind == 0x6FFFFFFE:  # SHT_GNU_verneed: (vn_version, vn_cnt, vn_file, vn_aux, vn_next)
                    entries, at = read(index), 0
                    for _ in range(section[7]):
                        _version, _count, file, _aux, step = struct.unpack_from("<HHIII", entries, at)
                        name_at(link, file)
                        if not step:
                            break
                        at += step
                elif kind == 11 and section[9] == 24:  # SHT_DYNSYM of Elf64_Sym
                    strings = read(link)
                    if b"\0Py" not in strings and b"\0_Py" not in strings:
                        continue  # no symbol named so, defined or not (the usual case: fast)
                    symbols = read(index)
                    for name, _info, _other, shndx, _value, _size in struct.iter_unpack("<IBBHQQ", symbols):
                        if shndx == 0 and name and strings.startswith((b"Py", b"_Py"), name):  # SHN_UNDEF
                            self.links_python = True
                            for which in _GILSTATE:
                                if strings.startswith(which + b"\0", name):
                                    self.gilstate.append((sections[link][4] + name, which))
        self.runpath = self.runpath or rpath

    def bundled(self, path: str) -> list[tuple[str, str]]:
        """``(name, path)`` of the libraries this object (at ``path``) finds through an
        ``$ORIGIN``-relative search path (a wheel's ``<dist>.libs``, or its package
        directory as pyarrow has it), which a copy elsewhere would not find."""
        here = os.path.dirname(os.path.realpath(path))
        found: list[tuple[str, str]] = []
        for directory in self.runpath:
            if "$ORIGIN" not in directory and "${ORIGIN}" not in directory:
                continue  # an absolute path resolves from the copy as well
            directory = directory.replace("${ORIGIN}", here).replace("$ORIGIN", here)
            for name in self.needed:
                candidate = os.path.join(directory, name)
                if os.path.exists(candidate) and all(name != seen for seen, _ in found):
                    found.append((name, os.path.realpath(candidate)))
        return found


def _copy_file(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes from ``src`` to ``dst`` (file descriptors) in the kernel
    (``copy_file_range``, else ``sendfile``), not through Python buffers: an isolated pandas
    worker copies 57 files, and reading and writing them took 176 of its 1,200 ms of import."""
    done = 0
    try:
        while done < size:
            sent = os.copy_file_range(src, dst, size - done)
            if sent == 0:
                break
            done += sent
    except OSError:  # not supported between these file systems (or by this kernel)
        pass
    while done < size:
        sent = os.sendfile(dst, src, done, size - done)
        if sent == 0:
            raise OSError(f"isolate: the copy ended after {done} of {size} bytes")
        done += sent


def sysconfig_flag(name: str) -> bool:
    import sysconfig

    return bool(sysconfig.get_config_var(name))


def _init_symbol(fullname: str) -> str:
    """The name of the extension's init function (PEP 489, including non-ASCII names)."""
    short = fullname.rpartition(".")[2]
    try:
        short.encode("ascii")
    except UnicodeEncodeError:
        return "PyInitU_" + short.encode("punycode").decode("ascii").replace("-", "_")
    return "PyInit_" + short


class _State:
    def __init__(self, settings: dict[str, Any]) -> None:
        import _thread

        names = settings["names"]
        self.auto = names is None
        self.names = frozenset(names or ())
        self.exclude = frozenset(settings.get("exclude") or ())
        self.root_cell = settings["root"]
        self.dir_cell = settings["dir"]
        self.prefix = settings["prefix"]
        self.dynload = _dynload_dirs()
        self.stdlib: tuple[str, ...] | None = None  # (_stdlib_dirs, on first need)
        self.base = ""  # the pool's directory, once known
        self.dir: str | None = None
        self.dir_fd: int | None = None  # held: copies are made relative to it
        self.depth = 0  # > 0 while an isolated load runs in this interpreter
        self.saved = 0
        self.lock = _thread.RLock()
        self.loaded_libraries: set[str] = set()  # shared: loaded from where they are
        self.private: dict[str, bytes] = {}  # a library's real path -> its copy's SONAME
        self.slot: int | None = None  # this interpreter's slot of src/gilstate.rs, once a copy needs it
        self.elf: dict[str, _Elf] = {}  # read once per worker
        # The Rust loader declares own-GIL support in each copy's definition; the switch
        # also covers modules that a copy's code creates from definitions of its own. The
        # free-threaded build refuses the switch (and needs only the loader's part). Read
        # on the first isolated load (sysconfig costs a worker ~10 ms).
        self.switch: bool | None = None

    def in_scope(self, fullname: str) -> bool:
        top = fullname.partition(".")[0]
        if top == "interpool" or top in self.exclude:
            return False
        return self.auto or self.depth > 0 or top in self.names or _is_mypyc_runtime(top)

    def wants(self, spec: ModuleSpec) -> bool:
        """Whether the extension module of ``spec`` loads from a private copy: in scope, and
        not one of the stdlib's own extension modules unless named."""
        if not self.in_scope(spec.name):
            return False
        if not (self.auto or self.depth > 0):
            return True  # named (or a mypyc runtime)
        origin = spec.origin or ""
        if origin.startswith(self.dynload):
            return False  # the quick test: below a lib-dynload entry of sys.path
        if self.stdlib is None:
            self.stdlib = _stdlib_dirs()
        return not os.path.realpath(origin).startswith(self.stdlib)

    def enter(self) -> None:
        import _imp

        with self.lock:
            if self.switch is None:
                self.switch = not sysconfig_flag("Py_GIL_DISABLED")
            if self.depth == 0 and self.switch:
                self.saved = _imp._override_multi_interp_extensions_check(-1)  # type: ignore[attr-defined]
            self.depth += 1

    def exit(self) -> None:
        import _imp

        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.switch:
                _imp._override_multi_interp_extensions_check(self.saved)  # type: ignore[attr-defined]

    def pool_dir(self) -> str:
        """The pool's directory for copies: made (``mkdir``, 0700, a new random name) in the
        process's directory by the pool's first worker that needs it, and recorded in the
        pool's cell for the others. Made once: a pool whose directory vanished is never given
        another (:meth:`copy_dir`)."""
        if not self.base:

            def change(made: str) -> str:
                return made or _mkdtemp(_ensure_root(self.root_cell), self.prefix)

            self.base = str(_update(self.dir_cell, change))
        return self.base

    def copy_dir(self) -> int:
        """This worker's directory for copies (a descriptor), made in the pool's directory on
        first use. The pool's directory is never re-created here: if it vanished (a temp
        cleaner) or is not ours and private (0700, not a link), a directory at its path may
        be someone else's, so the import fails instead (:func:`open_private_dir`)."""
        if self.dir_fd is None:
            parent, name = os.path.split(self.pool_dir())
            try:
                root_fd = open_private_dir(parent)
                try:
                    base_fd = open_private_dir(name, dir_fd=root_fd)
                finally:
                    os.close(root_fd)
            except OSError as exc:
                raise ImportError(
                    f"isolate: the pool's directory for private copies, {self.base}, is missing or not safe to use "
                    f"({exc}); it is never re-created by a worker. A temp-dir cleaner may have removed it: create a "
                    "new pool"
                ) from exc
            try:
                while True:
                    mine = f"worker-{os.urandom(6).hex()}"
                    try:
                        os.mkdir(mine, 0o700, dir_fd=base_fd)
                        break
                    except FileExistsError:
                        continue
                self.dir_fd = open_private_dir(mine, dir_fd=base_fd)
            finally:
                os.close(base_fd)
            self.dir = os.path.join(self.base, mine)
        return self.dir_fd

    def make_copy(self, origin: str, patches: Iterable[tuple[int, bytes]] = ()) -> tuple[str, int, str]:
        """A private copy of ``origin`` (a new file: hard and symbolic links would give the
        same loaded instance), at the same place below the copy directory as below its
        ``sys.path`` entry, so that relative lookups between copies keep working. Every
        directory and the file are made relative to the held directory descriptor, never
        following a link. ``patches`` are ``(file offset, bytes)`` written over the copy
        (same-length rewrites of library names, :meth:`renames`). Returns the path to load,
        and the file's directory descriptor and name (to unlink it once loaded; the caller
        closes the descriptor)."""
        real = os.path.realpath(origin)
        entry = ""
        for path in sys.path:
            candidate = os.path.realpath(path or os.getcwd()) + os.sep
            if real.startswith(candidate) and len(candidate) > len(entry):
                entry = candidate
        relative = os.path.relpath(real, entry) if entry else os.path.basename(real)
        *parts, filename = relative.split(os.sep)
        fd = os.dup(self.copy_dir())
        try:
            for part in parts:
                if part in ("", ".", ".."):
                    raise ImportError(f"isolate: unexpected path of {origin!r} below its sys.path entry")
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                sub = open_private_dir(part, dir_fd=fd)
                os.close(fd)
                fd = sub
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(filename, flags, 0o700, dir_fd=fd)
            try:
                src = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _copy_file(src, out, os.fstat(src).st_size)
                finally:
                    os.close(src)
                for offset, data in patches:
                    os.pwrite(out, data, offset)
            finally:
                os.close(out)
        except BaseException:
            os.close(fd)
            raise
        # Loaded by its path, which is unique (the dynamic loader matches loaded objects by
        # name first: a /proc/self/fd/N/... path could name an earlier copy, N reused). The
        # directories on it are ours and 0700, so no other user can change what it names.
        return os.path.join(self.dir or "", relative), fd, filename

    def read_elf(self, path: str) -> _Elf:
        if path not in self.elf:
            self.elf[path] = _Elf(path)
        return self.elf[path]

    def needs_private(self, path: str, seen: frozenset[str] = frozenset()) -> bool:
        """Whether the bundled library ``path`` must be private to this worker: it links
        against Python (its C globals would hold the first interpreter's objects: pyarrow's
        ``libarrow_python`` keeps that interpreter's numpy), or a bundled library it needs
        in turn must be (it would call the first worker's copy)."""
        elf = self.read_elf(path)
        return elf.links_python or any(
            self.needs_private(dep, seen | {path}) for _, dep in elf.bundled(path) if dep not in seen
        )

    def load_libraries(self, origin: str, seen: frozenset[str] = frozenset()) -> dict[str, bytes]:
        """Load the bundled libraries that ``origin`` needs, dependencies first: each one
        that links against Python (:meth:`needs_private`) as a private copy of this worker
        with a SONAME of its own (:meth:`load_private`), the others from where they are, once
        per process. A copy's ``DT_NEEDED`` is then satisfied by the already-loaded object
        that bears its name (the dynamic loader matches loaded objects by SONAME, across
        ``RTLD_LOCAL``). Returns the renames for ``origin``'s copy: name -> the private
        copy's SONAME."""
        from . import _interpool

        renames: dict[str, bytes] = {}
        for name, library in self.read_elf(origin).bundled(origin):
            if library in seen:
                continue
            if library in self.private:
                renames[name] = self.private[library]
            elif self.needs_private(library):
                renames[name] = self.load_private(name, library, seen | {origin})
            elif library not in self.loaded_libraries:
                self.load_libraries(library, seen | {origin})  # (none private: loaded from where they are)
                _interpool._dlopen(library)
                self.loaded_libraries.add(library)
        return renames

    def private_name(self, name: str) -> bytes:
        """A SONAME for this worker's copy of the library ``name``, of the same length (a
        rewrite in place needs no ELF relayout): its first characters become
        ``i<interpreter id>.<n>-`` (hex; interpreter ids are never reused in a process, and
        ``n`` counts this worker's private libraries), so no two copies share a name."""
        from . import _interpool

        old = name.encode("utf-8", "surrogateescape")
        tag = f"i{_interpool.interpreter_id():x}.{len(self.private):x}-".encode()
        if len(tag) >= len(old):
            raise ImportError(f"isolate: the library name {name!r} is too short to rename its private copy")
        return tag + old[len(tag) :]

    def renames(self, path: str, renames: dict[str, bytes]) -> list[tuple[int, bytes]]:
        """The patches that rename, in the copy of ``path``, each library name of ``renames``
        (every occurrence in its dynamic string table: DT_NEEDED, DT_SONAME, version needs),
        and its ``PyGILState_Ensure``/``Release`` symbols (:meth:`gilstate_patches`)."""
        names = self.read_elf(path).names
        patches = [(offset, new) for old, new in renames.items() for offset in names.get(old, ())]
        return patches + self.gilstate_patches(path)

    def gilstate_patches(self, path: str) -> list[tuple[int, bytes]]:
        """The patches that make the copy of ``path`` call this worker's ``PyGILState_Ensure``
        and ``PyGILState_Release`` (src/gilstate.rs): CPython's attach a thread without a
        thread state to the main interpreter, so a copy's own threads calling back into Python
        (Arrow's thread pool in ``Table.to_pandas()``) would run in the main interpreter, with
        its heap (``free(): invalid pointer``)."""
        found = self.read_elf(path).gilstate
        if not found:
            return []
        if self.slot is None:
            from . import _interpool

            self.slot = _interpool._gilstate_slot()
        return [(offset, _GILSTATE[which] + f"{self.slot:04x}".encode()) for offset, which in found]

    def load_private(self, name: str, library: str, seen: frozenset[str]) -> bytes:
        """Load this worker's private copy of the bundled library ``library`` (needed as
        ``name``), renamed so that only this worker's copies bind to it; its SONAME."""
        from . import _interpool

        elf = self.read_elf(library)
        if elf.soname != name:
            raise ImportError(
                f"isolate: {library} links against Python, so each worker needs a copy of its own, but its SONAME "
                f"({elf.soname!r}) is not the name its dependents load it by ({name!r}): the copy cannot be renamed "
                "in place. Use this package in a process (fallback='process') instead"
            )
        renames = self.load_libraries(library, seen)
        soname = renames[name] = self.private_name(name)
        path, fd, filename = self.make_copy(library, self.renames(library, renames))
        try:
            _interpool._dlopen(path)
            self.private[library] = soname
        finally:
            try:
                os.unlink(filename, dir_fd=fd)  # loaded: no one else may load it
            except OSError:
                pass
            os.close(fd)
        return soname


class _Copy:
    """A module spec's ``loader_state`` when the module was loaded from a private copy."""

    __slots__ = ("multi_phase",)

    def __init__(self, multi_phase: bool) -> None:
        self.multi_phase = multi_phase


class _Loader:
    """Creates a module from a private copy of ``spec.origin`` (what the wrapped
    ``ExtensionFileLoader`` does for the modules :meth:`_State.wants`, :func:`install`)."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        from . import _interpool

        state, origin = self.state, spec.origin
        assert origin is not None
        copy = None
        try:
            with state.lock:
                renames = state.load_libraries(origin)
                copy = state.make_copy(origin, state.renames(origin, renames))
            state.enter()
            try:
                module, multi_phase = _interpool._load_copy(copy[0], _init_symbol(spec.name), spec)
            finally:
                state.exit()
        except Exception as exc:
            raise _load_error(spec.name, origin, exc) from exc
        finally:
            if copy is not None:
                _path, fd, filename = copy
                try:
                    os.unlink(filename, dir_fd=fd)  # loaded: the mapping stays; no one else may load it
                except OSError:
                    pass
                finally:
                    os.close(fd)
        spec.loader_state = _Copy(multi_phase)
        return module

    def exec_module(self, module: ModuleType) -> None:
        from . import _interpool

        spec = module.__spec__
        assert spec is not None
        if spec.loader_state.multi_phase:  # run its exec slots (they may create modules too)
            self.state.enter()
            try:
                _interpool._exec_copy(module)
            except Exception as exc:
                raise _load_error(spec.name, spec.origin or "?", exc) from exc
            finally:
                self.state.exit()


def _load_error(name: str, origin: str, exc: BaseException) -> ImportError:
    top = name.partition(".")[0]
    return ImportError(
        f"isolate: the extension module {name!r} of package {top!r} ({origin}) failed to load from its "
        f"private copy: {type(exc).__name__}: {exc}",
        name=name,
        path=origin,
    )


def install(settings: dict[str, Any], create: Callable[..., Any], execute: Callable[..., Any]) -> _Hook:
    """Isolate in this worker interpreter (never in the main one). ``create`` and ``execute``
    are what ``ExtensionFileLoader`` (the import system's loader of extension files) does
    without isolation; ``_worker._isolate_later`` sends every extension file's load through the
    returned hook once the worker first loads one outside ``lib-dynload``."""
    import warnings

    from . import _interpool

    if _interpool.interpreter_id() == 0:
        raise RuntimeError("isolation is for worker interpreters: the main interpreter loads the originals")
    hook = _Hook(_State(settings), create, execute)
    warnings.filterwarnings("ignore", message=_NUMPY_WARNING, category=UserWarning)
    return hook


class _Hook:
    """``ExtensionFileLoader``'s ``create_module`` and ``exec_module`` in an isolating worker:
    the extension modules in scope (:meth:`_State.wants`) load from a private copy
    (:class:`_Loader`), the others as usual. Pure-Python imports never come here."""

    def __init__(self, state: _State, create: Callable[..., Any], execute: Callable[..., Any]) -> None:
        self.state = state
        self.copies = _Loader(state)
        self.create = create
        self.execute = execute

    def create_module(self, loader: Any, spec: ModuleSpec) -> ModuleType | None:
        if self.state.wants(spec):
            return self.copies.create_module(spec)
        return self.create(loader, spec)  # type: ignore[no-any-return]

    def exec_module(self, loader: Any, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None and type(spec.loader_state) is _Copy:
            self.copies.exec_module(module)
        else:
            self.execute(loader, module)
