//! Isolation: load a private copy of an extension module into the calling interpreter.
//!
//! `python/interpool/_isolate.py` copies an extension module's file for each worker
//! interpreter and calls [`load_copy`] with the copy's path; a different file is a different
//! set of C globals to the dynamic loader, so each copy sees exactly one interpreter
//! (docs/isolation.md). Why not `_imp.create_dynamic`: since 3.13 CPython runs an
//! extension's init function with the *main* interpreter's thread state and, for single-phase
//! modules, hands other interpreters a copy of a dict whose objects belong to the main one.
//! Here the init function runs in the calling worker, as it would in a process of its own:
//!
//! - multi-phase (`PyInit_*` returns a `PyModuleDef`): `PyModule_FromDefAndSpec2`, then
//!   `PyModule_ExecDef` from [`exec_copy`], as the import system's create/exec steps;
//! - single-phase (it returns the module): the module as is, registered with
//!   `PyState_AddModule` as `import.c` does, so `PyState_FindModule` works for it.
//!
//! Libraries are opened `RTLD_NOW | RTLD_LOCAL` and never closed: an interpreter's modules
//! may outlive it in CPython's own caches, as with every extension module.
use std::ffi::{CStr, c_void};
use std::sync::{Condvar, Mutex, PoisonError};

use pyo3_ffi as ffi;

use crate::args::Args;
use crate::py::{Borrowed, Owned, PyResult, Python, cstring};
use crate::state::ModuleRef;
use crate::trampoline::{Module, method};

/// The signature of `PyInit_<name>`.
type InitFn = unsafe extern "C" fn() -> *mut ffi::PyObject;

/// The dynamic loader's last error message.
fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl* call
    // on this thread, which we copy before making one.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: non-null, NUL-terminated (above).
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`; the handle is never closed.
fn open(py: Python<'_>, path: &str) -> PyResult<*mut c_void> {
    let c_path = cstring(py, path, "path")?;
    // SAFETY: a NUL-terminated path; dlopen runs the library's constructors, as any import of
    // an extension module does.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(py.import_error(&format!("cannot load {path}: {}", dl_error())));
    }
    crate::blas::after_load(); // a BLAS library it brought gets the pools' thread limit
    Ok(handle)
}

/// `_dlopen(path)`: load a shared library for the copies that need it (a wheel's bundled
/// `<dist>.libs`), so that every copy links to this one instance.
fn dlopen<'py>(py: Python<'py>, _module: ModuleRef<'py>, path: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    open(py, path.as_str("path")?)?;
    Ok(py.none())
}

/// `_load_copy(path, symbol, spec) -> (module, multi_phase)`: run the init function `symbol`
/// of the extension file `path` in this interpreter and create its module for `spec`.
fn load_copy<'py>(py: Python<'py>, _module: ModuleRef<'py>, args: Args<'py>) -> PyResult<Owned<'py>> {
    let [path, symbol, spec] = args.exactly("_load_copy")?;
    let path = path.as_str("path")?;
    let handle = open(py, path)?;
    let c_symbol = cstring(py, symbol.as_str("symbol")?, "symbol")?;
    // SAFETY: a handle from dlopen and a NUL-terminated symbol name.
    let address = unsafe { libc::dlsym(handle, c_symbol.as_ptr()) };
    if address.is_null() {
        return Err(py.import_error(&format!("{path} does not define {}: {}", symbol.as_str("symbol")?, dl_error())));
    }
    // SAFETY: `PyInit_*` symbols have this signature (PEP 489); CPython's loader makes the same cast.
    let init = unsafe { std::mem::transmute::<*mut c_void, InitFn>(address) };
    // SAFETY: attached to this interpreter; the init function is called as CPython calls it.
    let raw = unsafe { init() };
    if raw.is_null() {
        if py.error_occurred() {
            return Err(crate::py::PyErr::fetched());
        }
        return Err(py.system_error(&format!("initialization of {path} failed without raising an exception")));
    }
    // SAFETY: `raw` is a live object: a module definition (multi-phase) or a module.
    let is_def = unsafe { ffi::Py_TYPE(raw) == &raw mut ffi::PyModuleDef_Type };
    if is_def {
        let def = raw.cast::<ffi::PyModuleDef>();
        declare_own_gil_support(def);
        // SAFETY: attached; `def` was initialized by PyModuleDef_Init in its init function;
        // `spec` is the module spec; new reference or null.
        let module = unsafe { py.own(ffi::PyModule_FromDefAndSpec2(def, spec.as_ptr(), ffi::PYTHON_API_VERSION))? };
        return py.tuple(vec![module, py.bool(true)]);
    }
    // SAFETY: single-phase init returns a new reference.
    let module = unsafe { py.own(raw)? };
    // SAFETY: attached; any object.
    if unsafe { ffi::PyModule_Check(module.as_ptr()) } == 0 {
        return Err(
            py.system_error(&format!("the init function of {path} returned a {}", module.borrowed().type_name()))
        );
    }
    register_single_phase(py, module.borrowed())?;
    py.tuple(vec![module, py.bool(false)])
}

/// Make this copy's definition declare `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`, which is true
/// of a private copy (it sees a single interpreter), so that `PyModule_FromDefAndSpec2`
/// accepts it in an own-GIL interpreter. The definition lives in the copy's own writable
/// data (its init function has just initialized it), so no other interpreter sees the
/// change. Free-threaded builds have no other way: `_imp._override_multi_interp_extensions_check`
/// is refused there. The new slot table is leaked: the definition refers to it for ever.
fn declare_own_gil_support(def: *mut ffi::PyModuleDef) {
    let mut slots = Vec::new();
    // SAFETY: an initialized definition; `m_slots` is null or a table ended by slot 0.
    let mut slot = unsafe { (*def).m_slots };
    while !slot.is_null() {
        // SAFETY: within the table (the loop stops at its terminator).
        let entry = unsafe { slot.read() };
        if entry.slot == 0 {
            break;
        }
        if entry.slot != ffi::Py_mod_multiple_interpreters {
            slots.push(entry);
        }
        // SAFETY: the terminator has not been reached, so the next entry exists.
        slot = unsafe { slot.add(1) };
    }
    slots.push(ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_multiple_interpreters,
        value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED,
    });
    slots.push(ffi::PyModuleDef_Slot { slot: 0, value: std::ptr::null_mut() });
    let table = Box::leak(slots.into_boxed_slice());
    // SAFETY: the definition is in the private copy's writable data, used by this interpreter
    // only; the table lives for ever.
    unsafe { (*def).m_slots = table.as_mut_ptr() };
}

/// What `import.c` does for a single-phase module: make it `PyState_FindModule`'s answer in
/// this interpreter, unless its init function already did.
fn register_single_phase(_py: Python<'_>, module: Borrowed<'_, '_>) -> PyResult<()> {
    // SAFETY: attached; a module object.
    let def = unsafe { ffi::PyModule_GetDef(module.as_ptr()) };
    // SAFETY: attached; `def` is the module's definition, initialized by PyModule_Create.
    if !def.is_null() && unsafe { ffi::PyState_FindModule(def) }.is_null() {
        // SAFETY: attached; the module and its own definition.
        crate::py::check(unsafe { ffi::PyState_AddModule(module.as_ptr(), def) })?;
    }
    Ok(())
}

/// `_exec_copy(module)`: the exec step of a multi-phase module created by `_load_copy`.
fn exec_copy<'py>(py: Python<'py>, _module: ModuleRef<'py>, module: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    // SAFETY: attached; any object (null with an exception set when it is not a module).
    let def = unsafe { ffi::PyModule_GetDef(module.as_ptr()) };
    if def.is_null() {
        return Err(if py.error_occurred() {
            crate::py::PyErr::fetched()
        } else {
            py.type_error("not an extension module")
        });
    }
    // SAFETY: attached; the module and the definition it was created from.
    crate::py::check(unsafe { ffi::PyModule_ExecDef(module.as_ptr(), def) })?;
    Ok(py.none())
}

/// The extension gate. Since 3.13, CPython runs a worker's extension init function in the
/// *main* interpreter, on the worker's thread, with a main-interpreter thread state that it
/// makes and deletes without the main GIL (`switch_to_main_interpreter`, Python/import.c); it
/// does so for every built-in and extension module a worker loads, from the first ones an
/// interpreter loads while it is created. Two consequences:
///
/// - on a free-threaded build nothing serializes two workers doing that (with a GIL, the main
///   GIL does), and two workers importing `readline` at once corrupted the heap (10 of 300
///   fresh processes): there, workers pass the gate one at a time ([`Mode::Exclusive`]);
/// - `threads.rs` walks the main interpreter's thread states, which these switches link and
///   unlink: a walk during a worker's creation crashed 3.13 (a sampler of
///   `sys._current_frames()` beside a starting pool). The walk holds the gate exclusively,
///   while workers hold it (shared, with a GIL) from creating their interpreter through the
///   bootstrap that wraps the loaders (`worker.rs`), around each extension module they load
///   afterwards (`_worker.py` wraps `ExtensionFileLoader.create_module` and
///   `BuiltinImporter.create_module`), and while ending their interpreter.
///
/// Re-entrant per thread (an extension's init may import other extensions). Always waited for
/// detached: a holder may be waiting for the waiter's GIL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// How workers hold the gate: shared with a GIL, one at a time on free-threaded builds.
pub(crate) const WORKER: Mode = if cfg!(Py_GIL_DISABLED) { Mode::Exclusive } else { Mode::Shared };

struct Gate {
    exclusive: Option<std::thread::ThreadId>,
    shared: usize,
}

static GATE: Mutex<Gate> = Mutex::new(Gate { exclusive: None, shared: 0 });
static GATE_FREE: Condvar = Condvar::new();

thread_local! {
    /// How deep this thread holds the gate (0: not at all).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(crate) fn gate_enter(mode: Mode) {
    let depth = HELD.get();
    if depth > 0 {
        HELD.set(depth + 1); // held already, in some mode: nested loads go on
        return;
    }
    let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    match mode {
        Mode::Shared => {
            while gate.exclusive.is_some() {
                gate = GATE_FREE.wait(gate).unwrap_or_else(PoisonError::into_inner);
            }
            gate.shared += 1;
        }
        Mode::Exclusive => {
            while gate.exclusive.is_some() || gate.shared > 0 {
                gate = GATE_FREE.wait(gate).unwrap_or_else(PoisonError::into_inner);
            }
            gate.exclusive = Some(std::thread::current().id());
        }
    }
    HELD.set(1);
}

pub(crate) fn gate_leave() {
    match HELD.get() {
        0 => {}
        1 => {
            HELD.set(0);
            let mut gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
            if gate.exclusive == Some(std::thread::current().id()) {
                gate.exclusive = None;
            } else {
                gate.shared -= 1;
            }
            GATE_FREE.notify_all();
        }
        depth => HELD.set(depth - 1),
    }
}

/// The gate held by this thread until dropped.
pub(crate) struct GateHeld(());

impl GateHeld {
    /// Enter the gate (the thread must not be attached: see [`Gate`]).
    pub(crate) fn enter(mode: Mode) -> Self {
        gate_enter(mode);
        GateHeld(())
    }
}

impl Drop for GateHeld {
    fn drop(&mut self) {
        gate_leave();
    }
}

/// `_extension_gate(on)`: enter (waiting detached) or leave the extension-loading gate.
fn extension_gate<'py>(py: Python<'py>, _module: ModuleRef<'py>, on: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    if on.is_true()? {
        py.detached(|| gate_enter(WORKER));
    } else {
        gate_leave();
    }
    Ok(py.none())
}

pub const EXTENSION_GATE: ffi::PyMethodDef = method!(
    Module,
    c"_extension_gate",
    o extension_gate,
    c"_extension_gate(on, /): a worker enters (waiting detached) or leaves the extension gate around an import"
);
pub const LOAD_COPY: ffi::PyMethodDef = method!(
    Module,
    c"_load_copy",
    args load_copy,
    c"_load_copy(path, symbol, spec) -> (module, multi_phase): load a private copy of an extension module"
);
pub const EXEC_COPY: ffi::PyMethodDef =
    method!(Module, c"_exec_copy", o exec_copy, c"_exec_copy(module): run a multi-phase module's exec slots");
pub const DLOPEN: ffi::PyMethodDef =
    method!(Module, c"_dlopen", o dlopen, c"_dlopen(path): load a shared library once for the whole process");
