"""Spare interpreters (python/interpool/_process.py, interpool-core's spares.rs): made in the
background when a pool shuts down in a process that creates pools repeatedly, adopted by the
next pools, ended after their linger time, before fork() and at exit.

Each test runs in a fresh process: spares are process-wide state.
"""

from __future__ import annotations

import sys

import pytest

from conftest import run_script

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

PRELUDE = """
import os, sys, time, threading, tasks
from interpool import InterpreterPoolExecutor, _interpool, _process

def wait_until(check, what, timeout=tasks.PATIENCE):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            state = f"spares={_interpool._spares()} alive={_interpool._interpreters_alive()}"
            sys.exit(f"timed out waiting for {what}: {state}")
        time.sleep(0.01)

def two_pools(workers=2):
    for _ in range(2):
        with InterpreterPoolExecutor(workers, thread_name_prefix="warmup") as pool:
            list(pool.map(tasks.sleep_then, [0.2] * workers, range(workers)))
"""


def check(script: str, env: dict[str, str] | None = None) -> str:
    result = run_script(PRELUDE + script, timeout=120, env=env)
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout


def test_the_next_pool_adopts_the_spares_a_shut_down_pool_left() -> None:
    out = check("""
two_pools()
wait_until(lambda: _interpool._spares() == 2 and _interpool._interpreters_alive() == 2, "2 spares")
with InterpreterPoolExecutor(2, thread_name_prefix="adopter") as pool:
    got = list(pool.map(tasks.sleep_then, [0.3, 0.3], ["a", "b"]))
    assert got == ["a", "b"], got
    assert _interpool._spares() == 0, "both workers came from the spares"
    names = {pool.submit(tasks.os_thread_name).result() for _ in range(20)}
    assert names <= {"adopter_0", "adopter_1"}, names
    assert pool.stats()["threads"] == 2
print("ok")
""")
    assert "ok" in out


def test_a_pool_of_one_process_creates_no_spares() -> None:
    out = check("""
with InterpreterPoolExecutor(2) as pool:
    list(pool.map(tasks.sleep_then, [0.1, 0.1], [1, 2]))
time.sleep(0.5)
assert _interpool._spares() == 0 and _interpool._interpreters_alive() == 0
print("ok")
""")
    assert "ok" in out


def test_spares_end_themselves_after_their_linger_time() -> None:
    out = check("""
_process.SPARE_LINGER = 0.5
two_pools()
wait_until(lambda: _interpool._spares() == 0 and _interpool._interpreters_alive() == 0, "spares to end")
print("ok")
""")
    assert "ok" in out


def test_interpool_spares_0_turns_them_off() -> None:
    out = check(
        """
two_pools()
time.sleep(0.5)
assert _interpool._spares() == 0 and _interpool._interpreters_alive() == 0
print("ok")
""",
        env={"INTERPOOL_SPARES": "0"},
    )
    assert "ok" in out


def test_spares_cap_follows_interpool_spares() -> None:
    out = check(
        """
two_pools(workers=3)
wait_until(lambda: _interpool._interpreters_alive() == 1 and _interpool._spares() == 1, "1 spare")
time.sleep(0.3)  # (time to make a second one, if the cap did not hold)
assert _interpool._interpreters_alive() == 1 and _interpool._spares() == 1
print("ok")
""",
        env={"INTERPOOL_SPARES": "1"},
    )
    assert "ok" in out


def test_fork_and_preexec_fn_work_while_spares_wait() -> None:
    out = check("""
import subprocess
two_pools()
wait_until(lambda: _interpool._spares() == 2, "2 spares")
pid = os.fork()
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status  # 70: the fork guard saw live interpreters
assert _interpool._interpreters_alive() == 0
two_pools()
wait_until(lambda: _interpool._spares() == 2, "2 spares again")
assert subprocess.run(["true"], preexec_fn=lambda: None, check=False).returncode == 0
print("ok")
""")
    assert "ok" in out


def test_a_pool_with_another_stack_size_does_not_adopt_them() -> None:
    out = check("""
two_pools(workers=1)
wait_until(lambda: _interpool._spares() == 1, "1 spare")
threading.stack_size(4 * 1024 * 1024)
with InterpreterPoolExecutor(1) as pool:
    assert pool.submit(tasks.square, 7).result() == 49
    assert _interpool._spares() == 1, "the spare has the other stack size"
print("ok")
""")
    assert "ok" in out


def test_exit_with_spares_waiting_or_being_made_is_clean() -> None:
    # Exit right after the shutdown that starts making spares: the exit hook ends them
    # (waiting for those still being created) before the runtime finalizes.
    out = check("""
two_pools(workers=4)
print("ok")
""")
    assert "ok" in out


def test_a_pool_shut_down_as_it_adopts_a_spare_leaves_no_interpreter() -> None:
    # The pool's only task is cancelled at once: the adopted spare's worker loop may find the
    # pool closed before it starts, and must then end the interpreter the spare made (it
    # leaked before, when spares could be adopted while still being made).
    out = check("""
for _ in range(5):
    _interpool._fill_spares(1, threading.stack_size(), 5.0)
    wait_until(lambda: _interpool._spares() == 1, "the spare")
    pool = InterpreterPoolExecutor(1)
    pool.submit(tasks.square, 3)
    pool.shutdown(wait=True, cancel_futures=True)
    _process.end_spares()
    wait_until(lambda: _interpool._interpreters_alive() == 0, "no interpreter alive")
print("ok")
""")
    assert "ok" in out


@pytest.mark.timeout(180)
def test_workers_that_import_interpool_end_without_waiting_for_spares() -> None:
    # A worker that imports the whole package (interpool.dask, a nested pool) registers its exit
    # hook in the worker's interpreter, which runs inside Py_EndInterpreter. It used to end the
    # process's spares there, joining spare threads that waited for the creation lock the ending
    # worker held (3.12, 3.13): the process hung, 3 of 3 runs (a Dask cluster's close, every time).
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor, _interpool

        if __name__ == "__main__":
            for _ in range(6):
                with InterpreterPoolExecutor(2) as pool:
                    got = list(pool.map(tasks.imports_interpool, range(4)))
            print(got, _interpool._spares() >= 0)
        """,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[True,", "True,", "True,", "True]", "True"], proc.stdout
