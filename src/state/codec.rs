//! Encoding of state values: compact `postcard` bytes of serde types.
//!
//! The state format version ([`FORMAT_VERSION`]) is stored in the data directory; a build
//! that reads another version refuses to start instead of misreading state.

use super::StateError;
use serde::{de::DeserializeOwned, Serialize};

/// Bumped whenever any stored value's layout changes. 2: facts name their topic or file
/// by number (`rules::origins`).
pub const FORMAT_VERSION: u32 = 2;

/// Encodes a state value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("state values always serialize")
}

/// Decodes a state value stored under `key` (the key only feeds the error message).
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StateError::Corrupt { key: super::keys::describe(key), why: e.to_string() })
}
