//! A worker: an own-GIL subinterpreter that runs tasks for a pool.
//!
//! Start-up (once per interpreter, on the worker's thread):
//! 1. run the pool's bootstrap source (it puts the owner's `sys.path` in place and binds
//!    `__interpool_bootstrap__`, which is `interpool._worker.bootstrap`);
//! 2. decode the pool's settings and call `bootstrap(settings, index)`, which returns the
//!    worker's *hooks* (the `_worker` module) or a message that refuses the start;
//! 3. (`initialize`, under the pool's task timeout) decode the initializer, if any, and call
//!    `hooks.initialize(initializer)`.
//!
//! Each task is decoded, called and encoded here, in Rust: the only Python code that runs is
//! the task itself. Python hooks are called only when something fails: `hooks.describe(exc)`
//! turns an exception into the payload of a `Raised`/`NotStarted` reply, and
//! `hooks.unsendable_result(fn, exc)` explains a result that cannot be sent back.
use std::ffi::CString;
use std::time::Duration;

use interpool_core::spares::Spares;
use interpool_core::{Value, WorkerFactory};
use pyo3_ffi as ffi;

use crate::codec;
use crate::interp::SubInterpreter;
use crate::interrupt::{Cell, Interrupter};
use crate::protocol::{Call, Reply, Status};
use crate::py::{Borrowed, Owned, PyResult, Python, Stashed};
use crate::state::{ModuleRef, State};
use interpool_core::{Stop, Ticket};
use std::sync::Arc;

/// How long an ending worker waits for memory it lent to come back.
const SETTLE: Duration = Duration::from_secs(10);

/// The stack a `threading.Thread` gets by default: the platform's default for new threads
/// (glibc: the `RLIMIT_STACK` soft limit, 8 MiB on most systems), not Rust's 2 MiB, which
/// recursion that works in the main thread can overflow.
pub fn default_stack_size() -> Option<usize> {
    // SAFETY: a zeroed attr is the input `pthread_attr_init` expects; destroyed once.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::pthread_attr_init(&mut attr) } != 0 {
        return None;
    }
    let mut size = 0;
    // SAFETY: an initialized attr; `size` receives the default stack size.
    let ok = unsafe { libc::pthread_attr_getstacksize(&attr, &mut size) } == 0;
    // SAFETY: initialized above, destroyed once.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    ok.then_some(size)
}

/// What every worker of a pool starts from (immutable, shared by the worker threads).
/// Spare interpreters (interpool-core's `spares`): made ahead of time on threads of their own
/// by `_fill_spares`, adopted by the next pools that need workers (`PyFactory::spares`).
pub static SPARES: Spares<SubInterpreter> = Spares::new();

/// A spare's interpreter: created on the spare's fresh thread, then detached until adopted.
fn make_spare() -> Result<SubInterpreter, String> {
    // One at a time: spares are made in the background, and making eight at once would take
    // every core from whatever the program does next for tens of milliseconds.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: spare threads are fresh (no thread state); spares are only made from Python
    // code of a running main interpreter, and ended by its exit hook before finalization.
    let mut interp = unsafe { SubInterpreter::create()? };
    interp.detach();
    Ok(interp)
}

fn discard_spare(interp: SubInterpreter) {
    interp.end();
}

/// Start spare threads until `want` wait, with the stack a pool of `stack_size` uses (0: the
/// pthread default, as `threading.stack_size()` says), each lingering `linger` unadopted.
pub fn fill_spares(want: usize, stack_size: usize, linger: Duration) -> std::io::Result<()> {
    let stack = if stack_size == 0 { default_stack_size() } else { Some(stack_size) };
    SPARES.fill(want, stack, linger, "interpool-spare", make_spare, discard_spare)
}

/// Rename the calling OS thread (Linux keeps 15 bytes).
fn name_this_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    while std::str::from_utf8(&bytes).is_err() {
        bytes.pop(); // cut at a character boundary
    }
    bytes.push(0);
    // SAFETY: a NUL-terminated name of at most 16 bytes, for the calling thread.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), bytes.as_ptr().cast()) };
}

pub struct PyFactory {
    /// Replaced when the owner's `sys.path` changes (new workers start with the current one).
    bootstrap: std::sync::Mutex<CString>,
    settings: Value,
    initializer: Option<Value>,
}

impl PyFactory {
    pub fn new(bootstrap: CString, settings: Value, initializer: Option<Value>) -> Self {
        PyFactory { bootstrap: std::sync::Mutex::new(bootstrap), settings, initializer }
    }

    /// The bootstrap source of workers started from now on.
    pub fn set_bootstrap(&self, source: CString) {
        *self.bootstrap.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = source;
    }
}

pub struct PyWorker {
    interp: SubInterpreter,
    /// The worker's `interpool._interpool` module (its state) and `interpool._worker` hooks.
    module: Stashed,
    hooks: Stashed,
    /// Shared with the watchdog, to stop the running task.
    cell: Arc<Cell>,
    replace: bool,
}

/// Run the bootstrap source and return `__interpool_bootstrap__`.
fn bootstrap_function<'py>(py: Python<'py>, source: &CString) -> PyResult<Owned<'py>> {
    let globals = py.dict()?;
    // SAFETY: attached; NUL-terminated source; `globals` is a dict (CPython adds
    // `__builtins__`); returns a new reference or null with an exception.
    let ran =
        unsafe { py.own(ffi::PyRun_String(source.as_ptr(), ffi::Py_file_input, globals.as_ptr(), globals.as_ptr())) };
    drop(ran?);
    let name = py.str("__interpool_bootstrap__")?;
    let mut found = std::ptr::null_mut();
    // SAFETY: attached; a dict and a str; `found` receives a new reference or null.
    crate::py::check(unsafe { ffi::compat::PyDict_GetItemRef(globals.as_ptr(), name.as_ptr(), &mut found) })?;
    // SAFETY: a new reference, or null when missing (then `own` reports the error below).
    unsafe { py.own(found) }
        .map_err(|_| py.runtime_error("the bootstrap source did not define __interpool_bootstrap__"))
}

/// The text of the exception that is set (for messages that leave the interpreter).
fn error_text(py: Python<'_>) -> String {
    match py.take_exception() {
        Some(exc) => format!("{}: {}", exc.borrowed().type_name(), exc.borrowed().describe()),
        None => "unknown error (no exception was set)".to_owned(),
    }
}

impl PyFactory {
    /// Steps 1-2 of start-up in the new, attached interpreter. `Ok(Err(msg))` refuses it.
    fn prepare<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Result<(Owned<'py>, Owned<'py>), String>> {
        // The bootstrap loads extension modules (interpool's own, built-ins) before it wraps the
        // loaders in the extension gate: hold the gate until it has (`isolate::Mode`).
        let _gate = py.detached(|| crate::isolate::GateHeld::enter(crate::isolate::WORKER));
        let source = self.bootstrap.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let bootstrap = bootstrap_function(py, &source)?;
        let module = py.import(c"interpool._interpool")?;
        // SAFETY: the module object just imported, alive while we hold it.
        let state = unsafe { ModuleRef::assume(module.borrowed()) }.state();
        let settings = codec::decode(py, state, &self.settings)?;
        let index = py.uint(index as u64)?;
        let hooks = bootstrap.borrowed().call_args(&[settings.borrowed(), index.borrowed()])?;
        if let Ok(refusal) = hooks.borrowed().as_str("refusal") {
            return Ok(Err(refusal.to_owned()));
        }
        py.clear_exception();
        Ok(Ok((module, hooks)))
    }

    /// Step 3: the initializer. `Ok(Some(msg))` refuses the start.
    fn run_initializer(&self, py: Python<'_>, state: &State, hooks: Borrowed<'_, '_>) -> PyResult<Option<String>> {
        let Some(initializer) = &self.initializer else { return Ok(None) };
        let initialize = hooks.getattr(c"initialize")?;
        let refusal = match codec::decode(py, state, initializer) {
            Ok(init) => initialize.borrowed().call1(init.borrowed())?,
            // Loading the initializer failed (e.g. an import): that refuses the start too.
            Err(_) => {
                let exc = py.take_exception().unwrap_or_else(|| py.none());
                hooks.getattr(c"format_failure")?.borrowed().call1(exc.borrowed())?
            }
        };
        let text = refusal.borrowed().as_str("refusal").ok().map(str::to_owned);
        py.clear_exception();
        Ok(text)
    }
}

/// The state of a worker's own module.
fn worker_state<'a>(module: Borrowed<'a, 'a>) -> &'a State {
    // SAFETY: the worker's own `interpool._interpool` module, alive while stashed.
    unsafe { ModuleRef::assume(module) }.state()
}

impl WorkerFactory for PyFactory {
    type Worker = PyWorker;
    type Input = Value;
    type Output = Reply;
    type Interrupter = Interrupter;

    type Fresh = SubInterpreter;

    fn start(&self, index: usize) -> Result<PyWorker, String> {
        // SAFETY: worker threads have no thread state: they are fresh, or their previous
        // interpreter was ended by `stop`; pools are joined before finalization (the owner
        // registers a `threading._register_atexit` hook).
        let interp = unsafe { SubInterpreter::create()? };
        self.start_from(interp, index)
    }

    fn spares(&self) -> Option<&'static Spares<SubInterpreter>> {
        Some(&SPARES)
    }

    fn adopted(&self, name: &str) {
        name_this_thread(name);
    }

    fn discard(&self, fresh: SubInterpreter) {
        discard_spare(fresh);
    }

    fn start_from(&self, mut interp: SubInterpreter, index: usize) -> Result<PyWorker, String> {
        let py = interp.attach();
        let prepared = self.prepare(py, index).and_then(|ready| {
            let (module, hooks) = match ready {
                Ok(pair) => pair,
                Err(message) => return Ok(Err(message)),
            };
            let class = worker_state(module.borrowed()).interrupted_class(py)?;
            let cell = Cell::new(py, class.borrowed());
            drop(class); // the module keeps the class alive
            Ok(Ok((module.stash(), hooks.stash(), cell)))
        });
        let outcome = match prepared {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("worker interpreter failed to start: {}", error_text(py))),
        };
        match outcome {
            Ok((module, hooks, cell)) => {
                interp.detach();
                Ok(PyWorker { interp, module, hooks, cell, replace: false })
            }
            Err(message) => {
                interp.end();
                Err(message)
            }
        }
    }

    fn interrupter(&self, worker: &PyWorker) -> Interrupter {
        Interrupter::new(&worker.cell)
    }

    fn initialize(&self, worker: &mut PyWorker) -> Result<(), String> {
        let py = worker.interp.attach();
        let state = worker_state(worker.module.bind(py));
        worker.cell.set_running(interpool_core::INIT_TASK);
        let outcome = self.run_initializer(py, state, worker.hooks.bind(py));
        worker.cell.set_running(0);
        let outcome = match outcome {
            Ok(None) => Ok(()),
            Ok(Some(refusal)) => Err(refusal),
            Err(_) => Err(format!("the initializer could not run: {}", error_text(py))),
        };
        worker.interp.detach();
        outcome
    }

    fn run(&self, worker: &mut PyWorker, ticket: &Ticket, task: Value) -> Reply {
        let py = worker.interp.attach();
        let state = worker_state(worker.module.bind(py));
        state.pins.drain(py);
        let hooks = worker.hooks.bind(py);
        let outcome = run_task(py, state, hooks, &worker.cell, ticket, &task);
        let (mut reply, replace) = outcome.unwrap_or_else(|_| {
            let message = format!("interpool's worker machinery failed: {}", error_text(py));
            (Reply { status: Status::WorkerFailed, payload: codec::text(&message) }, true)
        });
        if let Some(why) = ticket.stop_requested() {
            reply = stopped(why, reply);
        }
        worker.replace |= replace;
        worker.interp.detach();
        reply
    }

    fn stop(&self, mut worker: PyWorker) {
        let py = worker.interp.attach();
        if !worker_state(worker.module.bind(py)).pins.settle(py, SETTLE) {
            // Ending it would free memory that another interpreter may still read.
            eprintln!(
                "interpool: memory a worker interpreter lent is still in use after {}s; the interpreter is left \
                 alive instead of ended",
                SETTLE.as_secs()
            );
            worker.interp.abandon();
            return;
        }
        worker.hooks.release(py);
        worker.module.release(py);
        worker.interp.end();
    }

    fn healthy(&self, worker: &PyWorker) -> bool {
        !worker.replace
    }

    fn panicked(&self, _id: u64, message: &str) -> Reply {
        let message = format!("interpool's worker machinery failed (a Rust panic: {message}); the worker was replaced");
        Reply { status: Status::WorkerFailed, payload: codec::text(&message) }
    }

    fn abandoned(&self, _id: u64, why: Stop, grace: Duration) -> Reply {
        let message = crate::interrupt::stuck_note(grace);
        stopped(why, Reply { status: Status::WorkerFailed, payload: codec::text(&message) })
    }
}

/// The reply of a task that was asked to stop: its payload (the exception raised where it was
/// stopped, or a message) under the status that says why.
fn stopped(why: Stop, reply: Reply) -> Reply {
    let status = match why {
        Stop::Timeout => Status::TimedOut,
        Stop::Interrupt => Status::Interrupted,
    };
    match reply.status {
        Status::Raised | Status::WorkerFailed => Reply { status, payload: reply.payload },
        _ => Reply { status, payload: codec::text(&crate::interrupt::RESULT_DROPPED.to_string_lossy()) },
    }
}

/// Decode, call, encode; also whether the interpreter must be replaced afterwards. `Err`
/// means the worker's own machinery failed (not the task).
fn run_task(
    py: Python<'_>,
    state: &State,
    hooks: Borrowed<'_, '_>,
    cell: &Cell,
    ticket: &Ticket,
    task: &Value,
) -> PyResult<(Reply, bool)> {
    let call = match Call::decode(py, state, task) {
        Ok(call) => call,
        Err(_) => return failure(py, state, hooks, Status::NotStarted),
    };
    // Stop requests reach the call only: never the decoding before it, nor the describing
    // and encoding after it.
    cell.set_running(ticket.id());
    let called = call.call();
    cell.set_running(0);
    if ticket.stop_requested().is_some() {
        cell.clear_pending(py);
    }
    let result = match called {
        Ok(result) => result,
        Err(_) => return failure(py, state, hooks, Status::Raised),
    };
    let func = call.into_function();
    match codec::encode_reply(py, state, result.borrowed()) {
        Ok(payload) => Ok((Reply { status: Status::Returned, payload }, false)),
        Err(_) => {
            let exc = py.take_exception().unwrap_or_else(|| py.none());
            let explain = hooks.getattr(c"unsendable_result")?;
            let described = explain.borrowed().call_args(&[func.borrowed(), exc.borrowed()])?;
            let payload = codec::encode(py, state, described.borrowed())?;
            Ok((Reply { status: Status::Raised, payload }, is_memory_error(exc.borrowed())?))
        }
    }
}

fn is_memory_error(exc: Borrowed<'_, '_>) -> PyResult<bool> {
    // SAFETY: reading an immutable global exception type pointer (an immortal class).
    let memory_error = unsafe { exc.py().borrow(ffi::PyExc_MemoryError) };
    exc.is_instance(memory_error)
}

/// The reply for the exception that is set; a `MemoryError` also replaces the interpreter
/// (its heap may be in a bad state).
fn failure(py: Python<'_>, state: &State, hooks: Borrowed<'_, '_>, status: Status) -> PyResult<(Reply, bool)> {
    let exc = py.take_exception().unwrap_or_else(|| py.none());
    let described = hooks.getattr(c"describe")?.borrowed().call1(exc.borrowed())?;
    let payload = codec::encode(py, state, described.borrowed())?;
    Ok((Reply { status, payload }, is_memory_error(exc.borrowed())?))
}
