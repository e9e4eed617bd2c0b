//! The module definition of `interpool._interpool`: its functions, its exec slot (state,
//! classes, protocol constants, the texts of stopped tasks) and the GC slots of its state.
//!
//! The module must import inside own-GIL subinterpreters, so (docs/design.md, "The
//! extension module") it uses multi-phase init, declares
//! `Py_mod_multiple_interpreters = Py_MOD_PER_INTERPRETER_GIL_SUPPORTED` and, on 3.13+,
//! `Py_mod_gil = Py_MOD_GIL_NOT_USED`. Its classes are heap types created per module object
//! and kept in its state; no Python object lives in a Rust static.
use std::ffi::{c_int, c_void};
use std::ptr;

use pyo3_ffi as ffi;

use crate::args::Args;
use crate::protocol::Status;
use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::{ModuleRef, State};
use crate::trampoline::{Module, method};
use crate::{blas, buffer, codec, fork_guard, gilstate, interrupt, isolate, pool, queue, threads};

/// `interpreter_id() -> int`: the id of the calling interpreter.
fn interpreter_id<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    py.int(py.interpreter_id())
}

/// `_configure(*, dumps=..., loads=..., error_class=...)`: the package's hooks for this
/// interpreter (see state.rs); arguments not given keep their current value.
fn configure<'py>(py: Python<'py>, module: ModuleRef<'py>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [dumps, loads, error_class] = args.parse("_configure", ["dumps", "loads", "error_class"], 0)?;
    let hooks = &module.state().hooks;
    for (slot, value) in [(&hooks.dumps, dumps), (&hooks.loads, loads), (&hooks.error_class, error_class)] {
        if let Some(value) = value {
            slot.set(py, Some(value.to_owned()));
        }
    }
    Ok(py.none())
}

/// `_python_fork(on: bool)`: the Python fork hooks tell the fork guard a fork is under way.
fn python_fork<'py>(py: Python<'py>, _module: ModuleRef<'py>, on: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    fork_guard::set_python_forking(on.is_true()?);
    Ok(py.none())
}

/// `_interpreters_alive() -> int`: interpool interpreters alive or being created now.
fn interpreters_alive<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    py.uint(fork_guard::interpreters_alive() as u64)
}

/// `_fill_spares(want, stack_size, linger)`: start spare interpreters in the background until
/// `want` wait (see `worker::SPARES`), each ending after `linger` seconds unadopted.
fn fill_spares<'py>(py: Python<'py>, _module: ModuleRef<'py>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [want, stack_size, linger] = args.exactly::<3>("_fill_spares")?;
    let want = usize::try_from(want.as_i64("want")?).unwrap_or(0);
    let stack_size = usize::try_from(stack_size.as_i64("stack_size")?).unwrap_or(0);
    let linger = crate::args::timeout(Some(linger), "linger")?.unwrap_or_default();
    crate::worker::fill_spares(want, stack_size, linger)
        .map_err(|err| py.runtime_error(&format!("cannot start a spare interpreter thread: {err}")))?;
    Ok(py.none())
}

/// `_end_spares()`: end every spare interpreter now and wait for their threads (detached).
/// Only the main interpreter does: a worker may be inside `Py_EndInterpreter`, holding the
/// 3.12/3.13 creation lock (`interp.rs`) that the spare threads it would wait for need.
fn end_spares<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    if py.is_main_interpreter() {
        py.detached(|| crate::worker::SPARES.end_all());
    }
    Ok(py.none())
}

/// `_spares() -> int`: spare interpreters made and waiting to be adopted.
fn spares<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    py.uint(crate::worker::SPARES.count() as u64)
}

/// A planted ownership bug, for the debug mode's own test (src/debug.rs): `_debug_plant("keep")`
/// keeps a new list of the calling interpreter as a kept reference, and `_debug_plant("release")`
/// releases it from whichever interpreter calls it, as a cache released from the wrong
/// interpreter would. Refused unless `INTERPOOL_DEBUG` is set, which turns that release from
/// another interpreter into an attributed fatal error instead of a cross-heap free.
fn debug_plant<'py>(py: Python<'py>, _module: ModuleRef<'py>, stage: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    static PLANTED: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
    if !crate::debug::enabled() {
        return Err(py.runtime_error("_debug_plant plants a bug: it runs only with INTERPOOL_DEBUG=1"));
    }
    let mut planted = PLANTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match stage.as_str("stage")? {
        "keep" if *planted == 0 => {
            let ptr = py.list(Vec::new())?.into_ptr();
            crate::debug::keep(ptr);
            *planted = ptr as usize;
        }
        "release" if *planted != 0 => {
            let ptr = std::mem::take(&mut *planted) as *mut ffi::PyObject;
            crate::debug::release(ptr, "the planted object");
            // SAFETY: none (the planted bug): the kept reference is released from the calling
            // interpreter, whichever it is; debug mode stops the process before this line when
            // that is not the list's own.
            unsafe { ffi::Py_DECREF(ptr) };
        }
        other => return Err(py.value_error(&format!("_debug_plant: unexpected stage {other:?}"))),
    }
    Ok(py.none())
}

/// Create the state, the classes and the constants.
fn exec(py: Python<'_>, module: Borrowed<'_, '_>) -> PyResult<()> {
    let mut state = Box::new(State::new(py));
    let mut types = Vec::with_capacity(4);
    for (spec, name) in [
        (&raw mut pool::POOL_SPEC, c"Pool"),
        (&raw mut pool::TICKET_SPEC, c"Ticket"),
        (&raw mut queue::QUEUE_SPEC, c"Queue"),
        (&raw mut buffer::BUFFER_SPEC, c"SharedBuffer"),
    ] {
        // SAFETY: attached; `spec` is a static spec CPython only reads; new reference or null.
        let tp = unsafe { py.own(ffi::PyType_FromModuleAndSpec(module.as_ptr(), spec, ptr::null_mut()))? };
        // SAFETY: attached; a module, a NUL-terminated name; takes its own reference.
        crate::py::check(unsafe { ffi::PyModule_AddObjectRef(module.as_ptr(), name.as_ptr(), tp.as_ptr()) })?;
        types.push(tp);
    }
    let [pool, ticket, queue, buffer]: [Owned<'_>; 4] = types.try_into().map_err(|_| py.system_error("types"))?;
    state.set_types(py, pool, ticket, queue, buffer);
    let spec = &raw mut codec::constant::CONSTANT_SPEC;
    // SAFETY: attached; a static spec CPython only reads; new reference or null.
    let constant = unsafe { py.own(ffi::PyType_FromModuleAndSpec(module.as_ptr(), spec, ptr::null_mut()))? };
    // SAFETY: attached; a module, a NUL-terminated name; takes its own reference.
    crate::py::check(unsafe { ffi::PyModule_AddObjectRef(module.as_ptr(), c"Constant".as_ptr(), constant.as_ptr()) })?;
    state.set_constant_type(py, constant);
    // SAFETY: attached; NUL-terminated name and doc; BaseException is an immortal builtin class;
    // new reference or null.
    let interrupted = unsafe {
        py.own(ffi::PyErr_NewExceptionWithDoc(
            c"interpool.TaskInterrupted".as_ptr(),
            c"Raised inside a running task to stop it (a timeout, interrupt(), or a shutdown that interrupts). A \
BaseException, so that `except Exception` does not swallow it."
                .as_ptr(),
            ffi::PyExc_BaseException,
            ptr::null_mut(),
        ))?
    };
    // SAFETY: attached; a module, a NUL-terminated name; takes its own reference.
    crate::py::check(unsafe {
        ffi::PyModule_AddObjectRef(module.as_ptr(), c"TaskInterrupted".as_ptr(), interrupted.as_ptr())
    })?;
    state.types.interrupted.set(py, Some(interrupted));
    // SAFETY: attached; a module, a NUL-terminated name.
    crate::py::check(unsafe {
        ffi::PyModule_AddIntConstant(module.as_ptr(), c"FREE_THREADED".as_ptr(), cfg!(Py_GIL_DISABLED).into())
    })?;
    for (name, text) in crate::interrupt::TEXTS {
        // SAFETY: attached; a module, a NUL-terminated name and value.
        crate::py::check(unsafe { ffi::PyModule_AddStringConstant(module.as_ptr(), name.as_ptr(), text.as_ptr()) })?;
    }
    for (status, name) in Status::ALL {
        // SAFETY: attached; a module, a NUL-terminated name.
        crate::py::check(unsafe { ffi::PyModule_AddIntConstant(module.as_ptr(), name.as_ptr(), status as _) })?;
    }
    // SAFETY: `module` is our module, during its exec slot.
    unsafe { State::install(module, state) };
    fork_guard::install();
    Ok(())
}

unsafe extern "C" fn module_exec(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: the exec slot is called attached, with the new module.
    unsafe { crate::trampoline::run(|py| exec(py, py.borrow(module)).map(|()| 0)) }
}

unsafe extern "C" fn module_traverse(module: *mut ffi::PyObject, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: a GC callback for our module.
    unsafe { State::of_module(module) }.map_or(0, |state| state.traverse(visit, arg))
}

unsafe extern "C" fn module_clear(module: *mut ffi::PyObject) -> c_int {
    // SAFETY: a GC callback for our module, attached.
    unsafe {
        crate::trampoline::run(|py| {
            Ok(State::of_module(module).map_or(0, |state| {
                state.clear(py);
                0
            }))
        })
    }
}

unsafe extern "C" fn module_free(module: *mut c_void) {
    let free = |py: Python<'_>| {
        // SAFETY: called once, when the module object is freed.
        if let Some(state) = unsafe { State::take(module.cast()) } {
            state.clear(py);
            state.pins.drain(py);
        }
        Ok(0)
    };
    // SAFETY: CPython calls m_free attached to the module's interpreter.
    unsafe { crate::trampoline::run(free) };
}

static mut METHODS: [ffi::PyMethodDef; 24] = [
    method!(Module, c"interpreter_id", noargs interpreter_id, c"interpreter_id() -> int: id of the calling interpreter"),
    method!(Module, c"roundtrip", o codec::roundtrip, c"roundtrip(obj, /) -> object: encode and decode (tests, benchmarks)"),
    method!(Module, c"_configure", args configure, c"_configure(*, dumps, loads, error_class): the package's hooks"),
    method!(Module, c"_python_fork", o python_fork, c"_python_fork(on, /): Python fork hooks tell the fork guard"),
    method!(Module, c"_interpreters_alive", noargs interpreters_alive, c"_interpreters_alive() -> int"),
    method!(Module, c"_fill_spares", args fill_spares, c"_fill_spares(want, stack_size, linger, /): spare interpreters"),
    method!(Module, c"_end_spares", noargs end_spares, c"_end_spares(): end every spare interpreter now"),
    method!(Module, c"_spares", noargs spares, c"_spares() -> int: spare interpreters waiting"),
    queue::FROM_ID,
    queue::CYCLES,
    isolate::LOAD_COPY,
    isolate::EXEC_COPY,
    isolate::DLOPEN,
    isolate::EXTENSION_GATE,
    blas::LIMIT,
    blas::RELEASE,
    blas::LIBRARIES,
    gilstate::SLOT,
    threads::CURRENT_FRAMES,
    threads::CURRENT_EXCEPTIONS,
    interrupt::INTERRUPT_THREAD,
    interrupt::STUCK_NOTE,
    method!(Module, c"_debug_plant", o debug_plant, c"_debug_plant(stage, /): a planted ownership bug (debug mode's test)"),
    ffi::PyMethodDef::zeroed(),
];

const SLOTS_LEN: usize = 2 + cfg!(Py_3_12) as usize + cfg!(Py_3_13) as usize;

static mut SLOTS: [ffi::PyModuleDef_Slot; SLOTS_LEN] = [
    ffi::PyModuleDef_Slot { slot: ffi::Py_mod_exec, value: module_exec as *mut c_void },
    #[cfg(Py_3_12)]
    ffi::PyModuleDef_Slot { slot: ffi::Py_mod_multiple_interpreters, value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED },
    // pyo3-ffi does not gate this slot id: it exists from 3.13 on.
    #[cfg(Py_3_13)]
    ffi::PyModuleDef_Slot { slot: ffi::Py_mod_gil, value: ffi::Py_MOD_GIL_NOT_USED },
    ffi::PyModuleDef_Slot { slot: 0, value: ptr::null_mut() },
];

pub static mut MODULE_DEF: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"interpool._interpool".as_ptr(),
    m_doc: c"Rust core of interpool: own-GIL subinterpreter worker pools.".as_ptr(),
    m_size: std::mem::size_of::<*mut State>() as ffi::Py_ssize_t,
    m_methods: (&raw mut METHODS).cast(),
    m_slots: (&raw mut SLOTS).cast(),
    m_traverse: Some(module_traverse),
    m_clear: Some(module_clear),
    m_free: Some(module_free),
};
