//! Python objects -> [`Value`]: one pass over the object graph, without recursion.
//!
//! Exact built-in types are written natively; interpool's Queue, SharedBuffer and Constant
//! become handles; functions and classes that can be found by name go by reference; anything else
//! is pickled by the hook the package configured. Containers and pickled objects are
//! memoized by identity, so a shared sub-object is written once and arrives shared (the cost
//! is linear in the object graph, whatever its sharing), and cycles through lists, dicts and
//! sets are kept. A cycle through a tuple or frozenset (which exists only once complete on
//! the other side) makes the encoder pickle that whole value instead.
//!
//! Large `bytes` (at least [`LEND_MIN`]) are *lent* instead of copied when the encoder may:
//! the value carries a lease on the object's memory (a pin, released in the object's own
//! interpreter when the value is dropped, see `pin.rs`), and the receiver copies straight
//! from it, which makes one copy per hop instead of two. That is safe when the lending
//! interpreter outlives every reader: the main interpreter, or a worker for its task's reply,
//! which the owner reads at once (an ending worker waits for its leases to come back, and is
//! leaked rather than ended if they do not). Other values copy.
//!
//! The graph is walked with an explicit stack, so nesting depth is bounded only by memory.
//! Every object on the stack is held by a strong reference: pickling a leaf runs Python code,
//! which may mutate the containers being walked; a list or dict that changes size meanwhile
//! raises `RuntimeError`, as in `pickle`.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use interpool_core::{Handle, Value};
use pyo3_ffi as ffi;

use super::constant::ConstantObject;
use super::format::{self as f, Writer};
use super::layout;
use crate::handles::{self, BufferObject, QueueObject};
use crate::object::Instance;
use crate::pin::Pin;
use crate::py::{Borrowed, Owned, PyErr, PyResult, Python};
use crate::state::{ErrorClass, State, not_configured};

/// Hashes object addresses (already unique; spread their low bits).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct Memo {
    index: u64,
    /// A tuple or frozenset whose items are still being written.
    unfinished: bool,
}

enum Fail {
    Py(PyErr),
    /// A cycle through a tuple or frozenset: pickle the whole value instead.
    Cycle,
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Self {
        Fail::Py(e)
    }
}

/// A container whose items are being written.
enum Frame<'py> {
    /// Tuples and lists (`list`: re-checked for size changes).
    Seq { obj: Owned<'py>, next: isize, len: isize, list: bool, key: Option<usize> },
    /// `left`: keys still to write. The header promised `len` items, so exactly that many are
    /// written even if Python code run meanwhile (a child's pickling, another thread between
    /// two runs of scalars) changed the dict's entries without changing its size.
    Dict { obj: Owned<'py>, pos: isize, len: isize, left: isize, value: Option<Owned<'py>> },
    /// Sets and frozensets, through an iterator (`left`: items still to write, as for dicts).
    Iter { iter: Owned<'py>, left: isize, key: Option<usize> },
}

pub struct Encoder<'s, 'py> {
    py: Python<'py>,
    state: &'s State,
    out: Writer,
    handles: Vec<Handle>,
    memo: HashMap<usize, Memo, BuildHasherDefault<AddrHasher>>,
    memo_count: u64,
    /// Memoized objects, kept alive so that no other object can take their address.
    keep: Vec<Owned<'py>>,
    stack: Vec<Frame<'py>>,
    /// Whether large `bytes` may be lent (see above).
    lend: bool,
    /// The smallest buffer of a pickled value sent out of band (lent, as `bytes`), if any.
    out_of_band: Option<u64>,
}

/// `bytes` at least this large are lent when the encoder may.
pub const LEND_MIN: usize = 256 * 1024;

/// Pickle buffers at least this large go out of band by default (`zero_copy=True`).
pub const OUT_OF_BAND_MIN: u64 = LEND_MIN as u64;

fn oom(py: Python<'_>) -> impl FnOnce(std::collections::TryReserveError) -> Fail + '_ {
    move |_| Fail::Py(py.memory_error())
}

impl<'s, 'py> Encoder<'s, 'py> {
    pub fn new(py: Python<'py>, state: &'s State) -> Self {
        Encoder {
            py,
            state,
            out: Writer::default(),
            handles: Vec::new(),
            memo: HashMap::default(),
            memo_count: 0,
            keep: Vec::new(),
            stack: Vec::new(),
            lend: py.is_main_interpreter(),
            out_of_band: Some(OUT_OF_BAND_MIN),
        }
    }

    /// The smallest buffer of a pickled value to send out of band, or `None` for none (a
    /// pool's `zero_copy=`, for its tasks).
    pub fn out_of_band(mut self, min_bytes: Option<u64>) -> Self {
        self.out_of_band = min_bytes;
        self
    }

    /// Also lend large `bytes` from this (worker) interpreter: for a task's reply only.
    pub fn lending(mut self) -> Self {
        self.lend = true;
        self
    }

    /// Append one object.
    pub fn push(&mut self, obj: Borrowed<'_, 'py>) -> PyResult<()> {
        let mark = (self.out.buf.len(), self.handles.len(), self.keep.len(), self.memo_count);
        match self.walk(obj) {
            Ok(()) => Ok(()),
            Err(Fail::Py(err)) => Err(err),
            Err(Fail::Cycle) => {
                // Undo this object's partial output, then pickle it whole.
                self.stack.clear();
                self.out.buf.truncate(mark.0);
                self.handles.truncate(mark.1);
                self.keep.truncate(mark.2);
                self.memo.retain(|_, m| m.index < mark.3);
                self.memo_count = mark.3;
                self.pickle(obj).map_err(|fail| match fail {
                    Fail::Py(err) => err,
                    Fail::Cycle => unreachable!("pickling does not report cycles"),
                })
            }
        }
    }

    pub fn finish(self) -> Value {
        Value { bytes: self.out.buf, handles: self.handles }
    }

    fn walk(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        self.item(obj)?;
        while let Some(top) = self.stack.last_mut() {
            match next_child(self.py, top, &mut self.out)? {
                Some(child) => self.item(child.borrowed())?,
                None => {
                    if let Some(Frame::Seq { key: Some(key), .. } | Frame::Iter { key: Some(key), .. }) =
                        self.stack.pop()
                        && let Some(memo) = self.memo.get_mut(&key)
                    {
                        memo.unfinished = false;
                    }
                }
            }
        }
        Ok(())
    }

    /// Write a scalar, or open a container (pushing a frame for its items).
    fn item(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        let py = self.py;
        if scalar(py, &mut self.out, obj)? {
            return Ok(());
        }
        let out = &mut self.out;
        let tp = obj.type_ptr();
        if tp == &raw mut ffi::PyBytes_Type {
            return self.large_bytes(obj);
        }
        if tp == &raw mut ffi::PyByteArray_Type {
            // SAFETY: a bytearray: its buffer is `GET_SIZE` bytes, read while attached.
            let data = unsafe {
                crate::py::slice(
                    ffi::PyByteArray_AS_STRING(obj.as_ptr()).cast(),
                    ffi::PyByteArray_GET_SIZE(obj.as_ptr()),
                )
            };
            return out.blob(f::BYTEARRAY, data).map_err(oom(py));
        }
        if tp == &raw mut ffi::PyTuple_Type {
            // SAFETY: a tuple.
            let len = unsafe { ffi::PyTuple_GET_SIZE(obj.as_ptr()) };
            return self.open(obj, f::TUPLE, len, |obj, key| Frame::Seq { obj, next: 0, len, list: false, key });
        }
        if tp == &raw mut ffi::PyList_Type {
            // SAFETY: a list.
            let len = unsafe { ffi::PyList_GET_SIZE(obj.as_ptr()) };
            return self.open(obj, f::LIST, len, |obj, key| Frame::Seq { obj, next: 0, len, list: true, key });
        }
        if tp == &raw mut ffi::PyDict_Type {
            return self.dict(obj);
        }
        if tp == &raw mut ffi::PySet_Type || tp == &raw mut ffi::PyFrozenSet_Type {
            // SAFETY: a set or frozenset.
            let len = unsafe { ffi::PySet_Size(obj.as_ptr()) };
            // SAFETY: attached; new reference or null.
            let iter = unsafe { py.own(ffi::PyObject_GetIter(obj.as_ptr()))? };
            let tag = if tp == &raw mut ffi::PySet_Type { f::SET } else { f::FROZENSET };
            return self.open(obj, tag, len, |_, key| Frame::Iter { iter, left: len, key });
        }
        if let Some(queue) = Instance::<QueueObject>::downcast(obj, self.state) {
            return self.handle(f::QUEUE, Handle::Queue(queue.get().shared()));
        }
        if let Some(buffer) = Instance::<BufferObject>::downcast(obj, self.state) {
            return self.handle(f::BUFFER, Handle::Memory(buffer.get().lease()));
        }
        if let Some(constant) = Instance::<ConstantObject>::downcast(obj, self.state) {
            return self.handle(f::CONSTANT, Handle::Constant(constant.get().shared()));
        }
        self.other(obj)
    }

    /// `bytes` that `scalar` left: lent if allowed, else copied.
    fn large_bytes(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        if self.lend
            && let Some(pin) = Pin::acquire(&self.state.pins, obj)?
        {
            return self.handle(f::LENT_BYTES, Handle::Memory(handles::lend(pin)));
        }
        self.out.blob(f::BYTES, obj.as_bytes("bytes")?).map_err(oom(self.py))
    }

    fn handle(&mut self, tag: u8, handle: Handle) -> Result<(), Fail> {
        self.out.head(tag, self.handles.len() as u64).map_err(oom(self.py))?;
        self.handles.push(handle);
        Ok(())
    }

    /// `MEMO` if `obj` was seen before; otherwise give it the next memo number.
    fn seen(&mut self, obj: Borrowed<'_, 'py>, unfinished: bool) -> Result<Option<usize>, Fail> {
        let key = obj.as_ptr() as usize;
        if let Some(memo) = self.memo.get(&key) {
            if memo.unfinished {
                return Err(Fail::Cycle);
            }
            let index = memo.index;
            self.out.head(f::MEMO, index).map_err(oom(self.py))?;
            return Ok(None);
        }
        self.memo.insert(key, Memo { index: self.memo_count, unfinished });
        self.memo_count += 1;
        self.keep.push(obj.to_owned());
        Ok(Some(key))
    }

    /// Open a container: header, memo, and a frame for its items (if any).
    fn open(
        &mut self,
        obj: Borrowed<'_, 'py>,
        tag: u8,
        len: isize,
        frame: impl FnOnce(Owned<'py>, Option<usize>) -> Frame<'py>,
    ) -> Result<(), Fail> {
        let immutable = tag == f::TUPLE || tag == f::FROZENSET;
        let Some(key) = self.seen(obj, immutable && len > 0)? else {
            return Ok(());
        };
        self.out.head(tag, len.unsigned_abs() as u64).map_err(oom(self.py))?;
        if len > 0 {
            self.stack.push(frame(obj.to_owned(), immutable.then_some(key)));
        }
        Ok(())
    }

    fn dict(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        // SAFETY: a dict.
        let len = unsafe { ffi::PyDict_Size(obj.as_ptr()) };
        self.open(obj, f::DICT, len, |obj, _| Frame::Dict { obj, pos: 0, len, left: len, value: None })
    }

    /// Not a built-in value: by reference if possible, else pickled (memoized either way).
    fn other(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        if let Some(name) = self.state.globals.name_of(obj)? {
            return self.out.blob(f::GLOBAL, name.wire()).map_err(oom(self.py));
        }
        self.pickle(obj)
    }

    fn pickle(&mut self, obj: Borrowed<'_, 'py>) -> Result<(), Fail> {
        let py = self.py;
        if self.seen(obj, false)?.is_none() {
            return Ok(());
        }
        let dumps = self.state.hooks.dumps.get(py).ok_or_else(|| not_configured(py))?;
        // Out of band where a lease can outlive the read: `dumps` then returns the pickle and
        // the large buffers it left out (contiguous byte views), which go as leases.
        let limit = match self.out_of_band.filter(|_| self.lend) {
            Some(min_bytes) => py.uint(min_bytes)?,
            None => py.none(),
        };
        let data = match dumps.borrowed().call_args(&[obj, limit.borrowed()]) {
            Ok(data) => data,
            Err(_) => return Err(not_shareable(py, self.state, obj).into()),
        };
        if !data.borrowed().is_exactly(&raw mut ffi::PyTuple_Type) {
            return self.out.blob(f::PICKLE, data.borrowed().as_bytes("dumps() result")?).map_err(oom(py));
        }
        let pair = data.borrowed();
        // SAFETY: an exact tuple; items are borrowed from it, which `data` keeps alive.
        let (pickle, buffers) = unsafe {
            if ffi::PyTuple_GET_SIZE(pair.as_ptr()) != 2 {
                return Err(py.system_error("interpool: dumps() returned a tuple other than (bytes, list)").into());
            }
            (py.borrow(ffi::PyTuple_GET_ITEM(pair.as_ptr(), 0)), py.borrow(ffi::PyTuple_GET_ITEM(pair.as_ptr(), 1)))
        };
        if !buffers.is_exactly(&raw mut ffi::PyList_Type) {
            return Err(py.system_error("interpool: dumps() returned a tuple other than (bytes, list)").into());
        }
        // SAFETY: an exact list, made by `dumps` for this call and referenced by nothing else.
        let count = unsafe { ffi::PyList_GET_SIZE(buffers.as_ptr()) };
        self.out.head(f::PICKLE_OOB, count.unsigned_abs() as u64).map_err(oom(py))?;
        for i in 0..count {
            // SAFETY: `i` is within the list, whose items nothing else can change (above).
            let buffer = unsafe { py.borrow(ffi::PyList_GET_ITEM(buffers.as_ptr(), i)) }.to_owned();
            let Some(pin) = Pin::acquire(&self.state.pins, buffer.borrowed())? else {
                return Err(py.system_error("interpool: an out-of-band pickle buffer is not contiguous").into());
            };
            self.handle(f::BUFFER, Handle::Memory(handles::lend(pin)))?;
        }
        self.out.blob(f::PICKLE, pickle.as_bytes("dumps() result")?).map_err(oom(py))
    }
}

/// Write `obj` if it is a scalar (int, str, float, None, bool, bytes): `Ok(false)` if it is
/// not. Runs no Python code, so callers may pass borrowed references whose owner stays
/// untouched meanwhile. Small ints and strings, the items of most containers, are written
/// here, inline in the walk; everything else by [`other_scalar`].
#[inline(always)]
fn scalar(py: Python<'_>, out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<bool, Fail> {
    let tp = obj.type_ptr();
    if tp == &raw mut ffi::PyLong_Type
        && let Some((negative, magnitude)) = layout::compact_int(obj)
    {
        // |v| < 2^30: fits an i32.
        let v = if negative { magnitude.wrapping_neg() } else { magnitude };
        out.head4(f::INT4, v).map_err(oom(py))?;
        return Ok(true);
    }
    if tp == &raw mut ffi::PyUnicode_Type {
        str(out, obj).map_err(oom(py))?;
        return Ok(true);
    }
    other_scalar(py, out, obj)
}

#[inline(never)]
fn other_scalar(py: Python<'_>, out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<bool, Fail> {
    let tp = obj.type_ptr();
    if tp == &raw mut ffi::PyLong_Type {
        int(py, out, obj)?;
    } else if tp == &raw mut ffi::PyFloat_Type {
        // SAFETY: an exact float.
        let v = unsafe { ffi::PyFloat_AS_DOUBLE(obj.as_ptr()) };
        out.reserve(9).map_err(oom(py))?;
        out.buf.push(f::FLOAT);
        out.buf.extend_from_slice(&v.to_le_bytes());
    } else if obj.is_none() {
        out.tag(f::NONE).map_err(oom(py))?;
    } else if tp == &raw mut ffi::PyBool_Type {
        // SAFETY: comparing against the True singleton.
        let tag = if obj.as_ptr() == unsafe { ffi::Py_True() } { f::TRUE } else { f::FALSE };
        out.tag(tag).map_err(oom(py))?;
    } else if tp == &raw mut ffi::PyBytes_Type {
        let data = obj.as_bytes("bytes")?;
        if data.len() >= LEND_MIN {
            return Ok(false); // maybe lent: `Encoder::large_bytes`
        }
        out.blob(f::BYTES, data).map_err(oom(py))?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// An int that is not compact (or any int where compact ints cannot be read in place).
fn int(py: Python<'_>, out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<(), Fail> {
    let mut overflow = 0;
    // SAFETY: an int; sets `overflow` instead of raising when out of range.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
    if overflow == 0 {
        if v == -1 && py.error_occurred() {
            return Err(PyErr::fetched().into());
        }
        return out.head(f::INT, f::zigzag(v)).map_err(oom(py));
    }
    big_int(py, out, obj)
}

#[cold]
fn big_int(py: Python<'_>, out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<(), Fail> {
    #[cfg(Py_3_13)]
    {
        let flags = ffi::Py_ASNATIVEBYTES_LITTLE_ENDIAN;
        // SAFETY: an int; with no buffer, returns the number of bytes needed.
        let needed = unsafe { ffi::PyLong_AsNativeBytes(obj.as_ptr(), std::ptr::null_mut(), 0, flags) };
        let mut data = Vec::new();
        data.try_reserve_exact(needed.unsigned_abs()).map_err(oom(py))?;
        data.resize(needed.unsigned_abs(), 0);
        // SAFETY: `data` has room for `needed` bytes.
        let wrote = unsafe { ffi::PyLong_AsNativeBytes(obj.as_ptr(), data.as_mut_ptr().cast(), needed, flags) };
        if wrote < 0 {
            return Err(PyErr::fetched().into());
        }
        out.blob(f::BIGINT, &data).map_err(oom(py))
    }
    #[cfg(not(Py_3_13))]
    {
        // SAFETY: attached; an int; new reference (a str like "-0x1f") or null.
        let hex = unsafe { py.own(ffi::PyNumber_ToBase(obj.as_ptr(), 16))? };
        out.blob(f::BIGHEX, hex.borrowed().as_str("hex")?.as_bytes()).map_err(oom(py))
    }
}

/// A dict key: an ASCII str with its cached hash as `ASCII_KEY` (the receiving dict then need
/// not hash it again), anything else as [`scalar`] writes it.
#[inline(always)]
fn key(py: Python<'_>, out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<bool, Fail> {
    if obj.type_ptr() == &raw mut ffi::PyUnicode_Type
        && let (1, len, data) = layout::str_parts(obj)
        && layout::is_compact_ascii(obj, data)
        && let Some(hash) = layout::str_hash(obj)
    {
        // SAFETY: `len` 1-byte characters at `data` (`str_parts`).
        let bytes = unsafe { crate::py::slice(data, len) };
        out.reserve(16 + bytes.len()).map_err(oom(py))?;
        out.head(f::ASCII_KEY, len.unsigned_abs() as u64).map_err(oom(py))?;
        out.buf.extend_from_slice(&hash.to_le_bytes());
        out.buf.extend_from_slice(bytes);
        return Ok(true);
    }
    scalar(py, out, obj)
}

/// An exact str, at its width (`ASCII` for pure ASCII, so the receiver need not scan it).
#[inline]
fn str(out: &mut Writer, obj: Borrowed<'_, '_>) -> Result<(), std::collections::TryReserveError> {
    let (kind, len, data) = layout::str_parts(obj);
    // SAFETY: `len` characters of `kind` bytes at `data`, alive during this call.
    let bytes = unsafe { crate::py::slice(data, len * kind as isize) };
    let tag = match kind {
        1 if layout::is_compact_ascii(obj, data) => f::ASCII,
        1 => f::STR1,
        2 => f::STR2,
        _ => f::STR4,
    };
    out.head_raw(tag, len.unsigned_abs() as u64, bytes)
}

/// The next item of a frame's container that is not a scalar (for a dict: key, then value),
/// or `None` when done. Scalars are written to `out` on the way, from borrowed references:
/// writing them runs no Python code, so nothing can change the container meanwhile (in
/// free-threaded builds, where other threads could, each run of scalars holds a critical
/// section on the container, as CPython's own list and dict methods do).
fn next_child<'py>(py: Python<'py>, frame: &mut Frame<'py>, out: &mut Writer) -> Result<Option<Owned<'py>>, Fail> {
    match frame {
        Frame::Seq { obj, next, len, list, .. } => {
            let (obj, list) = (obj.borrowed(), *list);
            py.locked(obj, || seq_items(py, obj, next, *len, list, out))
        }
        Frame::Dict { obj, pos, len, left, value } => {
            if let Some(value) = value.take() {
                return Ok(Some(value));
            }
            py.locked(obj.borrowed(), || dict_items(py, obj, pos, *len, left, value, out))
        }
        Frame::Iter { iter, left, .. } => {
            if *left == 0 {
                return Ok(None);
            }
            // SAFETY: attached; an iterator; new reference, or null when exhausted or failed.
            match unsafe { py.own(ffi::PyIter_Next(iter.as_ptr())) } {
                Ok(item) => {
                    *left -= 1;
                    Ok(Some(item))
                }
                Err(err) if py.error_occurred() => Err(err.into()),
                Err(_) => Err(py.runtime_error("set changed while it was being sent").into()),
            }
        }
    }
}

/// A tuple's or list's next items from `next` on: scalars are written, the first other item is
/// returned. Runs locked ([`Python::locked`]): in free-threaded builds no other thread changes
/// a list meanwhile, so its items may be borrowed as with a GIL.
#[inline]
fn seq_items<'py>(
    py: Python<'py>,
    obj: Borrowed<'_, 'py>,
    next: &mut isize,
    len: isize,
    list: bool,
    out: &mut Writer,
) -> Result<Option<Owned<'py>>, Fail> {
    if list {
        // SAFETY: a list.
        if unsafe { ffi::PyList_GET_SIZE(obj.as_ptr()) } != len {
            return Err(py.runtime_error("list changed size while it was being sent").into());
        }
    }
    while *next < len {
        let i = *next;
        *next += 1;
        // SAFETY: a list of `len` items (checked above, and locked: nothing changes it before
        // the item is written or a strong reference taken) or a tuple with `i < len`; the
        // item is owned by it.
        let item = unsafe {
            py.borrow(if list { ffi::PyList_GET_ITEM(obj.as_ptr(), i) } else { ffi::PyTuple_GET_ITEM(obj.as_ptr(), i) })
        };
        if !scalar(py, out, item)? {
            return Ok(Some(item.to_owned()));
        }
    }
    Ok(None)
}

/// A dict's next items from `pos` on: scalars are written, the first other key or value is
/// returned (a key's value then waits in `value`). Runs locked ([`Python::locked`]), as
/// [`seq_items`] does.
#[inline]
fn dict_items<'py>(
    py: Python<'py>,
    obj: &Owned<'py>,
    pos: &mut isize,
    len: isize,
    left: &mut isize,
    value: &mut Option<Owned<'py>>,
    out: &mut Writer,
) -> Result<Option<Owned<'py>>, Fail> {
    // Checked when the walk comes back from a child (whose pickling may have run code), not
    // between scalars (writing them runs none).
    // SAFETY: a dict.
    if unsafe { ffi::PyDict_Size(obj.as_ptr()) } != len {
        return Err(py.runtime_error("dictionary changed size while it was being sent").into());
    }
    loop {
        if *left == 0 {
            return Ok(None);
        }
        let (mut k, mut v) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a dict whose size did not change; borrowed references owned by it.
        if unsafe { ffi::PyDict_Next(obj.as_ptr(), pos, &mut k, &mut v) } == 0 {
            return Err(py.runtime_error("dictionary changed while it was being sent").into());
        }
        *left -= 1;
        // SAFETY: as above; strong references are taken before any Python code runs.
        let (k, v) = unsafe { (py.borrow(k), py.borrow(v)) };
        if !key(py, out, k)? {
            *value = Some(v.to_owned());
            return Ok(Some(k.to_owned()));
        }
        if !scalar(py, out, v)? {
            return Ok(Some(v.to_owned()));
        }
    }
}

/// `NotShareableError` for `obj`, whose pickling just failed (the failure becomes its cause).
/// A `MemoryError` stays a `MemoryError`.
fn not_shareable(py: Python<'_>, state: &State, obj: Borrowed<'_, '_>) -> PyErr {
    let Some(cause) = py.take_exception() else {
        return py.runtime_error("pickling failed without an exception");
    };
    // SAFETY: reading an immutable global exception type pointer.
    let memory_error = unsafe { py.borrow(ffi::PyExc_MemoryError) };
    if cause.borrowed().type_ptr() == memory_error.as_ptr().cast() {
        return py.restore_exception(cause);
    }
    let detail = cause.borrowed().describe();
    let kind = cause.borrowed().type_name();
    let msg = format!(
        "{} object cannot be sent to another interpreter: it has no native form and pickling it failed \
         ({kind}: {detail})",
        obj.type_name()
    );
    let err = state.raise(py, ErrorClass::NotShareableError, &msg);
    if let Some(exc) = py.take_exception() {
        // SAFETY: attached; `exc` is an exception instance; steals the reference to `cause`.
        unsafe { ffi::PyException_SetCause(exc.as_ptr(), cause.into_ptr()) };
        return py.restore_exception(exc);
    }
    err
}
