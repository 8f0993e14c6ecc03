//! Reading one typed value out of a [`RawEvent`] slot: the per-value rules of SPEC §9
//! (strings non-empty, integers exact i64, amounts ≥ 0, scores 1–5, times RFC 3339 or
//! epoch ms in range, case-sensitive enums, bools), each failing with its dead-letter
//! reason. `validate.rs` decides which fields an event type needs; this file decides
//! whether one value is acceptable.

use super::error::{DecodeError, FieldContext};
use super::raw::{Field, RawEvent, RawValue};
use crate::domain::event::*;
use crate::domain::time::{TimeError, Timestamp};

/// `missing_field` for `f`.
pub(super) fn missing(f: Field, context: FieldContext) -> DecodeError {
    DecodeError::MissingField { field: f.name(), context }
}

/// `ill_typed` for `f`, describing the value found.
pub(super) fn ill_typed(f: Field, expected: &'static str, found: &RawValue<'_>) -> DecodeError {
    DecodeError::IllTyped { field: f.name().to_string(), expected, found: found.describe() }
}

/// A required non-empty string, moved out of the record.
pub(super) fn req_str(raw: &mut RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<String, DecodeError> {
    match raw.take(f) {
        RawValue::Null => Err(missing(f, ctx)),
        RawValue::Str(s) if s.is_empty() => Err(DecodeError::EmptyField { field: f.name() }),
        RawValue::Str(s) => Ok(s.into_owned()),
        other => Err(ill_typed(f, "a string", &other)),
    }
}

const INTEGER: &str = "a JSON integer fitting in 64 bits";

pub(super) fn req_int(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<i64, DecodeError> {
    match raw.get(f) {
        RawValue::Null => Err(missing(f, ctx)),
        RawValue::Int(i) => Ok(*i),
        other => Err(ill_typed(f, INTEGER, other)),
    }
}

pub(super) fn amount(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<i64, DecodeError> {
    let value = req_int(raw, f, ctx)?;
    if value < 0 {
        return Err(DecodeError::NegativeAmount { field: f.name(), value });
    }
    Ok(value)
}

pub(super) fn score(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<u8, DecodeError> {
    let value = req_int(raw, f, ctx)?;
    match u8::try_from(value) {
        Ok(s @ 1..=5) => Ok(s),
        _ => Err(DecodeError::ScoreOutOfRange { field: f.name(), value }),
    }
}

pub(super) fn req_bool(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<bool, DecodeError> {
    match raw.get(f) {
        RawValue::Null => Err(missing(f, ctx)),
        RawValue::Bool(b) => Ok(*b),
        other => Err(ill_typed(f, "a JSON bool", other)),
    }
}

const TIME: &str = "an RFC 3339 time (with `T` and an offset or `Z`) or integer epoch milliseconds";

pub(super) fn opt_time(raw: &RawEvent<'_>, f: Field) -> Result<Option<Timestamp>, DecodeError> {
    let value = raw.get(f);
    let (parsed, shown) = match value {
        RawValue::Null => return Ok(None),
        RawValue::Str(s) => (Timestamp::parse_rfc3339(s), s.to_string()),
        RawValue::Int(ms) => (Timestamp::from_epoch_ms(*ms), format!("{ms} (epoch ms)")),
        other => return Err(ill_typed(f, TIME, other)),
    };
    match parsed {
        Ok(t) => Ok(Some(t)),
        Err(TimeError::Syntax) => Err(ill_typed(f, TIME, value)),
        Err(TimeError::OutOfRange) => Err(DecodeError::TimeOutOfRange { field: f.name(), value: shown }),
    }
}

pub(super) fn req_time(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<Timestamp, DecodeError> {
    opt_time(raw, f)?.ok_or_else(|| missing(f, ctx))
}

/// SPEC §9: a `ship_deadline` or `promised_delivery_by` before the payment is impossible.
pub(super) fn not_before(f: Field, t: Timestamp, paid: Timestamp) -> Result<Timestamp, DecodeError> {
    if t < paid {
        return Err(DecodeError::TimeBeforePayment {
            field: f.name(),
            value: t.to_rfc3339(),
            paid: paid.to_rfc3339(),
        });
    }
    Ok(t)
}

/// The wire enums, seen uniformly for validation.
pub(super) trait Wire: Copy + 'static {
    fn parse_wire(s: &str) -> Option<Self>;
    fn names() -> String;
}

macro_rules! impl_wire {
    ($($t:ty),+) => {$(
        impl Wire for $t {
            fn parse_wire(s: &str) -> Option<Self> {
                <$t>::parse(s)
            }
            fn names() -> String {
                <$t>::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    )+};
}

impl_wire!(
    Fulfillment,
    DeliveryPromise,
    LogisticsStatus,
    RefundKind,
    RefundReason,
    RefundStageName,
    Liable,
    ClosedBy,
    MaliciousLabel,
    Handler,
    Phase,
    SatisfactionLevel,
    ServiceFlag
);

pub(super) fn parse_enum<T: Wire>(f: Field, s: &str) -> Result<T, DecodeError> {
    T::parse_wire(s).ok_or_else(|| DecodeError::UnknownEnumValue {
        field: f.name(),
        value: s.to_string(),
        expected: T::names(),
    })
}

pub(super) fn opt_enum<T: Wire>(raw: &RawEvent<'_>, f: Field) -> Result<Option<T>, DecodeError> {
    match raw.get(f) {
        RawValue::Null => Ok(None),
        RawValue::Str(s) => parse_enum(f, s).map(Some),
        other => Err(ill_typed(f, "a string", other)),
    }
}

pub(super) fn req_enum<T: Wire>(raw: &RawEvent<'_>, f: Field, ctx: FieldContext) -> Result<T, DecodeError> {
    opt_enum(raw, f)?.ok_or_else(|| missing(f, ctx))
}

pub(super) fn flags(raw: &RawEvent<'_>) -> Result<Vec<ServiceFlag>, DecodeError> {
    match raw.get(Field::Flags) {
        RawValue::Null => Ok(Vec::new()),
        RawValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                RawValue::Str(s) => parse_enum(Field::Flags, s),
                other => Err(DecodeError::IllTyped {
                    field: format!("flags[{i}]"),
                    expected: "a string",
                    found: other.describe(),
                }),
            })
            .collect(),
        other => Err(ill_typed(Field::Flags, "an array of strings", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_forms() {
        let mut r = RawEvent::default();
        r.set(Field::EventTime, RawValue::Str("2024-05-31T10:00:00Z".into()));
        assert_eq!(opt_time(&r, Field::EventTime), Ok(Some(Timestamp(1_717_149_600_000))));
        r.set(Field::EventTime, RawValue::Int(1_717_149_600_000));
        assert_eq!(opt_time(&r, Field::EventTime), Ok(Some(Timestamp(1_717_149_600_000))));
        r.set(Field::EventTime, RawValue::BigNumber(u64::MAX));
        assert_eq!(opt_time(&r, Field::EventTime).unwrap_err().code(), "ill_typed");
        r.set(Field::EventTime, RawValue::Int(i64::MIN));
        let e = opt_time(&r, Field::EventTime).unwrap_err();
        assert_eq!(e.code(), "impossible_time");
        assert!(e.to_string().contains("-9223372036854775808 (epoch ms)"), "{e}");
    }

    #[test]
    fn enums_are_case_sensitive_and_list_their_values() {
        let mut r = RawEvent::default();
        r.set(Field::Liable, RawValue::Str("merchant".into()));
        let e = req_enum::<Liable>(&r, Field::Liable, FieldContext::Common).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown value \"merchant\" for `liable` (expected one of MERCHANT, BUYER)"
        );
        r.set(Field::Liable, RawValue::Str("BUYER".into()));
        assert_eq!(req_enum(&r, Field::Liable, FieldContext::Common), Ok(Liable::Buyer));
    }

    #[test]
    fn strings_must_be_non_empty() {
        let mut r = RawEvent::default();
        r.set(Field::OrderId, RawValue::Str("".into()));
        let e = req_str(&mut r, Field::OrderId, FieldContext::Common).unwrap_err();
        assert_eq!(e, DecodeError::EmptyField { field: "order_id" });
        r.set(Field::OrderId, RawValue::Str(" o ".into()));
        assert_eq!(req_str(&mut r, Field::OrderId, FieldContext::Common), Ok(" o ".to_string()));
    }
}
