//! Values that cross interpreters: plain Rust data, never a Python object.
//!
//! A [`Value`] is one flat message: the bytes the extension's codec wrote (its format is
//! the codec's business, see the extension's `codec/format.rs`) plus the *handles* those
//! bytes refer to by index: queues and shared memory, which cross as shared references so
//! that both sides see the same queue or bytes, and [`Constant`]s, which each receiving
//! interpreter decodes once and caches.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::shared::SharedQueue;

/// Memory shared between interpreters without copying (see the extension's `buffer.rs`).
pub trait SharedMemory: Send + Sync {
    /// Start of the memory; valid for `len()` bytes for as long as this object lives.
    fn as_ptr(&self) -> *mut u8;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn readonly(&self) -> bool;
}

/// Something a [`Value`] refers to instead of containing it.
#[derive(Clone)]
pub enum Handle {
    Queue(SharedQueue),
    Memory(Arc<dyn SharedMemory>),
    Constant(Arc<Constant>),
}

/// A value encoded once and shared read-only by every task that refers to it
/// (`interpool.Constant`): a receiving interpreter decodes it the first time it sees it and
/// keeps the object, keyed by [`Constant::id`], while the constant lives.
///
/// Its value never carries queues (the constructor refuses them), so constants stay out of the
/// queue graph that `shared.rs` collects.
pub struct Constant {
    id: u64,
    value: Value,
}

impl Constant {
    pub fn new(value: Value) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Constant { id: NEXT.fetch_add(1, Ordering::Relaxed), value }
    }

    /// Unique within the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// One encoded value (or several, written one after another).
#[derive(Default)]
pub struct Value {
    pub bytes: Vec<u8>,
    pub handles: Vec<Handle>,
}

impl Drop for Value {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.bytes));
    }
}

/// Large byte buffers kept for reuse by the next large value.
///
/// A value of a few MiB is written in one thread and dropped in another, right after the
/// other side rebuilt its object: with fresh allocations every time, glibc trims the heap and
/// grows it again on the next value (a `brk` and a page fault per 4 KiB, each way), which cost
/// more than the copy itself. A couple of kept buffers make that memory stay mapped and warm.
pub mod spare {
    use std::sync::{Mutex, PoisonError};

    /// Buffers this large and up to [`MAX`] are kept, at most [`KEEP`] of them.
    pub const MIN: usize = 256 * 1024;
    pub const MAX: usize = 16 * 1024 * 1024;
    const KEEP: usize = 2;

    static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// Keep `buf` for reuse if it is worth it.
    pub fn give(mut buf: Vec<u8>) {
        if !(MIN..=MAX).contains(&buf.capacity()) {
            return;
        }
        let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < KEEP {
            buf.clear();
            spare.push(buf);
        }
    }

    /// A kept buffer with room for `capacity` bytes, if there is one.
    pub fn take(capacity: usize) -> Option<Vec<u8>> {
        if !(MIN..=MAX).contains(&capacity) {
            return None;
        }
        let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        let at = spare.iter().position(|b| b.capacity() >= capacity)?;
        Some(spare.swap_remove(at))
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes, {} handles)", self.bytes.len(), self.handles.len())
    }
}
