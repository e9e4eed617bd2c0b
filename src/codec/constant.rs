//! `interpool.Constant(obj)`: data that many tasks read, converted once per interpreter.
//!
//! `Constant(obj)` encodes `obj` once, in the interpreter that makes it, into an
//! [`interpool_core::Constant`] (an id and a [`Value`](interpool_core::Value)). A task
//! argument that is a Constant crosses as a handle to that shared value, never as a copy.
//! Each receiving interpreter decodes it the first time it sees it and keeps the object in
//! its `ConstantCache` (module state), so later tasks get the very same object: tasks must
//! treat it as read-only, since the changes one task makes are seen by the next tasks of that
//! worker and by no other worker.
//!
//! The cache lives in `decoded.rs` (module state). A cached object is released when its
//! constant is gone everywhere (the `Constant` object
//! dropped, no task holding it in flight) and the interpreter caches another constant, or
//! when the interpreter ends. A Constant never carries a Queue: queues in constants would
//! escape the collection of queue cycles (`interpool_core::shared`).
use std::sync::Arc;

use interpool_core::{Constant, Handle};
use pyo3_ffi as ffi;

use super::Decoder;
use crate::args::Args;
use crate::object::{Instance, PyClass};
use crate::py::{Owned, PyResult, Python};
use crate::state::{ErrorClass, State};
use crate::trampoline::{self, SLOTS_END, class_slots, getter, method, new_slot, table_slot, type_spec};

/// The Python object: the shared constant, and the object it was made from (a strong
/// reference into the interpreter that made it, the only one where such objects exist).
pub struct ConstantObject {
    constant: Arc<Constant>,
    obj: usize,
}

impl PyClass for ConstantObject {
    fn type_object(state: &State) -> *mut ffi::PyTypeObject {
        state.constant_type()
    }
}

impl ConstantObject {
    /// Another reference to the shared constant (what a `Value` carries).
    pub fn shared(&self) -> Arc<Constant> {
        Arc::clone(&self.constant)
    }
}

impl Drop for ConstantObject {
    fn drop(&mut self) {
        // SAFETY: dropped by `tp_dealloc`, which CPython calls attached to the interpreter the
        // instance (and so `obj`, referenced since `constant_new`) belongs to.
        unsafe { ffi::Py_DECREF(self.obj as *mut ffi::PyObject) };
    }
}

/// `Constant(obj, /)`
fn constant_new<'py>(py: Python<'py>, state: &'py State, args: Args<'py>) -> PyResult<ConstantObject> {
    let [obj] = args.exactly::<1>("Constant")?;
    let value = super::encode(py, state, obj)?;
    if value.handles.iter().any(|h| matches!(h, Handle::Queue(_))) {
        return Err(state.raise(
            py,
            ErrorClass::NotShareableError,
            "a Constant cannot hold a Queue: pass queues to tasks directly",
        ));
    }
    Ok(ConstantObject { constant: Arc::new(Constant::new(value)), obj: obj.to_owned().into_ptr() as usize })
}

/// `value`: the object the constant was made from.
fn value<'py>(py: Python<'py>, slf: Instance<'py, ConstantObject>) -> PyResult<Owned<'py>> {
    // SAFETY: a strong reference owned by this instance, to an object of this interpreter.
    Ok(unsafe { py.borrow(slf.get().obj as *mut ffi::PyObject) }.to_owned())
}

fn reduce<'py>(py: Python<'py>, _slf: Instance<'py, ConstantObject>) -> PyResult<Owned<'py>> {
    Err(py.type_error(
        "Constant cannot be pickled: pass it to tasks directly (as an argument or initarg, also inside tuples, \
         lists and dicts); each worker then converts its value once",
    ))
}

static mut METHODS: [ffi::PyMethodDef; 2] = [
    method!(ConstantObject, c"__reduce__", noargs reduce, c"Constants are shared, not pickled."),
    ffi::PyMethodDef::zeroed(),
];

static mut GETSET: [ffi::PyGetSetDef; 2] =
    [getter!(ConstantObject, c"value", value, c"the object this constant was made from"), trampoline::GETSET_END];

static mut SLOTS: [ffi::PyType_Slot; 7] = {
    let [dealloc, traverse, doc] = class_slots!(
        ConstantObject,
        c"Constant(obj, /)\n--\n\nRead-only data for many tasks: obj is converted once, and each worker \
interpreter rebuilds it the first time a task receives it and keeps it for the following tasks, which get that \
same object. Treat it as read-only: changes stay in one worker and are seen by its later tasks."
    );
    [
        new_slot!(ConstantObject, constant_new),
        dealloc,
        traverse,
        doc,
        table_slot!(Py_tp_methods, METHODS),
        table_slot!(Py_tp_getset, GETSET),
        SLOTS_END,
    ]
};

pub static mut CONSTANT_SPEC: ffi::PyType_Spec =
    type_spec!(c"interpool.Constant", ConstantObject, SLOTS, ffi::Py_TPFLAGS_DEFAULT);

/// The object for `constant` in this interpreter: cached, or decoded now and cached.
pub fn get<'py>(py: Python<'py>, state: &State, constant: &Arc<Constant>) -> PyResult<Owned<'py>> {
    if let Some(found) = state.constants.lookup(py, constant.id()) {
        return Ok(found);
    }
    // Decoded without the cache's lock: unpickling may run any code, even decode constants.
    let obj = Decoder::new(py, state, constant.value()).single()?;
    Ok(state.constants.insert(py, constant, obj))
}
