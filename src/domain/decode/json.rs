//! JSON text → [`RawEvent`], in one pass, with a hand-written serde visitor.
//!
//! Why not `serde_json::Value`: it silently keeps the last of two repeated keys (SPEC §9
//! says such an object is malformed), and it allocates a map and a `String` per field.
//! Here known keys are matched straight into [`RawEvent`] slots, strings are borrowed from
//! the input unless they contain escapes, and unknown fields are walked without being
//! stored—only their keys are checked for repeats, at every depth.

use super::error::DecodeError;
use super::raw::{Field, RawEvent, RawValue};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Parses one JSON text into a [`RawEvent`], or the reason it is not a usable object.
pub(crate) fn parse(text: &str) -> Result<RawEvent<'_>, DecodeError> {
    let mut dup: Option<String> = None;
    let mut raw = RawEvent::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let top = TopSeed { dup: &mut dup, raw: &mut raw }.deserialize(&mut de);
    let top = match top {
        Ok(top) => top,
        Err(e) => {
            return Err(match dup {
                Some(key) => DecodeError::DuplicateKey { key },
                None => DecodeError::from_json(&e),
            })
        }
    };
    de.end().map_err(|e| DecodeError::from_json(&e))?;
    match top {
        Top::Object => Ok(raw),
        Top::NotObject(found) => Err(DecodeError::NotAnObject { found }),
    }
}

/// The top-level value: the object we want (filled into the seed's `raw`), or what was
/// found instead.
enum Top {
    Object,
    NotObject(&'static str),
}

/// Records the first repeated key; the error returned alongside only stops the parser.
fn duplicate<E: de::Error>(slot: &mut Option<String>, key: &str) -> E {
    *slot = Some(key.to_string());
    E::custom("duplicate key")
}

/// Seed for the top-level value; an object's known fields go into `raw`.
struct TopSeed<'s, 'de> {
    dup: &'s mut Option<String>,
    raw: &'s mut RawEvent<'de>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = Top;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, 'de> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut seen: u32 = 0;
        let mut unknown = KeySet::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match Field::from_key(&key) {
                Some(field) => {
                    let bit = 1u32 << field as u32;
                    if seen & bit != 0 {
                        return Err(duplicate(self.dup, &key));
                    }
                    seen |= bit;
                    let value = map.next_value_seed(ValueSeed { dup: &mut *self.dup })?;
                    self.raw.set(field, value);
                }
                None => {
                    if !unknown.insert(key.clone()) {
                        return Err(duplicate(self.dup, &key));
                    }
                    map.next_value_seed(IgnoreSeed { dup: &mut *self.dup })?;
                }
            }
        }
        Ok(Top::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element_seed(IgnoreSeed { dup: &mut *self.dup })?.is_some() {}
        Ok(Top::NotObject("an array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(Top::NotObject("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(Top::NotObject("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(Top::NotObject("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(Top::NotObject("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(Top::NotObject("a string"))
    }
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::NotObject("null"))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

/// Visits a string into a `Cow`, borrowing when serde_json can.
struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The keys seen in one object: a short list scanned linearly (objects are small), turned
/// into a hash set only for unusually large objects so hostile input stays linear.
#[derive(Default)]
struct KeySet<'de> {
    small: Vec<Cow<'de, str>>,
    large: Option<HashSet<Cow<'de, str>>>,
}

impl<'de> KeySet<'de> {
    const SMALL_MAX: usize = 16;

    /// Adds a key; false if it was already there.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.large {
            return set.insert(key);
        }
        if self.small.contains(&key) {
            return false;
        }
        self.small.push(key);
        if self.small.len() > Self::SMALL_MAX {
            self.large = Some(self.small.drain(..).collect());
        }
        true
    }
}

/// The value of a known field.
struct ValueSeed<'s> {
    dup: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = RawValue<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawValue<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = RawValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawValue<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => RawValue::Int(i),
            Err(_) => RawValue::BigNumber(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E>(self) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { dup: &mut *self.dup })? {
            items.push(v);
        }
        Ok(RawValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue<'de>, A::Error> {
        check_map(self.dup, map)?;
        Ok(RawValue::Object)
    }
}

/// Walks an object without keeping it, failing on a repeated key (at any depth).
fn check_map<'de, A: MapAccess<'de>>(dup: &mut Option<String>, mut map: A) -> Result<(), A::Error> {
    let mut keys = KeySet::default();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        if !keys.insert(key.clone()) {
            return Err(duplicate(dup, &key));
        }
        map.next_value_seed(IgnoreSeed { dup: &mut *dup })?;
    }
    Ok(())
}

/// A value that is not kept (unknown field): only its objects' keys are checked.
struct IgnoreSeed<'s> {
    dup: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for IgnoreSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IgnoreSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(IgnoreSeed { dup: &mut *self.dup })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        check_map(self.dup, map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> RawEvent<'_> {
        parse(s).unwrap()
    }
    fn err(s: &str) -> DecodeError {
        parse(s).unwrap_err()
    }

    #[test]
    fn fills_known_slots_and_borrows() {
        let r = ok(r#"{"type":"order.paid","amount_fen":100,"x":{"y":[1,2]},"flags":["ROBOT"]}"#);
        assert!(matches!(r.get(Field::Type), RawValue::Str(Cow::Borrowed("order.paid"))));
        assert_eq!(r.get(Field::AmountFen), &RawValue::Int(100));
        assert_eq!(r.get(Field::Flags), &RawValue::Array(vec![RawValue::Str("ROBOT".into())]));
        assert_eq!(r.get(Field::OrderId), &RawValue::Null);
    }

    #[test]
    fn numbers_keep_their_json_kind() {
        let r = ok(r#"{"amount_fen":100.0,"description":1e3,"service":9223372036854775808,
                     "logistics":-5,"shop_id":"a\"b","event_time":null}"#);
        assert_eq!(r.get(Field::AmountFen), &RawValue::Float(100.0));
        assert_eq!(r.get(Field::Description), &RawValue::Float(1000.0));
        assert_eq!(r.get(Field::Service), &RawValue::BigNumber(9_223_372_036_854_775_808));
        assert_eq!(r.get(Field::Logistics), &RawValue::Int(-5));
        assert_eq!(r.get(Field::ShopId), &RawValue::Str("a\"b".into()));
        assert_eq!(r.get(Field::EventTime), &RawValue::Null);
        // serde_json reads `-0` as a float, so it is ill-typed like `-0.0` (documented).
        let r = ok(r#"{"amount_fen":-0,"service":1E3,"logistics":-9223372036854775808}"#);
        assert_eq!(r.get(Field::AmountFen), &RawValue::Float(-0.0));
        assert_eq!(r.get(Field::Service), &RawValue::Float(1000.0));
        assert_eq!(r.get(Field::Logistics), &RawValue::Int(i64::MIN));
    }

    #[test]
    fn escaped_key_matches_known_field() {
        let r = ok(r#"{"order\u005fid":"o1"}"#);
        assert_eq!(r.get(Field::OrderId), &RawValue::Str("o1".into()));
    }

    #[test]
    fn repeated_keys_at_any_depth() {
        for (s, key) in [
            (r#"{"order_id":"a","order_id":"b"}"#, "order_id"),
            (r#"{"order_id":null,"order\u005fid":"b"}"#, "order_id"),
            (r#"{"x":1,"x":2}"#, "x"),
            (r#"{"x":{"a":1,"b":{"c":1,"c":2}}}"#, "c"),
            (r#"{"x":[{"k":1},{"k":1,"k":2}]}"#, "k"),
            (r#"{"flags":[{"f":1,"f":1}]}"#, "f"),
            (r#"[{"a":1,"a":2}]"#, "a"),
        ] {
            assert_eq!(err(s), DecodeError::DuplicateKey { key: key.into() }, "{s}");
        }
        // Same key in sibling objects is fine.
        ok(r#"{"x":[{"k":1},{"k":1}],"y":{"k":{"k":1}}}"#);
    }

    #[test]
    fn large_objects_detect_repeats() {
        let mut s = String::from("{\"x\":{");
        for i in 0..40 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        s.push_str("\"k7\":0}}");
        assert_eq!(err(&s), DecodeError::DuplicateKey { key: "k7".into() });
    }

    #[test]
    fn non_objects_and_malformed() {
        assert_eq!(err("[1,2]"), DecodeError::NotAnObject { found: "an array" });
        assert_eq!(err("\"s\""), DecodeError::NotAnObject { found: "a string" });
        assert_eq!(err("null"), DecodeError::NotAnObject { found: "null" });
        assert_eq!(err(" 12 "), DecodeError::NotAnObject { found: "a number" });
        for s in ["", "{", "{\"a\":1", "{\"a\":1} x", "{a:1}", "[1,2", "{\"a\":1,}"] {
            assert_eq!(err(s).code(), "malformed_json", "{s:?}");
        }
        let deep = "[".repeat(10_000);
        assert_eq!(err(&deep).code(), "malformed_json");
        let deep_obj = format!("{{\"x\":{}", "[".repeat(10_000));
        assert_eq!(err(&deep_obj).code(), "malformed_json");
    }
}
