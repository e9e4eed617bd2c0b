//! The codec: Python objects of one interpreter <-> [`Value`]s (Rust data) <-> Python objects
//! of another. Nothing else crosses between interpreters.
//!
//! `format.rs` defines the bytes, `encode.rs` and `decode.rs` walk object graphs without
//! recursion. Both sides work in the interpreter whose module [`State`] they are given (its
//! hooks pickle what has no native form; its caches resolve functions by name).
mod decode;
mod encode;
pub mod format;

use interpool_core::Value;

pub use decode::Decoder;
pub use encode::Encoder;

use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::{ModuleRef, State};

/// Encode one object.
pub fn encode<'py>(py: Python<'py>, state: &State, obj: Borrowed<'_, 'py>) -> PyResult<Value> {
    let mut encoder = Encoder::new(py, state);
    encoder.push(obj)?;
    Ok(encoder.finish())
}

/// Decode a value holding one object.
pub fn decode<'py>(py: Python<'py>, state: &State, value: &Value) -> PyResult<Owned<'py>> {
    Decoder::new(py, state, value).single()
}

/// `roundtrip(obj) -> object`: encode then decode in this interpreter (tests, benchmarks).
pub fn roundtrip<'py>(py: Python<'py>, module: ModuleRef<'py>, obj: Borrowed<'py, 'py>) -> PyResult<Owned<'py>> {
    let state = module.state();
    let value = encode(py, state, obj)?;
    decode(py, state, &value)
}
