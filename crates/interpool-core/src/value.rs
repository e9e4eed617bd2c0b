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

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes, {} handles)", self.bytes.len(), self.handles.len())
    }
}
