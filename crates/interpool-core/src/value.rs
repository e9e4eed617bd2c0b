//! Values that cross interpreters: plain Rust data, never a Python object.
//!
//! A [`Value`] is one flat message: the bytes the extension's codec wrote (its format is
//! the codec's business, see the extension's `codec/format.rs`) plus the *handles* those
//! bytes refer to by index: queues and shared memory, which cross as shared references so
//! that both sides see the same queue or bytes.
use std::sync::Arc;

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
