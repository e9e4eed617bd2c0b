//! `interpool.SharedBuffer`: memory shared between interpreters without copying.
//!
//! - All Python objects for one buffer, in any interpreter, share one `Arc`'d memory; every
//!   value in transit holds a reference too: a *lease*. Each interpreter exports the memory
//!   through its own `SharedBuffer` object, so a memoryview in a worker belongs to the worker.
//! - `SharedBuffer(size)` allocates zeroed memory owned by Rust (freed with the last lease,
//!   from any thread; a size that cannot be allocated raises `MemoryError`).
//! - `SharedBuffer(obj)` over a bytes-like object is zero-copy in the *main* interpreter: a
//!   [`Pin`] keeps `obj`'s `Py_buffer` (so `obj` cannot resize or free the memory) and releases
//!   it in the main interpreter as soon as the last lease goes (see `pin.rs`). In a
//!   subinterpreter, which may end while others still read, it copies the bytes once into Rust
//!   memory instead.
//! - The user synchronizes reads and writes (e.g. with a Queue): the memory is shared.
//!
//! The object (`BufferObject`) is defined in `handles.rs`, below the codec; its constructor
//! and methods are here.
use std::alloc::Layout;
use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::Arc;

use interpool_core::SharedMemory;
use pyo3_ffi as ffi;

use crate::args::Args;
use crate::handles::{self, BufferObject};
use crate::object::Instance;
use crate::pin::Pin;
use crate::py::{Owned, PyResult, Python};
use crate::state::State;
use crate::trampoline::{self, SLOTS_END, class_slots, getter, method, new_slot, table_slot, type_spec};

/// Zeroed bytes owned by Rust.
struct Allocation {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain heap memory, freed once (Drop); concurrent access to the bytes is the
// user's to synchronize, as with any shared memory.
unsafe impl Send for Allocation {}
// SAFETY: as above.
unsafe impl Sync for Allocation {}

impl Allocation {
    /// `len` zeroed bytes, or `None` if they cannot be allocated.
    fn zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            return Some(Allocation { ptr: NonNull::dangling(), len });
        }
        let layout = Layout::array::<u8>(len).ok()?;
        // SAFETY: a non-zero-sized layout; null means the allocation failed.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).map(|ptr| Allocation { ptr, len })
    }

    fn copy_of(data: &[u8]) -> Option<Self> {
        let alloc = Self::zeroed(data.len())?;
        // SAFETY: `alloc` has room for `data.len()` bytes and does not overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), alloc.ptr.as_ptr(), data.len()) };
        Some(alloc)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated by `zeroed` with this very layout, freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Layout::array::<u8>(self.len).expect("valid layout")) }
        }
    }
}

impl SharedMemory for Allocation {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn readonly(&self) -> bool {
        false
    }
}

const USAGE: &str = "SharedBuffer() takes one positional argument: a size in bytes, or a bytes-like object";

/// `SharedBuffer(source, /)`
fn buffer_new<'py>(py: Python<'py>, state: &'py State, args: Args<'py>) -> PyResult<BufferObject> {
    let [source] = args.exactly::<1>("SharedBuffer").map_err(|_| {
        py.clear_exception();
        py.type_error(USAGE)
    })?;
    if source.has_type_flags(ffi::Py_TPFLAGS_LONG_SUBCLASS) {
        let size =
            usize::try_from(source.as_i64("size")?).map_err(|_| py.value_error("SharedBuffer size must be >= 0"))?;
        let memory = Allocation::zeroed(size).ok_or_else(|| py.memory_error())?;
        return Ok(BufferObject::new(Arc::new(memory), false));
    }
    let Some(pin) = Pin::acquire(&state.pins, source)? else {
        return Err(py.type_error(&format!(
            "SharedBuffer() needs a size or a C-contiguous bytes-like object (bytes, bytearray, memoryview, \
             array.array, mmap, ...), not {}",
            source.type_name()
        )));
    };
    if py.is_main_interpreter() {
        return Ok(BufferObject::new(handles::lend(pin), true));
    }
    // A subinterpreter may end while others still read: copy into Rust memory (the pin is
    // released right away, here, in its own interpreter).
    // SAFETY: the pin keeps `len` bytes at `ptr` valid and unchanged while it lives.
    let data = unsafe { std::slice::from_raw_parts(pin.as_ptr(), pin.len()) };
    let copy = Allocation::copy_of(data).ok_or_else(|| py.memory_error())?;
    Ok(BufferObject::new(Arc::new(copy), false))
}

/// `bf_getbuffer`: export the shared memory through this object.
unsafe extern "C" fn getbuffer(slf: *mut ffi::PyObject, view: *mut ffi::Py_buffer, flags: c_int) -> c_int {
    let fill = |_py: Python<'_>, slf: Instance<'_, BufferObject>| {
        let lease = slf.get().memory();
        let len = isize::try_from(lease.len()).unwrap_or(isize::MAX);
        let readonly = c_int::from(lease.readonly());
        // SAFETY: `view` is CPython's to fill; the memory stays valid while `view.obj` (this
        // object, which holds a lease, and which the view references) is alive.
        let filled =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.obj().as_ptr(), lease.as_ptr().cast(), len, readonly, flags) };
        crate::py::check(filled).map(|()| 0)
    };
    // SAFETY: CPython calls bf_getbuffer attached, with a SharedBuffer and a view to fill.
    unsafe { trampoline::slot::<BufferObject, c_int>(slf, fill) }
}

/// `sq_length`
unsafe extern "C" fn length(slf: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    let len = |py: Python<'_>, slf: Instance<'_, BufferObject>| py.ssize(slf.get().memory().len());
    // SAFETY: CPython calls sq_length attached, with a SharedBuffer.
    unsafe { trampoline::slot::<BufferObject, ffi::Py_ssize_t>(slf, len) }
}

fn readonly<'py>(py: Python<'py>, slf: Instance<'py, BufferObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().memory().readonly()))
}

fn zero_copy<'py>(py: Python<'py>, slf: Instance<'py, BufferObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().zero_copy()))
}

fn reduce<'py>(py: Python<'py>, _slf: Instance<'py, BufferObject>) -> PyResult<Owned<'py>> {
    Err(py.type_error(
        "SharedBuffer cannot be pickled: pass it to tasks directly (as an argument, initarg, result or Queue item, \
         also inside tuples, lists and dicts), which shares it without copying",
    ))
}

static mut METHODS: [ffi::PyMethodDef; 2] = [
    method!(BufferObject, c"__reduce__", noargs reduce, c"SharedBuffers are shared, not pickled."),
    ffi::PyMethodDef::zeroed(),
];

static mut GETSET: [ffi::PyGetSetDef; 3] = [
    getter!(BufferObject, c"readonly", readonly, c"whether the memory is read-only"),
    getter!(
        BufferObject,
        c"zero_copy",
        zero_copy,
        c"whether this object pins another object's memory (True) rather than owning a copy"
    ),
    trampoline::GETSET_END,
];

static mut SLOTS: [ffi::PyType_Slot; 9] = {
    let [dealloc, traverse, doc] = class_slots!(
        BufferObject,
        c"SharedBuffer(source, /)\n--\n\nMemory shared with worker interpreters without copying. SharedBuffer(n) \
allocates n zeroed bytes; SharedBuffer(obj) shares a bytes-like object's memory (zero-copy in the main interpreter, \
one copy in a subinterpreter). Use memoryview(buf) to read or write; synchronizing access is up to you."
    );
    [
        new_slot!(BufferObject, buffer_new),
        dealloc,
        traverse,
        doc,
        ffi::PyType_Slot { slot: ffi::Py_bf_getbuffer, pfunc: getbuffer as *mut std::ffi::c_void },
        ffi::PyType_Slot { slot: ffi::Py_sq_length, pfunc: length as *mut std::ffi::c_void },
        table_slot!(Py_tp_methods, METHODS),
        table_slot!(Py_tp_getset, GETSET),
        SLOTS_END,
    ]
};

pub static mut BUFFER_SPEC: ffi::PyType_Spec =
    type_spec!(c"interpool.SharedBuffer", BufferObject, SLOTS, ffi::Py_TPFLAGS_DEFAULT);
