//! Memory of a Python object lent to other interpreters, and given back in its own.
//!
//! A [`Pin`] holds a `Py_buffer` exported by an object of its *home* interpreter, so the
//! memory stays valid (and a `bytearray` cannot resize) while other interpreters read it.
//! Buffers must be released in the interpreter that acquired them, but the last holder of a
//! pin may be any thread. So dropping a `Pin`:
//! - releases the buffer at once when the thread is attached to the home interpreter;
//! - otherwise queues it at its [`PinHome`]: the main interpreter is asked to drain that
//!   queue with `Py_AddPendingCall` (which runs in its main thread at the next bytecode
//!   boundary, whatever else happens), and a worker interpreter drains it whenever its thread
//!   attaches (before every task and before the interpreter ends).
//!
//! No `PyObject*` sits in a static: the queue lives in an `Arc` shared by the home's module
//! state and its pins.
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use crate::py::{Borrowed, PyResult, Python};

/// An acquired `Py_buffer` (boxed: CPython may keep pointers into it while it is acquired).
struct View(Box<ffi::Py_buffer>);

// SAFETY: a View moves between threads only to be released in its home interpreter (see
// `Drop for Pin`); nothing reads through it elsewhere.
unsafe impl Send for View {}

struct Home {
    /// The home interpreter (`PyInterpreterState*` as an address, for identity checks).
    interp: usize,
    main: bool,
    queued: Mutex<Vec<View>>,
    /// A pending call to drain the main interpreter's queue is scheduled.
    scheduled: AtomicBool,
    /// Pins alive anywhere.
    outstanding: AtomicUsize,
}

/// The pins of one interpreter (kept in its module state).
pub struct PinHome(Arc<Home>);

/// A lent `Py_buffer` (C-contiguous bytes).
pub struct Pin {
    /// Always `Some` until dropped.
    view: Option<View>,
    home: Arc<Home>,
}

// SAFETY: a Pin only describes memory that stays valid while it exists; its Py_buffer (and the
// exporter reference inside) is released only in the home interpreter (see Drop); a Pin is
// immutable. (`Send` follows from its fields.)
unsafe impl Sync for Pin {}

use crate::debug::attached_interpreter;

/// Release a buffer in its home interpreter.
///
/// # Safety
/// Attached to the interpreter that acquired `view`.
unsafe fn release(mut view: View) {
    // SAFETY: the caller's contract.
    unsafe { ffi::PyBuffer_Release(&mut *view.0) }
}

extern "C" fn drain_main(home: *mut c_void) -> c_int {
    // SAFETY: `home` is the `Arc<Home>` leaked by `Drop for Pin`; pending calls run in the
    // main interpreter's main thread, attached.
    let home = unsafe { Arc::from_raw(home.cast_const().cast::<Home>()) };
    home.scheduled.store(false, Ordering::Release);
    // SAFETY: pending calls run attached to the main interpreter, the home of this queue.
    unsafe { drain(&home) };
    0
}

/// Release every queued buffer.
///
/// # Safety
/// Attached to `home`'s interpreter.
unsafe fn drain(home: &Home) {
    let queued = std::mem::take(&mut *home.queued.lock().unwrap_or_else(PoisonError::into_inner));
    for view in queued {
        // SAFETY: attached to the home interpreter (caller).
        unsafe { release(view) };
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let Some(view) = self.view.take() else { return };
        let home = &self.home;
        if attached_interpreter() == Some(home.interp) {
            // SAFETY: attached to the home interpreter.
            unsafe { release(view) };
        } else {
            home.queued.lock().unwrap_or_else(PoisonError::into_inner).push(view);
            if home.main && !home.scheduled.swap(true, Ordering::AcqRel) {
                let arg = Arc::into_raw(Arc::clone(home)).cast_mut().cast::<c_void>();
                // SAFETY: may be called from any thread, attached or not; `drain_main` takes
                // back the Arc. If the queue of pending calls is full, the next drain (module
                // free, or another pin) releases it instead.
                if unsafe { ffi::Py_AddPendingCall(Some(drain_main), arg) } != 0 {
                    // SAFETY: not scheduled: take the Arc back.
                    drop(unsafe { Arc::from_raw(arg.cast_const().cast::<Home>()) });
                    home.scheduled.store(false, Ordering::Release);
                }
            }
        }
        home.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pin {
    /// Pin `obj`'s memory (writable if it allows, else read-only). `Ok(None)`: `obj` does
    /// not export a C-contiguous buffer.
    pub fn acquire(home: &PinHome, obj: Borrowed<'_, '_>) -> PyResult<Option<Pin>> {
        let py = obj.py();
        for flags in [ffi::PyBUF_WRITABLE, ffi::PyBUF_SIMPLE] {
            // SAFETY: a zeroed Py_buffer is the documented input state.
            let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
            // SAFETY: attached; valid object; on success `view` holds a reference to `obj`.
            if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) } == 0 {
                home.0.outstanding.fetch_add(1, Ordering::AcqRel);
                return Ok(Some(Pin { view: Some(View(view)), home: Arc::clone(&home.0) }));
            }
            py.clear_exception();
        }
        Ok(None)
    }

    fn view(&self) -> &ffi::Py_buffer {
        self.view.as_ref().map(|v| &*v.0).expect("a live pin has its view")
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.view().buf.cast()
    }

    pub fn len(&self) -> usize {
        self.view().len.unsigned_abs()
    }

    pub fn readonly(&self) -> bool {
        self.view().readonly != 0
    }
}

impl PinHome {
    /// The pin home of the interpreter `py` is attached to.
    pub fn new(py: Python<'_>) -> Self {
        PinHome(Arc::new(Home {
            interp: py.interpreter(),
            main: py.is_main_interpreter(),
            queued: Mutex::default(),
            scheduled: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
        }))
    }

    /// Release the buffers whose last pin was dropped elsewhere.
    pub fn drain(&self, py: Python<'_>) {
        assert_eq!(py.interpreter(), self.0.interp, "pins drained from another interpreter");
        // SAFETY: attached to the home interpreter (checked).
        unsafe { drain(&self.0) }
    }

    /// Before the home interpreter ends: wait up to `limit` for every pin to come back, and
    /// release them. `false`: some are still lent out (their memory must then be leaked).
    pub fn settle(&self, py: Python<'_>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.drain(py);
            if self.0.outstanding.load(Ordering::Acquire) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            py.detached(|| std::thread::sleep(Duration::from_millis(1)));
        }
    }
}
