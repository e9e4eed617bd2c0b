//! Small RAII layer over the raw C API for objects of the *current* interpreter.
//!
//! Rules this module encodes (see `shared/design/subinterpreters.md`, sections 1 and 4):
//! - An [`Owned`] is a strong reference to an object of the interpreter the thread is
//!   attached to. It is `!Send`, so it cannot leave its thread; on worker threads, where the
//!   interpreter is sometimes detached, long-lived references are kept as [`Stashed`], which
//!   can only be released with an [`Attached`] token.
//! - [`Attached`] is a zero-sized proof that the calling thread holds an attached thread
//!   state. Entry points called by CPython create it with [`Attached::assume`].
use std::ffi::{CStr, c_char};
use std::marker::PhantomData;
use std::ptr::NonNull;

use pyo3_ffi as ffi;

/// Proof that the current thread is attached to some interpreter (holds its GIL).
#[derive(Clone, Copy)]
pub struct Attached(PhantomData<*mut ()>);

impl Attached {
    /// # Safety
    /// The calling thread must have an attached thread state for as long as the token (and
    /// copies of it) are used: e.g. inside a C-API callback invoked by CPython.
    pub unsafe fn assume() -> Self {
        Attached(PhantomData)
    }

    /// Run `f` with the thread detached (the interpreter's GIL released), then re-attach.
    /// `f` must not touch Python; the `Send` bound keeps `Owned` references out of it.
    pub fn detached<T, F: FnOnce() -> T + Send>(self, f: F) -> T {
        // SAFETY: `self` proves a thread state is attached; saving it detaches this thread,
        // and the guard below restores exactly that thread state, even if `f` unwinds.
        let saved = unsafe { ffi::PyEval_SaveThread() };
        struct Restore(*mut ffi::PyThreadState);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: re-attaches the thread state saved above, on the same thread.
                unsafe { ffi::PyEval_RestoreThread(self.0) }
            }
        }
        let _restore = Restore(saved);
        f()
    }
}

/// Marker: a Python exception is set in the current thread state.
#[derive(Debug)]
pub struct PyErrSet;

pub type PyResult<T> = Result<T, PyErrSet>;

/// Set `exc` with `msg` and return the marker.
pub fn raise(_py: Attached, exc: *mut ffi::PyObject, msg: &str) -> PyErrSet {
    let len = isize::try_from(msg.len()).unwrap_or(isize::MAX);
    // SAFETY: attached (token); `msg` is valid UTF-8 of `len` bytes for the duration of the
    // call, and `exc` is one of CPython's exception type objects.
    unsafe {
        let text = ffi::PyUnicode_FromStringAndSize(msg.as_ptr().cast::<c_char>(), len);
        if !text.is_null() {
            ffi::PyErr_SetObject(exc, text);
            ffi::Py_DECREF(text);
        }
    }
    PyErrSet
}

pub fn type_error(py: Attached, msg: &str) -> PyErrSet {
    // SAFETY: reading an immutable global exception type pointer.
    raise(py, unsafe { ffi::PyExc_TypeError }, msg)
}

pub fn value_error(py: Attached, msg: &str) -> PyErrSet {
    // SAFETY: reading an immutable global exception type pointer.
    raise(py, unsafe { ffi::PyExc_ValueError }, msg)
}

pub fn runtime_error(py: Attached, msg: &str) -> PyErrSet {
    // SAFETY: reading an immutable global exception type pointer.
    raise(py, unsafe { ffi::PyExc_RuntimeError }, msg)
}

/// A strong reference to an object of the current interpreter; DECREF on drop.
pub struct Owned(NonNull<ffi::PyObject>);

impl Owned {
    /// Take ownership of a new reference returned by the C API; null means an exception
    /// is set.
    ///
    /// # Safety
    /// `ptr` is null or a strong reference that the caller owns, to an object of the
    /// interpreter this thread is attached to, and the `Owned` is dropped while attached to
    /// that same interpreter.
    pub unsafe fn from_new(_py: Attached, ptr: *mut ffi::PyObject) -> PyResult<Owned> {
        NonNull::new(ptr).map(Owned).ok_or(PyErrSet)
    }

    /// Take a new strong reference to a borrowed object.
    ///
    /// # Safety
    /// `ptr` is a valid borrowed reference of the current interpreter (see `from_new`).
    pub unsafe fn from_borrowed(py: Attached, ptr: NonNull<ffi::PyObject>) -> Owned {
        // SAFETY: `ptr` is valid (caller) and we are attached (token).
        unsafe { ffi::Py_INCREF(ptr.as_ptr()) };
        let _ = py;
        Owned(ptr)
    }

    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// Hand the reference to the caller (e.g. as a C-API return value).
    pub fn into_ptr(self) -> *mut ffi::PyObject {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// Keep the reference across detach/attach cycles of the same thread.
    pub fn stash(self) -> Stashed {
        let ptr = self.0;
        std::mem::forget(self);
        Stashed(ptr)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: `Owned` is only constructed for objects of the attached interpreter and is
        // `!Send`; the constructors' contracts require dropping it while attached there.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

/// A strong reference kept while its interpreter may be detached. It has no destructor:
/// it must be given back with [`Stashed::release`] while attached (forgetting it leaks,
/// which is safe; dropping it while detached would not be).
pub struct Stashed(NonNull<ffi::PyObject>);

impl Stashed {
    /// Borrow the object; only meaningful while attached to its interpreter.
    pub fn as_ptr(&self, _py: Attached) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// # Safety
    /// The thread must be attached to the interpreter the object belongs to.
    pub unsafe fn release(self, _py: Attached) {
        // SAFETY: attached to the owning interpreter (caller's contract).
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

/// New `bytes` object with a copy of `data`.
pub fn bytes(py: Attached, data: &[u8]) -> PyResult<Owned> {
    let len = isize::try_from(data.len()).map_err(|_| value_error(py, "payload too large"))?;
    // SAFETY: attached; `data` is valid for `len` bytes during the call.
    unsafe {
        Owned::from_new(
            py,
            ffi::PyBytes_FromStringAndSize(data.as_ptr().cast::<c_char>(), len),
        )
    }
}

/// Borrow the contents of a `bytes` object. `what` names the argument in the error.
///
/// # Safety
/// `obj` is a valid reference of the current interpreter that outlives the returned slice
/// (bytes are immutable, so the contents cannot change meanwhile).
pub unsafe fn bytes_view<'a>(
    py: Attached,
    obj: *mut ffi::PyObject,
    what: &str,
) -> PyResult<&'a [u8]> {
    // SAFETY: `obj` is valid (caller's contract) and we are attached.
    if unsafe { ffi::PyBytes_Check(obj) } == 0 {
        return Err(type_error(py, &format!("{what} must be bytes")));
    }
    let mut data: *mut c_char = std::ptr::null_mut();
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `obj` is a bytes object; CPython fills in its buffer pointer and length.
    if unsafe { ffi::PyBytes_AsStringAndSize(obj, &mut data, &mut len) } < 0 {
        return Err(PyErrSet);
    }
    // SAFETY: the buffer is owned by `obj`, immutable, `len` bytes long, and lives as long
    // as `obj` does (caller's contract ties `'a` to it).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len.unsigned_abs()) })
}

/// Borrow a `str` argument as UTF-8.
///
/// # Safety
/// As for [`bytes_view`].
pub unsafe fn str_view<'a>(py: Attached, obj: *mut ffi::PyObject, what: &str) -> PyResult<&'a str> {
    // SAFETY: `obj` is valid (caller's contract) and we are attached.
    if unsafe { ffi::PyUnicode_Check(obj) } == 0 {
        return Err(type_error(py, &format!("{what} must be str")));
    }
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `obj` is a str; CPython returns its cached UTF-8 form, owned by `obj`.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(obj, &mut len) };
    if data.is_null() {
        return Err(PyErrSet);
    }
    // SAFETY: CPython guarantees the buffer is valid UTF-8 of `len` bytes, owned by `obj`.
    Ok(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(
            data.cast::<u8>(),
            len.unsigned_abs(),
        ))
    })
}

/// Read a Python int as `i64`, with `what` naming the argument in errors.
///
/// # Safety
/// `obj` is a valid reference of the current interpreter.
pub unsafe fn int_arg(py: Attached, obj: *mut ffi::PyObject, what: &str) -> PyResult<i64> {
    // SAFETY: `obj` is valid (caller's contract) and we are attached.
    if unsafe { ffi::PyLong_Check(obj) } == 0 {
        return Err(type_error(py, &format!("{what} must be int")));
    }
    // SAFETY: as above; on overflow CPython sets OverflowError and returns -1.
    let v = unsafe { ffi::PyLong_AsLongLong(obj) };
    // SAFETY: checking this thread's error indicator.
    if v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() } {
        return Err(PyErrSet);
    }
    Ok(v)
}

pub fn int(py: Attached, v: i64) -> PyResult<Owned> {
    // SAFETY: attached; returns a new reference or null with an exception.
    unsafe { Owned::from_new(py, ffi::PyLong_FromLongLong(v)) }
}

pub fn uint(py: Attached, v: u64) -> PyResult<Owned> {
    // SAFETY: attached; returns a new reference or null with an exception.
    unsafe { Owned::from_new(py, ffi::PyLong_FromUnsignedLongLong(v)) }
}

pub fn string(py: Attached, s: &str) -> PyResult<Owned> {
    let len = isize::try_from(s.len()).unwrap_or(isize::MAX);
    // SAFETY: attached; `s` is valid UTF-8 of `len` bytes during the call.
    unsafe {
        Owned::from_new(
            py,
            ffi::PyUnicode_FromStringAndSize(s.as_ptr().cast::<c_char>(), len),
        )
    }
}

pub fn bool_obj(py: Attached, v: bool) -> Owned {
    // SAFETY: True/False are valid objects of every interpreter; we take a new reference.
    unsafe {
        let obj = if v { ffi::Py_True() } else { ffi::Py_False() };
        Owned::from_borrowed(py, NonNull::new_unchecked(obj))
    }
}

pub fn none(py: Attached) -> Owned {
    // SAFETY: Py_None is a valid object of every interpreter; we take a new reference.
    unsafe { Owned::from_borrowed(py, NonNull::new_unchecked(ffi::Py_None())) }
}

/// A new list from owned items.
pub fn list(py: Attached, items: Vec<Owned>) -> PyResult<Owned> {
    let n = isize::try_from(items.len()).map_err(|_| value_error(py, "list too long"))?;
    // SAFETY: attached; returns a new reference or null.
    let list = unsafe { Owned::from_new(py, ffi::PyList_New(n))? };
    for (i, item) in (0isize..).zip(items) {
        // SAFETY: `list` is a fresh list of length `n`; SET_ITEM steals the reference,
        // which `into_ptr` hands over.
        unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i, item.into_ptr()) };
    }
    Ok(list)
}

/// A new tuple from owned items.
pub fn tuple(py: Attached, items: Vec<Owned>) -> PyResult<Owned> {
    let n = isize::try_from(items.len()).map_err(|_| value_error(py, "tuple too long"))?;
    // SAFETY: attached; returns a new reference or null.
    let tuple = unsafe { Owned::from_new(py, ffi::PyTuple_New(n))? };
    for (i, item) in (0isize..).zip(items) {
        // SAFETY: fresh tuple of length `n`; SET_ITEM steals the reference.
        unsafe { ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, item.into_ptr()) };
    }
    Ok(tuple)
}

/// `d[key] = value` for a dict.
pub fn dict_set(py: Attached, dict: &Owned, key: &CStr, value: Owned) -> PyResult<()> {
    let _ = py;
    // SAFETY: attached; `dict` is a dict and `key` a NUL-terminated string; the call
    // takes its own reference to `value`, which we then drop.
    if unsafe { ffi::PyDict_SetItemString(dict.as_ptr(), key.as_ptr(), value.as_ptr()) } < 0 {
        return Err(PyErrSet);
    }
    Ok(())
}

/// Take the current exception and describe it as `"TypeName: message"`.
pub fn take_error_text(py: Attached) -> String {
    // SAFETY: attached; returns the raised exception (new reference) or null, and clears it.
    let Ok(exc) = (unsafe { Owned::from_new(py, ffi::PyErr_GetRaisedException()) }) else {
        return "unknown error (no exception was set)".to_owned();
    };
    // SAFETY: attached; `exc` is a valid exception object; repr returns a new reference.
    let text = unsafe { Owned::from_new(py, ffi::PyObject_Repr(exc.as_ptr())) };
    let described = text
        .ok()
        // SAFETY: `t` is a str we own for the duration of the borrow.
        .and_then(|t| unsafe { str_view(py, t.as_ptr(), "repr").ok().map(str::to_owned) });
    // SAFETY: attached; clears anything the failed repr may have raised.
    unsafe { ffi::PyErr_Clear() };
    described.unwrap_or_else(|| "exception (repr failed)".to_owned())
}

/// One `PyMethodDef` entry: `method_def!(c"name", PyCFunctionFast, func, ffi::METH_FASTCALL, c"doc")`.
macro_rules! method_def {
    ($name:literal, $kind:ident, $f:expr, $flags:expr, $doc:literal) => {
        pyo3_ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: pyo3_ffi::PyMethodDefPointer { $kind: $f },
            ml_flags: $flags,
            ml_doc: $doc.as_ptr(),
        }
    };
}
pub(crate) use method_def;

/// The terminator of a `PyGetSetDef` table.
pub const GETSET_END: ffi::PyGetSetDef = ffi::PyGetSetDef {
    name: std::ptr::null(),
    get: None,
    set: None,
    doc: std::ptr::null(),
    closure: std::ptr::null_mut(),
};

/// The end of every `tp_dealloc` of our heap types: free the object's memory and drop the
/// instance's reference to its type.
///
/// # Safety
/// `slf` is being deallocated (attached) and its Rust fields were already dropped; `tp` is
/// its heap type.
pub unsafe fn dealloc_tail(slf: *mut ffi::PyObject, tp: *mut ffi::PyTypeObject) {
    // SAFETY: heap types always provide tp_free; instances own a reference to their type.
    unsafe {
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        let free: ffi::freefunc = std::mem::transmute::<*mut std::ffi::c_void, ffi::freefunc>(free);
        free(slf.cast::<std::ffi::c_void>());
        ffi::Py_DECREF(tp.cast::<ffi::PyObject>());
    }
}
