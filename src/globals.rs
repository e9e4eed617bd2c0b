//! Functions and classes sent *by reference* (module + qualified name), without pickle.
//!
//! This is the hot path of every `submit()`: the function. An object qualifies when it is a
//! plain function, a class, or a builtin function of a module, its `__module__` is not
//! `__main__` (the Python pickling policy decides how those travel), its `__qualname__` is
//! not local (`<locals>`, `<lambda>`), and `sys.modules[module]` reaches the very same object
//! through that name. The sender checks this on every send (a cached path of `getattr`s),
//! so a rebound name is noticed; the receiver imports the module and caches what the name
//! resolved to.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3_ffi as ffi;

use crate::py::{Borrowed, Owned, PyResult, Python, Stashed};

/// How an object is reached from its module. Owns a strong reference to each object it
/// names, released when the last `Arc` of it is dropped; paths live in one interpreter's
/// module state and are only used, and so dropped, by threads attached to it.
struct Path {
    /// The object itself (kept alive, so its address cannot be reused by another object),
    /// the module's name, then each part of the qualified name.
    refs: Vec<Stashed>,
    /// `module\0qualname`, as written on the wire.
    wire: Box<[u8]>,
}

impl Drop for Path {
    fn drop(&mut self) {
        for kept in self.refs.drain(..) {
            // SAFETY: a Path is neither Send nor Sync (its references are `Stashed`): it is
            // dropped on a thread of its interpreter, by code that holds a token (the codec,
            // the module's clear and free); `release` checks the interpreter.
            unsafe { kept.release_attached() };
        }
    }
}

/// The wire name of an object that goes by reference (see [`Globals::name_of`]).
pub struct Name(Arc<Path>);

impl Name {
    pub fn wire(&self) -> &[u8] {
        &self.0.wire
    }
}

/// FNV-1a: these maps are looked up once per task on each side, and their keys (addresses,
/// names of the process's own functions) need no protection from chosen collisions, so
/// SipHash's cost (~110 instructions for a short name) is not worth paying.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// The by-reference caches of one interpreter (in its module state).
#[derive(Default)]
pub struct Globals {
    /// Sender side: object address -> its path (`None`: does not qualify).
    by_object: Mutex<FastMap<usize, Option<Arc<Path>>>>,
    /// Receiver side: wire name -> the object it resolved to.
    by_name: Mutex<FastMap<Box<[u8]>, Stashed>>,
}

const MAX_ENTRIES: usize = 4096;

/// Objects cached by name are strong references owned by the cache: released here.
fn release(py: Python<'_>, objects: impl IntoIterator<Item = Stashed>) {
    for kept in objects {
        kept.release(py);
    }
}

impl Globals {
    /// The wire name of `obj` if it can be sent by reference.
    pub fn name_of(&self, obj: Borrowed<'_, '_>) -> PyResult<Option<Name>> {
        let key = obj.as_ptr() as usize;
        // No lock is held while Python code runs (getattr may run any code, even re-enter),
        // and paths dropped from the cache are released after the lock (a decref may too).
        let cached = self.by_object.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        let path = match cached {
            Some(Some(path)) => path,
            Some(None) => return Ok(None),
            None => {
                let path = Self::path_of(obj)?.map(Arc::new);
                let mut stale: Vec<Arc<Path>> = Vec::new();
                {
                    let mut cache = self.by_object.lock().unwrap_or_else(PoisonError::into_inner);
                    if cache.len() >= MAX_ENTRIES {
                        stale.extend(cache.drain().filter_map(|(_, p)| p));
                    }
                    stale.extend(cache.insert(key, path.clone()).flatten()); // another thread raced us
                }
                drop(stale);
                return Ok(path.map(Name)); // `path_of` checked that the name reaches `obj`
            }
        };
        // Check that the name still reaches this very object (names can be rebound).
        let py = obj.py();
        // SAFETY: `path` (an Arc held here) owns strong references to these objects of this
        // interpreter for as long as the borrows below are used.
        let parts = path.refs[2..].iter().map(|part| part.bind(py));
        let same = Self::resolve_loaded(path.refs[1].bind(py), parts)?.is_some_and(|f| f.borrowed().is(obj));
        Ok(same.then_some(Name(path)))
    }

    /// Compute the path of `obj`, if it qualifies.
    fn path_of(obj: Borrowed<'_, '_>) -> PyResult<Option<Path>> {
        let py = obj.py();
        // A built-in function of a module has the module as its `self`; a static method of a
        // built-in type (`str.maketrans`) has none (null).
        let module_function = || {
            // SAFETY: an exact built-in function (checked first); its self is null or an object.
            let owner = unsafe { ffi::PyCFunction_GetSelf(obj.as_ptr()) };
            // SAFETY: a valid object, checked non-null.
            !owner.is_null() && unsafe { ffi::PyModule_Check(owner) } != 0
        };
        // SAFETY: reading the type of a valid object.
        let kind_ok = obj.is_exactly(&raw mut ffi::PyFunction_Type)
            || unsafe { ffi::PyType_Check(obj.as_ptr()) } != 0
            || (obj.is_exactly(&raw mut ffi::PyCFunction_Type) && module_function());
        if !kind_ok {
            return Ok(None);
        }
        let (Ok(module), Ok(qualname)) = (obj.getattr(c"__module__"), obj.getattr(c"__qualname__")) else {
            py.clear_exception();
            return Ok(None);
        };
        let (Ok(module_str), Ok(qual_str)) = (module.borrowed().as_str("module"), qualname.borrowed().as_str("name"))
        else {
            py.clear_exception();
            return Ok(None);
        };
        if module_str == "__main__" || qual_str.contains('<') {
            return Ok(None);
        }
        let parts = qual_str.split('.').map(|p| py.str(p)).collect::<PyResult<Vec<_>>>()?;
        match Self::resolve_loaded(module.borrowed(), parts.iter().map(Owned::borrowed))? {
            Some(found) if found.borrowed().is(obj) => {}
            _ => return Ok(None),
        }
        let wire = [module_str.as_bytes(), b"\0", qual_str.as_bytes()].concat().into_boxed_slice();
        // The path owns a reference to the object and to each name.
        let refs = [obj.to_owned(), module].into_iter().chain(parts).map(Owned::stash).collect();
        Ok(Some(Path { refs, wire }))
    }

    /// `sys.modules[module]` followed through `parts`, without importing (`None` if absent).
    fn resolve_loaded<'a, 'py: 'a>(
        module: Borrowed<'_, 'py>,
        parts: impl Iterator<Item = Borrowed<'a, 'py>>,
    ) -> PyResult<Option<Owned<'py>>> {
        let Some(mut obj) = module.py().loaded_module(module)? else {
            return Ok(None);
        };
        for part in parts {
            match obj.borrowed().getattr_opt(part)? {
                Some(next) => obj = next,
                None => return Ok(None),
            }
        }
        Ok(Some(obj))
    }

    /// The object a wire name refers to, importing its module if needed (receiver side).
    pub fn resolve<'py>(&self, py: Python<'py>, wire: &[u8]) -> PyResult<Owned<'py>> {
        if let Some(found) = self.by_name.lock().unwrap_or_else(PoisonError::into_inner).get(wire) {
            return Ok(found.bind(py).to_owned());
        }
        let text = std::str::from_utf8(wire).map_err(|_| py.system_error("corrupt global name"))?;
        let (module, qualname) = text.split_once('\0').ok_or_else(|| py.system_error("corrupt global name"))?;
        let mut obj = py.import_object(py.str(module)?.borrowed())?;
        for part in qualname.split('.') {
            obj = obj.borrowed().getattr(&crate::py::cstring(py, part, "name")?)?;
        }
        let stale: Vec<Stashed> = {
            let mut cache = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = if cache.len() >= MAX_ENTRIES { cache.drain().map(|(_, p)| p).collect() } else { Vec::new() };
            let new = obj.borrowed().to_owned().stash();
            stale.into_iter().chain(cache.insert(wire.into(), new)).collect()
        };
        release(py, stale);
        Ok(obj)
    }

    /// GC traversal of every cached reference. Without it, a cached function whose globals
    /// lead back to this module (a module global holding a Queue or SharedBuffer, whose type
    /// holds the module) made a cycle the GC could not see: the interpreter's end then freed
    /// none of it. The locks are never contended here: no thread holds one across anything
    /// that allocates a Python object or lets the GC stop it.
    pub fn traverse(&self, visit: ffi::visitproc, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
        let by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let by_object = self.by_object.lock().unwrap_or_else(PoisonError::into_inner);
        let paths = by_object.values().flatten().flat_map(|path| path.refs.iter());
        by_name.values().chain(paths).map(|kept| kept.visit(visit, arg)).find(|&r| r != 0).unwrap_or(0)
    }

    /// Release every cached reference (attached to this interpreter: module clear/free).
    pub fn clear(&self, py: Python<'_>) {
        drop(std::mem::take(&mut *self.by_object.lock().unwrap_or_else(PoisonError::into_inner)));
        let by_name = std::mem::take(&mut *self.by_name.lock().unwrap_or_else(PoisonError::into_inner));
        release(py, by_name.into_values());
    }
}
