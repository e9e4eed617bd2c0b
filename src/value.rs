//! Native conversion between Python objects and [`Value`] trees, and the `Packed` type
//! that carries a `Value` inside one interpreter.
//!
//! `pack` maps exact built-in types (None, bool, int, float, str, bytes, bytearray, tuple,
//! list, dict, set, frozenset) and interpool's Queue/SharedBuffer natively; any other
//! object (including subclasses of built-ins, so their type survives) becomes a pickle
//! made by the interpreter's configured `dumps` (cloudpickle-aware). A value with a cycle
//! is pickled whole, so its shape survives; shared (non-cyclic) sub-objects arrive as
//! copies. Nesting deeper than [`MAX_DEPTH`] is pickled from that level down.
use std::ptr;
use std::sync::Mutex;

use interpool_core::Value;
use pyo3_ffi as ffi;

use crate::buffer;
use crate::module::ModuleState;
use crate::py::{self, Attached, Owned, PyErrSet, PyResult, method_def};
use crate::queue_type;

pub const MAX_DEPTH: usize = 200;

enum Fail {
    Py(PyErrSet),
    Cycle,
}

impl From<PyErrSet> for Fail {
    fn from(e: PyErrSet) -> Self {
        Fail::Py(e)
    }
}

/// Converts in the interpreter that owns `state`.
pub struct Codec<'a> {
    pub py: Attached,
    pub state: &'a ModuleState,
}

fn is(obj: *mut ffi::PyObject, tp: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: reading the type pointer of a valid object.
    unsafe { ffi::Py_TYPE(obj) == tp }
}

impl Codec<'_> {
    /// Convert `obj` to a `Value`.
    pub fn pack(&self, obj: *mut ffi::PyObject) -> PyResult<Value> {
        let mut stack = Vec::new();
        match self.convert(obj, 0, &mut stack) {
            Ok(v) => Ok(v),
            Err(Fail::Cycle) => self.pickle(obj),
            Err(Fail::Py(e)) => Err(e),
        }
    }

    fn pickle(&self, obj: *mut ffi::PyObject) -> PyResult<Value> {
        let dumps = self.state.dumps;
        if dumps.is_null() {
            return Err(py::runtime_error(
                self.py,
                "interpool is not configured in this interpreter (import interpool)",
            ));
        }
        // SAFETY: attached; `dumps` is a callable owned by the module state; new reference.
        let data = unsafe { Owned::from_new(self.py, ffi::PyObject_CallOneArg(dumps, obj))? };
        // SAFETY: `data` is alive for the borrow.
        let bytes = unsafe { py::bytes_view(self.py, data.as_ptr(), "dumps() result")? };
        Ok(Value::Pickled(bytes.to_vec()))
    }

    fn convert(
        &self,
        obj: *mut ffi::PyObject,
        depth: usize,
        stack: &mut Vec<*mut ffi::PyObject>,
    ) -> Result<Value, Fail> {
        let py = self.py;
        // SAFETY: (whole body) attached; `obj` is a valid object kept alive by the
        // caller; the type objects are CPython's static built-in types.
        unsafe {
            if obj == ffi::Py_None() {
                return Ok(Value::None);
            }
            if is(obj, &raw mut ffi::PyBool_Type) {
                return Ok(Value::Bool(obj == ffi::Py_True()));
            }
            if is(obj, &raw mut ffi::PyLong_Type) {
                let mut overflow = 0;
                let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
                if overflow == 0 {
                    if v == -1 && !ffi::PyErr_Occurred().is_null() {
                        return Err(PyErrSet.into());
                    }
                    return Ok(Value::Int(v));
                }
                let hex = Owned::from_new(py, ffi::PyNumber_ToBase(obj, 16))?;
                return Ok(Value::BigInt(
                    py::str_view(py, hex.as_ptr(), "hex")?.to_owned(),
                ));
            }
            if is(obj, &raw mut ffi::PyFloat_Type) {
                return Ok(Value::Float(ffi::PyFloat_AsDouble(obj)));
            }
            if is(obj, &raw mut ffi::PyUnicode_Type) {
                return match py::str_view(py, obj, "str") {
                    Ok(s) => Ok(Value::Str(s.to_owned())),
                    Err(PyErrSet) => {
                        // Lone surrogates have no UTF-8 form: let pickle carry them.
                        ffi::PyErr_Clear();
                        Ok(self.pickle(obj)?)
                    }
                };
            }
            if is(obj, &raw mut ffi::PyBytes_Type) {
                return Ok(Value::Bytes(py::bytes_view(py, obj, "bytes")?.to_vec()));
            }
            if is(obj, &raw mut ffi::PyByteArray_Type) {
                let data = ffi::PyByteArray_AsString(obj).cast::<u8>();
                let len = ffi::PyByteArray_Size(obj).unsigned_abs();
                let copy = if len == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(data, len).to_vec()
                };
                return Ok(Value::ByteArray(copy));
            }
            let tp = ffi::Py_TYPE(obj).cast::<ffi::PyObject>();
            if tp == self.state.queue_type {
                return Ok(Value::Queue(queue_type::core_of(obj)));
            }
            if tp == self.state.buffer_type {
                return Ok(Value::Buffer(buffer::core_of(obj)));
            }
            let container = is(obj, &raw mut ffi::PyTuple_Type)
                || is(obj, &raw mut ffi::PyList_Type)
                || is(obj, &raw mut ffi::PyDict_Type)
                || is(obj, &raw mut ffi::PySet_Type)
                || is(obj, &raw mut ffi::PyFrozenSet_Type);
            if !container {
                return Ok(self.pickle(obj)?);
            }
            if depth >= MAX_DEPTH {
                return Ok(self.pickle(obj)?);
            }
            if stack.contains(&obj) {
                return Err(Fail::Cycle);
            }
            stack.push(obj);
            let result = self.convert_container(obj, depth, stack);
            stack.pop();
            result
        }
    }

    /// # Safety
    /// Attached; `obj` is a valid tuple, list, dict, set or frozenset.
    unsafe fn convert_container(
        &self,
        obj: *mut ffi::PyObject,
        depth: usize,
        stack: &mut Vec<*mut ffi::PyObject>,
    ) -> Result<Value, Fail> {
        let py = self.py;
        // SAFETY: see the function contract; items are kept alive by strong references
        // (snapshots) while converted, since converting may run Python code (`dumps`).
        unsafe {
            if is(obj, &raw mut ffi::PyTuple_Type) {
                let n = ffi::PyTuple_GET_SIZE(obj);
                let mut items = Vec::with_capacity(n.unsigned_abs());
                for i in 0..n {
                    items.push(self.convert(ffi::PyTuple_GET_ITEM(obj, i), depth + 1, stack)?);
                }
                return Ok(Value::Tuple(items));
            }
            if is(obj, &raw mut ffi::PyDict_Type) {
                // Snapshot: converting a value may run code that mutates the dict.
                let pairs = Owned::from_new(py, ffi::PyDict_Items(obj))?;
                let n = ffi::PyList_GET_SIZE(pairs.as_ptr());
                let mut items = Vec::with_capacity(n.unsigned_abs());
                for i in 0..n {
                    let pair = ffi::PyList_GET_ITEM(pairs.as_ptr(), i);
                    let k = self.convert(ffi::PyTuple_GET_ITEM(pair, 0), depth + 1, stack)?;
                    let v = self.convert(ffi::PyTuple_GET_ITEM(pair, 1), depth + 1, stack)?;
                    items.push((k, v));
                }
                return Ok(Value::Dict(items));
            }
            // list, set, frozenset: snapshot into a tuple first (atomic in free-threaded
            // builds, and immune to mutation by code run during conversion).
            let snapshot = Owned::from_new(py, ffi::PySequence_Tuple(obj))?;
            let n = ffi::PyTuple_GET_SIZE(snapshot.as_ptr());
            let mut items = Vec::with_capacity(n.unsigned_abs());
            for i in 0..n {
                items.push(self.convert(
                    ffi::PyTuple_GET_ITEM(snapshot.as_ptr(), i),
                    depth + 1,
                    stack,
                )?);
            }
            Ok(if is(obj, &raw mut ffi::PyList_Type) {
                Value::List(items)
            } else if is(obj, &raw mut ffi::PySet_Type) {
                Value::Set(items)
            } else {
                Value::FrozenSet(items)
            })
        }
    }

    /// Build the Python object for `value` in this interpreter.
    pub fn unpack(&self, value: Value) -> PyResult<Owned> {
        let py = self.py;
        // SAFETY: (whole body) attached; every constructor returns a new reference or
        // null with an exception, which `from_new` turns into `Err`.
        unsafe {
            match value {
                Value::None => Ok(py::none(py)),
                Value::Bool(b) => Ok(py::bool_obj(py, b)),
                Value::Int(i) => py::int(py, i),
                Value::BigInt(hex) => {
                    let text =
                        std::ffi::CString::new(hex).map_err(|_| py::value_error(py, "bad int"))?;
                    Owned::from_new(
                        py,
                        ffi::PyLong_FromString(text.as_ptr(), ptr::null_mut(), 0),
                    )
                }
                Value::Float(x) => Owned::from_new(py, ffi::PyFloat_FromDouble(x)),
                Value::Str(s) => py::string(py, &s),
                Value::Bytes(b) => py::bytes(py, &b),
                Value::ByteArray(b) => {
                    let len =
                        isize::try_from(b.len()).map_err(|_| py::value_error(py, "too large"))?;
                    Owned::from_new(
                        py,
                        ffi::PyByteArray_FromStringAndSize(b.as_ptr().cast(), len),
                    )
                }
                Value::Tuple(items) => py::tuple(py, self.unpack_all(items)?),
                Value::List(items) => py::list(py, self.unpack_all(items)?),
                Value::Dict(pairs) => {
                    let dict = Owned::from_new(py, ffi::PyDict_New())?;
                    for (k, v) in pairs {
                        let k = self.unpack(k)?;
                        let v = self.unpack(v)?;
                        if ffi::PyDict_SetItem(dict.as_ptr(), k.as_ptr(), v.as_ptr()) < 0 {
                            return Err(PyErrSet);
                        }
                    }
                    Ok(dict)
                }
                Value::Set(items) => {
                    let set = Owned::from_new(py, ffi::PySet_New(ptr::null_mut()))?;
                    for item in items {
                        let item = self.unpack(item)?;
                        if ffi::PySet_Add(set.as_ptr(), item.as_ptr()) < 0 {
                            return Err(PyErrSet);
                        }
                    }
                    Ok(set)
                }
                Value::FrozenSet(items) => {
                    let tuple = py::tuple(py, self.unpack_all(items)?)?;
                    Owned::from_new(py, ffi::PyFrozenSet_New(tuple.as_ptr()))
                }
                Value::Pickled(data) => {
                    let loads = self.state.loads;
                    if loads.is_null() {
                        return Err(py::runtime_error(
                            py,
                            "interpool is not configured in this interpreter",
                        ));
                    }
                    let data = py::bytes(py, &data)?;
                    Owned::from_new(py, ffi::PyObject_CallOneArg(loads, data.as_ptr()))
                }
                Value::Queue(core) => queue_type::new_object(py, self.state, core),
                Value::Buffer(core) => buffer::new_view(py, self.state, core),
            }
        }
    }

    fn unpack_all(&self, items: Vec<Value>) -> PyResult<Vec<Owned>> {
        items.into_iter().map(|v| self.unpack(v)).collect()
    }
}

/// A `Value` held by a Python object of one interpreter; `unpack()` takes it out.
#[repr(C)]
pub struct PackedObject {
    ob_base: ffi::PyObject,
    value: Mutex<Option<Value>>,
}

/// Create a `Packed` object of this interpreter holding `value`.
pub fn new_packed(py: Attached, state: &ModuleState, value: Value) -> PyResult<Owned> {
    // SAFETY: attached; `packed_type` is this module's Packed heap type; fresh allocation
    // whose field is written before the object is used.
    unsafe {
        let obj = Owned::from_new(py, ffi::PyType_GenericAlloc(state.packed_type.cast(), 0))?;
        ptr::write(
            &raw mut (*obj.as_ptr().cast::<PackedObject>()).value,
            Mutex::new(Some(value)),
        );
        Ok(obj)
    }
}

/// Take the value out of a `Packed` object (`None` if `obj` is not one, or was taken).
///
/// # Safety
/// Attached; `obj` is a valid object.
pub unsafe fn take_packed(state: &ModuleState, obj: *mut ffi::PyObject) -> Option<Value> {
    // SAFETY: type check first; then the object has the PackedObject layout.
    unsafe {
        if ffi::Py_TYPE(obj).cast::<ffi::PyObject>() != state.packed_type {
            return None;
        }
        let cell = &(*obj.cast::<PackedObject>()).value;
        cell.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

pub unsafe extern "C" fn packed_dealloc(slf: *mut ffi::PyObject) {
    // SAFETY: tp_dealloc of the Packed type: the field was initialized in `new_packed`.
    // Dropping a Value only drops Rust data (queues and buffers are Arc handles).
    unsafe {
        let tp = ffi::Py_TYPE(slf);
        ptr::drop_in_place(&raw mut (*slf.cast::<PackedObject>()).value);
        py::dealloc_tail(slf, tp);
    }
}

/// `Packed.unpack()`: the object, built in this interpreter. One use only.
pub unsafe extern "C" fn packed_unpack(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_NOARGS method of the Packed type, called attached.
    unsafe {
        crate::module::entry(|py| {
            let state = &*ModuleState::of_type(ffi::Py_TYPE(slf));
            let value = take_packed(state, slf)
                .ok_or_else(|| py::runtime_error(py, "this Packed value was already unpacked"))?;
            Codec { py, state }.unpack(value)
        })
    }
}

/// `pack(obj) -> Packed`
pub unsafe extern "C" fn pack_function(
    module: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O module function, called attached; the module state is ours.
    unsafe {
        crate::module::entry(|py| {
            let state = &*ffi::PyModule_GetState(module).cast::<ModuleState>();
            let value = Codec { py, state }.pack(obj)?;
            new_packed(py, state, value)
        })
    }
}

/// `roundtrip(obj) -> object`: pack then unpack (tests and benchmarks of the codec).
pub unsafe extern "C" fn roundtrip_function(
    module: *mut ffi::PyObject,
    obj: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O module function, called attached; the module state is ours.
    unsafe {
        crate::module::entry(|py| {
            let state = &*ffi::PyModule_GetState(module).cast::<ModuleState>();
            let codec = Codec { py, state };
            let value = codec.pack(obj)?;
            codec.unpack(value)
        })
    }
}

static mut PACKED_METHODS: [ffi::PyMethodDef; 2] = [
    method_def!(
        c"unpack",
        PyCFunction,
        packed_unpack,
        ffi::METH_NOARGS,
        c"unpack($self)\n--\n\nBuild the object in this interpreter (once)."
    ),
    ffi::PyMethodDef::zeroed(),
];

static mut PACKED_SLOTS: [ffi::PyType_Slot; 4] = [
    ffi::PyType_Slot {
        slot: ffi::Py_tp_dealloc,
        pfunc: packed_dealloc as *mut std::ffi::c_void,
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_methods,
        pfunc: (&raw mut PACKED_METHODS).cast(),
    },
    ffi::PyType_Slot {
        slot: ffi::Py_tp_doc,
        pfunc: c"A value converted for crossing interpreters (private).".as_ptr()
            as *mut std::ffi::c_void,
    },
    ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    },
];

pub static mut PACKED_SPEC: ffi::PyType_Spec = ffi::PyType_Spec {
    name: c"interpool._interpool.Packed".as_ptr(),
    basicsize: std::mem::size_of::<PackedObject>() as std::ffi::c_int,
    itemsize: 0,
    flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as u32,
    slots: (&raw mut PACKED_SLOTS).cast(),
};
