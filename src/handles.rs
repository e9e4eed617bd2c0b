//! The Python objects that stand for the Rust handles a [`Value`](interpool_core::Value)
//! carries: a `Queue` ([`Handle::Queue`](interpool_core::Handle)) and a `SharedBuffer`
//! ([`Handle::Memory`](interpool_core::Handle)). They sit below the codec, which makes them
//! from handles and handles from them; the classes' constructors and methods are in
//! `queue.rs` and `buffer.rs`, above it.
use std::sync::Arc;

use interpool_core::{SharedMemory, SharedQueue};
use pyo3_ffi as ffi;

use crate::object::{PyClass, new_object};
use crate::pin::Pin;
use crate::py::{Owned, PyResult, Python};
use crate::state::State;

/// An `interpool.Queue` object: one interpreter's view of a shared queue.
pub struct QueueObject {
    queue: SharedQueue,
}

impl PyClass for QueueObject {
    fn type_object(state: &State) -> *mut ffi::PyTypeObject {
        state.queue_type()
    }
}

impl QueueObject {
    pub fn new(queue: SharedQueue) -> Self {
        QueueObject { queue }
    }

    pub fn queue(&self) -> &SharedQueue {
        &self.queue
    }

    /// Another handle on the same queue (what a `Value` carries).
    pub fn shared(&self) -> SharedQueue {
        self.queue.clone()
    }
}

/// A Python object of this interpreter for `queue`.
pub fn wrap_queue<'py>(py: Python<'py>, state: &State, queue: SharedQueue) -> PyResult<Owned<'py>> {
    new_object(py, state, QueueObject::new(queue))
}

/// A reference to shared memory: every `SharedBuffer` object for it, in any interpreter, and
/// every value in transit holds one.
pub type Lease = Arc<dyn SharedMemory>;

/// An `interpool.SharedBuffer` object: one interpreter's view of shared memory.
pub struct BufferObject {
    lease: Lease,
    /// Whether the memory belongs to a Python object (pinned) rather than to interpool.
    zero_copy: bool,
}

impl PyClass for BufferObject {
    fn type_object(state: &State) -> *mut ffi::PyTypeObject {
        state.buffer_type()
    }
}

impl BufferObject {
    pub fn new(lease: Lease, zero_copy: bool) -> Self {
        BufferObject { lease, zero_copy }
    }

    /// The memory.
    pub fn memory(&self) -> &dyn SharedMemory {
        &*self.lease
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Another lease on the same memory (what a `Value` carries).
    pub fn lease(&self) -> Lease {
        Arc::clone(&self.lease)
    }
}

/// A Python object of this interpreter for `lease`.
pub fn wrap_buffer<'py>(py: Python<'py>, state: &State, lease: Lease) -> PyResult<Owned<'py>> {
    new_object(py, state, BufferObject::new(lease, false))
}

/// Memory seen read-only, whatever its owner allows: what a worker gets of the buffers the
/// main interpreter lends with a pickle (numpy arrays arrive read-only, as with joblib's
/// memory mapping).
struct ReadOnly(Lease);

impl SharedMemory for ReadOnly {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn readonly(&self) -> bool {
        true
    }
}

/// A read-only `SharedBuffer` of this interpreter for `lease`.
pub fn wrap_read_only<'py>(py: Python<'py>, state: &State, lease: Lease) -> PyResult<Owned<'py>> {
    new_object(py, state, BufferObject::new(Arc::new(ReadOnly(lease)), true))
}

/// A pinned Python buffer, lent by its interpreter (see `pin.rs`).
struct Pinned(Pin);

impl SharedMemory for Pinned {
    fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn readonly(&self) -> bool {
        self.0.readonly()
    }
}

/// A lease on a Python object's memory, read in place by other interpreters: a zero-copy
/// `SharedBuffer` of the main interpreter, or large `bytes` the codec lends instead of
/// copying them into the value.
pub fn lend(pin: Pin) -> Lease {
    Arc::new(Pinned(pin))
}
