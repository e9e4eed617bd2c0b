//! The pool: worker threads, one shared task channel, one event channel.
//!
//! Scheduling is a plain multi-consumer queue (crossbeam's unbounded MPMC channel): an idle
//! worker polls it for up to [`SPIN`] (a hand-off in well under a microsecond), then sleeps
//! in `recv()`; whichever worker gets to the next task first takes it, so load balances
//! itself without a dispatcher thread. Shutdown closes the channel by dropping the only
//! `Sender`; workers finish what is queued, see the disconnect, tear their worker down on
//! their own thread and exit. The event channel is disconnected once every worker thread
//! has exited, which is how the owner's event loop learns that the pool is finished.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// How long an idle worker or event reader spins (checking without sleeping) before it
/// blocks. Waking a blocked thread costs tens of microseconds on a busy machine, more
/// than most tiny tasks take; a short spin hands work over in well under one.
const SPIN: Duration = Duration::from_micros(50);

/// Take a message, spinning for up to `SPIN` before blocking.
fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, crossbeam_channel::RecvError> {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(msg) => return Ok(msg),
                Err(TryRecvError::Disconnected) => return Err(crossbeam_channel::RecvError),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() >= SPIN {
            return rx.recv();
        }
        std::thread::yield_now();
    }
}

use crate::task::Ticket;

/// Builds, runs and tears down workers. Every method is called on the worker's own thread.
pub trait WorkerFactory: Send + Sync + 'static {
    /// Thread-bound worker state (for interpool: an own-GIL subinterpreter).
    type Worker;
    /// A task's input, as it crosses from the submitter to a worker thread.
    type Input: Send + 'static;
    /// A task's outcome, as it crosses back. Task failures are part of the output.
    type Output: Send + 'static;

    /// Create a worker. An `Err` (e.g. a failing initializer) breaks the pool: its message
    /// is reported in [`Event::Broken`] and queued tasks are abandoned.
    fn start(&self, index: usize) -> Result<Self::Worker, String>;
    /// Run one task.
    fn run(&self, worker: &mut Self::Worker, input: Self::Input) -> Self::Output;
    /// Tear the worker down.
    fn stop(&self, worker: Self::Worker);
    /// Whether the worker may take another task; `false` replaces it with a fresh one.
    fn healthy(&self, _worker: &Self::Worker) -> bool {
        true
    }
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of worker threads (>= 1).
    pub workers: usize,
    /// OS thread name prefix; threads are named `{prefix}_{index}`.
    pub thread_name_prefix: String,
    /// Replace a worker after it ran this many tasks.
    pub max_tasks_per_worker: Option<u64>,
    /// Stack size of the worker threads (`None`: Rust's default, 2 MiB).
    pub stack_size: Option<usize>,
}

/// What the owner receives from [`Pool::next_events`].
#[derive(Debug)]
pub enum Event<O> {
    /// A task ran; its output (result or task failure) is attached.
    Done { id: u64, output: O },
    /// A worker could not be started: the pool is broken. `abandoned` lists the ids of
    /// queued tasks that will never run. Sent once.
    Broken { message: String, abandoned: Vec<u64> },
}

/// Why [`Pool::submit`] refused a task; the input is handed back.
#[derive(Debug)]
pub enum SubmitError<I> {
    Shutdown(I),
    Broken(String, I),
}

/// A snapshot of the pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads configured.
    pub threads: usize,
    /// Workers (interpreters) alive and ready.
    pub workers: usize,
    /// Tasks running now.
    pub busy: usize,
    /// Tasks waiting in the queue (cancelled ones still count until a worker discards them).
    pub queued: usize,
    /// Tasks accepted by `submit`.
    pub submitted: u64,
    /// Tasks that finished running.
    pub completed: u64,
    /// Workers replaced (recycled or unhealthy).
    pub recycled: u64,
}

struct Job<I> {
    ticket: Ticket,
    input: I,
}

struct Shared<F: WorkerFactory> {
    factory: F,
    config: PoolConfig,
    tasks: Receiver<Job<F::Input>>,
    /// The only task sender; `None` once shut down or broken.
    sender: Mutex<Option<Sender<Job<F::Input>>>>,
    broken: OnceLock<String>,
    live_threads: Mutex<usize>,
    all_exited: Condvar,
    ready: AtomicUsize,
    busy: AtomicUsize,
    submitted: AtomicU64,
    completed: AtomicU64,
    recycled: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool of worker threads. Dropping it closes the queue without waiting; the threads
/// finish the queued tasks and exit on their own.
pub struct Pool<F: WorkerFactory> {
    shared: Arc<Shared<F>>,
    events: Receiver<Event<F::Output>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<F: WorkerFactory> Pool<F> {
    /// Start `config.workers` threads; each builds its worker in the background.
    pub fn new(factory: F, config: PoolConfig) -> std::io::Result<Self> {
        assert!(config.workers > 0, "a pool needs at least one worker");
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            factory,
            config,
            tasks: task_rx,
            sender: Mutex::new(Some(task_tx)),
            broken: OnceLock::new(),
            live_threads: Mutex::new(0),
            all_exited: Condvar::new(),
            ready: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(shared.config.workers);
        for index in 0..shared.config.workers {
            let name = format!("{}_{index}", shared.config.thread_name_prefix);
            let thread_shared = Arc::clone(&shared);
            let events = event_tx.clone();
            *lock(&shared.live_threads) += 1;
            let spawned = std::thread::Builder::new().name(name);
            let spawned = match shared.config.stack_size {
                Some(size) => spawned.stack_size(size),
                None => spawned,
            }
            .spawn(move || worker_thread(&thread_shared, index, &events));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(err) => {
                    *lock(&shared.live_threads) -= 1;
                    shared.close();
                    return Err(err);
                }
            }
        }
        Ok(Self { shared, events: event_rx, threads: Mutex::new(threads) })
    }

    /// Queue a task under `id`, which the caller chooses (so it can register the task
    /// before a worker can possibly finish it) and keeps unique within this pool. The
    /// returned ticket can cancel the task while it is still queued.
    pub fn submit(&self, id: u64, input: F::Input) -> Result<Ticket, SubmitError<F::Input>> {
        let guard = lock(&self.shared.sender);
        let Some(sender) = guard.as_ref() else {
            return Err(match self.shared.broken.get() {
                Some(msg) => SubmitError::Broken(msg.clone(), input),
                None => SubmitError::Shutdown(input),
            });
        };
        let ticket = Ticket::new(id);
        let job = Job { ticket: ticket.clone(), input };
        self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        // The receiver lives in `shared`, which we hold: the send cannot fail.
        if let Err(err) = sender.send(job) {
            self.shared.submitted.fetch_sub(1, Ordering::Relaxed);
            return Err(SubmitError::Shutdown(err.into_inner().input));
        }
        Ok(ticket)
    }

    /// Close the queue: no new tasks; workers finish the queued ones and exit. With
    /// `cancel_pending`, queued tasks are cancelled instead and their ids returned.
    pub fn shutdown(&self, cancel_pending: bool) -> Vec<u64> {
        self.shared.close();
        let mut cancelled = Vec::new();
        if cancel_pending {
            while let Ok(job) = self.shared.tasks.try_recv() {
                if job.ticket.cancel() {
                    cancelled.push(job.ticket.id());
                }
            }
        }
        cancelled
    }

    /// The message of the worker start failure that broke the pool, if any.
    pub fn broken(&self) -> Option<&str> {
        self.shared.broken.get().map(String::as_str)
    }

    /// Block until at least one event is available, then return it with up to `max - 1`
    /// more that are already waiting. `None`: every worker exited and all events were taken.
    pub fn next_events(&self, max: usize) -> Option<Vec<Event<F::Output>>> {
        let first = recv_spinning(&self.events).ok()?;
        let mut batch = vec![first];
        while batch.len() < max.max(1) {
            match self.events.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Some(batch)
    }

    /// Wait until every worker thread exited (after `shutdown`), up to `timeout`.
    /// Returns `true` when they all did; their threads are then joined.
    pub fn join(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut live = lock(&self.shared.live_threads);
        while *live > 0 {
            match deadline {
                None => {
                    live = self.shared.all_exited.wait(live).unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    live = self
                        .shared
                        .all_exited
                        .wait_timeout(live, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        drop(live);
        for handle in lock(&self.threads).drain(..) {
            // A worker thread that panicked has already been accounted for by its guard.
            let _ = handle.join();
        }
        true
    }

    /// Counters, read without stopping the pool (each is individually exact).
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            threads: s.config.workers,
            workers: s.ready.load(Ordering::Relaxed),
            busy: s.busy.load(Ordering::Relaxed),
            queued: s.tasks.len(),
            submitted: s.submitted.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            recycled: s.recycled.load(Ordering::Relaxed),
        }
    }
}

impl<F: WorkerFactory> Drop for Pool<F> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<F: WorkerFactory> Shared<F> {
    fn close(&self) {
        lock(&self.sender).take();
    }

    /// A worker failed to start: close the queue and abandon every queued task.
    fn break_pool(&self, message: String, events: &Sender<Event<F::Output>>) {
        if self.broken.set(message.clone()).is_err() {
            return; // another worker already reported it
        }
        self.close();
        let mut abandoned = Vec::new();
        while let Ok(job) = self.tasks.try_recv() {
            if job.ticket.abandon() {
                abandoned.push(job.ticket.id());
            }
        }
        let _ = events.send(Event::Broken { message, abandoned });
    }
}

/// Decrements the live-thread count when a worker thread ends, even by panic.
struct ThreadExit<'a, F: WorkerFactory>(&'a Shared<F>);

impl<F: WorkerFactory> Drop for ThreadExit<'_, F> {
    fn drop(&mut self) {
        let mut live = lock(&self.0.live_threads);
        *live -= 1;
        if *live == 0 {
            self.0.all_exited.notify_all();
        }
    }
}

fn worker_thread<F: WorkerFactory>(shared: &Shared<F>, index: usize, events: &Sender<Event<F::Output>>) {
    let _exit = ThreadExit(shared);
    let factory = &shared.factory;
    loop {
        if shared.broken.get().is_some() {
            return;
        }
        let mut worker = match factory.start(index) {
            Ok(worker) => worker,
            Err(message) => return shared.break_pool(message, events),
        };
        shared.ready.fetch_add(1, Ordering::Relaxed);
        let mut ran: u64 = 0;
        let replace = loop {
            let Ok(job) = recv_spinning(&shared.tasks) else {
                break false; // closed and drained
            };
            if !job.ticket.start() {
                continue; // cancelled or abandoned while queued
            }
            shared.busy.fetch_add(1, Ordering::Relaxed);
            let output = factory.run(&mut worker, job.input);
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            shared.completed.fetch_add(1, Ordering::Relaxed);
            // The owner may have dropped the pool and its event receiver: nobody to tell.
            let _ = events.send(Event::Done { id: job.ticket.id(), output });
            ran += 1;
            let limit_reached = shared.config.max_tasks_per_worker.is_some_and(|m| ran >= m);
            if limit_reached || !factory.healthy(&worker) {
                break true;
            }
        };
        shared.ready.fetch_sub(1, Ordering::Relaxed);
        factory.stop(worker);
        if !replace {
            return;
        }
        shared.recycled.fetch_add(1, Ordering::Relaxed);
    }
}
