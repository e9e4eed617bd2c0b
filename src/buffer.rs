//! `interpool.SharedBuffer`: memory handed to other interpreters without copying.
//!
//! Lifetime design (shared/design/subinterpreters.md, section 4):
//! - The memory is described by a [`BufferCore`] behind an `Arc`. Every `SharedBuffer`
//!   object (the owner's and each receiver's, one per interpreter that holds it) and every
//!   value in transit holds one `Arc`: a *lease*. Receivers export the memory through their
//!   own interpreter's `SharedBuffer` object, so a memoryview in a worker belongs to the
//!   worker; no object or `Py_buffer` of one interpreter is ever used by another.
//! - `SharedBuffer(size)` allocates memory owned by Rust: it is freed when the last lease
//!   goes, from whichever thread drops it, which is safe for Rust memory.
//! - `SharedBuffer(obj)` over a buffer-protocol object is zero-copy in the *main*
//!   interpreter: the owner keeps `obj`'s `Py_buffer` (so `obj` cannot resize or free the
//!   memory) and releases it in the main interpreter only once no other lease exists. If
//!   the owner object goes away first, the `Py_buffer` waits in the module's deferred list
//!   and is released there later (or, at the latest, when the module is freed at exit,
//!   after every pool was joined). In a subinterpreter, which may end while others still
//!   read, `SharedBuffer(obj)` copies the bytes once into Rust memory instead.
//! - The user synchronizes reads and writes (e.g. with a Queue): the memory is shared.
use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use interpool_core::SharedMemory;
use pyo3_ffi as ffi;

use crate::module::{ModuleState, entry};
use crate::py::{self, Attached, Owned, PyResult, method_def};

pub type Lease = Arc<dyn SharedMemory>;

/// Memory shared by leases.
struct BufferCore {
    ptr: *mut u8,
    len: usize,
    readonly: bool,
    /// Rust-owned storage (`None` when the memory belongs to a Python object whose
    /// `Py_buffer` the owner interpreter holds).
    _storage: Option<Box<[u8]>>,
}

// SAFETY: the core only describes memory; the memory stays valid while any lease exists
// (Rust storage is owned by the core; Python memory is pinned by a Py_buffer that is only
// released once the owner holds the last lease). Concurrent access to the bytes is the
// user's to synchronize, as with any shared memory.
unsafe impl Send for BufferCore {}
// SAFETY: as above; the core itself is immutable.
unsafe impl Sync for BufferCore {}

impl SharedMemory for BufferCore {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
    fn len(&self) -> usize {
        self.len
    }
    fn readonly(&self) -> bool {
        self.readonly
    }
}

impl BufferCore {
    fn owned(mut data: Box<[u8]>, readonly: bool) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            readonly,
            _storage: Some(data),
        }
    }
}

/// The owner's pinned `Py_buffer` plus the lease it protects.
pub struct Pinned {
    view: Box<ffi::Py_buffer>,
    lease: Lease,
}

// SAFETY: a Pinned only moves between the owner's objects and its module state, all in the
// main interpreter; the Mutex around the deferred list requires Send.
unsafe impl Send for Pinned {}

impl Pinned {
    /// Release the `Py_buffer` if no other lease exists; otherwise hand it back.
    ///
    /// # Safety
    /// Attached to the interpreter that acquired the buffer.
    unsafe fn try_release(mut self) -> Option<Self> {
        if Arc::strong_count(&self.lease) > 1 {
            return Some(self);
        }
        // SAFETY: ours is the only lease: nobody else can read the memory any more, and we
        // are attached to the owning interpreter (caller).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
        None
    }
}

pub type Deferred = Mutex<Vec<Pinned>>;

#[repr(C)]
pub struct BufferObject {
    ob_base: ffi::PyObject,
    lease: Lease,
    pinned: Option<Pinned>,
}

/// # Safety
/// `obj` is a live instance of a SharedBuffer type.
pub unsafe fn core_of(obj: *mut ffi::PyObject) -> Lease {
    // SAFETY: SharedBuffer instances have the BufferObject layout.
    unsafe { Arc::clone(&(*obj.cast::<BufferObject>()).lease) }
}

/// Release deferred `Py_buffer`s whose leases are all gone.
///
/// # Safety
/// Attached to the interpreter owning `state`.
pub unsafe fn sweep(state: &ModuleState) {
    if state.deferred.is_null() {
        return;
    }
    // SAFETY: `deferred` is the module's list, alive until module_free.
    let deferred = unsafe { &*state.deferred };
    let mut list = deferred.lock().unwrap_or_else(PoisonError::into_inner);
    let pending = std::mem::take(&mut *list);
    // SAFETY: attached to the owner (caller).
    *list = pending
        .into_iter()
        .filter_map(|p| unsafe { p.try_release() })
        .collect();
}

/// At module free: wait (bounded) for outstanding leases, release, and leak what is still
/// leased (leaking is safe; freeing memory someone reads is not).
///
/// # Safety
/// Attached to the interpreter owning the list; called once, from module free.
pub unsafe fn drain(deferred: Deferred) {
    let mut pending = deferred
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pending.is_empty() {
        // SAFETY: attached to the owner (caller).
        pending = pending
            .into_iter()
            .filter_map(|p| unsafe { p.try_release() })
            .collect();
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if !pending.is_empty() {
        eprintln!(
            "interpool: {} SharedBuffer(s) still leased at interpreter exit; their memory is left allocated",
            pending.len()
        );
        std::mem::forget(pending);
    }
}

pub fn new_view(py: Attached, state: &ModuleState, lease: Lease) -> PyResult<Owned> {
    // SAFETY: attached; instance of this interpreter's SharedBuffer type, fields written
    // before use.
    unsafe { new_object(py, state.buffer_type.cast(), lease, None) }
}

/// # Safety
/// Attached; `tp` is a SharedBuffer type of the current interpreter.
unsafe fn new_object(
    py: Attached,
    tp: *mut ffi::PyTypeObject,
    lease: Lease,
    pinned: Option<Pinned>,
) -> PyResult<Owned> {
    // SAFETY: fresh allocation with the BufferObject layout; fields written before use.
    unsafe {
        let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(tp, 0))?;
        let raw = obj.as_ptr().cast::<BufferObject>();
        ptr::write(&raw mut (*raw).lease, lease);
        ptr::write(&raw mut (*raw).pinned, pinned);
        Ok(obj)
    }
}

fn is_main_interpreter() -> bool {
    // SAFETY: both calls only read runtime state of an attached thread.
    unsafe { ffi::PyInterpreterState_Get() == ffi::PyInterpreterState_Main() }
}

unsafe extern "C" fn buffer_new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: tp_new, called attached.
    unsafe {
        entry(|py| {
            if ffi::PyTuple_Size(args) != 1 || (!kwds.is_null() && ffi::PyDict_Size(kwds) > 0) {
                return Err(py::type_error(
                    py,
                    "SharedBuffer() takes one positional argument: a size in bytes, or a bytes-like object",
                ));
            }
            let state = &*ModuleState::of_type(subtype);
            sweep(state);
            let source = ffi::PyTuple_GET_ITEM(args, 0);
            if ffi::PyLong_Check(source) != 0 {
                let size = py::int_arg(py, source, "size")?;
                let size = usize::try_from(size)
                    .map_err(|_| py::value_error(py, "SharedBuffer size must be >= 0"))?;
                let lease: Lease =
                    Arc::new(BufferCore::owned(vec![0u8; size].into_boxed_slice(), false));
                return new_object(py, subtype, lease, None);
            }
            let mut view: Box<ffi::Py_buffer> = Box::new(std::mem::zeroed());
            if ffi::PyObject_GetBuffer(source, &mut *view, ffi::PyBUF_WRITABLE) < 0 {
                ffi::PyErr_Clear();
                if ffi::PyObject_GetBuffer(source, &mut *view, ffi::PyBUF_SIMPLE) < 0 {
                    ffi::PyErr_Clear();
                    let name =
                        std::ffi::CStr::from_ptr((*ffi::Py_TYPE(source)).tp_name).to_string_lossy();
                    return Err(py::type_error(
                        py,
                        &format!(
                            "SharedBuffer() needs a size or a C-contiguous bytes-like object \
                             (bytes, bytearray, memoryview, array.array, mmap, ...), not {name}"
                        ),
                    ));
                }
            }
            let len = view.len.unsigned_abs();
            let readonly = view.readonly != 0;
            if !is_main_interpreter() {
                // A subinterpreter may end while others still read: copy into Rust memory.
                let data = if len == 0 {
                    Box::default()
                } else {
                    std::slice::from_raw_parts(view.buf.cast::<u8>(), len)
                        .to_vec()
                        .into_boxed_slice()
                };
                ffi::PyBuffer_Release(&mut *view);
                let lease: Lease = Arc::new(BufferCore::owned(data, readonly));
                return new_object(py, subtype, lease, None);
            }
            let lease: Lease = Arc::new(BufferCore {
                ptr: view.buf.cast::<u8>(),
                len,
                readonly,
                _storage: None,
            });
            let pinned = Pinned {
                view,
                lease: Arc::clone(&lease),
            };
            new_object(py, subtype, lease, Some(pinned))
        })
    }
}

unsafe extern "C" fn buffer_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: tp_dealloc, attached to the interpreter owning the object (so, for a pinned
    // buffer, the interpreter that acquired the Py_buffer). Fields were written at creation.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        let raw = slf.cast::<BufferObject>();
        let pinned = ptr::read(&raw const (*raw).pinned);
        ptr::drop_in_place(&raw mut (*raw).lease);
        if let Some(pinned) = pinned.and_then(|p| p.try_release()) {
            let state = &*ModuleState::of_type(tp);
            if state.deferred.is_null() {
                std::mem::forget(pinned); // module already freed: leak rather than risk it
            } else {
                (*state.deferred)
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(pinned);
            }
        }
        py::dealloc_tail(slf, tp);
    }
}

unsafe extern "C" fn buffer_getbuffer(
    slf: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: bf_getbuffer, attached; the exported memory stays valid while `view.obj`
    // (this object, which holds a lease) is alive, which PyBuffer_FillInfo ensures.
    unsafe {
        let lease = &(*slf.cast::<BufferObject>()).lease;
        let len = isize::try_from(lease.len()).unwrap_or(isize::MAX);
        ffi::PyBuffer_FillInfo(
            view,
            slf,
            lease.as_ptr().cast::<c_void>(),
            len,
            c_int::from(lease.readonly()),
            flags,
        )
    }
}

unsafe extern "C" fn buffer_len(slf: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: sq_length/mp_length, attached; instance layout as above.
    unsafe { isize::try_from((*slf.cast::<BufferObject>()).lease.len()).unwrap_or(isize::MAX) }
}

unsafe extern "C" fn buffer_readonly(
    slf: *mut ffi::PyObject,
    _: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: getter, attached.
    unsafe {
        entry(|py| {
            Ok(py::bool_obj(
                py,
                (*slf.cast::<BufferObject>()).lease.readonly(),
            ))
        })
    }
}

unsafe extern "C" fn buffer_zero_copy(
    slf: *mut ffi::PyObject,
    _: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: getter, attached.
    unsafe {
        entry(|py| {
            Ok(py::bool_obj(
                py,
                (*slf.cast::<BufferObject>()).pinned.is_some(),
            ))
        })
    }
}

unsafe extern "C" fn buffer_reduce(
    _slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, attached.
    unsafe {
        entry(|py| -> PyResult<Owned> {
            Err(py::type_error(
                py,
                "SharedBuffer cannot be pickled: pass it to tasks directly (as an argument, initarg, result or \
                 Queue item, also inside tuples, lists and dicts), which shares it without copying",
            ))
        })
    }
}

static mut METHODS: [ffi::PyMethodDef; 2] = [
    method_def!(
        c"__reduce__",
        PyCFunction,
        buffer_reduce,
        ffi::METH_NOARGS,
        c"SharedBuffers are shared, not pickled."
    ),
    ffi::PyMethodDef::zeroed(),
];

static mut GETSET: [ffi::PyGetSetDef; 3] = [
    ffi::PyGetSetDef {
        name: c"readonly".as_ptr(),
        get: Some(buffer_readonly),
        set: None,
        doc: c"whether the memory is read-only".as_ptr(),
        closure: ptr::null_mut(),
    },
    ffi::PyGetSetDef {
        name: c"zero_copy".as_ptr(),
        get: Some(buffer_zero_copy),
        set: None,
        doc: c"whether this object pins another object's memory (True) rather than owning a copy"
            .as_ptr(),
        closure: ptr::null_mut(),
    },
    py::GETSET_END,
];

static mut SLOTS: [ffi::PyType_Slot; 8] = [
    ffi::PyType_Slot { slot: ffi::Py_tp_new, pfunc: buffer_new as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_tp_dealloc, pfunc: buffer_dealloc as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_bf_getbuffer, pfunc: buffer_getbuffer as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_sq_length, pfunc: buffer_len as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_tp_methods, pfunc: (&raw mut METHODS).cast() },
    ffi::PyType_Slot { slot: ffi::Py_tp_getset, pfunc: (&raw mut GETSET).cast() },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_doc,
        pfunc: c"SharedBuffer(source, /)\n--\n\nMemory shared with worker interpreters without copying. \
SharedBuffer(n) allocates n zeroed bytes; SharedBuffer(obj) shares a bytes-like object's memory (zero-copy in the \
main interpreter, one copy in a subinterpreter). Use memoryview(buf) to read or write; synchronizing access is up \
to you."
            .as_ptr() as *mut c_void,
    },
    ffi::PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
];

pub static mut SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"interpool.SharedBuffer".as_ptr(),
    basicsize: size_of::<BufferObject>() as c_int,
    itemsize: 0,
    flags: ffi::Py_TPFLAGS_DEFAULT as u32,
    slots: (&raw mut SLOTS).cast(),
};
