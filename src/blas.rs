//! BLAS threads: the process-wide limit that pools put on the BLAS libraries loaded in the
//! process (docs/design.md, "BLAS threads").
//!
//! A wheel's BLAS (numpy's and scipy's `libscipy_openblas*`, MKL, BLIS, FlexiBLAS) is a
//! bundled library that every isolated copy links to once per process
//! (`_isolate._bundled_libraries`): one thread pool serves every worker. N workers calling it
//! at once, each with a pool of `cores` threads, oversubscribe the machine; the library's own
//! setting is the only knob, and it is process-wide. A pool registers its limit
//! ([`limit`]); once a worker has loaded a library while a limit is held ([`after_load`],
//! called by the isolation loader), every BLAS library loaded in the process uses the
//! smallest limit held, and when the last pool releases its limit, each library gets back
//! the count it had before. A pool whose workers never load a library changes nothing.
//!
//! Libraries are found as threadpoolctl finds them: loaded objects whose file name starts
//! with a known prefix, and the library's own get/set functions looked up in it. Nothing
//! here touches a Python object: the functions only take and return integers and strings.
use std::ffi::{CStr, CString, c_int, c_void};
use std::sync::{Mutex, PoisonError};

use pyo3_ffi as ffi;

use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::ModuleRef;
use crate::trampoline::{Module, method};

/// How a library's thread count is read and set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    /// `int get(void)`, `void set(int)`: OpenBLAS, MKL, FlexiBLAS.
    Int,
    /// `int64_t get(void)`, `void set(int64_t)`: BLIS (`dim_t`).
    Dim,
}

/// A library family: file-name prefixes, then candidate (get, set) symbol pairs, first found wins.
struct Family {
    name: &'static str,
    prefixes: &'static [&'static str],
    symbols: &'static [(&'static CStr, &'static CStr)],
    api: Api,
}

const FAMILIES: [Family; 4] = [
    Family {
        name: "openblas",
        prefixes: &["libopenblas", "libscipy_openblas"],
        // threadpoolctl's affixes: symbol prefix "" or "scipy_", suffix "", "64_" or "_64".
        symbols: &[
            (c"openblas_get_num_threads", c"openblas_set_num_threads"),
            (c"openblas_get_num_threads64_", c"openblas_set_num_threads64_"),
            (c"openblas_get_num_threads_64", c"openblas_set_num_threads_64"),
            (c"scipy_openblas_get_num_threads", c"scipy_openblas_set_num_threads"),
            (c"scipy_openblas_get_num_threads64_", c"scipy_openblas_set_num_threads64_"),
            (c"scipy_openblas_get_num_threads_64", c"scipy_openblas_set_num_threads_64"),
        ],
        api: Api::Int,
    },
    Family {
        name: "mkl",
        prefixes: &["libmkl_rt"],
        symbols: &[(c"MKL_Get_Max_Threads", c"MKL_Set_Num_Threads")],
        api: Api::Int,
    },
    Family {
        name: "blis",
        prefixes: &["libblis"],
        symbols: &[(c"bli_thread_get_num_threads", c"bli_thread_set_num_threads")],
        api: Api::Dim,
    },
    Family {
        name: "flexiblas",
        prefixes: &["libflexiblas"],
        symbols: &[(c"flexiblas_get_num_threads", c"flexiblas_set_num_threads")],
        api: Api::Int,
    },
];

/// One BLAS library found loaded. Its handle is held (never closed), so the function
/// addresses stay valid for the life of the process.
struct Library {
    path: String,
    family: &'static str,
    api: Api,
    get: usize,
    set: usize,
    /// The count it had when a limit first reached it: what it gets back when none is left.
    original: Option<i64>,
}

impl Library {
    fn threads(&self) -> i64 {
        match self.api {
            Api::Int => {
                // SAFETY: `get` is the library's `int f(void)` getter (FAMILIES), found by
                // dlsym in a library whose handle we hold.
                let get = unsafe { std::mem::transmute::<usize, extern "C" fn() -> c_int>(self.get) };
                i64::from(get())
            }
            Api::Dim => {
                // SAFETY: as above, BLIS's `dim_t f(void)` (dim_t is int64_t).
                let get = unsafe { std::mem::transmute::<usize, extern "C" fn() -> i64>(self.get) };
                get()
            }
        }
    }

    fn set_threads(&self, n: i64) {
        match self.api {
            Api::Int => {
                // SAFETY: `set` is the library's `void f(int)` setter (FAMILIES), as above.
                let set = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(self.set) };
                set(c_int::try_from(n).unwrap_or(c_int::MAX));
            }
            Api::Dim => {
                // SAFETY: as above, BLIS's `void f(dim_t)`.
                let set = unsafe { std::mem::transmute::<usize, extern "C" fn(i64)>(self.set) };
                set(n);
            }
        }
    }
}

struct Registry {
    /// The limits pools hold now (one entry per pool; the smallest applies).
    limits: Vec<i64>,
    /// Every BLAS library found so far.
    libraries: Vec<Library>,
    /// Base addresses of the loaded objects already looked at.
    seen: Vec<usize>,
    /// Set once a worker loaded a library while a limit was held; until then the limits are
    /// only registered: a pool whose workers never load BLAS changes nothing.
    engaged: bool,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { limits: Vec::new(), libraries: Vec::new(), seen: Vec::new(), engaged: false });

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The loaded objects: (base address, path).
fn loaded_objects() -> Vec<(usize, String)> {
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call, and
        // `data` is the vector passed to dl_iterate_phdr below.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, String)>>()) };
        if !info.dlpi_name.is_null() {
            // SAFETY: non-null, NUL-terminated (the loader's name of the object).
            let name = unsafe { CStr::from_ptr(info.dlpi_name) };
            if !name.is_empty() {
                out.push((info.dlpi_addr as usize, name.to_string_lossy().into_owned()));
            }
        }
        0
    }
    let mut out: Vec<(usize, String)> = Vec::new();
    // SAFETY: `visit` matches the callback type and only writes to `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut out).cast()) };
    out
}

/// Look at the objects loaded since the last call; add the BLAS libraries among them.
fn discover(registry: &mut Registry) {
    for (base, path) in loaded_objects() {
        if registry.seen.contains(&base) {
            continue;
        }
        registry.seen.push(base);
        let file = path.rsplit('/').next().unwrap_or(&path);
        let Some(family) = FAMILIES.iter().find(|f| f.prefixes.iter().any(|p| file.starts_with(p))) else {
            continue;
        };
        let Ok(c_path) = CString::new(path.as_str()) else { continue };
        // SAFETY: a NUL-terminated path; RTLD_NOLOAD only returns a handle to an object that
        // is already loaded (and holds it: never closed, so the addresses below stay valid).
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        let found = family.symbols.iter().find_map(|(get, set)| {
            // SAFETY: a live handle and NUL-terminated names.
            let (get, set) = unsafe { (libc::dlsym(handle, get.as_ptr()), libc::dlsym(handle, set.as_ptr())) };
            (!get.is_null() && !set.is_null()).then_some((get as usize, set as usize))
        });
        // dlsym also searches the library's dependencies: one library found twice is one.
        let Some((get, set)) = found.filter(|(_, set)| registry.libraries.iter().all(|l| l.set != *set)) else {
            continue;
        };
        registry.libraries.push(Library { path, family: family.name, api: family.api, get, set, original: None });
    }
}

/// Give every library found the smallest limit held; with none left, the count each had
/// before the first limit reached it.
fn apply(registry: &mut Registry) {
    if !registry.engaged {
        return;
    }
    discover(registry);
    let limit = registry.limits.iter().copied().min();
    for library in &mut registry.libraries {
        match limit {
            Some(n) => {
                let now = library.threads();
                library.original.get_or_insert(now);
                if now != n {
                    library.set_threads(n);
                }
            }
            None => {
                if let Some(original) = library.original.take() {
                    library.set_threads(original);
                }
            }
        }
    }
}

/// Called after the isolation loader loaded an object: while a limit is held, the BLAS
/// libraries that came with it get it too. Cheap when nothing new is loaded (one walk of the
/// loader's list).
pub fn after_load() {
    let mut registry = registry();
    if registry.limits.is_empty() {
        return;
    }
    registry.engaged = true;
    apply(&mut registry);
}

fn positive(py: Python<'_>, value: Borrowed<'_, '_>) -> PyResult<i64> {
    let n = value.as_i64("threads")?;
    if n < 1 {
        return Err(py.value_error(&format!("BLAS threads must be at least 1, not {n}")));
    }
    Ok(n)
}

/// `_blas_limit(n)`: a pool holds a limit of `n` BLAS threads (applied once a worker loads a
/// library: [`after_load`]).
fn limit<'py>(py: Python<'py>, _module: ModuleRef<'py>, n: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let n = positive(py, n)?;
    let mut registry = registry();
    registry.limits.push(n);
    apply(&mut registry);
    Ok(py.none())
}

/// `_blas_release(n)`: a pool gives its limit of `n` back.
fn release<'py>(py: Python<'py>, _module: ModuleRef<'py>, n: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let n = positive(py, n)?;
    let mut registry = registry();
    if let Some(at) = registry.limits.iter().position(|&held| held == n) {
        registry.limits.swap_remove(at);
    }
    apply(&mut registry);
    if registry.limits.is_empty() {
        registry.engaged = false; // every library has its original count back
    }
    Ok(py.none())
}

/// `_blas_libraries() -> [(path, family, threads)]`: the BLAS libraries loaded in the process.
fn libraries<'py>(py: Python<'py>, _module: ModuleRef<'py>) -> PyResult<Owned<'py>> {
    let mut registry = registry();
    discover(&mut registry);
    let mut items = Vec::with_capacity(registry.libraries.len());
    for library in &registry.libraries {
        items.push(py.tuple(vec![py.str(&library.path)?, py.str(library.family)?, py.int(library.threads())?])?);
    }
    py.list(items)
}

pub const LIMIT: ffi::PyMethodDef =
    method!(Module, c"_blas_limit", o limit, c"_blas_limit(n, /): a pool holds a process-wide limit of n BLAS threads");
pub const RELEASE: ffi::PyMethodDef =
    method!(Module, c"_blas_release", o release, c"_blas_release(n, /): a pool gives its BLAS thread limit back");
pub const LIBRARIES: ffi::PyMethodDef = method!(
    Module,
    c"_blas_libraries",
    noargs libraries,
    c"_blas_libraries() -> [(path, family, threads)]: the BLAS libraries loaded in this process"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_symbols_and_prefixes() {
        for family in &FAMILIES {
            assert!(!family.prefixes.is_empty() && !family.symbols.is_empty(), "{}", family.name);
        }
    }

    #[test]
    fn the_loader_lists_this_process() {
        assert!(loaded_objects().iter().any(|(_, path)| path.contains("libc.so")));
    }
}
