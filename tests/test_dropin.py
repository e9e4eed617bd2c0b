"""Where code meets the executor: lazy start, asyncio's default executor, stdlib exception
classes, new workers seeing the current sys.path, progress bars."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import sys

import pytest

import interpool
from interpool import InterpreterPoolExecutor

import tasks
from conftest import run_script


def test_one_task_starts_one_worker_and_idle_workers_are_reused() -> None:
    with InterpreterPoolExecutor(16) as pool:
        assert pool.stats()["threads"] == 0
        for i in range(20):
            assert pool.submit(tasks.square, i).result(timeout=60) == i * i
        assert pool.stats()["threads"] == 1, "each task found the idle worker"
        futures = [pool.submit(tasks.sleep_then, 0.2, i) for i in range(3)]
        assert [f.result(timeout=60) for f in futures] == [0, 1, 2]
        assert pool.stats()["threads"] <= 4, "started only as concurrent tasks needed"


def test_accepted_as_asyncios_default_executor() -> None:
    async def main() -> tuple[int, int, int, bool]:
        loop = asyncio.get_running_loop()
        pool = InterpreterPoolExecutor(2)
        loop.set_default_executor(pool)
        by_default = await loop.run_in_executor(None, tasks.square, 4)
        to_thread = await asyncio.to_thread(tasks.add, 1, 2, c=3)
        interp = await asyncio.to_thread(tasks.interpreter_id)
        infos = await loop.getaddrinfo("localhost", 80)
        return by_default, to_thread, interp, bool(infos)

    assert isinstance(InterpreterPoolExecutor(1), cf.ThreadPoolExecutor)
    by_default, to_thread, interp, resolved = asyncio.run(main())
    assert (by_default, to_thread, resolved) == (16, 6, True)
    assert interp != 0, "asyncio.to_thread ran in a worker interpreter"


@pytest.mark.skipif(sys.version_info < (3, 14), reason="the stdlib classes are new in 3.14")
def test_the_stdlib_exception_classes_themselves_on_314() -> None:
    from concurrent import interpreters
    from concurrent.futures.interpreter import BrokenInterpreterPool

    assert interpool.ExecutionFailed is interpreters.ExecutionFailed
    assert interpool.NotShareableError is interpreters.NotShareableError
    assert interpool.QueueEmpty is interpreters.QueueEmpty
    assert interpool.QueueFull is interpreters.QueueFull
    assert interpool.BrokenInterpreterPool is BrokenInterpreterPool
    with InterpreterPoolExecutor(1) as pool, pytest.raises(ValueError) as info:
        pool.submit(tasks.fail, "x").result(timeout=60)
    assert type(info.value.__cause__) is interpreters.ExecutionFailed
    import pickle

    again = pickle.loads(pickle.dumps(info.value.__cause__))
    assert type(again) is interpreters.ExecutionFailed and again.formatted == info.value.__cause__.formatted


def test_failing_initializer_log_line_names_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    with InterpreterPoolExecutor(1, initializer=tasks.broken_init) as pool:
        with pytest.raises(interpool.BrokenInterpreterPool):
            pool.submit(tasks.square, 1).result(timeout=60)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert any(line.startswith("Exception in initializer: RuntimeError: initializer exploded") for line in lines)


def test_new_workers_see_the_current_sys_path(tmp_path: object) -> None:
    module_dir = os.path.join(str(tmp_path), "late")
    os.makedirs(module_dir)
    with open(os.path.join(module_dir, "late_module.py"), "w") as f:
        f.write("def hello():\n    return 'hello from a late path'\n")
    with InterpreterPoolExecutor(1, max_tasks_per_worker=1) as pool:
        assert pool.submit(tasks.square, 2).result(timeout=60) == 4
        sys.path.append(module_dir)
        try:
            import late_module  # type: ignore[import-not-found]

            assert pool.submit(late_module.hello).result(timeout=60) == "hello from a late path"
        finally:
            sys.path.remove(module_dir)
            sys.modules.pop("late_module", None)


def test_new_workers_see_environment_variables_set_later() -> None:
    proc = run_script(
        """
        import os, tasks
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            os.environ["INTERPOOL_LATE"] = "yes"
            print(pool.submit(os.getenv, "INTERPOOL_LATE").result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "yes"


def test_progress_counts_items_not_chunks() -> None:
    seen: list[int] = []
    with InterpreterPoolExecutor(2) as pool:
        results = list(pool.map(tasks.square, range(200), chunksize=20, progress=seen.append))
    assert results == [i * i for i in range(200)]
    assert sum(seen) == 200 and set(seen) == {20}


def test_progress_with_tqdm_counts_every_item() -> None:
    tqdm = pytest.importorskip("tqdm")

    totals: dict[int, int] = {}

    class Counting(tqdm.tqdm):  # type: ignore[misc,name-defined]
        monitor_interval = 0  # no monitor thread

        def __init__(self, *args: object, **kwargs: object) -> None:
            self.number = len(totals)  # not id(self): the second bar may reuse the first's address
            totals[self.number] = 0
            super().__init__(*args, **kwargs)

        def close(self) -> None:
            totals[self.number] = self.n
            super().close()

    import tqdm.auto

    original = tqdm.auto.tqdm
    tqdm.auto.tqdm = Counting
    try:
        with InterpreterPoolExecutor(2) as pool:
            assert len(list(pool.map(tasks.square, range(200), chunksize=20, progress=True))) == 200

            async def consume() -> int:
                return len([r async for r in pool.amap(tasks.square, range(50), chunksize=7, progress=True)])

            assert asyncio.run(consume()) == 50
    finally:
        tqdm.auto.tqdm = original
    assert sorted(totals.values()) == [50, 200]


def test_progress_without_tqdm_writes_a_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with InterpreterPoolExecutor(2) as pool:
        assert len(list(pool.map(tasks.square, range(30), chunksize=10, progress=True))) == 30
    assert "30/30 items" in capsys.readouterr().err


def test_bad_progress_is_a_type_error() -> None:
    with InterpreterPoolExecutor(1) as pool, pytest.raises(TypeError, match="progress must be"):
        pool.map(tasks.square, [1], progress="yes")  # type: ignore[arg-type]


def test_worker_log_records_reach_the_main_interpreters_logging() -> None:
    proc = run_script(
        """
        import logging, sys, tasks
        fields = "%(levelname)s %(name)s %(threadName)s %(message)s"
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=fields)
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1, thread_name_prefix="pool") as pool:
            pool.submit(tasks.log_at_every_level, "app").result()
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "INFO app pool_0 info from a worker" in lines
    assert "WARNING app pool_0 warning from a worker 42" in lines
    assert not any("debug from a worker" in line for line in lines), "the main interpreter's level applies"
    assert any(line.startswith("ERROR app pool_0 with a traceback") for line in lines)
    assert "ZeroDivisionError" in proc.stdout


def test_a_worker_that_configures_its_own_logging_keeps_it(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "worker.log")
    proc = run_script(
        f"""
        import logging, sys, tasks
        logging.basicConfig(stream=sys.stdout, level=logging.INFO)
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            pool.submit(tasks.configure_own_logging_and_log, {path!r}).result()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept in the worker" not in proc.stdout
    with open(path) as f:
        assert f.read().strip() == "own: kept in the worker"


def test_a_pool_dropped_without_shutdown_does_not_hold_exit_with_logging_configured() -> None:
    # The listener thread of forwarded records ends when the pool's last task is done, also
    # for a pool that is garbage collected or never used (it used to keep exit waiting).
    proc = run_script(
        """
        import gc, logging, sys, tasks
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        from interpool import InterpreterPoolExecutor
        InterpreterPoolExecutor(1)
        pool = InterpreterPoolExecutor(1)
        future = pool.submit(tasks.log_at_every_level, "app")
        del pool
        gc.collect()
        future.result()
        kept = InterpreterPoolExecutor(1)
        kept.submit(tasks.log_at_every_level, "app").result()
        print("done")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("info from a worker") == 2 and "done" in proc.stdout
