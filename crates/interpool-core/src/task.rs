//! Per-task state shared by the submitter, the worker and the watchdog.
//!
//! One atomic holds the task's life: `QUEUED -> RUNNING -> DONE`, or `QUEUED -> CANCELLED`
//! (a cancel before a worker took it), `QUEUED -> ABANDONED` (the pool broke), or
//! `RUNNING -> GIVEN_UP` (a stop request went unanswered for the grace period: the call is
//! stuck). Every transition is a compare-and-swap, so each pair of competitors has exactly one
//! winner: a cancelled task never runs, a running task is never cancelled, and a task that
//! finishes just as it is given up is reported once, by whichever won.
//!
//! A *stop request* (a timeout or an interrupt) is separate from the state: it asks the
//! worker to stop the running call (the worker's factory delivers it) and starts the grace
//! period after which the watchdog gives the task up.
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;
/// Dropped because the pool broke; reported in [`crate::Event::Broken`], not cancellable.
const ABANDONED: u8 = 3;
const DONE: u8 = 4;
const GIVEN_UP: u8 = 5;

/// Why a running task is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It ran longer than its timeout.
    Timeout,
    /// Someone asked (`Ticket::interrupt`, a shutdown that interrupts).
    Interrupt,
}

impl Stop {
    fn code(self) -> u8 {
        match self {
            Stop::Timeout => 1,
            Stop::Interrupt => 2,
        }
    }

    fn from_code(code: u8) -> Option<Stop> {
        match code {
            1 => Some(Stop::Timeout),
            2 => Some(Stop::Interrupt),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct State {
    id: u64,
    life: AtomicU8,
    stop: AtomicU8,
    /// Seconds allowed once running (`f64` bits; 0: no limit).
    timeout: AtomicU64,
    /// When it started running, and when a stop was first requested.
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Direct delivery of the output to a thread waiting for it ([`Ticket::wait_output`]).
    mailbox: Mutex<Mailbox>,
    /// The output is in the mailbox (what a waiter spins on).
    delivered: AtomicBool,
}

/// A task's output on its way to a thread that waits for it, bypassing the event channel.
#[derive(Default)]
struct Mailbox {
    /// The thread waiting in [`Ticket::wait_output`], if one is.
    waiter: Option<Thread>,
    /// The output, handed over by [`Ticket::deliver`].
    output: Option<Box<dyn Any + Send>>,
    /// The output went to the event channel: do not wait for it.
    posted: bool,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").field("waiting", &self.waiter.is_some()).field("posted", &self.posted).finish()
    }
}

/// A handle on one task, shared by its submitter, its worker and the watchdog.
#[derive(Clone, Debug)]
pub struct Ticket(Arc<State>);

impl Ticket {
    pub(crate) fn new(id: u64, timeout: Option<Duration>) -> Self {
        Ticket(Arc::new(State {
            id,
            life: AtomicU8::new(QUEUED),
            stop: AtomicU8::new(0),
            timeout: AtomicU64::new(timeout.map_or(0, |t| t.as_secs_f64().to_bits())),
            times: Mutex::new((None, None)),
            mailbox: Mutex::new(Mailbox::default()),
            delivered: AtomicBool::new(false),
        }))
    }

    fn swap(&self, from: u8, to: u8) -> bool {
        self.0.life.compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn life(&self) -> u8 {
        self.0.life.load(Ordering::Acquire)
    }

    /// The task's id, unique within its pool.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Cancel the task if no worker has started it. Returns `true` if it is (now or
    /// already) cancelled: it will never run and no [`crate::Event::Done`] is sent for it.
    pub fn cancel(&self) -> bool {
        self.swap(QUEUED, CANCELLED) || self.life() == CANCELLED
    }

    /// Whether a worker has started the task (it may have finished since).
    pub fn started(&self) -> bool {
        matches!(self.life(), RUNNING | DONE | GIVEN_UP)
    }

    /// Whether the task is running now.
    pub fn running(&self) -> bool {
        self.life() == RUNNING
    }

    /// Whether the task was given up while its call was stuck.
    pub fn given_up(&self) -> bool {
        self.life() == GIVEN_UP
    }

    /// Cancel the task if it is queued, or ask its worker to stop it if it is running.
    /// `false`: it had already ended (or was already cancelled or given up).
    pub fn interrupt(&self) -> bool {
        if self.swap(QUEUED, CANCELLED) {
            return true;
        }
        self.request_stop(Stop::Interrupt)
    }

    /// Ask the running task to stop (the first reason wins). `false` if it is not running.
    pub(crate) fn request_stop(&self, why: Stop) -> bool {
        if self.life() != RUNNING {
            return false;
        }
        if self.0.stop.compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.0.times.lock().unwrap_or_else(PoisonError::into_inner).1 = Some(Instant::now());
        }
        true
    }

    /// Why the task was asked to stop, if it was.
    pub fn stop_requested(&self) -> Option<Stop> {
        Stop::from_code(self.0.stop.load(Ordering::Acquire))
    }

    /// The time limit once running, if any.
    pub fn timeout(&self) -> Option<Duration> {
        let secs = f64::from_bits(self.0.timeout.load(Ordering::Acquire));
        // (A limit too large for a Duration is no limit: never reached.)
        if secs > 0.0 { Duration::try_from_secs_f64(secs).ok() } else { None }
    }

    /// When the task must be stopped (it runs with a timeout).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let started = self.0.times.lock().unwrap_or_else(PoisonError::into_inner).0?;
        // A deadline past what an Instant can hold is never reached: no deadline.
        started.checked_add(self.timeout()?)
    }

    /// When a stop was first requested.
    pub(crate) fn stop_requested_at(&self) -> Option<Instant> {
        self.0.times.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Pool side: give up a queued task because the pool broke. `false` if it already
    /// started or was cancelled.
    pub(crate) fn abandon(&self) -> bool {
        self.swap(QUEUED, ABANDONED)
    }

    /// Worker side: claim the task. `false` means it was cancelled and must be skipped.
    pub(crate) fn start(&self) -> bool {
        if !self.swap(QUEUED, RUNNING) {
            return false;
        }
        if self.timeout().is_some() {
            self.0.times.lock().unwrap_or_else(PoisonError::into_inner).0 = Some(Instant::now());
        }
        true
    }

    /// Worker side: the call returned. `false`: the watchdog gave the task up meanwhile (it
    /// was reported already; this worker's result is dropped).
    pub(crate) fn finish(&self) -> bool {
        self.swap(RUNNING, DONE)
    }

    /// Watchdog side: give up a running task whose stop request went unanswered. `false`:
    /// it finished meanwhile.
    pub(crate) fn give_up(&self) -> bool {
        self.swap(RUNNING, GIVEN_UP)
    }

    fn mailbox(&self) -> std::sync::MutexGuard<'_, Mailbox> {
        self.0.mailbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand the task's output to the thread waiting for it in [`Ticket::wait_output`], if
    /// one is; otherwise give it back (to be sent as an event), and a later waiter does not
    /// wait for it.
    pub(crate) fn deliver<O: Send + 'static>(&self, output: O) -> Option<O> {
        let mut mailbox = self.mailbox();
        let Some(waiter) = mailbox.waiter.take() else {
            mailbox.posted = true;
            return Some(output);
        };
        mailbox.output = Some(Box::new(output));
        self.0.delivered.store(true, Ordering::Release);
        drop(mailbox);
        waiter.unpark();
        None
    }

    /// Whether the output went (or will go) to the event channel: no wait can take it now.
    pub fn posted(&self) -> bool {
        self.mailbox().posted
    }

    /// Wait up to `wait` for the task's output to be handed to this thread directly (the
    /// owner's thread that waits for a result takes it itself, instead of a dispatcher
    /// taking it from the event channel and waking that thread: one hand-off less). Spins
    /// for up to `spin` first. `None`: it did not come in time, or it went (or will go) to
    /// the event channel.
    pub fn wait_output<O: Send + 'static>(&self, wait: Duration, spin: Duration) -> Option<O> {
        let start = Instant::now();
        {
            let mut mailbox = self.mailbox();
            if mailbox.posted {
                return None;
            }
            if mailbox.output.is_none() {
                mailbox.waiter = Some(std::thread::current());
            }
        }
        'wait: while !self.0.delivered.load(Ordering::Acquire) {
            let waited = start.elapsed();
            if waited >= wait {
                break;
            }
            if waited < spin {
                for _ in 0..64 {
                    if self.0.delivered.load(Ordering::Acquire) {
                        break 'wait;
                    }
                    std::hint::spin_loop();
                }
                std::thread::yield_now(); // let a thread on the same CPU (the worker) run
            } else {
                std::thread::park_timeout(wait - waited);
            }
        }
        let mut mailbox = self.mailbox();
        mailbox.waiter = None; // too late now: the output goes to the event channel
        let output = mailbox.output.take()?;
        Some(*output.downcast::<O>().expect("a ticket's output has its pool's output type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_to_a_waiter_or_back_to_the_channel_never_both() {
        for i in 0..2000 {
            let t = Ticket::new(i, None);
            let t2 = t.clone();
            let h = std::thread::spawn(move || t2.wait_output::<u64>(Duration::from_millis(5), Duration::ZERO));
            let back = t.deliver(i);
            let taken = h.join().unwrap();
            assert!(back.is_some() ^ taken.is_some(), "exactly one receives the output");
            assert_eq!(back.or(taken), Some(i));
        }
        let t = Ticket::new(1, None);
        assert_eq!(t.deliver(7u8), Some(7), "no waiter: back to the channel");
        assert_eq!(t.wait_output::<u8>(Duration::from_secs(60), Duration::ZERO), None, "posted: no wait");
    }

    #[test]
    fn cancel_and_start_exclude_each_other() {
        let t = Ticket::new(1, None);
        assert!(t.cancel());
        assert!(t.cancel(), "cancel is idempotent");
        assert!(!t.start());
        let t = Ticket::new(2, None);
        assert!(t.start());
        assert!(t.started() && t.running());
        assert!(!t.cancel());
        let t = Ticket::new(3, None);
        assert!(t.abandon());
        assert!(!t.cancel(), "an abandoned task is reported as broken, not cancelled");
        assert!(!t.start());
    }

    #[test]
    fn racing_cancel_and_start_have_one_winner() {
        for i in 0..2000 {
            let t = Ticket::new(i, None);
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

    #[test]
    fn racing_finish_and_give_up_have_one_winner() {
        for i in 0..2000 {
            let t = Ticket::new(i, None);
            assert!(t.start());
            assert!(t.request_stop(Stop::Timeout));
            let t2 = t.clone();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let b2 = barrier.clone();
            let h = std::thread::spawn(move || {
                b2.wait();
                t2.give_up()
            });
            barrier.wait();
            let finished = t.finish();
            let given_up = h.join().unwrap();
            assert!(finished ^ given_up, "exactly one of finish/give_up must win");
        }
    }

    #[test]
    fn interrupt_cancels_queued_and_stops_running_tasks() {
        let queued = Ticket::new(1, None);
        assert!(queued.interrupt());
        assert!(!queued.start(), "an interrupted queued task never runs");
        let running = Ticket::new(2, Some(Duration::from_secs(5)));
        assert!(running.start());
        assert!(running.deadline().is_some());
        assert!(running.interrupt());
        assert_eq!(running.stop_requested(), Some(Stop::Interrupt));
        running.request_stop(Stop::Timeout);
        assert_eq!(running.stop_requested(), Some(Stop::Interrupt), "the first reason wins");
        assert!(running.finish());
        assert!(!running.interrupt(), "a finished task cannot be interrupted");
    }
}
