"""Quickstart: run CPU-bound pure-Python work on every core.

The only change from concurrent.futures code is the import line.
"""

import time

from interpool import InterpreterPoolExecutor


def count_primes(limit: int) -> int:
    """Pure-Python CPU work: count the primes below ``limit``."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)


if __name__ == "__main__":  # workers import this file: keep the entry point guarded
    limits = [2_000_000 + i for i in range(8)]
    t0 = time.perf_counter()
    sequential = [count_primes(n) for n in limits]
    t1 = time.perf_counter()
    with InterpreterPoolExecutor() as pool:
        parallel = list(pool.map(count_primes, limits))
    t2 = time.perf_counter()
    assert parallel == sequential
    print(f"{len(limits)} tasks: sequential {t1 - t0:.2f} s, interpool {t2 - t1:.2f} s")
    print("primes below 2,000,000:", parallel[0])
