//! One own-GIL subinterpreter, owned by the OS thread that created it.
//!
//! The thread-state sequence (docs/design.md, "Thread states"):
//! 1. On a thread with no thread state, `Py_NewInterpreterFromConfig` with an own GIL; on
//!    3.12 and 3.13 serialized by a process-wide lock ([`serialized`]: creation races there),
//!    in parallel from 3.14 on. On return the new thread state is current and attached.
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
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use crate::fork_guard;
use crate::isolate::GateHeld;
use crate::py::Python;

/// Serializes creating and ending interpreters where CPython needs it (see [`serialized`]).
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// The process-wide creation lock, on the CPython versions that need one.
///
/// 3.12 crashes when interpreters are created or ended concurrently (its own stress test,
/// `test_create_many_threaded`, still crashed there: allocator and static-type races), and
/// 3.13 has no stdlib user of concurrent creation to vouch for it, so both keep the lock.
/// From 3.14 on, CPython itself creates and ends own-GIL interpreters concurrently (the
/// stdlib `InterpreterPoolExecutor` does so from its worker threads, with no lock), and what
/// thread sanitizer still reports there (gh-129824) are same-value writes of global aliases
/// during module init; so from 3.14 on workers start in parallel (docs/design.md).
fn serialized() -> Option<MutexGuard<'static, ()>> {
    (!cfg!(Py_3_14)).then(|| CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner))
}

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
        let lock = serialized();
        // Creation loads modules through the main interpreter (`isolate::Mode`).
        let gate = GateHeld::enter(crate::isolate::WORKER);
        // SAFETY: no thread state on this thread (caller's contract), so CPython creates the
        // interpreter from the main interpreter's config; `config` and `tstate` outlive it.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
        drop(gate);
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
    ///
    /// Threads that tasks started must finish first: on 3.12 and 3.13 `Py_EndInterpreter`
    /// aborts the process if any other thread state of the interpreter remains ("not the last
    /// thread"), and it waits without limit for `threading.Thread`s. So wait for them here,
    /// with the GIL released, up to [`THREADS_GRACE`]; if some never finish, the interpreter is
    /// left alive (leaked) with a message, which is safe where ending it would not be.
    pub fn end(mut self) {
        let me = self.tstate;
        let py = self.attach();
        let interp = py.interpreter();
        // Its copies' own threads make no new thread state of it from now on (src/gilstate.rs).
        let slot = crate::gilstate::Closing::new(interp);
        if !wait_for_other_threads(py, me) {
            slot.reopen(interp);
            eprintln!(
                "interpool: threads started by tasks in a worker interpreter are still running after {}s; \
                 the interpreter is left alive instead of ended (ending it would abort the process)",
                THREADS_GRACE.as_secs()
            );
            self.detach();
            std::mem::forget(self);
            return;
        }
        // Serialized with creation where that is (allocator races, gh-123134). The lock is taken
        // detached: ending an interpreter stops the world, which waits for every attached
        // thread, so no thread may wait for this lock while attached.
        self.detach();
        let lock = serialized();
        let gate = GateHeld::enter(crate::isolate::WORKER); // detached, as every wait for it
        self.attach();
        // SAFETY: our thread state is current, attached and has no frames (no Python code is
        // running on this thread), and it is the interpreter's only one; afterwards the thread
        // has no thread state.
        unsafe { ffi::Py_EndInterpreter(self.tstate.as_ptr()) };
        slot.ended();
        crate::debug::interpreter_ended(interp);
        drop(gate);
        drop(lock);
        fork_guard::Alive::ended();
        std::mem::forget(self);
    }
}

impl SubInterpreter {
    /// Leave the interpreter alive, detached, for good (when ending it would be unsafe).
    pub fn abandon(mut self) {
        self.detach();
        std::mem::forget(self);
    }
}

/// How long ending an interpreter waits for threads its tasks started.
const THREADS_GRACE: Duration = Duration::from_secs(60);

/// Thread states of `me`'s interpreter other than `me`.
fn other_thread_states(_py: Python<'_>, me: NonNull<ffi::PyThreadState>) -> usize {
    let mut count = 0;
    // SAFETY: attached to this interpreter (token): a thread state unlinks itself from the
    // list while holding the interpreter's GIL, so every state reachable now stays valid while
    // we walk the list (free-threaded builds, where that does not hold, skip the walk).
    unsafe {
        let mut t = ffi::PyInterpreterState_ThreadHead(ffi::PyThreadState_GetInterpreter(me.as_ptr()));
        while !t.is_null() {
            count += usize::from(t != me.as_ptr());
            t = ffi::PyThreadState_Next(t);
        }
    }
    count
}

/// Wait (GIL released between looks) until `me` is its interpreter's only thread state.
fn wait_for_other_threads(py: Python<'_>, me: NonNull<ffi::PyThreadState>) -> bool {
    if cfg!(Py_GIL_DISABLED) {
        return true; // no GIL to make the walk safe; 3.14t's Py_EndInterpreter waits itself
    }
    let deadline = Instant::now() + THREADS_GRACE;
    while other_thread_states(py, me) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        py.detached(|| std::thread::sleep(Duration::from_millis(1)));
    }
    true
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
