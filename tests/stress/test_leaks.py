"""No leaks: process RSS stays within a bound over many tasks and many pool lifetimes."""

from __future__ import annotations

import gc

import pytest

from interpool import InterpreterPoolExecutor

import tasks
from .conftest import rss_bytes, size

MiB = 1024 * 1024


@pytest.mark.timeout(900)
def test_rss_is_flat_over_many_tasks() -> None:
    n = size(20_000, 200_000)
    batch = 5000

    def run_batch(pool: InterpreterPoolExecutor) -> None:
        futures = [pool.submit(tasks.identity, [i, "x", {"k": (2.5, None)}]) for i in range(batch)]
        assert [f.result()[0] for f in futures] == list(range(batch))

    with InterpreterPoolExecutor(2) as pool:
        # Warm up with the same batch shape: RSS settles at the high-water mark of
        # `batch` tasks in flight (about 18 MiB here; measured flat from 40k to 160k tasks).
        for _ in range(4):
            run_batch(pool)
        gc.collect()
        before = rss_bytes()
        for _ in range(n // batch):
            run_batch(pool)
        gc.collect()
        growth = rss_bytes() - before
    print(f"RSS growth over {n} tasks: {growth / MiB:.1f} MiB")
    assert growth < 8 * MiB, f"RSS grew {growth / MiB:.1f} MiB over {n} tasks"


@pytest.mark.timeout(900)
def test_rss_is_flat_over_pool_lifetimes() -> None:
    cycles = size(20, 200)
    for _ in range(3):
        with InterpreterPoolExecutor(2) as pool:
            pool.submit(tasks.square, 2).result()
    gc.collect()
    before = rss_bytes()
    for _ in range(cycles):
        with InterpreterPoolExecutor(2) as pool:
            assert pool.submit(tasks.square, 2).result() == 4
    gc.collect()
    growth = rss_bytes() - before
    print(f"RSS growth over {cycles} pool lifetimes: {growth / MiB:.1f} MiB")
    assert growth < 24 * MiB, f"RSS grew {growth / MiB:.1f} MiB over {cycles} pools"
