//! One own-GIL subinterpreter, owned by the OS thread that created it.
//!
//! The thread-state sequence (docs/design.md, "Thread states"):
//! 1. On a thread with no thread state, `Py_NewInterpreterFromConfig` with an own GIL,
//!    serialized by a process-wide lock (creation races: CPython gh-122581, gh-129824). On
//!    return the new thread state is current and attached.
//! 2. Detach while idle; re-attach to work. [`SubInterpreter::attach`] lends a [`Python`]
//!    token that borrows the handle, so no token can be used after [`SubInterpreter::detach`].
//! 3. End on the same thread: attach, release every object, `Py_EndInterpreter`. Afterwards
//!    the thread has no thread state and must not call into Python again, except to create a
//!    new interpreter (recycling does exactly that).
//!
//! [`SubInterpreter`] is `!Send`: it cannot leave the thread that owns it.
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use pyo3_ffi as ffi;

use crate::fork_guard;
use crate::py::Python;

/// Interpreter creation is serialized process-wide.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// An own-GIL interpreter whose only thread state belongs to the current OS thread.
pub struct SubInterpreter {
    tstate: NonNull<ffi::PyThreadState>,
    attached: bool,
    _not_send: PhantomData<*mut ()>,
}

impl SubInterpreter {
    /// Create an interpreter on this thread and return it *attached*.
    ///
    /// # Safety
    /// The calling thread has no thread state (a fresh thread, or one whose previous
    /// interpreter was ended), and the runtime is initialized and not finalizing.
    pub unsafe fn create() -> Result<Self, String> {
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut tstate: *mut ffi::PyThreadState = std::ptr::null_mut();
        // Counted from *before* creation: a fork() while it runs must take the guarded exit.
        let guard = fork_guard::Alive::new();
        let lock = CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: no thread state on this thread (caller's contract), so CPython creates the
        // interpreter from the main interpreter's config; `config` and `tstate` outlive it.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
        drop(lock);
        // SAFETY: only inspects the status value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 {
            let msg = if status.err_msg.is_null() {
                "unknown error".into()
            } else {
                // SAFETY: CPython's status messages are static NUL-terminated strings.
                unsafe { CStr::from_ptr(status.err_msg) }.to_string_lossy()
            };
            return Err(format!("cannot create a subinterpreter: {msg}"));
        }
        let tstate = NonNull::new(tstate).ok_or("cannot create a subinterpreter: no thread state")?;
        guard.keep();
        Ok(SubInterpreter { tstate, attached: true, _not_send: PhantomData })
    }

    /// Release this interpreter's GIL (idempotent).
    pub fn detach(&mut self) {
        if self.attached {
            // SAFETY: our thread state is current and attached on this thread.
            unsafe { ffi::PyEval_SaveThread() };
            self.attached = false;
        }
    }

    /// Re-take this interpreter's GIL and lend a token for as long as the handle is borrowed.
    pub fn attach(&mut self) -> Python<'_> {
        if !self.attached {
            // SAFETY: the thread state was saved by `detach` on this same thread (the type is
            // `!Send`), and pools end every interpreter before the runtime finalizes.
            unsafe { ffi::PyEval_RestoreThread(self.tstate.as_ptr()) };
            self.attached = true;
        }
        // SAFETY: attached until `detach` or `end`, which need `&mut self` and so cannot be
        // called while the token (which borrows `self`) is in use.
        unsafe { Python::assume() }
    }

    /// End the interpreter on its own thread. Every object of the interpreter held from Rust
    /// must have been released before.
    pub fn end(mut self) {
        self.attach();
        // SAFETY: our thread state is current, attached and has no frames (no Python code is
        // running on this thread); afterwards the thread has no thread state.
        unsafe { ffi::Py_EndInterpreter(self.tstate.as_ptr()) };
        fork_guard::Alive::ended();
        std::mem::forget(self);
    }
}

impl Drop for SubInterpreter {
    fn drop(&mut self) {
        // Ending is explicit (`end`): it must happen after releasing the interpreter's objects.
        // Reaching this means a code path forgot to; leaking the interpreter is safe, ending it
        // here might not be.
        debug_assert!(false, "SubInterpreter dropped without end()");
        self.detach();
    }
}
