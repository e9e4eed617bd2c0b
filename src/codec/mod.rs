//! The codec: Python objects of one interpreter <-> [`Value`]s (Rust data) <-> Python objects
//! of another. Nothing else crosses between interpreters.
//!
//! `format.rs` defines the bytes, `encode.rs` and `decode.rs` walk object graphs without
//! recursion. Both sides work in the interpreter whose module [`State`] they are given (its
//! hooks pickle what has no native form; its caches resolve functions by name).
pub mod constant;
mod decode;
mod encode;
pub mod format;
mod layout;
#[cfg(test)]
mod tests;

use interpool_core::Value;

pub use decode::Decoder;
pub use encode::Encoder;

use crate::py::{Borrowed, Owned, PyResult, Python};
use crate::state::{ModuleRef, State};

/// A value holding the string `s`, made without an interpreter (messages of the engine).
pub fn text(s: &str) -> Value {
    let mut out = format::Writer::default();
    let chars: Vec<char> = s.chars().collect();
    let wide = chars.iter().any(|&c| u32::from(c) > 0xff);
    // Growth failures here can only be for tiny messages: leave the value empty then.
    let _ = if wide {
        out.head(format::STR4, chars.len() as u64)
            .and_then(|()| out.raw(&chars.iter().flat_map(|&c| u32::from(c).to_ne_bytes()).collect::<Vec<u8>>()))
    } else {
        out.head(format::STR1, chars.len() as u64)
            .and_then(|()| out.raw(&chars.iter().map(|&c| c as u8).collect::<Vec<u8>>()))
    };
    Value { bytes: out.buf, handles: Vec::new() }
}

/// Encode one object.
pub fn encode<'py>(py: Python<'py>, state: &State, obj: Borrowed<'_, 'py>) -> PyResult<Value> {
    let mut encoder = Encoder::new(py, state);
    encoder.push(obj)?;
    Ok(encoder.finish())
}

/// Encode a task's reply in a worker, lending its large `bytes` (see `encode.rs`).
pub fn encode_reply<'py>(py: Python<'py>, state: &State, obj: Borrowed<'_, 'py>) -> PyResult<Value> {
    let mut encoder = Encoder::new(py, state).lending();
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
