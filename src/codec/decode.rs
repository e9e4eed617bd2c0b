//! [`Value`] -> Python objects of the attached interpreter: the inverse of `encode.rs`, also
//! without recursion.
//!
//! Containers are created at their final size and filled in place; lists and tuples are
//! pre-filled with `None`, so no half-built object ever holds a null where Python code (the
//! garbage collector, a `__setstate__` run by unpickling) could see it. Strings are rebuilt
//! from their characters at the width they had, with no UTF-8 round trip.
use interpool_core::{Handle, Value};
use pyo3_ffi as ffi;

use super::format::{self as f, Corrupt, Reader};
use crate::handles;
use crate::py::{Owned, PyErr, PyResult, Python};
use crate::state::{State, not_configured};

/// A container being filled.
enum Build<'py> {
    /// Lists and tuples: slot `next` of `len` is filled next (`memo`: a tuple's memo slot).
    Seq {
        obj: Owned<'py>,
        next: isize,
        len: isize,
        memo: Option<usize>,
    },
    Dict {
        obj: Owned<'py>,
        remaining: usize,
        key: Option<Owned<'py>>,
    },
    Set {
        obj: Owned<'py>,
        remaining: usize,
    },
    /// Items collected in a list, made into a frozenset when complete.
    FrozenSet {
        items: Owned<'py>,
        next: isize,
        len: isize,
        memo: usize,
    },
}

pub struct Decoder<'v, 's, 'py> {
    py: Python<'py>,
    state: &'s State,
    reader: Reader<'v>,
    handles: &'v [Handle],
    /// Memoized objects by number; `None` while a tuple or frozenset is being built.
    memo: Vec<Option<Owned<'py>>>,
    stack: Vec<Build<'py>>,
    /// Scratch for the leading scalar items of a dict being read (key, value, key, ...).
    pairs: Vec<Owned<'py>>,
}

fn corrupt(py: Python<'_>) -> impl FnOnce(Corrupt) -> PyErr + '_ {
    move |_| py.system_error("interpool: a value could not be decoded (corrupt data); please report it")
}

#[cfg(not(Py_LIMITED_API))]
unsafe extern "C" {
    /// A dict with room for `minused` items, with a general (not str-keyed) table (exported
    /// by CPython 3.12-3.14).
    fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
}

#[cfg(private_dict_api)]
unsafe extern "C" {
    /// A dict of `length` items from arrays of keys and values (strides in pointers),
    /// presized, with a str-keyed table if every key is an exact `str`; the items are
    /// referenced, not stolen. Used by the interpreter's `BUILD_MAP`.
    fn _PyDict_FromItems(
        keys: *const *mut ffi::PyObject,
        keys_offset: ffi::Py_ssize_t,
        values: *const *mut ffi::PyObject,
        values_offset: ffi::Py_ssize_t,
        length: ffi::Py_ssize_t,
    ) -> *mut ffi::PyObject;

    /// `dict[key] = value`, stealing both references (also on failure).
    fn _PyDict_SetItem_Take2(dict: *mut ffi::PyObject, key: *mut ffi::PyObject, value: *mut ffi::PyObject) -> i32;
}

impl<'v, 's, 'py> Decoder<'v, 's, 'py> {
    pub fn new(py: Python<'py>, state: &'s State, value: &'v Value) -> Self {
        Decoder {
            py,
            state,
            reader: Reader::new(&value.bytes),
            handles: &value.handles,
            memo: Vec::new(),
            stack: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// The next object written by the encoder.
    pub fn next(&mut self) -> PyResult<Owned<'py>> {
        loop {
            let mut obj = if self.fill_top()? {
                let frame = self.stack.pop().expect("a frame");
                self.complete(frame)?
            } else {
                match self.item()? {
                    Some(obj) => obj,
                    None => continue, // a container was opened: read its first item
                }
            };
            // Hand the finished object to the innermost open container, completing as many
            // containers as it finishes.
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return Ok(obj);
                };
                if !add(top, obj)? {
                    break;
                }
                let frame = self.stack.pop().expect("a frame");
                obj = self.complete(frame)?;
            }
        }
    }

    /// The items of a call's argument tuple, if the next value is a tuple of at most `N`
    /// items: the items only, without the tuple (the worker passes them to the function by
    /// vectorcall). The tuple's memo number is reserved and stays empty: the encoder never
    /// refers back to a tuple from inside itself (such a cycle is pickled whole). `None`
    /// (nothing read): not such a tuple; decode it with [`Decoder::next`].
    pub fn next_args<const N: usize>(&mut self) -> PyResult<Option<([Option<Owned<'py>>; N], usize)>> {
        let mut probe = self.reader.clone();
        if probe.peek() != Some(f::TUPLE) || !self.stack.is_empty() {
            return Ok(None);
        }
        probe.skip(1);
        let n = probe.count(1).map_err(corrupt(self.py))?;
        if n > N {
            return Ok(None);
        }
        self.reader = probe;
        self.memo.push(None);
        let mut items: [Option<Owned<'py>>; N] = std::array::from_fn(|_| None);
        for item in items.iter_mut().take(n) {
            *item = Some(self.next()?);
        }
        Ok(Some((items, n)))
    }

    /// The fast path for runs of scalars: put the scalars that come next straight into the
    /// list, tuple or dict being filled. `true` when that container is then complete.
    fn fill_top(&mut self) -> PyResult<bool> {
        let py = self.py;
        let r = &mut self.reader;
        match self.stack.last_mut() {
            Some(Build::Seq { obj, next, len, memo }) => {
                while *next < *len {
                    let Some(item) = scalar(py, r)? else { return Ok(false) };
                    // SAFETY: a list or tuple of `len` items pre-filled with None (immortal:
                    // overwriting it needs no decref); SET_ITEM steals `item`.
                    unsafe {
                        if memo.is_some() {
                            ffi::PyTuple_SET_ITEM(obj.as_ptr(), *next, item.into_ptr());
                        } else {
                            ffi::PyList_SET_ITEM(obj.as_ptr(), *next, item.into_ptr());
                        }
                    }
                    *next += 1;
                }
                Ok(true)
            }
            Some(Build::Dict { obj, remaining, key }) => {
                while *remaining > 0 {
                    let k = match key.take() {
                        Some(k) => k,
                        None => match scalar(py, r)? {
                            Some(k) => k,
                            None => return Ok(false),
                        },
                    };
                    let Some(v) = scalar(py, r)? else {
                        *key = Some(k);
                        return Ok(false);
                    };
                    dict_set(obj, k, v)?;
                    *remaining -= 1;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A whole value: its one object.
    pub fn single(mut self) -> PyResult<Owned<'py>> {
        let obj = self.next()?;
        self.finish()?;
        Ok(obj)
    }

    /// Check that every object of the value was read (trailing bytes are corrupt).
    pub fn finish(self) -> PyResult<()> {
        if !self.reader.at_end() {
            return Err(corrupt(self.py)(Corrupt));
        }
        Ok(())
    }

    /// Read one item: a finished object, or `None` when a non-empty container was opened.
    fn item(&mut self) -> PyResult<Option<Owned<'py>>> {
        let py = self.py;
        let r = &mut self.reader;
        if let Some(obj) = scalar(py, r)? {
            return Ok(Some(obj));
        }
        let tag = r.byte().map_err(corrupt(py))?;
        let obj = match tag {
            f::BIGINT => big_int(py, r.blob().map_err(corrupt(py))?)?,
            f::BIGHEX => {
                let text = std::str::from_utf8(r.blob().map_err(corrupt(py))?).map_err(|_| corrupt(py)(Corrupt))?;
                let text = crate::py::cstring(py, text, "int")?;
                // SAFETY: attached; NUL-terminated hex literal; new reference or null.
                unsafe { py.own(ffi::PyLong_FromString(text.as_ptr(), std::ptr::null_mut(), 0))? }
            }
            f::BYTEARRAY => {
                let data = r.blob().map_err(corrupt(py))?;
                // SAFETY: attached; `data` is valid for its length; new reference or null.
                unsafe { py.own(ffi::PyByteArray_FromStringAndSize(data.as_ptr().cast(), py.ssize(data.len())?))? }
            }
            f::TUPLE | f::LIST => return self.sequence(tag == f::LIST),
            f::DICT => {
                let n = r.count(2).map_err(corrupt(py))?;
                return self.dict(n);
            }
            f::SET => {
                let n = r.count(1).map_err(corrupt(py))?;
                // SAFETY: attached; an empty set; new reference or null.
                let obj = unsafe { py.own(ffi::PySet_New(std::ptr::null_mut()))? };
                return Ok(self.opened(obj, n, |obj| Build::Set { obj, remaining: n }));
            }
            f::FROZENSET => {
                let n = r.count(1).map_err(corrupt(py))?;
                let memo = self.memo.len();
                self.memo.push(None);
                let items = filled_list(py, n)?;
                if n == 0 {
                    return self.frozenset(items, memo).map(Some);
                }
                self.stack.push(Build::FrozenSet { items, next: 0, len: py.ssize(n)?, memo });
                return Ok(None);
            }
            f::PICKLE => {
                let data = py.bytes(r.blob().map_err(corrupt(py))?)?;
                let loads = self.state.hooks.loads.get(py).ok_or_else(|| not_configured(py))?;
                let obj = loads.borrowed().call1(data.borrowed())?;
                self.memo.push(Some(obj.borrowed().to_owned()));
                obj
            }
            f::PICKLE_OOB => {
                let n = r.count(2).map_err(corrupt(py))?;
                let mut buffers = Vec::with_capacity(n);
                for _ in 0..n {
                    if r.byte().map_err(corrupt(py))? != f::BUFFER {
                        return Err(corrupt(py)(Corrupt));
                    }
                    let index = r.size().map_err(corrupt(py))?;
                    let Some(Handle::Memory(lease)) = self.handles.get(index) else {
                        return Err(corrupt(py)(Corrupt));
                    };
                    buffers.push(if py.is_main_interpreter() {
                        // A worker's reply: its memory must not outlive this read, so copy
                        // (once, into a writable buffer: the result is the caller's to change).
                        // SAFETY: a lease keeps `len` bytes at `ptr` valid while the value,
                        // which holds it, is decoded.
                        let data = unsafe { std::slice::from_raw_parts(lease.as_ptr(), lease.len()) };
                        // SAFETY: attached; copies `data`; new reference or null.
                        unsafe {
                            py.own(ffi::PyByteArray_FromStringAndSize(data.as_ptr().cast(), py.ssize(data.len())?))?
                        }
                    } else {
                        // The main interpreter's memory, which outlives every worker: viewed in
                        // place, read-only (zero copies).
                        handles::wrap_read_only(py, self.state, lease.clone())?
                    });
                }
                if r.byte().map_err(corrupt(py))? != f::PICKLE {
                    return Err(corrupt(py)(Corrupt));
                }
                let data = py.bytes(r.blob().map_err(corrupt(py))?)?;
                let buffers = py.list(buffers)?;
                let loads = self.state.hooks.loads.get(py).ok_or_else(|| not_configured(py))?;
                let obj = loads.borrowed().call_args(&[data.borrowed(), buffers.borrowed()])?;
                self.memo.push(Some(obj.borrowed().to_owned()));
                obj
            }
            f::GLOBAL => self.state.globals.resolve(py, r.blob().map_err(corrupt(py))?)?,
            f::QUEUE | f::BUFFER | f::CONSTANT | f::LENT_BYTES => {
                let index = r.size().map_err(corrupt(py))?;
                match (tag, self.handles.get(index)) {
                    (f::QUEUE, Some(Handle::Queue(queue))) => handles::wrap_queue(py, self.state, queue.clone())?,
                    (f::BUFFER, Some(Handle::Memory(lease))) => handles::wrap_buffer(py, self.state, lease.clone())?,
                    (f::CONSTANT, Some(Handle::Constant(constant))) => super::constant::get(py, self.state, constant)?,
                    (f::LENT_BYTES, Some(Handle::Memory(lease))) => {
                        // SAFETY: a lease keeps `len` bytes at `ptr` valid and unchanged (lent
                        // `bytes` are immutable) while the value, which holds it, is decoded.
                        py.bytes(unsafe { std::slice::from_raw_parts(lease.as_ptr(), lease.len()) })?
                    }
                    _ => return Err(corrupt(py)(Corrupt)),
                }
            }
            f::MEMO => {
                let index = r.size().map_err(corrupt(py))?;
                match self.memo.get(index) {
                    Some(Some(obj)) => obj.borrowed().to_owned(),
                    _ => return Err(corrupt(py)(Corrupt)),
                }
            }
            _ => return Err(corrupt(py)(Corrupt)),
        };
        Ok(Some(obj))
    }

    /// Memoize a new mutable container; push its frame unless it is empty.
    fn opened(
        &mut self,
        obj: Owned<'py>,
        n: usize,
        build: impl FnOnce(Owned<'py>) -> Build<'py>,
    ) -> Option<Owned<'py>> {
        self.memo.push(Some(obj.borrowed().to_owned()));
        if n == 0 {
            return Some(obj);
        }
        self.stack.push(build(obj));
        None
    }

    /// A dict of `n` items, made as `pickle` and the interpreter make dicts: one whose keys
    /// are `str` (judged by the first) gets CPython's compact str-keyed table (smaller, faster
    /// lookups), others a general table, presized (CPython's only presizing call,
    /// `_PyDict_NewPresized`, always makes a general table). Where CPython exports
    /// `_PyDict_FromItems`, a str-keyed dict is made presized by [`Decoder::str_dict`]; else it
    /// starts empty and grows, as `pickle`'s do.
    fn dict(&mut self, n: usize) -> PyResult<Option<Owned<'py>>> {
        let py = self.py;
        let str_keys = matches!(self.reader.peek(), Some(f::ASCII | f::ASCII_KEY | f::STR1 | f::STR2 | f::STR4));
        #[cfg(private_dict_api)]
        if str_keys {
            return self.str_dict(n);
        }
        // SAFETY: attached; new reference or null.
        let obj = unsafe { py.own(if str_keys { ffi::PyDict_New() } else { _PyDict_NewPresized(py.ssize(n)?) })? };
        Ok(self.opened(obj, n, |obj| Build::Dict { obj, remaining: n, key: None }))
    }

    /// A str-keyed dict: its leading scalar items are read first and the dict is made from
    /// them in one call; when every item is a scalar (the common case) it is then complete,
    /// else a frame takes the rest. Scalars have no memo numbers, so memoizing the dict after
    /// reading them keeps the numbering, and nothing can refer to the dict before its first
    /// non-scalar item.
    #[cfg(private_dict_api)]
    fn str_dict(&mut self, n: usize) -> PyResult<Option<Owned<'py>>> {
        let py = self.py;
        let memo = self.memo.len();
        self.memo.push(None);
        let mut pairs = std::mem::take(&mut self.pairs);
        let items = n.saturating_mul(2);
        while pairs.len() < items {
            match scalar(py, &mut self.reader)? {
                Some(item) => pairs.push(item),
                None => break,
            }
        }
        let key = if pairs.len() % 2 == 1 { pairs.pop() } else { None };
        let filled = pairs.len() / 2;
        let keys = Owned::array(&pairs);
        // SAFETY: attached; `keys` holds `filled` keys interleaved with their values (offset
        // 2 each; with none, nothing is read); new reference or null.
        let made = unsafe { py.own(_PyDict_FromItems(keys, 2, keys.wrapping_add(1), 2, py.ssize(filled)?)) };
        pairs.clear();
        self.pairs = pairs;
        let obj = made?;
        self.memo[memo] = Some(obj.borrowed().to_owned());
        if filled == n {
            return Ok(Some(obj));
        }
        self.stack.push(Build::Dict { obj, remaining: n - filled, key });
        Ok(None)
    }

    fn sequence(&mut self, list: bool) -> PyResult<Option<Owned<'py>>> {
        let py = self.py;
        let n = self.reader.count(1).map_err(corrupt(py))?;
        let len = py.ssize(n)?;
        let obj = if list { filled_list(py, n)? } else { filled_tuple(py, n)? };
        if list {
            return Ok(self.opened(obj, n, |obj| Build::Seq { obj, next: 0, len, memo: None }));
        }
        if n == 0 {
            self.memo.push(Some(obj.borrowed().to_owned()));
            return Ok(Some(obj));
        }
        self.memo.push(None);
        self.stack.push(Build::Seq { obj, next: 0, len, memo: Some(self.memo.len() - 1) });
        Ok(None)
    }

    fn frozenset(&mut self, items: Owned<'py>, memo: usize) -> PyResult<Owned<'py>> {
        // SAFETY: attached; `items` is a list; new reference or null.
        let obj = unsafe { self.py.own(ffi::PyFrozenSet_New(items.as_ptr()))? };
        self.memo[memo] = Some(obj.borrowed().to_owned());
        Ok(obj)
    }

    /// A frame received its last item: its object is finished.
    fn complete(&mut self, frame: Build<'py>) -> PyResult<Owned<'py>> {
        match frame {
            Build::Seq { obj, memo, .. } => {
                if let Some(memo) = memo {
                    self.memo[memo] = Some(obj.borrowed().to_owned());
                }
                Ok(obj)
            }
            Build::Dict { obj, .. } | Build::Set { obj, .. } => Ok(obj),
            Build::FrozenSet { items, memo, .. } => self.frozenset(items, memo),
        }
    }
}

/// The next item if it is a scalar (consumed), else `None` (nothing consumed). Small ints and
/// ASCII strings, the items of most containers, are read here, inline in the walk; the rest by
/// [`other_scalar`].
#[inline(always)]
fn scalar<'py>(py: Python<'py>, r: &mut Reader<'_>) -> PyResult<Option<Owned<'py>>> {
    if let Some(v) = r.tagged4(f::INT4) {
        return Ok(Some(py.int(i64::from(v as i32))?));
    }
    match r.peek() {
        Some(f::ASCII) => {
            r.skip(1);
            let data = r.blob().map_err(corrupt(py))?;
            Ok(Some(ascii(py, data, None)?))
        }
        Some(f::ASCII_KEY) => {
            r.skip(1);
            let n = r.size().map_err(corrupt(py))?;
            let hash = r.take(8).map_err(corrupt(py))?;
            let hash = ffi::Py_hash_t::from_le_bytes(hash.try_into().map_err(|_| corrupt(py)(Corrupt))?);
            let data = r.take(n).map_err(corrupt(py))?;
            Ok(Some(ascii(py, data, Some(hash))?))
        }
        _ => other_scalar(py, r),
    }
}

#[inline(never)]
fn other_scalar<'py>(py: Python<'py>, r: &mut Reader<'_>) -> PyResult<Option<Owned<'py>>> {
    let Some(tag) = r.peek() else { return Err(corrupt(py)(Corrupt)) };
    let obj = match tag {
        f::INT => {
            r.skip(1);
            py.int(f::unzigzag(r.varint().map_err(corrupt(py))?))?
        }
        f::STR1 | f::STR2 | f::STR4 => {
            r.skip(1);
            let width = match tag {
                f::STR1 => 1,
                f::STR2 => 2,
                _ => 4,
            };
            let chars = r.size().map_err(corrupt(py))?;
            let data = r.take(chars.checked_mul(width).ok_or(Corrupt).map_err(corrupt(py))?).map_err(corrupt(py))?;
            // SAFETY: attached; `data` holds `chars` characters of `width` bytes (as written
            // from a str of that kind); new reference or null.
            unsafe { py.own(ffi::PyUnicode_FromKindAndData(width as i32, data.as_ptr().cast(), py.ssize(chars)?))? }
        }
        f::FLOAT => {
            r.skip(1);
            py.float(r.f64().map_err(corrupt(py))?)?
        }
        f::NONE => {
            r.skip(1);
            py.none()
        }
        f::TRUE | f::FALSE => {
            r.skip(1);
            py.bool(tag == f::TRUE)
        }
        f::BYTES => {
            r.skip(1);
            py.bytes(r.blob().map_err(corrupt(py))?)?
        }
        _ => return Ok(None),
    };
    Ok(Some(obj))
}

/// A str of ASCII characters (as the encoder found them), made without finding its widest
/// character again (one check that the bytes are ASCII), with the hash the sender's str had
/// cached, if given (`ASCII_KEY`).
#[inline]
fn ascii<'py>(py: Python<'py>, data: &[u8], hash: Option<ffi::Py_hash_t>) -> PyResult<Owned<'py>> {
    // A str marked ASCII must be: CPython hands its characters out as UTF-8 unchecked.
    if !data.is_ascii() {
        return Err(corrupt(py)(Corrupt));
    }
    // SAFETY: attached; a new, compact ASCII str of `data.len()` characters (for 0, the
    // immortal empty str), or null.
    let obj = unsafe { py.own(ffi::PyUnicode_New(py.ssize(data.len())?, 127))? };
    // SAFETY: the fresh str has room for `data.len()` 1-byte characters (plus its NUL), and
    // nobody else sees it before it is filled; the characters are ASCII (encoder's check).
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ffi::PyUnicode_DATA(obj.as_ptr()).cast(), data.len()) };
    // `PyUnicode_New(0, ..)` returns the shared empty-string singleton: never write to it.
    if let Some(hash) = hash
        && !data.is_empty()
    {
        // SAFETY: a fresh str that nobody else sees yet: its cached hash (-1, none) may be
        // set, to what CPython computed for the same characters in this process (one hash
        // secret for all interpreters, `format.rs`).
        unsafe { (*obj.as_ptr().cast::<ffi::PyASCIIObject>()).hash = hash };
    }
    Ok(obj)
}

/// Give `item` to the container being built; `true` when it is then complete.
fn add<'py>(frame: &mut Build<'py>, item: Owned<'py>) -> PyResult<bool> {
    match frame {
        Build::Seq { obj, next, len, memo } => {
            // SAFETY: a list or tuple of `len` items (pre-filled with None, which is
            // immortal, so overwriting it needs no decref); SET_ITEM steals `item`.
            unsafe {
                if memo.is_some() {
                    ffi::PyTuple_SET_ITEM(obj.as_ptr(), *next, item.into_ptr()); // tuples have a memo slot
                } else {
                    ffi::PyList_SET_ITEM(obj.as_ptr(), *next, item.into_ptr());
                }
            }
            *next += 1;
            Ok(*next == *len)
        }
        Build::FrozenSet { items, next, len, .. } => {
            // SAFETY: a list of `len` items pre-filled with None; SET_ITEM steals `item`.
            unsafe { ffi::PyList_SET_ITEM(items.as_ptr(), *next, item.into_ptr()) };
            *next += 1;
            Ok(*next == *len)
        }
        Build::Dict { obj, remaining, key } => {
            let Some(k) = key.take() else {
                *key = Some(item);
                return Ok(false);
            };
            dict_set(obj, k, item)?;
            *remaining -= 1;
            Ok(*remaining == 0)
        }
        Build::Set { obj, remaining } => {
            // SAFETY: attached; a set; takes its own reference.
            crate::py::check(unsafe { ffi::PySet_Add(obj.as_ptr(), item.as_ptr()) })?;
            *remaining -= 1;
            Ok(*remaining == 0)
        }
    }
}

/// `dict[k] = v` for a dict being built, consuming both references.
#[inline]
fn dict_set<'py>(dict: &Owned<'py>, k: Owned<'py>, v: Owned<'py>) -> PyResult<()> {
    #[cfg(private_dict_api)]
    // SAFETY: attached; a dict; steals both references, also on failure.
    let status = unsafe { _PyDict_SetItem_Take2(dict.as_ptr(), k.into_ptr(), v.into_ptr()) };
    #[cfg(not(private_dict_api))]
    // SAFETY: attached; a dict; takes its own references (ours are released on return).
    let status = unsafe { ffi::PyDict_SetItem(dict.as_ptr(), k.as_ptr(), v.as_ptr()) };
    crate::py::check(status)
}

/// A list of `n` Nones.
fn filled_list(py: Python<'_>, n: usize) -> PyResult<Owned<'_>> {
    // SAFETY: attached; new reference or null.
    let list = unsafe { py.own(ffi::PyList_New(py.ssize(n)?))? };
    for i in 0..py.ssize(n)? {
        // SAFETY: a fresh list of length n; None is immortal (no reference to give).
        unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i, ffi::Py_None()) };
    }
    Ok(list)
}

/// A tuple of `n` Nones, filled in place before anyone else sees it.
fn filled_tuple(py: Python<'_>, n: usize) -> PyResult<Owned<'_>> {
    // SAFETY: attached; new reference or null.
    let tuple = unsafe { py.own(ffi::PyTuple_New(py.ssize(n)?))? };
    for i in 0..py.ssize(n)? {
        // SAFETY: a fresh tuple of length n; None is immortal (no reference to give).
        unsafe { ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, ffi::Py_None()) };
    }
    Ok(tuple)
}

fn big_int<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Owned<'py>> {
    #[cfg(Py_3_13)]
    {
        // SAFETY: attached; `data` holds a little-endian two's complement int.
        unsafe {
            py.own(ffi::PyLong_FromNativeBytes(data.as_ptr().cast(), data.len(), ffi::Py_ASNATIVEBYTES_LITTLE_ENDIAN))
        }
    }
    #[cfg(not(Py_3_13))]
    {
        let _ = data;
        Err(py.system_error("interpool: BIGINT is not written on Python 3.12"))
    }
}
