"""Module-level task functions for the tests (workers import them by name)."""

from __future__ import annotations

import os
import sys
import time

# The suite's one wall-clock bound: how long a test (or a task) waits for something that must
# happen (a reply, a file, a thread's or a process's end, a counter reaching its value) before
# it calls it lost. It only turns a hang into a failure: no test asserts that anything is fast
# (speed is measured in benchmarks/). INTERPOOL_TEST_PATIENCE=SECONDS changes it everywhere.
PATIENCE = float(os.environ.get("INTERPOOL_TEST_PATIENCE", "30"))


def square(x: int) -> int:
    return x * x


def spin(n: int) -> int:
    """CPU-bound pure-Python work: sum of squares below ``n``."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def spin_expected(n: int) -> int:
    return (n - 1) * n * (2 * n - 1) // 6


def whoami() -> dict[str, object]:
    """Where the task runs: interpreter id, thread, process, and whether interpool imports."""
    import threading

    import interpool
    from interpool import _interpool

    return {
        "interp": _interpool.interpreter_id(),
        "thread": threading.get_native_id(),
        "pid": os.getpid(),
        "version": interpool.__version__,
    }


def is_imported(module: str) -> bool:
    import sys

    return module in sys.modules


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def raise_system_exit() -> None:
    raise SystemExit(3)


def record_init(path: str, marker: str) -> None:
    with open(path, "a") as f:
        f.write(marker + "\n")


def broken_init() -> None:
    raise RuntimeError("initializer exploded")


def interpreter_id() -> int:
    from interpool import _interpool

    return _interpool.interpreter_id()


def nested_pool_sum(n: int) -> int:
    from interpool import InterpreterPoolExecutor

    with InterpreterPoolExecutor(2) as pool:
        return sum(pool.map(square, range(n)))


def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


def identity(x: object) -> object:
    return x


def return_lock() -> object:
    import threading

    return threading.Lock()


class Unpicklable(Exception):
    """An exception that cannot be pickled (its state holds a lock)."""

    def __init__(self, msg: str) -> None:
        import threading

        super().__init__(msg)
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise Unpicklable("cannot travel")


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


class Multiplier:
    def __init__(self, k: int) -> None:
        self.k = k

    def times(self, x: int) -> int:
        return self.k * x


def import_single_phase() -> None:
    import _testsinglephase  # noqa: F401 - a single-phase init extension, refused in subinterpreters


def set_global(value: str) -> None:
    global INIT_VALUE
    INIT_VALUE = value


INIT_VALUE = "unset"


def set_global_repr(value: object) -> None:
    """An initializer that keeps the text of what it received (a wrapper shows as itself)."""
    global INIT_VALUE
    INIT_VALUE = repr(value)


def get_global() -> str:
    return INIT_VALUE


def wait_for_file(path: str, timeout: float = PATIENCE) -> str:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return path


def touch(path: str) -> str:
    with open(path, "w"):
        pass
    return path


def fail_if_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


def add3(a: int, b: int, c: int) -> int:
    """Like add(), without defaults (the stdlib 3.14 pool cannot send functions with defaults)."""
    return a + b + c


def add2(a: int, b: int) -> int:
    return a + b


def queue_echo(inbox: object, outbox: object, count: int) -> int:
    """Move ``count`` items from inbox to outbox (a cross-interpreter ping-pong partner)."""
    for _ in range(count):
        outbox.put(inbox.get())  # type: ignore[attr-defined]
    return count


def queue_produce(q: object, start: int, count: int) -> int:
    for i in range(start, start + count):
        q.put(i)  # type: ignore[attr-defined]
    return count


def queue_consume(q: object) -> list[int]:
    """Take items until the queue is closed and drained."""
    from interpool import QueueClosed

    got = []
    while True:
        try:
            got.append(q.get())  # type: ignore[attr-defined]
        except QueueClosed:
            return got


def buffer_sum(buf: object) -> int:
    return sum(memoryview(buf))  # type: ignore[arg-type]


def buffer_fill(buf: object, value: int) -> int:
    view = memoryview(buf)  # type: ignore[arg-type]
    for i in range(len(view)):
        view[i] = value
    return len(view)


def buffer_checksum(buf: object) -> tuple[int, int]:
    import zlib

    view = memoryview(buf)  # type: ignore[arg-type]
    return len(view), zlib.crc32(view)


def make_shared_buffer(data: bytes) -> object:
    """Create a SharedBuffer inside a worker (copied into interpool-owned memory)."""
    from interpool import SharedBuffer

    return SharedBuffer(bytearray(data))


def roundtrip_in_worker(value: object) -> object:
    return value


def hold_buffer_until(buf: object, gate: str) -> int:
    """Keep a lease on ``buf`` until ``gate`` exists, then read it."""
    wait_for_file(gate)
    return sum(memoryview(buf))  # type: ignore[arg-type]


def put_interpreter_id(q: object) -> None:
    q.put(interpreter_id())  # type: ignore[attr-defined]


def return_worker_only_object() -> object:
    """Return an instance of a class that exists only in this worker interpreter."""
    import sys

    ghost = type("Ghost", (), {"__module__": __name__})
    sys.modules[__name__].Ghost = ghost  # picklable by reference here only
    return ghost()


def record_and_echo(q: object, i: int) -> int:
    """Stress task: note that task ``i`` ran (exactly-once accounting), return ``i``."""
    q.put(i)  # type: ignore[attr-defined]
    return i


def raise_exception(kind: str) -> None:
    """Raise one of many exception shapes (see tests/stress/test_faults.py)."""
    import errno

    if kind == "os":
        raise OSError(errno.ENOENT, "no such file", "/missing")
    if kind == "unicode":
        b"\xff".decode("utf-8")
    if kind == "key":
        raise KeyError("k")
    if kind == "zero":
        1 / 0  # noqa: B018
    if kind == "group":
        raise ExceptionGroup("many", [ValueError("a"), TypeError("b")])
    if kind == "chained":
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    if kind == "notes":
        exc = ValueError("with notes")
        exc.add_note("a note")
        raise exc
    if kind == "custom":
        raise CustomError(1, "two", [3])
    if kind == "recursion":
        recurse(0)
    if kind == "memory":
        bytearray(1 << 60)
    raise AssertionError(kind)


class CustomError(Exception):
    def __init__(self, code: int, text: str, extra: list[int]) -> None:
        super().__init__(code, text, extra)
        self.code = code


def recurse(n: int) -> int:
    return recurse(n + 1) + 1


def start_thread(seconds: float) -> str:
    import threading

    t = threading.Thread(target=time.sleep, args=(seconds,))
    t.start()
    return t.name


def start_daemon_thread() -> None:
    import threading

    threading.Thread(target=time.sleep, args=(1,), daemon=True).start()


def leave_garbage(megabytes: int) -> int:
    global GARBAGE
    GARBAGE = bytearray(megabytes * 1024 * 1024)
    return len(GARBAGE)


GARBAGE = bytearray()


def break_worker() -> None:
    """Leave this interpreter unable to report failures (interpool's hook is gone), then fail."""
    import interpool._worker as w

    w.describe = None  # type: ignore[assignment]
    raise RuntimeError("the task fails after breaking its worker")


def recurse_to(depth: int) -> int:
    """Recurse `depth` levels deep through C (each level calls the next from `map`, so it
    uses C stack as well as Python frames), raising the recursion limit as needed."""
    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), depth + 100))

    def down(n: int) -> int:
        return 0 if n == 0 else next(map(down, [n - 1])) + 1

    return down(depth)


def nested_dict(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def nesting_depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict) and value:
        value = value["k"]
        depth += 1
    return depth


def start_raw_thread(seconds: float) -> None:
    """Start a thread with the low-level `_thread` module, which `threading` does not track."""
    import _thread

    _thread.start_new_thread(time.sleep, (seconds,))


def make_shared_buffer_of_size(size: int) -> object:
    from interpool import SharedBuffer

    return SharedBuffer(size)


class HttpError(Exception):
    """An exception whose __init__ takes other arguments than its args (pickle cannot
    rebuild it: it calls HttpError(message))."""

    def __init__(self, code: int, url: str) -> None:
        super().__init__(f"HTTP {code} for {url}")
        self.code = code
        self.url = url


def raise_http_error(code: int, url: str) -> None:
    try:
        {}["missing"]
    except KeyError as inner:
        error = HttpError(code, url)
        error.add_note("while fetching")
        raise error from inner


class OddReduce(Exception):
    """An exception whose __reduce__ returns something that is not an exception."""

    def __reduce__(self) -> tuple[type[int], tuple[int]]:
        return (int, (7,))


def raise_odd_reduce() -> None:
    raise OddReduce("odd")


def datetimes(stamp: float) -> list[object]:
    """datetime, timezone, zoneinfo and Decimal values made in a worker."""
    import datetime
    import decimal
    import zoneinfo

    utc = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    paris = utc.astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
    return [
        utc,
        paris,
        utc.replace(tzinfo=None),
        datetime.date(2026, 11, 23),
        datetime.timedelta(3),
        decimal.Decimal("1.25"),
    ]


def busy_forever() -> None:
    """A pure-Python loop that never ends by itself."""
    n = 0
    while True:
        n += 1


def busy_then_note(q: object) -> None:
    """Loop forever; the `finally` block reports that it ran (through the queue)."""
    try:
        busy_forever()
    finally:
        q.put("finally ran")  # type: ignore[attr-defined]


class _SlowExit:
    """A context manager whose ``__exit__`` takes ``seconds`` of pure-Python work and then
    reports that it finished."""

    def __init__(self, q: object, seconds: float) -> None:
        self.q, self.seconds = q, seconds

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        busy_for(self.seconds)
        self.q.put("__exit__ done")  # type: ignore[attr-defined]


def busy_then_slow_clean_up(q: object, seconds: float) -> None:
    """Loop until stopped; then a `finally` block and an `__exit__` that each take `seconds`
    of pure-Python work report, through the queue, that they ran to the end."""
    with _SlowExit(q, seconds):
        try:
            busy_forever()
        finally:
            busy_for(seconds)
            q.put("finally done")  # type: ignore[attr-defined]


def wait_in_get(q: object) -> object:
    """Block in interpool's Queue.get()."""
    return q.get()  # type: ignore[attr-defined]


def wait_in_put(q: object, item: object) -> None:
    """Block in interpool's Queue.put() (on a full queue)."""
    q.put(item)  # type: ignore[attr-defined]


def ignore_interrupts(q: object, seconds: float) -> None:
    """Catch every interrupt for `seconds` after the first one and keep going (counting them
    in the queue); after that, the next interrupt ends the task."""
    import interpool

    until = None
    while until is None or time.monotonic() < until:
        try:
            busy_forever()
        except interpool.TaskInterrupted:
            until = until or time.monotonic() + seconds
            q.put("caught")  # type: ignore[attr-defined]
    busy_forever()


def hang_until_written(fd: int) -> bytes:
    """Wait in C (GIL released) until a byte arrives on the pipe ``fd`` (the test decides when,
    not the clock): interrupts cannot reach the call until then."""
    return os.read(fd, 1)


def spin_until_stopped(notes: object, seconds: float = PATIENCE) -> str:
    """Loop until stopped, or for ``seconds`` if no stop comes; note which in ``notes`` (an
    interpool Queue): ``"stopped"`` or ``"not stopped"``. A test that stops it can assert the
    stop, and a stop that never comes is a failure, not a hang."""
    try:
        busy_for(seconds)
    except BaseException:  # TaskInterrupted
        notes.put("stopped")  # type: ignore[attr-defined]
        raise
    notes.put("not stopped")  # type: ignore[attr-defined]
    return "not stopped"


def busy_for(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


def log_at_every_level(name: str) -> None:
    import logging

    log = logging.getLogger(name)
    log.debug("debug from a worker")
    log.info("info from a worker")
    log.warning("warning from a worker %d", 42)
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("with a traceback")


def configure_own_logging_and_log(path: str) -> None:
    import logging

    logging.basicConfig(filename=path, level=logging.INFO, format="own: %(message)s", force=True)
    logging.getLogger("mine").info("kept in the worker")


def divide(a: float, b: float) -> float:
    return a / b


def race(buffer: object, slot: int, budget: float = 30.0) -> int:
    """Write a counter into ``slot`` of a shared array of two int64 while watching the other
    slot; return the longest run of consecutive iterations that each saw the other slot
    change (stopping at 100, or after ``budget`` seconds). Threads that share a GIL, or
    share one CPU, take turns: the other side cannot move between two of our iterations
    twice in a row, so their runs stay at 1 or 2. Threads that run at the same time reach
    100 within microseconds of overlap, however loaded the machine is."""
    view = memoryview(buffer).cast("q")  # type: ignore[arg-type]
    other = 1 - slot
    view[slot] = 1
    deadline = time.monotonic() + budget
    while view[other] == 0 and time.monotonic() < deadline:
        pass  # both started
    best = run = 0
    last, i = view[other], 1
    while best < 100 and last != -1:
        i += 1
        view[slot] = i
        seen = view[other]
        if seen != last:
            run += 1
            best = max(best, run)
            last = seen
        else:
            run = 0
        if not i % 65536 and time.monotonic() > deadline:
            break
    view[slot] = -1  # done: the other side stops too
    return best


# Constants (tests/test_constant.py): objects that count how often a worker rebuilds them.
LOADS = 0


def _counted_load(payload: object) -> Counted:
    global LOADS
    LOADS += 1
    return Counted(payload)


class Counted:
    """Pickled (no native form); each unpickling in an interpreter is counted in ``LOADS``."""

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def __reduce__(self) -> tuple[object, tuple[object]]:
        return (_counted_load, (self.payload,))


def constant_seen(value: object) -> tuple[int, int, int, object]:
    """Which interpreter, which object, how many rebuilds so far, and the payload."""
    return interpreter_id(), id(value), LOADS, getattr(value, "payload", value)


def constant_in_initializer(value: object) -> None:
    set_global(repr(getattr(value, "payload", value)))


def append_and_len(items: list[int]) -> int:
    items.append(len(items))
    return len(items)


def fail_outside_workers() -> None:
    """An initializer that works only in worker interpreters (so it breaks a fallback lane)."""
    from interpool import _worker

    if not _worker.in_worker():
        raise RuntimeError("this initializer runs only in workers")


def import_together(ready: object, go: object, module: str) -> str:
    """Import ``module`` at the same moment as the other tasks of a round: each says it is
    ready, then waits for the owner's go (both are ``interpool.Queue``)."""
    ready.put(1)  # type: ignore[attr-defined]
    go.get()  # type: ignore[attr-defined]
    try:
        __import__(module)
    except ImportError:
        return "ImportError"
    return "ok"


def os_thread_name() -> str:
    """The OS name of the worker's thread (as ps and debuggers show it)."""
    with open("/proc/thread-self/comm") as f:
        return f.read().strip()


def describe_call(*args: object, **kwargs: object) -> tuple[int, list[str], bool, dict[str, object]]:
    """How a call arrived: its positional count, their types, whether the first two are the
    same object, and the keywords."""
    same = len(args) >= 2 and args[0] is args[1]
    return len(args), [type(a).__name__ for a in args], same, kwargs


def dict_key_check(d: dict[object, object]) -> tuple[bool, bool, int]:
    """Whether every str key of `d` hashes as a freshly built equal str does and finds its
    value through such a str, and the dict's size in bytes (its table kind shows in it)."""
    fresh = {k: "".join(list(k)) if isinstance(k, str) else k for k in d}
    hashes = all(hash(k) == hash(fresh[k]) for k in d)
    lookups = all(d[fresh[k]] is d[k] for k in d)
    return hashes, lookups, sys.getsizeof(d)


def import_after(module: str, seconds: float) -> str:
    """Import ``module`` after ``seconds`` (so that the calls of a ``map`` spread over the
    workers, each of which then imports it); returns its name."""
    import importlib

    time.sleep(seconds)
    return importlib.import_module(module).__name__


def dated_square(n: int) -> list[object]:
    """``n * n`` with work that imports datetime and json in the worker (scripts/soak.py)."""
    import datetime
    import json

    day = datetime.date(2026, 1, 1) + datetime.timedelta(days=n)
    return [n * n, json.loads(json.dumps({"day": day.isoformat()}))["day"]]


def imports_interpool(_: object = None) -> bool:
    """Import the whole package in a worker (as a task that uses ``interpool.dask`` or creates a
    nested pool does): its exit hook is then registered in the worker's interpreter."""
    import interpool._executor  # noqa: F401

    return True


class PickleShenanigans:
    """Pickles, but fails to unpickle (CPython's test_pickle_errors_propagate)."""

    def __init__(self, value: int) -> None:
        if value == 1:
            raise RuntimeError("gotcha: not unpickled")

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (self.__class__, (1,))


def add_warning_filter() -> None:
    """A filter with a compiled pattern, as pandas and numpy's isolation add on import."""
    import warnings

    warnings.filterwarnings("ignore", message="interpool test filter", category=UserWarning)


def noop() -> None:
    pass


class Blob:
    """Bytes that pickle (protocol 5) as one out-of-band buffer, as numpy arrays do: what the
    pickle documentation's ``ZeroCopyByteArray`` example does, without numpy."""

    def __init__(self, data: object) -> None:
        self.data = memoryview(data)  # type: ignore[arg-type]

    def __reduce_ex__(self, protocol: object) -> object:
        import pickle

        return (Blob, (pickle.PickleBuffer(self.data),))


def blob_facts(blob: Blob) -> dict[str, object]:
    view = blob.data
    return {"readonly": view.readonly, "len": view.nbytes, "sum": sum(view[:64]), "last": view[-1]}


def blob_wait_for_change(blob: Blob, q: object, old: int) -> int:
    """Tell the caller we hold the view, then wait (bounded) until its first byte changes: it
    changes only if the view is the caller's memory."""
    import time

    q.put("holding")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while blob.data[0] == old and time.monotonic() < deadline:
        time.sleep(0.001)
    return int(blob.data[0])


def blob_write(blob: Blob) -> None:
    blob.data[0] = 1


def make_blob(size: int, fill: int) -> Blob:
    return Blob(bytearray([fill]) * size)


_kept: list[object] = []


def keep(obj: object) -> None:
    """Keep ``obj`` in this worker until its interpreter ends."""
    _kept.append(obj)


def clear_kept() -> None:
    _kept.clear()


class _Marker:
    """Writes a file when freed (its functions bound now: module globals may be gone then)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(
        self, _open: object = os.open, _close: object = os.close, _flags: int = os.O_WRONLY | os.O_CREAT
    ) -> None:
        _close(_open(self.path, _flags, 0o600))  # type: ignore[operator]


def keep_with_marker(obj: object, path: str) -> None:
    """Keep ``obj`` in a module global beside an object that marks ``path`` when freed."""
    _kept.append([_Marker(path), obj])
