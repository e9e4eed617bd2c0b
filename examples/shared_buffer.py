"""Zero-copy shared memory: each worker fills its own slice of one big buffer.

Giving each worker a separate slice is the synchronization: no two interpreters ever write
the same bytes, and the main interpreter reads only after every task has finished.
"""

from interpool import InterpreterPoolExecutor, SharedBuffer


def fill(buf: SharedBuffer, start: int, stop: int, value: int) -> int:
    view = memoryview(buf)[start:stop]
    view[:] = bytes([value]) * (stop - start)
    return stop - start


if __name__ == "__main__":
    size, parts = 64 * 1024 * 1024, 4
    data = bytearray(size)
    buf = SharedBuffer(data)  # zero-copy in the main interpreter: workers write into `data`
    step = size // parts
    with InterpreterPoolExecutor(2) as pool:
        written = sum(
            pool.map(fill, [buf] * parts, range(0, size, step), range(step, size + 1, step), range(1, parts + 1))
        )
    assert written == size and data[0] == 1 and data[-1] == parts
    print(f"workers wrote {written // (1024 * 1024)} MiB straight into the caller's bytearray")
