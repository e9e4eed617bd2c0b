//! The `interpool._interpool` extension module: multi-phase init, per-interpreter state.
//!
//! The module must import inside own-GIL subinterpreters, so (shared/design/
//! subinterpreters.md, section 1) it uses `PyModuleDef_Init`, declares
//! `Py_mod_multiple_interpreters = Py_MOD_PER_INTERPRETER_GIL_SUPPORTED` and, on 3.13+,
//! `Py_mod_gil = Py_MOD_GIL_NOT_USED`. Its types are heap types created per module object
//! and kept in module state; no Python object lives in a Rust static.
use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use pyo3_ffi as ffi;

use crate::buffer::{self, Deferred};
use crate::pool_type::{POOL_SPEC, TICKET_SPEC};
use crate::py::{self, Attached, Owned, PyResult, method_def};
use crate::value::{self, PACKED_SPEC};

/// Per-module (so per-interpreter) state. The object fields are strong references owned by
/// the state (released in `module_clear`); `deferred` is Rust data (see buffer.rs).
#[repr(C)]
pub struct ModuleState {
    pub pool_type: *mut ffi::PyObject,
    pub ticket_type: *mut ffi::PyObject,
    pub packed_type: *mut ffi::PyObject,
    pub queue_type: *mut ffi::PyObject,
    pub buffer_type: *mut ffi::PyObject,
    /// Set by `_configure`: the pickler used for values without a native form.
    pub dumps: *mut ffi::PyObject,
    pub loads: *mut ffi::PyObject,
    pub deferred: *mut Deferred,
}

impl ModuleState {
    /// The object fields, for traverse/clear.
    fn object_slots(&mut self) -> [&mut *mut ffi::PyObject; 7] {
        [
            &mut self.pool_type,
            &mut self.ticket_type,
            &mut self.packed_type,
            &mut self.queue_type,
            &mut self.buffer_type,
            &mut self.dumps,
            &mut self.loads,
        ]
    }

    /// The state of the module that defined `tp`.
    ///
    /// # Safety
    /// `tp` is one of this module's heap types (created with `PyType_FromModuleAndSpec`).
    pub unsafe fn of_type(tp: *mut ffi::PyTypeObject) -> *mut ModuleState {
        // SAFETY: the type was created with our module, whose state has this layout.
        unsafe { ffi::PyType_GetModuleState(tp).cast::<ModuleState>() }
    }
}

/// Run the body of a C-API callback: convert the result to a return value, and turn a Rust
/// panic into a Python `SystemError` instead of unwinding into C.
///
/// # Safety
/// Must be called by a CPython callback, i.e. with an attached thread state.
pub unsafe fn entry(f: impl FnOnce(Attached) -> PyResult<Owned>) -> *mut ffi::PyObject {
    // SAFETY: attached (caller's contract).
    let py = unsafe { Attached::assume() };
    match catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(py::PyErrSet)) => ptr::null_mut(),
        Err(_) => {
            // SAFETY: reading an immutable global exception type pointer.
            let exc = unsafe { ffi::PyExc_SystemError };
            py::raise(
                py,
                exc,
                "internal error in interpool (Rust panic); please report it",
            );
            ptr::null_mut()
        }
    }
}

/// `interpreter_id() -> int`: the id of the interpreter calling it.
unsafe extern "C" fn interpreter_id(
    _module: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: module function called by CPython, attached.
    unsafe { entry(|py| py::int(py, crate::subinterp::current_id(py))) }
}

unsafe extern "C" fn module_exec(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: exec slot, called attached with a fresh module whose state is zeroed.
    unsafe {
        let state = ffi::PyModule_GetState(module).cast::<ModuleState>();
        if state.is_null() {
            return -1;
        }
        (*state).deferred = Box::into_raw(Box::new(Deferred::default()));
        crate::fork_guard::install();
        for (spec, slot, name) in [
            (&raw mut POOL_SPEC, &raw mut (*state).pool_type, c"Pool"),
            (
                &raw mut TICKET_SPEC,
                &raw mut (*state).ticket_type,
                c"Ticket",
            ),
            (
                &raw mut PACKED_SPEC,
                &raw mut (*state).packed_type,
                c"Packed",
            ),
            (
                &raw mut crate::queue_type::SPEC,
                &raw mut (*state).queue_type,
                c"Queue",
            ),
            (
                &raw mut buffer::SPEC,
                &raw mut (*state).buffer_type,
                c"SharedBuffer",
            ),
        ] {
            let tp = ffi::PyType_FromModuleAndSpec(module, spec, ptr::null_mut());
            if tp.is_null() {
                return -1;
            }
            *slot = tp; // the state owns this reference (released in clear/free)
            if ffi::PyModule_AddObjectRef(module, name.as_ptr(), tp) < 0 {
                return -1;
            }
        }
        0
    }
}

unsafe extern "C" fn module_traverse(
    module: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: GC callback; the state may be null if the module is not yet initialized.
    unsafe {
        let state = ffi::PyModule_GetState(module).cast::<ModuleState>();
        if state.is_null() {
            return 0;
        }
        for obj in (*state).object_slots() {
            if !obj.is_null() {
                let r = visit(*obj, arg);
                if r != 0 {
                    return r;
                }
            }
        }
        0
    }
}

unsafe extern "C" fn module_clear(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: GC callback, attached; we drop the references the state owns exactly once.
    unsafe {
        let state = ffi::PyModule_GetState(module).cast::<ModuleState>();
        if !state.is_null() {
            for slot in (*state).object_slots() {
                let obj = std::mem::replace(slot, ptr::null_mut());
                if !obj.is_null() {
                    ffi::Py_DECREF(obj);
                }
            }
        }
        0
    }
}

unsafe extern "C" fn module_free(module: *mut c_void) {
    // SAFETY: called once when the module object is freed, attached to its interpreter.
    unsafe {
        let module = module.cast::<ffi::PyObject>();
        let state = ffi::PyModule_GetState(module).cast::<ModuleState>();
        if !state.is_null() && !(*state).deferred.is_null() {
            let deferred =
                Box::from_raw(std::mem::replace(&mut (*state).deferred, ptr::null_mut()));
            buffer::drain(*deferred);
        }
        module_clear(module);
    }
}

/// `_python_fork(on: bool)`: called by the Python fork hooks (see fork_guard.rs).
unsafe extern "C" fn python_fork(
    _module: *mut ffi::PyObject,
    on: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: METH_O module function, called attached.
    unsafe {
        entry(|py| {
            let on = crate::args::truthy(on, false)?;
            crate::fork_guard::set_python_forking(on);
            Ok(py::none(py))
        })
    }
}

/// `_configure(dumps, loads)`: called by the Python package when it is imported in an
/// interpreter.
unsafe extern "C" fn configure(
    module: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: FASTCALL module function, called attached; we replace references owned by
    // the state, taking new ones.
    unsafe {
        entry(|py| {
            if nargs != 2 {
                return Err(py::type_error(py, "_configure() takes 2 arguments"));
            }
            let state = &mut *ffi::PyModule_GetState(module).cast::<ModuleState>();
            let slots = [&mut state.dumps, &mut state.loads];
            for (i, slot) in slots.into_iter().enumerate() {
                let new = *args.add(i);
                ffi::Py_INCREF(new);
                let old = std::mem::replace(slot, new);
                if !old.is_null() {
                    ffi::Py_DECREF(old);
                }
            }
            Ok(py::none(py))
        })
    }
}

static mut METHODS: [ffi::PyMethodDef; 7] = [
    method_def!(
        c"interpreter_id",
        PyCFunction,
        interpreter_id,
        ffi::METH_NOARGS,
        c"interpreter_id() -> int: id of the calling interpreter"
    ),
    method_def!(
        c"pack",
        PyCFunction,
        value::pack_function,
        ffi::METH_O,
        c"pack(obj) -> Packed: convert obj for crossing interpreters"
    ),
    method_def!(
        c"roundtrip",
        PyCFunction,
        value::roundtrip_function,
        ffi::METH_O,
        c"roundtrip(obj) -> object: pack and unpack (tests, benchmarks)"
    ),
    method_def!(
        c"_configure",
        PyCFunctionFast,
        configure,
        ffi::METH_FASTCALL,
        c"_configure(dumps, loads)"
    ),
    method_def!(
        c"_queue_from_id",
        PyCFunctionFast,
        crate::queue_type::queue_from_id,
        ffi::METH_FASTCALL,
        c"_queue_from_id(pid, key) -> Queue: unpickle a Queue"
    ),
    method_def!(
        c"_python_fork",
        PyCFunction,
        python_fork,
        ffi::METH_O,
        c"_python_fork(on: bool): fork hooks tell the fork guard a Python fork is under way"
    ),
    ffi::PyMethodDef::zeroed(),
];

const SLOTS_LEN: usize = 2 + cfg!(Py_3_12) as usize + cfg!(Py_3_13) as usize;

static mut SLOTS: [ffi::PyModuleDef_Slot; SLOTS_LEN] = [
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_exec,
        value: module_exec as *mut c_void,
    },
    #[cfg(Py_3_12)]
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_multiple_interpreters,
        value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED,
    },
    // pyo3-ffi does not gate this slot id: it exists from 3.13 on.
    #[cfg(Py_3_13)]
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_gil,
        value: ffi::Py_MOD_GIL_NOT_USED,
    },
    ffi::PyModuleDef_Slot {
        slot: 0,
        value: ptr::null_mut(),
    },
];

pub static mut MODULE_DEF: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"interpool._interpool".as_ptr(),
    m_doc: c"Rust core of interpool: own-GIL subinterpreter worker pools.".as_ptr(),
    m_size: size_of::<ModuleState>() as ffi::Py_ssize_t,
    m_methods: (&raw mut METHODS).cast(),
    m_slots: (&raw mut SLOTS).cast(),
    m_traverse: Some(module_traverse),
    m_clear: Some(module_clear),
    m_free: Some(module_free),
};
