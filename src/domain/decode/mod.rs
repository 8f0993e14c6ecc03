//! Decoding input records (JSON or protobuf) into validated [`Event`]s, or a dead-letter
//! reason ([`DecodeError`]); and encoding events back (for the generator and tests).
//!
//! Both encodings go through one intermediate form and one set of rules:
//!
//! ```text
//! JSON text ──json.rs──┐
//!                      ├─► RawEvent (raw.rs) ──validate.rs (+ read.rs)──► Event | DecodeError
//! protobuf ──proto.rs──┘
//! ```
//!
//! The rules (SPEC §2, §7, §9) are listed in `validate.rs`'s module docs; the protobuf
//! schemas are in `proto/shopscore/v1/`. Decoding never panics, whatever the bytes.

mod emit;
mod error;
mod json;
mod proto;
mod raw;
mod read;
mod to_json;
mod validate;

pub use error::{DecodeError, FieldContext};
pub use proto::pb;

use crate::domain::event::{Event, Stream};
use crate::domain::time::HOUR_MS;

/// Decoding settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// `ship_deadline` of an `order.paid` that has none: `event_time` + this (SPEC §2).
    pub default_ship_window_ms: i64,
}

impl Default for DecodeOptions {
    /// A 48 h default ship window.
    fn default() -> Self {
        DecodeOptions { default_ship_window_ms: 48 * HOUR_MS }
    }
}

/// Decodes one JSON record (one object, surrounding whitespace allowed).
///
/// `expected`: the stream whose topic the record came from, if any; an event whose type
/// belongs to another stream is then rejected as `wrong_topic`. `None` (file mode) accepts
/// every type.
pub fn decode_json(
    bytes: &[u8],
    expected: Option<Stream>,
    opts: &DecodeOptions,
) -> Result<Event, DecodeError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    let raw = json::parse(text)?;
    validate::validate(raw, expected, opts)
}

/// Decodes one protobuf record as the message of `stream`'s topic (`OrderEvent`,
/// `LogisticsEvent`, `RefundEvent` or `ServiceEvent`).
pub fn decode_proto(stream: Stream, bytes: &[u8], opts: &DecodeOptions) -> Result<Event, DecodeError> {
    validate::validate(proto::decode_raw(stream, bytes)?, Some(stream), opts)
}

/// Encodes an event as one line of JSON (no trailing newline); times are RFC 3339 in
/// +08:00. Defaulted fields are left out, so `decode_json(encode_json(e)) == e`.
pub fn encode_json(ev: &Event) -> String {
    to_json::encode(ev)
}

/// Encodes an event as the protobuf message of its stream (`ev.event_type().stream()`);
/// `decode_proto(stream, encode_proto(e)) == e`.
pub fn encode_proto(ev: &Event) -> Vec<u8> {
    proto::encode(ev)
}
