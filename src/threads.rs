//! `sys._current_frames()` and `sys._current_exceptions()` limited to the calling interpreter.
//!
//! CPython's own versions (`_PyThread_CurrentFrames`/`_PyThread_CurrentExceptions` in
//! Python/pystate.c, 3.12-3.14) walk the thread states of *every* interpreter. For a thread of
//! another interpreter, `_current_frames` makes the frame object of that thread's running frame
//! (`_PyFrame_GetFrameObject`) with the caller's allocator and links it into the other
//! interpreter's frame, and both functions take references to the other interpreter's objects
//! while its own thread keeps running under its own GIL. The other interpreter later frees the
//! caller's frame object with its own allocator: `free(): invalid pointer` or a segfault, far
//! from the cause (docs/design.md, "Objects and interpreters"). Dask's workers call
//! `sys._current_frames()` every 10 ms (their statistical profiler), so a Dask cluster in the
//! same process as a pool crashed within seconds; so does pytest-timeout's stack dump.
//!
//! interpool replaces both functions in every interpreter it runs (`_setup.configure`) with the
//! ones here, which walk only the calling interpreter's thread states, as the originals do for
//! a process without subinterpreters. The walk holds this interpreter's GIL, so no thread of it
//! can end (a thread unlinks its state while attached) or change its frames. A thread state of
//! the *main* interpreter may also be made and deleted by a worker thread without the main
//! GIL, when CPython runs an extension module's init function in the main interpreter for a
//! worker (`switch_to_main_interpreter`, Python/import.c), from the first modules a worker's
//! interpreter loads while it is created; workers do that only inside the extension gate
//! (`isolate::GateHeld`), which the walk holds exclusively.
//!
//! On free-threaded builds other threads of the interpreter run while the walk reads their
//! frames, so the walk also stops them, as CPython's own does (`_PyEval_StopTheWorld`, exported
//! but not public; looked up at run time).
//!
//! Two fields of `PyThreadState` have no getter: `thread_id` (the key of both dicts,
//! `threading.get_ident()`) and `exc_info`. Their offsets in `struct _ts`
//! (Include/cpython/pystate.h) are fixed per CPython minor version; each walk first checks the
//! `thread_id` offset against the calling thread, and refuses with `RuntimeError` on a build
//! where it does not hold.
use std::ffi::c_ulong;

use pyo3_ffi as ffi;

use crate::isolate::{GateHeld, Mode};
use crate::py::{Owned, PyResult, Python};
use crate::state::ModuleRef;
use crate::trampoline::{Module, method};

/// `offsetof(PyThreadState, thread_id)` and `offsetof(PyThreadState, exc_info)`.
#[cfg(Py_3_13)]
const OFFSETS: (usize, usize) = (152, 120);
#[cfg(not(Py_3_13))]
const OFFSETS: (usize, usize) = (136, 104);

/// `_PyErr_StackItem` (Include/cpython/pystate.h), the same in 3.12-3.14.
#[repr(C)]
struct StackItem {
    exc_value: *mut ffi::PyObject,
    previous_item: *const StackItem,
}

/// One thread state of the calling interpreter, as read by the walk.
struct Thread {
    state: *mut ffi::PyThreadState,
    ident: c_ulong,
}

/// The calling interpreter's thread states, each with its `thread_id`.
fn threads(py: Python<'_>) -> PyResult<Vec<Thread>> {
    // SAFETY: attached, so the current thread state is this thread's, alive.
    let me = unsafe { ffi::PyThreadState_Get() };
    // SAFETY: as above; PyThread_get_thread_ident has no preconditions.
    let (mine, ident) = unsafe { (read_ident(me), ffi::PyThread_get_thread_ident()) };
    if mine != ident {
        return Err(py.runtime_error(
            "interpool cannot read this CPython's thread states (an unknown PyThreadState layout): \
             sys._current_frames() and sys._current_exceptions() are unavailable while interpool is loaded",
        ));
    }
    let mut found = Vec::new();
    // SAFETY: attached to this interpreter; its thread list changes only under its GIL (held)
    // or, for the main interpreter, inside the extension gate (held by the caller).
    let mut state = unsafe { ffi::PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Get()) };
    while !state.is_null() {
        // SAFETY: a linked, live thread state (above).
        found.push(Thread { state, ident: unsafe { read_ident(state) } });
        // SAFETY: as above.
        state = unsafe { ffi::PyThreadState_Next(state) };
    }
    Ok(found)
}

/// `state->thread_id`.
///
/// # Safety
/// `state` is a live thread state.
unsafe fn read_ident(state: *mut ffi::PyThreadState) -> c_ulong {
    // SAFETY: the field lies inside `struct _ts` at this offset (checked against the calling
    // thread before any other state is read).
    unsafe { state.cast::<u8>().add(OFFSETS.0).cast::<c_ulong>().read() }
}

/// Run `walk` holding the extension gate: taken detached (a gate holder may be waiting for this
/// interpreter's GIL), then re-attached; on free-threaded builds with the interpreter's other
/// threads stopped.
fn gated<'py, T>(py: Python<'py>, walk: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // Only the main interpreter's thread states are made and deleted by other interpreters'
    // threads (a worker's own are linked and unlinked under its GIL, which the walk holds).
    let _gate = py.is_main_interpreter().then(|| py.detached(|| GateHeld::enter(Mode::Exclusive)));
    #[cfg(Py_GIL_DISABLED)]
    let _stopped = world::Stopped::new();
    walk()
}

#[cfg(Py_GIL_DISABLED)]
mod world {
    use std::ffi::c_void;
    use std::sync::OnceLock;

    use pyo3_ffi as ffi;

    type WorldFn = unsafe extern "C" fn(*mut ffi::PyInterpreterState);

    fn find(name: &std::ffi::CStr) -> Option<WorldFn> {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: both functions take the interpreter and return nothing (3.13t, 3.14t).
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, WorldFn>(sym) })
    }

    fn functions() -> Option<(WorldFn, WorldFn)> {
        static FOUND: OnceLock<Option<(WorldFn, WorldFn)>> = OnceLock::new();
        *FOUND.get_or_init(|| Some((find(c"_PyEval_StopTheWorld")?, find(c"_PyEval_StartTheWorld")?)))
    }

    /// The calling interpreter's other threads, stopped until drop (when this CPython exports
    /// the functions; otherwise nothing is stopped, as on a build with a GIL).
    pub struct Stopped(Option<(WorldFn, *mut ffi::PyInterpreterState)>);

    impl Stopped {
        pub fn new() -> Self {
            // SAFETY: attached (the caller holds a token), so the interpreter is the caller's.
            let interp = unsafe { ffi::PyInterpreterState_Get() };
            Stopped(functions().map(|(stop, start)| {
                // SAFETY: attached; stops the other threads of this interpreter until `start`.
                unsafe { stop(interp) };
                (start, interp)
            }))
        }
    }

    impl Drop for Stopped {
        fn drop(&mut self) {
            if let Some((start, interp)) = self.0 {
                // SAFETY: restarts the threads stopped in `new`, on the same thread.
                unsafe { start(interp) };
            }
        }
    }
}

unsafe extern "C" {
    /// Public since 3.8 (Include/sysmodule.h); not in pyo3-ffi.
    fn PySys_Audit(event: *const std::ffi::c_char, format: *const std::ffi::c_char, ...) -> std::ffi::c_int;
}

/// Raise the audit event the original function raises.
fn audit(_py: Python<'_>, event: &std::ffi::CStr) -> PyResult<()> {
    // SAFETY: attached; a NUL-terminated event name and no format (no arguments).
    crate::py::check(unsafe { PySys_Audit(event.as_ptr(), std::ptr::null()) })
}

/// `current_frames() -> dict`: `sys._current_frames()` for this interpreter's threads.
fn current_frames<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    audit(py, c"sys._current_frames")?;
    let result = py.dict()?;
    gated(py, || {
        for thread in threads(py)? {
            // SAFETY: attached; a live thread state of this interpreter (see `threads`): its
            // frame object is made with this interpreter's allocator. New reference or null
            // (no frame), with no exception set.
            let frame = unsafe { ffi::PyThreadState_GetFrame(thread.state) };
            if frame.is_null() {
                continue;
            }
            // SAFETY: attached; a new reference to a frame of this interpreter.
            let frame = unsafe { py.own(frame.cast())? };
            result.borrowed().set_item(py.ulong(thread.ident)?.borrowed(), frame.borrowed())?;
        }
        Ok(())
    })?;
    Ok(result)
}

/// `current_exceptions() -> dict`: `sys._current_exceptions()` for this interpreter's threads.
fn current_exceptions<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    audit(py, c"sys._current_exceptions")?;
    let result = py.dict()?;
    gated(py, || {
        for thread in threads(py)? {
            // SAFETY: a live thread state of this interpreter; `exc_info` is at this offset
            // (the layout was checked in `threads`) and always points to a stack item.
            let mut item = unsafe { thread.state.cast::<u8>().add(OFFSETS.1).cast::<*const StackItem>().read() };
            // SAFETY: the thread's exception stack, which only changes under this interpreter's
            // GIL (held); `_PyErr_GetTopmostException`: skip empty items.
            let exc = unsafe {
                while !item.is_null()
                    && ((*item).exc_value.is_null() || (*item).exc_value == ffi::Py_None())
                    && !(*item).previous_item.is_null()
                {
                    item = (*item).previous_item;
                }
                if item.is_null() { std::ptr::null_mut() } else { (*item).exc_value }
            };
            let exc = if exc.is_null() {
                py.none()
            } else {
                // SAFETY: attached; an exception (or None) of this interpreter, kept alive by
                // its thread's stack while we hold the GIL; we take our own reference.
                unsafe { py.borrow(exc) }.to_owned()
            };
            result.borrowed().set_item(py.ulong(thread.ident)?.borrowed(), exc.borrowed())?;
        }
        Ok(())
    })?;
    Ok(result)
}

pub const CURRENT_FRAMES: ffi::PyMethodDef = method!(
    Module,
    c"current_frames",
    noargs current_frames,
    c"current_frames() -> dict: sys._current_frames() for the calling interpreter's threads only"
);
pub const CURRENT_EXCEPTIONS: ffi::PyMethodDef = method!(
    Module,
    c"current_exceptions",
    noargs current_exceptions,
    c"current_exceptions() -> dict: sys._current_exceptions() for the calling interpreter's threads only"
);
