"""Task functions of bench_isolation.py (workers import them by name; numpy is imported inside
them, so that importing this module costs nothing)."""

from __future__ import annotations

import os
import sys
from typing import Any

FEATURES = 12


def row_features(x: Any, out: Any) -> None:
    """For each row of ``x`` (rows x cols), write FEATURES numbers into the same row of
    ``out``: many small numpy calls per row, as in feature extraction or a simulation step
    (Python-level overhead dominates: threads hold the GIL most of the time)."""
    import numpy as np

    n = x.shape[1]
    picks = [n // 10, n // 2, 9 * n // 10]
    kernel = np.hanning(15)
    kernel /= kernel.sum()
    for i in range(x.shape[0]):
        c = x[i] - x[i].mean()
        s = np.sort(c)
        spectrum = np.abs(np.fft.rfft(c))
        smooth = np.convolve(c, kernel, mode="valid")
        counts, _ = np.histogram(c, bins=16, range=(-4.0, 4.0))
        out[i, 0] = c.std()
        out[i, 1:4] = s[picks]
        out[i, 4] = spectrum.argmax()
        out[i, 5] = np.cumsum(c).max()
        out[i, 6] = np.count_nonzero(c > 0)
        out[i, 7] = np.dot(c, c)
        out[i, 8] = np.abs(np.diff(smooth)).sum()
        out[i, 9] = counts.argmax()
        out[i, 10:12] = np.percentile(c, [25, 75])


def shared_block(inbuf: Any, outbuf: Any, rows: int, cols: int, start: int, stop: int) -> int:
    """interpool and threads: views of the shared input and output, zero-copy."""
    import numpy as np

    x = np.frombuffer(memoryview(inbuf), dtype=np.float64).reshape(rows, cols)
    out = np.frombuffer(memoryview(outbuf), dtype=np.float64).reshape(rows, FEATURES)
    row_features(x[start:stop], out[start:stop])
    return stop - start


def pickled_block(block: Any) -> Any:
    """The process pool: the block arrives by pickle, its features go back by pickle."""
    import numpy as np

    out = np.empty((block.shape[0], FEATURES))
    row_features(block, out)
    return out


def numpy_ready(nap: float) -> str:
    """Import numpy (the worker's own), use it, then hold the worker for ``nap`` seconds so
    that a pool's other start-up task runs on another worker."""
    import threading
    import time

    import numpy as np

    assert int(np.arange(10).sum()) == 45
    time.sleep(nap)
    native = sys.modules.get("interpool._interpool")  # not imported here: a process worker stays lean
    interp = int(native.interpreter_id()) if native is not None else 0
    return f"pid {os.getpid()}, interpreter {interp}, thread {threading.get_ident()}"  # who ran it


def shm_block(in_name: str, out_name: str, rows: int, cols: int, start: int, stop: int) -> int:
    """The process pool's best case: views of multiprocessing.shared_memory blocks."""
    from multiprocessing import shared_memory

    import numpy as np

    extra: dict[str, Any] = {"track": False} if sys.version_info >= (3, 13) else {}
    inp = shared_memory.SharedMemory(name=in_name, **extra)
    outp = shared_memory.SharedMemory(name=out_name, **extra)
    try:
        x = np.ndarray((rows, cols), dtype=np.float64, buffer=inp.buf)
        out = np.ndarray((rows, FEATURES), dtype=np.float64, buffer=outp.buf)
        row_features(x[start:stop], out[start:stop])
        del x, out  # release the views before closing the mappings
    finally:
        inp.close()
        outp.close()
    return stop - start
