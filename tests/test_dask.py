"""interpool as the executor of dask.distributed workers: in-process (DaskExecutor), and on a
cluster started from the command line (``dask scheduler``, ``dask worker --preload
interpool.dask``) or set up from Python (``InterpoolPlugin``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import HERE, _child_env, run_script

pytest.importorskip("distributed")

from dask_cluster import HEAP_ERRORS, Cluster

needs_313 = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="on CPython 3.12, dask imports ctypes, whose C module is single-phase there"
)


@pytest.mark.timeout(180)
@needs_313
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
            # a task module that imports distributed: the task runs in the worker's thread, where
            # get_worker() is this worker (found among the in-process workers by the task's key)
            import dask_worker_tasks
            address = cluster.workers[0].address
            print(client.submit(dask_worker_tasks.address, 1).result() == address)
            print(client.submit(dask_worker_tasks.where, 1).result())
        with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, executor=DaskExecutor(1, fallback=None),
                          dashboard_address=None) as cluster, Client(cluster) as client:
            try:  # fallback=None: no thread for it, the ImportError
                client.submit(dask_worker_tasks.address, 1).result()
            except ImportError as exc:
                print("psutil" in str(exc))
        """,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:9] == [
        "True",
        "True",
        "bad 3",
        "285",
        "('THE', 15)",
        "['lazy', 'quick']",
        "True",
        "0",
        "True",
    ], proc.stdout


def test_dask_executor_isolates_cytoolz_when_installed() -> None:
    pytest.importorskip("cytoolz", reason="cytoolz is not installed for this Python")
    from interpool import _isolate
    from interpool.dask import DaskExecutor

    if not _isolate.supported():
        pytest.skip("isolate= needs CPython 3.13+")

    default = object()
    for given, expected, exclude in [
        (default, None, ["psutil"]),  # "auto", the default, but psutil: distributed must keep refusing
        ("auto", None, ["psutil"]),
        (None, ["cytoolz"], []),
        (["json"], ["json", "cytoolz"], []),
        (["cytoolz"], ["cytoolz"], []),
    ]:
        executor = DaskExecutor(1) if given is default else DaskExecutor(1, isolate=given)
        try:
            isolation = executor.pool._isolation
            assert isolation is not None
            assert (isolation["names"], isolation["exclude"]) == (expected, exclude)
        finally:
            executor.shutdown()


def test_plain_interpool_executor_cannot_host_dask_tasks_and_says_why() -> None:
    """Why DaskExecutor exists: distributed cannot be imported in a worker interpreter
    (without isolation; with isolate="auto", the default, it imports, but Dask's wrapper would
    then run the task and its bookkeeping in the worker interpreter, where get_worker() fails)."""
    import interpool

    with interpool.InterpreterPoolExecutor(1, isolate=None) as pool:
        with pytest.raises(ImportError, match="does not support loading in subinterpreters"):
            pool.submit(__import__, "distributed.worker").result(timeout=60)


def test_dask_executor_and_plugin_refuse_bad_arguments() -> None:
    from interpool.dask import DaskExecutor, InterpoolPlugin

    with pytest.raises(ValueError, match=r"fallback must be 'dask'.*or None.*has no Dask worker"):
        DaskExecutor(1, fallback="process")
    with pytest.raises(ValueError, match="positive int"):
        InterpoolPlugin(workers=0)
    with pytest.raises(TypeError, match="module names"):
        InterpoolPlugin(isolate=[3])  # type: ignore[list-item]
    assert InterpoolPlugin(isolate="numpy").isolate == ["numpy"]
    assert InterpoolPlugin(isolate=("numpy", "pandas")).isolate == ["numpy", "pandas"]


def test_preload_says_when_dask_dropped_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """dask worker --scheduler-file F --preload interpool.dask --interpool-workers=3: Dask's command
    line takes the option for the scheduler's address, and the preload gets nothing."""
    import click

    from interpool.dask import dask_setup

    monkeypatch.setattr(sys, "argv", ["dask", "worker", "--scheduler-file", "f", "--interpool-workers=3"])
    with pytest.raises(click.UsageError, match=r"did not pass them to the preload.*Give the address"):
        dask_setup.callback(object(), None, ())  # type: ignore[misc]


# -- a cluster started from the command line --------------------------------------------------


def _finish(cluster: Cluster, shut_down: bool) -> None:
    """Check that the processes ended cleanly (after ``client.shutdown()``), then end any that
    are left."""
    try:
        if shut_down:
            codes = cluster.wait(timeout=60)
            text = cluster.output()
            bad = [marker for marker in HEAP_ERRORS if marker in text]
            assert not bad, f"{bad} in the cluster's output:\n{text[-5000:]}"
            assert all(code == 0 for code in codes.values()), f"exit statuses {codes}:\n{text[-5000:]}"
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def cli_cluster() -> Iterator[Cluster]:
    """A scheduler and two workers, each ``--nthreads 2 --preload interpool.dask
    --interpool-isolate=numpy,pandas``."""
    cluster = Cluster(env=_child_env(None), cwd=HERE)
    try:
        cluster.wait_ready()
        for _ in range(2):
            cluster.add_worker("--nthreads", "2", "--preload", "interpool.dask", "--interpool-isolate=numpy,pandas")
    except BaseException:
        cluster.close()
        raise
    yield cluster
    proc = _client(
        cluster,
        """
        client.shutdown()
        print("shut down")
        """,
    )
    _finish(cluster, shut_down=proc.returncode == 0 and "shut down" in proc.stdout)


def _client(cluster: Cluster, body: str, workers: int = 2, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh process with ``client``, connected to ``cluster`` once
    ``workers`` workers are there, and ``addresses`` (theirs, sorted)."""
    import textwrap

    return run_script(
        f"""
import warnings
warnings.simplefilter("ignore")
from distributed import Client

with Client(scheduler_file={cluster.scheduler_file!r}, timeout=60) as client:
    client.wait_for_workers({workers}, timeout=60)
    addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
{textwrap.indent(textwrap.dedent(body), "    ")}
""",
        timeout=timeout,
    )


def _check(proc: subprocess.CompletedProcess[str], cluster: Cluster, expected: list[str]) -> None:
    assert proc.returncode == 0, f"{proc.stderr}\n{cluster.output()[-5000:]}"
    assert proc.stdout.splitlines() == expected, f"{proc.stdout}\n{proc.stderr}"


@needs_313
@pytest.mark.timeout(150)
def test_cli_workers_run_pure_python_tasks_in_worker_interpreters(cli_cluster: Cluster) -> None:
    proc = _client(
        cli_cluster,
        """
        import dask_tasks
        # the preload installed a DaskExecutor of 2 worker interpreters on each worker
        pools = client.run(lambda dask_worker: (type(dask_worker.executors["default"]).__name__,
                                                dask_worker.executors["default"].pool._max_workers))
        print(sorted(set(pools.values())))
        inputs = [20_000 + i for i in range(16)]
        print(client.gather(client.map(dask_tasks.spin, inputs)) == [dask_tasks.spin(n) for n in inputs])
        for address in addresses:  # each worker runs its tasks in worker interpreters (id 0: its main one)
            ids = client.gather(client.map(dask_tasks.where, range(6), workers=[address], pure=False))
            print(0 not in ids and len(ids) == 6)
        try:
            client.submit(dask_tasks.boom, 3).result()
        except ValueError as exc:
            print(exc)
        """,
    )
    _check(proc, cli_cluster, ["[('DaskExecutor', 2)]", "True", "True", "True", "bad 3"])


@needs_313
@pytest.mark.timeout(150)
def test_cli_workers_run_a_dask_bag_pipeline(cli_cluster: Cluster) -> None:
    proc = _client(
        cli_cluster,
        """
        import dask.bag as db
        import dask_tasks
        numbers = db.from_sequence(range(2_000), npartitions=8)
        print(numbers.map(dask_tasks.spin).filter(lambda x: x % 3 == 0).sum().compute()
              == sum(x for x in map(dask_tasks.spin, range(2_000)) if x % 3 == 0))
        words = db.from_sequence("the quick fox and the lazy dog the end".split() * 50, npartitions=6)
        print(sorted(words.map(str.upper).frequencies().compute())[-1])
        print(numbers.map(dask_tasks.where).distinct().filter(lambda i: i == 0).count().compute())
        """,
    )
    _check(proc, cli_cluster, ["True", "('THE', 150)", "0"])


@needs_313
@pytest.mark.timeout(150)
def test_cli_workers_run_numpy_and_pandas_tasks_isolated(cli_cluster: Cluster) -> None:
    pytest.importorskip("pandas")
    proc = _client(
        cli_cluster,
        """
        import dask_tasks
        for address in addresses:
            where, total = client.submit(dask_tasks.numpy_sum, 1_000, workers=[address], pure=False).result()
            print(where != 0, total)
            where, groups = client.submit(dask_tasks.pandas_groups, 30, workers=[address], pure=False).result()
            print(where != 0, groups)
        """,
    )
    line_np, line_pd = "True 499500", "True {0: 135, 1: 145, 2: 155}"
    _check(proc, cli_cluster, [line_np, line_pd, line_np, line_pd])


@needs_313
@pytest.mark.timeout(150)
def test_cli_get_worker_runs_in_the_dask_workers_thread_or_says_why(cli_cluster: Cluster) -> None:
    proc = _client(
        cli_cluster,
        """
        import dask_tasks, dask_worker_tasks
        address = addresses[0]
        # the task's module imports distributed at its top: it moves to the Dask worker's thread
        # before it starts, and get_worker() is that worker
        print(client.submit(dask_worker_tasks.address, 1, workers=[address], pure=False).result() == address)
        print(client.submit(dask_worker_tasks.where, 1, workers=[address], pure=False).result())
        # the task imports distributed while it runs: it fails, with the reason and the way out...
        try:
            client.submit(dask_tasks.address_inside, 1, workers=[address], pure=False).result()
        except ImportError as exc:
            text = str(exc) + " ".join(getattr(exc, "__notes__", []))
            print("psutil" in text, "a call never runs twice" in text, "at the top of the task's module" in text)
        # ...and the later tasks of that function run in the Dask worker's thread
        print(client.submit(dask_tasks.address_inside, 2, workers=[address], pure=False).result() == address)
        # the other tasks still run in worker interpreters
        print(client.submit(dask_tasks.where, 1, workers=[address], pure=False).result() != 0)
        """,
    )
    _check(proc, cli_cluster, ["True", "0", "True True True", "True", "True"])


@needs_313
@pytest.mark.timeout(200)
def test_worker_plugin_installs_on_every_worker_and_comes_off() -> None:
    cluster = Cluster(env=_child_env(None), cwd=HERE)
    shut_down = False
    try:
        cluster.wait_ready()
        cluster.add_worker("--nthreads", "2")
        proc = _client(
            cluster,
            f"""
            import time
            import dask_tasks
            from interpool.dask import InterpoolPlugin

            def kind(dask_worker):
                return type(dask_worker.executors["default"]).__name__

            print(sorted(set(client.run(kind).values())))  # Dask's own thread pool
            client.register_plugin(InterpoolPlugin(workers=3))
            print(sorted(set(client.run(kind).values())))
            print(0 not in client.gather(client.map(dask_tasks.where, range(6), pure=False)))
            # a worker that joins later gets the plugin too
            import subprocess, sys
            joined = subprocess.Popen(
                [{sys.executable!r}, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                 {cluster.scheduler_file!r}, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                 "--no-nanny"])
            try:
                client.wait_for_workers(2, timeout=60)
                info = client.run(lambda dask_worker: (kind(dask_worker),
                                                       dask_worker.executors["default"].pool._max_workers))
                print(sorted(info.values()))
                later = sorted(set(client.scheduler_info(n_workers=-1)["workers"]) - set(addresses))
                ids = client.gather(client.map(dask_tasks.where, range(4), workers=later, pure=False))
                print(0 not in ids)
                # removed: each worker gets its thread pool back and the tasks run there again
                client.unregister_worker_plugin("interpool")
                print(sorted(set(client.run(kind).values())))
                print(set(client.gather(client.map(dask_tasks.where, range(4), pure=False))))
                client.shutdown()
            finally:
                try:
                    joined.wait(timeout=60)
                finally:
                    if joined.poll() is None:
                        joined.kill()
            print(joined.returncode)
            """,
            workers=1,
            timeout=180,
        )
        _check(
            proc,
            cluster,
            [
                "['ThreadPoolExecutor']",
                "['DaskExecutor']",
                "True",
                "[('DaskExecutor', 3), ('DaskExecutor', 3)]",
                "True",
                "['ThreadPoolExecutor']",
                "{0}",
                "0",
            ],
        )
        shut_down = True
    finally:
        _finish(cluster, shut_down)
