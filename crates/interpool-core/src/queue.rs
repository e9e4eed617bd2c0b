//! A blocking FIFO queue shared by any number of threads (and so interpreters).
//!
//! A `Mutex<VecDeque>` with two condition variables (`not_empty`, `not_full`): waiters
//! sleep in the kernel and are woken by the operation that changes their condition, so a
//! blocked `get` wakes within microseconds of a `put`, with no polling.
//!
//! Waking a sleeping thread on another CPU costs tens of microseconds, far more than a
//! hand-off between two threads that keep running. So a waiter first *spins* (watching a
//! lock-free mirror of the queue's length, without the lock) for up to the queue's current
//! spin budget, and sleeps only if that runs out. The budget adapts: back to [`SPIN_MAX`]
//! whenever a spin ends with the condition met, halved (down to 1 us) whenever it runs out, so
//! a queue whose other side answers slowly, or runs on the same CPU (where spinning only
//! delays it), soon spins for almost nothing; a process with one CPU never spins. Deadlines are
//! absolute `Instant`s, so timeouts are exact to the scheduler's resolution. `close()`
//! wakes everyone: later `put`s fail, `get`s drain what is left and then fail. Failed
//! operations hand the item back (crossbeam style).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The most a waiter spins before sleeping, in microseconds.
pub const SPIN_MAX: u32 = 50;

/// Whether spinning can help: the process may run on more than one CPU, so the thread a
/// waiter waits for may run meanwhile. Asked once (it reads cgroup files), when the first
/// queue is made; threads pinned to one CPU later are left to the adaptive budget.
fn spinning_helps() -> bool {
    static MANY_CPUS: OnceLock<bool> = OnceLock::new();
    *MANY_CPUS.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// How long an operation may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once instead of blocking.
    Never,
    /// Block until this instant at most.
    Until(Instant),
    /// Block as long as needed.
    Forever,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PutError<T> {
    /// Bounded queue full and `Wait::Never`, or still full at the deadline.
    Full(T),
    /// The queue was closed.
    Closed(T),
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum GetError {
    /// Nothing to take (at once, or by the deadline).
    Empty,
    /// Closed and drained.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads asleep in `get` / `put`: notifying costs a syscall, so only when someone
    /// is actually waiting.
    getters_waiting: usize,
    putters_waiting: usize,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    maxsize: usize,
    /// Mirrors of `items.len()` and `closed`, written under the lock, read by spinners.
    len: AtomicUsize,
    closed: AtomicBool,
    /// The current spin budget in microseconds (see the module header).
    spin_us: AtomicU32,
}

impl<T> Queue<T> {
    /// `maxsize == 0` means unbounded.
    pub fn new(maxsize: usize) -> Self {
        spinning_helps();
        Self {
            state: Mutex::new(State { items: VecDeque::new(), closed: false, getters_waiting: 0, putters_waiting: 0 }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            maxsize,
            len: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            spin_us: AtomicU32::new(SPIN_MAX),
        }
    }

    /// Spin (lock released) until `ready` holds for the mirrors or the budget runs out,
    /// then adapt the budget. Returns the re-taken lock.
    fn spin<'a>(
        &'a self,
        guard: MutexGuard<'a, State<T>>,
        deadline: Option<Instant>,
        ready: impl Fn(usize, bool) -> bool,
    ) -> MutexGuard<'a, State<T>> {
        let budget = self.spin_us.load(Ordering::Relaxed);
        if budget == 0 || !spinning_helps() {
            return guard;
        }
        drop(guard);
        let start = Instant::now();
        let mut limit = start + Duration::from_micros(u64::from(budget));
        if let Some(deadline) = deadline {
            limit = limit.min(deadline);
        }
        let met = loop {
            for _ in 0..32 {
                if ready(self.len.load(Ordering::Acquire), self.closed.load(Ordering::Acquire)) {
                    break;
                }
                std::hint::spin_loop();
            }
            if ready(self.len.load(Ordering::Acquire), self.closed.load(Ordering::Acquire)) {
                break true;
            }
            if Instant::now() >= limit {
                break false;
            }
            // Lets the awaited thread run if it shares this CPU.
            std::thread::yield_now();
        };
        let next = if met { SPIN_MAX } else { (budget / 2).max(1) };
        self.spin_us.store(next, Ordering::Relaxed);
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleep on `cv` until `ready` holds, the wait runs out (`false`), or forever.
    /// `waiters` selects the counter of sleepers on `cv`, kept exact under the mutex.
    fn wait_for<'a>(
        &'a self,
        cv: &Condvar,
        mut guard: MutexGuard<'a, State<T>>,
        wait: Wait,
        waiters: fn(&mut State<T>) -> &mut usize,
        ready: impl Fn(&State<T>) -> bool,
        mirror: impl Fn(usize, bool) -> bool,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        let mut spun = false;
        loop {
            if ready(&guard) {
                return (guard, true);
            }
            let timeout = match wait {
                Wait::Never => return (guard, false),
                Wait::Forever => None,
                Wait::Until(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return (guard, false);
                    }
                    Some(deadline - now)
                }
            };
            if !spun {
                spun = true;
                let deadline = match wait {
                    Wait::Until(deadline) => Some(deadline),
                    _ => None,
                };
                guard = self.spin(guard, deadline, &mirror);
                continue;
            }
            *waiters(&mut guard) += 1;
            guard = match timeout {
                None => cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(t) => cv.wait_timeout(guard, t).unwrap_or_else(PoisonError::into_inner).0,
            };
            *waiters(&mut guard) -= 1;
        }
    }

    pub fn put(&self, item: T, wait: Wait) -> Result<(), PutError<T>> {
        let guard = self.lock();
        let max = self.maxsize;
        let (mut guard, ready) = self.wait_for(
            &self.not_full,
            guard,
            wait,
            |s| &mut s.putters_waiting,
            |s| s.closed || max == 0 || s.items.len() < max,
            |len, closed| closed || max == 0 || len < max,
        );
        if guard.closed {
            return Err(PutError::Closed(item));
        }
        if !ready {
            return Err(PutError::Full(item));
        }
        guard.items.push_back(item);
        self.len.store(guard.items.len(), Ordering::Release);
        let wake = guard.getters_waiting > 0;
        drop(guard);
        if wake {
            self.not_empty.notify_one();
        }
        Ok(())
    }

    pub fn get(&self, wait: Wait) -> Result<T, GetError> {
        let guard = self.lock();
        let (mut guard, _) = self.wait_for(
            &self.not_empty,
            guard,
            wait,
            |s| &mut s.getters_waiting,
            |s| s.closed || !s.items.is_empty(),
            |len, closed| closed || len > 0,
        );
        match guard.items.pop_front() {
            Some(item) => {
                self.len.store(guard.items.len(), Ordering::Release);
                let wake = guard.putters_waiting > 0;
                drop(guard);
                if wake {
                    self.not_full.notify_one();
                }
                Ok(item)
            }
            None if guard.closed => Err(GetError::Closed),
            None => Err(GetError::Empty),
        }
    }

    /// Wait until a `put` could succeed (room, or closed); `false` if the wait ran out.
    pub fn wait_for_room(&self, wait: Wait) -> bool {
        let max = self.maxsize;
        let guard = self.lock();
        self.wait_for(
            &self.not_full,
            guard,
            wait,
            |s| &mut s.putters_waiting,
            |s| s.closed || max == 0 || s.items.len() < max,
            |len, closed| closed || max == 0 || len < max,
        )
        .1
    }

    /// Wait until a `get` could succeed (an item, or closed); `false` if the wait ran out.
    pub fn wait_for_item(&self, wait: Wait) -> bool {
        let guard = self.lock();
        self.wait_for(
            &self.not_empty,
            guard,
            wait,
            |s| &mut s.getters_waiting,
            |s| s.closed || !s.items.is_empty(),
            |len, closed| closed || len > 0,
        )
        .1
    }

    /// Look at every queued item, in order (under the queue's lock).
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        self.lock().items.iter().for_each(&mut f);
    }

    /// Take every queued item out, waking putters that wait for room.
    pub fn drain(&self) -> Vec<T> {
        let mut state = self.lock();
        let items: Vec<T> = state.items.drain(..).collect();
        self.len.store(0, Ordering::Release);
        let wake = state.putters_waiting > 0;
        drop(state);
        if wake {
            self.not_full.notify_all();
        }
        items
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize
    }

    pub fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// Refuse further `put`s and wake every waiter. Idempotent.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        drop(state);
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn fifo_bounds_and_nonblocking_errors() {
        let q = Queue::new(2);
        q.put(1, Wait::Never).unwrap();
        q.put(2, Wait::Never).unwrap();
        assert_eq!(q.put(3, Wait::Never), Err(PutError::Full(3)));
        assert!(q.is_full());
        assert_eq!(q.get(Wait::Never), Ok(1));
        assert_eq!(q.get(Wait::Never), Ok(2));
        assert_eq!(q.get(Wait::Never), Err(GetError::Empty));
    }

    #[test]
    fn timeouts_are_accurate() {
        let q: Queue<u8> = Queue::new(0);
        let t0 = Instant::now();
        let r = q.get(Wait::Until(t0 + Duration::from_millis(30)));
        let waited = t0.elapsed();
        assert_eq!(r, Err(GetError::Empty));
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert!(waited < Duration::from_millis(200), "{waited:?}");
    }

    #[test]
    fn close_wakes_waiters_and_drains() {
        let q = Arc::new(Queue::new(1));
        q.put(7, Wait::Never).unwrap();
        let q2 = q.clone();
        let blocked_put = std::thread::spawn(move || q2.put(8, Wait::Forever));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(blocked_put.join().unwrap(), Err(PutError::Closed(8)));
        assert_eq!(q.get(Wait::Forever), Ok(7), "items put before close are still delivered");
        assert_eq!(q.get(Wait::Forever), Err(GetError::Closed));
    }

    #[test]
    fn many_producers_and_consumers_deliver_each_item_once() {
        let q = Arc::new(Queue::new(16));
        let producers = 4u64;
        let per = 5000u64;
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = q.get(Wait::Forever) {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        q.put(p * per + i, Wait::Forever).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        q.close();
        let mut all: Vec<u64> = consumers.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..producers * per).collect::<Vec<_>>());
    }
}
