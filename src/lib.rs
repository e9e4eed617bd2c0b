//! interpool's extension module, `interpool._interpool`.
//!
//! A raw `pyo3-ffi` multi-phase module (not `#[pymodule]`: it must load inside own-GIL
//! subinterpreters; see `module.rs`). Unsafe code lives in the RAII layers `py.rs`
//! (references, errors) and `subinterp.rs` (interpreter lifecycle), and in the C-API
//! callbacks of `module.rs` and `pool_type.rs`. The pool engine itself is the safe,
//! Python-free `interpool-core` crate.

#[cfg(not(Py_3_12))]
compile_error!("interpool needs CPython >= 3.12 (own-GIL subinterpreters, PEP 684)");

mod args;
mod buffer;
mod fork_guard;
mod module;
mod pool_type;
mod py;
mod queue_type;
mod subinterp;
mod value;
mod worker;

/// Module entry point: multi-phase initialization.
///
/// # Safety
/// Called by CPython's import machinery.
#[allow(non_snake_case, reason = "the name CPython looks up")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn PyInit__interpool() -> *mut pyo3_ffi::PyObject {
    // SAFETY: MODULE_DEF is a static that lives for the whole process; CPython only reads it
    // (and initializes its base once, under the import lock).
    unsafe { pyo3_ffi::PyModuleDef_Init(&raw mut module::MODULE_DEF) }
}
