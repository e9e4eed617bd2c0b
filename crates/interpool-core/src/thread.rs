//! Join handles that a forked child never uses.
//!
//! After `fork()` the child has only the forking thread; the other threads' `pthread_t`s are
//! addresses of descriptors in memory the child inherited, and glibc reuses a cached stack (and
//! with it the same `pthread_t`) for the child's next threads. Joining or dropping (which
//! detaches) a parent's handle in the child then acts on one of the child's own threads: a
//! Python thread the child started could no longer be joined ("Failed joining thread", 5-16
//! of 20 forks that dropped an executor shut down before the fork). A [`ThreadHandle`] knows
//! the process that made it and, in any other process, is forgotten instead.
use std::thread::JoinHandle;

/// A thread's join handle, inert outside the process that started the thread.
pub struct ThreadHandle {
    handle: Option<JoinHandle<()>>,
    pid: u32,
}

impl ThreadHandle {
    pub fn new(handle: JoinHandle<()>) -> Self {
        ThreadHandle { handle: Some(handle), pid: std::process::id() }
    }

    fn ours(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Whether the thread has finished (in a forked child: it does not exist, so yes).
    pub fn is_finished(&self) -> bool {
        !self.ours() || self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Wait for the thread (a panic it ended with was accounted for by its own guards).
    pub fn join(mut self) {
        if let Some(handle) = self.handle.take() {
            if self.ours() {
                let _ = handle.join();
            } else {
                std::mem::forget(handle);
            }
        }
    }
}

impl Drop for ThreadHandle {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && !self.ours()
        {
            std::mem::forget(handle); // dropping would pthread_detach a thread of this child
        }
    }
}
