"""``_tracemalloc`` in a worker interpreter, where the built-in module refuses to load.

CPython's ``_tracemalloc`` (Modules/_tracemalloc.c) is a single-phase module, which an own-GIL
interpreter refuses ("module _tracemalloc does not support loading in subinterpreters"; a
shared-GIL one refuses it too). The stdlib's ``tracemalloc`` is pure Python on top of it, so
without this module ``import tracemalloc`` fails in a worker (numpy's
``_core/tests/test_multiarray.py`` imports it, so that file cannot even be collected).

Tracing is the *process's* state (``_PyRuntime.tracemalloc``: the allocator hooks of every
interpreter and one table of traces), started and read by the main interpreter. A worker must
not change it, nor read the traces, whose tracebacks name the main interpreter's code objects.
``_worker._StandIns`` loads this module under the name ``_tracemalloc`` in a worker only when
the built-in one refuses (it tries the built-in first); ``tracemalloc`` then imports as usual
and answers as the stdlib does when not tracing:

* ``is_tracing()`` is ``False``; ``get_traced_memory()`` is ``(0, 0)``,
  ``get_tracemalloc_memory()`` 0, ``_get_traces()`` ``[]``, ``_get_object_traceback()``
  ``None``, ``get_traceback_limit()`` 1 (the default), so ``tracemalloc.take_snapshot()``
  raises the stdlib's "the tracemalloc module must be tracing memory allocations".
* ``stop()``, ``clear_traces()`` and ``reset_peak()`` do nothing, as when not tracing.
* ``start()`` raises ``RuntimeError``: starting would change the process's allocator hooks.
  Start tracing in the main interpreter (``python -X tracemalloc``, ``tracemalloc.start()``):
  it then traces the workers' allocations too, while ``is_tracing()`` here stays ``False``
  (this interpreter cannot read the traces).
"""


def is_tracing() -> bool:
    """``False``: this interpreter cannot trace (see the module docs)."""
    return False


def start(nframe: int = 1, /) -> None:
    """Refused: tracing is the process's state, started from the main interpreter."""
    raise RuntimeError(
        "tracemalloc.start() is not available in an interpool worker interpreter: tracing is process-wide (the "
        "allocator hooks of every interpreter). Start it in the main interpreter (python -X tracemalloc, or "
        "tracemalloc.start()), and take snapshots there; it then traces the workers' allocations too"
    )


def stop() -> None:
    """Nothing to stop: this interpreter does not trace."""


def clear_traces() -> None:
    """Nothing to clear: this interpreter does not trace."""


def reset_peak() -> None:
    """Nothing to reset: this interpreter does not trace."""


def get_traced_memory() -> tuple[int, int]:
    """``(0, 0)``, as the stdlib when not tracing."""
    return (0, 0)


def get_tracemalloc_memory() -> int:
    """0: this interpreter holds no traces."""
    return 0


def get_traceback_limit() -> int:
    """1, the stdlib's default."""
    return 1


def _get_traces() -> list[object]:
    """``[]``, as the stdlib when not tracing."""
    return []


def _get_object_traceback(obj: object, /) -> None:
    """``None``, as the stdlib when not tracing."""
    return None
