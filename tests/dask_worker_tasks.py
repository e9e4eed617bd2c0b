"""Dask tasks that need the Dask worker (for tests/test_dask.py): this module imports
``distributed`` at its top, so its functions cannot load in a worker interpreter (psutil
refuses them) and DaskExecutor runs them in a thread of the Dask worker, as Dask does."""

from distributed import get_worker


def address(_):
    return get_worker().address


def where(_):
    from interpool import _interpool

    return _interpool.interpreter_id()
