//! The Rust tests' embedded interpreter (built for tests only). The test binary links
//! libpython (the extension module itself never does: it is loaded by a Python process), so
//! the tests start CPython once, in isolated mode, with `_interpool` (this crate's module) as a
//! built-in module, and import it to get a real module state: its classes, and the package's
//! hooks as each test configures them.
use std::ffi::CStr;
use std::sync::{Mutex, Once, PoisonError};

use pyo3_ffi as ffi;

use crate::py::{Owned, PyResult, Python};
use crate::state::{ModuleRef, State};

static START: Once = Once::new();

fn start() {
    let program = env!("INTERPOOL_TEST_PYTHON");
    assert!(!program.is_empty(), "the build does not know its Python's executable: set PYO3_PYTHON");
    let program = std::ffi::CString::new(program).expect("a path without NUL");
    // SAFETY: before Python starts; the init function lives for the whole process.
    let added = unsafe { ffi::PyImport_AppendInittab(c"_interpool".as_ptr(), Some(crate::PyInit__interpool)) };
    assert_eq!(added, 0, "PyImport_AppendInittab");
    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: initializes the config, which is then used and cleared once.
    let mut config = unsafe {
        ffi::PyConfig_InitIsolatedConfig(config.as_mut_ptr());
        config.assume_init()
    };
    config.site_import = 0;
    // Its standard library is found from the interpreter the crate was built for.
    // SAFETY: an initialized config, one of its fields, a NUL-terminated path.
    let set = unsafe { ffi::PyConfig_SetBytesString(&mut config, &mut config.program_name, program.as_ptr()) };
    // SAFETY: a status returned above.
    assert_eq!(unsafe { ffi::PyStatus_Exception(set) }, 0, "PyConfig_SetBytesString");
    // SAFETY: once, before any other call into Python, with an initialized config.
    let started = unsafe { ffi::Py_InitializeFromConfig(&config) };
    // SAFETY: initialized above; cleared once.
    unsafe { ffi::PyConfig_Clear(&mut config) };
    // SAFETY: a status returned above.
    assert_eq!(unsafe { ffi::PyStatus_Exception(started) }, 0, "Py_InitializeFromConfig failed");
    // Every test thread attaches with PyGILState_Ensure.
    // SAFETY: this thread is attached since Py_InitializeFromConfig; detaches for good.
    unsafe { ffi::PyEval_SaveThread() };
}

/// Releases the GIL when a test ends, also when it fails (panics).
struct Attached(ffi::PyGILState_STATE);

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: the state `PyGILState_Ensure` returned on this thread.
        unsafe { ffi::PyGILState_Release(self.0) };
    }
}

/// Run `f` attached to the main interpreter, with the state of its `_interpool` module. One
/// test at a time: tests configure the module's hooks, and Python code may switch threads.
pub fn with_state<R>(f: impl for<'py> FnOnce(Python<'py>, &State) -> R) -> R {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    // Taken before attaching: a thread waiting for it holds no GIL.
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    START.call_once(start);
    // SAFETY: Python is initialized; released by `Attached`'s drop on this thread.
    let _attached = Attached(unsafe { ffi::PyGILState_Ensure() });
    // SAFETY: attached until `_attached` is dropped, after `f` returns.
    let py = unsafe { Python::assume() };
    let module = py.import(c"_interpool").unwrap_or_else(|_| panic!("import _interpool: {}", error_text(py)));
    // SAFETY: the `_interpool` module, alive while `module` is held.
    let state = unsafe { ModuleRef::assume(module.borrowed()) }.state();
    f(py, state)
}

/// Run Python statements in a fresh namespace: a name space from which [`get`] takes objects.
pub fn run<'py>(py: Python<'py>, source: &CStr) -> PyResult<Owned<'py>> {
    let globals = py.dict()?;
    let builtins = py.import(c"builtins")?;
    globals.borrowed().set_item(py.str("__builtins__")?.borrowed(), builtins.borrowed())?;
    // SAFETY: attached; a NUL-terminated source; dicts; a new reference or null.
    drop(unsafe {
        py.own(ffi::PyRun_String(source.as_ptr(), ffi::Py_file_input, globals.as_ptr(), globals.as_ptr()))?
    });
    Ok(globals)
}

/// `namespace[name]` (panics if missing).
pub fn get<'py>(namespace: &Owned<'py>, name: &CStr) -> Owned<'py> {
    // SAFETY: attached; a dict and a NUL-terminated key; a borrowed reference or null.
    let found = unsafe { ffi::PyDict_GetItemString(namespace.as_ptr(), name.as_ptr()) };
    assert!(!found.is_null(), "{name:?} is not defined");
    // SAFETY: a valid object owned by the namespace, which outlives this borrow.
    unsafe { namespace.borrowed().py().borrow(found) }.to_owned()
}

/// The exception that is set, as text (cleared).
pub fn error_text(py: Python<'_>) -> String {
    match py.take_exception() {
        Some(exc) => format!("{}: {}", exc.borrowed().type_name(), exc.borrowed().describe()),
        None => "no exception set".to_owned(),
    }
}
