"""Workloads shared by the benchmarks (module-level so every executor can import them)."""

from __future__ import annotations


def spin(n: int) -> int:
    """CPU-bound pure Python: the sum of squares below ``n``."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_expected(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


def echo(inbox, outbox, count):  # type: ignore[no-untyped-def]  # no annotations: stdlib-shareable
    for _ in range(count):
        outbox.put(inbox.get())
    return count


def produce(outbox, count):  # type: ignore[no-untyped-def]
    for i in range(count):
        outbox.put(i)
    return count


def take_buffers(inbox, outbox, count):  # type: ignore[no-untyped-def]
    for _ in range(count):
        buf = inbox.get()
        view = memoryview(buf)
        outbox.put(len(view) + view[len(view) - 1])
    return count
