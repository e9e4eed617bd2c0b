"""The fallback lane: calls that cannot run in a worker interpreter (a module they need
refuses own-GIL interpreters) run in a process or a thread instead.

The dependency-free cases use ``readline``, which refuses own-GIL interpreters on every
Python of the matrix (3.12-3.14t; so does ``_curses``; ``faulthandler`` did too, but workers
now get a stand-in for it): ``lane_tasks`` imports it
at its top (calls move before they start), ``lane_late`` inside a function (the call has
started). numpy cases run where numpy is installed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from concurrent.futures.thread import BrokenThreadPool
from typing import Any

import pytest

import interpool
from interpool import FallbackWarning, InterpreterPoolExecutor

import lane_late
import lane_tasks
import tasks
from conftest import ctrl_c, run_file, run_script, wait_until

# Fallbacks warn once per function; tests that check the warning record it themselves.
pytestmark = pytest.mark.filterwarnings("ignore::interpool.FallbackWarning")

LANES = ["process", "thread"]


@pytest.fixture(params=LANES)
def lane(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """A test must not leave lane processes behind (the shared forkserver may stay)."""
    before = {p.pid for p in multiprocessing.active_children()}
    yield
    leaked = [p for p in multiprocessing.active_children() if p.pid not in before and "_lane_" in p.name]
    assert not leaked, f"lane processes left running: {leaked}"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.one_python
@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", ["processes", "", "Thread", 1, True, ["process"]])
def test_fallback_must_be_process_thread_or_none(bad: object) -> None:
    with pytest.raises(ValueError, match=r"fallback must be 'process'.*'thread'.*None") as info:
        InterpreterPoolExecutor(1, fallback=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


@pytest.mark.timeout(60)
def test_calls_that_cannot_load_in_a_worker_run_in_the_lane(lane: str) -> None:
    with InterpreterPoolExecutor(2, fallback=lane) as pool:
        first = pool.submit(lane_tasks.where).result(timeout=30)
        stats = pool.stats()
        assert (stats["lane_submitted"], stats["lane_functions"]) == (1, 1)
        assert stats["submitted"] == 1  # a worker tried it first
        again = [pool.submit(lane_tasks.where).result(timeout=30) for _ in range(3)]
        stats = pool.stats()
        assert stats["submitted"] == 1, "later calls must go straight to the lane"
        assert (stats["lane_submitted"], stats["lane_completed"], stats["pending"]) == (4, 4, 0)
        assert pool.submit(tasks.square, 7).result() == 49  # other functions still run in workers
        assert pool.stats()["submitted"] == 2
    for info in [first, *again]:
        assert info["readline"]
        if lane == "process":
            assert info["pid"] != os.getpid()
        else:
            assert (info["pid"], info["interp"]) == (os.getpid(), 0)
            assert "_thread_lane_" in info["thread"]


@pytest.mark.timeout(60)
def test_one_fallback_warning_per_function_says_what_where_why_and_what_to_do(lane: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InterpreterPoolExecutor(2, fallback=lane) as pool:
            assert [pool.submit(lane_tasks.square, i).result(timeout=30) for i in range(3)] == [0, 1, 4]
            assert pool.submit(lane_tasks.pid).result(timeout=30) > 0
    fallbacks = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallbacks) == 2, [str(w.message) for w in fallbacks]
    assert issubclass(FallbackWarning, RuntimeWarning)
    text = str(fallbacks[0].message)
    assert "lane_tasks.square()" in text and f"fallback {lane} lane" in text
    assert "'readline' (standard library)" in text and "cannot load in an own-GIL interpreter" in text
    assert "fallback=None" in text
    assert fallbacks[0].filename == lane_tasks.__file__  # points at the function


@pytest.mark.timeout(60)
def test_a_warning_filter_that_makes_it_an_error_turns_the_fallback_off() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        with InterpreterPoolExecutor(1) as pool:
            with pytest.raises(FallbackWarning) as info:
                pool.submit(lane_tasks.square, 3).result(timeout=30)
            assert pool.stats()["lane_submitted"] == 0
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.timeout(60)
def test_fallback_none_raises_the_import_error_naming_module_and_fixes() -> None:
    with InterpreterPoolExecutor(1, fallback=None) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(lane_tasks.square, 3).result(timeout=30)
        assert "lane_submitted" not in pool.stats()
    message = str(info.value)
    assert info.value.name == "readline"
    assert "'readline' (standard library)" in message
    assert "does not support loading in subinterpreters" in message
    assert "fallback='process'" in message and "main interpreter" in message


@pytest.mark.timeout(60)
def test_a_call_that_had_started_is_never_run_twice(lane: str, tmp_path: Any) -> None:
    log = str(tmp_path / "log")
    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(lane_late.log_then_import, log).result(timeout=30)
        with open(log) as f:
            assert f.read() == "ran\n", "the started call must not run again"
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "already started" in notes and "never runs twice" in notes
        assert f"fallback {lane} lane" in notes and "at the top of the task's module" in notes
        # Later calls of that function use the lane, where the import works.
        assert pool.submit(lane_late.log_then_import, log).result(timeout=30) is True
        assert pool.stats()["lane_submitted"] == 1
    with open(log) as f:
        assert f.read() == "ran\nran\n"


@pytest.mark.timeout(60)
def test_a_function_that_starts_with_the_refused_import_moves_before_anything_ran(lane: str) -> None:
    # `def f(x): import readline` fails in a worker before it ran anything but imports: the
    # call moves to the lane as if the import were at the top of its module, and a map() of it
    # does not die (issue 23).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InterpreterPoolExecutor(2, fallback=lane, isolate=None) as pool:
            assert pool.submit(lane_late.import_first, 3).result(timeout=30) == 9
            assert pool.stats()["lane_submitted"] == 1
            assert list(pool.map(lane_late.import_first, range(6), timeout=60)) == [i * i for i in range(6)]
            # a batch whose first call fails in its leading imports moves as a whole
            batched = list(pool.map(lane_late.import_first_again, range(7), chunksize=3, timeout=60))
            assert batched == [i + 1 for i in range(7)]
            # a script task that starts with the import too
            assert pool.submit("import readline\nfrom readline import get_line_buffer\n").result(timeout=30) is None
            stats = pool.stats()
            assert stats["lane_functions"] == 3 and stats["lane_completed"] == stats["lane_submitted"]
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallbacks) == 3 and all("This call and later ones" in text for text in fallbacks), fallbacks


@pytest.mark.timeout(60)
def test_a_call_that_ran_code_before_the_refused_import_fails_and_later_calls_move(lane: str) -> None:
    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        with pytest.raises(ImportError) as info:
            pool.submit(lane_late.import_after_a_call, -2).result(timeout=30)
        assert "already started" in "\n".join(getattr(info.value, "__notes__", []))
        assert pool.submit(lane_late.import_after_a_call, -2).result(timeout=30) == 3
        # In a batch, a later call's refusal fails the batch: its first call had run
        with pytest.raises(ImportError):
            list(pool.map(lane_late.import_unless_zero, [0, 1, 2], chunksize=3, timeout=60))


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_exceptions_keep_their_types(lane: str) -> None:
    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        with pytest.raises(ValueError, match="bad input") as info:
            pool.submit(lane_tasks.fail, "bad input").result(timeout=30)
        if lane == "process":  # the remote traceback is attached, as for worker tasks
            assert isinstance(info.value.__cause__, interpool.ExecutionFailed)
            assert "lane_tasks.py" in info.value.__cause__.formatted
        with pytest.raises(lane_tasks.HttpError) as http:
            pool.submit(lane_tasks.raise_http_error, 404).result(timeout=30)
        assert (http.value.code, http.value.url) == (404, "https://example.org")


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_map_with_chunksize_moves_batches_to_the_lane(lane: str) -> None:
    with InterpreterPoolExecutor(2, fallback=lane) as pool:
        assert list(pool.map(lane_tasks.square, range(50), chunksize=7)) == [i * i for i in range(50)]
        assert list(pool.map(lane_tasks.square, range(10))) == [i * i for i in range(10)]
        assert pool.stats()["lane_functions"] == 1  # the function, not the batch runner


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_asyncio_run_reaches_the_lane(lane: str) -> None:
    async def main(pool: InterpreterPoolExecutor) -> list[int]:
        return [await pool.run(lane_tasks.square, i) for i in range(3)]

    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        assert asyncio.run(main(pool)) == [0, 1, 4]


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_cancel_a_queued_lane_call(lane: str, tmp_path: Any) -> None:
    gate, log = str(tmp_path / "gate"), str(tmp_path / "log")
    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        # Both functions are known to need the lane: their calls go straight there.
        pool.submit(lane_tasks.append, log, "first").result(timeout=30)
        pool.submit(lane_tasks.wait_for, log).result(timeout=30)
        blocker = pool.submit(lane_tasks.wait_for, gate)
        queued = [pool.submit(lane_tasks.append, log, str(i)) for i in range(3)]
        wait_until(blocker.running, "the blocker runs")
        assert not blocker.cancel()  # running
        assert queued[1].cancel() and queued[1].cancelled()
        assert pool.stats()["lane_queued"] == 2
        open(gate, "w").close()
        assert blocker.result(timeout=30) == gate
        for i in (0, 2):
            assert queued[i].result(timeout=30) > 0
        assert cf.wait(queued, timeout=tasks.PATIENCE).not_done == set()
    with open(log) as f:
        assert f.read().split() == ["first", "0", "2"]


@pytest.mark.timeout(60)
def test_interrupt_a_running_lane_call(lane: str, tmp_path: Any) -> None:
    flag = str(tmp_path / "flag")
    with InterpreterPoolExecutor(1, fallback=lane, interrupt_grace=5) as pool:
        before = pool.submit(lane_tasks.pid).result(timeout=30)
        future = pool.submit(lane_tasks.spin_forever, flag)
        lane_tasks.wait_for(flag)
        assert future.running()
        assert future.interrupt() is True
        assert future.cancelled()
        with pytest.raises(cf.CancelledError):
            future.result()
        assert future.interrupt() is True  # still cancelled; nothing else happens
        after = pool.submit(lane_tasks.pid).result(timeout=30)  # the lane keeps working
        if lane == "process":
            assert after != before and gone(before), "the process of a stopped call is replaced"
            assert pool.stats()["lane_replaced"] == 1
        else:
            assert after == before == os.getpid()
    assert pool.stats()["lane_busy"] == 0


@pytest.mark.timeout(60)
def test_a_time_limit_stops_a_lane_call_and_the_lane_goes_on(lane: str) -> None:
    with InterpreterPoolExecutor(1, fallback=lane, interrupt_grace=tasks.PATIENCE) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)
        future = pool.schedule(lane_tasks.spin_forever, timeout=0.5)  # it never ends by itself
        with pytest.raises(TimeoutError, match=r"0\.5s timeout") as info:
            future.result(timeout=30)
        assert pool.stats()["lane_abandoned"] == 0, "stopped, not given up after the grace period"
        if lane == "thread":  # stopped by an exception: its traceback shows where
            assert isinstance(info.value.__cause__, interpool.TaskInterrupted)
        assert pool.submit(lane_tasks.square, 9).result(timeout=30) == 81
    timed = InterpreterPoolExecutor(1, fallback=lane, task_timeout=0.5)
    with timed:
        with pytest.raises(TimeoutError):
            timed.submit(lane_tasks.spin_forever).result(timeout=30)


@pytest.mark.timeout(60)
def test_thread_lane_gives_up_a_call_stuck_in_c_and_keeps_its_capacity() -> None:
    read_end, write_end = os.pipe()
    try:
        with InterpreterPoolExecutor(1, fallback="thread", interrupt_grace=0.3) as pool:
            pool.submit(lane_tasks.pid).result(timeout=30)
            stuck = pool.schedule(lane_tasks.read_byte, (read_end,), timeout=0.2)
            # Given up while the call is still blocked (nothing written yet): after its time
            # limit and the grace period, not when it returned.
            with pytest.raises(TimeoutError, match="stuck"):
                stuck.result(timeout=30)
            stats = pool.stats()
            assert (stats["lane_abandoned"], stats["lane_stuck"]) == (1, 1)
            assert pool.submit(lane_tasks.square, 3).result(timeout=30) == 9  # a new thread took its place
            os.write(write_end, b"x")
        wait_until(lambda: pool.stats()["lane_stuck"] == 0, "the stuck thread ends when its call returns")
    finally:
        os.close(write_end)  # first: a read still blocked then ends (EOF)
        os.close(read_end)


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_cancels_queued_lane_calls(lane: str, tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    pool = InterpreterPoolExecutor(1, fallback=lane)
    pool.submit(lane_tasks.square, 0).result(timeout=30)
    pool.submit(lane_tasks.wait_for, __file__).result(timeout=30)
    blocker = pool.submit(lane_tasks.wait_for, gate)
    queued = [pool.submit(lane_tasks.square, i) for i in range(5)]
    while not blocker.running():
        time.sleep(0.01)
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    open(gate, "w").close()
    pool.shutdown(wait=True)
    assert blocker.result() == gate
    assert pool.stats()["lane_workers"] == 0


@pytest.mark.timeout(60)
def test_shutdown_interrupt_and_leaving_with_an_exception_stop_lane_calls(lane: str, tmp_path: Any) -> None:
    flag = str(tmp_path / "flag")
    pool = InterpreterPoolExecutor(2, fallback=lane, interrupt_grace=tasks.PATIENCE)
    running = pool.submit(lane_tasks.spin_forever, flag)  # it never ends by itself
    lane_tasks.wait_for(flag)
    pool.shutdown(wait=True, interrupt=True)
    assert running.cancelled()
    assert pool.stats()["lane_abandoned"] == 0, "stopped, not given up after the grace period"

    os.unlink(flag)
    with pytest.raises(KeyError):
        with InterpreterPoolExecutor(2, fallback=lane) as pool:
            running = pool.submit(lane_tasks.spin_forever, flag)
            lane_tasks.wait_for(flag)
            raise KeyError("leave")
    assert running.cancelled()


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_queue_and_shared_buffer_cannot_reach_the_process_lane() -> None:
    with InterpreterPoolExecutor(1) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)
        for value in (interpool.Queue(), interpool.SharedBuffer(8)):
            with pytest.raises(interpool.NotShareableError) as info:
                pool.submit(lane_tasks.size, value).result(timeout=30)
            message = str(info.value)
            assert f"interpool.{type(value).__name__} cannot reach another process" in message
            assert "lane_tasks.size()" in message and "fallback='thread'" in message
        assert pool.submit(lane_tasks.size, b"1234").result(timeout=30) == 4


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_queue_and_shared_buffer_work_in_the_thread_lane() -> None:
    q: interpool.Queue[int] = interpool.Queue()
    q.put(1)
    with InterpreterPoolExecutor(1, fallback="thread") as pool:
        assert pool.submit(lane_tasks.size, interpool.SharedBuffer(8)).result(timeout=30) == 8
        assert pool.submit(lane_tasks.qsize, q).result(timeout=30) == 1


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_a_constant_reaches_lane_calls_and_initializers_as_its_value(lane: str) -> None:
    # The lane is transparent: a Constant argument (also inside tuples, lists and dicts) or
    # initarg arrives as its value, as in a worker. Before: the thread lane passed the
    # wrapper, the process lane refused it ("Constant cannot be pickled") and broke.
    constant = interpool.Constant([1, 2, 3])
    value = repr([1, 2, 3])
    try:
        with InterpreterPoolExecutor(1, fallback=lane, initializer=tasks.set_global_repr, initargs=(constant,)) as pool:
            assert pool.submit(repr, constant).result(timeout=30) == value  # in a worker
            calls = [
                ((constant,), {}),
                (((constant,),), {}),
                (([constant, 1],), {}),
                (({"k": constant},), {"kw": constant}),
            ]
            for args, kwargs in calls:
                expected = lane_tasks.echo(*args, **kwargs).replace(repr(constant), value)
                assert pool.submit(lane_tasks.echo, *args, **kwargs).result(timeout=30) == expected
            assert pool.submit(lane_tasks.read_init_value).result(timeout=30) == value
            assert pool.stats()["lane_completed"] == 5
    finally:
        tasks.INIT_VALUE = "unset"


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_a_process_lane_call_is_pickled_when_submitted(tmp_path: Any) -> None:
    # As a worker's call is encoded at submit(): changing an argument afterwards does not
    # change what runs. Before: the call was pickled when a lane process took it (len 3).
    flag = str(tmp_path / "go")
    with InterpreterPoolExecutor(1) as pool:
        pool.submit(lane_tasks.size, b"").result(timeout=30)  # size now goes straight to the lane
        blocker = pool.submit(lane_tasks.wait_for, flag)  # holds the one lane process
        data = [1, 2]
        queued = pool.submit(lane_tasks.size, data)
        data.append(3)
        open(flag, "w").close()
        blocker.result(timeout=30)
        assert queued.result(timeout=30) == 2
        unpicklable = threading.Lock()
        with pytest.raises(interpool.NotShareableError, match="cannot send the call") as info:
            pool.submit(lane_tasks.size, unpicklable).result(timeout=30)
        assert "lock" in str(info.value.__cause__)


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_a_lane_process_that_dies_fails_only_its_call() -> None:
    with InterpreterPoolExecutor(2) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)
        with pytest.raises(BrokenProcessPool, match="exit code 3"):
            pool.submit(lane_tasks.crash, 3).result(timeout=30)
        assert [pool.submit(lane_tasks.square, i).result(timeout=30) for i in range(3)] == [0, 1, 4]
        assert pool.stats()["lane_replaced"] == 1


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_the_initializer_runs_in_the_lane_and_its_failure_breaks_only_the_lane(
    lane: str, caplog: pytest.LogCaptureFixture
) -> None:
    with InterpreterPoolExecutor(1, fallback=lane, initializer=tasks.set_global, initargs=("lane-init",)) as pool:
        assert pool.submit(lane_tasks.read_init_value).result(timeout=30) == "lane-init"
    tasks.INIT_VALUE = "unset"
    broken = BrokenProcessPool if lane == "process" else BrokenThreadPool
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        with InterpreterPoolExecutor(1, fallback=lane, initializer=tasks.fail_outside_workers) as pool:
            with pytest.raises(broken, match="initializer failed") as info:
                pool.submit(lane_tasks.square, 2).result(timeout=30)
            assert "only in workers" in str(info.value)
            with pytest.raises(broken):
                pool.submit(lane_tasks.square, 3).result(timeout=30)
            assert pool.submit(tasks.square, 4).result(timeout=30) == 16  # the workers are fine
    assert "Exception in initializer" in caplog.text


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_max_tasks_per_worker_recycles_lane_processes() -> None:
    with InterpreterPoolExecutor(1, max_tasks_per_worker=2) as pool:
        pids = [pool.submit(lane_tasks.pid).result(timeout=30) for _ in range(5)]
        assert pool.stats()["lane_recycled"] >= 2
    assert len(set(pids)) == 3, pids
    assert all(gone(pid) for pid in pids)


@pytest.mark.timeout(60)
def test_the_process_lane_starts_lazily_uses_forkserver_and_ends_with_the_executor() -> None:
    with InterpreterPoolExecutor(2) as pool:
        assert pool.submit(tasks.square, 3).result() == 9
        assert pool.stats()["lane_workers"] == 0
        assert not [p for p in multiprocessing.active_children() if "_lane_" in p.name]
        list(pool.map(lane_tasks.sleep, [0.3] * 4))
        assert 1 <= pool.stats()["lane_workers"] <= 2  # at most max_workers processes
        children = [p for p in multiprocessing.active_children() if "_lane_" in p.name]
        assert 1 <= len(children) <= 2
        if sys.platform == "linux":
            assert all(type(p).__name__ == "ForkServerProcess" for p in children)
        pids = [p.pid for p in children]
    assert all(pid is not None and gone(pid) for pid in pids)


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_lane_calls_run_in_parallel(lane: str, tmp_path: Any) -> None:
    with InterpreterPoolExecutor(2, fallback=lane) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)
        # Each call waits for the other to arrive: run one after the other, the first would
        # wait in vain (TimeoutError after tasks.PATIENCE).
        directory = str(tmp_path)
        assert list(pool.map(lane_tasks.meet, [directory] * 2, ["a", "b"], ["b", "a"])) == ["a", "b"]


@pytest.mark.timeout(60)
def test_arguments_that_cannot_load_in_a_worker_move_the_call(lane: str) -> None:
    np = pytest.importorskip("numpy")
    with InterpreterPoolExecutor(1, fallback=lane, isolate=None) as pool:
        # len() loads anywhere, but its argument (a numpy array) does not load in a worker
        # without isolation.
        assert pool.submit(len, np.arange(5)).result(timeout=30) == 5
        assert pool.stats()["lane_submitted"] == 1


@pytest.mark.timeout(60)
def test_numpy_functions_run_in_the_lane(lane: str) -> None:
    np = pytest.importorskip("numpy")
    import lane_numpy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with InterpreterPoolExecutor(2, fallback=lane, isolate=None) as pool:
            assert pool.submit(lane_numpy.total, [1, 2, 3]).result(timeout=60) == 6
            array = pool.submit(lane_numpy.arange, 4).result(timeout=60)
            assert isinstance(array, np.ndarray) and array.tolist() == [0, 1, 2, 3]
            assert list(pool.map(lane_numpy.total, [[i, i] for i in range(20)], chunksize=5)) == [
                2 * i for i in range(20)
            ]
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, FallbackWarning))
    assert "numpy" in text and "distribution numpy" in text


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_a_finished_lane_call_does_not_keep_its_arguments_alive(lane: str) -> None:
    import gc
    import weakref

    with InterpreterPoolExecutor(1, fallback=lane) as pool:
        pool.submit(lane_tasks.size, b"").result(timeout=30)
        payload = lane_tasks.Payload(1 << 20)
        alive = weakref.ref(payload)
        future = pool.submit(lane_tasks.size, payload)
        assert future.result(timeout=30) == 1 << 20
        del payload
        gc.collect()
        assert alive() is None, "the future (still held) keeps its call's argument alive"
        assert future.done()


@pytest.mark.one_python
@pytest.mark.timeout(60)
def test_a_worker_call_is_kept_for_the_lane_only_until_its_reply() -> None:
    import gc
    import weakref

    with InterpreterPoolExecutor(1) as pool:
        multiplier = tasks.Multiplier(3)
        alive = weakref.ref(multiplier)
        future = pool.submit(multiplier.times, 4)
        assert future.result(timeout=30) == 12
        del multiplier
        gc.collect()
        assert alive() is None, "the future (still held) keeps its call alive"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cloudpickle", ["1", "0"])
def test_functions_of_a_main_script_that_imports_a_refusing_module(tmp_path: Any, cloudpickle: str) -> None:
    """The script's functions reach the worker by value (cloudpickle) or by re-running the
    script there (without it); either way loading them fails before the call starts."""
    script = tmp_path / "main_with_readline.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import readline
            import warnings

            import interpool

            def pid_and_enabled():
                return os.getpid(), callable(readline.get_line_buffer)

            if __name__ == "__main__":
                warnings.simplefilter("ignore", interpool.FallbackWarning)
                with interpool.InterpreterPoolExecutor(2) as pool:
                    pid, ok = pool.submit(pid_and_enabled).result(timeout=60)
                    print(ok, pid != os.getpid(), pool.stats()["lane_submitted"])
            """
        )
    )
    proc = run_file(str(script), env={"INTERPOOL_CLOUDPICKLE": cloudpickle})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "1"]


@pytest.mark.timeout(120)
def test_exit_waits_for_busy_lane_calls_and_ctrl_c_stops_them() -> None:
    proc = run_script(
        """
        import warnings
        warnings.simplefilter("ignore")
        import interpool, lane_tasks
        pool = interpool.InterpreterPoolExecutor(2)
        pool.submit(lane_tasks.pid).result()
        future = pool.submit(lane_tasks.sleep, 1.0)
        future.add_done_callback(lambda f: print("done", f.result(), flush=True))
        print("exiting", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["exiting", "done", "1.0"]
    assert "Traceback" not in proc.stderr

    # Ctrl-C with lane calls that never end by themselves: they are stopped (their processes
    # ended), none given up.
    proc = ctrl_c(
        """
        import warnings
        warnings.simplefilter("ignore")
        import interpool, lane_tasks, tasks
        try:
            with interpool.InterpreterPoolExecutor(2, interrupt_grace=tasks.PATIENCE) as pool:
                pool.submit(lane_tasks.pid).result()
                futures = [pool.submit(lane_tasks.spin_forever) for _ in range(2)]
                print("busy", flush=True)
                futures[0].result()
        finally:
            print(pool.stats()["lane_abandoned"], pool.stats()["lane_workers"], flush=True)
        """
    )
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr
    assert "Fatal" not in proc.stderr and "Segmentation" not in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["0", "0"], proc.stdout


def _raised_from(outer: BaseException, inner: BaseException | None, context: bool = False) -> BaseException:
    if context:
        outer.__context__ = inner
    else:
        outer.__cause__ = inner
    return outer


@pytest.mark.timeout(30)
def test_a_refusal_is_found_in_the_exception_chain() -> None:
    from interpool import _refusal

    refusal = ImportError("module _x does not support loading in subinterpreters", name="_x")
    wrapped = _raised_from(ImportError("Unable to import required dependency x"), refusal)
    assert _refusal.find_refusal(refusal) is refusal
    assert _refusal.find_refusal(wrapped) is refusal and _refusal.is_refusal(wrapped)
    # as the owner rebuilds it: a link (ExecutionFailed) between the wrapper and the refusal
    middle = _raised_from(RuntimeError("remote traceback"), refusal)
    assert _refusal.find_refusal(_raised_from(ImportError("wrapped"), middle)) is refusal
    # implicit chaining (raised while handling the refusal)
    assert _refusal.find_refusal(_raised_from(ImportError("wrapped"), refusal, context=True)) is refusal
    assert _refusal.refused_module(wrapped) == "_x"
    # a task that turned the refusal into another kind of error wants that error
    assert not _refusal.is_refusal(_raised_from(ValueError("no numpy here"), refusal))
    assert not _refusal.is_refusal(_raised_from(ImportError("unrelated"), ImportError("No module named y")))


@pytest.mark.timeout(30)
def test_the_chain_search_is_bounded_and_survives_cycles() -> None:
    from interpool import _refusal

    first, second = ImportError("a"), ImportError("b")
    first.__cause__, second.__cause__ = second, first
    first.__context__ = first
    assert not _refusal.is_refusal(first)
    refusal = ImportError("module _x does not support loading in subinterpreters")
    deep: BaseException = refusal
    for n in range(_refusal._CHAIN_LINKS):
        deep = _raised_from(ImportError(f"wrapper {n}"), deep)
    assert _refusal.is_refusal(deep)  # the last link searched
    assert not _refusal.is_refusal(_raised_from(ImportError("one more"), deep))


@pytest.mark.timeout(60)
def test_a_stopped_lane_call_fails_as_a_worker_task_does(lane: str) -> None:
    # One place words the exception of a stopped task (_errors.stopped_error, with the texts
    # of src/interrupt.rs), for worker tasks and lane calls alike.
    with InterpreterPoolExecutor(2, fallback=lane) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)  # lane_tasks' functions go to the lane
        in_worker = pool.schedule(tasks.busy_forever, timeout=0.3)
        in_lane = pool.schedule(lane_tasks.spin_forever, timeout=0.3)
        worker_error, lane_error = in_worker.exception(timeout=30), in_lane.exception(timeout=30)
    assert type(worker_error) is type(lane_error) is TimeoutError
    assert str(lane_error) == str(worker_error) == "the task ran longer than its 0.3s timeout and was stopped"
    assert isinstance(worker_error.__cause__, interpool.ExecutionFailed)
    if lane == "thread":  # stopped by the exception a worker task gets, where it ran
        assert isinstance(lane_error.__cause__, interpool.TaskInterrupted)
        assert str(lane_error.__cause__) == worker_error.__cause__.msg == "the task ran longer than its timeout"
    else:  # its process was ended: no traceback, a note says why
        assert lane_error.__cause__ is None
        assert lane_error.__notes__ == [
            "its process in the fallback process lane was terminated; a new one takes its place"
        ]


@pytest.mark.timeout(60)
def test_a_thread_lane_call_given_up_fails_as_a_stuck_worker_task_does() -> None:
    # Both calls wait in C until the test writes to their pipe, after both were given up. The
    # worker's call is the builtin itself (no bytecode runs before it blocks, so the stop cannot
    # land before); the lane's runner runs a few bytecodes after its time limit starts, so
    # the limit is long enough that only a thread descheduled for a whole second there could
    # see the stop land before the call blocks (with 0.1s it did once on a loaded 2-core box).
    (worker_r, worker_w), (lane_r, lane_w) = os.pipe(), os.pipe()
    try:
        with InterpreterPoolExecutor(2, fallback="thread", interrupt_grace=0.2) as pool:
            pool.submit(lane_tasks.pid).result(timeout=30)
            in_worker = pool.schedule(os.read, (worker_r, 1), timeout=1.0)
            in_lane = pool.schedule(lane_tasks.read_byte, (lane_r,), timeout=1.0)
            worker_error, lane_error = in_worker.exception(timeout=30), in_lane.exception(timeout=30)
            os.write(worker_w, b"x")
            os.write(lane_w, b"x")
    finally:
        for fd in (worker_r, worker_w, lane_r, lane_w):
            os.close(fd)
    assert type(worker_error) is type(lane_error) is TimeoutError
    assert str(lane_error) == str(worker_error) == "the task ran longer than its 1s timeout and was stopped"
    stuck = (
        "the task did not stop within 0.2s after it was asked to: it is stuck in code that does not return to Python "
        "(a C call). Its worker was replaced; the stuck thread ends when the call returns."
    )
    assert lane_error.__notes__ == worker_error.__notes__ == [stuck]


@pytest.mark.timeout(60)
def test_a_thread_lane_call_given_up_after_shutdown_still_fails() -> None:
    # The watchdog left once the lane was closed and had no timers left, before failing the
    # call it had just given up: that future never completed.
    read_end, write_end = os.pipe()
    try:
        pool = InterpreterPoolExecutor(1, fallback="thread", interrupt_grace=0.2)
        pool.submit(lane_tasks.pid).result(timeout=30)
        stuck = pool.schedule(lane_tasks.read_byte, (read_end,), timeout=0.05)  # returns once written to
        wait_until(stuck.running, "the call runs")
        pool.shutdown(wait=False)  # closes the lane, most likely before the call is given up
        error = stuck.exception(timeout=30)
        assert isinstance(error, TimeoutError) and "stuck in code" in error.__notes__[0]
        os.write(write_end, b"x")
        pool.shutdown(wait=True)
    finally:
        os.close(write_end)  # first: a read still blocked then ends (EOF)
        os.close(read_end)


@pytest.mark.timeout(60)
def test_a_thread_lane_call_given_up_is_stopped_once_more(tmp_path: Any) -> None:
    # As a worker task is: the first request may have been lost (CPython ignores an exception
    # raised in a weakref callback or __del__ run in that thread); this call swallows it.
    log = str(tmp_path / "log")
    with InterpreterPoolExecutor(1, fallback="thread", interrupt_grace=0.3) as pool:
        pool.submit(lane_tasks.pid).result(timeout=30)
        future = pool.schedule(lane_tasks.catch_the_first_stop, (log, 20.0), timeout=0.1)
        error = future.exception(timeout=30)
        assert isinstance(error, TimeoutError) and "stuck in code" in error.__notes__[0]
    lane_tasks.wait_for(log)
    with open(log) as f:
        assert f.read().split("\n")[0] == "stopped again"


def _wait_for_the_stop(sent: Any) -> None:
    """Wait in the thread lane's runner until ``sent()`` says a stop request was sent to it:
    the request then lands at the next call's return, here (``TaskInterrupted`` propagates)."""
    while not sent():
        time.sleep(0.001)
    time.sleep(0)  # lands after this call at the latest
    raise AssertionError("the stop request sent to this thread did not land")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop", ["interrupt", "timeout"])
def test_a_thread_lane_call_ends_once_when_its_stop_and_the_give_ups_land_after_it_returned(
    stop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A call returned; its stop request (an interrupt, or its time limit) landed as the runner
    # began to withdraw it (ThreadLane._returned), and the runner was descheduled in the
    # handler until the watchdog gave the call up (grace over) and sent its second request,
    # which landed there too. It escaped the runner, whose thread died, and the call was never
    # counted as ended (the lane stress test on 3.13, a loaded 2-core machine: 61 submitted ==
    # 56 completed + 4 cancelled). Here both requests land where they did, as _returned begins.
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    with InterpreterPoolExecutor(1, fallback="thread", interrupt_grace=0.01) as pool:
        assert pool.submit(lane_tasks.square, 2).result(timeout=30) == 4  # lane_tasks' calls go to the lane
        lane = pool._lane.lane  # type: ignore[union-attr]
        returned = lane._returned
        landed: list[str] = []
        runners: list[threading.Thread] = []
        helpers: list[threading.Thread] = []  # the interrupter

        def late_stops(task: Any) -> None:
            runners.append(threading.current_thread())
            if not landed:  # the call returned; now its stop request comes
                landed.append(stop)
                if stop == "interrupt":
                    sent = threading.Event()
                    helpers.append(threading.Thread(target=lambda: (task.future.interrupt(), sent.set())))
                    helpers[0].start()
                    _wait_for_the_stop(sent.is_set)
                else:  # its time limit runs out (the watchdog's timer is moved to now)
                    with lane._lock:
                        lane._schedule(time.monotonic(), task, "timeout")
                    _wait_for_the_stop(lambda: task.stop is not None)
            elif len(landed) == 1:  # the first landed; still here when the call is given up
                landed.append("give up")
                _wait_for_the_stop(lambda: task.abandoned)
            landed.append("returned")
            returned(task)

        monkeypatch.setattr(lane, "_returned", late_stops)
        future = pool.schedule(lane_tasks.square, (3,), timeout=tasks.PATIENCE if stop == "timeout" else None)
        if stop == "interrupt":
            with pytest.raises(cf.CancelledError):
                future.result(timeout=30)
        else:  # given up by the watchdog: it decided the outcome
            error = future.exception(timeout=30)
            assert isinstance(error, TimeoutError) and "stuck in code" in error.__notes__[0]
        wait_until(lambda: runners and not runners[0].is_alive(), "the runner of the call given up ends")
        assert died == [], "the stop request escaped the runner"
        assert landed == [stop, "give up", "returned"]
        stats = pool.stats()
        assert (stats["lane_submitted"], stats["lane_completed"], stats["lane_cancelled"]) == (2, 2, 0), stats
        assert (stats["lane_abandoned"], stats["lane_stuck"], stats["lane_busy"]) == (1, 0, 0), stats
        assert pool.submit(lane_tasks.square, 4).result(timeout=30) == 16  # a new runner took its place
    for helper in helpers:
        helper.join()
