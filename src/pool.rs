//! `_interpool.Pool` and `_interpool.Ticket`: the pool engine (`interpool-core`) with
//! [`PyFactory`] workers, as seen by the executor in `interpool/_executor.py`.
//!
//! These are private building blocks: positional arguments, types checked, user-facing
//! validation and messages in the Python layer.
use std::time::{Duration, Instant};

use interpool_core::{Pool, PoolConfig, Stats, SubmitError, Ticket};
use pyo3_ffi as ffi;

use crate::args::{self, Args};
use crate::codec;
use crate::object::{Instance, PyClass, new_object};
use crate::protocol::{self, Reply, Status};
use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::State;
use crate::trampoline::{self, SLOTS_END, class_slots, getter, method, new_slot, table_slot, type_spec};
use crate::worker::PyFactory;

/// How long `join` waits with the GIL released before checking for signals (Ctrl-C).
const JOIN_SLICE: Duration = Duration::from_millis(100);

pub struct PoolObject {
    engine: Pool<PyFactory>,
    /// The smallest buffer of a task's pickled arguments sent out of band (`zero_copy=`).
    zero_copy: Option<u64>,
}

pub struct TicketObject {
    ticket: Ticket,
}

impl PyClass for PoolObject {
    fn type_object(state: &State) -> *mut ffi::PyTypeObject {
        state.pool_type()
    }
}

impl PyClass for TicketObject {
    fn type_object(state: &State) -> *mut ffi::PyTypeObject {
        state.ticket_type()
    }
}

/// `Pool(max_workers, thread_name_prefix, bootstrap, settings, initializer,
/// max_tasks_per_worker, stack_size, init_timeout, grace, zero_copy)`; a `stack_size` of 0
/// means the platform's default for threads; `init_timeout` is seconds or None, `grace`
/// seconds; `zero_copy` the smallest pickle buffer lent, or None.
fn pool_new<'py>(py: Python<'py>, state: &'py State, args: Args<'py>) -> PyResult<PoolObject> {
    let [workers, prefix, bootstrap, settings, initializer, max_tasks, stack_size, init_timeout, grace, zero_copy] =
        args.exactly::<10>("Pool")?;
    let workers = usize::try_from(workers.as_i64("workers")?)
        .ok()
        .filter(|w| (1..=4096).contains(w))
        .ok_or_else(|| py.value_error("workers must be between 1 and 4096"))?;
    let prefix = prefix.as_str("thread_name_prefix")?;
    if prefix.contains('\0') {
        return Err(py.value_error("thread_name_prefix must not contain NUL characters"));
    }
    let bootstrap = crate::py::cstring(py, bootstrap.as_str("bootstrap")?, "bootstrap")?;
    let settings = codec::encode(py, state, settings)?;
    let initializer = if initializer.is_none() { None } else { Some(codec::encode(py, state, initializer)?) };
    let config = PoolConfig {
        max_workers: workers,
        thread_name_prefix: prefix.to_owned(),
        max_tasks_per_worker: u64::try_from(max_tasks.as_i64("max_tasks_per_worker")?).ok().filter(|&m| m > 0),
        stack_size: match usize::try_from(stack_size.as_i64("stack_size")?) {
            Ok(0) | Err(_) => crate::worker::default_stack_size(),
            Ok(size) => Some(size),
        },
        init_timeout: args::timeout(Some(init_timeout), "init_timeout")?,
        grace: args::timeout(Some(grace), "grace")?.unwrap_or(Duration::from_secs(5)),
    };
    let zero_copy = if zero_copy.is_none() {
        None
    } else {
        Some(u64::try_from(zero_copy.as_i64("zero_copy")?).map_err(|_| py.value_error("zero_copy must be >= 0"))?)
    };
    Ok(PoolObject { engine: Pool::new(PyFactory::new(bootstrap, settings, initializer), config), zero_copy })
}

/// `submit(id, fn, args, kwargs, timeout) -> Ticket`: encode the call and queue it, in one
/// step; `timeout` (seconds or None) limits how long it may run once started.
fn submit<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [id, func, call_args, call_kwargs, timeout] = args.exactly::<5>("submit")?;
    let timeout = args::timeout(Some(timeout), "timeout")?;
    let id = u64::try_from(id.as_i64("id")?).map_err(|_| py.value_error("id must be >= 0"))?;
    let state = slf.state();
    let task = protocol::encode_task(py, state, func, call_args, call_kwargs, slf.get().zero_copy)?;
    let ticket = match slf.get().engine.submit(id, task, timeout) {
        Ok(ticket) => ticket,
        Err(SubmitError::Shutdown(_)) => return Err(py.runtime_error("cannot schedule new futures after shutdown")),
        Err(SubmitError::Broken(msg, _)) => return Err(py.runtime_error(&format!("pool is broken: {msg}"))),
    };
    new_object(py, state, TicketObject { ticket })
}

/// `shutdown(cancel_pending, interrupt_running) -> list[int]`: the ids of the tasks it
/// cancelled.
fn shutdown<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [cancel, interrupt] = args.exactly::<2>("shutdown")?;
    let ids = slf.get().engine.shutdown(cancel.is_true()?, interrupt.is_true()?);
    py.list(ids.into_iter().map(|id| py.uint(id)).collect::<PyResult<_>>()?)
}

/// `interrupt(ticket) -> bool`: cancel the task if queued, stop it if running.
fn interrupt<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, ticket: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let Some(ticket) = Instance::<TicketObject>::downcast(ticket, slf.state()) else {
        return Err(py.type_error("interrupt() needs a Ticket"));
    };
    Ok(py.bool(slf.get().engine.interrupt(&ticket.get().ticket)))
}

/// `next_events(max) -> list | None`: block (GIL released) until events arrive; `None` once
/// every worker exited and every event was taken.
fn next_events<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, max: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let max = usize::try_from(max.as_i64("max")?).unwrap_or(1);
    let engine = &slf.get().engine;
    // Wait for the first event detached, then take the rest once attached again: the events
    // that came while this thread waited for the GIL join the batch. Dispatchers take turns
    // (`reader`), so the others wait for the whole batch to be taken, not an event each.
    let (turn, first) = py.detached(|| {
        let turn = engine.reader();
        (turn, engine.next_event())
    });
    let Some(first) = first else {
        return Ok(py.none());
    };
    let mut batch = vec![first];
    engine.drain_events(&mut batch, max);
    drop(turn);
    let state = slf.state();
    state.pins.drain(py);
    py.list(batch.into_iter().map(|e| protocol::event(py, state, e)).collect::<PyResult<_>>()?)
}

/// `wait_reply(ticket, seconds, future, spin) -> bool | None`: wait (GIL released) up to
/// `seconds` for the reply of `ticket`'s task to come to this thread directly instead of to
/// a dispatcher (one thread hand-off less), and complete `future` with it here
/// (`future._settle(result)`); with `spin`, spinning briefly first. `None`: not in time (a
/// later wait may still take it). `False`: it went to a dispatcher, or it is one that a
/// dispatcher completes (anything but a returned result, or a future that others watch).
///
/// Atomic with respect to asynchronous exceptions (Ctrl-C's `KeyboardInterrupt` from a
/// signal handler, which may run at any bytecode boundary of `_settle`): the reply is held
/// in Rust until `_settle` has recorded the outcome; if an exception ends it first, the reply
/// goes to the event channel after all (a dispatcher completes the future) and the exception
/// propagates to the waiter, never becoming the task's outcome.
fn wait_reply<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [ticket, wait, future, spin] = args.exactly::<4>("wait_reply")?;
    let Some(ticket) = Instance::<TicketObject>::downcast(ticket, slf.state()) else {
        return Err(py.type_error("wait_reply() needs a Ticket"));
    };
    let wait = args::timeout(Some(wait), "seconds")?.unwrap_or(Duration::ZERO);
    let (engine, ticket) = (&slf.get().engine, ticket.get().ticket.clone());
    let spin = spin.is(py.bool(true).borrowed());
    let Some(taken) = py.detached(|| engine.wait_output(&ticket, wait, spin)) else {
        return Ok(if ticket.posted() { py.bool(false) } else { py.none() });
    };
    let Reply { status, payload } = taken.output();
    if *status != Status::Returned {
        return Ok(py.bool(false)); // dropping `taken` sends it to a dispatcher
    }
    let result = match codec::decode(py, slf.state(), payload) {
        Ok(result) => result,
        // A dispatcher decodes it again and reports what fails; an asynchronous exception
        // (not an `Exception`) raised in code that unpickling ran goes to this waiter.
        // SAFETY: attached; an exception is set.
        Err(err) if unsafe { ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) } == 0 => return Err(err),
        Err(_) => {
            py.clear_exception();
            return Ok(py.bool(false));
        }
    };
    match future.getattr(c"_settle").and_then(|settle| settle.borrowed().call1(result.borrowed())) {
        Ok(settled) => {
            let settled = settled.borrowed().is(py.bool(true).borrowed());
            if settled {
                taken.accept();
            }
            Ok(py.bool(settled))
        }
        Err(err) => {
            // Interrupted: if the outcome was recorded before, it stands; else `taken` goes
            // to a dispatcher when dropped. Either way the exception is the waiter's.
            let exc = py.take_exception();
            if finished(future) {
                taken.accept();
            }
            Err(exc.map_or(err, |exc| py.restore_exception(exc)))
        }
    }
}

/// Whether a future's `_state` is `FINISHED` (read without running Python code: an instance
/// or class attribute of a `TaskFuture`).
fn finished(future: Borrowed<'_, '_>) -> bool {
    let Ok(state) = future.getattr(c"_state") else {
        future.py().clear_exception();
        return false;
    };
    let finished = state.borrowed().as_str("_state").is_ok_and(|s| s == "FINISHED");
    future.py().clear_exception();
    finished
}

/// `join(timeout, skip_stuck) -> bool`: wait for the worker threads to exit (after
/// `shutdown`), GIL released, interruptible by signals; with `skip_stuck`, not for the
/// threads of given-up tasks.
fn join<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [timeout, skip_stuck] = args.exactly::<2>("join")?;
    let deadline = args::timeout(Some(timeout), "timeout")?.and_then(|t| Instant::now().checked_add(t));
    let skip_stuck = skip_stuck.is_true()?;
    let engine = &slf.get().engine;
    loop {
        let slice = deadline.map_or(JOIN_SLICE, |d| d.saturating_duration_since(Instant::now()).min(JOIN_SLICE));
        if py.detached(|| engine.join(Some(slice), skip_stuck)) {
            return Ok(py.bool(true));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(py.bool(false));
        }
    }
}

/// `stats() -> dict[str, int]`
fn stats<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>) -> PyResult<Owned<'py>> {
    let Stats { threads, workers, busy, queued, submitted, completed, recycled, abandoned, stuck } =
        slf.get().engine.stats();
    let dict = py.dict()?;
    for (name, value) in [
        (c"threads", threads as u64),
        (c"workers", workers as u64),
        (c"busy", busy as u64),
        (c"queued", queued as u64),
        (c"submitted", submitted),
        (c"completed", completed),
        (c"recycled", recycled),
        (c"abandoned", abandoned),
        (c"stuck", stuck as u64),
    ] {
        let value = py.uint(value)?;
        // SAFETY: attached; a dict, a NUL-terminated key; takes its own reference.
        crate::py::check(unsafe { ffi::PyDict_SetItemString(dict.as_ptr(), name.as_ptr(), value.as_ptr()) })?;
    }
    Ok(dict)
}

/// `set_bootstrap(source)`: the bootstrap source of workers started from now on.
fn set_bootstrap<'py>(
    py: Python<'py>,
    slf: Instance<'py, PoolObject>,
    source: Borrowed<'py, 'py>,
) -> PyResult<Owned<'py>> {
    let source = crate::py::cstring(py, source.as_str("bootstrap")?, "bootstrap")?;
    slf.get().engine.factory().set_bootstrap(source);
    Ok(py.none())
}

/// `broken() -> str | None`
fn broken<'py>(py: Python<'py>, slf: Instance<'py, PoolObject>) -> PyResult<Owned<'py>> {
    slf.get().engine.broken().map_or_else(|| Ok(py.none()), |msg| py.str(msg))
}

/// `cancel() -> bool`: cancel the task unless a worker started it.
fn cancel<'py>(py: Python<'py>, slf: Instance<'py, TicketObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().ticket.cancel()))
}

/// `started() -> bool`
fn started<'py>(py: Python<'py>, slf: Instance<'py, TicketObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().ticket.started()))
}

/// `id` (getter)
fn ticket_id<'py>(py: Python<'py>, slf: Instance<'py, TicketObject>) -> PyResult<Owned<'py>> {
    py.uint(slf.get().ticket.id())
}

static mut POOL_METHODS: [ffi::PyMethodDef; 10] = [
    method!(PoolObject, c"submit", args submit, c"submit(id, fn, args, kwargs, timeout, /) -> Ticket"),
    method!(PoolObject, c"shutdown", args shutdown, c"shutdown(cancel_pending, interrupt_running, /) -> list[int]"),
    method!(PoolObject, c"interrupt", o interrupt, c"interrupt(ticket, /) -> bool"),
    method!(PoolObject, c"next_events", o next_events, c"next_events(max, /) -> list | None"),
    method!(PoolObject, c"wait_reply", args wait_reply, c"wait_reply(ticket, seconds, future, spin, /) -> bool | None"),
    method!(PoolObject, c"join", args join, c"join(timeout, skip_stuck, /) -> bool"),
    method!(PoolObject, c"stats", noargs stats, c"stats() -> dict[str, int]"),
    method!(PoolObject, c"broken", noargs broken, c"broken() -> str | None"),
    method!(PoolObject, c"set_bootstrap", o set_bootstrap, c"set_bootstrap(source, /)"),
    ffi::PyMethodDef::zeroed(),
];

const POOL_DOC: &std::ffi::CStr =
    c"Worker threads, each running an own-GIL subinterpreter (private; use interpool.InterpreterPoolExecutor).";
static mut POOL_SLOTS: [ffi::PyType_Slot; 6] = {
    let [dealloc, traverse, doc] = class_slots!(PoolObject, POOL_DOC);
    [new_slot!(PoolObject, pool_new), dealloc, traverse, doc, table_slot!(Py_tp_methods, POOL_METHODS), SLOTS_END]
};

pub static mut POOL_SPEC: ffi::PyType_Spec =
    type_spec!(c"interpool._interpool.Pool", PoolObject, POOL_SLOTS, ffi::Py_TPFLAGS_DEFAULT);

static mut TICKET_METHODS: [ffi::PyMethodDef; 3] = [
    method!(TicketObject, c"cancel", noargs cancel, c"cancel() -> bool: cancel the task unless it started"),
    method!(TicketObject, c"started", noargs started, c"started() -> bool"),
    ffi::PyMethodDef::zeroed(),
];

static mut TICKET_GETSET: [ffi::PyGetSetDef; 2] =
    [getter!(TicketObject, c"id", ticket_id, c"task id, unique within its pool"), trampoline::GETSET_END];

static mut TICKET_SLOTS: [ffi::PyType_Slot; 6] = {
    let [dealloc, traverse, doc] = class_slots!(TicketObject, c"A queued task (private).");
    [
        dealloc,
        traverse,
        doc,
        table_slot!(Py_tp_methods, TICKET_METHODS),
        table_slot!(Py_tp_getset, TICKET_GETSET),
        SLOTS_END,
    ]
};

pub static mut TICKET_SPEC: ffi::PyType_Spec = type_spec!(
    c"interpool._interpool.Ticket",
    TicketObject,
    TICKET_SLOTS,
    ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION // made by Pool.submit only
);
