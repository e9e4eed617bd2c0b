//! The Python worker: an own-GIL subinterpreter running interpool's task loop.
//!
//! Protocol with `interpool/_worker.py` (all Rust data crosses, never an object):
//! - `start`: run the pool's bootstrap source in a fresh namespace of the new interpreter;
//!   it must bind `__interpool_bootstrap__`, which is called with `(config: bytes, index:
//!   int)` and returns either the task runner (a callable) or a `str` describing why the
//!   worker cannot start (a failing initializer), which breaks the pool.
//! - `run`: `runner(payload: bytes) -> bytes`. The first byte of the reply is a status that
//!   the owner decodes; bit [`REPLACE_FLAG`] asks for the interpreter to be replaced.
use std::ffi::CString;

use interpool_core::WorkerFactory;
use pyo3_ffi as ffi;

use crate::py::{self, Attached, Owned, PyResult, Stashed};
use crate::subinterp::SubInterpreter;

/// Status bit in a reply: replace this worker's interpreter after this task.
pub const REPLACE_FLAG: u8 = 0x80;
/// Status of a reply built here because the runner itself failed (an interpool bug or an
/// interpreter in a broken state): the rest of the reply is UTF-8 text.
pub const STATUS_INTERNAL_ERROR: u8 = 0x7f;

pub struct PyFactory {
    bootstrap: CString,
    config: Vec<u8>,
}

impl PyFactory {
    pub fn new(bootstrap: &str, config: Vec<u8>) -> Result<Self, String> {
        let bootstrap = CString::new(bootstrap).map_err(|_| "bootstrap source contains NUL")?;
        Ok(Self { bootstrap, config })
    }
}

pub struct PyWorker {
    interp: SubInterpreter,
    runner: Option<Stashed>,
    replace: bool,
}

impl PyFactory {
    /// Run the bootstrap in the attached new interpreter; `Ok(Err(msg))` is a refusal.
    fn bootstrap(&self, py: Attached, index: usize) -> PyResult<Result<Owned, String>> {
        // SAFETY: attached to the new interpreter; every object below belongs to it.
        let globals = unsafe { Owned::from_new(py, ffi::PyDict_New())? };
        // SAFETY: attached; source is NUL-terminated, globals is a dict (CPython adds
        // `__builtins__`); returns a new reference or null with an exception set.
        let _ = unsafe {
            Owned::from_new(
                py,
                ffi::PyRun_String(
                    self.bootstrap.as_ptr(),
                    ffi::Py_file_input,
                    globals.as_ptr(),
                    globals.as_ptr(),
                ),
            )?
        };
        // SAFETY: attached; borrowed lookup in our dict, or null (no exception) if missing.
        let func = unsafe {
            ffi::PyDict_GetItemString(globals.as_ptr(), c"__interpool_bootstrap__".as_ptr())
        };
        let Some(func) = std::ptr::NonNull::new(func) else {
            return Ok(Err(
                "bootstrap source did not define __interpool_bootstrap__".into(),
            ));
        };
        // SAFETY: `func` is a borrowed reference kept alive by `globals`.
        let func = unsafe { Owned::from_borrowed(py, func) };
        let config = py::bytes(py, &self.config)?;
        let index = py::uint(py, index as u64)?;
        let args = py::tuple(py, vec![config, index])?;
        // SAFETY: attached; calling a callable with a tuple of args, new reference or null.
        let result =
            unsafe { Owned::from_new(py, ffi::PyObject_CallObject(func.as_ptr(), args.as_ptr()))? };
        // SAFETY: `result` is a valid object we own.
        if unsafe { ffi::PyUnicode_Check(result.as_ptr()) } != 0 {
            // SAFETY: `result` is a str that outlives the borrow.
            let msg = unsafe { py::str_view(py, result.as_ptr(), "bootstrap reply")? };
            return Ok(Err(msg.to_owned()));
        }
        Ok(Ok(result))
    }
}

impl WorkerFactory for PyFactory {
    type Worker = PyWorker;
    type Input = Vec<u8>;
    type Output = Vec<u8>;

    fn start(&self, index: usize) -> Result<PyWorker, String> {
        // SAFETY: worker threads have no thread state: they are fresh, or their previous
        // interpreter was ended by `stop`; pools are joined before finalization (the owner
        // registers a `threading._register_atexit` hook).
        let mut interp = unsafe { SubInterpreter::create()? };
        let py = interp.attach();
        let outcome = match self.bootstrap(py, index) {
            Ok(Ok(runner)) => Ok(runner.stash()),
            Ok(Err(message)) => Err(message),
            Err(py::PyErrSet) => Err(format!(
                "worker interpreter failed to start: {}",
                py::take_error_text(py)
            )),
        };
        match outcome {
            Ok(runner) => {
                interp.detach();
                Ok(PyWorker {
                    interp,
                    runner: Some(runner),
                    replace: false,
                })
            }
            Err(message) => {
                interp.end();
                Err(message)
            }
        }
    }

    fn run(&self, worker: &mut PyWorker, input: Vec<u8>) -> Vec<u8> {
        let py = worker.interp.attach();
        let reply = match worker.runner.as_ref() {
            Some(runner) => call_runner(py, runner.as_ptr(py), &input),
            None => Err("worker has no runner".to_owned()),
        };
        worker.interp.detach();
        match reply {
            Ok(bytes) => {
                worker.replace |= bytes.first().is_some_and(|b| b & REPLACE_FLAG != 0);
                bytes
            }
            Err(text) => {
                worker.replace = true;
                let mut out = vec![STATUS_INTERNAL_ERROR];
                out.extend_from_slice(text.as_bytes());
                out
            }
        }
    }

    fn stop(&self, mut worker: PyWorker) {
        let py = worker.interp.attach();
        if let Some(runner) = worker.runner.take() {
            // SAFETY: attached to the interpreter the runner belongs to.
            unsafe { runner.release(py) };
        }
        worker.interp.end();
    }

    fn healthy(&self, worker: &PyWorker) -> bool {
        !worker.replace
    }
}

/// Call the runner with the payload and copy its `bytes` reply out of the interpreter.
fn call_runner(py: Attached, runner: *mut ffi::PyObject, input: &[u8]) -> Result<Vec<u8>, String> {
    let attempt = || -> PyResult<Vec<u8>> {
        let payload = py::bytes(py, input)?;
        // SAFETY: attached; `runner` is a live callable of this interpreter (stashed by the
        // worker) and `payload` a bytes object; new reference or null.
        let reply =
            unsafe { Owned::from_new(py, ffi::PyObject_CallOneArg(runner, payload.as_ptr()))? };
        // SAFETY: `reply` is owned here and outlives the borrowed slice.
        let data = unsafe { py::bytes_view(py, reply.as_ptr(), "runner reply")? };
        Ok(data.to_vec())
    };
    attempt().map_err(|py::PyErrSet| {
        format!(
            "interpool worker runner failed: {}",
            py::take_error_text(py)
        )
    })
}
