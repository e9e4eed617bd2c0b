"""Regression tests for defects found by hostile testing (one test per defect; those that
killed the process run in a subprocess)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import interpool
from interpool import InterpreterPoolExecutor, Queue, SharedBuffer, _interpool

import tasks
from conftest import ctrl_c, run_script, wait_until

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="fork and signals as on Linux")


@linux_only
@pytest.mark.timeout(120)
def test_fork_while_workers_are_being_created_never_crashes_or_hangs() -> None:
    """fork() right after a pool starts creating its workers: the child takes the guarded
    exit (status 70), or is an ordinary child if creation had not begun; it never crashes and
    the parent never hangs in waitpid."""
    proc = run_script(
        """
        import os, time, warnings, tasks
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        from interpool import InterpreterPoolExecutor

        statuses = set()
        for i in range(12):
            pool = InterpreterPoolExecutor(4)
            futures = [pool.submit(tasks.square, n) for n in range(4)]  # creation under way
            time.sleep(0.001 * (i % 4))
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            deadline = time.monotonic() + tasks.PATIENCE
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() < deadline, "the forked child hangs"
                time.sleep(0.01)
            statuses.add(os.waitstatus_to_exitcode(status))
            assert [f.result() for f in futures] == [0, 1, 4, 9]
            pool.shutdown()
        print(sorted(statuses))
        """,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(eval(proc.stdout)) <= {0, 70}, proc.stdout


def test_recursion_that_works_in_the_main_thread_works_in_a_worker() -> None:
    """Workers get the stack a threading.Thread gets (Rust's 2 MiB default overflowed at a
    depth the main thread survives: a segfault on 3.13)."""
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        for depth in (4000, 3000, 2000, 1000, 500):  # C recursion limits differ by version
            try:
                assert tasks.recurse_to(depth) == depth  # fine in the main thread
                break
            except RecursionError:
                pass
        with InterpreterPoolExecutor(1) as pool:
            print(depth, pool.submit(tasks.recurse_to, depth).result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    depth, result = proc.stdout.split()
    assert depth == result


def test_too_deep_recursion_arrives_as_recursion_error_and_the_worker_survives() -> None:
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            try:
                pool.submit(tasks.recurse_to, 10**6).result(timeout=60)
            except RecursionError:
                print("RecursionError")
            print(pool.submit(tasks.square, 3).result(timeout=60))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["RecursionError", "9"]


def test_a_dict_nested_10000_deep_goes_to_a_worker_and_back() -> None:
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1) as pool:
            print(pool.submit(tasks.nesting_depth, tasks.nested_dict(10_000)).result(timeout=60))
            print(tasks.nesting_depth(pool.submit(tasks.nested_dict, 10_000).result(timeout=60)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10000", "10000"]


def test_failed_allocations_raise_memory_error_in_main_and_in_workers() -> None:
    proc = run_script(
        """
        import resource, tasks
        from interpool import InterpreterPoolExecutor, Queue, SharedBuffer
        for make in (lambda: SharedBuffer(2**45), lambda: SharedBuffer(2**62)):
            try:
                make()
            except MemoryError:
                pass
            else:
                raise AssertionError("no MemoryError")
        with InterpreterPoolExecutor(1) as pool:
            try:
                pool.submit(tasks.make_shared_buffer_of_size, 2**45).result()
            except MemoryError:
                pass
            else:
                raise AssertionError("no MemoryError in the worker")
            assert pool.submit(tasks.square, 4).result() == 16
            # Address space for about 1.2 GB more: a 600 MB bytearray exists, sending it
            # needs another 600 MB for the encoded copy (large bytes would be lent, not copied).
            big = bytearray(b"x" * (600 * 1024 * 1024))
            used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (used + 300 * 1024 * 1024, resource.RLIM_INFINITY))
            try:
                Queue().put(big)
            except MemoryError:
                print("MemoryError")
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MemoryError"


@pytest.mark.timeout(120)
def test_threads_started_with_start_new_thread_do_not_kill_the_process() -> None:
    """`_thread.start_new_thread` in a task: ending the interpreter waits for the thread
    (3.12 and 3.13 abort with 'not the last thread' otherwise), at recycling and shutdown."""
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor
        with InterpreterPoolExecutor(1, max_tasks_per_worker=1) as pool:
            for _ in range(3):
                pool.submit(tasks.start_raw_thread, 0.3).result()
            print(pool.submit(tasks.square, 5).result())
        with InterpreterPoolExecutor(2) as pool:
            pool.submit(tasks.start_raw_thread, 0.3).result()
        print("clean")
        """,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["25", "clean"]
    assert "Fatal" not in proc.stderr


@linux_only
@pytest.mark.timeout(120)
def test_ctrl_c_while_exit_waits_for_busy_workers_exits_cleanly() -> None:
    script = """
        import sys, tasks
        from interpool import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        futures = [pool.submit(tasks.spin, 3_000_000) for _ in range(4)]
        print("ready", flush=True)
        """  # the script ends at once: exit waits for the busy workers
    for _ in range(3):
        proc = ctrl_c(script, presses=2, ready="ready")
        # Clean: a normal exit, or the second Ctrl-C ending the process after the pools were
        # stopped (CPython restores the default SIGINT handler late in finalization); never a
        # crash (SIGSEGV, SIGABRT) or a fatal error.
        assert proc.returncode in (0, 1, 130, -signal.SIGINT), f"exit status {proc.returncode}: {proc.stderr}"
        assert "Fatal Python error" not in proc.stderr and "Segmentation" not in proc.stderr, proc.stderr


def test_done_callback_waiting_on_another_future_of_the_same_pool() -> None:
    with InterpreterPoolExecutor(2) as pool:
        other = pool.submit(tasks.sleep_then, 0.2, "other")
        seen: list[str] = []
        first = pool.submit(tasks.square, 2)
        first.add_done_callback(lambda f: seen.append(other.result(timeout=30)))
        cf.wait([first, other], timeout=30)
        wait_until(lambda: seen, "the callback ran")
        assert seen == ["other"]


def test_done_callback_that_submits_a_follow_up_and_waits_for_it() -> None:
    with InterpreterPoolExecutor(2) as pool:
        results: list[int] = []
        done = threading.Event()

        def follow_up(f: cf.Future[int]) -> None:
            results.append(pool.submit(tasks.square, f.result()).result(timeout=30))
            done.set()

        pool.submit(tasks.square, 3).add_done_callback(follow_up)
        assert done.wait(30)
        assert results == [81]


def _dispatchers(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{prefix}_dispatch_")]


def test_dispatcher_threads_do_not_pile_up_without_callbacks() -> None:
    """Replies without done-callbacks never need a spare dispatcher: the pool keeps its two
    (they piled up to 12 over 150,000 tasks on 3.14t, each thread with its own heap)."""
    with InterpreterPoolExecutor(2, thread_name_prefix="nopile") as pool:
        for _ in range(20):
            futures = [pool.submit(tasks.identity, i) for i in range(1000)]
            assert [f.result() for f in futures] == list(range(1000))
        assert len(_dispatchers("nopile")) == 2


def test_spare_dispatchers_started_for_blocking_callbacks_end_afterwards() -> None:
    """Callbacks that block get spare dispatchers, and the spares end once the callbacks
    return (no more than two stay waiting). Each callback below submits the next task and
    waits until that task's own callback ran: six dispatchers are in callbacks at once."""
    depth = 6
    ran: list[int] = []
    done = [threading.Event() for _ in range(depth + 1)]
    with InterpreterPoolExecutor(2, thread_name_prefix="spares") as pool:

        def chain(f: cf.Future[int]) -> None:
            level = f.result()
            if level + 1 < depth:
                pool.submit(tasks.identity, level + 1).add_done_callback(chain)
                assert done[level + 1].wait(timeout=60)
            ran.append(level)
            done[level].set()

        pool.submit(tasks.identity, 0).add_done_callback(chain)
        assert done[0].wait(timeout=60)
        assert ran == list(reversed(range(depth)))
        deadline = time.monotonic() + 60
        while len(_dispatchers("spares")) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_dispatchers("spares")) <= 2
        # Blocking callbacks still get their spares after the others ended.
        ran.clear()
        for event in done:
            event.clear()
        pool.submit(tasks.identity, 0).add_done_callback(chain)
        assert done[0].wait(timeout=60)
        assert ran == list(reversed(range(depth)))


@pytest.mark.timeout(120)
def test_shared_sub_objects_are_sent_once_not_exponentially() -> None:
    """`x = [x, x]` thirty times pickles to about 100 bytes; sending it must be linear in the
    object graph (it took seconds and gigabytes at 23 levels, and exhausted memory at 30).
    In a subprocess with its address space capped, so that a regression fails, not the
    machine."""
    proc = run_script(
        """
        import resource, tasks
        from interpool import InterpreterPoolExecutor, Queue
        resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, resource.RLIM_INFINITY))
        x = []
        for _ in range(30):
            x = [x, x]
        with InterpreterPoolExecutor(1) as pool:
            back = pool.submit(tasks.identity, x).result(timeout=60)
            depth = 0
            while back:
                assert back[0] is back[1]
                back, depth = back[0], depth + 1
            q = Queue()
            q.put(x)
            assert q.get()[0][0] is not None
        print(depth)
        """,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "30"


@pytest.mark.timeout(120)
def test_amap_never_blocks_the_event_loop_for_long() -> None:
    # Counted, not timed: a heartbeat task that runs at every turn of the event loop notes how
    # many results amap yielded, and how many tasks it submitted, since its last turn. A step
    # of amap (until it awaits) yields only results whose asyncio futures the loop completed,
    # at most `buffersize` (what it keeps pending), and submits no more than it yields plus
    # what fits in that buffer; the loop runs each task at most once per turn, so two steps
    # may fall between two heartbeats.
    items, buffersize = 20_000, 256

    async def main(pool: InterpreterPoolExecutor) -> tuple[int, int, int]:
        count = most_results = most_submitted = 0
        stop = False

        async def heartbeat() -> None:
            nonlocal most_results, most_submitted
            last_count, last_submitted = 0, 0
            while not stop:
                await asyncio.sleep(0)  # one turn of the loop
                submitted = pool.stats()["submitted"]
                most_results = max(most_results, count - last_count)
                most_submitted = max(most_submitted, submitted - last_submitted)
                last_count, last_submitted = count, submitted

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)  # the heartbeat is running
        async for _ in pool.amap(tasks.square, range(items), buffersize=buffersize):
            count += 1
        stop = True
        await beat
        return count, most_results, most_submitted

    with InterpreterPoolExecutor(2) as pool:
        count, most_results, most_submitted = asyncio.run(main(pool))
    assert count == items
    assert most_results <= 2 * buffersize, f"amap yielded {most_results} results without letting the loop run"
    assert most_submitted <= 3 * buffersize, f"amap submitted {most_submitted} tasks without letting the loop run"


def test_amap_buffersize_bounds_what_is_submitted_ahead() -> None:
    async def main() -> int:
        with InterpreterPoolExecutor(1) as pool:
            highest = 0
            async for _ in pool.amap(tasks.square, range(200), buffersize=5):
                highest = max(highest, pool.stats()["pending"])
            return highest

    assert asyncio.run(main()) <= 5


@linux_only
def test_pools_created_after_fork_work_in_the_child() -> None:
    proc = run_script(
        """
        import os, warnings, tasks
        warnings.simplefilter("ignore", DeprecationWarning)
        from interpool import InterpreterPoolExecutor

        def child_runs_a_pool():
            pid = os.fork()
            if pid == 0:
                try:
                    with InterpreterPoolExecutor(1) as pool:
                        ok = pool.submit(tasks.square, 6).result(timeout=60) == 36
                except BaseException:
                    ok = False
                os._exit(0 if ok else 1)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        first = child_runs_a_pool()  # the parent never made a pool
        with InterpreterPoolExecutor(1) as pool:
            pool.submit(tasks.square, 2).result()
        second = child_runs_a_pool()  # the parent's pool was shut down before the fork
        print(first, second)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0"]


@linux_only
def test_subprocess_preexec_fn_with_a_live_pool_is_refused_in_the_parent() -> None:
    with InterpreterPoolExecutor(1) as pool:
        pool.submit(tasks.square, 1).result()
        with pytest.raises(RuntimeError, match="preexec_fn"):
            subprocess.run(["true"], preexec_fn=lambda: None, check=False)
        assert subprocess.run(["true"], check=False).returncode == 0, "plain subprocess still works"
    assert subprocess.run(["true"], preexec_fn=lambda: None, check=False).returncode == 0


def test_exceptions_with_a_custom_init_signature_arrive_as_themselves() -> None:
    with InterpreterPoolExecutor(1) as pool:
        with pytest.raises(tasks.HttpError) as info:
            pool.submit(tasks.raise_http_error, 404, "https://x.test/").result(timeout=60)
        exc = info.value
        assert (exc.code, exc.url) == (404, "https://x.test/")
        assert exc.__notes__ == ["while fetching"]
        assert isinstance(exc.__cause__, interpool.ExecutionFailed)
        assert isinstance(exc.__cause__.__cause__, KeyError), "the original cause is kept behind it"
        assert isinstance(exc.__context__, KeyError)
        with pytest.raises(tasks.OddReduce) as odd:  # its pickle gives an int: rebuilt instead
            pool.submit(tasks.raise_odd_reduce).result(timeout=60)
        assert odd.value.args == ("odd",)


def test_nul_in_thread_name_prefix_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="NUL"):
        InterpreterPoolExecutor(1, thread_name_prefix="a\0b")


def test_queue_put_of_an_unsendable_value_raises_not_shareable_error() -> None:
    q: Queue[object] = Queue()
    with pytest.raises(interpool.NotShareableError):
        q.put(threading.Lock())
    with pytest.raises(interpool.NotShareableError):
        q.put([1, {"k": threading.Lock()}])


def test_cancelled_and_abandoned_futures_leave_the_pending_table(tmp_path: Path) -> None:
    opened = str(tmp_path / "gate")
    with InterpreterPoolExecutor(1) as pool:
        # The only worker stays busy until every queued task was cancelled (a timed gate let
        # the worker take a queued task when submitting 10,000 took longer on a busy machine).
        gate = pool.submit(tasks.wait_for_file, opened, 120)
        futures = [pool.submit(tasks.square, i) for i in range(10_000)]
        assert all(f.cancel() for f in futures)
        assert pool.stats()["pending"] <= 1
        open(opened, "w").close()
        with pytest.raises(cf.TimeoutError):
            list(pool.map(tasks.sleep_then, [0.3] * 50, range(50), timeout=0.01))
        it = pool.map(tasks.square, range(1000))
        next(it)
        del it
        gc.collect()
        gate.result(timeout=30)

        async def leave_early() -> None:
            async for _ in pool.amap(tasks.square, range(1000), buffersize=50):
                break

        asyncio.run(leave_early())
        deadline = time.monotonic() + 30
        while pool.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats()["pending"] == 0


def test_queues_in_cycles_are_freed() -> None:
    before = _interpool._queue_cycles()[1]
    for _ in range(100):
        a: Queue[object] = Queue()
        a.put(a)
        b: Queue[object] = Queue()
        c: Queue[object] = Queue()
        b.put([c, "x"])
        c.put({"b": b})
        del a, b, c
    assert _interpool._queue_cycles()[1] == before


def test_shared_buffer_pin_is_released_when_the_last_lease_goes(tmp_path: object) -> None:
    data = bytearray(64)
    gate = os.path.join(str(tmp_path), "gate")
    with InterpreterPoolExecutor(1) as pool:
        buf = SharedBuffer(data)
        held = pool.submit(tasks.hold_buffer_until, buf, gate)
        del buf
        with pytest.raises(BufferError):
            data.append(1)  # pinned while the worker holds its lease
        open(gate, "w").close()
        assert held.result(timeout=30) == 0

        def released() -> bool:  # in this interpreter, at the next bytecode boundary
            try:
                data.append(1)
            except BufferError:
                return False
            return True

        wait_until(released, "the pin is released")


@pytest.mark.timeout(120)
def test_datetimes_made_in_workers_come_back_as_the_main_interpreters_classes() -> None:
    """On 3.12 a second worker importing datetime aborted the process (gh-117953), workers
    silently used _pydatetime (values came back as another, unequal class) and zoneinfo
    failed to import; on every version the values must come back equal, of the same class."""
    proc = run_script(
        """
        import datetime, decimal, time, zoneinfo, tasks
        from interpool import InterpreterPoolExecutor
        stamp = time.time()
        expected = tasks.datetimes(stamp)
        for _ in range(3):
            with InterpreterPoolExecutor(2, max_tasks_per_worker=2) as pool:
                for got in pool.map(tasks.datetimes, [stamp] * 8):
                    assert [type(v) for v in got] == [type(v) for v in expected], got
                    assert got == expected, (got, expected)
                    assert type(got[1].tzinfo) is zoneinfo.ZoneInfo
                back = pool.submit(tasks.identity, expected).result()
                assert back == expected and [type(v) for v in back] == [type(v) for v in expected]
        print("ok")
        """,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.skipif(not ((3, 12) <= sys.version_info < (3, 12, 4)), reason="the refusal concerns CPython 3.12.0-3.12.3")
def test_affected_312_releases_refuse_to_create_a_pool_with_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "INTERPOOL_UNSAFE_PY312"}
    proc = subprocess.run(
        [sys.executable, "-c", "import interpool; interpool.InterpreterPoolExecutor(1)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "gh-119213" in proc.stderr and "3.12.4" in proc.stderr, proc.stderr


@pytest.mark.skipif(not _interpool.FREE_THREADED, reason="with a GIL, the main interpreter's GIL serializes it")
def test_workers_importing_a_refused_single_phase_extension_at_once_do_not_crash() -> None:
    # CPython 3.13+ initializes a single-phase extension that a worker refuses in the main
    # interpreter, on the worker's thread; on a free-threaded build nothing serialized two
    # workers doing so, and 8 workers importing readline at the same moment crashed the
    # process (heap corruption: SIGSEGV/SIGABRT) in 3 of 10 processes of 10 rounds each on
    # 3.14.7t. Workers now pass a process-wide gate while an extension loads.
    import importlib.util

    if importlib.util.find_spec("readline") is None:
        pytest.skip("this Python was built without readline")
    script = """
        import tasks
        from interpool import InterpreterPoolExecutor, Queue
        n = 8
        ready, go = Queue(), Queue()
        with InterpreterPoolExecutor(n, max_tasks_per_worker=1, fallback=None) as pool:
            for _ in range(30):  # every round starts 8 fresh interpreters
                futures = [pool.submit(tasks.import_together, ready, go, "readline") for _ in range(n)]
                for _ in range(n):
                    ready.get()
                for _ in range(n):
                    go.put(1)
                assert {f.result() for f in futures} == {"ImportError"}
        print("done")
    """
    for _ in range(2):
        result = run_script(script, timeout=240)
        assert result.returncode == 0 and "done" in result.stdout, (result.returncode, result.stderr[-2000:])


@pytest.mark.timeout(120)
def test_containers_changed_by_other_threads_while_being_sent() -> None:
    # Other threads change a dict, a list and a set while they are encoded. With a GIL they
    # cannot interleave with a run of scalars; on free-threaded builds they can, and the encoder
    # walks each run under a critical section on the container (it used to copy dicts). Every
    # value must arrive whole and consistent, or fail with RuntimeError: never a crash, never
    # a corrupt value.
    proc = run_script(
        """
        import threading
        from interpool._interpool import roundtrip

        d = {i: str(i) for i in range(200)}
        items = list(range(200))
        s = set(range(200))
        stop = threading.Event()

        def churn():
            n = 0
            while not stop.is_set():
                n += 1
                d.pop(n % 200, None); d[n % 200] = str(n)
                d[1000 + n % 3] = n; d.pop(1000 + (n + 1) % 3, None)
                items.append(n); items.pop(0)
                items[n % 100] = [n]
                s.discard(n % 200); s.add(n % 200)

        threads = [threading.Thread(target=churn) for _ in range(2)]
        for t in threads:
            t.start()
        ok = changed = 0
        try:
            for _ in range(3000):
                try:
                    out = roundtrip([d, items, s, "end"])
                except RuntimeError as exc:
                    assert "changed" in str(exc), exc
                    changed += 1
                    continue
                assert out[3] == "end" and isinstance(out[0], dict) and isinstance(out[2], set)
                assert all(type(k) is int for k in out[0]) and all(type(x) is int for x in out[2])
                ok += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
        print("ok", ok, "changed", changed)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")


@linux_only
def test_a_fork_child_never_uses_the_parents_thread_handles() -> None:
    # Before: dropping an executor shut down before the fork detached (pthread_detach) the
    # parent's worker threads' handles in the child, whose pthread_t glibc had reused for the
    # child's own new thread: "Failed joining thread" in 5-16 of 20 forks.
    proc = run_script(
        """
        import gc, os, threading, warnings, tasks
        warnings.simplefilter("ignore", DeprecationWarning)
        from interpool import InterpreterPoolExecutor

        pools = []
        for _ in range(3):
            pool = InterpreterPoolExecutor(2, max_tasks_per_worker=2)
            list(pool.map(tasks.square, range(8)))
            pool.shutdown()
            pools.append(pool)
        failures = 0
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                try:
                    worker = threading.Thread(target=sum, args=([1, 2],))
                    worker.start()
                    pools.clear()
                    gc.collect()
                    worker.join()
                    later = threading.Thread(target=sum, args=([3],))
                    later.start()
                    later.join()
                    code = 0
                except BaseException as exc:
                    print("child:", type(exc).__name__, exc, flush=True)
                    code = 1
                os._exit(code)
            failures += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
        print("failures", failures)
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["failures", "0"], proc.stdout


@pytest.mark.parametrize("make", [Queue, lambda: SharedBuffer(16), lambda: SharedBuffer(bytearray(16))])
def test_a_worker_global_holding_an_interpool_object_is_freed_at_its_end(make: Any, tmp_path: Path) -> None:
    """A module global of a worker holding a Queue or SharedBuffer: the module's cache of the
    task function, the function's globals, the object, its type and the module made a cycle
    the GC could not see, so the worker's end freed none of it (its heap leaked, and memory
    lent from the main interpreter stayed pinned)."""
    marker = tmp_path / "freed"
    with InterpreterPoolExecutor(1) as pool:
        pool.submit(tasks.keep_with_marker, make(), str(marker)).result(timeout=60)
    assert marker.exists(), "the worker's objects were never freed"
