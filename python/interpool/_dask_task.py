"""What :mod:`interpool.dask` runs in worker interpreters: a Dask task, and nothing of
``distributed`` (which cannot load there: it imports psutil). Kept apart from ``dask.py``,
which imports ``distributed`` for its worker plugin, so that workers import only this."""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from typing import Any

# Set on an ImportError raised while the task ran (the call had started): the Dask worker then
# knows the call must not run again elsewhere. Not set when loading the task or its inputs
# failed: then the task did not start.
STARTED = "_interpool_dask_started"


def call(task: Any, data: dict[str, Any]) -> Any:
    """Run a Dask task (``distributed.worker._run_task_simple`` without its bookkeeping, which
    the Dask worker does)."""
    try:
        return task(data)
    except ImportError as exc:
        setattr(exc, STARTED, True)
        raise
