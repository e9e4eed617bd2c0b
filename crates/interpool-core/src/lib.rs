//! The engine behind interpool's executor, with no Python in it.
//!
//! A [`Pool`] owns `N` OS threads. Each thread builds one *worker* through a
//! [`WorkerFactory`] (in interpool: an own-GIL subinterpreter), then takes tasks from one
//! shared multi-consumer crossbeam channel and reports every outcome on an [`Event`]
//! channel that the owner drains. Because the worker is created, used and destroyed on its
//! own thread, `WorkerFactory::Worker` need not be `Send`: that is how interpreter-bound
//! state (Python objects) stays on the thread and interpreter it belongs to.
//!
//! Accounting invariant: every task accepted by [`Pool::submit`] ends exactly once, as
//! either [`Event::Done`] or a successful [`Ticket::cancel`] (which the caller observes
//! synchronously), or - when the pool breaks - as an id in [`Event::Broken`].
#![deny(unsafe_code)]

mod pool;
pub mod queue;
mod shared;
pub mod spares;
mod task;
pub mod thread;
mod value;

pub use pool::{
    Event, INIT_TASK, Interrupt, Pool, PoolConfig, Stats, Stop, SubmitError, Taken, WorkerFactory, panic_message,
};
pub use queue::{GetError, PutError, Queue, Wait};
pub use shared::{SharedQueue, WeakQueue, collect as collect_queue_cycles, containers_alive};
pub use task::Ticket;
pub use value::{Constant, Handle, SharedMemory, Value, spare};
