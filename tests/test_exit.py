"""The process exits cleanly (status 0, no crash, no hang) with pools still busy."""

from __future__ import annotations

import os

import pytest

from conftest import rounds, run_script

RUNS = int(os.environ.get("INTERPOOL_EXIT_RUNS", rounds(20, 5)))

BUSY_AT_EXIT = """
import tasks
from interpool import InterpreterPoolExecutor
pool = InterpreterPoolExecutor(2)
futures = [pool.submit(tasks.spin, 300_000) for _ in range(6)]
print(pool.submit(tasks.square, 7).result(), flush=True)
"""

SHUTDOWN_NOWAIT_AT_EXIT = """
import tasks
from interpool import InterpreterPoolExecutor
pool = InterpreterPoolExecutor(2)
futures = [pool.submit(tasks.spin, 300_000) for _ in range(6)]
pool.shutdown(wait=False)
print(49, flush=True)
"""

DROPPED_AT_EXIT = """
import gc, tasks
from interpool import InterpreterPoolExecutor
pool = InterpreterPoolExecutor(2)
futures = [pool.submit(tasks.spin, 300_000) for _ in range(6)]
del pool
gc.collect()
print(futures[-1].result() > 0 and 49, flush=True)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "script", [BUSY_AT_EXIT, SHUTDOWN_NOWAIT_AT_EXIT, DROPPED_AT_EXIT], ids=["busy", "nowait", "dropped"]
)
def test_exit_with_busy_workers_is_clean(script: str) -> None:
    runs = RUNS if script is BUSY_AT_EXIT else max(3, RUNS // 4)
    for i in range(runs):
        proc = run_script(script)
        assert proc.returncode == 0, f"run {i}: exit status {proc.returncode}\n{proc.stderr}"
        assert proc.stdout.strip() == "49", f"run {i}: {proc.stdout!r} {proc.stderr!r}"
        assert "Fatal" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


def test_queued_tasks_finish_before_exit() -> None:
    """Exit waits for queued work, like the stdlib executors: no task is lost."""
    proc = run_script(
        """
        import tasks, sys
        from interpool import InterpreterPoolExecutor
        pool = InterpreterPoolExecutor(2)
        futures = [pool.submit(tasks.square, i) for i in range(200)]
        futures[-1].add_done_callback(lambda f: sys.stdout.write(f"last={f.result()}\\n"))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"last={199 * 199}"
