//! The intermediate form between an encoding and validation: one slot per known field.
//!
//! Both decoders (JSON in `json.rs`, protobuf in `proto.rs`) fill a [`RawEvent`] with
//! untyped [`RawValue`]s, borrowing strings from the input where they can; `validate.rs`
//! then applies the rules of SPEC §2/§9 once for both encodings. Field lookup is a fixed
//! array indexed by [`Field`], so decoding a known key costs no allocation or hashing.

use std::borrow::Cow;

/// Declares the known field names as an enum indexing [`RawEvent`]'s slots.
macro_rules! fields {
    ($($variant:ident = $name:literal),+ $(,)?) => {
        /// A known input field name (the same in JSON and protobuf).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Field { $($variant),+ }

        impl Field {
            /// Every field, in slot order.
            pub(crate) const ALL: &'static [Field] = &[$(Field::$variant),+];

            /// The field's wire name.
            pub(crate) fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),+ }
            }

            /// The field with this exact (case-sensitive) name, if known.
            #[inline]
            pub(crate) fn from_key(key: &str) -> Option<Field> {
                match key { $($name => Some(Field::$variant),)+ _ => None }
            }
        }
    };
}

fields! {
    EventId = "event_id",
    Type = "type",
    ShopId = "shop_id",
    EventTime = "event_time",
    OrderId = "order_id",
    BuyerId = "buyer_id",
    AmountFen = "amount_fen",
    ShipDeadline = "ship_deadline",
    Fulfillment = "fulfillment",
    DeliveryPromise = "delivery_promise",
    PromisedDeliveryBy = "promised_delivery_by",
    Description = "description",
    Service = "service",
    Logistics = "logistics",
    TrackingNo = "tracking_no",
    Carrier = "carrier",
    Status = "status",
    RefundId = "refund_id",
    Stage = "stage",
    Kind = "kind",
    Reason = "reason",
    ReturnTrackingNo = "return_tracking_no",
    Liable = "liable",
    Refunded = "refunded",
    ClosedBy = "closed_by",
    Label = "label",
    AgentId = "agent_id",
    Handler = "handler",
    Phase = "phase",
    Level = "level",
    Flags = "flags",
}

/// Number of known fields (slots in a [`RawEvent`]).
pub(crate) const FIELD_COUNT: usize = Field::ALL.len();

/// An untyped input value. JSON `null` and an absent field are both [`RawValue::Null`].
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) enum RawValue<'a> {
    #[default]
    Null,
    Bool(bool),
    /// An integer literal that fits in i64.
    Int(i64),
    Str(Cow<'a, str>),
    /// A number with a fraction or exponent, or an integer too large even for u64.
    Float(f64),
    /// An integer literal above i64::MAX that still fits in u64.
    BigNumber(u64),
    Array(Vec<RawValue<'a>>),
    /// An object; its content is never needed, only checked for repeated keys.
    Object,
}

impl RawValue<'_> {
    /// Describes the value for an error message, e.g. `float 100.0`, `string "100"`.
    pub(crate) fn describe(&self) -> String {
        match self {
            RawValue::Null => "null".to_string(),
            RawValue::Bool(b) => format!("bool {b}"),
            RawValue::Int(i) => format!("integer {i}"),
            RawValue::Str(s) => format!("string {:?}", truncate(s)),
            RawValue::Float(f) => format!("float {f:?}"),
            RawValue::BigNumber(u) => format!("integer {u} (too large for 64-bit signed)"),
            RawValue::Array(_) => "an array".to_string(),
            RawValue::Object => "an object".to_string(),
        }
    }
}

/// Shortens long input strings quoted in error messages (on a char boundary).
fn truncate(s: &str) -> &str {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One input record as a slot per known field; unknown fields are not kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RawEvent<'a> {
    slots: [RawValue<'a>; FIELD_COUNT],
}

impl<'a> RawEvent<'a> {
    /// The value of a field (`Null` when absent).
    #[inline]
    pub(crate) fn get(&self, f: Field) -> &RawValue<'a> {
        &self.slots[f as usize]
    }

    /// Sets a field's value.
    #[inline]
    pub(crate) fn set(&mut self, f: Field, v: RawValue<'a>) {
        self.slots[f as usize] = v;
    }

    /// Takes a field's value out, leaving `Null` (lets validation move owned strings).
    #[inline]
    pub(crate) fn take(&mut self, f: Field) -> RawValue<'a> {
        std::mem::take(&mut self.slots[f as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip() {
        assert_eq!(FIELD_COUNT, 31);
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(Field::from_key(f.name()), Some(*f));
        }
        assert_eq!(Field::from_key("Order_id"), None);
        assert_eq!(Field::from_key("extra"), None);
    }

    #[test]
    fn slots_default_to_null() {
        let mut r = RawEvent::default();
        assert_eq!(r.get(Field::Flags), &RawValue::Null);
        r.set(Field::AmountFen, RawValue::Int(5));
        assert_eq!(r.get(Field::AmountFen), &RawValue::Int(5));
        assert_eq!(r.take(Field::AmountFen), RawValue::Int(5));
        assert_eq!(r.get(Field::AmountFen), &RawValue::Null);
    }

    #[test]
    fn describes_values() {
        assert_eq!(RawValue::Float(100.0).describe(), "float 100.0");
        assert_eq!(RawValue::Float(1e3).describe(), "float 1000.0");
        assert_eq!(RawValue::Str("100".into()).describe(), "string \"100\"");
        assert_eq!(RawValue::Bool(true).describe(), "bool true");
        let long = "é".repeat(100);
        assert_eq!(RawValue::Str(long.into()).describe().chars().count(), 40 + 9);
    }
}
