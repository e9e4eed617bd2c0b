"""The Python side of a worker interpreter: start-up, and the hooks Rust calls on failure.

Rust (``src/worker.rs``) runs every task itself: it decodes the call, calls the function and
encodes the result, so no Python code of interpool runs per task. This module provides:

* :func:`bootstrap`, called once per interpreter, and :func:`initialize` for the pool's
  initializer; a ``str`` result refuses the worker's start (which breaks the pool);
* :func:`describe`, which turns an exception into what the owner re-raises, and
  :func:`unsendable_result`, for a result that cannot be sent back;
* :func:`exec_script`, :func:`run_chunk` and :func:`run_chunk1`, the functions behind
  script tasks and batched ``map`` calls.
"""

import sys

from . import _main

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:  # keep typing and traceback out of worker start-up
    from collections.abc import Callable, Sequence
    from types import ModuleType, TracebackType
    from typing import Any

# True in worker interpreters (set by bootstrap()).
_in_worker = False


def in_worker() -> bool:
    """Whether this interpreter is an interpool worker."""
    return _in_worker


def bootstrap(settings: "dict[str, Any]", index: int) -> "ModuleType":
    """Prepare this interpreter (``settings`` come from the owner); return the hooks."""
    global _in_worker
    _in_worker = True
    if sys.version_info[:2] == (3, 12):
        _py312_datetime()
    import atexit

    from . import _interpool

    atexit.register(_forget_warning_filters)  # registered first, so it runs last
    _gate_extension_loads(_interpool)
    sys.meta_path.insert(0, _StandIns())
    _main.set_source(settings.get("main"))
    if settings.get("isolate") is not None:
        _isolate_later(settings["isolate"])
    if settings.get("logging") is not None:
        from . import _logging

        _logging.install(settings["logging"], f"{settings.get('name', 'worker')}_{index}")
    return sys.modules[__name__]


def _forget_warning_filters() -> None:
    """At the worker interpreter's end: drop its warning filters that hold a compiled pattern
    (``filterwarnings(message=...)`` or ``module=``, as isolation adds for numpy's warning and
    pandas adds on import). One still in place when a 3.14 interpreter ends left 2.8 MiB of
    the process resident per ended worker (``max_tasks_per_worker=1``, 30 recycles; 0.0 MiB
    with this). The others stay: the default filters keep ``ResourceWarning`` quiet while
    the interpreter's objects are freed."""
    warnings = sys.modules.get("warnings")
    if warnings is None:
        return
    filters = warnings.filters
    kept = [f for f in filters if not any(hasattr(part, "pattern") for part in (f[1], f[3]))]
    if len(kept) == len(filters):
        return
    lock = getattr(warnings, "_lock", None)  # 3.14 changes filters under a lock, 3.13 does not
    if lock is not None and hasattr(warnings, "_filters_mutated_lock_held"):
        with lock:
            filters[:] = kept
            warnings._filters_mutated_lock_held()
    else:
        filters[:] = kept
        warnings._filters_mutated()


def _isolate_later(settings: "dict[str, Any]") -> None:
    """``isolate=`` (``"auto"``, the default, or names): set it up (``_isolate.install``) when
    this worker first loads an extension module from a file outside a ``lib-dynload`` entry of
    ``sys.path`` (with ``"auto"``; with names, any extension file), so that a worker that
    never does pays nothing: no import of ``_isolate``, no finder or hook on pure-Python
    imports, no directory. From then on every extension file's load goes through the hook."""
    loader = sys.modules["_frozen_importlib_external"].ExtensionFileLoader
    create, execute = loader.create_module, loader.exec_module  # (create: gated, _gate)
    dynload = tuple(p.rstrip("/") + "/" for p in sys.path if p.rstrip("/").endswith("/lib-dynload"))
    auto = settings.get("names") is None
    hook: Any = None

    def create_module(self: "Any", spec: "Any") -> "Any":
        nonlocal hook
        if hook is None:
            if auto and (spec.origin or "").startswith(dynload):
                return create(self, spec)  # the stdlib's own: "auto" never isolates them
            from . import _isolate

            hook = _isolate.install(settings, create, execute)
        return hook.create_module(self, spec)

    def exec_module(self: "Any", module: "Any") -> None:
        if hook is None:
            execute(self, module)
        else:
            hook.exec_module(self, module)

    loader.create_module = create_module
    loader.exec_module = exec_module


def _gate_extension_loads(native: "Any") -> None:
    """Load extension modules (files and built-ins) one worker at a time, through
    ``_extension_gate`` (src/isolate.rs). Since 3.13 CPython runs a worker's extension init
    function in the *main* interpreter, on the worker's thread, with a main-interpreter thread
    state it makes and deletes without the main GIL: nothing serializes two workers doing that
    on a free-threaded build, and ``sys._current_frames()`` (src/threads.rs) must not walk the
    main interpreter's thread states meanwhile."""
    for loader in (
        sys.modules["_frozen_importlib_external"].ExtensionFileLoader,
        sys.modules["_frozen_importlib"].BuiltinImporter,
    ):
        _gate(native, loader)


def _gate(native: "Any", loader: "Any") -> None:
    create = loader.__dict__["create_module"]
    wrapped = getattr(create, "__func__", create)  # BuiltinImporter's is a staticmethod

    def create_module(*args: "Any") -> "Any":
        native._extension_gate(True)
        try:
            return wrapped(*args)
        except ImportError as exc:
            # 3.13's "failed to import from subinterpreter due to exception" names no module
            # (_refusal.py): the spec does.
            if exc.name is None and args:
                exc.name = getattr(args[-1], "name", None)
            raise
        finally:
            native._extension_gate(False)

    loader.create_module = staticmethod(create_module) if isinstance(create, staticmethod) else create_module


class _StandIns:
    """Meta-path finder for the built-in modules that refuse own-GIL interpreters but have a
    stand-in here: ``faulthandler`` (joblib imports it, through loky, and scikit-learn imports
    joblib) and ``_tracemalloc`` (under the stdlib's pure-Python ``tracemalloc``). Their state
    is the process's, so a stand-in offers their API without touching it
    (``_standin_faulthandler.py``, ``_standin_tracemalloc.py``; docs/isolation.md).

    Consulted only when a worker imports one of these names (bootstrap only inserts the
    finder: nothing is imported at start-up). It tries the built-in module first, through the
    gated loader, and loads the stand-in only when the built-in refuses: a CPython whose module
    supports own-GIL interpreters gets the real one."""

    def __init__(self) -> None:
        self._files = {"faulthandler": "_standin_faulthandler.py", "_tracemalloc": "_standin_tracemalloc.py"}
        self._created: dict[str, Any] = {}
        # The gated loader, taken now: `check`'s probe (_probe.py) wraps the class's later to
        # record refusals, and a refusal met here is not one (the stand-in loads instead).
        self._create = sys.modules["_frozen_importlib"].BuiltinImporter.create_module

    def find_spec(self, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        file = self._files.get(name)
        if file is None or path is not None:
            return None
        builtin = sys.modules["_frozen_importlib"].BuiltinImporter
        spec = builtin.find_spec(name)
        if spec is None:
            return None
        try:
            self._created[name] = self._create(spec)
        except ImportError as exc:
            # CPython's refusal of a module that does not support own-GIL interpreters
            # (Python/import.c; the first of _refusal.MARKERS, not imported here to keep re out).
            if "does not support loading in subinterpreters" not in str(exc):
                raise
            external = sys.modules["_frozen_importlib_external"]
            here = external._path_split(__file__)[0]
            return external.spec_from_file_location(name, external._path_join(here, file))
        spec.loader = self  # the built-in loaded: create_module hands it over
        return spec

    def create_module(self, spec: "Any") -> "Any":
        return self._created.pop(spec.name)

    def exec_module(self, module: "ModuleType") -> None:
        sys.modules["_frozen_importlib"].BuiltinImporter.exec_module(module)


def _py312_datetime() -> None:
    """CPython 3.12: use the pure-Python datetime, decimal and zoneinfo in workers, so that
    values still come back as the main interpreter's classes.

    Their C modules are single-phase and refused here (gh-117953); ``datetime`` then falls back
    to ``_pydatetime``, whose classes would pickle as ``_pydatetime.datetime`` (unequal to the
    originals in the main interpreter), and ``zoneinfo``'s C module imports datetime's C API
    capsule, which ``_pydatetime`` lacks, failing the import (and corrupting the main
    interpreter's zoneinfo). So the C modules are blocked, the pure classes are named as the
    public module, and ``timezone`` pickles by its constructor arguments, as the C class
    expects.
    """
    import copyreg
    import importlib

    for name in ("_datetime", "_decimal", "_zoneinfo"):
        sys.modules[name] = None  # type: ignore[assignment]
    _pydatetime: Any = importlib.import_module("_pydatetime")

    for name in ("date", "time", "datetime", "timedelta", "tzinfo", "timezone"):
        getattr(_pydatetime, name).__module__ = "datetime"
    copyreg.pickle(_pydatetime.timezone, lambda tz: (_pydatetime.timezone, tz.__getinitargs__()))


def initialize(init: "tuple[Callable[..., object] | str, tuple[Any, ...]]") -> str | None:
    """Run the pool's initializer; a ``str`` (the traceback) refuses the worker's start."""
    try:
        fn, initargs = init
        if isinstance(fn, str):
            exec_script(fn)
        else:
            fn(*initargs)
    except BaseException as exc:
        return format_failure(exc)
    return None


def format_failure(exc: BaseException) -> str:
    """The traceback text of a start-up failure."""
    import traceback

    return "".join(traceback.format_exception(_explain(exc)))


def exec_script(source: str) -> None:
    """A script task (``pool.submit("code")``): run it in this worker's ``__main__``."""
    exec(source, sys.modules["__main__"].__dict__)  # a documented feature: script tasks


# The batch runners below make their first call before any other (a refusal in its leading
# imports then moves the whole batch to the lane: :func:`failed_before_effects`).


def run_chunk(fn: "Callable[..., Any]", chunk: "Sequence[tuple[Any, ...]]") -> "list[Any]":
    """A batch of ``map`` calls sent as one task (never empty)."""
    results = [fn(*chunk[0])]
    results += [fn(*args) for args in chunk[1:]]
    return results


def run_chunk1(fn: "Callable[[Any], Any]", chunk: "Sequence[Any]") -> "list[Any]":
    """A batch of ``map`` calls of one argument each, sent as one task (never empty)."""
    results = [fn(chunk[0])]
    results += map(fn, chunk[1:])
    return results


def run_calls(calls: "Sequence[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]") -> "list[Any]":
    """A batch of independent calls (a joblib batch) sent as one task."""
    if not calls:
        return []
    fn, args, kwargs = calls[0]
    results = [fn(*args, **kwargs)]
    results += [fn(*args, **kwargs) for fn, args, kwargs in calls[1:]]
    return results


# What a function may run before the import that failed, for its call to count as not started:
# more imports, and storing what they bound.
_IMPORT_OPS = frozenset(
    {
        "RESUME",
        "NOP",
        "CACHE",
        "EXTENDED_ARG",
        "MAKE_CELL",
        "COPY_FREE_VARS",
        "LOAD_CONST",
        "LOAD_SMALL_INT",
        "IMPORT_NAME",
        "IMPORT_FROM",
        "STORE_FAST",
        "STORE_FAST_STORE_FAST",
        "STORE_NAME",
        "STORE_GLOBAL",
        "STORE_DEREF",
        "POP_TOP",
        "SWAP",
        "COPY",
    }
)
_CALL_OPS = frozenset({"CALL", "CALL_KW", "CALL_FUNCTION_EX"})


def failed_before_effects(exc: BaseException) -> bool:
    """Whether the call failed in the imports its function starts with, before it ran anything
    else: ``def f(x): import numpy`` in a worker that refuses numpy. Then nothing but imports
    ran (as when the import is at the top of the task's module, which fails before the call
    starts), and the executor may run the call in its fallback lane instead (``_lane.py``).

    The traceback's first frame is the task's function (called from C), or one of the batch
    runners above, or :func:`exec_script`, whose first call is then the one that failed. In
    the function's frame, every instruction before the failed one must be an import or the
    store of what it bound (:data:`_IMPORT_OPS`), and the failed one an import."""
    import dis

    def before_and_failed(tb: "TracebackType") -> "tuple[list[str], str]":
        # (tb_lasti may point into the failed instruction's inline caches: 3.12)
        ops = [(ins.offset, ins.opname) for ins in dis.get_instructions(tb.tb_frame.f_code)]
        before = [name for offset, name in ops if offset <= tb.tb_lasti]
        return before[:-1], before[-1] if before else ""

    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code in _FIRST_CALL_RUNNERS:
        before, failed = before_and_failed(tb)
        if failed not in _CALL_OPS or any(name in _CALL_OPS for name in before):
            return False  # an earlier call of the batch had run
        tb = tb.tb_next
    if tb is None:
        return False
    before, failed = before_and_failed(tb)
    return failed == "IMPORT_NAME" and all(name in _IMPORT_OPS for name in before)


_FIRST_CALL_RUNNERS = frozenset(f.__code__ for f in (run_chunk, run_chunk1, run_calls, exec_script))


def _explain(exc: BaseException) -> BaseException:
    """Replace CPython's terse error for extensions that cannot load here (``_refusal.py``)."""
    if isinstance(exc, ImportError):
        from . import _refusal

        return _refusal.explain(exc)
    return exc


def describe(exc: BaseException, _depth: int = 0) -> "dict[str, Any]":
    """What the owner needs to re-raise ``exc`` (``_dispatch.decode_exception``): the pickled
    exception (``None`` if it cannot be pickled), its type's module and qualified name, its
    message and traceback text, and its state for a rebuild without ``__init__`` (args,
    attributes, notes; ``None`` if they cannot be sent), with its cause and context described
    the same way."""
    import traceback

    from . import _pickling

    before_effects = False
    if _depth == 0:  # the explanation keeps the original as its cause: explain that once
        if isinstance(exc, ImportError):
            from . import _refusal

            before_effects = _refusal.is_refusal(exc) and failed_before_effects(exc)
        exc = _explain(exc)
    kind = type(exc)
    try:
        text = str(exc)
    except Exception:
        text = f"<str() of {kind.__qualname__} failed>"
    try:
        pickled: bytes | None = _pickling.dumps(exc)
    except Exception:
        pickled = None
    attrs = {k: v for k, v in vars(exc).items() if k != "__notes__"} if hasattr(exc, "__dict__") else {}
    state: tuple[Any, ...] | None = (exc.args, attrs)
    try:
        _pickling.dumps(state)  # everything in it can be sent (natively or pickled)
    except Exception:
        state = None
    notes = getattr(exc, "__notes__", None)
    links = {"cause": exc.__cause__, "context": exc.__context__}
    return {
        "pickled": pickled,
        "module": kind.__module__,
        "qualname": kind.__qualname__,
        "message": text,
        "formatted": "".join(traceback.format_exception(exc)) if _depth == 0 else "",
        "args": None if state is None else state[0],
        "attrs": None if state is None else state[1],
        "notes": list(notes) if isinstance(notes, list) and all(isinstance(n, str) for n in notes) else None,
        "suppress_context": exc.__suppress_context__,
        "before_effects": before_effects,
        **{
            name: describe(linked, _depth + 1) if linked is not None and _depth < 16 else None
            for name, linked in links.items()
        },
    }


def unsendable_result(fn: object, exc: BaseException) -> "dict[str, Any]":
    """``describe`` of the error for a result that cannot be sent back (``exc`` says why)."""
    from . import _pickling
    from ._errors import NotShareableError

    error = NotShareableError(
        f"the result of {_pickling.describe(fn, call=True)} cannot be sent back from the worker interpreter: {exc}"
    )
    error.__cause__ = exc
    return describe(error)
