//! Stopping a task that runs in a worker interpreter, from another thread.
//!
//! The watchdog (a Rust thread with no interpreter) must make the running Python code raise
//! `interpool.TaskInterrupted` at its next bytecode boundary, so that `finally` blocks and
//! `with` statements run and the interpreter stays usable. It must never block: the worker
//! may hold its GIL in a long C call. The mechanism (docs/design.md, "Stopping tasks"):
//!
//! - the watchdog queues a *pending call* into the worker's interpreter with
//!   `_PyEval_AddPendingCall(interp, ...)`. That function is exported by every CPython
//!   3.12-3.14 build but is not public API, so it is looked up at run time; where it is
//!   missing, stop requests are not delivered and stuck tasks are given up after the grace
//!   period instead. (`Py_AddPendingCall` only reaches the main interpreter.)
//! - the interpreter runs the call at its next eval-breaker check, on whichever of its
//!   threads gets there first. On the worker's own thread it sets the exception and returns
//!   -1, which raises it in the running code; on another thread of that interpreter (one the
//!   task started) it sets an async exception for the worker's thread, which is race-free
//!   under the interpreter's GIL (free-threaded builds queue the call again instead).
//! - requests are coalesced (at most one queued per worker: the queue is small, and CPython
//!   uses it too) and checked against the task running when the call runs, so a request for
//!   a task that already ended never touches the next one.
//! - the exception is raised once per task (`Cell::delivered`), as the thread lane does: the
//!   watchdog repeats its request until the call returns (a request may be lost, or wait
//!   behind a C call), but a task that got its `TaskInterrupted` runs its `finally` blocks
//!   and `__exit__` methods undisturbed; one that does not return within the grace period is
//!   given up as before.
//! - waits that interpool owns (`Queue.get`/`put`) run detached in Rust, where pending calls
//!   never run: they wake in slices and call [`check_stop`], which raises the stop request of
//!   the worker's running task there.
//!
//! What a stopped task is told is worded here once, for worker tasks and the fallback lane's
//! alike: the `TaskInterrupted` messages and the notes of a stopped task's `TimeoutError`
//! ([`TIMED_OUT`], [`INTERRUPTED`], [`RESULT_DROPPED`], [`stuck_note`]; the package reads them
//! as `_interpool.STOP_*` and `_stuck_note`, and builds the exceptions in `_errors.stopped_error`).
//! The thread lane stops its calls with `_interrupt_thread`.
use std::cell::RefCell;
use std::ffi::{CStr, c_int, c_long, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use interpool_core::{Interrupt, Stop};
use pyo3_ffi as ffi;

use crate::args::Args;
use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::ModuleRef;
use crate::trampoline::{Module, method};

/// The message of the `TaskInterrupted` raised in a task stopped by its time limit.
pub const TIMED_OUT: &CStr = c"the task ran longer than its timeout";
/// The message of the `TaskInterrupted` raised in a task stopped by `interrupt()` or a shutdown.
pub const INTERRUPTED: &CStr = c"the task was interrupted";
/// The note of a task that returned although it was asked to stop.
pub const RESULT_DROPPED: &CStr = c"the task ended after it was asked to stop; its result was dropped";

/// The note of a task given up because it did not stop within `grace` after it was asked to.
pub fn stuck_note(grace: Duration) -> String {
    format!(
        "the task did not stop within {:.1}s after it was asked to: it is stuck in code that does not return to \
         Python (a C call). Its worker was replaced; the stuck thread ends when the call returns.",
        grace.as_secs_f64()
    )
}

type AddPendingCall = unsafe extern "C" fn(
    *mut ffi::PyInterpreterState,
    extern "C" fn(*mut c_void) -> c_int,
    *mut c_void,
    c_int,
) -> c_int;

/// `_PyEval_AddPendingCall`, if this CPython exports it.
fn add_pending_call() -> Option<AddPendingCall> {
    static FOUND: OnceLock<Option<AddPendingCall>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the process.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyEval_AddPendingCall".as_ptr()) };
        // SAFETY: the exported function has this signature in 3.12-3.14 (the last argument
        // is `mainthreadonly` in 3.12 and `flags` later; 0 means neither; the result is an
        // int-sized status, 0 on success).
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, AddPendingCall>(sym) })
    })
}

/// `interpool.TaskInterrupted` of a worker's interpreter, as the cell that the watchdog
/// shares holds it: dereferenced only by [`deliver`], attached to that interpreter (checked).
struct WorkerClass {
    ptr: std::ptr::NonNull<ffi::PyObject>,
    interp: usize,
}

// SAFETY: the watchdog thread only moves and shares the cell that holds this; the pointer is
// dereferenced in `deliver` alone, after `get` checked that the thread is attached to the
// class's interpreter, whose module state keeps the class alive while the worker's cell is in
// use (the worker takes its interrupter away before its interpreter ends).
unsafe impl Send for WorkerClass {}
// SAFETY: as above; nothing is mutated through it.
unsafe impl Sync for WorkerClass {}

impl WorkerClass {
    /// The class, if `py` is attached to its interpreter.
    fn get<'py>(&self, py: Python<'py>) -> Option<Borrowed<'_, 'py>> {
        if py.interpreter() != self.interp {
            return None;
        }
        crate::debug::check(self.ptr.as_ptr(), "a worker's TaskInterrupted class");
        // SAFETY: attached to the class's interpreter (checked), which keeps it alive (above).
        Some(unsafe { py.borrow(self.ptr.as_ptr()) })
    }
}

/// What the watchdog and the worker's interpreter share about one worker.
pub struct Cell {
    /// The worker's interpreter and thread.
    interp: usize,
    thread: c_ulong,
    /// `interpool.TaskInterrupted` of the worker's interpreter (kept alive by its module).
    class: WorkerClass,
    /// The task running now (0: none), the task a request is for, and why.
    running: AtomicU64,
    target: AtomicU64,
    why: AtomicU8,
    /// A pending call is queued.
    queued: AtomicBool,
    /// The task whose stop was raised already (it is raised once per task).
    delivered: AtomicU64,
}

thread_local! {
    /// The cell of the worker that runs on this thread, if one does (see [`check_stop`]).
    static CURRENT: RefCell<Option<Arc<Cell>>> = const { RefCell::new(None) };
}

/// Whether this thread runs a worker (whose task may be asked to stop).
pub fn in_worker() -> bool {
    CURRENT.with(|current| current.borrow().is_some())
}

/// In a wait that interpool owns, on a worker's thread: raise the stop request of the task
/// running there (`TaskInterrupted`), once, as the pending call would at a bytecode boundary.
pub fn check_stop(py: Python<'_>) -> crate::py::PyResult<()> {
    let Some(cell) = CURRENT.with(|current| current.borrow().clone()) else { return Ok(()) };
    if cell.interp != py.interpreter() {
        return Ok(()); // not the worker's own interpreter
    }
    match cell.claim() {
        Some(message) => match cell.class.get(py) {
            Some(class) => {
                // SAFETY: attached to the interpreter of the class (checked by `get`).
                unsafe { ffi::PyErr_SetString(class.as_ptr(), message.as_ptr()) };
                Err(crate::py::PyErr::fetched())
            }
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// The watchdog's handle on one worker.
pub struct Interrupter(Arc<Cell>);

impl Cell {
    /// For the worker running on this thread, in the interpreter `py` is attached to.
    pub fn new(py: Python<'_>, class: Borrowed<'_, '_>) -> Arc<Cell> {
        let cell = Arc::new(Cell {
            interp: py.interpreter(),
            // SAFETY: returns this OS thread's identifier; no requirement.
            thread: unsafe { ffi::PyThread_get_thread_ident() },
            class: WorkerClass { ptr: class.non_null(), interp: py.interpreter() },
            running: AtomicU64::new(0),
            target: AtomicU64::new(0),
            why: AtomicU8::new(0),
            queued: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(&cell)));
        cell
    }

    /// A stop request for the running task waits to be raised.
    fn due(&self) -> bool {
        let target = self.target.load(Ordering::Acquire);
        target != 0
            && self.running.load(Ordering::Acquire) == target
            && self.delivered.load(Ordering::Acquire) != target
    }

    /// The stop request for the running task, if one is due and not raised yet; claims it
    /// (so it is raised once, by whoever claims it).
    fn claim(&self) -> Option<&'static CStr> {
        if !self.due() {
            return None; // no request, that task already ended, or it got its exception
        }
        let target = self.target.load(Ordering::Acquire);
        if self.delivered.swap(target, Ordering::AcqRel) == target {
            return None; // raised already: clean-up code runs undisturbed
        }
        Some(match self.why.load(Ordering::Acquire) {
            1 => TIMED_OUT,
            _ => INTERRUPTED,
        })
    }

    /// The worker starts (`id`) or ends (`0`) a task.
    pub fn set_running(&self, id: u64) {
        self.running.store(id, Ordering::SeqCst);
    }

    /// After a task that was asked to stop: drop an async exception not delivered yet, so it
    /// cannot hit the next task (it is set for this thread only).
    pub fn clear_pending(&self, _py: Python<'_>) {
        // SAFETY: attached to the worker's interpreter (token) on the worker's thread; a null
        // exception clears the thread's pending async exception.
        unsafe { ffi::PyThreadState_SetAsyncExc(self.thread as c_long, std::ptr::null_mut()) };
    }

    fn queue(self: &Arc<Self>) {
        let Some(add) = add_pending_call() else { return };
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // one is queued already; it will see the newest target
        }
        let arg = Arc::into_raw(Arc::clone(self)).cast_mut().cast::<c_void>();
        // SAFETY: the interpreter is alive while its worker's cell is in use (the worker ends
        // it only after the watchdog stopped watching the task); `deliver` takes back `arg`.
        if unsafe { add(self.interp as *mut ffi::PyInterpreterState, deliver, arg, 0) } != 0 {
            // SAFETY: not queued: take the reference back. The next resend tries again.
            drop(unsafe { Arc::from_raw(arg.cast_const().cast::<Cell>()) });
            self.queued.store(false, Ordering::Release);
        }
    }
}

/// The pending call, run by the worker's interpreter.
extern "C" fn deliver(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the reference `queue` leaked for this call.
    let cell = unsafe { Arc::from_raw(arg.cast_const().cast::<Cell>()) };
    cell.queued.store(false, Ordering::Release);
    // SAFETY: returns this OS thread's identifier.
    let on_worker = unsafe { ffi::PyThread_get_thread_ident() } == cell.thread;
    if cfg!(Py_GIL_DISABLED) && !on_worker {
        // No GIL to make the cross-thread route race-free: let the worker take it (without
        // claiming the request here, so that the worker's run of the call can).
        if cell.due() {
            cell.queue();
        }
        return 0;
    }
    let Some(message) = cell.claim() else {
        return 0; // that task already ended, or got its exception already
    };
    // SAFETY: pending calls run attached to the interpreter they were queued for.
    let py = unsafe { Python::assume() };
    let Some(class) = cell.class.get(py).map(Borrowed::as_ptr) else {
        return 0; // not the worker's interpreter (cannot happen: queued for it)
    };
    if on_worker {
        // SAFETY: pending calls run attached to the target interpreter, whose class this is;
        // returning -1 with an exception set raises it in the running code.
        unsafe { ffi::PyErr_SetString(class, message.as_ptr()) };
        return -1;
    }
    // SAFETY: attached to the worker's interpreter, holding its GIL (not free-threaded, see
    // above): the worker thread is not running, so marking its async exception cannot race.
    unsafe { ffi::PyThreadState_SetAsyncExc(cell.thread as c_long, class) };
    0
}

impl Interrupter {
    pub fn new(cell: &Arc<Cell>) -> Self {
        Interrupter(Arc::clone(cell))
    }
}

impl Interrupt for Interrupter {
    fn interrupt(&self, id: u64, why: Stop) {
        let cell = &self.0;
        if cell.running.load(Ordering::Acquire) != id {
            return;
        }
        cell.why.store(if why == Stop::Timeout { 1 } else { 2 }, Ordering::Release);
        cell.target.store(id, Ordering::Release);
        cell.queue();
    }

    fn interrupt_again(&self, id: u64, why: Stop) {
        // Given up: raise it once more (its clean-up no longer matters; its thread must end).
        let _ = self.0.delivered.compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire);
        self.interrupt(id, why);
    }
}

/// `_interrupt_thread(ident, on, /) -> bool`: raise this interpreter's `TaskInterrupted` in its
/// thread `ident` (`threading.get_ident()`) at that thread's next bytecode boundary, or with
/// `on` false withdraw one not raised yet; whether the thread was found. The thread lane stops
/// its calls with it (`_lane_thread.py`).
fn interrupt_thread<'py>(py: Python<'py>, module: ModuleRef<'py>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [ident, on] = args.exactly::<2>("_interrupt_thread")?;
    let Ok(ident) = c_ulong::try_from(ident.as_i64("ident")?) else {
        return Err(py.value_error("ident must be a thread identifier (threading.get_ident()), not a negative int"));
    };
    let class = if on.is_true()? { Some(module.state().interrupted_class(py)?) } else { None };
    let exc = class.as_ref().map_or(std::ptr::null_mut(), Owned::as_ptr);
    // SAFETY: attached; CPython looks `ident` up among the calling interpreter's thread states
    // (under its own lock) and keeps its own reference to `exc`, an exception class (this
    // interpreter's TaskInterrupted, alive in its module state) or null, which clears a
    // pending one. pyo3-ffi declares the identifier `long`, CPython `unsigned long`: same bits.
    let found = unsafe { ffi::PyThreadState_SetAsyncExc(ident as c_long, exc) };
    Ok(py.bool(found > 0))
}

/// `_stuck_note(grace, /) -> str`: [`stuck_note`], for the thread lane's calls it gives up.
fn stuck_note_py<'py>(py: Python<'py>, _module: ModuleRef<'py>, grace: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let grace = crate::args::timeout(Some(grace), "grace")?.unwrap_or_default();
    py.str(&stuck_note(grace))
}

pub const INTERRUPT_THREAD: ffi::PyMethodDef = method!(
    Module,
    c"_interrupt_thread",
    args interrupt_thread,
    c"_interrupt_thread(ident, on, /) -> bool: raise TaskInterrupted in a thread of this interpreter (on=False: withdraw it)"
);
pub const STUCK_NOTE: ffi::PyMethodDef = method!(
    Module,
    c"_stuck_note",
    o stuck_note_py,
    c"_stuck_note(grace, /) -> str: the note of a task given up after grace seconds"
);

/// The texts above that the package reads as constants (`_interpool.STOP_*`).
pub const TEXTS: [(&CStr, &CStr); 3] =
    [(c"STOP_TIMED_OUT", TIMED_OUT), (c"STOP_INTERRUPTED", INTERRUPTED), (c"STOP_RESULT_DROPPED", RESULT_DROPPED)];
