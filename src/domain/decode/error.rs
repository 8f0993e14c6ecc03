//! Why an input record could not be decoded: the dead-letter reasons of SPEC §7/§9.
//!
//! Each variant is one class of bad input. `Display` is the human-readable reason written
//! into the dead-letter record (it names the field and the offending value);
//! [`DecodeError::code`] is a short stable class name for metric labels.

use crate::domain::event::{EventType, RefundStageName, Stream};
use std::fmt;

/// Where a required field was required: for which event type (and refund stage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldContext {
    /// A field every event has (`type`, `event_id`, `shop_id`, `event_time`).
    Common,
    /// A field of this event type.
    Type(EventType),
    /// A field of this `refund.update` stage.
    Stage(RefundStageName),
}

impl fmt::Display for FieldContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldContext::Common => Ok(()),
            FieldContext::Type(t) => write!(f, " for type {t}"),
            FieldContext::Stage(s) => write!(f, " for type refund.update stage {s}"),
        }
    }
}

/// A record that cannot be used, with the reason. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all, truncated, or trailing garbage after the object.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    MalformedJson { line: usize, column: usize, message: String },

    /// An object (at any depth) repeats a key.
    #[error("duplicate key `{key}`")]
    DuplicateKey { key: String },

    /// The bytes are not UTF-8 (JSON must be).
    #[error("input is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },

    /// Valid JSON, but not an object (`found`: "array", "string", ...).
    #[error("expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },

    /// Bytes that are not a valid protobuf message of the topic's schema.
    #[error("malformed protobuf: {message}")]
    MalformedProtobuf { message: String },

    /// `type` is a string but not one of the known event types.
    #[error("unknown event type {value:?}")]
    UnknownType { value: String },

    /// The event type belongs to another input topic than the one it was read from.
    #[error("event type {event_type} belongs on topic {belongs}, not {found_on}")]
    WrongTopic { event_type: EventType, belongs: Stream, found_on: Stream },

    /// A required field is absent or `null`.
    #[error("missing required field `{field}`{context}")]
    MissingField { field: &'static str, context: FieldContext },

    /// An identifier (`event_id`, `shop_id`, `order_id`, ...) is the empty string.
    #[error("field `{field}` must be a non-empty string, found \"\"")]
    EmptyField { field: &'static str },

    /// A field has the wrong JSON type (or, for a time, is neither an RFC 3339 string nor
    /// integer epoch milliseconds). `field` may carry an index, e.g. `flags[1]`.
    #[error("field `{field}` must be {expected}, found {found}")]
    IllTyped { field: String, expected: &'static str, found: String },

    /// An enumeration field carries a value outside its (case-sensitive) set.
    #[error("unknown value {value:?} for `{field}` (expected one of {expected})")]
    UnknownEnumValue { field: &'static str, value: String, expected: String },

    /// An amount below zero.
    #[error("`{field}` is negative ({value})")]
    NegativeAmount { field: &'static str, value: i64 },

    /// A DSR score outside 1–5.
    #[error("`{field}` must be 1–5, found {value}")]
    ScoreOutOfRange { field: &'static str, value: i64 },

    /// A time outside the valid range (`value` as given in the input).
    #[error("`{field}` {value} is outside [2000-01-01T00:00:00+08:00, 2100-01-01T00:00:00+08:00)")]
    TimeOutOfRange { field: &'static str, value: String },

    /// A `ship_deadline` or `promised_delivery_by` before the payment (`event_time`).
    #[error("`{field}` {value} is before the payment time {paid}")]
    TimeBeforePayment { field: &'static str, value: String, paid: String },
}

impl DecodeError {
    /// A short, stable snake_case name of the error class, for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::MalformedJson { .. } => "malformed_json",
            DecodeError::DuplicateKey { .. } => "duplicate_key",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::MalformedProtobuf { .. } => "malformed_protobuf",
            DecodeError::UnknownType { .. } => "unknown_type",
            DecodeError::WrongTopic { .. } => "wrong_topic",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::EmptyField { .. } => "empty_field",
            DecodeError::IllTyped { .. } => "ill_typed",
            DecodeError::UnknownEnumValue { .. } => "unknown_enum_value",
            DecodeError::NegativeAmount { .. } => "negative_amount",
            DecodeError::ScoreOutOfRange { .. } => "score_out_of_range",
            DecodeError::TimeOutOfRange { .. } | DecodeError::TimeBeforePayment { .. } => "impossible_time",
        }
    }

    /// Every value [`DecodeError::code`] can return, e.g. to pre-register metric labels.
    pub const CODES: &'static [&'static str] = &[
        "malformed_json",
        "duplicate_key",
        "not_utf8",
        "not_an_object",
        "malformed_protobuf",
        "unknown_type",
        "wrong_topic",
        "missing_field",
        "empty_field",
        "ill_typed",
        "unknown_enum_value",
        "negative_amount",
        "score_out_of_range",
        "impossible_time",
    ];

    /// Builds [`DecodeError::MalformedJson`] from a `serde_json` error, moving the
    /// position to the front of the message.
    pub(crate) fn from_json(e: &serde_json::Error) -> DecodeError {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        DecodeError::MalformedJson { line, column, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_value() {
        let e = DecodeError::MissingField {
            field: "order_id",
            context: FieldContext::Type(EventType::OrderPaid),
        };
        assert_eq!(e.to_string(), "missing required field `order_id` for type order.paid");
        assert_eq!(e.code(), "missing_field");
        let e = DecodeError::MissingField {
            field: "liable",
            context: FieldContext::Stage(RefundStageName::PlatformRuled),
        };
        assert_eq!(
            e.to_string(),
            "missing required field `liable` for type refund.update stage PLATFORM_RULED"
        );
        let e = DecodeError::ScoreOutOfRange { field: "description", value: 6 };
        assert_eq!(e.to_string(), "`description` must be 1–5, found 6");
        let e = DecodeError::WrongTopic {
            event_type: EventType::OrderPaid,
            belongs: Stream::Orders,
            found_on: Stream::Logistics,
        };
        assert_eq!(e.to_string(), "event type order.paid belongs on topic orders, not logistics");
        assert_eq!(e.code(), "wrong_topic");
    }

    #[test]
    fn json_error_keeps_position() {
        let err = serde_json::from_str::<serde_json::Value>("{\"a\":").unwrap_err();
        let e = DecodeError::from_json(&err);
        assert_eq!(e.code(), "malformed_json");
        assert_eq!(e.to_string(), "malformed JSON at line 1 column 5: EOF while parsing a value");
    }

    #[test]
    fn codes_are_listed() {
        let e = DecodeError::TimeBeforePayment { field: "x", value: "a".into(), paid: "b".into() };
        assert!(DecodeError::CODES.contains(&e.code()));
        assert_eq!(DecodeError::CODES.len(), 14);
    }
}
