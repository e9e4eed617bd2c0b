"""INTERPOOL_DEBUG=1: every object interpool keeps is checked against its interpreter on use
and release (src/debug.rs); a planted release from the wrong interpreter stops the process at
once, with a message that names it, instead of corrupting the heap."""

from __future__ import annotations

import pytest

from conftest import run_script

PLANT = """
    from interpool import InterpreterPoolExecutor, _interpool

    if __name__ == "__main__":
        with InterpreterPoolExecutor(1) as pool:
            worker = pool.submit(_interpool.interpreter_id).result(timeout=60)
            if {in_worker}:
                pool.submit(_interpool._debug_plant, "keep").result(timeout=60)
            else:
                _interpool._debug_plant("keep")
            print("worker", worker, flush=True)
            _interpool._debug_plant("release")  # from the main interpreter
        print("released")
    """


def test_a_planted_cross_interpreter_release_is_caught_and_named() -> None:
    proc = run_script(PLANT.format(in_worker=True), env={"INTERPOOL_DEBUG": "1"})
    assert proc.returncode != 0, proc.stdout
    worker = proc.stdout.split()[1]
    assert "released" not in proc.stdout
    assert (
        "interpool debug: the planted object at 0x" in proc.stderr
        and f"belongs to interpreter {worker} but interpreter 0 is current" in proc.stderr
    ), proc.stderr


def test_the_same_release_from_the_owning_interpreter_passes() -> None:
    proc = run_script(PLANT.format(in_worker=False), env={"INTERPOOL_DEBUG": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "released"


def test_the_planted_bug_is_refused_outside_debug_mode() -> None:
    proc = run_script(PLANT.format(in_worker=True), env={"INTERPOOL_DEBUG": "0"})
    assert proc.returncode == 1
    assert "RuntimeError: _debug_plant plants a bug: it runs only with INTERPOOL_DEBUG=1" in proc.stderr


@pytest.mark.timeout(180)
def test_pools_queues_and_constants_run_clean_in_debug_mode() -> None:
    # Keeps, uses and releases of every kind of kept object: module state, hooks, exception
    # classes, functions by reference, decoded constants, stashed worker hooks, recycling.
    proc = run_script(
        """
        import interpool, tasks
        from interpool import Constant, InterpreterPoolExecutor, Queue

        if __name__ == "__main__":
            table = Constant(tuple(range(100)))
            with InterpreterPoolExecutor(2, max_tasks_per_worker=3) as pool:
                total = sum(pool.map(tasks.square, range(30)))
                got = pool.submit(tasks.identity, table).result(timeout=60)
                try:
                    pool.submit(tasks.fail, "boom").result(timeout=60)
                except Exception as exc:
                    failed = str(exc)
            q = Queue()
            q.put([1, 2])
            print(total == sum(i * i for i in range(30)), got == tuple(range(100)), failed, q.get())
        """,
        env={"INTERPOOL_DEBUG": "1"},
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "boom", "[1,", "2]"], proc.stdout
