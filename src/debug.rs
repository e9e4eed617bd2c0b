//! Debug mode (`INTERPOOL_DEBUG=1`): ownership of the objects interpool keeps, checked.
//!
//! interpool keeps some objects beyond one call as raw strong references: module-state slots
//! (types, hooks, exception classes), the codec's caches of functions by reference and of
//! decoded constants, workers' stashed hooks. Each belongs to one interpreter and may be used
//! and released only while that interpreter is current (docs/design.md, "Objects and
//! interpreters"); a mistake corrupts the heap silently and aborts the process later, far
//! away. In debug mode every such reference is registered with its interpreter when it is
//! kept, and every use and release checks that the calling thread is attached to that
//! interpreter; a mismatch (or a release with no interpreter attached) ends the process at
//! once with `Py_FatalError` and a message naming what was touched, its interpreter and the
//! current one (CPython then prints the Python stack of the offending thread).
//!
//! The check is a process-wide map from address to (interpreter, references), so the mode
//! costs a lock per keep, use and release; off, each hook is one relaxed load. `make test`
//! runs the 3.14 suite in this mode, under `PYTHONMALLOC=pymalloc_debug`, which turns a
//! cross-heap free that escapes these checks into a fatal error at the free.
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use pyo3_ffi as ffi;

/// Whether `INTERPOOL_DEBUG` is set (to anything but "" or "0"); read once per process.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("INTERPOOL_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Kept object address -> (its interpreter, references kept).
static KEPT: Mutex<Option<HashMap<usize, (usize, usize)>>> = Mutex::new(None);

/// The interpreter this thread is attached to, if any (no token needed).
pub fn attached_interpreter() -> Option<usize> {
    #[cfg(Py_3_13)]
    // SAFETY: may be called without an attached thread state; returns null then.
    let tstate = unsafe { ffi::PyThreadState_GetUnchecked() };
    #[cfg(not(Py_3_13))]
    // SAFETY: as above (the 3.12 name of the same function).
    let tstate = unsafe { _PyThreadState_UncheckedGet() };
    // SAFETY: a current thread state is attached (3.12+) and has an interpreter.
    (!tstate.is_null()).then(|| unsafe { ffi::PyThreadState_GetInterpreter(tstate) } as usize)
}

#[cfg(not(Py_3_13))]
unsafe extern "C" {
    fn _PyThreadState_UncheckedGet() -> *mut ffi::PyThreadState;
}

fn interpreter_id(interp: usize) -> i64 {
    // SAFETY: an interpreter that kept an object and whose objects are still registered is alive
    // (its module state releases them before it ends).
    unsafe { ffi::PyInterpreterState_GetID(interp as *mut ffi::PyInterpreterState) }
}

fn fail(what: &str, ptr: usize, home: usize, current: Option<usize>) -> ! {
    let now = current.map_or_else(
        || "no interpreter is attached".to_owned(),
        |c| format!("interpreter {} is current", interpreter_id(c)),
    );
    let message = format!(
        "interpool debug: {what} at {ptr:#x} belongs to interpreter {} but {now} \
         (an object used or released from the wrong interpreter)",
        interpreter_id(home)
    );
    let text = std::ffi::CString::new(message).unwrap_or_default();
    // SAFETY: a NUL-terminated message; Py_FatalError never returns.
    unsafe { ffi::Py_FatalError(text.as_ptr()) }
}

/// A strong reference to `ptr` is now kept (by the current interpreter, which owns it).
pub fn keep(ptr: *mut ffi::PyObject) {
    if !enabled() {
        return;
    }
    let Some(current) = attached_interpreter() else {
        fail("an object being kept", ptr as usize, 0, None);
    };
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = kept.get_or_insert_with(HashMap::new).entry(ptr as usize).or_insert((current, 0));
    if entry.0 != current {
        let home = entry.0;
        drop(kept);
        fail("an object being kept", ptr as usize, home, Some(current));
    }
    entry.1 += 1;
}

/// An interpreter ended: forget what it kept (its memory is gone, and its addresses may be
/// reused by another interpreter's objects).
pub fn interpreter_ended(interp: usize) {
    if !enabled() {
        return;
    }
    if let Some(map) = KEPT.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        map.retain(|_, entry| entry.0 != interp);
    }
}

/// A kept reference to `ptr` is about to be used.
pub fn check(ptr: *mut ffi::PyObject, what: &str) {
    if !enabled() {
        return;
    }
    let home =
        KEPT.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|k| k.get(&(ptr as usize))).map(|e| e.0);
    let current = attached_interpreter();
    if let Some(home) = home
        && current != Some(home)
    {
        fail(what, ptr as usize, home, current);
    }
}

/// A kept reference to `ptr` is about to be released (decref'd).
pub fn release(ptr: *mut ffi::PyObject, what: &str) {
    if !enabled() {
        return;
    }
    let current = attached_interpreter();
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(map) = kept.as_mut() else { return };
    let Some(entry) = map.get_mut(&(ptr as usize)) else { return };
    let home = entry.0;
    if current != Some(home) {
        drop(kept);
        fail(what, ptr as usize, home, current);
    }
    entry.1 -= 1;
    if entry.1 == 0 {
        map.remove(&(ptr as usize));
    }
}
