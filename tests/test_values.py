"""Values crossing interpreters: every supported type round-trips exactly, natively
where possible, through the codec and through a worker."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator

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

    real = _pickling.dumps

    def counting(obj: object) -> bytes:
        calls.append(obj)
        return real(obj)

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
