//! Objects an interpreter decoded once and keeps: the cache of `interpool.Constant`s
//! (`codec/constant.rs`), by constant id, in the interpreter's module state.
//!
//! Each entry holds a weak reference to the constant and a strong reference to the object.
//! Entries whose constant is gone everywhere are swept whenever another is cached, and all
//! are released when the module is cleared (the interpreter ends).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use interpool_core::Constant;
use pyo3_ffi as ffi;

use crate::py::{Owned, Python};

struct Entry {
    constant: Weak<Constant>,
    /// A strong reference to the decoded object, in the cache's interpreter.
    obj: usize,
}

/// The constants an interpreter decoded, by id (in its module state).
#[derive(Default)]
pub struct ConstantCache(Mutex<HashMap<u64, Entry>>);

impl ConstantCache {
    /// Cache `obj` for `constant` (sweeping entries whose constant is gone) and return the
    /// cached object: `obj`, or the one another thread of this interpreter cached first.
    pub fn insert<'py>(&self, py: Python<'py>, constant: &Arc<Constant>, obj: Owned<'py>) -> Owned<'py> {
        let mut stale = Vec::new();
        let result = {
            let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            cache.retain(|_, entry| {
                let alive = entry.constant.strong_count() > 0;
                if !alive {
                    stale.push(entry.obj);
                }
                alive
            });
            match cache.get(&constant.id()) {
                // Another thread of this interpreter decoded it meanwhile: use theirs.
                // SAFETY: the cache owns a strong reference to an object of this interpreter.
                Some(entry) => {
                    crate::debug::check(entry.obj as *mut ffi::PyObject, "a decoded Constant");
                    // SAFETY: as above.
                    unsafe { py.borrow(entry.obj as *mut ffi::PyObject) }.to_owned()
                }
                None => {
                    let entry = Entry {
                        constant: Arc::downgrade(constant),
                        obj: {
                            let ptr = obj.borrowed().to_owned().into_ptr();
                            crate::debug::keep(ptr);
                            ptr as usize
                        },
                    };
                    cache.insert(constant.id(), entry);
                    obj
                }
            }
        };
        release(py, stale); // without the lock: a decref may run any code
        result
    }

    /// The cached object for constant `id`, if any.
    pub fn lookup<'py>(&self, py: Python<'py>, id: u64) -> Option<Owned<'py>> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the cache owns a strong reference to an object of this interpreter (`py`'s:
        // the cache is in its module state); taken under the lock, so no sweep frees it first.
        cache.get(&id).map(|entry| {
            crate::debug::check(entry.obj as *mut ffi::PyObject, "a decoded Constant");
            // SAFETY: as above.
            unsafe { py.borrow(entry.obj as *mut ffi::PyObject) }.to_owned()
        })
    }

    /// Release every cached object (module clear/free, attached).
    pub fn clear(&self, py: Python<'_>) {
        let entries = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        release(py, entries.into_values().map(|entry| entry.obj).collect());
    }
}

fn release(_py: Python<'_>, objects: Vec<usize>) {
    for obj in objects {
        crate::debug::release(obj as *mut ffi::PyObject, "a decoded Constant");
        // SAFETY: strong references the cache owned, released attached to its interpreter.
        unsafe { ffi::Py_DECREF(obj as *mut ffi::PyObject) };
    }
}
