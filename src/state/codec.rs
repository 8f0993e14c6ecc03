//! Encoding of state values: compact `postcard` bytes of serde types.
//!
//! The state format version ([`FORMAT_VERSION`]) is stored in the data directory; a build
//! that reads another version refuses to start instead of misreading state.

use super::StateError;
use serde::{de::DeserializeOwned, Serialize};
use std::cell::RefCell;

/// Bumped whenever any stored value's layout changes. 2: facts name their topic or file
/// by number (`rules::origins`). 3: Kafka mode's changelog leaves out the derived keys
/// (timers, the day→shop index: `rules::derived`), which a restore rebuilds; a changelog of
/// format 2 holds them instead, and its stores may hold timers the derivation would not.
pub const FORMAT_VERSION: u32 = 3;

thread_local! {
    /// Where [`encode`] serializes, kept per thread with the capacity the largest value
    /// needed.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Encodes a state value.
///
/// Serialized into a reused buffer, then copied out at its exact size: postcard's own
/// `to_stdvec` grows a new vector from empty, byte run by byte run, and those reallocations
/// were ~7 % of all instructions of a file-mode run (an order's facts, ~270 bytes, took about
/// six of them on every write). The bytes are the same.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    SCRATCH.with(|scratch| {
        let mut buf = std::mem::take(&mut *scratch.borrow_mut());
        buf.clear();
        let buf = postcard::to_extend(value, buf).expect("state values always serialize");
        let out = buf.as_slice().to_vec();
        *scratch.borrow_mut() = buf;
        out
    })
}

/// Decodes a state value stored under `key` (the key only feeds the error message).
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StateError::Corrupt { key: super::keys::describe(key), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reused buffer changes nothing: every value encodes to postcard's own bytes, also
    /// after a larger value left the buffer longer, and decodes back.
    #[test]
    fn encode_gives_postcards_bytes_whatever_was_encoded_before() {
        let values: Vec<(String, Vec<u64>)> = vec![
            ("a".repeat(3000), (0..500).collect()),
            ("b".into(), vec![1, 2, 3]),
            (String::new(), Vec::new()),
            ("c".repeat(40), vec![u64::MAX; 7]),
        ];
        for v in &values {
            let bytes = encode(v);
            assert_eq!(bytes, postcard::to_stdvec(v).unwrap());
            assert_eq!(bytes.capacity(), bytes.len(), "copied out at its exact size");
            let back: (String, Vec<u64>) = decode(b"k", &bytes).unwrap();
            assert_eq!(&back, v);
        }
    }
}
