//! Values that cross interpreters: plain Rust data, never a Python object.
//!
//! The extension converts Python objects to and from this tree natively; anything
//! without a native form travels as a pickle (`Pickled`). Queues and shared buffers
//! travel as shared handles, so both sides see the same queue or memory.
use std::sync::Arc;

use crate::queue::Queue;

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

pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An int outside `i64`, as Python's hex literal (`"-0x1f"`): exact, and not subject to
    /// the decimal digit limit of `int(str)`.
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
    /// The fallback: a pickle, loaded with the receiver's unpickler.
    Pickled(Vec<u8>),
    Queue(Arc<Queue<Value>>),
    Buffer(Arc<dyn SharedMemory>),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::None => write!(f, "None"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::BigInt(s) => write!(f, "{s}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "bytes[{}]", b.len()),
            Value::ByteArray(b) => write!(f, "bytearray[{}]", b.len()),
            Value::Tuple(v) => f.debug_tuple("").field(v).finish(),
            Value::List(v) => f.debug_list().entries(v).finish(),
            Value::Dict(kv) => f
                .debug_map()
                .entries(kv.iter().map(|(k, v)| (k, v)))
                .finish(),
            Value::Set(v) | Value::FrozenSet(v) => f.debug_set().entries(v).finish(),
            Value::Pickled(b) => write!(f, "pickled[{}]", b.len()),
            Value::Queue(_) => write!(f, "Queue"),
            Value::Buffer(m) => write!(f, "Buffer[{}]", m.len()),
        }
    }
}
