//! Objects an interpreter decoded once and keeps: the cache of `interpool.Constant`s
//! (`codec/constant.rs`), by constant id, in the interpreter's module state.
//!
//! Each entry holds a weak reference to the constant and a strong reference to the object.
//! Entries whose constant is gone everywhere are swept whenever another is cached, and all
//! are released when the module is cleared (the interpreter ends).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use interpool_core::Constant;

use crate::py::{Owned, Python, Stashed};

struct Entry {
    constant: Weak<Constant>,
    /// A strong reference to the decoded object, in the cache's interpreter.
    obj: Stashed,
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
            let gone: Vec<u64> =
                cache.iter().filter(|(_, entry)| entry.constant.strong_count() == 0).map(|(&id, _)| id).collect();
            stale.extend(gone.into_iter().filter_map(|id| cache.remove(&id)));
            match cache.get(&constant.id()) {
                // Another thread of this interpreter decoded it meanwhile: use theirs.
                Some(entry) => entry.obj.bind(py).to_owned(),
                None => {
                    let entry = Entry { constant: Arc::downgrade(constant), obj: obj.borrowed().to_owned().stash() };
                    cache.insert(constant.id(), entry);
                    obj
                }
            }
        };
        release(py, stale); // without the lock: a decref may run any code
        result
    }

    /// The cached object for constant `id`, if any (taken under the lock, so no sweep frees
    /// it first).
    pub fn lookup<'py>(&self, py: Python<'py>, id: u64) -> Option<Owned<'py>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&id).map(|entry| entry.obj.bind(py).to_owned())
    }

    /// GC traversal of every cached object (see `Globals::traverse`).
    pub fn traverse(&self, visit: pyo3_ffi::visitproc, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.values().map(|entry| entry.obj.visit(visit, arg)).find(|&r| r != 0).unwrap_or(0)
    }

    /// Release every cached object (module clear/free, attached).
    pub fn clear(&self, py: Python<'_>) {
        let entries = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        release(py, entries.into_values().collect());
    }
}

fn release(py: Python<'_>, entries: Vec<Entry>) {
    for entry in entries {
        entry.obj.release(py);
    }
}
