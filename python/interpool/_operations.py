# mypy: disable-error-code="import-untyped, import-not-found"
"""The real operations ``python -m interpool check`` runs for the packages it knows (the
isolation set, requirements-isolation.txt): an import that works proves little when a
package's C code keeps process-wide state that only a call reaches (pyarrow's numpy bridge,
in its bundled ``libarrow_python.so``, failed only in the second worker that called it).

Each ``op_<module>`` runs in a worker (two at once, :func:`run_together`), checks its result
against values computed without the package, raises on a wrong one, and returns what it did
(a short phrase for the report). Packages are imported inside the functions."""

from __future__ import annotations

from . import _probe

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from typing import Any


def _expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, expected {want!r}")


def op_numpy() -> str:
    import numpy as np

    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    _expect("a @ a.T", (a @ a.T).tolist(), [[14.0, 38.0, 62.0], [38.0, 126.0, 214.0], [62.0, 214.0, 366.0]])
    _expect(
        "solve", np.linalg.solve(np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([3.0, 5.0])).round(9).tolist(), [0.8, 1.4]
    )
    return "matrix product, linalg.solve"


def op_pyarrow() -> str:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(np.arange(6, dtype=np.int64))  # the numpy bridge (libarrow_python)
    _expect("pa.array(ndarray)", array.to_pylist(), [0, 1, 2, 3, 4, 5])
    _expect("to_numpy", array.to_numpy().tolist(), [0, 1, 2, 3, 4, 5])
    _expect("compute.sum", pc.sum(array).as_py(), 15)
    table = pa.table({"x": np.linspace(0.0, 1.0, 3), "n": ["a", "b", "c"]})
    _expect("table column to numpy", table.column("x").to_numpy().tolist(), [0.0, 0.5, 1.0])
    return "pa.array(ndarray), to_numpy, compute.sum, pa.table"


def op_pandas() -> str:
    import importlib.util

    import pandas as pd

    frame = pd.DataFrame({"k": ["a", "b", "a", "c"], "v": [1.0, 2.0, 3.0, 4.0]})
    _expect("groupby sum", frame.groupby("k")["v"].sum().to_dict(), {"a": 4.0, "b": 2.0, "c": 4.0})
    if importlib.util.find_spec("pyarrow") is None:
        return "DataFrame groupby"
    import pyarrow as pa

    # pandas uses pyarrow when it is installed: its columns, and the numpy bridge
    arrow = pd.DataFrame(
        {"k": pd.array(["a", "b", "a"], dtype="string[pyarrow]"), "v": pd.array([1, 2, 3], dtype="int64[pyarrow]")}
    )
    _expect("pyarrow groupby", arrow.groupby("k")["v"].sum().to_dict(), {"a": 4, "b": 2})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _expect("Table.from_pandas + to_pandas", table.to_pandas()["v"].tolist(), [1.0, 2.0, 3.0, 4.0])
    return "DataFrame groupby, pyarrow-backed columns, Table.from_pandas + to_pandas"


def op_scipy() -> str:
    from scipy import linalg, optimize

    _expect("brentq", round(optimize.brentq(lambda x: x * x - 2.0, 0.0, 2.0), 9), 1.414213562)
    _expect("linalg.det", round(float(linalg.det([[2.0, 1.0], [1.0, 3.0]])), 9), 5.0)
    return "optimize.brentq, linalg.det"


def op_sklearn() -> str:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.0, 5.0, 7.0])
    _expect("LinearRegression", [round(float(model.coef_[0]), 9), round(float(model.intercept_), 9)], [2.0, 1.0])
    return "LinearRegression.fit"


def op_pydantic() -> str:
    import pydantic

    point = pydantic.create_model("Point", x=(int, ...), y=(float, 0.0))  # (a class here would trouble stubtest)
    _expect("validate", point.model_validate({"x": "3", "y": 1}).model_dump(), {"x": 3, "y": 1.0})
    try:
        point.model_validate({"x": "three"})
    except pydantic.ValidationError as exc:
        _expect("error count", exc.error_count(), 1)
    else:
        raise AssertionError("an invalid model validated")
    return "model validation"


def op_pydantic_core() -> str:
    return op_pydantic()


def op_orjson() -> str:
    import orjson

    value = {"a": [1, 2.5, "x", None, True]}
    _expect("dumps/loads", orjson.loads(orjson.dumps(value)), value)
    return "dumps/loads"


def op_msgspec() -> str:
    import msgspec

    value = {"a": [1, 2.5, "x", None, True]}
    _expect("json", msgspec.json.decode(msgspec.json.encode(value)), value)
    _expect("msgpack", msgspec.msgpack.decode(msgspec.msgpack.encode(value)), value)
    return "JSON and msgpack round trips"


def op_regex() -> str:
    import regex

    _expect("fuzzy", bool(regex.fullmatch(r"(?:interpool){e<=1}", "interpol")), True)
    _expect("\\p{L}", regex.findall(r"\p{Lu}", "aBcDé"), ["B", "D"])
    return "fuzzy match, Unicode properties"


def op_lxml() -> str:
    from lxml import etree

    root = etree.fromstring(b"<r><b y='1'>x</b><b y='2'>z</b></r>")
    _expect("xpath", root.xpath("//b[@y>1]/text()"), ["z"])
    return "XML parse, XPath"


def op_cryptography() -> str:
    import hashlib

    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"interpool")
    _expect("SHA-256", digest.finalize().hex(), hashlib.sha256(b"interpool").hexdigest())
    return "SHA-256"


def op_yaml() -> str:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    _expect("load", yaml.load("a: [1, 2]\nb: {c: x}\n", Loader=loader), {"a": [1, 2], "b": {"c": "x"}})
    return f"load with {loader.__name__}"


def op_rapidfuzz() -> str:
    from rapidfuzz import fuzz

    _expect("ratio", round(fuzz.ratio("interpool", "interpol"), 6), round(200 * 8 / 17, 6))
    return "fuzz.ratio"


def op_black() -> str:
    import black

    _expect("format_str", black.format_str("x=( 1, )", mode=black.Mode()), "x = (1,)\n")
    return "format_str"


def op_cytoolz() -> str:
    import cytoolz

    _expect("frequencies", cytoolz.frequencies("abca"), {"a": 2, "b": 1, "c": 1})
    return "frequencies"


def known(name: str) -> bool:
    """Whether check has a real operation for the module ``name``."""
    return callable(globals().get(f"op_{name}"))


def run_together(arrive: Any, go: Any, name: str) -> dict[str, Any]:
    """Wait at a rendezvous (``arrive``/``go``: interpool queues) so that every worker of the
    pool runs this at the same time, then run ``op_<name>`` while recording the extension
    modules refused on the way (``refused``: ``[module, message]`` pairs): ``ok``, ``what``
    or ``error``, and this interpreter's id."""
    import warnings
    from importlib import machinery

    from . import _interpool

    arrive.put(_interpool.interpreter_id())
    go.get(timeout=600)
    refused: list[tuple[str, str]] = []
    undo = [
        _probe._watch(loader, attr, refused)
        for loader in (machinery.ExtensionFileLoader, machinery.BuiltinImporter)
        for attr in ("create_module", "exec_module")
    ]
    result: dict[str, Any]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="NumPy was imported from a Python sub-interpreter")
            # not imported first: an operation imports what it needs as user code does (numpy
            # before pyarrow, which would otherwise import, and so isolate, numpy itself)
            result = {"ok": True, "what": globals()[f"op_{name}"]()}
    except BaseException as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for restore in undo:
            restore()
    result["refused"] = [list(pair) for pair in _probe._unique(refused, {}).items()]
    result["interp"] = _interpool.interpreter_id()
    return result
