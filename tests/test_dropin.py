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
from conftest import run_script, wait_until


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
    # The stdlib pool's text ("ExecutionFailed: Exception: spam", "Uncaught in the interpreter:")
    # with the original type and message. Before: "Exception in initializer: RuntimeError: ...".
    assert any(
        line.startswith("Exception in initializer: ExecutionFailed: RuntimeError: initializer exploded")
        and "Uncaught in the interpreter:" in line
        for line in lines
    ), lines


def test_a_call_that_does_not_unpickle_in_the_worker_is_not_shareable() -> None:
    # As the stdlib's pool: NotShareableError 'args not shareable', caused by the unpickling
    # error. Before: the bare RuntimeError.
    with InterpreterPoolExecutor(1) as pool:
        for future in (
            pool.submit(tasks.PickleShenanigans(0)),
            pool.submit(tasks.identity, tasks.PickleShenanigans(0)),
        ):
            with pytest.raises(interpool.NotShareableError, match="args not shareable") as info:
                future.result(timeout=60)
            assert type(info.value.__cause__) is RuntimeError
            assert "not unpickled" in str(info.value.__cause__)


@pytest.mark.parametrize("kind", ["interpool", "stdlib"])
def test_map_without_iterables_yields_nothing(kind: str) -> None:
    # Before: ValueError("min() iterable argument is empty") from the progress code.
    pool = InterpreterPoolExecutor(1) if kind == "interpool" else cf.ThreadPoolExecutor(1)
    with pool:
        if kind == "interpool" or sys.version_info >= (3, 14):  # buffersize is new in 3.14
            assert list(pool.map(tasks.square, buffersize=2)) == []
        assert list(pool.map(tasks.square)) == []
        if kind == "interpool":
            assert list(pool.map(tasks.square, progress=lambda n: None)) == []


def test_shutdown_cancel_futures_lets_the_started_tasks_finish() -> None:
    # CPython's test_cancel_futures: threads start on submit and take a task each; shutdown
    # cancels the rest. Before: all 50 were cancelled (workers were still making their
    # interpreters), so none finished.
    pool = InterpreterPoolExecutor(5)
    futures = [pool.submit(tasks.sleep_then, 0.1, i) for i in range(50)]
    pool.shutdown(cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    others = [f for f in futures if not f.cancelled()]
    assert len(cancelled) > 20
    assert all(f.done() and f.exception() is None for f in others)
    assert len(others) > 0


def test_the_stdlib_pools_private_attributes() -> None:
    # _max_workers, _threads (one entry per started worker), _broken (False, or why).
    with InterpreterPoolExecutor(3) as pool:
        assert pool._max_workers == 3
        assert len(pool._threads) == 0
        for i in range(3):
            pool.submit(tasks.square, i).result(timeout=60)
        assert len(pool._threads) == 1, "an idle worker is reused"
        futures = [pool.submit(tasks.sleep_then, 0.2, i) for i in range(45)]
        assert [f.result(timeout=60) for f in futures] == list(range(45))
        assert len(pool._threads) == pool._max_workers
        assert pool._broken is False
    with InterpreterPoolExecutor(1, initializer=tasks.broken_init) as pool:
        with pytest.raises(interpool.BrokenInterpreterPool):
            pool.submit(tasks.square, 1).result(timeout=60)
        assert isinstance(pool._broken, str) and "initializer exploded" in pool._broken


def test_new_workers_see_the_current_sys_path(tmp_path: object) -> None:
    """A worker started after sys.path changed imports from the new entry (workers that
    started before keep theirs). The second worker starts only once the first is held busy
    after the change: before, with recycling, the first task's replacement could start before
    the change (it did on a loaded machine)."""
    module_dir = os.path.join(str(tmp_path), "late")
    os.makedirs(module_dir)
    with open(os.path.join(module_dir, "late_module.py"), "w") as f:
        f.write("def hello():\n    return 'hello from a late path'\n")
    read_end, write_end = os.pipe()
    with InterpreterPoolExecutor(2) as pool:
        assert pool.submit(tasks.square, 2).result(timeout=60) == 4
        assert len(pool._threads) == 1  # workers start as tasks need them
        sys.path.append(module_dir)
        try:
            import late_module  # type: ignore[import-not-found]

            held = pool.submit(tasks.hang_until_written, read_end)  # the first worker: the second starts now
            wait_until(held.running, "the first worker runs the held task")
            assert pool.submit(late_module.hello).result(timeout=60) == "hello from a late path"
            os.write(write_end, b"x")
            assert held.result(timeout=60) == b"x"
        finally:
            sys.path.remove(module_dir)
            sys.modules.pop("late_module", None)
            os.close(write_end)
            os.close(read_end)


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


def test_a_failing_log_filter_or_handler_fails_one_record_and_forwarding_goes_on() -> None:
    # Issue 22, 6: one exception in a main-interpreter filter or handler ended the listener
    # thread that hands workers' records to logging here: every later record of every worker
    # was dropped silently (before: only "info from a worker" of the first call arrived).
    proc = run_script(
        """
        import logging, sys, tasks
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        class Picky(logging.Filter):
            def filter(self, record):
                if "warning" in record.getMessage():
                    raise ValueError("a filter that fails")
                return True
        class Failing(logging.Handler):
            def handle(self, record):
                if "traceback" in record.getMessage():
                    raise RuntimeError("a handler that fails")
                return True
        logging.getLogger("app").addFilter(Picky())
        logging.getLogger("app").addHandler(Failing())
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            for _ in range(3):
                pool.submit(tasks.log_at_every_level, "app").result()
        print("done")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["info from a worker"] * 3 + ["done"], proc.stdout
    # Each failure is reported as logging reports one, and only that record is lost.
    assert proc.stderr.count("--- Logging error ---") == 6, proc.stderr
    assert proc.stderr.count("ValueError: a filter that fails") == 3, proc.stderr
    assert proc.stderr.count("RuntimeError: a handler that fails") == 3, proc.stderr
