//! Pool engine tests with an in-process fake worker: exact accounting under stress,
//! forced cancel/start races, broken pools, recycling and shutdown under load.
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use interpool_core::{Event, Pool, PoolConfig, SubmitError, WorkerFactory};

/// A worker that doubles its input; counts starts and stops, can be told to fail to start.
#[derive(Default)]
struct Fake {
    starts: AtomicUsize,
    stops: AtomicUsize,
    fail_start_after: Option<usize>,
    delay: Option<Duration>,
    live_on_thread: Mutex<HashSet<std::thread::ThreadId>>,
    /// Tasks run by each worker lifetime that ended.
    lifetimes: Mutex<Vec<u64>>,
}

struct FakeWorker {
    thread: std::thread::ThreadId,
    runs: u64,
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
    type Worker = FakeWorker;
    type Input = u64;
    type Output = u64;

    fn start(&self, _index: usize) -> Result<FakeWorker, String> {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        if self.fail_start_after.is_some_and(|k| n >= k) {
            return Err(format!("start {n} failed"));
        }
        let thread = std::thread::current().id();
        assert!(self.live_on_thread.lock().unwrap().insert(thread), "one worker per thread");
        Ok(FakeWorker { thread, runs: 0 })
    }

    fn run(&self, worker: &mut FakeWorker, input: u64) -> u64 {
        assert_eq!(worker.thread, std::thread::current().id(), "runs on its own thread");
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        worker.runs += 1;
        input * 2
    }

    fn stop(&self, worker: FakeWorker) {
        assert_eq!(worker.thread, std::thread::current().id(), "stopped on its own thread");
        self.live_on_thread.lock().unwrap().remove(&worker.thread);
        self.lifetimes.lock().unwrap().push(worker.runs);
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

fn config(workers: usize) -> PoolConfig {
    PoolConfig { workers, thread_name_prefix: "test".into(), max_tasks_per_worker: None, stack_size: None }
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
    let pool = Arc::new(Pool::new(F(fake.clone()), config(4)).unwrap());
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
                        (pool.submit(input, input).unwrap().id(), input)
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
    pool.shutdown(false);
    let (done, broken) = collect(&pool);
    assert!(broken.is_empty());
    assert!(pool.join(Some(Duration::from_secs(10))));
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
    let pool = Pool::new(F(fake.clone()), config(2)).unwrap();
    let tickets: Vec<_> = (0..2000u64).map(|i| pool.submit(i, i).unwrap()).collect();
    let cancelled: HashSet<u64> =
        tickets.iter().filter(|t| t.id() % 2 == 0).filter(|t| t.cancel()).map(|t| t.id()).collect();
    pool.shutdown(false);
    let (done, _) = collect(&pool);
    assert!(pool.join(None));
    let ran: HashSet<u64> = done.iter().map(|(id, _)| *id).collect();
    assert!(ran.is_disjoint(&cancelled), "a cancelled task ran");
    assert_eq!(ran.len() + cancelled.len(), tickets.len(), "a task was lost");
    assert!(!cancelled.is_empty());
}

#[test]
fn shutdown_with_cancel_returns_exactly_the_unstarted_tasks() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_millis(1)), ..Fake::default() });
    let pool = Pool::new(F(fake), config(2)).unwrap();
    let n = 500u64;
    for i in 0..n {
        pool.submit(i, i).unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let cancelled = pool.shutdown(true);
    let (done, _) = collect(&pool);
    assert!(pool.join(Some(Duration::from_secs(10))));
    assert_eq!(done.len() + cancelled.len(), n as usize);
    assert!(!cancelled.is_empty() && !done.is_empty());
    assert!(matches!(pool.submit(n, 1), Err(SubmitError::Shutdown(1))));
}

#[test]
fn failing_start_breaks_the_pool_and_abandons_queued_tasks() {
    let fake = Arc::new(Fake { fail_start_after: Some(0), ..Fake::default() });
    let pool = Pool::new(F(fake), config(2)).unwrap();
    let mut accepted = Vec::new();
    for i in 0..100u64 {
        match pool.submit(i, i) {
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
    assert!(pool.join(Some(Duration::from_secs(10))));
}

#[test]
fn workers_are_recycled_after_max_tasks() {
    let fake = Arc::new(Fake::default());
    let mut cfg = config(2);
    cfg.max_tasks_per_worker = Some(3);
    let pool = Pool::new(F(fake.clone()), cfg).unwrap();
    for i in 0..30u64 {
        pool.submit(i, i).unwrap();
    }
    pool.shutdown(false);
    let (done, _) = collect(&pool);
    assert!(pool.join(None));
    assert_eq!(done.len(), 30);
    // What the engine guarantees: no lifetime runs more than 3 tasks; exactly the lifetimes
    // that reached 3 are replaced (`recycled`), and each thread ends with one more lifetime.
    // How the 30 tasks split between the 2 threads is up to the scheduler, so the number of
    // full lifetimes is between ceil((30 - 2 * 2) / 3) = 9 (each thread ends with 2 spare
    // tasks) and 10.
    let lifetimes = fake.lifetimes.lock().unwrap().clone();
    assert!(lifetimes.iter().all(|&runs| runs <= 3), "{lifetimes:?}");
    assert_eq!(lifetimes.iter().sum::<u64>(), 30);
    let full = lifetimes.iter().filter(|&&runs| runs == 3).count() as u64;
    let recycled = pool.stats().recycled;
    assert_eq!(recycled, full, "{lifetimes:?}");
    assert!((9..=10).contains(&full), "{lifetimes:?}");
    assert_eq!(lifetimes.len() as u64, recycled + 2, "{lifetimes:?}");
    assert_eq!(fake.starts.load(Ordering::SeqCst), fake.stops.load(Ordering::SeqCst));
}

#[test]
fn dropping_the_pool_without_shutdown_still_finishes_and_stops_workers() {
    let fake = Arc::new(Fake::default());
    let pool = Pool::new(F(fake.clone()), config(3)).unwrap();
    for i in 0..100 {
        pool.submit(i, i).unwrap();
    }
    drop(pool);
    for _ in 0..500 {
        if fake.stops.load(Ordering::SeqCst) == fake.starts.load(Ordering::SeqCst)
            && fake.starts.load(Ordering::SeqCst) == 3
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("workers were not stopped after the pool was dropped");
}

#[test]
fn join_times_out_while_work_is_running() {
    let fake = Arc::new(Fake { delay: Some(Duration::from_millis(200)), ..Fake::default() });
    let pool = Pool::new(F(fake), config(1)).unwrap();
    pool.submit(1, 1).unwrap();
    pool.shutdown(false);
    assert!(!pool.join(Some(Duration::from_millis(20))));
    assert!(pool.join(Some(Duration::from_secs(10))));
}
