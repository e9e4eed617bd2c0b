"""interpool as the executor of a dask.distributed worker (local in-process cluster)."""

from __future__ import annotations

import sys

import pytest

from conftest import run_script

pytest.importorskip("distributed")


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="on CPython 3.12, dask imports ctypes, whose C module is single-phase there"
)
def test_dask_worker_runs_tasks_on_interpool() -> None:
    # In a subprocess: Dask keeps global threads and event loops alive after a cluster closes.
    proc = run_script(
        """
        import warnings
        warnings.simplefilter("ignore")
        import dask.bag as db
        import dask_tasks
        from distributed import Client, LocalCluster
        from interpool.dask import DaskExecutor

        with LocalCluster(n_workers=1, processes=False, threads_per_worker=2, executor=DaskExecutor(2),
                          dashboard_address=None) as cluster, Client(cluster) as client:
            inputs = [20_000 + i for i in range(8)]
            print(client.gather(client.map(dask_tasks.spin, inputs)) == [dask_tasks.spin(n) for n in inputs])
            print(0 not in set(client.gather(client.map(dask_tasks.where, range(10)))))
            try:
                client.submit(dask_tasks.boom, 3).result()
            except ValueError as exc:
                print(exc)
            print(db.from_sequence(range(10), npartitions=4).map(lambda x: x * x).sum().compute())
            # string pipelines use cytoolz when it is installed: DaskExecutor isolates it
            words = db.from_sequence("the quick fox and the lazy dog the end".split() * 5, npartitions=3)
            print(sorted(words.map(str.upper).frequencies().compute())[-1])
            print(sorted(words.filter(lambda w: len(w) > 3).distinct().compute()))
        """,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:6] == [
        "True",
        "True",
        "bad 3",
        "285",
        "('THE', 15)",
        "['lazy', 'quick']",
    ], proc.stdout


def test_dask_executor_isolates_cytoolz_when_installed() -> None:
    pytest.importorskip("cytoolz", reason="cytoolz is not installed for this Python")
    from interpool import _isolate
    from interpool.dask import DaskExecutor

    if not _isolate.supported():
        pytest.skip("isolate= needs CPython 3.13+")

    for given, expected in [
        (None, ["cytoolz"]),
        (["json"], ["json", "cytoolz"]),
        (["cytoolz"], ["cytoolz"]),
        ("auto", None),
    ]:
        executor = DaskExecutor(1, isolate=given)
        try:
            isolation = executor.pool._isolation
            assert isolation is not None
            assert isolation["names"] == expected
        finally:
            executor.shutdown()


def test_plain_interpool_executor_cannot_host_dask_tasks_and_says_why() -> None:
    """Why DaskExecutor exists: distributed cannot be imported in a worker interpreter."""
    import interpool

    with interpool.InterpreterPoolExecutor(1) as pool:
        with pytest.raises(ImportError, match="does not support loading in subinterpreters"):
            pool.submit(__import__, "distributed.worker").result(timeout=60)
