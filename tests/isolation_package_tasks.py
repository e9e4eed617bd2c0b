"""Task functions of test_isolation_packages.py (workers import them by name).

Each ``op_*`` function does a real operation with one package and returns plain values (and
facts about which implementation ran), so that a worker's result can be compared with the
main interpreter's. Packages are imported inside the functions: this module must import
where any of them is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interpool import Queue, SharedBuffer, _interpool


def together(arrive: Queue[int], go: Queue[None], op: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    """Hold this worker at a rendezvous until the owner has seen every task arrive (so every
    worker of the pool is busy at once, each with one task), then run ``op`` concurrently
    with the others. Returns this interpreter's id and the result."""
    arrive.put(_interpool.interpreter_id())
    go.get(timeout=120)
    return _interpool.interpreter_id(), op(*args)


def op_pandas() -> dict[str, Any]:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "city": ["Oslo", "Lima", "Oslo", "Pune", "Lima", "Oslo", "Pune", "Lima"] * 250,
            "year": list(range(2000, 2008)) * 250,
            "value": [float((i * 37) % 101) / 7 for i in range(2000)],
        }
    )
    grouped = frame.groupby("city").agg(total=("value", "sum"), mean=("value", "mean"), n=("year", "count"))
    by_two = frame.groupby(["city", "year"])["value"].max()
    return {
        "grouped": {city: [float(row["total"]), float(row["mean"]), int(row["n"])] for city, row in grouped.iterrows()},
        "by_two": {f"{city}/{year}": float(v) for (city, year), v in by_two.items()},
    }


def op_pyarrow() -> dict[str, Any]:
    """numpy to Arrow and back: pyarrow's numpy bridge, in its bundled libarrow_python.so."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ints = pa.array(np.arange(12, dtype=np.int64) * 3)
    table = pa.table({"ints": ints, "floats": pa.array(np.linspace(0.0, 1.0, 12)), "words": ["x", "yz"] * 6})
    floats = table.column("floats").to_numpy()
    return {
        "ints": ints.to_pylist(),
        "sum": pc.sum(ints).as_py(),
        "floats": [round(float(v), 9) for v in floats],
        "schema": [(field.name, str(field.type)) for field in table.schema],
        "filtered": table.filter(pc.greater(table["ints"], 20)).num_rows,
    }


def op_pandas_pyarrow() -> dict[str, Any]:
    """pandas with pyarrow-backed columns, and a DataFrame to an Arrow table and back."""
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame(
        {
            "city": pd.array(
                ["Oslo", "Lima", "Oslo", "Pune", "Lima", "Oslo", "Pune", "Lima"] * 25, dtype="string[pyarrow]"
            ),
            "value": pd.array([float((i * 37) % 101) / 7 for i in range(200)], dtype="float64[pyarrow]"),
            "year": pd.Series(list(range(2000, 2008)) * 25, dtype="int64[pyarrow]"),
        }
    )
    grouped = frame.groupby("city")["value"].sum()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # use_threads=True (the default): Arrow's pool threads call back into Python through the
    # copy's PyGILState_Ensure, which attaches them to this worker (src/gilstate.rs)
    back = table.to_pandas()
    numeric = pa.Table.from_pandas(pd.DataFrame({"x": [1.5, 2.5, None], "n": [1, 2, 3]}), preserve_index=False)
    return {
        "dtypes": [str(t) for t in frame.dtypes],
        "grouped": {city: round(float(v), 9) for city, v in grouped.items()},
        "schema": [(field.name, str(field.type)) for field in table.schema],
        "back": {column: [str(v) for v in back[column].head(8)] for column in back.columns},
        "numeric": {k: [None if v != v else v for v in vs] for k, vs in numeric.to_pandas().to_dict("list").items()},
    }


def op_scipy() -> dict[str, Any]:
    import numpy as np
    from scipy import optimize

    result = optimize.minimize(
        optimize.rosen, np.array([1.3, 0.7, 0.8, 1.9, 1.2]), method="BFGS", jac=optimize.rosen_der
    )
    root = optimize.brentq(lambda x: x**3 - 2 * x - 5, 2, 3)
    return {"x": result.x.tolist(), "fun": float(result.fun), "success": bool(result.success), "root": root}


def op_pydantic() -> dict[str, Any]:
    from datetime import date

    import pydantic

    class Item(pydantic.BaseModel):
        name: str
        price: float = pydantic.Field(gt=0)
        tags: list[str] = []

    class Order(pydantic.BaseModel):
        id: int
        day: date
        items: list[Item]

        @pydantic.field_validator("items")
        @classmethod
        def not_empty(cls, items: list[Item]) -> list[Item]:
            if not items:
                raise ValueError("an order has items")
            return items

    order = Order.model_validate(
        {
            "id": "17",
            "day": "2024-02-29",
            "items": [{"name": "pen", "price": "1.5", "tags": ["a"]}, {"name": "ink", "price": 3}],
        }
    )
    try:
        Order.model_validate({"id": "x", "day": "2024-02-30", "items": [{"name": "pen", "price": -1}]})
    except pydantic.ValidationError as exc:
        errors = [(".".join(map(str, e["loc"])), e["type"]) for e in exc.errors()]
    import pydantic_core

    return {
        "dump": order.model_dump(mode="json"),
        "json": order.model_dump_json(),
        "errors": errors,
        "core": type(pydantic_core.SchemaValidator).__module__,
    }


def op_orjson() -> dict[str, Any]:
    import datetime

    import orjson

    value = {
        "ints": list(range(50)),
        "floats": [i / 3 for i in range(20)],
        "text": "gr\u00fc\u00dfe \U0001f600",
        "when": datetime.datetime(2024, 5, 17, 12, 30, 5, tzinfo=datetime.UTC),
        "nested": {"a": [None, True, False, {"b": "c"}]},
    }
    encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    return {"encoded": encoded, "decoded": orjson.loads(encoded)}


def op_msgspec() -> dict[str, Any]:
    import msgspec

    class Point(msgspec.Struct):
        x: int
        y: int
        label: str = ""

    points = [Point(i, i * i, f"p{i}") for i in range(100)]
    as_json = msgspec.json.encode(points)
    as_msgpack = msgspec.msgpack.encode(points)
    back = msgspec.json.decode(as_json, type=list[Point])
    try:
        msgspec.json.decode(b'[{"x": "one", "y": 2}]', type=list[Point])
    except msgspec.ValidationError as exc:
        error = str(exc)
    return {
        "json": as_json,
        "msgpack": as_msgpack,
        "roundtrip": back == points,
        "from_msgpack": [msgspec.structs.astuple(p) for p in msgspec.msgpack.decode(as_msgpack, type=list[Point])],
        "error": error,
    }


def op_regex() -> dict[str, Any]:
    import regex

    text = "Zo\u00eb met \u00c9mile in Z\u00fcrich; colour COLOR colr kolor. Das Stra\u00dfe-Fest, 2024-05-17."
    return {
        # what the stdlib's re cannot do: Unicode properties, fuzzy matching, sets, \X
        "upper_words": regex.findall(r"\b\p{Lu}\p{L}*", text),
        "fuzzy": regex.findall(r"(?:colou?r){e<=1}", text, flags=regex.IGNORECASE),
        "letters_not_vowels": len(regex.findall(r"[[a-z]--[aeiou]]", text)),
        "graphemes": len(regex.findall(r"\X", "e\u0301a\u0308")),
        "dates": regex.sub(r"(?<y>\d{4})-(?<m>\d\d)-(?<d>\d\d)", r"\g<d>.\g<m>.\g<y>", text),
    }


def op_lxml() -> dict[str, Any]:
    from lxml import etree

    doc = etree.fromstring(
        b"<library><book year='1954'><title>The Fellowship</title><price>12.5</price></book>"
        b"<book year='1937'><title>The Hobbit</title><price>8</price></book>"
        b"<book year='1965'><title>Dune</title><price>9.99</price></book></library>"
    )
    xslt = etree.XSLT(
        etree.fromstring(
            b"<xsl:stylesheet version='1.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform'>"
            b"<xsl:template match='/'><titles><xsl:for-each select='//book'><xsl:sort select='@year'/>"
            b"<t><xsl:value-of select='title'/></t></xsl:for-each></titles></xsl:template></xsl:stylesheet>"
        )
    )
    return {
        "old": [str(t) for t in doc.xpath("//book[@year < 1960]/title/text()")],  # plain str: no lxml in main
        "total": doc.xpath("sum(//price)"),
        "sorted": etree.tostring(xslt(doc)).decode(),
        "canonical": etree.tostring(doc, method="c14n"),
    }


def op_cryptography() -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    data = b"interpool isolates cryptography's Rust extension" * 1000
    digests = {}
    for algorithm in (hashes.SHA256(), hashes.SHA3_512(), hashes.BLAKE2b(64)):
        h = hashes.Hash(algorithm)
        h.update(data)
        digests[algorithm.name] = h.finalize().hex()
    mac = hmac.HMAC(b"key", hashes.SHA256())
    mac.update(data)
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"salt", iterations=1000)
    return {"digests": digests, "hmac": mac.finalize().hex(), "pbkdf2": kdf.derive(b"password").hex()}


YAML_DOC = """
pool:
  workers: 2
  isolate: [numpy, pandas]
  limits: {memory: 1.5e9, timeout: 30}
anchors:
  base: &base {retries: 3, backoff: 0.5}
  job: {<<: *base, name: nightly}
when: 2024-05-17
multi: |
  line one
  line two
"""


def op_yaml() -> dict[str, Any]:
    import yaml

    loader = yaml.CSafeLoader(YAML_DOC)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return {
        "data": data,
        "with_libyaml": yaml.__with_libyaml__,
        "c_parser": isinstance(loader, yaml._yaml.CParser),
        "dumped": yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=True),
    }


def op_rapidfuzz() -> dict[str, Any]:
    from rapidfuzz import distance, fuzz, process

    choices = ["New York Yankees", "Boston Red Sox", "New York Mets", "Chicago Cubs", "Atlanta Braves"] * 20
    return {
        "ratio": fuzz.ratio("this is a test", "this is a test!"),
        "token_sort": fuzz.token_sort_ratio("fuzzy wuzzy was a bear", "wuzzy fuzzy was a bear"),
        "extract": process.extract("new york", choices, scorer=fuzz.WRatio, limit=3),
        "levenshtein": distance.Levenshtein.distance("kitten", "sitting"),
        # which implementation ran: rapidfuzz picks fuzz_cpp(_avx2) and falls back to fuzz_py
        # (pure Python, 6-69x slower) when its C++ extensions do not import
        "fuzz_impl": fuzz.ratio.__module__,
        "process_impl": process.extract.__module__,
        "distance_impl": distance.Levenshtein.distance.__module__,
    }


BLACK_SOURCE = """
import os
def f(a,b = 1, *args, ** kwargs) :
  return {'a':a,"b" : b, 'rest':[x for x in args if x]}
class  C( object ):
    x = [1,2,
     3]
"""


def op_black() -> dict[str, Any]:
    import black

    return {
        "formatted": black.format_str(BLACK_SOURCE, mode=black.Mode(line_length=88)),
        # mypyc-compiled: black's modules are .so files and black says so
        "compiled": black.COMPILED,
        "file": black.__file__.rpartition(".")[2],
        "linegen_file": __import__("black.linegen").linegen.__file__.rpartition(".")[2],
    }


# ---------------------------------------------------------------- numpy


def np_compute(a: Any, b: Any) -> dict[str, Any]:
    """Arrays in, arrays out."""
    import numpy as np

    return {
        "matmul": a @ b,
        "solve": np.linalg.solve(a @ a.T + np.eye(len(a)), a[:, 0]),
        "fft": np.fft.rfft(a[0]),
        "cumsum": np.cumsum(b, axis=1),
        "sorted": np.sort(a, axis=None)[::7],
        "type": type(a).__module__,
    }


def np_fill(buf: SharedBuffer, rows: int, cols: int, parts: list[int], nparts: int) -> list[int]:
    """Fill row blocks ``parts`` of a (rows, cols) float64 array that lives in ``buf``."""
    import numpy as np

    array = np.frombuffer(memoryview(buf), dtype=np.float64).reshape(rows, cols)
    step = rows // nparts
    for part in parts:
        block = array[part * step : (part + 1) * step]
        block[:] = expected_block(part * step, (part + 1) * step, cols)
    return parts


def expected_block(start: int, stop: int, cols: int) -> Any:
    import numpy as np

    i = np.arange(start, stop, dtype=np.float64)[:, None]
    j = np.arange(cols, dtype=np.float64)[None, :]
    return np.sin(i * 0.01) * np.cos(j * 0.02) + i / (j + 1)


def op_several(names: list[str]) -> dict[str, Any]:
    """The ``op_<name>`` operations named, in one interpreter (for ``isolate="auto"``)."""
    return {name: globals()[f"op_{name}"]() for name in names}


def op_numpy() -> dict[str, Any]:
    import numpy as np

    a = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    return {"sum": float((a @ a.T).sum()), "svd": [round(float(v), 6) for v in np.linalg.svd(a[:8, :8])[1]]}


def op_cytoolz() -> dict[str, Any]:
    import cytoolz

    words = "the quick fox and the lazy dog the end".split() * 5
    return {
        "frequencies": dict(sorted(cytoolz.frequencies(words).items())),
        "compiled": type(cytoolz.frequencies).__module__.startswith("cytoolz"),
    }


def run_op(name: str) -> Any:
    """``op_<name>()`` (scripts/soak.py sends the name)."""
    return globals()[f"op_{name}"]()


def arrow_to_pandas_on_arrows_threads(n: int) -> float:
    """An Arrow table of 8 columns to pandas with Arrow's thread pool (the default), whose
    threads call back into Python to make the result's numpy arrays."""
    import numpy as np
    import pyarrow as pa

    table = pa.table({f"c{i}": np.arange(n, dtype=np.float64) + i for i in range(8)})
    return float(table.to_pandas().to_numpy().sum())
