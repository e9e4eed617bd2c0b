//! `interpool.Queue`: one Rust queue of `Value`s, seen through a Python object in every
//! interpreter that receives it (as a task argument, initarg, result, queue item, or by
//! pickle within this process). Items are converted on `put` and rebuilt on `get`, so
//! interpreters never share an object.
//!
//! Blocking calls release the caller's GIL and sleep on a condition variable; they wake
//! when an item (or room) arrives. In slices of [`SIGNAL_SLICE`] they re-take the GIL
//! just to run signal handlers, so Ctrl-C interrupts a blocked `get()` in the main thread.
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use interpool_core::{GetError, PutError, Queue, Value, Wait};
use pyo3_ffi as ffi;

use crate::args;
use crate::module::{ModuleState, entry};
use crate::py::{self, Attached, Owned, PyErrSet, PyResult, method_def};
use crate::value::Codec;

const SIGNAL_SLICE: Duration = Duration::from_millis(100);

pub type QueueCore = Arc<Queue<Value>>;

#[repr(C)]
pub struct QueueObject {
    ob_base: ffi::PyObject,
    core: QueueCore,
}

/// Queues that were pickled in this process, by address (see `__reduce__`).
fn registry() -> &'static Mutex<HashMap<usize, Weak<Queue<Value>>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, Weak<Queue<Value>>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// # Safety
/// `obj` is a live instance of a Queue type.
pub unsafe fn core_of(obj: *mut ffi::PyObject) -> QueueCore {
    // SAFETY: Queue instances have the QueueObject layout, initialized at creation.
    unsafe { Arc::clone(&(*obj.cast::<QueueObject>()).core) }
}

/// # Safety
/// `slf` is a live instance of a Queue type.
unsafe fn core_ref<'a>(slf: *mut ffi::PyObject) -> &'a Queue<Value> {
    // SAFETY: as for `core_of`.
    unsafe { &(*slf.cast::<QueueObject>()).core }
}

pub fn new_object(py: Attached, state: &ModuleState, core: QueueCore) -> PyResult<Owned> {
    // SAFETY: attached; allocate an instance of this interpreter's Queue type and write its
    // field before anything can see it.
    unsafe {
        let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(state.queue_type.cast(), 0))?;
        ptr::write(&raw mut (*obj.as_ptr().cast::<QueueObject>()).core, core);
        Ok(obj)
    }
}

fn state_of(slf: *mut ffi::PyObject) -> &'static ModuleState {
    // SAFETY: `slf` is an instance of our Queue heap type, whose module state outlives it
    // (instances hold a reference to their type, which holds the module).
    unsafe { &*ModuleState::of_type(ffi::Py_TYPE(slf)) }
}

/// Raise `interpool.<class_name>(msg)`. The classes live in `interpool._errors`, imported
/// here on first use so that worker start-up does not pay for it.
fn raise_queue_error(py: Attached, class_name: &std::ffi::CStr, msg: &str) -> PyErrSet {
    // SAFETY: attached; import (usually a sys.modules hit) and attribute lookup return new
    // references or null with an exception set.
    let class = unsafe {
        Owned::from_new(
            py,
            ffi::PyImport_ImportModule(c"interpool._errors".as_ptr()),
        )
        .and_then(|m| {
            Owned::from_new(
                py,
                ffi::PyObject_GetAttrString(m.as_ptr(), class_name.as_ptr()),
            )
        })
    };
    match class {
        Ok(class) => py::raise(py, class.as_ptr(), msg),
        Err(e) => e,
    }
}

/// Turn `block`/`timeout` into a wait, like `queue.Queue`.
fn wait_for(block: bool, timeout: Option<Duration>) -> Wait {
    match (block, timeout) {
        (false, _) => Wait::Never,
        (true, None) => Wait::Forever,
        (true, Some(t)) => Instant::now()
            .checked_add(t)
            .map_or(Wait::Forever, Wait::Until),
    }
}

/// Run a blocking queue operation with the GIL released, waking every `SIGNAL_SLICE` to
/// run signal handlers. `op(Wait)` returns `Err(Some(e))` for a final error and
/// `Err(None)` when its slice ran out.
fn blocking<T: Send, E: Send>(
    py: Attached,
    wait: Wait,
    mut op: impl FnMut(Wait) -> Result<T, Option<E>> + Send,
) -> PyResult<Result<T, Option<E>>> {
    // Fast path: no GIL release when the operation can complete at once.
    match op(Wait::Never) {
        Err(None) if wait != Wait::Never => {}
        done => return Ok(done),
    }
    loop {
        let slice_end = Instant::now() + SIGNAL_SLICE;
        let slice = match wait {
            Wait::Until(deadline) if deadline <= slice_end => Wait::Until(deadline),
            _ => Wait::Until(slice_end),
        };
        match py.detached(|| op(slice)) {
            Err(None) => {
                if matches!(wait, Wait::Until(d) if Instant::now() >= d) {
                    return Ok(Err(None));
                }
                // SAFETY: attached; runs pending signal handlers (KeyboardInterrupt).
                if unsafe { ffi::PyErr_CheckSignals() } < 0 {
                    return Err(PyErrSet);
                }
            }
            done => return Ok(done),
        }
    }
}

unsafe extern "C" fn queue_new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwds: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: tp_new, called attached with an args tuple and an optional kwargs dict.
    unsafe {
        entry(|py| {
            let nargs = ffi::PyTuple_Size(args);
            let mut maxsize = if nargs >= 1 {
                ffi::PyTuple_GET_ITEM(args, 0)
            } else {
                ptr::null_mut()
            };
            if nargs > 1 {
                return Err(py::type_error(
                    py,
                    "Queue() takes at most 1 argument (maxsize)",
                ));
            }
            if !kwds.is_null() && ffi::PyDict_Size(kwds) > 0 {
                let kw = ffi::PyDict_GetItemString(kwds, c"maxsize".as_ptr());
                if kw.is_null() || ffi::PyDict_Size(kwds) > 1 || !maxsize.is_null() {
                    return Err(py::type_error(py, "Queue() takes one argument, maxsize"));
                }
                maxsize = kw;
            }
            let maxsize = if maxsize.is_null() {
                0
            } else {
                py::int_arg(py, maxsize, "maxsize")?
            };
            // As queue.Queue: maxsize <= 0 means unbounded.
            let maxsize = usize::try_from(maxsize).unwrap_or(0);
            let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(subtype, 0))?;
            ptr::write(
                &raw mut (*obj.as_ptr().cast::<QueueObject>()).core,
                Arc::new(Queue::new(maxsize)),
            );
            Ok(obj)
        })
    }
}

unsafe extern "C" fn queue_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: tp_dealloc; the field was written at creation. Dropping the Arc only touches
    // Rust data; the last handle (in any interpreter) frees the queue and its Values.
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ptr::drop_in_place(&raw mut (*slf.cast::<QueueObject>()).core);
        py::dealloc_tail(slf, tp);
    }
}

fn do_put(
    py: Attached,
    slf: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
    wait: Wait,
) -> PyResult<Owned> {
    let state = state_of(slf);
    let value = Codec { py, state }.pack(obj)?;
    // SAFETY: `slf` is a Queue instance (method receiver).
    let queue = unsafe { core_ref(slf) };
    let mut pending = Some(value);
    let outcome = blocking(py, wait, |w| {
        let Some(v) = pending.take() else {
            return Ok(());
        };
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
        Ok(()) => Ok(py::none(py)),
        Err(None) => Err(raise_queue_error(py, c"QueueFull", "queue is full")),
        Err(Some(())) => Err(raise_queue_error(py, c"QueueClosed", "queue is closed")),
    }
}

fn do_get(py: Attached, slf: *mut ffi::PyObject, wait: Wait) -> PyResult<Owned> {
    let state = state_of(slf);
    // SAFETY: `slf` is a Queue instance (method receiver).
    let queue = unsafe { core_ref(slf) };
    let outcome = blocking(py, wait, |w| match queue.get(w) {
        Ok(v) => Ok(v),
        Err(GetError::Empty) => Err(None),
        Err(GetError::Closed) => Err(Some(())),
    })?;
    match outcome {
        Ok(value) => Codec { py, state }.unpack(value),
        Err(None) => Err(raise_queue_error(py, c"QueueEmpty", "queue is empty")),
        Err(Some(())) => Err(raise_queue_error(
            py,
            c"QueueClosed",
            "queue is closed and empty",
        )),
    }
}

/// `put(obj, block=True, timeout=None)`
unsafe extern "C" fn queue_put(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: FASTCALL|KEYWORDS method, called attached.
    unsafe {
        entry(|py| {
            let [obj, block, timeout] = args::parse(
                py,
                "put",
                ["obj", "block", "timeout"],
                1,
                args,
                nargs,
                kwnames,
            )?;
            let wait = wait_for(args::truthy(block, true)?, args::timeout(py, timeout)?);
            do_put(py, slf, obj, wait)
        })
    }
}

/// `get(block=True, timeout=None)`
unsafe extern "C" fn queue_get(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: FASTCALL|KEYWORDS method, called attached.
    unsafe {
        entry(|py| {
            let [block, timeout] =
                args::parse(py, "get", ["block", "timeout"], 0, args, nargs, kwnames)?;
            let wait = wait_for(args::truthy(block, true)?, args::timeout(py, timeout)?);
            do_get(py, slf, wait)
        })
    }
}

unsafe extern "C" fn queue_put_nowait(
    slf: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O method, called attached.
    unsafe { entry(|py| do_put(py, slf, obj, Wait::Never)) }
}

unsafe extern "C" fn queue_get_nowait(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe { entry(|py| do_get(py, slf, Wait::Never)) }
}

unsafe extern "C" fn queue_qsize(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe { entry(|py| py::uint(py, core_ref(slf).len() as u64)) }
}

unsafe extern "C" fn queue_empty(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe { entry(|py| Ok(py::bool_obj(py, core_ref(slf).is_empty()))) }
}

unsafe extern "C" fn queue_full(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe { entry(|py| Ok(py::bool_obj(py, core_ref(slf).is_full()))) }
}

unsafe extern "C" fn queue_close(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe {
        entry(|py| {
            core_ref(slf).close();
            Ok(py::none(py))
        })
    }
}

/// `__reduce__`: pickles as a reference to this very queue, valid in this process only.
unsafe extern "C" fn queue_reduce(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method, called attached.
    unsafe {
        entry(|py| {
            let core = core_of(slf);
            let key = Arc::as_ptr(&core) as usize;
            {
                let mut reg = registry()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                reg.retain(|_, weak| weak.strong_count() > 0);
                reg.insert(key, Arc::downgrade(&core));
            }
            let module = Owned::from_new(
                py,
                ffi::PyImport_ImportModule(c"interpool._interpool".as_ptr()),
            )?;
            let func = Owned::from_new(
                py,
                ffi::PyObject_GetAttrString(module.as_ptr(), c"_queue_from_id".as_ptr()),
            )?;
            let args = py::tuple(
                py,
                vec![
                    py::uint(py, u64::from(std::process::id()))?,
                    py::uint(py, key as u64)?,
                ],
            )?;
            py::tuple(py, vec![func, args])
        })
    }
}

/// `_queue_from_id(pid, key)`: the unpickling side of `Queue.__reduce__`.
pub unsafe extern "C" fn queue_from_id(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: FASTCALL module function, called attached.
    unsafe {
        entry(|py| {
            if nargs != 2 {
                return Err(py::type_error(py, "_queue_from_id(pid, key)"));
            }
            let pid = py::int_arg(py, *args, "pid")?;
            let key = py::int_arg(py, *args.add(1), "key")?;
            let found = (pid == i64::from(std::process::id()))
                .then(|| {
                    let reg = registry()
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    reg.get(&(key as usize)).and_then(Weak::upgrade)
                })
                .flatten();
            let Some(core) = found else {
                return Err(py::runtime_error(
                    py,
                    "this interpool.Queue no longer exists, or was pickled in another process: \
                     queues can only be sent to interpreters of the process that created them",
                ));
            };
            let state = &*ffi::PyModule_GetState(module).cast::<ModuleState>();
            new_object(py, state, core)
        })
    }
}

unsafe extern "C" fn queue_maxsize(slf: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    // SAFETY: getter, called attached.
    unsafe { entry(|py| py::uint(py, core_ref(slf).maxsize() as u64)) }
}

unsafe extern "C" fn queue_closed(slf: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    // SAFETY: getter, called attached.
    unsafe { entry(|py| Ok(py::bool_obj(py, core_ref(slf).is_closed()))) }
}

static mut METHODS: [ffi::PyMethodDef; 10] = [
    method_def!(c"put", PyCFunctionFastWithKeywords, queue_put, ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        c"put($self, obj, block=True, timeout=None)\n--\n\nPut a copy of obj; block while full. Raises QueueFull or QueueClosed."),
    method_def!(c"get", PyCFunctionFastWithKeywords, queue_get, ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item; block while empty. Raises QueueEmpty or QueueClosed."),
    method_def!(c"put_nowait", PyCFunction, queue_put_nowait, ffi::METH_O, c"put_nowait($self, obj, /)\n--\n\nput(obj, block=False)"),
    method_def!(c"get_nowait", PyCFunction, queue_get_nowait, ffi::METH_NOARGS, c"get_nowait($self)\n--\n\nget(block=False)"),
    method_def!(c"qsize", PyCFunction, queue_qsize, ffi::METH_NOARGS, c"qsize($self)\n--\n\nNumber of items queued."),
    method_def!(c"empty", PyCFunction, queue_empty, ffi::METH_NOARGS, c"empty($self)\n--\n\nWhether no item is queued."),
    method_def!(c"full", PyCFunction, queue_full, ffi::METH_NOARGS, c"full($self)\n--\n\nWhether a bounded queue is at maxsize."),
    method_def!(c"close", PyCFunction, queue_close, ffi::METH_NOARGS,
        c"close($self)\n--\n\nRefuse further puts and wake every waiter; gets drain what is left."),
    method_def!(c"__reduce__", PyCFunction, queue_reduce, ffi::METH_NOARGS, c"Pickle support (same process only)."),
    ffi::PyMethodDef::zeroed(),
];

static mut GETSET: [ffi::PyGetSetDef; 3] = [
    ffi::PyGetSetDef {
        name: c"maxsize".as_ptr(),
        get: Some(queue_maxsize),
        set: None,
        doc: c"the bound given at creation (0: unbounded)".as_ptr(),
        closure: ptr::null_mut(),
    },
    ffi::PyGetSetDef {
        name: c"closed".as_ptr(),
        get: Some(queue_closed),
        set: None,
        doc: c"whether close() was called".as_ptr(),
        closure: ptr::null_mut(),
    },
    py::GETSET_END,
];

static mut SLOTS: [ffi::PyType_Slot; 6] = [
    ffi::PyType_Slot { slot: ffi::Py_tp_new, pfunc: queue_new as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_tp_dealloc, pfunc: queue_dealloc as *mut c_void },
    ffi::PyType_Slot { slot: ffi::Py_tp_methods, pfunc: (&raw mut METHODS).cast() },
    ffi::PyType_Slot { slot: ffi::Py_tp_getset, pfunc: (&raw mut GETSET).cast() },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_doc,
        pfunc: c"Queue(maxsize=0)\n--\n\nA FIFO queue usable from every interpreter of this process. Items are copied \
(natively for built-in types, by pickle otherwise); blocking calls release the GIL and wake as soon as they can \
proceed."
            .as_ptr() as *mut c_void,
    },
    ffi::PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
];

pub static mut SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"interpool.Queue".as_ptr(),
    basicsize: size_of::<QueueObject>() as c_int,
    itemsize: 0,
    flags: ffi::Py_TPFLAGS_DEFAULT as u32,
    slots: (&raw mut SLOTS).cast(),
};
