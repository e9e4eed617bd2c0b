"""numpy in worker interpreters: each worker fills its own slice of one shared array.

numpy refuses own-GIL subinterpreters; ``isolate=["numpy"]`` gives each worker a private
copy of numpy's extension modules (docs/isolation.md). Arguments and results still cross by
pickle, so a large array is shared instead: one ``SharedBuffer``, viewed with
``np.frombuffer`` here and in every worker, zero-copy. Each task writes a separate block of
rows, so no two interpreters ever write the same bytes, and the main interpreter reads only
after every task has finished.
"""

import sys

from interpool import InterpreterPoolExecutor, SharedBuffer

ROWS, COLS, BLOCKS = 4096, 1024, 8


def fill(buf: SharedBuffer, block: int) -> float:
    import numpy as np  # this worker's own copy of numpy

    rows = np.frombuffer(memoryview(buf), dtype=np.float64).reshape(ROWS, COLS)
    step = ROWS // BLOCKS
    part = rows[block * step : (block + 1) * step]  # a view: writes land in the shared buffer
    i = np.arange(block * step, (block + 1) * step)[:, None]
    part[:] = np.sin(i * 0.001) * np.cos(np.arange(COLS) * 0.01)
    return float(part.sum())  # a small result crosses by pickle as usual


if __name__ == "__main__":
    try:
        import numpy as np
    except ImportError:
        print("numpy is not installed for this Python: pip install numpy to run this example")
        sys.exit(0)
    if sys.version_info < (3, 13):
        print("isolate= needs CPython 3.13+ (on 3.12 private copies of extension modules are refused)")
        sys.exit(0)

    buf = SharedBuffer(ROWS * COLS * 8)
    array = np.frombuffer(memoryview(buf), dtype=np.float64).reshape(ROWS, COLS)  # zero-copy view
    with InterpreterPoolExecutor(2, isolate=["numpy"]) as pool:
        sums = list(pool.map(fill, [buf] * BLOCKS, range(BLOCKS)))
        stats = pool.stats()

    expected = np.sin(np.arange(ROWS)[:, None] * 0.001) * np.cos(np.arange(COLS) * 0.01)
    assert np.array_equal(array, expected)
    assert np.isclose(sum(sums), array.sum())
    print(
        f"{BLOCKS} tasks on 2 workers filled a {ROWS}x{COLS} float64 array ({array.nbytes >> 20} MiB) in place; "
        f"the workers loaded private copies of numpy's extension modules ({stats['isolated_files']} files, "
        f"{stats['isolated_resident_bytes'] >> 20} MiB resident)"
    )
