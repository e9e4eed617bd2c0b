//! The RAII layer over the raw C API: the tokens and references every other module works
//! with, and the generic object operations (calls, attributes, conversions, errors). Other
//! modules call the C API directly only for what is theirs alone (for instance the codec
//! reads and builds objects in place, `pin.rs` acquires buffers, `interp.rs`, `threads.rs`
//! and `interrupt.rs` manage interpreters, thread states and pending calls, `object.rs`,
//! `trampoline.rs` and `module.rs` make types and the module), each call in a small `unsafe`
//! block whose result goes straight into these types ([`Python::own`], [`check`]). The types
//! here carry the rules of `docs/design.md` ("Objects and interpreters"):
//!
//! - [`Python<'py>`] proves that this thread is attached to an interpreter for `'py`. Entry
//!   points get one from the trampoline (`trampoline.rs`); worker threads borrow one from
//!   their `SubInterpreter` (`interp.rs`), so a token cannot outlive the
//!   attachment it proves (detaching needs the handle mutably).
//! - [`Borrowed<'a, 'py>`] is a reference valid for `'a` (the lender's lifetime), [`Owned<'py>`]
//!   a strong reference released on drop, which its lifetime keeps inside the attachment.
//!   Neither is `Send`: an object never leaves the interpreter (thread) it belongs to.
//! - [`Stashed`] keeps a strong reference across detach/attach cycles of a worker thread; it
//!   remembers its interpreter and refuses to be used from another one.
//! - [`PyErr`] marks "a Python exception is set in this thread"; functions that return it
//!   have set one.
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use pyo3_ffi as ffi;

/// Proof that the current thread is attached to an interpreter (holds its GIL) for `'py`.
#[derive(Clone, Copy)]
pub struct Python<'py>(PhantomData<(&'py (), *mut ())>);

/// Marker: a Python exception is set in the current thread state.
#[derive(Debug)]
pub struct PyErr(());

pub type PyResult<T> = Result<T, PyErr>;

impl PyErr {
    /// The marker for an exception that a C-API call has just set.
    pub(crate) fn fetched() -> Self {
        PyErr(())
    }
}

impl<'py> Python<'py> {
    /// # Safety
    /// The calling thread must stay attached to an interpreter for all of `'py`.
    pub(crate) unsafe fn assume() -> Self {
        Python(PhantomData)
    }

    /// Run `f` with `obj` locked against other threads: a critical section on it in
    /// free-threaded builds (what CPython's own list and dict methods hold), nothing more with
    /// a GIL. `f` must not block or run Python code (a critical section is suspended while its
    /// thread waits, so the lock would not hold across that).
    #[inline(always)]
    pub fn locked<R>(self, obj: Borrowed<'_, 'py>, f: impl FnOnce() -> R) -> R {
        #[cfg(Py_GIL_DISABLED)]
        {
            struct End(*mut ffi::PyCriticalSection);
            impl Drop for End {
                fn drop(&mut self) {
                    // SAFETY: begun below on this thread, on a section that has not moved.
                    unsafe { ffi::PyCriticalSection_End(self.0) };
                }
            }
            let mut section = std::mem::MaybeUninit::<ffi::PyCriticalSection>::uninit();
            // SAFETY: attached; `section` stays in this frame, unmoved, until `End` ends it
            // (CPython links it into the thread's stack of critical sections by address).
            unsafe { ffi::PyCriticalSection_Begin(section.as_mut_ptr(), obj.as_ptr()) };
            let _end = End(section.as_mut_ptr());
            f()
        }
        #[cfg(not(Py_GIL_DISABLED))]
        {
            let _ = obj;
            f()
        }
    }

    /// Run `f` with the thread detached (the interpreter's GIL released), then re-attach.
    /// `f` cannot touch Python: the `Send` bound keeps every reference type out of it.
    pub fn detached<T, F: FnOnce() -> T + Send>(self, f: F) -> T {
        struct Restore(*mut ffi::PyThreadState);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: re-attaches the thread state saved below, on the same thread.
                unsafe { ffi::PyEval_RestoreThread(self.0) }
            }
        }
        // SAFETY: `self` proves a thread state is attached; saving detaches it, and `Restore`
        // re-attaches exactly that thread state, even if `f` unwinds.
        let _restore = Restore(unsafe { ffi::PyEval_SaveThread() });
        f()
    }

    /// Wrap a new reference returned by the C API (null: an exception is set).
    ///
    /// # Safety
    /// `ptr` is null or a strong reference owned by the caller, to an object of the
    /// interpreter this thread is attached to.
    pub unsafe fn own(self, ptr: *mut ffi::PyObject) -> PyResult<Owned<'py>> {
        NonNull::new(ptr).map(|ptr| Owned(ptr, PhantomData)).ok_or_else(PyErr::fetched)
    }

    /// Borrow an object for `'a`.
    ///
    /// # Safety
    /// `ptr` is a valid object of the attached interpreter that stays alive for `'a`.
    pub unsafe fn borrow<'a>(self, ptr: *mut ffi::PyObject) -> Borrowed<'a, 'py> {
        // SAFETY: non-null by the caller's contract.
        Borrowed(unsafe { NonNull::new_unchecked(ptr) }, PhantomData)
    }

    pub fn none(self) -> Owned<'py> {
        // SAFETY: None is a valid object of every interpreter; we take a new reference.
        unsafe { self.borrow(ffi::Py_None()) }.to_owned()
    }

    pub fn bool(self, v: bool) -> Owned<'py> {
        // SAFETY: True and False are valid objects of every interpreter.
        let obj = unsafe { self.borrow(if v { ffi::Py_True() } else { ffi::Py_False() }) };
        obj.to_owned()
    }

    pub fn int(self, v: i64) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null with an exception.
        unsafe { self.own(ffi::PyLong_FromLongLong(v)) }
    }

    pub fn uint(self, v: u64) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null with an exception.
        unsafe { self.own(ffi::PyLong_FromUnsignedLongLong(v)) }
    }

    pub fn ulong(self, v: std::ffi::c_ulong) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null with an exception.
        unsafe { self.own(ffi::PyLong_FromUnsignedLong(v)) }
    }

    pub fn float(self, v: f64) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null with an exception.
        unsafe { self.own(ffi::PyFloat_FromDouble(v)) }
    }

    pub fn str(self, s: &str) -> PyResult<Owned<'py>> {
        let len = self.ssize(s.len())?;
        // SAFETY: attached; `s` is valid UTF-8 of `len` bytes for the duration of the call.
        unsafe { self.own(ffi::PyUnicode_FromStringAndSize(s.as_ptr().cast(), len)) }
    }

    pub fn bytes(self, data: &[u8]) -> PyResult<Owned<'py>> {
        let len = self.ssize(data.len())?;
        // SAFETY: attached; `data` is valid for `len` bytes for the duration of the call.
        unsafe { self.own(ffi::PyBytes_FromStringAndSize(data.as_ptr().cast(), len)) }
    }

    /// A tuple of `items`.
    pub fn tuple(self, items: Vec<Owned<'py>>) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null.
        let tuple = unsafe { self.own(ffi::PyTuple_New(self.ssize(items.len())?))? };
        for (i, item) in (0..).zip(items) {
            // SAFETY: a fresh tuple of this length; SET_ITEM steals the reference.
            unsafe { ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, item.into_ptr()) };
        }
        Ok(tuple)
    }

    /// A list of `items`.
    pub fn list(self, items: Vec<Owned<'py>>) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null.
        let list = unsafe { self.own(ffi::PyList_New(self.ssize(items.len())?))? };
        for (i, item) in (0..).zip(items) {
            // SAFETY: a fresh list of this length; SET_ITEM steals the reference.
            unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i, item.into_ptr()) };
        }
        Ok(list)
    }

    pub fn dict(self) -> PyResult<Owned<'py>> {
        // SAFETY: attached; new reference or null.
        unsafe { self.own(ffi::PyDict_New()) }
    }

    /// `import name` (a `sys.modules` hit when already imported).
    pub fn import(self, name: &CStr) -> PyResult<Owned<'py>> {
        // SAFETY: attached; `name` is NUL-terminated.
        unsafe { self.own(ffi::PyImport_ImportModule(name.as_ptr())) }
    }

    /// `import name` for a `str` object.
    pub fn import_object(self, name: Borrowed<'_, 'py>) -> PyResult<Owned<'py>> {
        // SAFETY: attached; `name` is a valid object (CPython checks that it is a str).
        unsafe { self.own(ffi::PyImport_Import(name.as_ptr())) }
    }

    /// `sys.modules.get(name)`: the module if imported, without importing it and without
    /// `PyImport_GetModule`'s check that it finished initializing (which looks up
    /// `__spec__._initializing` and raises and clears an AttributeError on every call).
    pub fn loaded_module(self, name: Borrowed<'_, 'py>) -> PyResult<Option<Owned<'py>>> {
        // SAFETY: attached; a borrowed reference to this interpreter's `sys.modules`.
        let modules = unsafe { ffi::PyImport_GetModuleDict() };
        let mut found = std::ptr::null_mut();
        // SAFETY: attached; a dict and a valid key; `found` receives a new reference or null.
        let hit = unsafe { ffi::compat::PyDict_GetItemRef(modules, name.as_ptr(), &mut found) };
        match hit {
            // SAFETY: 1 means `found` is a new reference.
            1 => Ok(Some(unsafe { self.own(found) }?)),
            0 => Ok(None),
            _ => Err(PyErr::fetched()),
        }
    }

    /// Run pending signal handlers (Ctrl-C raises KeyboardInterrupt here).
    pub fn check_signals(self) -> PyResult<()> {
        // SAFETY: attached.
        match unsafe { ffi::PyErr_CheckSignals() } {
            0 => Ok(()),
            _ => Err(PyErr::fetched()),
        }
    }

    pub fn error_occurred(self) -> bool {
        // SAFETY: attached; reads this thread's error indicator.
        !unsafe { ffi::PyErr_Occurred() }.is_null()
    }

    /// Take the exception that is set (clearing it).
    pub fn take_exception(self) -> Option<Owned<'py>> {
        // SAFETY: attached; returns the raised exception (new reference) or null.
        unsafe { self.own(ffi::PyErr_GetRaisedException()) }.ok()
    }

    /// Set `exc` as the current exception.
    pub fn restore_exception(self, exc: Owned<'py>) -> PyErr {
        // SAFETY: attached; steals the reference to an exception instance.
        unsafe { ffi::PyErr_SetRaisedException(exc.into_ptr()) };
        PyErr::fetched()
    }

    /// Forget the exception that is set, if any.
    pub fn clear_exception(self) {
        // SAFETY: attached.
        unsafe { ffi::PyErr_Clear() }
    }

    /// Raise `exc_type(msg)`.
    pub fn raise(self, exc_type: Borrowed<'_, 'py>, msg: &str) -> PyErr {
        match self.str(msg) {
            // SAFETY: attached; `exc_type` is an exception class, `text` a str.
            Ok(text) => unsafe { ffi::PyErr_SetObject(exc_type.as_ptr(), text.as_ptr()) },
            Err(err) => return err,
        }
        PyErr::fetched()
    }

    fn raise_builtin(self, exc_type: *mut ffi::PyObject, msg: &str) -> PyErr {
        // SAFETY: the builtin exception classes are immortal objects of every interpreter.
        self.raise(unsafe { self.borrow(exc_type) }, msg)
    }

    pub fn type_error(self, msg: &str) -> PyErr {
        // SAFETY: reading an immutable global exception type pointer.
        self.raise_builtin(unsafe { ffi::PyExc_TypeError }, msg)
    }

    pub fn value_error(self, msg: &str) -> PyErr {
        // SAFETY: as above.
        self.raise_builtin(unsafe { ffi::PyExc_ValueError }, msg)
    }

    pub fn runtime_error(self, msg: &str) -> PyErr {
        // SAFETY: as above.
        self.raise_builtin(unsafe { ffi::PyExc_RuntimeError }, msg)
    }

    pub fn overflow_error(self, msg: &str) -> PyErr {
        // SAFETY: as above.
        self.raise_builtin(unsafe { ffi::PyExc_OverflowError }, msg)
    }

    pub fn system_error(self, msg: &str) -> PyErr {
        // SAFETY: as above.
        self.raise_builtin(unsafe { ffi::PyExc_SystemError }, msg)
    }

    pub fn import_error(self, msg: &str) -> PyErr {
        // SAFETY: as above.
        self.raise_builtin(unsafe { ffi::PyExc_ImportError }, msg)
    }

    /// Raise `MemoryError` (what a failed allocation on behalf of Python must become).
    pub fn memory_error(self) -> PyErr {
        // SAFETY: attached; sets MemoryError and returns null.
        unsafe { ffi::PyErr_NoMemory() };
        PyErr::fetched()
    }

    /// `len` as a `Py_ssize_t`, or `OverflowError`.
    pub fn ssize(self, len: usize) -> PyResult<ffi::Py_ssize_t> {
        ffi::Py_ssize_t::try_from(len).map_err(|_| self.overflow_error("size does not fit in Py_ssize_t"))
    }

    /// The id of the interpreter this thread is attached to.
    pub fn interpreter_id(self) -> i64 {
        // SAFETY: attached, so there is a current interpreter.
        unsafe { ffi::PyInterpreterState_GetID(ffi::PyInterpreterState_Get()) }
    }

    /// The interpreter this thread is attached to, as an opaque address (for identity checks).
    pub fn interpreter(self) -> usize {
        // SAFETY: attached, so there is a current interpreter.
        unsafe { ffi::PyInterpreterState_Get() as usize }
    }

    pub fn is_main_interpreter(self) -> bool {
        // SAFETY: reads runtime state; attached.
        self.interpreter() == unsafe { ffi::PyInterpreterState_Main() } as usize
    }
}

/// A reference to an object of the attached interpreter, valid for `'a`. Transparent: a
/// slice of them is an array of object pointers (vectorcall's layout, `call_args`).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Borrowed<'a, 'py>(NonNull<ffi::PyObject>, PhantomData<(&'a (), Python<'py>)>);

impl<'a, 'py> Borrowed<'a, 'py> {
    pub fn as_ptr(self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// The object's address, non-null (to keep an address, not a reference).
    pub fn non_null(self) -> NonNull<ffi::PyObject> {
        self.0
    }

    pub fn py(self) -> Python<'py> {
        // SAFETY: a Borrowed exists only while its interpreter is attached.
        unsafe { Python::assume() }
    }

    pub fn to_owned(self) -> Owned<'py> {
        // SAFETY: valid object (type invariant), attached.
        unsafe { ffi::Py_INCREF(self.as_ptr()) };
        Owned(self.0, PhantomData)
    }

    /// The object's type.
    pub fn type_ptr(self) -> *mut ffi::PyTypeObject {
        // SAFETY: reading the type pointer of a valid object.
        unsafe { ffi::Py_TYPE(self.as_ptr()) }
    }

    /// Whether the object's type is exactly `tp`.
    pub fn is_exactly(self, tp: *mut ffi::PyTypeObject) -> bool {
        self.type_ptr() == tp
    }

    pub fn is(self, other: Borrowed<'_, 'py>) -> bool {
        self.0 == other.0
    }

    pub fn is_none(self) -> bool {
        // SAFETY: comparing against the None singleton.
        self.as_ptr() == unsafe { ffi::Py_None() }
    }

    /// Whether the object's type has all of `flags` (`Py_TPFLAGS_*_SUBCLASS` checks).
    pub fn has_type_flags(self, flags: std::ffi::c_ulong) -> bool {
        // SAFETY: reading the flags of a valid type object.
        unsafe { ffi::PyType_GetFlags(self.type_ptr()) & flags == flags }
    }

    pub fn getattr(self, name: &CStr) -> PyResult<Owned<'py>> {
        // SAFETY: attached; valid object and NUL-terminated name.
        unsafe { self.py().own(ffi::PyObject_GetAttrString(self.as_ptr(), name.as_ptr())) }
    }

    /// `getattr(obj, name, None)`-like: `Ok(None)` when the attribute is missing.
    pub fn getattr_opt(self, name: Borrowed<'_, 'py>) -> PyResult<Option<Owned<'py>>> {
        let mut out = std::ptr::null_mut();
        // SAFETY: attached; valid object and str; `out` receives a new reference or null.
        match unsafe { ffi::compat::PyObject_GetOptionalAttr(self.as_ptr(), name.as_ptr(), &mut out) } {
            // SAFETY: 1 means `out` is a new reference.
            1 => Ok(Some(unsafe { self.py().own(out) }?)),
            0 => Ok(None),
            _ => Err(PyErr::fetched()),
        }
    }

    pub fn call1(self, arg: Borrowed<'_, 'py>) -> PyResult<Owned<'py>> {
        // SAFETY: attached; valid callable and argument; new reference or null.
        unsafe { self.py().own(ffi::PyObject_CallOneArg(self.as_ptr(), arg.as_ptr())) }
    }

    /// `self(*args, **kwargs)`; `args` must be a tuple, `kwargs` a dict or absent.
    pub fn call(self, args: Borrowed<'_, 'py>, kwargs: Option<Borrowed<'_, 'py>>) -> PyResult<Owned<'py>> {
        let kwargs = kwargs.map_or(std::ptr::null_mut(), Borrowed::as_ptr);
        // SAFETY: attached; CPython checks the types of args and kwargs.
        unsafe { self.py().own(ffi::PyObject_Call(self.as_ptr(), args.as_ptr(), kwargs)) }
    }

    /// `self(*args)` with a slice of arguments (vectorcall).
    pub fn call_args(self, args: &[Borrowed<'_, 'py>]) -> PyResult<Owned<'py>> {
        // `Borrowed` is a transparent non-null object pointer: the slice has the layout of
        // the `PyObject *const *` vectorcall takes.
        let ptrs = args.as_ptr().cast::<*mut ffi::PyObject>();
        // SAFETY: attached; `ptrs` holds `len` valid objects for the duration of the call.
        unsafe { self.py().own(ffi::PyObject_Vectorcall(self.as_ptr(), ptrs, args.len(), std::ptr::null_mut())) }
    }

    /// `isinstance(self, cls)`.
    pub fn is_instance(self, cls: Borrowed<'_, 'py>) -> PyResult<bool> {
        // SAFETY: attached; valid objects; -1 means an exception is set.
        match unsafe { ffi::PyObject_IsInstance(self.as_ptr(), cls.as_ptr()) } {
            -1 => Err(PyErr::fetched()),
            v => Ok(v == 1),
        }
    }

    /// `self[key] = value` (a dict).
    pub fn set_item(self, key: Borrowed<'_, 'py>, value: Borrowed<'_, 'py>) -> PyResult<()> {
        // SAFETY: attached; objects of this interpreter; the dict takes its own references.
        check(unsafe { ffi::PyDict_SetItem(self.as_ptr(), key.as_ptr(), value.as_ptr()) })
    }

    pub fn is_true(self) -> PyResult<bool> {
        // SAFETY: attached; valid object; -1 means an exception is set.
        match unsafe { ffi::PyObject_IsTrue(self.as_ptr()) } {
            -1 => Err(PyErr::fetched()),
            v => Ok(v == 1),
        }
    }

    /// The contents of a `str` as UTF-8 (CPython caches the encoding in the object).
    pub fn as_str(self, what: &str) -> PyResult<&'a str> {
        // SAFETY: valid object.
        if unsafe { ffi::PyUnicode_Check(self.as_ptr()) } == 0 {
            return Err(self.py().type_error(&format!("{what} must be str")));
        }
        let mut len: ffi::Py_ssize_t = 0;
        // SAFETY: a str; returns its cached UTF-8 (owned by the object) or null.
        let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(self.as_ptr(), &mut len) };
        if data.is_null() {
            return Err(PyErr::fetched());
        }
        // SAFETY: CPython guarantees valid UTF-8 of `len` bytes, alive as long as the object
        // (`'a`) and immutable.
        Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), len.unsigned_abs())) })
    }

    /// The contents of a `bytes` object (immutable, alive for `'a`).
    pub fn as_bytes(self, what: &str) -> PyResult<&'a [u8]> {
        if !self.is_exactly(&raw mut ffi::PyBytes_Type) && !self.has_type_flags(ffi::Py_TPFLAGS_BYTES_SUBCLASS) {
            return Err(self.py().type_error(&format!("{what} must be bytes")));
        }
        // SAFETY: a bytes object: its buffer is immutable, `GET_SIZE` bytes long, owned by
        // the object, which lives for `'a`.
        Ok(unsafe { slice(ffi::PyBytes_AS_STRING(self.as_ptr()).cast(), ffi::PyBytes_Size(self.as_ptr())) })
    }

    /// An int argument as `i64` (`TypeError` for non-ints, `OverflowError` when out of range).
    pub fn as_i64(self, what: &str) -> PyResult<i64> {
        if !self.has_type_flags(ffi::Py_TPFLAGS_LONG_SUBCLASS) {
            return Err(self.py().type_error(&format!("{what} must be int")));
        }
        // SAFETY: an int; -1 with an exception set means overflow.
        let v = unsafe { ffi::PyLong_AsLongLong(self.as_ptr()) };
        if v == -1 && self.py().error_occurred() {
            return Err(PyErr::fetched());
        }
        Ok(v)
    }

    /// A real number as `f64` (`TypeError` for anything else).
    pub fn as_f64(self) -> PyResult<f64> {
        // SAFETY: attached; valid object; -1.0 with an exception set means failure.
        let v = unsafe { ffi::PyFloat_AsDouble(self.as_ptr()) };
        if v == -1.0 && self.py().error_occurred() {
            return Err(PyErr::fetched());
        }
        Ok(v)
    }

    /// `str(obj)` as a Rust string, never failing (for messages).
    pub fn describe(self) -> String {
        // SAFETY: attached; valid object; new reference or null.
        let text = unsafe { self.py().own(ffi::PyObject_Str(self.as_ptr())) };
        let described = text.ok().and_then(|t| t.borrowed().as_str("str()").ok().map(str::to_owned));
        self.py().clear_exception();
        described.unwrap_or_else(|| "<str() failed>".to_owned())
    }

    /// The name of the object's type (`tp_name`), for messages.
    pub fn type_name(self) -> String {
        // SAFETY: every type has a NUL-terminated `tp_name` that lives as long as the type.
        unsafe { CStr::from_ptr((*self.type_ptr()).tp_name) }.to_string_lossy().into_owned()
    }
}

/// A slice over `len` bytes at `ptr` (empty when `len <= 0`, whatever `ptr` is).
///
/// # Safety
/// When `len > 0`, `ptr` points to `len` readable bytes that stay valid and unchanged for `'a`.
pub unsafe fn slice<'a>(ptr: *const u8, len: ffi::Py_ssize_t) -> &'a [u8] {
    match usize::try_from(len) {
        // SAFETY: the caller's contract.
        Ok(n) if n > 0 => unsafe { std::slice::from_raw_parts(ptr, n) },
        _ => &[],
    }
}

/// A strong reference to an object of the attached interpreter; released on drop.
/// Transparent: a slice of them is an array of object pointers ([`Owned::array`]).
#[repr(transparent)]
pub struct Owned<'py>(NonNull<ffi::PyObject>, PhantomData<Python<'py>>);

impl<'py> Owned<'py> {
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }

    /// The objects of `items` as a C array of (borrowed) object pointers, valid while
    /// `items` is.
    pub fn array(items: &[Owned<'py>]) -> *const *mut ffi::PyObject {
        items.as_ptr().cast()
    }

    pub fn borrowed(&self) -> Borrowed<'_, 'py> {
        Borrowed(self.0, PhantomData)
    }

    /// Hand the reference over (e.g. as a C-API return value or to a stealing call).
    pub fn into_ptr(self) -> *mut ffi::PyObject {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// Keep the reference beyond this attachment (see [`Stashed`]).
    pub fn stash(self) -> Stashed {
        // SAFETY: attached (the lifetime proves it).
        let interp = unsafe { ffi::PyInterpreterState_Get() } as usize;
        let ptr = self.into_ptr();
        crate::debug::keep(ptr);
        Stashed { ptr: NonNull::new(ptr).expect("non-null"), interp }
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        // SAFETY: the lifetime keeps the drop inside the attachment the reference was made
        // in, and `Owned` is `!Send`, so this is the object's interpreter.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

/// A strong reference kept beyond one attachment: by a worker thread between tasks, by a
/// module state's slots, by the codec's caches. It remembers its interpreter and refuses to be
/// used or released from another one (and in debug mode, `src/debug.rs`, is registered and
/// checked as every kept object is). It is neither `Send` nor `Sync`, so nothing holding one
/// can move to another thread or be shared with one (`Python::detached` closures included).
/// It must be given back with [`Stashed::release`] while attached; forgetting it leaks the
/// object, which is safe.
pub struct Stashed {
    ptr: NonNull<ffi::PyObject>,
    interp: usize,
}

impl Stashed {
    /// Borrow the object; panics if `py` is attached to another interpreter.
    pub fn bind<'a, 'py>(&'a self, py: Python<'py>) -> Borrowed<'a, 'py> {
        crate::debug::check(self.ptr.as_ptr(), "a stashed object");
        assert_eq!(py.interpreter(), self.interp, "Stashed object used from another interpreter");
        Borrowed(self.ptr, PhantomData)
    }

    /// The object's address (for identity and GC traversal; not a reference).
    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.ptr.as_ptr()
    }

    /// Visit the reference for the GC (a `tp_traverse` or `m_traverse` of its owner).
    pub fn visit(&self, visit: ffi::visitproc, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
        // SAFETY: GC traversal (CPython's visitproc and argument) of a strong reference this
        // Stashed owns, in its own interpreter (a GC visits only its interpreter's objects).
        unsafe { visit(self.ptr.as_ptr(), arg) }
    }

    /// Release the reference; panics if `py` is attached to another interpreter.
    pub fn release(self, py: Python<'_>) {
        crate::debug::release(self.ptr.as_ptr(), "a stashed object");
        assert_eq!(py.interpreter(), self.interp, "Stashed object released from another interpreter");
        // SAFETY: the stashed strong reference, released while attached to its interpreter.
        unsafe { ffi::Py_DECREF(self.ptr.as_ptr()) }
    }

    /// Release the reference where no token is at hand (a `Drop` of a cache entry).
    ///
    /// # Safety
    /// The calling thread is attached to the object's interpreter.
    pub unsafe fn release_attached(self) {
        // SAFETY: attached (the caller's contract); `release` checks it is the right interpreter.
        self.release(unsafe { Python::assume() });
    }
}

/// `tp_free` of a heap type, then the instance's reference to its type (the end of every
/// `tp_dealloc` of our types).
///
/// # Safety
/// `obj` is an instance of the heap type `tp` whose refcount reached zero and whose Rust
/// fields were already dropped; attached.
pub unsafe fn free_instance(obj: *mut ffi::PyObject, tp: *mut ffi::PyTypeObject) {
    // SAFETY: heap types always have a tp_free slot with the `freefunc` signature.
    let free: ffi::freefunc = unsafe { std::mem::transmute(ffi::PyType_GetSlot(tp, ffi::Py_tp_free)) };
    // SAFETY: `obj` was allocated by this type's tp_alloc; instances own a reference to
    // their heap type, released last.
    unsafe {
        free(obj.cast());
        ffi::Py_DECREF(tp.cast());
    }
}

/// A C-API status (`0` or more: success, `-1`: an exception is set) as a result.
pub fn check(status: c_int) -> PyResult<()> {
    if status < 0 { Err(PyErr::fetched()) } else { Ok(()) }
}

/// A NUL-terminated copy of `s` for the C API (`ValueError` if `s` contains NUL).
pub fn cstring(py: Python<'_>, s: &str, what: &str) -> PyResult<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| py.value_error(&format!("{what} must not contain NUL characters")))
}

/// `assert_not_impl!(Type: Trait, ...)`: a build error if `Type` implements any of the traits
/// (the "ambiguous impl" trick of the `static_assertions` crate). The ownership rules that
/// must hold at compile time are stated with it next to the types they constrain, so that a
/// change that would let an object or a token leave its thread fails every build.
macro_rules! assert_not_impl {
    ($ty:ty: $($tr:path),+) => {
        const _: fn() = || {
            trait AmbiguousIfImpl<A> {
                fn some_item() {}
            }
            impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
            $({
                #[allow(dead_code)]
                struct Invalid;
                impl<T: ?Sized + $tr> AmbiguousIfImpl<Invalid> for T {}
            })+
            let _ = <$ty as AmbiguousIfImpl<_>>::some_item;
        };
    };
}
pub(crate) use assert_not_impl;

// A token proves attachment on this thread only; references stay in their interpreter's thread
// (`Python::detached` takes only `Send` closures, so none of these can be used while detached).
assert_not_impl!(Python<'static>: Send, Sync);
assert_not_impl!(Owned<'static>: Send, Sync);
assert_not_impl!(Borrowed<'static, 'static>: Send, Sync);
assert_not_impl!(Stashed: Send, Sync);
