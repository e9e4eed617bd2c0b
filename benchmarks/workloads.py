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


def identity(x):  # type: ignore[no-untyped-def]
    return x


def nbody(steps):  # type: ignore[no-untyped-def]
    """pyperformance's n-body kernel (5 bodies), self-contained; returns the energy."""
    pi = 3.14159265358979323
    solar_mass = 4 * pi * pi
    days = 365.24
    bodies = [
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], solar_mass],
        [
            [4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01],
            [1.66007664274403694e-03 * days, 7.69901118419740425e-03 * days, -6.90460016972063023e-05 * days],
            9.54791938424326609e-04 * solar_mass,
        ],
        [
            [8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01],
            [-2.76742510726862411e-03 * days, 4.99852801234917238e-03 * days, 2.30417297573763929e-05 * days],
            2.85885980666130812e-04 * solar_mass,
        ],
        [
            [1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01],
            [2.96460137564761618e-03 * days, 2.37847173959480950e-03 * days, -2.96589568540237556e-05 * days],
            4.36624404335156298e-05 * solar_mass,
        ],
        [
            [1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01],
            [2.68067772490389322e-03 * days, 1.62824170038242295e-03 * days, -9.51592254519715870e-05 * days],
            5.15138902046611451e-05 * solar_mass,
        ],
    ]
    pairs = [(bodies[i], bodies[j]) for i in range(5) for j in range(i + 1, 5)]
    dt = 0.01
    for _ in range(steps):
        for ([x1, y1, z1], v1, m1), ([x2, y2, z2], v2, m2) in pairs:
            dx, dy, dz = x1 - x2, y1 - y2, z1 - z2
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** (-1.5))
            b1m, b2m = m1 * mag, m2 * mag
            v1[0] -= dx * b2m
            v1[1] -= dy * b2m
            v1[2] -= dz * b2m
            v2[0] += dx * b1m
            v2[1] += dy * b1m
            v2[2] += dz * b1m
        for r, [vx, vy, vz], _m in bodies:
            r[0] += dt * vx
            r[1] += dt * vy
            r[2] += dt * vz
    energy = 0.0
    for ((x1, y1, z1), _v1, m1), ((x2, y2, z2), _v2, m2) in pairs:
        energy -= (m1 * m2) / (((x1 - x2) ** 2 + (y1 - y2) ** 2 + (z1 - z2) ** 2) ** 0.5)
    for _r, [vx, vy, vz], m in bodies:
        energy += m * (vx * vx + vy * vy + vz * vz) / 2.0
    return energy


def hash_blocks(count):  # type: ignore[no-untyped-def]
    """hashlib over 4 KiB blocks (releases the GIL for blocks this size)."""
    import hashlib

    block = bytes(range(256)) * 16
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)
    return digest.hexdigest()


def sleep_for(seconds):  # type: ignore[no-untyped-def]
    import time

    time.sleep(seconds)
    return seconds


def buffer_len(buf):  # type: ignore[no-untyped-def]
    return len(memoryview(buf))


def report_start_then_spin(q: object) -> None:
    """Put the start time on the queue, then loop in pure Python until stopped."""
    import time

    q.put(time.monotonic())  # type: ignore[attr-defined]
    n = 0
    while True:
        n += 1


def grid(rows: int, cols: int = 1000) -> tuple[tuple[int, ...], ...]:
    """A read-only table of ints, as in the "large read-only argument" benchmarks."""
    return tuple(tuple(range(r, r + cols)) for r in range(rows))


def grid_row_sum(table, row):  # type: ignore[no-untyped-def]
    return sum(table[row])


_GRID = None


def set_grid(table):  # type: ignore[no-untyped-def]
    global _GRID
    _GRID = table


def global_grid_row_sum(row):  # type: ignore[no-untyped-def]
    return sum(_GRID[row])  # type: ignore[index]


def echo_on_cpu(inbox, outbox, count, cpu):  # type: ignore[no-untyped-def]
    """``echo`` with the calling thread pinned to one CPU (Linux), restored afterwards."""
    import os

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return echo(inbox, outbox, count)
    finally:
        os.sched_setaffinity(0, before)
