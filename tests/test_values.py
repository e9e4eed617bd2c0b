"""Values crossing interpreters: every supported type round-trips exactly, natively
where possible, through the codec and through a worker."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interpool
from interpool._interpool import roundtrip

import tasks

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4), max_leaves=8
)
values = st.recursive(
    scalars | st.binary().map(bytearray),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    ),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    """Equality that also checks exact types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[call-overload,index]
    return a == b


# INTERPOOL_STRESS=1 turns this into a longer fuzzing run of the codec.
FUZZ_EXAMPLES = 5000 if os.environ.get("INTERPOOL_STRESS", "") not in ("", "0") else 300


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_codec_roundtrip_preserves_values_and_types(value: object) -> None:
    assert same(roundtrip(value), value)


@pytest.fixture(scope="module")
def pool() -> Iterator[interpool.InterpreterPoolExecutor]:
    with interpool.InterpreterPoolExecutor(1) as pool:
        yield pool


@settings(max_examples=40, deadline=None)
@given(value=values)
def test_values_roundtrip_through_a_worker(pool: interpool.InterpreterPoolExecutor, value: object) -> None:
    assert same(pool.submit(tasks.roundtrip_in_worker, value).result(timeout=30), value)


@pytest.mark.parametrize(
    "value",
    [
        2**64,
        -(2**1000),
        10**5000,  # beyond the 4300-digit int(str) limit: travels as hex
        float("inf"),
        -0.0,
        "caf\u00e9 \U0001f600",
        "lone surrogate \udc80",  # no UTF-8 form: pickled
        b"\x00" * 1000,
        bytearray(b"mutable"),
        (),
        [],
        {},
        set(),
        frozenset(),
        {"nested": [1, (2, {3: frozenset({4})})], 5: None},
        [[[[[[[[[[[[1]]]]]]]]]]]],
    ],
    ids=lambda v: type(v).__name__,
)
def test_edge_values(value: object) -> None:
    assert same(roundtrip(value), value)


def test_nan_roundtrips() -> None:
    out = roundtrip(float("nan"))
    assert isinstance(out, float) and math.isnan(out)


def test_subclasses_and_other_objects_are_pickled_with_their_type() -> None:
    class MyInt(int):
        pass

    import collections
    import datetime
    import decimal

    for value in [
        collections.OrderedDict(a=1),
        datetime.date(2026, 11, 21),
        decimal.Decimal("1.5"),
        tasks.Multiplier(3).__class__,
        range(5),
        complex(1, 2),
    ]:
        out = roundtrip(value)
        assert out == value and type(out) is type(value)
    assert type(roundtrip(MyInt(3))) is MyInt


def test_cycles_keep_their_shape() -> None:
    a: list[object] = [1]
    a.append(a)
    out = roundtrip(a)
    assert isinstance(out, list) and out[1] is out
    d: dict[str, object] = {}
    d["self"] = [d]
    out_d = roundtrip(d)
    assert out_d["self"][0] is out_d
    t = ([],)
    t[0].append(t)  # a cycle through a tuple: the whole value is pickled instead
    out_t = roundtrip(t)
    assert type(out_t) is tuple and out_t[0][0] is out_t


def test_shared_sub_objects_arrive_shared() -> None:
    shared = [1, 2]
    pair = roundtrip([shared, shared, (shared,)])
    assert pair[0] is pair[1] is pair[2][0]
    assert pair == [[1, 2], [1, 2], ([1, 2],)]


def test_deep_nesting_is_native() -> None:
    value: object = 0
    for _ in range(1000):
        value = [value]
    assert roundtrip(value) == value


def test_extreme_nesting_round_trips_or_raises_recursion_error_never_crashes() -> None:
    depth = sys.getrecursionlimit() * 20
    value: object = 0
    for _ in range(depth):
        value = [value]
    try:
        out = roundtrip(value)
    except RecursionError:
        return
    for _ in range(depth):  # iterate: == on such a value would itself recurse
        assert isinstance(out, list) and len(out) == 1
        out = out[0]
    assert out == 0


def test_unpicklable_leaf_names_the_type() -> None:
    import threading

    with pytest.raises(interpool.NotShareableError, match="lock") as info:
        roundtrip([1, {"k": threading.Lock()}])
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value.__cause__, TypeError), "the pickling error is the cause"


def test_lists_and_dicts_are_converted_natively_not_pickled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Native conversion never calls the pickler for built-in containers."""
    calls: list[object] = []
    from interpool import _pickling

    real = _pickling.dumps_value

    def counting(obj: object, out_of_band: int | None) -> bytes | tuple[bytes, list[memoryview]]:
        calls.append(obj)
        return real(obj, out_of_band)

    interpool._interpool._configure(dumps=counting, loads=_pickling.loads)
    try:
        value = {"a": [1, 2.5, "x", b"y", (None, True)], "b": {1, 2}, 3: bytearray(b"z")}
        assert roundtrip(value) == value
        assert calls == []
        roundtrip([1, complex(1, 2)])
        assert calls == [complex(1, 2)]
    finally:
        interpool._interpool._configure(dumps=real, loads=_pickling.loads)


def test_strings_keep_their_width_and_ascii_flag() -> None:
    for text in ["", "plain ascii", "caf\xe9", "\u20ac uro", "\U0001f600 wide", "x" * 10_000]:
        back = roundtrip(text)
        assert back == text and type(back) is str
        assert back.isascii() == text.isascii()
    assert roundtrip({"k\xe9": "v", "k": "\u20ac"}) == {"k\xe9": "v", "k": "\u20ac"}


@pytest.mark.parametrize(
    "edge",
    [0, 1, 63, 64, 127, 128, 8191, 8192, 2**30 - 1, 2**30, 2**31, 2**48 - 1, 2**48, 2**62, 2**63 - 1, 2**63, 2**64],
)
def test_ints_at_every_size_boundary(edge: int) -> None:
    # Compact ints (one 30-bit digit) are read in place; varints of 1, 2, 3+ bytes and
    # values of 2**49 and more are written by different paths.
    values = [edge, -edge, edge - 1, -edge + 1, edge + 1, -edge - 1]
    assert same(roundtrip(values), values)
    assert same(roundtrip({v: v for v in values}), {v: v for v in values})


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, 2**21 + 1])
def test_lengths_at_every_varint_boundary(n: int) -> None:
    # Lengths and counts take 1, 2, 3 or more varint bytes.
    count = min(n, 16384)
    for value in ("a" * n, "\xe9" * n, b"b" * n, list(range(count)), {str(i): i for i in range(count)}):
        assert same(roundtrip(value), value)


def dict_cases() -> list[dict[object, object]]:
    shared: list[int] = [1]
    cyclic: dict[object, object] = {"a": 1, "b": "x"}
    cyclic["self"] = cyclic
    return [
        {f"k{i}": i for i in range(1000)},
        {i: i * 2 for i in range(1000)},
        {"caf\xe9": 1, "\u20ac": 2, "plain": 3},
        {"a": 1, "b": [2], "c": 3, "d": {"e": 4}},  # str keys, then a container
        {"a": shared, "b": shared, "c": 5},
        {"a": 1, 2: "b", (3,): "c"},  # str first, then other keys
        {1: "a", "b": 2},  # int first, then a str key
        {(1, 2): "tuple key", "x": 1},
        {"": 0, " " * 300: 1},
        cyclic,
    ]


@pytest.mark.parametrize("case", range(len(dict_cases())))
def test_dicts_are_rebuilt_like_pickle_rebuilds_them(case: int) -> None:
    """Same items, shared values and cycles kept, and the same table kind as pickle's (a dict
    with str keys gets CPython's compact str-keyed table, which `sys.getsizeof` shows)."""
    import pickle

    value = dict_cases()[case]
    back = roundtrip(value)
    assert list(back) == list(value)
    if "self" in value:
        assert back["self"] is back
    else:
        assert same(back, value)
    if "b" in value and value.get("a") is value.get("b"):
        assert back["a"] is back["b"]
    assert sys.getsizeof(back) == sys.getsizeof(pickle.loads(pickle.dumps(value)))


def test_str_keys_carry_their_hash_correctly_across_interpreters(pool: interpool.InterpreterPoolExecutor) -> None:
    # Dict keys travel with their cached hash: it must be the one the receiving
    # interpreter computes itself, or lookups with an equal str would miss.
    value: dict[object, object] = {f"key{i}": i for i in range(200)} | {"": -1, "x" * 500: -2, "caf\xe9": -3, 7: 7}
    hashes, lookups, _ = pool.submit(tasks.dict_key_check, value).result(timeout=30)
    assert hashes and lookups
    assert tasks.dict_key_check(roundtrip(value))[:2] == (True, True)


class _Mutator:
    """Pickling it runs `change` first: Python code that changes a container being sent."""

    def __init__(self, change: Callable[[], object]) -> None:
        self.change = change

    def __reduce__(self) -> tuple[type, tuple[int]]:
        self.change()
        return (int, (7,))


def test_containers_changed_while_being_sent_never_corrupt_the_value() -> None:
    # The header of a dict or set gives its size; code run while it is walked (here, a
    # child's pickling) may swap its entries without changing the size. Exactly the promised
    # number of items must still be written (before, the walk wrote one more: SystemError).
    d: dict[object, object] = {"a": 1}

    def swap_dict() -> None:
        del d["a"]
        d["new"] = 2

    d["m"] = _Mutator(swap_dict)
    d["z"] = 3
    back = roundtrip([d, "after"])
    assert len(back[0]) == 3 and back[1] == "after"

    s: set[object] = {1, 2}

    def swap_set() -> None:
        s.discard(1)
        s.add(99)

    s.add(_Mutator(swap_set))
    try:
        out = roundtrip([s, "after"])
    except RuntimeError as exc:
        assert "changed" in str(exc)
    else:
        assert len(out[0]) == 3 and out[1] == "after"

    grow: dict[object, object] = {}
    grow["m"] = _Mutator(lambda: grow.update(extra=1))
    grow["z"] = 1
    with pytest.raises(RuntimeError, match="dictionary changed size"):
        roundtrip(grow)
    items: list[object] = []
    items += [_Mutator(lambda: items.append(1)), 2]
    with pytest.raises(RuntimeError, match="list changed size"):
        roundtrip(items)


def test_large_bytes_are_lent_and_arrive_whole() -> None:
    # Large bytes cross by lending the sender's memory (one copy per hop), in both
    # directions, also when the worker that lent its reply ends right after it.
    big = bytes(range(256)) * 4096  # 1 MiB
    assert roundtrip(big) == big
    assert roundtrip([big, big, b"small"]) == [big, big, b"small"]
    for recycle in (None, 1):
        with interpool.InterpreterPoolExecutor(2, max_tasks_per_worker=recycle) as pool:
            results = [pool.submit(tasks.identity, big) for _ in range(6)]
            assert all(f.result() == big for f in results)
            assert pool.submit(tasks.identity, {"a": big}).result() == {"a": big}
