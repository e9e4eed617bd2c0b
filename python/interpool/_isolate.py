"""Isolation: each worker interpreter loads its own private copy of extension modules.

An extension module refuses own-GIL interpreters for one of two reasons: the import system
refuses it (it did not declare support), or it keeps process-wide C state and so can exist
once per process. Both go away when each interpreter loads its own physical copy of the
extension's file: a different file is a different module to CPython and a different set of
C globals to the dynamic loader, so each copy sees exactly one interpreter, which is what
its authors assumed. docs/isolation.md has the facts this relies on.

Two halves:

* in the main interpreter, :func:`plan` checks ``isolate=`` and makes the pool's settings
  (names, the directory for copies), and :func:`stats` reports the copies' cost;
* in a worker, :func:`install` puts :class:`_Finder` first on ``sys.meta_path``. For an
  extension module in scope it copies the file into the worker's own directory (laid out
  like the ``sys.path`` entry it came from), loads the copy with the Rust loader
  (``src/isolate.rs``: the init function runs in this interpreter), and unlinks the copy:
  the mapping stays valid, and no other interpreter can ever load the same file. Bundled
  libraries that link against Python (pyarrow's ``libarrow_python.so``) are copied for each
  worker too, under a SONAME of its own (:meth:`_State.load_libraries`).

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
    from collections.abc import Iterable
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

AUTO = "auto"

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


_root: str | None = None


def _stdlib_dirs() -> list[str]:
    """Where the stdlib's own extension modules are: ``lib-dynload`` (not the stdlib
    directory as a whole: a system Python's ``site-packages`` is below it, and a venv's
    ``platstdlib`` is the venv itself)."""
    import sysconfig

    dirs = {p for p in sys.path if os.path.basename(p.rstrip(os.sep)) == "lib-dynload"}
    dirs.add(sysconfig.get_config_var("DESTSHARED") or "")
    return sorted(os.path.realpath(d) + os.sep for d in dirs if d and os.path.isdir(d))


_LOCK = ".lock"  # in a copy root: flock()ed by its process for as long as it lives
_lock_fd: int | None = None
_NOFOLLOW_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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


def root() -> str:
    """The process's directory for copies (in the temp dir, made by ``mkdtemp``: ours, 0700),
    created on first use (again, under a new name, if it vanished or is no longer ours) and
    removed when the main interpreter exits. Its ``.lock`` is ``flock``ed while the process
    lives (:func:`_remove_stale`)."""
    global _root, _lock_fd
    if _root is None or not _owned_root(_root):
        import atexit
        import fcntl
        import shutil
        import tempfile

        _remove_stale(tempfile.gettempdir())
        path = tempfile.mkdtemp(prefix=f"interpool-{os.getpid()}-")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(path, _LOCK), flags, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _lock_fd is not None:
            os.close(_lock_fd)
        _root, _lock_fd = path, fd
        atexit.register(shutil.rmtree, path, True)
    return _root


def _forget_root() -> None:
    global _root, _lock_fd
    _root = None  # a forked child makes its own (the parent removes its directory)
    _lock_fd = None  # the inherited lock stays with the parent's (shared) lock


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_root)


def safe_name(pool_name: str) -> str:
    """A pool's name as a file name: letters, digits, ``_`` and ``-`` only (never ``.`` or
    ``..``, which would put copies in the temp dir itself), at most 64 characters."""
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", pool_name)[:64].strip("_") or "pool"


def plan(isolate: tuple[str, ...] | str | None, pool_name: str) -> dict[str, Any] | None:
    """The settings a pool's workers isolate with (``None``: no isolation): among them its
    directory for copies, a new one in the process's root (``mkdtemp``: ours, 0700)."""
    if isolate is None:
        return None
    import tempfile

    directory = tempfile.mkdtemp(prefix=safe_name(pool_name) + "-", dir=root())
    return {
        "names": None if isolate == AUTO else list(isolate),
        "dir": directory,
        "stdlib": _stdlib_dirs(),
    }


def stats(settings: dict[str, Any] | None) -> dict[str, int]:
    """The cost of a pool's copies: ``isolated_files`` (copies loaded, by every worker so
    far: ended workers' copies stay mapped), ``isolated_mapped_bytes`` (their size in the
    address space), ``isolated_resident_bytes`` (of which in memory now) and
    ``isolated_disk_bytes`` (files on disk now; copies are removed once loaded)."""
    out = {"isolated_files": 0, "isolated_mapped_bytes": 0, "isolated_resident_bytes": 0, "isolated_disk_bytes": 0}
    if settings is None:
        return out
    prefix = settings["dir"] + os.sep
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
    for directory, _dirs, names in os.walk(settings["dir"]):
        for name in names:
            try:
                out["isolated_disk_bytes"] += os.lstat(os.path.join(directory, name)).st_size
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
        import threading

        names = settings["names"]
        self.auto = names is None
        self.names = frozenset(names or ())
        self.base = settings["dir"]
        self.stdlib = tuple(settings["stdlib"])
        self.dir: str | None = None
        self.dir_fd: int | None = None  # held: copies are made relative to it
        self.depth = 0  # > 0 while an isolated load runs in this interpreter
        self.saved = 0
        self.lock = threading.RLock()
        self.loaded_libraries: set[str] = set()  # shared: loaded from where they are
        self.private: dict[str, bytes] = {}  # a library's real path -> its copy's SONAME
        self.slot: int | None = None  # this interpreter's slot of src/gilstate.rs, once a copy needs it
        self.elf: dict[str, _Elf] = {}  # read once per worker
        # The Rust loader declares own-GIL support in each copy's definition; the switch
        # also covers modules that a copy's code creates from definitions of its own. The
        # free-threaded build refuses the switch (and needs only the loader's part).
        self.switch = not sysconfig_flag("Py_GIL_DISABLED")

    def in_scope(self, fullname: str) -> bool:
        top = fullname.partition(".")[0]
        if top == "interpool":
            return False
        return self.auto or self.depth > 0 or top in self.names or _is_mypyc_runtime(top)

    def enter(self) -> None:
        import _imp

        with self.lock:
            if self.depth == 0 and self.switch:
                self.saved = _imp._override_multi_interp_extensions_check(-1)  # type: ignore[attr-defined]
            self.depth += 1

    def exit(self) -> None:
        import _imp

        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.switch:
                _imp._override_multi_interp_extensions_check(self.saved)  # type: ignore[attr-defined]

    def copy_dir(self) -> int:
        """This worker's directory for copies (a descriptor), made in the pool's directory on
        first use. The pool's directory is never made here: if it vanished (a temp cleaner)
        or is not ours and private (0700, not a link), a directory at its path may be someone
        else's, so the import fails instead (:func:`open_private_dir`)."""
        if self.dir_fd is None:
            import secrets

            parent, name = os.path.split(self.base)
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
                    mine = f"worker-{secrets.token_hex(6)}"
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
            with open(real, "rb") as src, os.fdopen(out, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                for offset, data in patches:
                    dst.seek(offset)
                    dst.write(data)
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


class _Loader:
    """Creates a module from a private copy of ``spec.origin`` (importlib's Loader protocol)."""

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
        spec.loader_state = multi_phase
        return module

    def exec_module(self, module: ModuleType) -> None:
        from . import _interpool

        spec = module.__spec__
        assert spec is not None
        if spec.loader_state:  # multi-phase: run its exec slots (they may create modules too)
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


class _Finder:
    """Sends extension modules in scope to :class:`_Loader` (importlib's MetaPathFinder
    protocol); everything else, pure-Python modules included, imports as usual."""

    def __init__(self, state: _State) -> None:
        import importlib.machinery
        import importlib.util

        # Imported here: find_spec runs inside imports, and must not import anything.
        self.state = state
        self.path_finder = importlib.machinery.PathFinder
        self.extension_loader = importlib.machinery.ExtensionFileLoader
        self.spec_from_file_location = importlib.util.spec_from_file_location

    def find_spec(self, fullname: str, path: Iterable[str] | None = None, target: object = None) -> ModuleSpec | None:
        state = self.state
        if not state.in_scope(fullname):
            return None
        spec = self.path_finder.find_spec(fullname, path)  # type: ignore[arg-type]
        if spec is None or not isinstance(spec.loader, self.extension_loader):
            return None
        origin = spec.origin or ""
        if (state.auto or state.depth > 0) and os.path.realpath(origin).startswith(state.stdlib):
            return None  # the stdlib's own extensions load as they are, unless named
        return self.spec_from_file_location(
            fullname,
            origin,
            loader=_Loader(state),  # type: ignore[arg-type]
            submodule_search_locations=spec.submodule_search_locations,
        )


def install(settings: dict[str, Any]) -> None:
    """Isolate in this worker interpreter (never in the main one)."""
    import warnings

    from . import _interpool

    if _interpool.interpreter_id() == 0:
        raise RuntimeError("isolation is for worker interpreters: the main interpreter loads the originals")
    # What the finder and loader use, imported now: later they run inside imports.
    import _imp  # noqa: F401
    import secrets  # noqa: F401
    import struct  # noqa: F401

    warnings.filterwarnings("ignore", message=_NUMPY_WARNING, category=UserWarning)
    sys.meta_path.insert(0, _Finder(_State(settings)))
