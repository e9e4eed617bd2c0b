//! Pool engine tests with an in-process fake worker: exact accounting under stress,
//! forced cancel/start races, broken pools, recycling, shutdown under load, lazy start,
//! timeouts, interrupts and stuck calls.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use interpool_core::{Event, Interrupt, Pool, PoolConfig, Stop, SubmitError, Ticket, WorkerFactory};

/// Outputs: `input * 2`, or these markers.
const INTERRUPTED: u64 = u64::MAX - 1;
const GIVEN_UP: u64 = u64::MAX - 2;
const PANICKED: u64 = u64::MAX - 3;
/// An input whose run panics.
const PANIC: u64 = 1 << 42;

/// A worker that doubles its input; counts starts and stops, can be told to fail to start.
/// An input of `SPIN` loops until interrupted (cooperatively); `STUCK_MS + n` sleeps `n` ms
/// ignoring interrupts (a call stuck in C).
#[derive(Default)]
struct Fake {
    starts: AtomicUsize,
    stops: AtomicUsize,
    fail_start_after: Option<usize>,
    delay: Option<Duration>,
    /// The initializer spins (cooperatively) until interrupted.
    init_spins: bool,
    live_on_thread: Mutex<HashSet<std::thread::ThreadId>>,
    /// Tasks run by each worker lifetime that ended.
    lifetimes: Mutex<Vec<u64>>,
}

const SPIN: u64 = 1 << 40;
const STUCK_MS: u64 = 1 << 41;

struct FakeWorker {
    thread: std::thread::ThreadId,
    runs: u64,
    stop: Arc<Flag>,
}

/// Set by the interrupter for the task running now.
#[derive(Default)]
struct Flag {
    running: AtomicU64,
    stop: AtomicBool,
}

struct FakeInterrupter(Arc<Flag>);

impl Interrupt for FakeInterrupter {
    fn interrupt(&self, id: u64, _why: Stop) {
        if self.0.running.load(Ordering::SeqCst) == id {
            self.0.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Newtype so the test crate may implement the trait for a shared `Fake`.
struct F(Arc<Fake>);

impl std::ops::Deref for F {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

impl WorkerFactory for F {
    type Fresh = ();
    type Worker = FakeWorker;
    type Input = u64;
    type Output = u64;
    type Interrupter = FakeInterrupter;

    fn start(&self, _index: usize) -> Result<FakeWorker, String> {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        if self.fail_start_after.is_some_and(|k| n >= k) {
            return Err(format!("start {n} failed"));
        }
        let thread = std::thread::current().id();
        assert!(self.live_on_thread.lock().unwrap().insert(thread), "one worker per thread");
        Ok(FakeWorker { thread, runs: 0, stop: Arc::default() })
    }

    fn interrupter(&self, worker: &FakeWorker) -> FakeInterrupter {
        FakeInterrupter(Arc::clone(&worker.stop))
    }

    fn initialize(&self, worker: &mut FakeWorker) -> Result<(), String> {
        if !self.init_spins {
            return Ok(());
        }
        worker.stop.running.store(interpool_core::INIT_TASK, Ordering::SeqCst);
        while !worker.stop.stop.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Err("initializer interrupted".into())
    }

    fn run(&self, worker: &mut FakeWorker, ticket: &Ticket, input: u64) -> u64 {
        assert_eq!(worker.thread, std::thread::current().id(), "runs on its own thread");
        worker.stop.running.store(ticket.id(), Ordering::SeqCst);
        worker.stop.stop.store(false, Ordering::SeqCst);
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        worker.runs += 1;
        let out = if input == SPIN {
            while !worker.stop.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            INTERRUPTED
        } else if input == PANIC {
            worker.stop.running.store(0, Ordering::SeqCst);
            panic!("task panicked");
        } else if input >= STUCK_MS {
            std::thread::sleep(Duration::from_millis(input - STUCK_MS));
            0
        } else {
            input * 2
        };
        worker.stop.running.store(0, Ordering::SeqCst);
        out
    }

    fn abandoned(&self, _id: u64, _why: Stop, _grace: Duration) -> u64 {
        GIVEN_UP
    }

    fn panicked(&self, _id: u64, message: &str) -> u64 {
        assert_eq!(message, "task panicked");
        PANICKED
    }

    fn stop(&self, worker: FakeWorker) {
        assert_eq!(worker.thread, std::thread::current().id(), "stopped on its own thread");
        self.live_on_thread.lock().unwrap().remove(&worker.thread);
        self.lifetimes.lock().unwrap().push(worker.runs);
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

fn config(workers: usize) -> PoolConfig {
    PoolConfig {
        max_workers: workers,
        thread_name_prefix: "test".into(),
        max_tasks_per_worker: None,
        stack_size: None,
        init_timeout: None,
        grace: Duration::from_millis(100),
    }
}

/// A `Broken` event: the message and the abandoned task ids.
type BrokenReport = (String, Vec<u64>);

/// Drain events until the pool is finished; returns the (id, output) of Done events and
/// the Broken reports.
fn collect(pool: &Pool<F>) -> (Vec<(u64, u64)>, Vec<BrokenReport>) {
    let mut done = Vec::new();
    let mut broken = Vec::new();
    while let Some(batch) = pool.next_events(64) {
        for ev in batch {
            match ev {
                Event::Done { id, output } => done.push((id, output)),
                Event::Broken { message, abandoned } => broken.push((message, abandoned)),
            }
        }
    }
    (done, broken)
}

#[test]
fn every_task_runs_exactly_once_under_concurrent_submitters() {
    let fake = Arc::new(Fake::default());
    let pool = Arc::new(Pool::new(F(fake.clone()), config(4)));
    let submitters = 4;
    let per = 5_000u64;
    let barrier = Arc::new(Barrier::new(submitters));
    let handles: Vec<_> = (0..submitters as u64)
        .map(|s| {
            let pool = pool.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..per)
                    .map(|i| {
                        let input = s * per + i;
                        (pool.submit(input, input, None).unwrap().id(), input)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut expected = std::collections::HashMap::new();
    for h in handles {
        for (id, input) in h.join().unwrap() {
            assert!(expected.insert(id, input).is_none(), "ids are unique");
        }
    }
    pool.shutdown(false, false);
    let (done, broken) = collect(&pool);
    assert!(broken.is_empty());
    assert!(pool.join(Some(Duration::from_secs(10)), false));
    assert_eq!(done.len(), expected.len());
    let mut seen = HashSet::new();
    for (id, out) in done {
        assert!(seen.insert(id), "task {id} reported twice");
        assert_eq!(out, expected[&id] * 2);
    }
    let stats = pool.stats();
    assert_eq!(stats.submitted, submitters as u64 * per);
    assert_eq!(stats.completed, submitters as u64 * per);
    assert_eq!((stats.busy, stats.queued, stats.workers), (0, 0, 0));
    assert_eq!(fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst));
}

#[test]
fn cancelled_tasks_never_run_and_the_rest_do() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_micros(50)), ..Fake::default() });
    let pool = Pool::new(F(fake.clone()), config(2));
    let tickets: Vec<_> = (0..2000u64).map(|i| pool.submit(i, i, None).unwrap()).collect();
    let cancelled: HashSet<u64> =
        tickets.iter().filter(|t| t.id() % 2 == 0).filter(|t| t.cancel()).map(|t| t.id()).collect();
    pool.shutdown(false, false);
    let (done, _) = collect(&pool);
    assert!(pool.join(None, false));
    let ran: HashSet<u64> = done.iter().map(|(id, _)| *id).collect();
    assert!(ran.is_disjoint(&cancelled), "a cancelled task ran");
    assert_eq!(ran.len() + cancelled.len(), tickets.len(), "a task was lost");
    assert!(!cancelled.is_empty());
}

#[test]
fn shutdown_with_cancel_returns_exactly_the_unstarted_tasks() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_millis(1)), ..Fake::default() });
    let pool = Pool::new(F(fake), config(2));
    let n = 500u64;
    for i in 0..n {
        pool.submit(i, i, None).unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let cancelled = pool.shutdown(true, false);
    let (done, _) = collect(&pool);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
    assert_eq!(done.len() + cancelled.len(), n as usize);
    assert!(!cancelled.is_empty() && !done.is_empty());
    assert!(matches!(pool.submit(n, 1, None), Err(SubmitError::Shutdown(1))));
}

#[test]
fn failing_start_breaks_the_pool_and_abandons_queued_tasks() {
    let fake = Arc::new(Fake { fail_start_after: Some(0), ..Fake::default() });
    let pool = Pool::new(F(fake), config(2));
    let mut accepted = Vec::new();
    for i in 0..100u64 {
        match pool.submit(i, i, None) {
            Ok(t) => accepted.push(t.id()),
            Err(SubmitError::Broken(msg, input)) => {
                assert!(msg.contains("failed"));
                assert_eq!(input, i, "the input is handed back");
            }
            Err(SubmitError::Shutdown(_)) => panic!("not shut down"),
        }
    }
    let (done, broken) = collect(&pool);
    assert!(done.is_empty());
    assert_eq!(broken.len(), 1, "broken is reported once");
    let abandoned: HashSet<u64> = broken[0].1.iter().copied().collect();
    assert_eq!(abandoned, accepted.into_iter().collect());
    assert!(pool.broken().is_some());
    assert!(pool.join(Some(Duration::from_secs(10)), false));
}

#[test]
fn workers_are_recycled_after_max_tasks() {
    let fake = Arc::new(Fake::default());
    let mut cfg = config(2);
    cfg.max_tasks_per_worker = Some(3);
    let pool = Pool::new(F(fake.clone()), cfg);
    for i in 0..30u64 {
        pool.submit(i, i, None).unwrap();
    }
    pool.shutdown(false, false);
    let (done, _) = collect(&pool);
    assert!(pool.join(None, false));
    assert_eq!(done.len(), 30);
    // What the engine guarantees: no lifetime runs more than 3 tasks; exactly the lifetimes
    // that reached 3 are replaced (`recycled`); a thread ends with at most one shorter
    // lifetime (no fresh worker is started once the queue is closed and empty). How the 30
    // tasks split between the (up to) 2 threads is up to the scheduler, so the number of full
    // lifetimes is between ceil((30 - 2 * 2) / 3) = 9 (each thread ends with 2 spare tasks)
    // and 10.
    let lifetimes = fake.lifetimes.lock().unwrap().clone();
    assert!(lifetimes.iter().all(|&runs| runs <= 3), "{lifetimes:?}");
    assert_eq!(lifetimes.iter().sum::<u64>(), 30);
    let full = lifetimes.iter().filter(|&&runs| runs == 3).count() as u64;
    let recycled = pool.stats().recycled;
    assert_eq!(recycled, full, "{lifetimes:?}");
    assert!((9..=10).contains(&full), "{lifetimes:?}");
    assert!(lifetimes.len() as u64 - recycled <= 2, "{lifetimes:?}");
    assert_eq!(fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst));
}

#[test]
fn dropping_the_pool_without_shutdown_still_finishes_and_stops_workers() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(3));
    for i in 0..100 {
        pool.submit(i, i, None).unwrap();
    }
    drop(pool);
    for _ in 0..500 {
        let (starts, stops) = (fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst));
        if stops == starts && (1..=3).contains(&starts) && fake.live_on_thread.lock().unwrap().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("workers were not stopped after the pool was dropped");
}

#[test]
fn workers_start_only_as_tasks_need_them() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(8));
    assert_eq!(pool.stats().threads, 0, "no thread before the first task");
    for i in 0..5u64 {
        pool.submit(i, i, None).unwrap();
        let (done, _) = next_done(&pool, 1);
        assert_eq!(done, vec![(i, i * 2)]);
    }
    // Each task finished before the next was submitted: the idle worker took it.
    assert_eq!(pool.stats().threads, 1);
    assert_eq!(fake.starts.load(Ordering::SeqCst), 1);
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
}

/// Take events until `n` Done events arrived.
fn next_done(pool: &Pool<F>, n: usize) -> (Vec<(u64, u64)>, Vec<BrokenReport>) {
    let (mut done, mut broken) = (Vec::new(), Vec::new());
    while done.len() < n {
        for ev in pool.next_events(64).expect("pool still running") {
            match ev {
                Event::Done { id, output } => done.push((id, output)),
                Event::Broken { message, abandoned } => broken.push((message, abandoned)),
            }
        }
    }
    (done, broken)
}

#[test]
fn a_task_past_its_timeout_is_stopped_and_the_worker_runs_the_next() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(1));
    let t0 = Instant::now();
    pool.submit(1, SPIN, Some(Duration::from_millis(100))).unwrap();
    pool.submit(2, 21, None).unwrap();
    let (done, _) = next_done(&pool, 2);
    assert_eq!(done, vec![(1, INTERRUPTED), (2, 42)]);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let stats = pool.stats();
    assert_eq!((stats.abandoned, stats.recycled, fake.starts.load(Ordering::SeqCst)), (0, 0, 1), "same worker");
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
}

#[test]
fn interrupting_a_running_task_stops_it_and_a_queued_one_is_cancelled() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(1));
    let running = pool.submit(1, SPIN, None).unwrap();
    let queued = pool.submit(2, 5, None).unwrap();
    while !running.running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(pool.interrupt(&queued), "a queued task is cancelled");
    assert!(pool.interrupt(&running));
    let (done, _) = next_done(&pool, 1);
    assert_eq!(done, vec![(1, INTERRUPTED)]);
    assert!(!pool.interrupt(&running), "nothing left to interrupt");
    pool.shutdown(false, false);
    let (rest, _) = collect(&pool);
    assert!(rest.is_empty(), "the cancelled task never ran: {rest:?}");
}

#[test]
fn a_call_stuck_past_the_grace_period_is_given_up_and_replaced() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(1));
    let t0 = Instant::now();
    pool.submit(1, STUCK_MS + 800, Some(Duration::from_millis(50))).unwrap();
    pool.submit(2, 21, None).unwrap();
    // Given up after timeout + grace (150 ms), long before the call returns (800 ms); the
    // queued task runs on a new worker meanwhile.
    let (done, _) = next_done(&pool, 2);
    assert_eq!(done, vec![(1, GIVEN_UP), (2, 42)]);
    assert!(t0.elapsed() < Duration::from_millis(700), "{:?}", t0.elapsed());
    let stats = pool.stats();
    assert_eq!((stats.abandoned, stats.stuck, stats.threads), (1, 1, 1));
    assert_eq!(fake.starts.load(Ordering::SeqCst), 2, "a new worker took the stuck one's place");
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::from_secs(10)), true), "counted threads exit at once");
    assert!(pool.join(Some(Duration::from_secs(10)), false), "the stuck thread exits when its call returns");
    assert_eq!(pool.stats().stuck, 0);
    let (rest, _) = collect(&pool);
    assert!(rest.is_empty(), "the stuck call's late result is dropped: {rest:?}");
    assert_eq!(fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst));
}

#[test]
fn shutdown_can_interrupt_running_tasks() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(2));
    let a = pool.submit(1, SPIN, None).unwrap();
    let b = pool.submit(2, SPIN, None).unwrap();
    while !(a.running() && b.running()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    pool.shutdown(false, true);
    let (mut done, _) = collect(&pool);
    done.sort_unstable();
    assert_eq!(done, vec![(1, INTERRUPTED), (2, INTERRUPTED)]);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
}

#[test]
fn an_initializer_past_the_timeout_breaks_the_pool() {
    let fake = Arc::new(Fake { init_spins: true, ..Fake::default() });
    let mut cfg = config(1);
    cfg.init_timeout = Some(Duration::from_millis(50));
    let pool = Pool::new(F(fake), cfg);
    pool.submit(1, 1, None).unwrap();
    let (done, broken) = collect(&pool);
    assert!(done.is_empty());
    assert_eq!(broken.len(), 1);
    assert!(broken[0].0.contains("interrupted"), "{broken:?}");
    assert_eq!(broken[0].1, vec![1]);
}

#[test]
fn join_times_out_while_work_is_running() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_millis(200)), ..Fake::default() });
    let pool = Pool::new(F(fake), config(1));
    pool.submit(1, 1, None).unwrap();
    pool.shutdown(false, false);
    assert!(!pool.join(Some(Duration::from_millis(20)), false));
    assert!(pool.join(Some(Duration::from_secs(10)), false));
}

#[test]
fn a_panicking_task_fails_with_the_panic_and_its_worker_is_replaced() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(1));
    pool.submit(1, PANIC, None).unwrap();
    pool.submit(2, 21, None).unwrap();
    let (done, broken) = next_done(&pool, 2);
    assert_eq!(done, vec![(1, PANICKED), (2, 42)]);
    assert!(broken.is_empty());
    // The worker that panicked was torn down on its thread and a fresh one ran task 2.
    assert_eq!((fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst)), (2, 1));
    assert_eq!(pool.stats().recycled, 1);
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
    assert_eq!(fake.stops.load(Ordering::SeqCst), 2);
}

#[test]
fn time_limits_and_waits_too_large_for_a_deadline_mean_no_limit() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(2));
    // Each of these overflowed `Instant + Duration` (a panic in the watchdog or a worker).
    let limits =
        [Duration::MAX, Duration::from_secs(u64::MAX), Duration::from_secs(1 << 62), Duration::from_secs_f64(1e19)];
    for (i, limit) in limits.into_iter().enumerate() {
        pool.submit(i as u64, 10 + i as u64, Some(limit)).unwrap();
    }
    let (mut done, _) = next_done(&pool, limits.len());
    done.sort_unstable();
    assert_eq!(done, vec![(0, 20), (1, 22), (2, 24), (3, 26)]);
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::MAX), false));
}

#[test]
fn tasks_of_a_replaced_worker_are_still_stopped_in_time() {
    // Each worker runs one task (max_tasks_per_worker = 1), so every task after the first runs
    // on a replacement. Before, the thread kept its first worker's interrupter: the stop
    // requests of later tasks went nowhere and each was given up as stuck.
    let fake = Arc::new(Fake::default());
    let mut cfg = config(1);
    cfg.max_tasks_per_worker = Some(1);
    let pool = Pool::new(F(fake.clone()), cfg);
    for id in 1..=4 {
        pool.submit(id, SPIN, Some(Duration::from_millis(20))).unwrap();
    }
    let (done, _) = next_done(&pool, 4);
    assert_eq!(done, (1..=4).map(|id| (id, INTERRUPTED)).collect::<Vec<_>>());
    pool.shutdown(false, false);
    assert!(pool.join(Some(Duration::from_secs(10)), false));
    // Counted once the threads are done (a worker is recycled after its reply is sent).
    let stats = pool.stats();
    assert_eq!((stats.abandoned, stats.stuck, stats.recycled), (0, 0, 4));
}

#[test]
fn an_output_taken_by_a_waiter_and_not_accepted_still_comes_as_an_event() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_millis(20)), ..Fake::default() });
    let pool = Pool::new(F(fake), config(1));
    let (mut accepted, mut dropped) = (Vec::new(), Vec::new());
    for i in 0..20u64 {
        let ticket = pool.submit(i, i, None).unwrap();
        if let Some(taken) = pool.wait_output(&ticket, Duration::from_secs(30), true) {
            assert_eq!((taken.id(), *taken.output()), (i, i * 2));
            if i % 2 == 0 {
                taken.accept();
                accepted.push(i);
            } else {
                dropped.push(i);
                if i == 19 {
                    // The pool finishes meanwhile: the event loop must still get this output.
                    pool.shutdown(false, false);
                    assert!(pool.join(Some(Duration::from_secs(30)), false));
                }
                drop(taken); // interrupted before it was used: back to the event channel
            }
        }
    }
    pool.shutdown(false, false);
    let (done, _) = collect(&pool);
    let mut ids: Vec<u64> = done.iter().map(|&(id, _)| id).chain(accepted.iter().copied()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<_>>(), "every output exactly once");
    assert!(dropped.iter().all(|id| done.contains(&(*id, id * 2))), "{dropped:?} {done:?}");
}
