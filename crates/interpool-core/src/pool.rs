//! The pool: worker threads started on demand, one shared task channel, one event channel,
//! and a watchdog for tasks that must stop.
//!
//! Scheduling is a plain multi-consumer queue (crossbeam's unbounded MPMC channel): an idle
//! worker polls it for up to [`SPIN`] (a hand-off in well under a microsecond), then sleeps
//! in `recv()`; whichever worker gets to the next task first takes it, so load balances
//! itself without a dispatcher thread.
//!
//! Workers start lazily, like `concurrent.futures.ThreadPoolExecutor`'s: `submit` takes an
//! *idle permit* (one is released whenever a worker finishes a task) if it can, and starts a
//! new thread otherwise, up to `max_workers`. A thread builds its worker (in interpool: an
//! own-GIL interpreter) on its own thread, uses it there and tears it down there.
//!
//! A task may run with a timeout, and a running task may be asked to stop. The *watchdog*
//! (one thread per pool, started with the first task that needs it) delivers the stop
//! request through the worker's [`Interrupt`] handle and repeats it until the call returns
//! (the handle raises one stop per task, so clean-up code runs undisturbed);
//! when the call has not returned after the grace period (stuck in C code), the task is
//! given up: reported at once with [`WorkerFactory::abandoned`], and its thread no longer
//! counts toward `max_workers`, so a new worker takes its place. The stuck thread ends its
//! worker when the call finally returns, and exits.
//!
//! Shutdown closes the task channel by dropping the only `Sender`; workers finish what is
//! queued, see the disconnect, tear their worker down and exit. The event channel is
//! disconnected once every worker thread has exited, which is how the owner's event loop
//! learns that the pool is finished.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::spares::Spares;
pub use crate::task::Stop;
use crate::task::Ticket;
use crate::thread::ThreadHandle;

/// How long an idle worker or event reader spins (checking without sleeping) before it
/// blocks. Waking a blocked thread costs tens of microseconds on a busy machine, more
/// than most tiny tasks take; a short spin hands work over in well under one.
const SPIN: Duration = Duration::from_micros(50);

/// [`SPIN`], or zero when the environment variable `INTERPOOL_NO_SPIN` is set (read once):
/// for instruction counts that measure work, not waiting (benchmarks/README.md).
pub fn spin() -> Duration {
    static SPIN_FOR: OnceLock<Duration> = OnceLock::new();
    *SPIN_FOR.get_or_init(|| if std::env::var_os("INTERPOOL_NO_SPIN").is_some() { Duration::ZERO } else { SPIN })
}

/// How often the watchdog repeats a stop request that has not taken effect yet.
const RESEND: Duration = Duration::from_millis(20);

/// While tasks with a time limit run, and for [`LINGER`] after the last one, the watchdog
/// looks at them this often, so a task that starts does not have to wake it (that would cost
/// every timed task a syscall, a third of a trivial round trip).
const TICK: Duration = Duration::from_millis(10);
const LINGER: Duration = Duration::from_secs(1);

/// A task's outcome: to the thread waiting for it, if one is (`Ticket::wait_output`), else
/// as an event. An output handed to a waiter travels with a sender of the event channel, and
/// counts as [`Shared::in_hand`] until the waiter is done with it ([`Taken`]).
fn report<F: WorkerFactory>(shared: &Shared<F>, events: &Sender<Event<F::Output>>, ticket: &Ticket, output: F::Output) {
    shared.in_hand.fetch_add(1, Ordering::SeqCst); // the caller counts: the pool cannot finish now
    if let Some((output, _)) = ticket.deliver((output, events.clone())) {
        shared.in_hand.fetch_sub(1, Ordering::SeqCst);
        // The owner may have dropped the pool and its event receiver: nobody to tell.
        let _ = events.send(Event::Done { id: ticket.id(), output });
    }
}

/// A task's output that the thread waiting for it took ([`Pool::wait_output`]). The waiter
/// completes the task's future with it and then calls [`Taken::accept`]; dropped without
/// that (the waiter was interrupted, by Ctrl-C say, before the outcome was recorded), the
/// output goes to the event channel after all, so the task's outcome is never lost. The pool
/// does not finish while a `Taken` lives, so a reader of events is still there to get it.
pub struct Taken<F: WorkerFactory> {
    id: u64,
    output: Option<F::Output>,
    events: Sender<Event<F::Output>>,
    shared: Arc<Shared<F>>,
}

impl<F: WorkerFactory> Taken<F> {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The output.
    pub fn output(&self) -> &F::Output {
        self.output.as_ref().expect("a Taken holds its output until dropped")
    }

    /// The outcome was recorded: the output is no longer needed.
    pub fn accept(mut self) {
        self.output = None;
    }
}

impl<F: WorkerFactory> Drop for Taken<F> {
    fn drop(&mut self) {
        if let Some(output) = self.output.take() {
            let _ = self.events.send(Event::Done { id: self.id, output });
        }
        let threads = lock(&self.shared.threads);
        self.shared.in_hand.fetch_sub(1, Ordering::SeqCst);
        self.shared.finish_if_done(&threads);
    }
}

/// A thread builder with `name` and `stack_size` (`None`: Rust's default).
pub(crate) fn thread_builder(name: String, stack_size: Option<usize>) -> std::thread::Builder {
    let builder = std::thread::Builder::new().name(name);
    match stack_size {
        Some(size) => builder.stack_size(size),
        None => builder,
    }
}

/// Take a message, spinning for up to [`spin()`] before blocking.
fn recv_spinning<T>(rx: &Receiver<T>) -> Result<T, crossbeam_channel::RecvError> {
    if spin().is_zero() {
        return rx.recv();
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(msg) => return Ok(msg),
                Err(TryRecvError::Disconnected) => return Err(crossbeam_channel::RecvError),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() >= spin() {
            return rx.recv();
        }
        std::thread::yield_now();
    }
}

/// Delivers stop requests into a worker's running call, from any thread.
pub trait Interrupt: Send + Sync + 'static {
    /// Ask the call running task `id` to stop, if it still is. Must not block, and must be
    /// harmless when that task already ended. The watchdog repeats this until the call
    /// returns (a request may be lost or wait behind a C call): an implementation should
    /// make the call see one stop per task, so that its clean-up (`finally`) runs undisturbed.
    fn interrupt(&self, id: u64, why: Stop);
    /// As [`Interrupt::interrupt`], for a task already given up (it did not return within the
    /// grace period after its stop): ask again even if the call saw a stop, so that its
    /// thread ends eventually. By default the same as `interrupt`.
    fn interrupt_again(&self, id: u64, why: Stop) {
        self.interrupt(id, why);
    }
}

/// Builds, runs and tears down workers. Every method but the interrupter's is called on the
/// worker's own thread.
pub trait WorkerFactory: Send + Sync + 'static {
    /// Thread-bound worker state (for interpool: an own-GIL subinterpreter).
    type Worker;
    /// A task's input, as it crosses from the submitter to a worker thread.
    type Input: Send + 'static;
    /// A task's outcome, as it crosses back. Task failures are part of the output.
    type Output: Send + 'static;
    /// Stops a worker's running call from other threads.
    type Interrupter: Interrupt;

    /// A fresh worker environment that a spare thread makes ahead of time, before any pool
    /// needs it (see [`crate::spares`]); `()` for factories without spares.
    type Fresh: 'static;

    /// Create a worker. An `Err` breaks the pool: its message is reported in
    /// [`Event::Broken`] and queued tasks are abandoned.
    fn start(&self, index: usize) -> Result<Self::Worker, String>;
    /// Spare threads that this factory's pools adopt before starting threads of their own.
    fn spares(&self) -> Option<&'static Spares<Self::Fresh>> {
        None
    }
    /// Create a worker from a fresh environment a spare made on this thread (as `start`).
    fn start_from(&self, fresh: Self::Fresh, index: usize) -> Result<Self::Worker, String> {
        drop(fresh);
        self.start(index)
    }
    /// A spare thread, with the environment it made, became this pool's worker thread `name`
    /// (to rename the OS thread; threads started for the pool have their name already).
    fn adopted(&self, _name: &str) {}
    /// A fresh environment a spare made that its pool no longer needed (it shut down before
    /// the spare was ready): tear it down on this thread.
    fn discard(&self, fresh: Self::Fresh) {
        drop(fresh);
    }
    /// The handle that stops this worker's calls.
    fn interrupter(&self, worker: &Self::Worker) -> Self::Interrupter;
    /// Prepare a started worker (an initializer); it runs under the pool's task timeout, with
    /// the pseudo task id [`INIT_TASK`]. An `Err` breaks the pool like a failed start.
    fn initialize(&self, _worker: &mut Self::Worker) -> Result<(), String> {
        Ok(())
    }
    /// Run one task. `ticket` tells whether a stop was requested while it ran.
    fn run(&self, worker: &mut Self::Worker, ticket: &Ticket, input: Self::Input) -> Self::Output;
    /// Tear the worker down.
    fn stop(&self, worker: Self::Worker);
    /// Whether the worker may take another task; `false` replaces it with a fresh one.
    fn healthy(&self, _worker: &Self::Worker) -> bool {
        true
    }
    /// The output reported for a task given up because its call did not stop in time.
    fn abandoned(&self, id: u64, why: Stop, grace: Duration) -> Self::Output;
    /// The output reported for a task whose `run` panicked (`message`: the panic's); the
    /// worker is then torn down with `stop` and replaced.
    fn panicked(&self, id: u64, message: &str) -> Self::Output;
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The task id under which a worker's initializer runs (for stop requests).
pub const INIT_TASK: u64 = u64::MAX;

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// At most this many worker threads (>= 1), started as tasks need them.
    pub max_workers: usize,
    /// OS thread name prefix; threads are named `{prefix}_{n}`.
    pub thread_name_prefix: String,
    /// Replace a worker after it ran this many tasks.
    pub max_tasks_per_worker: Option<u64>,
    /// Stack size of the worker threads (`None`: Rust's default, 2 MiB).
    pub stack_size: Option<usize>,
    /// The time limit of a worker's initializer (`None`: none).
    pub init_timeout: Option<Duration>,
    /// How long a stopped call may take to return before it is given up.
    pub grace: Duration,
}

/// What the owner receives from [`Pool::next_events`].
#[derive(Debug)]
pub enum Event<O> {
    /// A task ran (or was given up); its output is attached.
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
    /// Worker threads that count toward `max_workers` (started, not given up).
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
    /// Tasks given up because their call did not stop in time.
    pub abandoned: u64,
    /// Threads of given-up tasks whose call has still not returned.
    pub stuck: usize,
}

struct Job<I> {
    ticket: Ticket,
    input: I,
}

/// What a worker thread shares with the watchdog.
struct Slot<F: WorkerFactory> {
    /// The interrupter of the thread's current worker: replaced with each worker the thread
    /// starts (after recycling), and taken away before a worker is stopped, so a stop request
    /// never goes to an ended worker (nor misses a replaced one's tasks).
    interrupter: Mutex<Option<F::Interrupter>>,
    /// The task running now (or the worker's initializer).
    running: Mutex<Option<Ticket>>,
    /// The thread's event sender (so a watchdog started after the pool closed has one).
    events: Sender<Event<F::Output>>,
}

struct Threads {
    /// Threads that count toward `max_workers`.
    counted: usize,
    /// Every worker thread alive (including stuck ones).
    alive: usize,
    handles: Vec<ThreadHandle>,
    spawned: usize,
}

struct Shared<F: WorkerFactory> {
    factory: F,
    config: PoolConfig,
    tasks: Receiver<Job<F::Input>>,
    /// The only task sender; `None` once shut down or broken.
    sender: Mutex<Option<Sender<Job<F::Input>>>>,
    /// The pool's own event sender, dropped when it closes; worker threads and the watchdog
    /// hold clones while they run.
    events: Mutex<Option<Sender<Event<F::Output>>>>,
    /// Dropped when the pool is *finished*: closed, and no counted thread left (threads of
    /// given-up tasks may still run, but send nothing more). Every event is sent before the
    /// change that finishes the pool, so the owner's event loop drains them and then ends.
    finished: Mutex<Option<Sender<()>>>,
    broken: OnceLock<String>,
    threads: Mutex<Threads>,
    all_exited: Condvar,
    /// Idle permits: a worker releases one after each task, `submit` takes one if it can.
    idle: AtomicUsize,
    watched: Mutex<Watched<F>>,
    watchdog_wake: Condvar,
    /// The watchdog runs (set once it was started).
    watchdog_started: AtomicBool,
    /// The watchdog sleeps without a deadline to watch: a timed task that starts wakes it.
    watchdog_idle: AtomicBool,
    /// Tasks with a time limit started so far (the watchdog lingers while this moves).
    timed_started: AtomicU64,
    ready: AtomicUsize,
    busy: AtomicUsize,
    stuck: AtomicUsize,
    /// Outputs handed to waiting threads and not yet accepted or sent back ([`Taken`]).
    in_hand: AtomicUsize,
    submitted: AtomicU64,
    completed: AtomicU64,
    recycled: AtomicU64,
    abandoned: AtomicU64,
}

struct Watched<F: WorkerFactory> {
    slots: Vec<Arc<Slot<F>>>,
    running: bool,
    finished: bool,
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
    finished: Receiver<()>,
    /// A reader of `events` is spinning.
    spinning: AtomicBool,
    /// Taken by a reader of events for its turn (see [`Pool::reader`]).
    readers: Mutex<()>,
}

impl<F: WorkerFactory> Pool<F> {
    /// A pool that starts worker threads as tasks need them.
    pub fn new(factory: F, config: PoolConfig) -> Self {
        assert!(config.max_workers > 0, "a pool needs at least one worker");
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let (finished_tx, finished_rx) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared {
            factory,
            config,
            tasks: task_rx,
            sender: Mutex::new(Some(task_tx)),
            events: Mutex::new(Some(event_tx)),
            finished: Mutex::new(Some(finished_tx)),
            broken: OnceLock::new(),
            threads: Mutex::new(Threads { counted: 0, alive: 0, handles: Vec::new(), spawned: 0 }),
            all_exited: Condvar::new(),
            idle: AtomicUsize::new(0),
            watched: Mutex::new(Watched { slots: Vec::new(), running: false, finished: false }),
            watchdog_wake: Condvar::new(),
            watchdog_started: AtomicBool::new(false),
            watchdog_idle: AtomicBool::new(true),
            timed_started: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stuck: AtomicUsize::new(0),
            in_hand: AtomicUsize::new(0),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        });
        Pool {
            shared,
            events: event_rx,
            finished: finished_rx,
            spinning: AtomicBool::new(false),
            readers: Mutex::new(()),
        }
    }

    /// Queue a task under `id`, which the caller chooses (so it can register the task
    /// before a worker can possibly finish it) and keeps unique within this pool; with a
    /// `timeout`, the task is stopped if it runs longer. Starts a worker thread if no idle
    /// one is available and fewer than `max_workers` run. The ticket can cancel the task
    /// while it is queued, and interrupt it while it runs.
    pub fn submit(&self, id: u64, input: F::Input, timeout: Option<Duration>) -> Result<Ticket, SubmitError<F::Input>> {
        let guard = lock(&self.shared.sender);
        let Some(sender) = guard.as_ref() else {
            return Err(match self.shared.broken.get() {
                Some(msg) => SubmitError::Broken(msg.clone(), input),
                None => SubmitError::Shutdown(input),
            });
        };
        let ticket = Ticket::new(id, timeout);
        let job = Job { ticket: ticket.clone(), input };
        self.shared.submitted.fetch_add(1, Ordering::Relaxed);
        // The receiver lives in `shared`, which we hold: the send cannot fail.
        if let Err(err) = sender.send(job) {
            self.shared.submitted.fetch_sub(1, Ordering::Relaxed);
            return Err(SubmitError::Shutdown(err.into_inner().input));
        }
        drop(guard);
        if !self.shared.take_idle_permit()
            && let Some(events) = self.shared.event_sender()
        {
            Shared::spawn_if_below_max(&self.shared, &events);
        }
        Ok(ticket)
    }

    /// Close the queue: no new tasks; workers finish the queued ones and exit. With
    /// `cancel_pending`, queued tasks are cancelled instead and their ids returned; with
    /// `interrupt_running`, running tasks are asked to stop.
    ///
    /// A worker thread still starting (making its interpreter) keeps one queued task, as
    /// a `ThreadPoolExecutor` thread takes its first task as soon as `submit` starts it: so
    /// `shutdown(cancel_futures=True)` right after a burst of submits lets as many tasks
    /// finish as there are threads starting, and cancels the others.
    pub fn shutdown(&self, cancel_pending: bool, interrupt_running: bool) -> Vec<u64> {
        let mut cancelled = Vec::new();
        if cancel_pending {
            // Counted first: `finish_if_done` takes the sender's lock under the threads' lock.
            let starting = {
                let threads = lock(&self.shared.threads);
                threads.counted.saturating_sub(self.shared.ready.load(Ordering::Relaxed))
            };
            // Under the sender's lock: no submit interleaves, and kept tasks can be queued again.
            let guard = lock(&self.shared.sender);
            let mut kept = Vec::new();
            while let Ok(job) = self.shared.tasks.try_recv() {
                if kept.len() < starting && guard.is_some() {
                    kept.push(job);
                } else if job.ticket.cancel() {
                    cancelled.push(job.ticket.id());
                }
            }
            if let Some(sender) = guard.as_ref() {
                for job in kept {
                    // The receiver lives in `shared`, which we hold: the send cannot fail.
                    let _ = sender.send(job);
                }
            }
        }
        self.shared.close();
        if interrupt_running {
            Shared::stop_all_running(&self.shared);
        }
        cancelled
    }

    /// Ask a running task to stop (see [`Ticket::interrupt`]; this also wakes the watchdog).
    pub fn interrupt(&self, ticket: &Ticket) -> bool {
        let done = ticket.interrupt();
        if done && ticket.running() {
            Shared::watch(&self.shared);
        }
        done
    }

    /// The factory the workers are built with.
    pub fn factory(&self) -> &F {
        &self.shared.factory
    }

    /// Wait up to `wait` for the output of `ticket`'s task to be handed to this thread
    /// directly instead of coming as an event (see `Ticket::wait_output` and [`Taken`]);
    /// with `spin`, spinning briefly first (a waiter that waits again after a first wait
    /// has no reason to).
    pub fn wait_output(&self, ticket: &Ticket, wait: Duration, spin_first: bool) -> Option<Taken<F>> {
        let spin = if spin_first { spin() } else { Duration::ZERO };
        let (output, events) = ticket.wait_output::<(F::Output, Sender<Event<F::Output>>)>(wait, spin)?;
        Some(Taken { id: ticket.id(), output: Some(output), events, shared: Arc::clone(&self.shared) })
    }

    /// The message of the worker start failure that broke the pool, if any.
    pub fn broken(&self) -> Option<&str> {
        self.shared.broken.get().map(String::as_str)
    }

    /// Block until at least one event is available, then return it with up to `max - 1`
    /// more that are already waiting. `None`: the pool finished and all events were taken.
    pub fn next_events(&self, max: usize) -> Option<Vec<Event<F::Output>>> {
        let _turn = self.reader();
        let mut batch = vec![self.next_event()?];
        self.drain_events(&mut batch, max);
        Some(batch)
    }

    /// A reader's turn: readers of events that hold it one at a time get whole batches
    /// (see [`Pool::next_event`] and [`Pool::drain_events`]), not an event each.
    pub fn reader(&self) -> MutexGuard<'_, ()> {
        lock(&self.readers)
    }

    /// Add to `batch` the events already waiting, up to `max` in all. A reader that has to
    /// wait for something between [`Pool::next_event`] and this (a Python dispatcher for
    /// the GIL) calls it after that wait, so the batch includes what arrived meanwhile.
    pub fn drain_events(&self, batch: &mut Vec<Event<F::Output>>, max: usize) {
        while batch.len() < max.max(1) {
            match self.events.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    /// The next event, spinning briefly before blocking; `None` once the pool finished and
    /// every event was taken. Of several readers, only one spins at a time (spinning readers
    /// would take the CPU the workers need).
    pub fn next_event(&self) -> Option<Event<F::Output>> {
        if !spin().is_zero() && !self.spinning.swap(true, Ordering::AcqRel) {
            let start = Instant::now();
            let found = 'spin: loop {
                for _ in 0..64 {
                    match self.events.try_recv() {
                        Ok(ev) => break 'spin Some(Some(ev)),
                        Err(TryRecvError::Disconnected) => break 'spin Some(None),
                        Err(TryRecvError::Empty) => std::hint::spin_loop(),
                    }
                }
                if start.elapsed() >= spin() {
                    break None;
                }
                std::thread::yield_now();
            };
            self.spinning.store(false, Ordering::Release);
            if let Some(found) = found {
                return found;
            }
        }
        crossbeam_channel::select! {
            recv(self.events) -> ev => ev.ok(),
            recv(self.finished) -> _ => self.events.try_recv().ok(), // finished: drain, then end
        }
    }

    /// Wait until every worker thread exited (after `shutdown`), up to `timeout`, counting
    /// threads of given-up tasks unless `skip_stuck`. Returns `true` when they all did; the
    /// threads that exited are joined.
    pub fn join(&self, timeout: Option<Duration>, skip_stuck: bool) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t)); // too far: no deadline
        let mut threads = lock(&self.shared.threads);
        loop {
            let waiting = if skip_stuck { threads.counted } else { threads.alive };
            if waiting == 0 {
                break;
            }
            let wait = match deadline {
                None => Duration::from_secs(3600),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
            };
            threads = self.shared.all_exited.wait_timeout(threads, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
        let handles: Vec<_> = threads.handles.drain(..).collect();
        drop(threads);
        for handle in handles {
            if handle.is_finished() {
                handle.join(); // a thread that panicked was accounted for by its guard
            } else {
                lock(&self.shared.threads).handles.push(handle); // stuck: joined later
            }
        }
        true
    }

    /// Counters, read without stopping the pool (each is individually exact).
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            threads: lock(&s.threads).counted,
            workers: s.ready.load(Ordering::Relaxed),
            busy: s.busy.load(Ordering::Relaxed),
            queued: s.tasks.len(),
            submitted: s.submitted.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            recycled: s.recycled.load(Ordering::Relaxed),
            abandoned: s.abandoned.load(Ordering::Relaxed),
            stuck: s.stuck.load(Ordering::Relaxed),
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
        lock(&self.events).take();
        self.wake_watchdog();
        self.finish_if_done(&lock(&self.threads));
    }

    /// Signal that the pool finished (closed, no counted thread left, no output in a
    /// waiter's hands), once.
    fn finish_if_done(&self, threads: &Threads) {
        if threads.counted == 0 && self.in_hand.load(Ordering::SeqCst) == 0 && self.is_closed() {
            lock(&self.finished).take();
        }
    }

    /// A clone of the pool's event sender (`None` once closed).
    fn event_sender(&self) -> Option<Sender<Event<F::Output>>> {
        lock(&self.events).clone()
    }

    fn is_closed(&self) -> bool {
        lock(&self.sender).is_none()
    }

    fn take_idle_permit(&self) -> bool {
        self.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    fn release_idle_permit(&self) {
        self.idle.fetch_add(1, Ordering::AcqRel);
    }

    /// Start one more worker thread unless `max_workers` count already.
    fn spawn_if_below_max(shared: &Arc<Self>, events: &Sender<Event<F::Output>>) {
        let mut threads = lock(&shared.threads);
        if threads.counted >= shared.config.max_workers || shared.broken.get().is_some() {
            return;
        }
        let index = threads.spawned;
        let name = format!("{}_{index}", shared.config.thread_name_prefix);
        let (job_shared, job_events, job_name) = (Arc::clone(shared), events.clone(), name.clone());
        // The worker loop, run by an adopted spare thread (with the interpreter it made) or
        // by a thread started for it.
        let job: crate::spares::Job<F::Fresh> = Box::new(move |fresh| {
            if fresh.is_some() {
                job_shared.factory.adopted(&job_name);
            }
            worker_thread(&job_shared, index, &job_events, fresh);
        });
        // Counted before it runs: its exit guard uncounts it.
        threads.counted += 1;
        threads.alive += 1;
        let job = match shared.factory.spares().and_then(|spares| spares.adopt(shared.config.stack_size)) {
            Some(spare) => match spare.run(job) {
                Ok(handle) => {
                    threads.spawned += 1;
                    threads.handles.push(handle);
                    return;
                }
                Err(job) => job, // the spare ended meanwhile: start a thread as usual
            },
            None => job,
        };
        match thread_builder(name, shared.config.stack_size).spawn(move || job(None)) {
            Ok(handle) => {
                threads.spawned += 1;
                threads.handles.push(ThreadHandle::new(handle));
            }
            Err(err) => {
                threads.counted -= 1;
                threads.alive -= 1;
                let message = format!("cannot start a worker thread: {err}");
                drop(threads);
                shared.break_pool(message, events);
            }
        }
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

    fn stop_all_running(shared: &Arc<Self>) {
        let slots: Vec<_> = lock(&shared.watched).slots.clone();
        for slot in slots {
            if let Some(ticket) = lock(&slot.running).as_ref() {
                ticket.request_stop(Stop::Interrupt);
            }
        }
        Shared::watch(shared);
    }

    fn wake_watchdog(&self) {
        let _watched = lock(&self.watched);
        self.watchdog_wake.notify_all();
    }

    /// Make sure the watchdog runs (it is started with the first task that needs it).
    fn watch(shared: &Arc<Self>) {
        let mut watched = lock(&shared.watched);
        if watched.running || watched.finished {
            shared.watchdog_wake.notify_all();
            return;
        }
        // The pool's own sender, or once closed, a live worker thread's.
        let Some(events) = shared.event_sender().or_else(|| watched.slots.first().map(|slot| slot.events.clone()))
        else {
            return; // closed and no worker left: nothing to watch
        };
        watched.running = true;
        shared.watchdog_started.store(true, Ordering::SeqCst);
        let thread_shared = Arc::clone(shared);
        let name = format!("{}_watchdog", shared.config.thread_name_prefix);
        let run = move || {
            // A panic (a bug) must not leave the pool without a watchdog: the next task that
            // needs one starts it again.
            if std::panic::catch_unwind(AssertUnwindSafe(|| watchdog(&thread_shared, &events))).is_err() {
                lock(&thread_shared.watched).running = false;
                thread_shared.watchdog_started.store(false, Ordering::SeqCst);
            }
        };
        if std::thread::Builder::new().name(name).spawn(run).is_err() {
            watched.running = false; // no watchdog: timeouts are not enforced, tasks still run
            shared.watchdog_started.store(false, Ordering::SeqCst);
        }
    }

    /// A task was given up: its thread stops counting toward `max_workers`; a new worker
    /// takes its place if tasks are waiting.
    fn replace_stuck(shared: &Arc<Self>, ticket: &Ticket, why: Stop, events: &Sender<Event<F::Output>>) {
        shared.abandoned.fetch_add(1, Ordering::Relaxed);
        shared.stuck.fetch_add(1, Ordering::Relaxed);
        let output = shared.factory.abandoned(ticket.id(), why, shared.config.grace);
        report(shared, events, ticket, output); // before the pool can finish
        {
            let mut threads = lock(&shared.threads);
            threads.counted -= 1;
            shared.all_exited.notify_all();
            shared.finish_if_done(&threads);
        }
        if !shared.tasks.is_empty() {
            Shared::spawn_if_below_max(shared, events);
        }
    }
}

/// Uncounts a worker thread when it ends, even by panic.
struct ThreadExit<'a, F: WorkerFactory> {
    shared: &'a Shared<F>,
    /// The thread still counts toward `max_workers` (not given up).
    counted: bool,
}

impl<F: WorkerFactory> Drop for ThreadExit<'_, F> {
    fn drop(&mut self) {
        let mut threads = lock(&self.shared.threads);
        threads.alive -= 1;
        if self.counted {
            threads.counted -= 1;
        } else {
            self.shared.stuck.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.all_exited.notify_all();
        self.shared.finish_if_done(&threads);
    }
}

/// Run `f` with `ticket` watched in `slot` (when it has a time limit or may be stopped).
fn watched<F: WorkerFactory, T>(
    shared: &Arc<Shared<F>>,
    slot: &Arc<Slot<F>>,
    ticket: &Ticket,
    f: impl FnOnce() -> T,
) -> T {
    *lock(&slot.running) = Some(ticket.clone());
    if ticket.timeout().is_some() {
        shared.timed_started.fetch_add(1, Ordering::Relaxed);
        // Pairs with the watchdog's fence: either its next look sees this task, or this
        // thread sees that it went idle and wakes it.
        fence(Ordering::SeqCst);
        if !shared.watchdog_started.load(Ordering::SeqCst) || shared.watchdog_idle.load(Ordering::SeqCst) {
            Shared::watch(shared);
        }
    }
    let out = f();
    *lock(&slot.running) = None;
    out
}

fn worker_thread<F: WorkerFactory>(
    shared: &Arc<Shared<F>>,
    index: usize,
    events: &Sender<Event<F::Output>>,
    mut fresh: Option<F::Fresh>,
) {
    let mut exit = ThreadExit { shared, counted: true };
    let factory = &shared.factory;
    let slot = Arc::new(Slot::<F> { interrupter: Mutex::new(None), running: Mutex::new(None), events: events.clone() });
    lock(&shared.watched).slots.push(Arc::clone(&slot));
    let _unwatch = Unwatch { shared, slot: &slot };
    loop {
        if shared.broken.get().is_some() || (shared.is_closed() && shared.tasks.is_empty()) {
            if let Some(fresh) = fresh.take() {
                factory.discard(fresh);
            }
            return;
        }
        let started = match fresh.take() {
            Some(fresh) => factory.start_from(fresh, index),
            None => factory.start(index),
        };
        let mut worker = match started {
            Ok(worker) => worker,
            Err(message) => return shared.break_pool(message, events),
        };
        *lock(&slot.interrupter) = Some(factory.interrupter(&worker));
        let stop = |worker: F::Worker| {
            lock(&slot.interrupter).take();
            factory.stop(worker);
        };
        let init = Ticket::new(crate::INIT_TASK, shared.config.init_timeout);
        init.start();
        let initialized = watched(shared, &slot, &init, || factory.initialize(&mut worker));
        if !init.finish() {
            // Given up: the initializer did not stop in time (the pool was broken by then).
            exit.counted = false;
            stop(worker);
            return;
        }
        if let Err(message) = initialized {
            stop(worker);
            return shared.break_pool(message, events);
        }
        shared.ready.fetch_add(1, Ordering::Relaxed);
        let mut ran: u64 = 0;
        let replace = loop {
            let Ok(job) = recv_spinning(&shared.tasks) else {
                break false; // closed and drained
            };
            if !job.ticket.start() {
                shared.release_idle_permit(); // cancelled: this worker is still idle
                continue;
            }
            shared.busy.fetch_add(1, Ordering::Relaxed);
            // A panic (a bug) fails its task and replaces the worker: never a lost task or a
            // silently missing thread.
            let (output, panicked) = watched(shared, &slot, &job.ticket, || {
                let run = AssertUnwindSafe(|| factory.run(&mut worker, &job.ticket, job.input));
                match std::panic::catch_unwind(run) {
                    Ok(output) => (output, false),
                    Err(payload) => (factory.panicked(job.ticket.id(), &panic_message(&*payload)), true),
                }
            });
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            if !job.ticket.finish() {
                // The watchdog gave this task up while its call was stuck: it was reported
                // already, and a new worker took this one's place.
                exit.counted = false;
                shared.ready.fetch_sub(1, Ordering::Relaxed);
                stop(worker);
                return;
            }
            shared.completed.fetch_add(1, Ordering::Relaxed);
            // Idle again before the owner hears of it, so a task it submits in response
            // finds this worker instead of starting another.
            shared.release_idle_permit();
            report(shared, events, &job.ticket, output);
            ran += 1;
            let limit_reached = shared.config.max_tasks_per_worker.is_some_and(|m| ran >= m);
            if panicked || limit_reached || !factory.healthy(&worker) {
                break true;
            }
        };
        shared.ready.fetch_sub(1, Ordering::Relaxed);
        stop(worker);
        if !replace {
            return;
        }
        shared.recycled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes a worker's slot off the watchdog's list when its thread ends.
struct Unwatch<'a, F: WorkerFactory> {
    shared: &'a Shared<F>,
    slot: &'a Arc<Slot<F>>,
}

impl<F: WorkerFactory> Drop for Unwatch<'_, F> {
    fn drop(&mut self) {
        lock(&self.shared.watched).slots.retain(|s| !Arc::ptr_eq(s, self.slot));
        self.shared.watchdog_wake.notify_all();
    }
}

/// The watchdog: times running tasks out, repeats stop requests, gives up stuck calls.
fn watchdog<F: WorkerFactory>(shared: &Arc<Shared<F>>, events: &Sender<Event<F::Output>>) {
    let grace = shared.config.grace;
    let mut last_active = Instant::now();
    let mut timed_seen = 0;
    loop {
        shared.watchdog_idle.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst); // pairs with `watched`
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut active = false;
        let mut give_up: Vec<(Ticket, Stop)> = Vec::new();
        let slots: Vec<_> = {
            let watched = lock(&shared.watched);
            if shared.is_closed() && watched.slots.is_empty() {
                drop(watched);
                let mut watched = lock(&shared.watched);
                watched.running = false;
                watched.finished = true;
                return;
            }
            watched.slots.clone()
        };
        for slot in &slots {
            let Some(ticket) = lock(&slot.running).clone() else { continue };
            active |= ticket.timeout().is_some() || ticket.stop_requested().is_some();
            if ticket.stop_requested().is_none()
                && let Some(deadline) = ticket.deadline()
            {
                if now >= deadline {
                    ticket.request_stop(Stop::Timeout);
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    continue;
                }
            }
            let (Some(why), Some(asked)) = (ticket.stop_requested(), ticket.stop_requested_at()) else { continue };
            let given_up = ticket.given_up();
            if !given_up && now >= asked + grace {
                give_up.push((ticket, why));
                continue;
            }
            // Keep asking until the call returns (the interrupter raises one stop per task),
            // and after giving the task up, again and again, less often (its thread should
            // still end).
            if let Some(interrupter) = lock(&slot.interrupter).as_ref() {
                if given_up {
                    interrupter.interrupt_again(ticket.id(), why);
                } else {
                    interrupter.interrupt(ticket.id(), why);
                }
            }
            let again = if given_up { now + RESEND * 5 } else { (now + RESEND).min(asked + grace) };
            next = Some(next.map_or(again, |n| n.min(again)));
        }
        for (ticket, why) in give_up {
            if !ticket.give_up() {
                continue; // it finished just now
            }
            if ticket.id() == crate::INIT_TASK {
                shared.stuck.fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "a worker's initializer did not return within {:.1}s after it was stopped (its time limit passed): \
                     it is stuck",
                    grace.as_secs_f64()
                );
                shared.break_pool(message, events);
                let mut threads = lock(&shared.threads);
                threads.counted -= 1;
                shared.all_exited.notify_all();
                shared.finish_if_done(&threads);
            } else {
                Shared::replace_stuck(shared, &ticket, why, events);
            }
        }
        let timed = shared.timed_started.load(Ordering::Relaxed);
        if active || timed != timed_seen {
            last_active = Instant::now(); // timed tasks run now, or ran since the last look
            timed_seen = timed;
        }
        if active || last_active.elapsed() < LINGER {
            shared.watchdog_idle.store(false, Ordering::SeqCst);
            let tick = Instant::now() + TICK;
            next = Some(next.map_or(tick, |n| n.min(tick)));
        }
        let watched = lock(&shared.watched);
        let wait = next.map_or(Duration::from_secs(1), |n| n.saturating_duration_since(Instant::now()));
        if !wait.is_zero() {
            drop(shared.watchdog_wake.wait_timeout(watched, wait).unwrap_or_else(PoisonError::into_inner));
        }
    }
}
