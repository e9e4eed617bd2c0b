//! interpool's extension module, `interpool._interpool`.
//!
//! A raw `pyo3-ffi` multi-phase module (not `#[pymodule]`: it must load inside own-GIL
//! subinterpreters; see docs/design.md). Layers, lowest first; a module uses only modules of
//! its own layer and of those before it, with no cycle (`scripts/check_structure.py` holds the
//! same list and enforces it):
//!
//! - C API: `debug` (debug mode's checks of kept objects), `fork_guard`, `py` (tokens,
//!   references, errors: the RAII layer over the C API).
//! - interpreter runtime: `pin` (memory lent to other interpreters), `globals` (functions by
//!   reference), `decoded` (constants an interpreter decoded), `state` (per-interpreter module
//!   state), `object` (Rust payloads in Python objects), `args` (the argument parser),
//!   `trampoline` (the one way CPython enters Rust), `testing` (tests only: the embedded
//!   interpreter the Rust tests run on).
//! - values: `handles` (the Python objects of the Queue and SharedBuffer handles values
//!   carry), `codec` (objects <-> Values, and the `Constant` class).
//! - workers: `protocol` (the owner/worker wire protocol), `interrupt` (stopping a running
//!   task), `isolate` (private copies of extension modules), `interp` (one subinterpreter's
//!   lifecycle), `threads` (`sys._current_frames` per interpreter), `worker` (a pool's workers).
//! - classes: `pool` (Pool, Ticket), `queue` (Queue), `buffer` (SharedBuffer).
//! - `module`, which assembles the module definition.
//!
//! Unsafe code is confined to small blocks, mostly in the first two layers; the pool engine
//! itself is the safe, Python-free `interpool-core` crate.

#[cfg(not(Py_3_12))]
compile_error!("interpool needs CPython >= 3.12 (own-GIL subinterpreters, PEP 684)");

mod args;
mod blas;
mod buffer;
mod codec;
mod debug;
mod decoded;
mod fork_guard;
mod gilstate;
mod globals;
mod handles;
mod interp;
mod interrupt;
mod isolate;
mod module;
mod object;
mod pin;
mod pool;
mod protocol;
mod py;
mod queue;
mod state;
#[cfg(test)]
mod testing;
mod threads;
mod trampoline;
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
