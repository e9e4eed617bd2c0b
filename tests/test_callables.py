"""What can be submitted: functions, builtins, methods, partials, lambdas and closures,
functions from __main__ (with and without a __main__ guard), and script strings."""

from __future__ import annotations

import functools
import operator
import os

import pytest

import interpool

import tasks
from conftest import make_executor, run_file, run_script, stdlib_gap


def test_functions_and_builtins(kind: str) -> None:
    with make_executor(kind, 2) as pool:
        assert pool.submit(tasks.square, 7).result() == 49
        assert pool.submit(pow, 2, 10).result() == 1024
        assert pool.submit(operator.mul, 6, 7).result() == 42


def test_methods_partials_and_non_shareable_arguments(kind: str) -> None:
    stdlib_gap(kind, "only sends plain functions and natively shareable values")
    with make_executor(kind, 2) as pool:
        assert pool.submit(tasks.Multiplier(3).times, 5).result() == 15
        assert pool.submit(functools.partial(tasks.add, 1, c=2), 3).result() == 6
        assert pool.submit(sorted, [3, 1, 2]).result() == [1, 2, 3]
        assert pool.submit(tasks.identity, {"a": [1, {2}]}).result() == {"a": [1, {2}]}


def test_lambdas_and_closures_by_value_with_cloudpickle() -> None:
    pytest.importorskip("cloudpickle")
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    with interpool.InterpreterPoolExecutor(2) as pool:
        assert pool.submit(lambda x: x * 3, 4).result() == 12
        assert list(pool.map(closure, range(3))) == [10, 11, 12]
        assert pool.submit(sorted, [3, 1, 2], key=lambda v: -v).result() == [3, 2, 1]


def test_lambdas_without_cloudpickle_say_to_install_it() -> None:
    proc = run_script(
        """
        from interpool import InterpreterPoolExecutor, NotShareableError
        with InterpreterPoolExecutor(1) as pool:
            try:
                pool.submit(lambda: 1).result()
            except NotShareableError as exc:
                print("OK" if "install cloudpickle" in str(exc) else exc)
        """,
        env={"INTERPOOL_CLOUDPICKLE": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_script_strings_run_in_the_worker_main() -> None:
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit("import tasks\ntasks.set_global('script ran')").result() is None
        assert pool.submit(tasks.get_global).result() == "script ran"
        with pytest.raises(ZeroDivisionError):
            pool.submit("1 / 0").result()
        with pytest.raises(TypeError, match="script task takes no arguments"):
            pool.submit("x = 1", 2)  # type: ignore[call-arg]


GUARDED_MAIN = """
from interpool import InterpreterPoolExecutor

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

def norm2(p):
    return Point(p.x * p.x, p.y * p.y)

def cube(x):
    return x ** 3

if __name__ == "__main__":
    with InterpreterPoolExecutor(2) as pool:
        print(list(pool.map(cube, range(4))))
        p = pool.submit(norm2, Point(2, 3)).result()
        print(type(p) is Point, p.x, p.y)
"""

UNGUARDED_MAIN = """
from interpool import InterpreterPoolExecutor

def cube(x):
    return x ** 3

pool = InterpreterPoolExecutor(2)
try:
    print(pool.submit(cube, 3).result(timeout=60))
except Exception as exc:
    print(type(exc).__name__, exc)
pool.shutdown()
"""


@pytest.mark.parametrize("cloudpickle", ["1", "0"], ids=["by-value", "spawn-style"])
def test_functions_and_classes_from_a_guarded_main(tmp_path: os.PathLike[str], cloudpickle: str) -> None:
    script = os.path.join(tmp_path, "guarded.py")
    with open(script, "w") as f:
        f.write(GUARDED_MAIN)
    proc = run_file(script, env={"INTERPOOL_CLOUDPICKLE": cloudpickle})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[0, 1, 8, 27]", "True 4 9"]


def test_unguarded_main_works_by_value(tmp_path: os.PathLike[str]) -> None:
    pytest.importorskip("cloudpickle")
    script = os.path.join(tmp_path, "unguarded.py")
    with open(script, "w") as f:
        f.write(UNGUARDED_MAIN)
    proc = run_file(script, env={"INTERPOOL_CLOUDPICKLE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "27"


def test_unguarded_main_without_cloudpickle_fails_clearly_without_recursing(tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(tmp_path, "unguarded.py")
    with open(script, "w") as f:
        f.write(UNGUARDED_MAIN)
    proc = run_file(script, env={"INTERPOOL_CLOUDPICKLE": "0"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    # As the stdlib's pool: the function could not be rebuilt in the worker (issue 22 item 9).
    assert out.startswith("NotShareableError args not shareable"), out
    assert "RuntimeError: interpool could not re-create __main__" in out
    assert 'if __name__ == "__main__":' in out and "cloudpickle" in out


@pytest.mark.parametrize("count", [0, 1, 2, 6, 7, 40])
def test_positional_arguments_of_any_count_arrive_in_order(count: int) -> None:
    # Up to 6 go by vectorcall without a tuple, more through a tuple (src/worker.rs).
    args = [f"a{i}" for i in range(count)]
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.describe_call, *args).result() == (count, ["str"] * count, False, {})
        got = pool.submit(tasks.describe_call, *args, key=1).result()
        assert got == (count, ["str"] * count, False, {"key": 1})


def test_an_object_passed_twice_arrives_as_one_object() -> None:
    shared = [1, 2, 3]
    with interpool.InterpreterPoolExecutor(1) as pool:
        assert pool.submit(tasks.describe_call, shared, shared).result() == (2, ["list", "list"], True, {})
        cyclic: list[object] = []
        cyclic.append((cyclic,))  # a cycle through a tuple: the argument is pickled whole
        assert pool.submit(tasks.describe_call, cyclic, cyclic).result() == (2, ["list", "list"], True, {})
