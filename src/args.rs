//! Argument parsing for `METH_FASTCALL | METH_KEYWORDS` methods: positional-or-keyword
//! parameters matched by name, with CPython-style error messages.
use pyo3_ffi as ffi;

use crate::py::{self, Attached, PyResult};

/// Match `args`/`kwnames` against `names`; the first `required` are mandatory. Returns a
/// borrowed object (or null when absent) per name.
///
/// # Safety
/// `args` holds `nargs` positional plus `len(kwnames)` keyword values (vectorcall layout),
/// valid for the duration of the call; `kwnames` is null or a tuple of str.
pub unsafe fn parse<const N: usize>(
    py: Attached,
    func: &str,
    names: [&str; N],
    required: usize,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[*mut ffi::PyObject; N]> {
    let mut out = [std::ptr::null_mut(); N];
    // SAFETY: PyVectorcall_NARGS only masks the offset flag out of the count.
    let npos =
        usize::try_from(unsafe { ffi::PyVectorcall_NARGS(nargs.unsigned_abs()) }).unwrap_or(0);
    if npos > N {
        return Err(py::type_error(
            py,
            &format!("{func}() takes at most {N} positional arguments ({npos} given)"),
        ));
    }
    for (i, slot) in out.iter_mut().enumerate().take(npos) {
        // SAFETY: the first `npos` entries of `args` are positional arguments.
        *slot = unsafe { *args.add(i) };
    }
    if !kwnames.is_null() {
        // SAFETY: kwnames is a tuple (vectorcall contract).
        let nkw = unsafe { ffi::PyTuple_Size(kwnames) };
        for k in 0..nkw {
            // SAFETY: k < len(kwnames); the item is a str owned by the tuple.
            let key = unsafe { py::str_view(py, ffi::PyTuple_GET_ITEM(kwnames, k), "keyword")? };
            let Some(pos) = names.iter().position(|n| *n == key) else {
                return Err(py::type_error(
                    py,
                    &format!("{func}() got an unexpected keyword argument '{key}'"),
                ));
            };
            if !out[pos].is_null() {
                return Err(py::type_error(
                    py,
                    &format!("{func}() got multiple values for argument '{key}'"),
                ));
            }
            // SAFETY: keyword values follow the positional ones in `args`.
            out[pos] = unsafe { *args.add(npos + k.unsigned_abs()) };
        }
    }
    if let Some(missing) = names
        .iter()
        .take(required)
        .zip(out.iter())
        .find(|(_, v)| v.is_null())
    {
        return Err(py::type_error(
            py,
            &format!("{func}() missing required argument '{}'", missing.0),
        ));
    }
    Ok(out)
}

/// Interpret an optional argument as a truth value (absent: `default`).
///
/// # Safety
/// `obj` is null or a valid reference.
pub unsafe fn truthy(obj: *mut ffi::PyObject, default: bool) -> PyResult<bool> {
    if obj.is_null() {
        return Ok(default);
    }
    // SAFETY: valid object (caller); -1 means an exception is set.
    match unsafe { ffi::PyObject_IsTrue(obj) } {
        -1 => Err(py::PyErrSet),
        v => Ok(v == 1),
    }
}

/// Parse a `timeout` argument: absent or None -> `None`; a non-negative number -> seconds.
///
/// # Safety
/// `obj` is null or a valid reference.
pub unsafe fn timeout(
    py: Attached,
    obj: *mut ffi::PyObject,
) -> PyResult<Option<std::time::Duration>> {
    // SAFETY: comparing against the None singleton.
    if obj.is_null() || obj == unsafe { ffi::Py_None() } {
        return Ok(None);
    }
    // SAFETY: valid object; PyFloat_AsDouble accepts any real number (or sets TypeError).
    let secs = unsafe { ffi::PyFloat_AsDouble(obj) };
    // SAFETY: checking this thread's error indicator.
    if secs == -1.0 && unsafe { !ffi::PyErr_Occurred().is_null() } {
        return Err(py::PyErrSet);
    }
    if secs.is_nan() || secs < 0.0 {
        return Err(py::value_error(
            py,
            "'timeout' must be a non-negative number",
        ));
    }
    Ok(Some(
        std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX),
    ))
}
