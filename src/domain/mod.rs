//! Input events: their Rust types, times, and decoding from JSON/protobuf with dead-letter
//! reasons. Nothing here knows about Kafka, files or state.

pub mod decode;
pub mod event;
pub mod time;

pub use event::*;
pub use time::{Day, Timestamp};
