//! Per-task state shared by the submitter and the workers: a three-state atomic that makes
//! "cancel" and "start running" mutually exclusive (the `Future.cancel()` contract: a
//! cancelled task never runs, a running task cannot be cancelled).
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;
/// Dropped because the pool broke; reported in [`crate::Event::Broken`], not cancellable.
const ABANDONED: u8 = 3;

/// The submitter's handle on one queued task.
#[derive(Clone, Debug)]
pub struct Ticket {
    id: u64,
    state: Arc<AtomicU8>,
}

impl Ticket {
    pub(crate) fn new(id: u64) -> Self {
        Self { id, state: Arc::new(AtomicU8::new(QUEUED)) }
    }

    /// The task's id, unique within its pool.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cancel the task if no worker has started it. Returns `true` if it is (now or
    /// already) cancelled: it will never run and no [`crate::Event::Done`] is sent for it.
    pub fn cancel(&self) -> bool {
        match self.state.compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(now) => now == CANCELLED,
        }
    }

    /// Whether a worker has started (or finished) the task.
    pub fn started(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Pool side: give up a queued task because the pool broke. `false` if it already
    /// started or was cancelled.
    pub(crate) fn abandon(&self) -> bool {
        self.state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Worker side: claim the task. `false` means it was cancelled and must be skipped.
    pub(crate) fn start(&self) -> bool {
        self.state.compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_and_start_exclude_each_other() {
        let t = Ticket::new(1);
        assert!(t.cancel());
        assert!(t.cancel(), "cancel is idempotent");
        assert!(!t.start());
        let t = Ticket::new(2);
        assert!(t.start());
        assert!(t.started());
        assert!(!t.cancel());
        let t = Ticket::new(3);
        assert!(t.abandon());
        assert!(!t.cancel(), "an abandoned task is reported as broken, not cancelled");
        assert!(!t.start());
    }

    #[test]
    fn racing_cancel_and_start_have_one_winner() {
        for i in 0..2000 {
            let t = Ticket::new(i);
            let t2 = t.clone();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let b2 = barrier.clone();
            let h = std::thread::spawn(move || {
                b2.wait();
                t2.start()
            });
            barrier.wait();
            let cancelled = t.cancel();
            let started = h.join().unwrap();
            assert!(cancelled ^ started, "exactly one of cancel/start must win");
        }
    }
}
