//! Spare threads: threads that make a fresh worker environment ahead of time (in interpool,
//! an own-GIL interpreter, ~10 ms of CPython's own work) and wait, for a while, to be adopted
//! by a pool that needs a worker. Adopting one skips that creation: the pool hands the spare
//! thread a job, and the thread becomes that pool's worker thread, starting from the fresh
//! environment it made. The environment never leaves its thread (it need not be `Send`).
//!
//! A spare not adopted within its linger time ends itself. [`Spares::end_all`] ends every
//! spare now (before a `fork()`, at exit). Only spares whose environment is made are adopted
//! (a pool starting a thread of its own is faster than waiting behind one still being made);
//! if making it failed, the job runs with `None` and the worker makes its own.
use crate::thread::ThreadHandle;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// What a spare thread runs once adopted: the pool's worker loop, given the environment.
pub type Job<R> = Box<dyn FnOnce(Option<R>) + Send>;

enum Order<R> {
    Run(Job<R>),
    End,
}

struct Parked<R> {
    id: u64,
    /// Its environment is made (a pool never waits behind a spare still making one).
    ready: Arc<AtomicBool>,
    orders: Sender<Order<R>>,
    handle: ThreadHandle,
    stack_size: Option<usize>,
}

struct Inner<R> {
    parked: Vec<Parked<R>>,
    next_id: u64,
    /// Spare threads that have not ended yet (parked or not), to join on `end_all`.
    ending: Vec<ThreadHandle>,
}

/// The spares of one kind of environment, process-wide (a `static`).
pub struct Spares<R> {
    inner: Mutex<Inner<R>>,
    _env: PhantomData<fn(R)>,
}

/// A spare thread handed to a pool: send it the job with [`Adopted::run`].
pub struct Adopted<R> {
    orders: Sender<Order<R>>,
    handle: ThreadHandle,
}

impl<R> Adopted<R> {
    /// Give the thread its job; `Err` hands the job back if the thread ended meanwhile.
    pub fn run(self, job: Job<R>) -> Result<ThreadHandle, Job<R>> {
        match self.orders.send(Order::Run(job)) {
            Ok(()) => Ok(self.handle),
            Err(err) => match err.into_inner() {
                Order::Run(job) => Err(job),
                Order::End => unreachable!("only Run was sent"),
            },
        }
    }
}

impl<R: 'static> Spares<R> {
    pub const fn new() -> Self {
        Spares { inner: Mutex::new(Inner { parked: Vec::new(), next_id: 0, ending: Vec::new() }), _env: PhantomData }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many spares wait to be adopted with their environment made.
    pub fn count(&self) -> usize {
        self.lock().parked.iter().filter(|p| p.ready.load(Ordering::Acquire)).count()
    }

    /// Take a spare whose thread has `stack_size` and whose environment is made, if one
    /// waits.
    pub fn adopt(&self, stack_size: Option<usize>) -> Option<Adopted<R>> {
        let mut inner = self.lock();
        let at = inner.parked.iter().position(|p| p.stack_size == stack_size && p.ready.load(Ordering::Acquire))?;
        let parked = inner.parked.swap_remove(at);
        Some(Adopted { orders: parked.orders, handle: parked.handle })
    }

    /// Start spare threads until `want` wait (with threads of `stack_size`). Each runs
    /// `make` on its own thread, then waits up to `linger` to be adopted, and gives an
    /// environment it was not adopted with to `discard` (on its thread).
    ///
    /// `make` and `discard` are called on the spare's thread.
    pub fn fill(
        &'static self,
        want: usize,
        stack_size: Option<usize>,
        linger: Duration,
        name: &str,
        make: fn() -> Result<R, String>,
        discard: fn(R),
    ) -> std::io::Result<()> {
        let mut inner = self.lock();
        inner.ending.retain(|h| !h.is_finished());
        while inner.parked.iter().filter(|p| p.stack_size == stack_size).count() < want {
            let id = inner.next_id;
            inner.next_id += 1;
            let (orders, inbox) = crossbeam_channel::bounded(1);
            let builder = crate::pool::thread_builder(name.to_owned(), stack_size);
            let ready = Arc::new(AtomicBool::new(false));
            let made = Arc::clone(&ready);
            let handle = builder.spawn(move || self.spare_thread(id, &made, &inbox, linger, make, discard))?;
            inner.parked.push(Parked { id, ready, orders, handle: ThreadHandle::new(handle), stack_size });
        }
        Ok(())
    }

    fn spare_thread(
        &self,
        id: u64,
        ready: &AtomicBool,
        inbox: &Receiver<Order<R>>,
        linger: Duration,
        make: fn() -> Result<R, String>,
        discard: fn(R),
    ) {
        let fresh = make().ok();
        ready.store(true, Ordering::Release);
        let order = match inbox.recv_timeout(linger) {
            Ok(order) => order,
            Err(RecvTimeoutError::Disconnected) => Order::End,
            Err(RecvTimeoutError::Timeout) => {
                // Not adopted in time: leave, unless a pool took this spare just now (then its
                // job is on the way).
                let mut inner = self.lock();
                if let Some(at) = inner.parked.iter().position(|p| p.id == id) {
                    let parked = inner.parked.swap_remove(at);
                    inner.ending.push(parked.handle); // joined by `end_all`, or reaped by `fill`
                    drop(inner);
                    Order::End
                } else {
                    drop(inner);
                    inbox.recv().unwrap_or(Order::End)
                }
            }
        };
        match order {
            Order::Run(job) => job(fresh),
            Order::End => {
                if let Some(fresh) = fresh {
                    discard(fresh);
                }
            }
        }
    }

    /// End every spare that waits and wait for all spare threads not adopted to finish.
    pub fn end_all(&self) {
        let (parked, ending) = {
            let mut inner = self.lock();
            (std::mem::take(&mut inner.parked), std::mem::take(&mut inner.ending))
        };
        let mut handles = ending;
        for spare in parked {
            // A spare that ended on its own dropped its inbox: nothing to tell it.
            let _ = spare.orders.send(Order::End);
            handles.push(spare.handle);
        }
        for handle in handles {
            handle.join();
        }
    }
}

impl<R: 'static> Default for Spares<R> {
    fn default() -> Self {
        Self::new()
    }
}
