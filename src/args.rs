//! The one argument parser: positional-or-keyword parameters matched by name, with
//! CPython's error messages, for vectorcall (`METH_FASTCALL | METH_KEYWORDS`) and
//! `tp_new` (tuple + dict) alike.
use std::time::Duration;

use pyo3_ffi as ffi;

use crate::py::{Borrowed, PyResult, Python};

/// The arguments of one call, borrowed for the call.
pub struct Args<'py> {
    py: Python<'py>,
    positional: Vec<Borrowed<'py, 'py>>,
    keywords: Vec<(&'py str, Borrowed<'py, 'py>)>,
}

impl<'py> Args<'py> {
    /// # Safety
    /// Attached; `args` holds `nargs` positional values followed by one value per name in
    /// `kwnames` (null or a tuple of str), all valid for `'py` (the vectorcall convention).
    pub unsafe fn vectorcall(
        py: Python<'py>,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Self {
        // SAFETY: PyVectorcall_NARGS only masks the offset flag out of the count.
        let npos = unsafe { ffi::PyVectorcall_NARGS(nargs.unsigned_abs()) }.unsigned_abs();
        // SAFETY: the first `npos` entries are valid objects (caller's contract).
        let at = |i: usize| unsafe { py.borrow(*args.add(i)) };
        let positional = (0..npos).map(at).collect();
        let mut keywords = Vec::new();
        if !kwnames.is_null() {
            // SAFETY: kwnames is a tuple of str, alive for the call.
            let names = unsafe { py.borrow(kwnames) };
            // SAFETY: a tuple.
            for k in 0..unsafe { ffi::PyTuple_GET_SIZE(kwnames) } {
                // SAFETY: k is in range; the item is a str owned by the tuple.
                let name = unsafe { py.borrow(ffi::PyTuple_GET_ITEM(names.as_ptr(), k)) };
                keywords.push((name.as_str("keyword").unwrap_or("?"), at(npos + k.unsigned_abs())));
            }
        }
        Args { py, positional, keywords }
    }

    /// # Safety
    /// Attached; `args` is a tuple and `kwargs` null or a dict, both alive for `'py`.
    pub unsafe fn tuple(py: Python<'py>, args: *mut ffi::PyObject, kwargs: *mut ffi::PyObject) -> PyResult<Self> {
        // SAFETY: a tuple (caller's contract); items are owned by it, alive for the call.
        let n = unsafe { ffi::PyTuple_GET_SIZE(args) };
        // SAFETY: as above, `i < n`.
        let positional = (0..n).map(|i| unsafe { py.borrow(ffi::PyTuple_GET_ITEM(args, i)) }).collect();
        let mut keywords = Vec::new();
        if !kwargs.is_null() {
            let mut pos: ffi::Py_ssize_t = 0;
            let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
            // SAFETY: a dict (caller's contract), not modified while we iterate; PyDict_Next
            // hands out borrowed references owned by the dict.
            while unsafe { ffi::PyDict_Next(kwargs, &mut pos, &mut key, &mut value) } != 0 {
                // SAFETY: as above.
                let (key, value) = unsafe { (py.borrow(key), py.borrow(value)) };
                keywords.push((key.as_str("keyword")?, value));
            }
        }
        Ok(Args { py, positional, keywords })
    }

    /// Match the arguments against `names`, of which the first `required` are mandatory.
    /// Returns one entry per name (`None`: not given).
    pub fn parse<const N: usize>(
        &self,
        func: &str,
        names: [&str; N],
        required: usize,
    ) -> PyResult<[Option<Borrowed<'py, 'py>>; N]> {
        let py = self.py;
        let mut out = [None; N];
        if self.positional.len() > N {
            let given = self.positional.len();
            return Err(py.type_error(&format!("{func}() takes at most {N} arguments ({given} given)")));
        }
        for (slot, arg) in out.iter_mut().zip(&self.positional) {
            *slot = Some(*arg);
        }
        for &(key, value) in &self.keywords {
            let Some(pos) = names.iter().position(|n| *n == key) else {
                return Err(py.type_error(&format!("{func}() got an unexpected keyword argument '{key}'")));
            };
            if out[pos].replace(value).is_some() {
                return Err(py.type_error(&format!("{func}() got multiple values for argument '{key}'")));
            }
        }
        if let Some((name, _)) = names.iter().zip(&out).take(required).find(|(_, v)| v.is_none()) {
            return Err(py.type_error(&format!("{func}() missing required argument '{name}'")));
        }
        Ok(out)
    }

    /// Exactly `N` positional arguments and no keywords (private building blocks).
    pub fn exactly<const N: usize>(&self, func: &str) -> PyResult<[Borrowed<'py, 'py>; N]> {
        match <[Borrowed<'py, 'py>; N]>::try_from(self.positional.as_slice()) {
            Ok(args) if self.keywords.is_empty() => Ok(args),
            _ => Err(self.py.type_error(&format!(
                "{func}() takes exactly {N} positional arguments ({} given)",
                self.positional.len() + self.keywords.len()
            ))),
        }
    }
}

/// An optional truth value (absent: `default`).
pub fn flag(arg: Option<Borrowed<'_, '_>>, default: bool) -> PyResult<bool> {
    arg.map_or(Ok(default), Borrowed::is_true)
}

/// A timeout argument: absent or `None` -> `None`; otherwise a non-negative real number of
/// seconds (`TypeError`/`ValueError` otherwise), at most [`MAX_TIMEOUT`].
pub fn timeout(arg: Option<Borrowed<'_, '_>>, what: &str) -> PyResult<Option<Duration>> {
    let Some(arg) = arg.filter(|a| !a.is_none()) else {
        return Ok(None);
    };
    let py = arg.py();
    let Ok(secs) = arg.as_f64() else {
        py.clear_exception();
        return Err(py.type_error(&format!("'{what}' must be a number or None, not {}", arg.type_name())));
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(py.value_error(&format!("'{what}' must be a non-negative number")));
    }
    Ok(Some(Duration::try_from_secs_f64(secs).map_or(MAX_TIMEOUT, |t| t.min(MAX_TIMEOUT))))
}

/// The longest time limit or wait: longer ones (up to infinity) are clamped to it, so that a
/// deadline `now + limit` can always be represented (an `Instant` overflows near 2^63 ns of
/// uptime + limit). 2^32 s is about 136 years.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(1 << 32);
