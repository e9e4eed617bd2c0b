//! `interpool.Queue`: one Rust queue of [`Value`]s, seen through a Python object in every
//! interpreter that receives it (as a task argument, initarg, result, queue item, or by
//! pickle within this process). Items are encoded on `put` and rebuilt on `get`, so
//! interpreters never share an object. The object (`QueueObject`) is defined in `handles.rs`,
//! below the codec; its constructor and methods are here.
//!
//! Blocking calls release the caller's GIL and sleep on a condition variable; they wake when
//! an item (or room) arrives. In slices of [`SIGNAL_SLICE`] they re-take the GIL just to run
//! signal handlers, so Ctrl-C interrupts a blocked `get()` in the main thread; in a worker,
//! in slices of [`STOP_SLICE`], to raise a stop request of its task (`TaskInterrupted`).
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use interpool_core::{GetError, PutError, SharedQueue, Wait, WeakQueue};
use pyo3_ffi as ffi;

use crate::args::{self, Args};
use crate::codec;
use crate::handles::{self, QueueObject};
use crate::object::Instance;
use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::{ErrorClass, ModuleRef, State};
use crate::trampoline::{self, Module, SLOTS_END, class_slots, getter, method, new_slot, table_slot, type_spec};

const SIGNAL_SLICE: Duration = Duration::from_millis(100);
/// The slice on a worker's thread, where a wait also ends when the running task is asked to
/// stop (`TaskInterrupted`, see `interrupt::check_stop`): the latency of that stop.
const STOP_SLICE: Duration = Duration::from_millis(10);

/// Queues that were pickled in this process, by address (see `__reduce__`). Rust data only.
fn registry() -> &'static Mutex<HashMap<usize, WeakQueue>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, WeakQueue>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Turn `block`/`timeout` into a wait, like `queue.Queue`.
fn wait_for(block: bool, timeout: Option<Duration>) -> Wait {
    match (block, timeout) {
        (false, _) => Wait::Never,
        (true, None) => Wait::Forever,
        (true, Some(t)) => Instant::now().checked_add(t).map_or(Wait::Forever, Wait::Until),
    }
}

/// Run a blocking queue operation with the GIL released, waking every `SIGNAL_SLICE` to run
/// signal handlers (every `STOP_SLICE` in a worker, to raise a stop request of its task). `op(wait)` returns `Err(Some(e))` for a final error and `Err(None)` when
/// its wait ran out.
fn blocking<T: Send, E: Send>(
    py: Python<'_>,
    wait: Wait,
    mut op: impl FnMut(Wait) -> Result<T, Option<E>> + Send,
) -> PyResult<Result<T, Option<E>>> {
    // Fast path: no GIL release when the operation completes at once.
    match op(Wait::Never) {
        Err(None) if wait != Wait::Never => {}
        done => return Ok(done),
    }
    let slice = if crate::interrupt::in_worker() { STOP_SLICE } else { SIGNAL_SLICE };
    loop {
        let slice_end = Instant::now() + slice;
        let slice = match wait {
            Wait::Until(deadline) if deadline <= slice_end => Wait::Until(deadline),
            _ => Wait::Until(slice_end),
        };
        match py.detached(|| op(slice)) {
            Err(None) => {
                if matches!(wait, Wait::Until(d) if Instant::now() >= d) {
                    return Ok(Err(None));
                }
                py.check_signals()?;
                crate::interrupt::check_stop(py)?;
            }
            done => return Ok(done),
        }
    }
}

/// `Queue(maxsize=0)`
fn queue_new<'py>(_py: Python<'py>, _state: &'py State, args: Args<'py>) -> PyResult<QueueObject> {
    let [maxsize] = args.parse("Queue", ["maxsize"], 0)?;
    let maxsize = maxsize.map_or(Ok(0), |m| m.as_i64("maxsize"))?;
    // As queue.Queue: maxsize <= 0 means unbounded.
    Ok(QueueObject::new(SharedQueue::new(usize::try_from(maxsize).unwrap_or(0))))
}

fn do_put<'py>(
    py: Python<'py>,
    slf: Instance<'py, QueueObject>,
    obj: Borrowed<'_, 'py>,
    wait: Wait,
) -> PyResult<Owned<'py>> {
    let state = slf.state();
    let value = codec::encode(py, state, obj)?;
    let queue = slf.get().queue();
    let mut pending = Some(value);
    let outcome = blocking(py, wait, |w| {
        let Some(v) = pending.take() else { return Ok(()) };
        match queue.put(v, w) {
            Ok(()) => Ok(()),
            Err(PutError::Full(v)) => {
                pending = Some(v);
                Err(None)
            }
            Err(PutError::Closed(_)) => Err(Some(())),
        }
    })?;
    match outcome {
        Ok(()) => Ok(py.none()),
        Err(None) => Err(state.raise(py, ErrorClass::QueueFull, "queue is full")),
        Err(Some(())) => Err(state.raise(py, ErrorClass::QueueClosed, "queue is closed")),
    }
}

fn do_get<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>, wait: Wait) -> PyResult<Owned<'py>> {
    let state = slf.state();
    let queue = slf.get().queue();
    let outcome = blocking(py, wait, |w| match queue.get(w) {
        Ok(v) => Ok(v),
        Err(GetError::Empty) => Err(None),
        Err(GetError::Closed) => Err(Some(())),
    })?;
    match outcome {
        Ok(value) => codec::decode(py, state, &value),
        Err(None) => Err(state.raise(py, ErrorClass::QueueEmpty, "queue is empty")),
        Err(Some(())) => Err(state.raise(py, ErrorClass::QueueClosed, "queue is closed and empty")),
    }
}

/// `put(obj, block=True, timeout=None)`
fn put<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [obj, block, timeout] = args.parse("put", ["obj", "block", "timeout"], 1)?;
    let wait = wait_for(args::flag(block, true)?, args::timeout(timeout, "timeout")?);
    do_put(py, slf, obj.expect("required"), wait)
}

/// `get(block=True, timeout=None)`
fn get<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [block, timeout] = args.parse("get", ["block", "timeout"], 0)?;
    let wait = wait_for(args::flag(block, true)?, args::timeout(timeout, "timeout")?);
    do_get(py, slf, wait)
}

fn put_nowait<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>, obj: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    do_put(py, slf, obj, Wait::Never)
}

fn get_nowait<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    do_get(py, slf, Wait::Never)
}

fn qsize<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    py.uint(slf.get().queue().len() as u64)
}

fn empty<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().queue().is_empty()))
}

fn full<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().queue().is_full()))
}

fn close<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    slf.get().queue().close();
    Ok(py.none())
}

fn maxsize<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    py.uint(slf.get().queue().maxsize() as u64)
}

fn closed<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    Ok(py.bool(slf.get().queue().is_closed()))
}

/// `__reduce__`: pickles as a reference to this very queue, valid in this process only.
fn reduce<'py>(py: Python<'py>, slf: Instance<'py, QueueObject>) -> PyResult<Owned<'py>> {
    let queue = slf.get().queue();
    let key = queue.id();
    {
        let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
        reg.retain(|_, weak| weak.is_alive());
        reg.insert(key, queue.downgrade());
    }
    let func = py.import(c"interpool._interpool")?.borrowed().getattr(c"_queue_from_id")?;
    let args = py.tuple(vec![py.uint(u64::from(std::process::id()))?, py.uint(key as u64)?])?;
    py.tuple(vec![func, args])
}

/// `_queue_from_id(pid, key)`: the unpickling side of `Queue.__reduce__`.
pub fn from_id<'py>(py: Python<'py>, module: ModuleRef<'py>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [pid, key] = args.exactly::<2>("_queue_from_id")?;
    let (pid, key) = (pid.as_i64("pid")?, key.as_i64("key")?);
    let found = (pid == i64::from(std::process::id()))
        .then(|| {
            registry().lock().unwrap_or_else(PoisonError::into_inner).get(&(key as usize)).and_then(WeakQueue::upgrade)
        })
        .flatten();
    let Some(queue) = found else {
        return Err(py.runtime_error(
            "this interpool.Queue no longer exists, or was pickled in another process: queues can only be sent to \
             interpreters of the process that created them",
        ));
    };
    handles::wrap_queue(py, module.state(), queue)
}

static mut METHODS: [ffi::PyMethodDef; 10] = [
    method!(QueueObject, c"put", args put,
        c"put($self, obj, block=True, timeout=None)\n--\n\nPut a copy of obj; block while full. Raises QueueFull or QueueClosed."),
    method!(QueueObject, c"get", args get,
        c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item; block while empty. Raises QueueEmpty or QueueClosed."),
    method!(QueueObject, c"put_nowait", o put_nowait, c"put_nowait($self, obj, /)\n--\n\nput(obj, block=False)"),
    method!(QueueObject, c"get_nowait", noargs get_nowait, c"get_nowait($self)\n--\n\nget(block=False)"),
    method!(QueueObject, c"qsize", noargs qsize, c"qsize($self)\n--\n\nNumber of items queued."),
    method!(QueueObject, c"empty", noargs empty, c"empty($self)\n--\n\nWhether no item is queued."),
    method!(QueueObject, c"full", noargs full, c"full($self)\n--\n\nWhether a bounded queue is at maxsize."),
    method!(QueueObject, c"close", noargs close,
        c"close($self)\n--\n\nRefuse further puts and wake every waiter; gets drain what is left."),
    method!(QueueObject, c"__reduce__", noargs reduce, c"Pickle support (same process only)."),
    ffi::PyMethodDef::zeroed(),
];

static mut GETSET: [ffi::PyGetSetDef; 3] = [
    getter!(QueueObject, c"maxsize", maxsize, c"the bound given at creation (0: unbounded)"),
    getter!(QueueObject, c"closed", closed, c"whether close() was called"),
    trampoline::GETSET_END,
];

static mut SLOTS: [ffi::PyType_Slot; 7] = {
    let [dealloc, traverse, doc] = class_slots!(
        QueueObject,
        c"Queue(maxsize=0)\n--\n\nA FIFO queue usable from every interpreter of this process. Items are copied \
(natively for built-in types, by pickle otherwise); blocking calls release the GIL and wake as soon as they can \
proceed."
    );
    [
        new_slot!(QueueObject, queue_new),
        dealloc,
        traverse,
        doc,
        table_slot!(Py_tp_methods, METHODS),
        table_slot!(Py_tp_getset, GETSET),
        SLOTS_END,
    ]
};

pub static mut QUEUE_SPEC: ffi::PyType_Spec =
    type_spec!(c"interpool.Queue", QueueObject, SLOTS, ffi::Py_TPFLAGS_DEFAULT);

/// `_queue_cycles() -> (collected, containers_alive)`: run a collection of queue cycles now
/// and report (tests; collections otherwise run on their own when a queue is dropped).
fn cycles<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    let collected = interpool_core::collect_queue_cycles();
    py.tuple(vec![py.uint(collected as u64)?, py.uint(interpool_core::containers_alive() as u64)?])
}

/// Module functions this file provides.
pub const FROM_ID: ffi::PyMethodDef =
    method!(Module, c"_queue_from_id", args from_id, c"_queue_from_id(pid, key) -> Queue: unpickle a Queue");

pub const CYCLES: ffi::PyMethodDef =
    method!(Module, c"_queue_cycles", noargs cycles, c"_queue_cycles() -> (collected, containers_alive)");
