//! The Python worker: an own-GIL subinterpreter running interpool's task loop.
//!
//! Protocol with `interpool/_worker.py` (all Rust data crosses, never an object):
//! - `start`: run the pool's bootstrap source in a fresh namespace of the new interpreter;
//!   it must bind `__interpool_bootstrap__`, which is called with `(config: bytes, index:
//!   int)` and returns either the task runner (a callable) or a `str` describing why the
//!   worker cannot start (a failing initializer), which breaks the pool.
//! - `run`: `runner(task: Packed) -> Packed`: the task's [`Value`] is handed over in a
//!   `Packed` of the worker's interpreter, and the reply must be a `Packed` `(status,
//!   payload)` tuple; bit [`REPLACE_FLAG`] of `status` asks for the interpreter to be replaced.
use std::ffi::CString;

use interpool_core::{Value, WorkerFactory};
use pyo3_ffi as ffi;

use crate::module::ModuleState;
use crate::py::{self, Attached, Owned, PyResult, Stashed};
use crate::subinterp::SubInterpreter;
use crate::value;

/// Status bit in a reply: replace this worker's interpreter after this task.
pub const REPLACE_FLAG: u8 = 0x80;
/// Status of a reply built here because the runner itself failed (an interpool bug or an
/// interpreter in a broken state): the payload is a message.
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
    /// The worker's `interpool._interpool` module (its state has the Packed type).
    module: Option<Stashed>,
    replace: bool,
}

impl PyFactory {
    /// Run the bootstrap in the attached new interpreter; `Ok(Err(msg))` is a refusal.
    fn bootstrap(&self, py: Attached, index: usize) -> PyResult<Result<(Owned, Owned), String>> {
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
        // SAFETY: attached; imports (or finds) the extension in this interpreter.
        let module = unsafe {
            Owned::from_new(
                py,
                ffi::PyImport_ImportModule(c"interpool._interpool".as_ptr()),
            )?
        };
        Ok(Ok((result, module)))
    }
}

impl WorkerFactory for PyFactory {
    type Worker = PyWorker;
    type Input = Value;
    type Output = Value;

    fn start(&self, index: usize) -> Result<PyWorker, String> {
        // SAFETY: worker threads have no thread state: they are fresh, or their previous
        // interpreter was ended by `stop`; pools are joined before finalization (the owner
        // registers a `threading._register_atexit` hook).
        let mut interp = unsafe { SubInterpreter::create()? };
        let py = interp.attach();
        let outcome = match self.bootstrap(py, index) {
            Ok(Ok((runner, module))) => Ok((runner.stash(), module.stash())),
            Ok(Err(message)) => Err(message),
            Err(py::PyErrSet) => Err(format!(
                "worker interpreter failed to start: {}",
                py::take_error_text(py)
            )),
        };
        match outcome {
            Ok((runner, module)) => {
                interp.detach();
                Ok(PyWorker {
                    interp,
                    runner: Some(runner),
                    module: Some(module),
                    replace: false,
                })
            }
            Err(message) => {
                interp.end();
                Err(message)
            }
        }
    }

    fn run(&self, worker: &mut PyWorker, input: Value) -> Value {
        let py = worker.interp.attach();
        let reply = match (worker.runner.as_ref(), worker.module.as_ref()) {
            (Some(runner), Some(module)) => {
                call_runner(py, runner.as_ptr(py), module.as_ptr(py), input)
            }
            _ => Err("worker has no runner".to_owned()),
        };
        worker.interp.detach();
        match reply {
            Ok(value) => {
                if let Value::Tuple(items) = &value
                    && let Some(Value::Int(status)) = items.first()
                {
                    worker.replace |= status & i64::from(REPLACE_FLAG) != 0;
                }
                value
            }
            Err(text) => {
                worker.replace = true;
                Value::Tuple(vec![
                    Value::Int(i64::from(STATUS_INTERNAL_ERROR)),
                    Value::Str(text),
                ])
            }
        }
    }

    fn stop(&self, mut worker: PyWorker) {
        let py = worker.interp.attach();
        for stashed in [worker.runner.take(), worker.module.take()]
            .into_iter()
            .flatten()
        {
            // SAFETY: attached to the interpreter these objects belong to.
            unsafe { stashed.release(py) };
        }
        worker.interp.end();
    }

    fn healthy(&self, worker: &PyWorker) -> bool {
        !worker.replace
    }
}

/// Hand the task to the runner in a `Packed` and take the reply's value out.
fn call_runner(
    py: Attached,
    runner: *mut ffi::PyObject,
    module: *mut ffi::PyObject,
    input: Value,
) -> Result<Value, String> {
    // SAFETY: attached to the worker; `module` is its interpool._interpool module.
    let state = unsafe { &*ffi::PyModule_GetState(module).cast::<ModuleState>() };
    let attempt = || -> PyResult<Option<Value>> {
        let task = value::new_packed(py, state, input)?;
        // SAFETY: attached; `runner` is a live callable of this interpreter (stashed by the
        // worker); new reference or null.
        let reply =
            unsafe { Owned::from_new(py, ffi::PyObject_CallOneArg(runner, task.as_ptr()))? };
        // SAFETY: `reply` is a valid object of this interpreter.
        Ok(unsafe { value::take_packed(state, reply.as_ptr()) })
    };
    match attempt() {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err("interpool worker runner did not return a Packed value".to_owned()),
        Err(py::PyErrSet) => Err(format!(
            "interpool worker runner failed: {}",
            py::take_error_text(py)
        )),
    }
}
