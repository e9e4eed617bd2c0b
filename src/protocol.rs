//! The wire protocol between the owner of a pool and its workers, defined once here: how a
//! call becomes a task and is read back in a worker, what a worker replies, and the form the
//! owner's dispatcher receives. The statuses are exported to Python as module constants
//! (`STATUS_*`), so `_executor.py` uses the same numbers by name.
//!
//! - A *task* is a [`Value`] holding three objects written one after another: the callable,
//!   the keyword arguments (`None` when there are none, the common case) and the positional
//!   arguments (a tuple). [`encode_task`] writes it in the owner's `Pool.submit`;
//!   [`Call::decode`] reads it in the worker. Without keywords, a tuple of at most
//!   [`FEW_ARGS`] items is read as its items only and the function is called by vectorcall,
//!   with neither the tuple nor an empty dict built.
//! - A *reply* is a [`Reply`]: a [`Status`] and a payload `Value` holding one object. Whether
//!   the worker's interpreter must be replaced after the task is decided and acted on by the
//!   worker itself; it never travels to the owner.
//! - The owner's dispatcher receives, per finished task, `(id, status, payload)`, and once
//!   if the pool breaks, `(None, message, [ids of the tasks abandoned])` ([`event`]).
use interpool_core::{Event, Value};
use pyo3_ffi as ffi;

use crate::codec::{self, Decoder, Encoder};
use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::State;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The call returned; the payload is its result.
    Returned = 0,
    /// The call raised; the payload describes the exception (`_worker.describe`).
    Raised = 1,
    /// The call could not be rebuilt in the worker (loading the function or an argument
    /// failed, e.g. an import): it never started. The payload is as for `Raised`.
    NotStarted = 2,
    /// interpool's own machinery failed in the worker (a bug, or an interpreter left
    /// unusable); the payload is a message. The worker is replaced.
    WorkerFailed = 3,
    /// The reply could not be rebuilt in the owner; the payload is the exception object.
    Unreadable = 4,
    /// The task ran past its timeout and was stopped; the payload describes the exception
    /// raised where it stopped (as for `Raised`), or is a message (it returned anyway, or it
    /// was stuck and given up).
    TimedOut = 5,
    /// The task was interrupted (`interrupt()`, a shutdown that interrupts); payload as for
    /// `TimedOut`.
    Interrupted = 6,
}

impl Status {
    /// Every status with the name of its Python constant.
    pub const ALL: [(Status, &'static std::ffi::CStr); 7] = [
        (Status::Returned, c"STATUS_RETURNED"),
        (Status::Raised, c"STATUS_RAISED"),
        (Status::NotStarted, c"STATUS_NOT_STARTED"),
        (Status::WorkerFailed, c"STATUS_WORKER_FAILED"),
        (Status::Unreadable, c"STATUS_UNREADABLE"),
        (Status::TimedOut, c"STATUS_TIMED_OUT"),
        (Status::Interrupted, c"STATUS_INTERRUPTED"),
    ];
}

/// What a worker sends back for one task.
pub struct Reply {
    pub status: Status,
    pub payload: Value,
}

/// The positional arguments a worker passes by vectorcall, with no tuple built (more go as a
/// tuple).
pub const FEW_ARGS: usize = 6;

/// The task for `func(*args, **kwargs)` (owner side; `args` a tuple, `kwargs` a dict).
pub fn encode_task<'py>(
    py: Python<'py>,
    state: &State,
    func: Borrowed<'_, 'py>,
    args: Borrowed<'_, 'py>,
    kwargs: Borrowed<'_, 'py>,
    zero_copy: Option<u64>,
) -> PyResult<Value> {
    let mut task = Encoder::new(py, state).out_of_band(zero_copy);
    task.push(func)?;
    // SAFETY: reads the size of an exact dict.
    if kwargs.is_exactly(&raw mut ffi::PyDict_Type) && unsafe { ffi::PyDict_Size(kwargs.as_ptr()) } == 0 {
        task.push(py.none().borrowed())?;
    } else {
        task.push(kwargs)?;
    }
    task.push(args)?;
    Ok(task.finish())
}

/// A task read back in a worker: the function and its arguments, ready to call.
pub struct Call<'py> {
    func: Owned<'py>,
    args: CallArgs<'py>,
}

enum CallArgs<'py> {
    /// No keywords and at most [`FEW_ARGS`] positional arguments: the first `n` items.
    Few([Option<Owned<'py>>; FEW_ARGS], usize),
    /// A tuple, and a dict or `None`.
    Tuple(Owned<'py>, Option<Owned<'py>>),
}

impl<'py> Call<'py> {
    /// Read a task written by [`encode_task`] (a failure is the task's: loading the function
    /// or an argument failed, e.g. an import, or the value is corrupt).
    pub fn decode(py: Python<'py>, state: &State, task: &Value) -> PyResult<Self> {
        let mut decoder = Decoder::new(py, state, task);
        let (func, kwargs) = (decoder.next()?, decoder.next()?);
        let few = if kwargs.borrowed().is_none() { decoder.next_args::<FEW_ARGS>()? } else { None };
        let args = match few {
            Some((items, n)) => CallArgs::Few(items, n),
            None => CallArgs::Tuple(decoder.next()?, (!kwargs.borrowed().is_none()).then_some(kwargs)),
        };
        decoder.finish()?;
        Ok(Call { func, args })
    }

    /// `func(*args, **kwargs)`.
    pub fn call(&self) -> PyResult<Owned<'py>> {
        let func = self.func.borrowed();
        match &self.args {
            CallArgs::Few(items, n) => {
                let none = func.py().none();
                let borrowed: [Borrowed<'_, 'py>; FEW_ARGS] =
                    std::array::from_fn(|i| items[i].as_ref().map_or(none.borrowed(), Owned::borrowed));
                func.call_args(&borrowed[..*n])
            }
            CallArgs::Tuple(args, kwargs) => func.call(args.borrowed(), kwargs.as_ref().map(Owned::borrowed)),
        }
    }

    /// Release the arguments; keep the function (for messages about the result).
    pub fn into_function(self) -> Owned<'py> {
        self.func
    }
}

/// The owner-side form of an event: `(id, status, payload)` with the payload decoded here (a
/// failure is the task's alone: `UNREADABLE` and the exception), or
/// `(None, message, [abandoned ids])`.
pub fn event<'py>(py: Python<'py>, state: &State, event: Event<Reply>) -> PyResult<Owned<'py>> {
    match event {
        Event::Done { id, output: Reply { status, payload } } => {
            let (status, payload) = match codec::decode(py, state, &payload) {
                Ok(obj) => (status, obj),
                Err(_) => (Status::Unreadable, py.take_exception().unwrap_or_else(|| py.none())),
            };
            py.tuple(vec![py.uint(id)?, py.uint(status as u64)?, payload])
        }
        Event::Broken { message, abandoned } => {
            let ids = abandoned.into_iter().map(|id| py.uint(id)).collect::<PyResult<_>>()?;
            py.tuple(vec![py.none(), py.str(&message)?, py.list(ids)?])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{error_text, get, run, with_state};

    const CASES: &std::ffi::CStr = cr#"
import sys

# A function of a module, so that it goes by reference.
module = type(sys)("protocol_cases")
sys.modules["protocol_cases"] = module
exec("def f(*args, **kwargs):\n    return args, kwargs\n", module.__dict__)
f = module.f

# No keywords and few arguments (vectorcall), many arguments (a tuple), keywords.
cases = [(f, (), {}), (f, (1, "a"), {}), (f, tuple(range(6)), {}), (f, tuple(range(7)), {}), (f, (1,), {"k": [2]})]
"#;

    fn item<'py>(obj: Borrowed<'_, 'py>, index: i64) -> Owned<'py> {
        let getitem = obj.getattr(c"__getitem__").unwrap();
        getitem.borrowed().call1(obj.py().int(index).unwrap().borrowed()).unwrap()
    }

    #[test]
    fn a_task_calls_what_was_submitted_and_a_cut_one_does_not_start() {
        with_state(|py, state| {
            let namespace = run(py, CASES).unwrap_or_else(|_| panic!("{}", error_text(py)));
            let cases = get(&namespace, c"cases");
            for i in 0..5 {
                let case = item(cases.borrowed(), i);
                let [func, args, kwargs] = [0, 1, 2].map(|j| item(case.borrowed(), j));
                let task =
                    encode_task(py, state, func.borrowed(), args.borrowed(), kwargs.borrowed(), Some(1)).unwrap();
                let result = Call::decode(py, state, &task).and_then(|call| call.call()).unwrap();
                let expected = func.borrowed().call(args.borrowed(), Some(kwargs.borrowed())).unwrap();
                assert_eq!(result.borrowed().describe(), expected.borrowed().describe(), "case {i}");
                for cut in 0..task.bytes.len() {
                    let prefix = Value { bytes: task.bytes[..cut].to_vec(), handles: Vec::new() };
                    assert!(Call::decode(py, state, &prefix).is_err(), "case {i} cut at {cut}");
                    py.clear_exception();
                }
            }
        });
    }
}
