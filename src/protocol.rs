//! The wire protocol between the owner of a pool and its workers, defined once here and
//! exported to Python as module constants (`STATUS_*`), so `_executor.py` uses the same
//! numbers by name.
//!
//! - A *task* is a [`Value`] holding three objects written one after another: the callable,
//!   the positional arguments (a tuple) and the keyword arguments (a dict).
//! - A *reply* is a [`Reply`]: a [`Status`] and a payload `Value` holding one object. Whether
//!   the worker's interpreter must be replaced after the task is decided and acted on by the
//!   worker itself; it never travels to the owner.
//! - The owner's dispatcher receives, per finished task, `(id, status, payload)`, and once
//!   if the pool breaks, `(None, message, [ids of the tasks abandoned])`.
use interpool_core::Value;

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
