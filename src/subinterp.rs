//! One own-GIL subinterpreter, owned by the OS thread that created it.
//!
//! Thread-state sequence (shared/design/subinterpreters.md, section 2):
//! 1. On a thread with no thread state, `Py_NewInterpreterFromConfig` with an own GIL,
//!    serialized by a process-wide lock (init races: CPython gh-122581, gh-129824). On
//!    return the new thread state is current and attached.
//! 2. Detach (`PyEval_SaveThread`) while idle; re-attach (`PyEval_RestoreThread`) to work.
//! 3. End on the same thread: attach, release every object, `Py_EndInterpreter`. Afterwards
//!    the thread has no thread state and must not call into Python again, except to create
//!    a new interpreter (worker recycling does exactly that).
//!
//! [`SubInterpreter`] is `!Send` and `!Sync`: it cannot leave the thread that owns it.
use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Mutex;

use pyo3_ffi as ffi;

use crate::py::Attached;

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
    /// The calling thread must have no thread state (a fresh thread, or one whose previous
    /// interpreter was ended), and the Python runtime must be initialized and not finalizing.
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
        let guard = CREATE_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: no thread state on this thread (caller's contract), so CPython creates the
        // interpreter from the main interpreter's config; `config` and `tstate` outlive the call.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
        drop(guard);
        // SAFETY: PyStatus_Exception only inspects the status value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 {
            let msg = if status.err_msg.is_null() {
                "unknown error".to_owned()
            } else {
                // SAFETY: CPython's status messages are static NUL-terminated strings.
                unsafe { CStr::from_ptr(status.err_msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("cannot create a subinterpreter: {msg}"));
        }
        let tstate =
            NonNull::new(tstate).ok_or("cannot create a subinterpreter: no thread state")?;
        crate::fork_guard::LIVE_INTERPRETERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(SubInterpreter {
            tstate,
            attached: true,
            _not_send: PhantomData,
        })
    }

    /// Release this interpreter's GIL (idempotent).
    pub fn detach(&mut self) {
        if self.attached {
            // SAFETY: our thread state is current and attached on this thread.
            let saved = unsafe { ffi::PyEval_SaveThread() };
            debug_assert_eq!(saved, self.tstate.as_ptr());
            self.attached = false;
        }
    }

    /// Re-take this interpreter's GIL and return a token (idempotent).
    pub fn attach(&mut self) -> Attached {
        if !self.attached {
            // SAFETY: the thread state was saved by `detach` on this same thread (the type is
            // `!Send`), and the pool ends every interpreter before the runtime finalizes.
            unsafe { ffi::PyEval_RestoreThread(self.tstate.as_ptr()) };
            self.attached = true;
        }
        // SAFETY: attached just above (or already).
        unsafe { Attached::assume() }
    }

    /// End the interpreter on its own thread. Every object of the interpreter held from Rust
    /// must have been released before.
    pub fn end(mut self) {
        self.attach();
        // SAFETY: our thread state is current, attached and has no frames (we are not inside
        // Python code); it is the interpreter's last thread state that we created. Afterwards
        // the thread has no thread state.
        unsafe { ffi::Py_EndInterpreter(self.tstate.as_ptr()) };
        crate::fork_guard::LIVE_INTERPRETERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        std::mem::forget(self);
    }
}

impl Drop for SubInterpreter {
    fn drop(&mut self) {
        // Ending is explicit (`end`): it must happen on the owning thread after releasing
        // the interpreter's objects. Reaching this means a code path forgot to; leaking the
        // interpreter is safe, ending it here might not be.
        debug_assert!(false, "SubInterpreter dropped without end()");
        if self.attached {
            // SAFETY: leave the thread detached, so the process can still finalize.
            unsafe { ffi::PyEval_SaveThread() };
        }
    }
}

/// The id of the interpreter this thread is attached to.
pub fn current_id(_py: Attached) -> i64 {
    // SAFETY: attached (token), so there is a current interpreter.
    unsafe { ffi::PyInterpreterState_GetID(ffi::PyInterpreterState_Get()) }
}
