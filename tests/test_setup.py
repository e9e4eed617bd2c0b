"""The package sets the extension up explicitly in every interpreter that imports it: no
feature depends on another module having been imported first."""

from __future__ import annotations

from conftest import run_script


def test_queue_and_buffer_with_non_native_values_in_a_fresh_process() -> None:
    """Queue and SharedBuffer work in a process that never creates a pool (the codec's
    pickler and the exception classes are configured by `import interpool` alone)."""
    proc = run_script(
        """
        import decimal, fractions, sys
        import interpool
        from interpool import Queue, SharedBuffer, _interpool

        q = Queue()
        q.put(fractions.Fraction(1, 3))
        q.put({"d": decimal.Decimal("1.5"), "buf": SharedBuffer(bytearray(b"abc"))})
        assert q.get() == fractions.Fraction(1, 3)
        item = q.get()
        assert item["d"] == decimal.Decimal("1.5") and bytes(memoryview(item["buf"])) == b"abc"
        assert _interpool.roundtrip(fractions.Fraction(2, 7)) == fractions.Fraction(2, 7)
        try:
            q.get_nowait()
        except interpool.QueueEmpty:
            pass
        assert "interpool._executor" not in sys.modules, "no pool was created"
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_workers_that_see_only_native_values_never_import_pickle() -> None:
    """The pickler is configured lazily: a worker whose tasks and results are native values
    (and functions sent by reference) does not pay for importing pickle."""
    proc = run_script(
        """
        import tasks
        from interpool import InterpreterPoolExecutor

        if __name__ == "__main__":
            with InterpreterPoolExecutor(1) as pool:
                assert pool.submit(tasks.square, 7).result() == 49
                print(pool.submit(tasks.is_imported, "pickle").result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
