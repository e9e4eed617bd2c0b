//! `_interpool.Pool` and `_interpool.Ticket`: heap types (one copy per interpreter, created
//! from the specs below by the module's exec slot) wrapping the Rust pool engine.
//!
//! These are private building blocks; the public executor is `interpool/_executor.py`.
//! Methods take positional arguments only and validate types; user-facing validation and
//! error messages live in the Python layer.
use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::time::Duration;

use interpool_core::{Event, Pool, PoolConfig, Stats, SubmitError, Ticket};
use pyo3_ffi as ffi;

use crate::module::{ModuleState, entry};
use crate::py::{self, Attached, Owned, PyErrSet, PyResult, method_def};
use crate::worker::PyFactory;

/// Reply status for a task whose reply could not be unpacked in the owner interpreter.
const STATUS_UNPACK_FAILED: i64 = -1;

/// How long `join` waits with the GIL released before checking for signals (Ctrl-C).
const JOIN_SLICE: Duration = Duration::from_millis(100);

#[repr(C)]
pub struct PoolObject {
    ob_base: ffi::PyObject,
    pool: Pool<PyFactory>,
}

#[repr(C)]
pub struct TicketObject {
    ob_base: ffi::PyObject,
    ticket: Ticket,
}

/// Check the positional argument count and return them as a slice.
///
/// # Safety
/// `args` points to `nargs` valid object pointers (METH_FASTCALL contract).
unsafe fn fast_args<'a>(
    py: Attached,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    expected: usize,
    name: &str,
) -> PyResult<&'a [*mut ffi::PyObject]> {
    let n = usize::try_from(nargs).unwrap_or(0);
    if n != expected {
        return Err(py::type_error(
            py,
            &format!("{name}() takes {expected} positional arguments ({n} given)"),
        ));
    }
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: CPython passes `nargs` valid pointers (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(args.cast_const(), n) })
}

/// # Safety
/// `slf` is a live instance of the Pool type.
unsafe fn pool_ref<'a>(slf: *mut ffi::PyObject) -> &'a Pool<PyFactory> {
    // SAFETY: instances of the Pool type have the PoolObject layout, and `pool` was
    // initialized in `pool_new` before the object became visible.
    unsafe { &(*slf.cast::<PoolObject>()).pool }
}

/// `Pool(workers, thread_name_prefix, bootstrap, config, max_tasks_per_worker)`.
unsafe extern "C" fn pool_new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with an attached thread state and valid arguments.
    unsafe {
        entry(|py| {
            if !kwds.is_null() && ffi::PyDict_Size(kwds) != 0 {
                return Err(py::type_error(py, "Pool() takes no keyword arguments"));
            }
            if ffi::PyTuple_Size(args) != 5 {
                return Err(py::type_error(py, "Pool() takes 5 positional arguments"));
            }
            let arg = |i| ffi::PyTuple_GET_ITEM(args, i);
            let workers = py::int_arg(py, arg(0), "workers")?;
            let prefix = py::str_view(py, arg(1), "thread_name_prefix")?;
            let bootstrap = py::str_view(py, arg(2), "bootstrap")?;
            let config = py::bytes_view(py, arg(3), "config")?;
            let max_tasks = py::int_arg(py, arg(4), "max_tasks_per_worker")?;
            let workers = usize::try_from(workers)
                .ok()
                .filter(|w| (1..=4096).contains(w))
                .ok_or_else(|| py::value_error(py, "workers must be between 1 and 4096"))?;
            let factory =
                PyFactory::new(bootstrap, config.to_vec()).map_err(|e| py::value_error(py, &e))?;
            let config = PoolConfig {
                workers,
                thread_name_prefix: prefix.to_owned(),
                max_tasks_per_worker: u64::try_from(max_tasks).ok().filter(|&m| m > 0),
            };
            let pool = Pool::new(factory, config)
                .map_err(|e| py::runtime_error(py, &format!("cannot start worker threads: {e}")))?;
            let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(subtype, 0))?;
            // SAFETY: fresh allocation of `basicsize = size_of::<PoolObject>()`; the field is
            // uninitialized memory, so write without dropping.
            ptr::write(&raw mut (*obj.as_ptr().cast::<PoolObject>()).pool, pool);
            Ok(obj)
        })
    }
}

unsafe extern "C" fn pool_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_dealloc once, attached, when the refcount reached zero; the
    // field was initialized in `pool_new`. Dropping the pool closes its queue without
    // waiting (the Python layer joins threads at exit).
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ptr::drop_in_place(&raw mut (*slf.cast::<PoolObject>()).pool);
        py::dealloc_tail(slf, tp);
    }
}

unsafe extern "C" fn ticket_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: as for `pool_dealloc`; the ticket was written in `pool_submit`.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ptr::drop_in_place(&raw mut (*slf.cast::<TicketObject>()).ticket);
        py::dealloc_tail(slf, tp);
    }
}

/// `submit(id: int, task: Packed) -> Ticket`
unsafe extern "C" fn pool_submit(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            let args = fast_args(py, args, nargs, 2, "submit")?;
            let id = u64::try_from(py::int_arg(py, args[0], "id")?)
                .map_err(|_| py::value_error(py, "id must be >= 0"))?;
            let state = &*ModuleState::of_type(ffi::Py_TYPE(slf));
            let payload = crate::value::take_packed(state, args[1]).ok_or_else(|| {
                py::type_error(py, "submit() needs a fresh Packed task (from pack())")
            })?;
            let ticket = match pool_ref(slf).submit(id, payload) {
                Ok(ticket) => ticket,
                Err(SubmitError::Shutdown(_)) => {
                    return Err(py::runtime_error(
                        py,
                        "cannot schedule new futures after shutdown",
                    ));
                }
                Err(SubmitError::Broken(msg, _)) => {
                    return Err(py::runtime_error(py, &format!("pool is broken: {msg}")));
                }
            };
            let tp = state.ticket_type.cast::<ffi::PyTypeObject>();
            let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(tp, 0))?;
            // SAFETY: fresh allocation with the TicketObject layout; uninitialized field.
            ptr::write(
                &raw mut (*obj.as_ptr().cast::<TicketObject>()).ticket,
                ticket,
            );
            Ok(obj)
        })
    }
}

/// `shutdown(cancel_pending: bool) -> list[int]` (ids of the tasks it cancelled)
unsafe extern "C" fn pool_shutdown(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            let args = fast_args(py, args, nargs, 1, "shutdown")?;
            let cancel = match ffi::PyObject_IsTrue(args[0]) {
                -1 => return Err(PyErrSet),
                v => v == 1,
            };
            let ids = pool_ref(slf).shutdown(cancel);
            py::list(
                py,
                ids.into_iter()
                    .map(|id| py::uint(py, id))
                    .collect::<PyResult<_>>()?,
            )
        })
    }
}

/// `next_events(max: int) -> list[tuple] | None`, blocking with the GIL released.
/// Items: `(id, (status, payload))` for a finished task, `(message: str, abandoned: list[int])`
/// when the pool broke. `None` once every worker exited and all events were taken.
unsafe extern "C" fn pool_next_events(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            let args = fast_args(py, args, nargs, 1, "next_events")?;
            let max = usize::try_from(py::int_arg(py, args[0], "max")?).unwrap_or(1);
            let pool = pool_ref(slf);
            let state = &*ModuleState::of_type(ffi::Py_TYPE(slf));
            let Some(batch) = py.detached(|| pool.next_events(max)) else {
                return Ok(py::none(py));
            };
            let mut items = Vec::with_capacity(batch.len());
            for event in batch {
                let item = match event {
                    Event::Done { id, output } => {
                        // Unpack here, so the dispatcher gets the reply ready to use. A
                        // failure (e.g. a result that cannot be unpickled in this
                        // interpreter) is isolated to its task: (STATUS_UNPACK_FAILED, exc).
                        let reply = match (crate::value::Codec { py, state }).unpack(output) {
                            Ok(reply) => reply,
                            Err(PyErrSet) => {
                                let exc = Owned::from_new(py, ffi::PyErr_GetRaisedException())?;
                                py::tuple(py, vec![py::int(py, STATUS_UNPACK_FAILED)?, exc])?
                            }
                        };
                        py::tuple(py, vec![py::uint(py, id)?, reply])?
                    }
                    Event::Broken { message, abandoned } => {
                        let ids = abandoned
                            .into_iter()
                            .map(|id| py::uint(py, id))
                            .collect::<PyResult<_>>()?;
                        py::tuple(py, vec![py::string(py, &message)?, py::list(py, ids)?])?
                    }
                };
                items.push(item);
            }
            py::list(py, items)
        })
    }
}

/// `join(timeout: float | None) -> bool`: wait for every worker thread to exit (after
/// `shutdown`), GIL released, interruptible by signals.
unsafe extern "C" fn pool_join(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            let args = fast_args(py, args, nargs, 1, "join")?;
            let deadline = if args[0] == ffi::Py_None() {
                None
            } else {
                let secs = ffi::PyFloat_AsDouble(args[0]);
                if secs == -1.0 && !ffi::PyErr_Occurred().is_null() {
                    return Err(PyErrSet);
                }
                let timeout = Duration::try_from_secs_f64(secs.max(0.0))
                    .map_err(|_| py::value_error(py, "timeout out of range"))?;
                Some(std::time::Instant::now() + timeout)
            };
            let pool = pool_ref(slf);
            loop {
                let slice = match deadline {
                    None => JOIN_SLICE,
                    Some(d) => d
                        .saturating_duration_since(std::time::Instant::now())
                        .min(JOIN_SLICE),
                };
                if py.detached(|| pool.join(Some(slice))) {
                    return Ok(py::bool_obj(py, true));
                }
                if ffi::PyErr_CheckSignals() < 0 {
                    return Err(PyErrSet);
                }
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(py::bool_obj(py, false));
                }
            }
        })
    }
}

/// `stats() -> dict`
unsafe extern "C" fn pool_stats(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            fast_args(py, args, nargs, 0, "stats")?;
            let Stats {
                threads,
                workers,
                busy,
                queued,
                submitted,
                completed,
                recycled,
            } = pool_ref(slf).stats();
            let dict = Owned::from_new(py, ffi::PyDict_New())?;
            py::dict_set(py, &dict, c"threads", py::uint(py, threads as u64)?)?;
            py::dict_set(py, &dict, c"workers", py::uint(py, workers as u64)?)?;
            py::dict_set(py, &dict, c"busy", py::uint(py, busy as u64)?)?;
            py::dict_set(py, &dict, c"queued", py::uint(py, queued as u64)?)?;
            py::dict_set(py, &dict, c"submitted", py::uint(py, submitted)?)?;
            py::dict_set(py, &dict, c"completed", py::uint(py, completed)?)?;
            py::dict_set(py, &dict, c"recycled", py::uint(py, recycled)?)?;
            Ok(dict)
        })
    }
}

/// `broken() -> str | None`
unsafe extern "C" fn pool_broken(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Pool type, called attached.
    unsafe {
        entry(|py| {
            fast_args(py, args, nargs, 0, "broken")?;
            match pool_ref(slf).broken() {
                Some(msg) => py::string(py, msg),
                None => Ok(py::none(py)),
            }
        })
    }
}

/// # Safety
/// `slf` is a live instance of the Ticket type.
unsafe fn ticket_ref<'a>(slf: *mut ffi::PyObject) -> &'a Ticket {
    // SAFETY: Ticket instances have the TicketObject layout, initialized in `pool_submit`.
    unsafe { &(*slf.cast::<TicketObject>()).ticket }
}

/// `cancel() -> bool`: cancel the task if no worker started it.
unsafe extern "C" fn ticket_cancel(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Ticket type, called attached.
    unsafe {
        entry(|py| {
            fast_args(py, args, nargs, 0, "cancel")?;
            Ok(py::bool_obj(py, ticket_ref(slf).cancel()))
        })
    }
}

/// `started() -> bool`
unsafe extern "C" fn ticket_started(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: METH_FASTCALL method of the Ticket type, called attached.
    unsafe {
        entry(|py| {
            fast_args(py, args, nargs, 0, "started")?;
            Ok(py::bool_obj(py, ticket_ref(slf).started()))
        })
    }
}

/// `id` (getter)
unsafe extern "C" fn ticket_id(
    slf: *mut ffi::PyObject,
    _closure: *mut c_void,
) -> *mut ffi::PyObject {
    // SAFETY: getter of the Ticket type, called attached.
    unsafe { entry(|py| py::uint(py, ticket_ref(slf).id())) }
}

static mut POOL_METHODS: [ffi::PyMethodDef; 7] = [
    method_def!(
        c"submit",
        PyCFunctionFast,
        pool_submit,
        ffi::METH_FASTCALL,
        c"submit(id: int, task: Packed) -> Ticket"
    ),
    method_def!(
        c"shutdown",
        PyCFunctionFast,
        pool_shutdown,
        ffi::METH_FASTCALL,
        c"shutdown(cancel_pending: bool) -> list[int]"
    ),
    method_def!(
        c"next_events",
        PyCFunctionFast,
        pool_next_events,
        ffi::METH_FASTCALL,
        c"next_events(max: int) -> list | None"
    ),
    method_def!(
        c"join",
        PyCFunctionFast,
        pool_join,
        ffi::METH_FASTCALL,
        c"join(timeout: float | None) -> bool"
    ),
    method_def!(
        c"stats",
        PyCFunctionFast,
        pool_stats,
        ffi::METH_FASTCALL,
        c"stats() -> dict[str, int]"
    ),
    method_def!(
        c"broken",
        PyCFunctionFast,
        pool_broken,
        ffi::METH_FASTCALL,
        c"broken() -> str | None"
    ),
    ffi::PyMethodDef::zeroed(),
];

static mut POOL_SLOTS: [ffi::PyType_Slot; 5] = [
    ffi::PyType_Slot {
        slot: ffi::Py_tp_new,
        pfunc: pool_new as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_dealloc,
        pfunc: pool_dealloc as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_methods,
        pfunc: (&raw mut POOL_METHODS).cast(),
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_doc,
        pfunc: c"Worker threads, each running an own-GIL subinterpreter (private; use interpool.InterpreterPoolExecutor).".as_ptr() as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

pub static mut POOL_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"interpool._interpool.Pool".as_ptr(),
    basicsize: size_of::<PoolObject>() as c_int,
    itemsize: 0,
    flags: ffi::Py_TPFLAGS_DEFAULT as u32,
    slots: (&raw mut POOL_SLOTS).cast(),
};

static mut TICKET_METHODS: [ffi::PyMethodDef; 3] = [
    method_def!(
        c"cancel",
        PyCFunctionFast,
        ticket_cancel,
        ffi::METH_FASTCALL,
        c"cancel() -> bool: cancel the task unless it started"
    ),
    method_def!(
        c"started",
        PyCFunctionFast,
        ticket_started,
        ffi::METH_FASTCALL,
        c"started() -> bool"
    ),
    ffi::PyMethodDef::zeroed(),
];

static mut TICKET_GETSET: [ffi::PyGetSetDef; 2] = [
    ffi::PyGetSetDef {
        name: c"id".as_ptr(),
        get: Some(ticket_id),
        set: None,
        doc: c"task id, unique within its pool".as_ptr(),
        closure: ptr::null_mut(),
    },
    py::GETSET_END,
];

static mut TICKET_SLOTS: [ffi::PyType_Slot; 4] = [
    ffi::PyType_Slot {
        slot: ffi::Py_tp_dealloc,
        pfunc: ticket_dealloc as *mut c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_methods,
        pfunc: (&raw mut TICKET_METHODS).cast(),
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_getset,
        pfunc: (&raw mut TICKET_GETSET).cast(),
    },
    ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

pub static mut TICKET_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"interpool._interpool.Ticket".as_ptr(),
    basicsize: size_of::<TicketObject>() as c_int,
    itemsize: 0,
    // Tickets are only created by Pool.submit.
    flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as u32,
    slots: (&raw mut TICKET_SLOTS).cast(),
};
