"""How a worker finds what the owner's ``__main__`` defines (multiprocessing's spawn does the
same): the pickling policy for ``__main__`` objects, kept apart from the task runner.

Without cloudpickle, functions and classes of the running script are pickled *by
reference* to ``__mp_main__`` (see ``_pickling.py``). A worker resolves such a reference with
:func:`from_main`, which runs the owner's main script once under the name ``__mp_main__``
(an ``if __name__ == "__main__":`` guard keeps its entry point from running again). The
owner tells each worker where its main script is (:func:`main_source`, sent at start-up).
"""

import os
import sys

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

# Set in workers at start-up: how to re-create the owner's __main__ here.
_source: tuple[str, str] | None = None
# True while the owner's main script runs here as __mp_main__ (see loading_main()).
_loading = False


def main_source() -> tuple[str, str] | None:
    """Owner side: how a worker can re-create ``__main__`` as ``__mp_main__``: ``("path",
    file)`` for a script, ``("module", name)`` for ``python -m``, ``None`` when there is
    nothing to run (interactive session, ``python -c``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name != "__main__":
        return ("module", spec.name.removesuffix(".__main__"))
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and os.path.exists(path):
        return ("path", os.path.abspath(path))
    return None


def set_source(source: tuple[str, str] | None) -> None:
    """Worker side: record where the owner's main script is (at start-up)."""
    global _source
    _source = source


def loading_main() -> bool:
    """Whether this interpreter is running the owner's main script as ``__mp_main__``.

    A script without an ``if __name__ == "__main__":`` guard would create a pool again at
    that point, and every worker would do the same (CPython gh-136659); the executor refuses
    instead, with an error that says to add the guard."""
    return _loading


def from_main(qualname: str) -> "Any":
    """Resolve a function or class of the owner's ``__main__`` (sent by reference)."""
    module = sys.modules.get("__mp_main__") or _load_main()
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _load_main() -> "ModuleType":
    global _loading
    import runpy

    if _source is None:
        raise RuntimeError(
            "this task uses a function or class defined in __main__, but the main program has no "
            "script file to re-run in the worker (interactive session or python -c): install "
            "cloudpickle (pip install cloudpickle) to send it by value, or move it to a module"
        )
    kind, where = _source
    module = type(sys)("__mp_main__")  # types.ModuleType, without importing types
    sys.modules["__mp_main__"] = module
    _loading = True
    try:
        if kind == "path":
            namespace = runpy.run_path(where, run_name="__mp_main__")
        else:
            namespace = runpy.run_module(where, run_name="__mp_main__", alter_sys=False)
    except BaseException as exc:
        del sys.modules["__mp_main__"]
        from . import _refusal

        if _refusal.is_refusal(exc):
            raise  # a module the script imports cannot load here: the fallback lane can run the call
        raise RuntimeError(
            f"interpool could not re-create __main__ in a worker interpreter by running {where} as "
            f"__mp_main__: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        _loading = False
    module.__dict__.update(namespace)
    return module
