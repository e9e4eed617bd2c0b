//! A blocking FIFO queue shared by any number of threads (and so interpreters).
//!
//! A `Mutex<VecDeque>` with two condition variables (`not_empty`, `not_full`): waiters
//! sleep in the kernel and are woken by the operation that changes their condition, so a
//! blocked `get` wakes within microseconds of a `put`, with no polling. Deadlines are
//! absolute `Instant`s, so timeouts are exact to the scheduler's resolution. `close()`
//! wakes everyone: later `put`s fail, `get`s drain what is left and then fail. Failed
//! operations hand the item back (crossbeam style).
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

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
}

impl<T> Queue<T> {
    /// `maxsize == 0` means unbounded.
    pub fn new(maxsize: usize) -> Self {
        Self {
            state: Mutex::new(State { items: VecDeque::new(), closed: false, getters_waiting: 0, putters_waiting: 0 }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            maxsize,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleep on `cv` until `ready` holds, the wait runs out (`false`), or forever.
    /// `waiters` selects the counter of sleepers on `cv`, kept exact under the mutex.
    fn wait_for<'a>(
        &self,
        cv: &Condvar,
        mut guard: MutexGuard<'a, State<T>>,
        wait: Wait,
        waiters: fn(&mut State<T>) -> &mut usize,
        ready: impl Fn(&State<T>) -> bool,
    ) -> (MutexGuard<'a, State<T>>, bool) {
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
        );
        if guard.closed {
            return Err(PutError::Closed(item));
        }
        if !ready {
            return Err(PutError::Full(item));
        }
        guard.items.push_back(item);
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
        );
        match guard.items.pop_front() {
            Some(item) => {
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
        )
        .1
    }

    /// Wait until a `get` could succeed (an item, or closed); `false` if the wait ran out.
    pub fn wait_for_item(&self, wait: Wait) -> bool {
        let guard = self.lock();
        self.wait_for(&self.not_empty, guard, wait, |s| &mut s.getters_waiting, |s| s.closed || !s.items.is_empty()).1
    }

    /// Look at every queued item, in order (under the queue's lock).
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        self.lock().items.iter().for_each(&mut f);
    }

    /// Take every queued item out, waking putters that wait for room.
    pub fn drain(&self) -> Vec<T> {
        let mut state = self.lock();
        let items: Vec<T> = state.items.drain(..).collect();
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
        self.lock().closed = true;
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
