"""How objects without a native form are pickled on their way to another interpreter.

The Rust codec sends built-in values natively and module-level functions and classes by
reference (module + name) without pickle; everything else comes here. Standard pickle also
sends functions and classes by reference, which the receiver can resolve only if it can
import them. Two kinds of object cannot be found that way and get special treatment:

* lambdas and nested functions/classes (``<lambda>`` / ``<locals>`` in ``__qualname__``),
* functions and classes defined in the running script's ``__main__``.

With cloudpickle installed (``pip install cloudpickle``) both are sent *by value*. Without
it, ``__main__`` objects are sent by reference to ``__mp_main__``, which the worker creates
by running the main script once under that name (see ``_main.py``); lambdas and closures
then fail with a :class:`NotShareableError` that says to install cloudpickle. Set
``INTERPOOL_CLOUDPICKLE=0`` to disable cloudpickle even when it is installed.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import types

from . import _main

TYPE_CHECKING = False  # not `from typing import`: typing costs workers ~7 ms at start-up

if TYPE_CHECKING:
    from typing import Any

PROTOCOL = pickle.HIGHEST_PROTOCOL

_cloudpickle: Any = None
_cloudpickle_checked = False


def cloudpickle() -> Any:
    """cloudpickle, imported on first use (it is optional, and heavy for a worker to import
    at start-up); ``None`` when missing or disabled with ``INTERPOOL_CLOUDPICKLE=0``."""
    global _cloudpickle, _cloudpickle_checked
    if not _cloudpickle_checked:
        _cloudpickle_checked = True
        if os.environ.get("INTERPOOL_CLOUDPICKLE", "1") != "0":
            try:
                _cloudpickle = importlib.import_module("cloudpickle")
            except ImportError:  # optional dependency
                pass
    return _cloudpickle


def describe(obj: object, call: bool = False) -> str:
    """``module.qualname`` of a function or class (of its type otherwise), for messages;
    with ``call``, written as a call: ``module.qualname()``."""
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{getattr(obj, '__module__', '?')}.{name}{'()' if call else ''}"


class _Pickler(pickle.Pickler):
    by_value = False

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is not types.FunctionType and not isinstance(obj, type):
            return NotImplemented
        qualname: str = getattr(obj, "__qualname__", "")
        local = "<lambda>" in qualname or "<locals>" in qualname
        in_main = getattr(obj, "__module__", None) == "__main__"
        if not (local or in_main):
            return NotImplemented
        self.by_value = True
        by_value = cloudpickle()
        if by_value is not None:
            return (pickle.loads, (by_value.dumps(obj, PROTOCOL),))
        if local:
            from ._errors import NotShareableError

            raise NotShareableError(
                f"{describe(obj)} is a lambda or a nested function/class, which cannot be sent to a "
                "worker interpreter by reference: install cloudpickle (pip install cloudpickle) to send "
                "it by value, or define it at module level"
            )
        return (_main.from_main, (qualname,))


# Functions and classes pickled by reference pickle to their (module, name) only, so their
# pickles can be reused. Keyed by the object itself (identity hash); bounded. By-value
# pickles are never cached (closures capture state).
_CACHEABLE: tuple[type, ...] = (types.FunctionType, types.BuiltinFunctionType, type)
_ref_cache: dict[Any, bytes] = {}
_REF_CACHE_MAX = 4096


# Pickle protocol 5 buffers (numpy arrays, pandas blocks, pyarrow buffers, PickleBuffer) of at
# least this many bytes go out of band by default when the codec can lend them: the receiver
# views the sender's memory instead of a copy. Smaller ones are cheaper to copy in band. The
# same as the codec's (OUT_OF_BAND_MIN, src/codec/encode.rs); a pool's ``zero_copy=N`` sets it.
OUT_OF_BAND_MIN = 256 * 1024


def dumps_value(obj: object, out_of_band: int | None) -> bytes | tuple[bytes, list[memoryview]]:
    """The codec's hook: ``obj`` pickled. With ``out_of_band`` (the smallest buffer to leave
    out, given where the codec can lend memory: see docs/design.md, "Out-of-band buffers"),
    ``(pickle, buffers)`` when some buffers were left out of the pickle, as contiguous byte
    views for the codec to lend."""
    if out_of_band is not None and not isinstance(obj, _CACHEABLE):
        buffers: list[memoryview] = []

        def keep(buffer: pickle.PickleBuffer) -> bool:  # False: out of band
            try:
                raw = buffer.raw()  # C or Fortran order, as one run of bytes
            except BufferError:  # not contiguous: pickle copies it in band
                return True
            if raw.nbytes < out_of_band:
                return True
            buffers.append(raw)
            return False

        buf = io.BytesIO()
        # Positional: a keyword call into an extension function from a worker crashes 3.12.0-3
        # at exit (gh-119213; see _setup._prime_keyword_parsers).
        _Pickler(buf, PROTOCOL, True, keep).dump(obj)
        return (buf.getvalue(), buffers) if buffers else buf.getvalue()
    return dumps(obj)


def dumps(obj: object) -> bytes:
    cacheable = isinstance(obj, _CACHEABLE)
    if cacheable:
        hit = _ref_cache.get(obj)
        if hit is not None:
            return hit
    buf = io.BytesIO()
    pickler = _Pickler(buf, PROTOCOL)
    pickler.dump(obj)
    data = buf.getvalue()
    if cacheable and not pickler.by_value:
        if len(_ref_cache) >= _REF_CACHE_MAX:
            _ref_cache.clear()
        _ref_cache[obj] = data
    return data


def _by_reference(obj: Any) -> bool:
    qualname = getattr(obj, "__qualname__", "")
    return (
        getattr(obj, "__closure__", None) is None
        and "<lambda>" not in qualname
        and "<locals>" not in qualname
        and getattr(obj, "__module__", None) != "__main__"
    )


# The other side of the cache: references resolve to the same object every time, so the
# import lookup is done once per function per interpreter.
_loads_cache: dict[bytes, Any] = {}


def loads(data: bytes, buffers: list[Any] | None = None) -> Any:
    if buffers is not None:  # out-of-band buffers (see dumps)
        return pickle.loads(data, buffers=buffers)
    hit = _loads_cache.get(data)
    if hit is not None:
        return hit
    obj = pickle.loads(data)
    if isinstance(obj, _CACHEABLE) and len(data) < 512 and _by_reference(obj):
        if len(_loads_cache) >= _REF_CACHE_MAX:
            _loads_cache.clear()
        _loads_cache[data] = obj
    return obj
