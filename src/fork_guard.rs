//! Turn CPython's post-fork crash into a clear error.
//!
//! A process that `os.fork()`s while own-GIL subinterpreters are alive (or being created)
//! cannot survive in the child: CPython's `PyOS_AfterFork_Child` clears the other
//! interpreters without a thread state and crashes (CPython gh-139759, open; measured: SIGSEGV
//! on 3.14 and 3.14t, SIGABRT on 3.13, the stdlib's own pool included), or, when the fork
//! happened during a creation, deadlocks on a lock the creating thread held. That happens
//! before any Python code runs in the child, so no Python-level hook can report it.
//!
//! glibc runs `pthread_atfork` child handlers inside `fork()`, before CPython's cleanup.
//! Ours acts only when both hold: interpool interpreters are alive or being created, and the
//! fork was announced by Python's `os.register_at_fork` hooks (so `subprocess` without
//! `preexec_fn`, which forks without running Python code in the child, is never affected).
//! It then writes an explanation to stderr and `_exit`s with [`EXIT_CODE`].
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Exit status of a child forked while interpool interpreters were alive (EX_SOFTWARE).
pub const EXIT_CODE: i32 = 70;

/// Own-GIL interpreters created by interpool, or being created, that have not ended yet.
static ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Set between Python's `before` and `after_in_parent` fork hooks.
static PYTHON_FORKING: AtomicBool = AtomicBool::new(false);

const MESSAGE: &[u8] = b"interpool: this process called fork() while interpool worker interpreters were alive. \
CPython cannot clean up subinterpreters in a forked child and would crash here (CPython gh-139759), so the \
child exits with status 70 instead. Shut the pools down before forking, or start processes with the \
'spawn' or 'forkserver' multiprocessing context (ProcessPoolExecutor(mp_context=...)).\n";

extern "C" fn child_after_fork() {
    if PYTHON_FORKING.load(Ordering::SeqCst) && ALIVE.load(Ordering::SeqCst) > 0 {
        // SAFETY: write(2) and _exit(2) are async-signal-safe, as required in a fork child.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(EXIT_CODE);
        }
    }
}

/// Install the handler (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function with no captured state.
        unsafe { libc::pthread_atfork(None, None, Some(child_after_fork)) };
    });
}

/// Called by Python's fork hooks: `true` before `fork()`, `false` after it in the parent.
pub fn set_python_forking(on: bool) {
    PYTHON_FORKING.store(on, Ordering::SeqCst);
}

/// Whether interpool interpreters are alive or being created now.
pub fn interpreters_alive() -> usize {
    ALIVE.load(Ordering::SeqCst)
}

/// One interpreter counted from before its creation; uncounted unless [`Alive::keep`] is
/// called (creation succeeded), until [`Alive::ended`].
pub struct Alive(bool);

impl Alive {
    pub fn new() -> Self {
        ALIVE.fetch_add(1, Ordering::SeqCst);
        Alive(true)
    }

    /// The interpreter was created: it stays counted until `ended`.
    pub fn keep(mut self) {
        self.0 = false;
    }

    /// A kept interpreter ended.
    pub fn ended() {
        ALIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        if self.0 {
            ALIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
