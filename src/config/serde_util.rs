//! Deserialization helpers for configuration values that arrive from TOML or from environment
//! variables (where `SHOPSCORE__COMPENSATION__RULE_VERSION=2024` is parsed as a number and
//! `…=true` as a bool, so string fields accept scalars).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A string field that also accepts a number or a bool and keeps its text.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(ScalarText("a string"))
}

struct ScalarText(&'static str);

impl Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A number, or a bool read as 0 (false) / 1 (true): alert thresholds.
pub(crate) fn number_or_bool<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number, or true/false for campaign_eligible")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<f64, E> {
            Ok(if v { 1.0 } else { 0.0 })
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
    }
    d.deserialize_any(V)
}

/// `[kafka.client]`, flattened to librdkafka's `a.b.c` keys with string values.
pub(crate) fn client_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    ClientMap::deserialize(d).map(|m| m.0)
}

/// A free-form librdkafka settings table. Nested tables join with `.`, and `_` becomes `.`
/// (librdkafka names have no underscores), so `security.protocol`, `security_protocol` and
/// `[kafka.client.security] protocol = …` all mean `security.protocol`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ClientMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ClientMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tree = ClientTree::deserialize(d)?;
        let mut out = BTreeMap::new();
        match tree {
            ClientTree::Table(t) => flatten("", t, &mut out),
            ClientTree::Leaf(_) => {
                return Err(de::Error::custom(
                    "expected a table of librdkafka settings, e.g. { \"security.protocol\" = \"SASL_SSL\" }",
                ))
            }
        }
        Ok(ClientMap(out))
    }
}

enum ClientTree {
    Leaf(String),
    Table(BTreeMap<String, ClientTree>),
}

fn flatten(prefix: &str, table: BTreeMap<String, ClientTree>, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = k.trim().to_ascii_lowercase().replace('_', ".");
        let key = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match v {
            ClientTree::Leaf(s) => {
                out.insert(key, s);
            }
            ClientTree::Table(t) => flatten(&key, t, out),
        }
    }
}

impl<'de> Deserialize<'de> for ClientTree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClientTree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a librdkafka setting (string, number or bool) or a table of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_owned()))
            }
            fn visit_char<E: de::Error>(self, v: char) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ClientTree, E> {
                Ok(ClientTree::Leaf(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientTree, A::Error> {
                let mut t = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, ClientTree>()? {
                    t.insert(k, v);
                }
                Ok(ClientTree::Table(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// An alert window: a whole number of days written `"30d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowDays(pub u32);

impl fmt::Display for WindowDays {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}d", self.0)
    }
}

impl Serialize for WindowDays {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = lenient_string(d)?;
        text.strip_suffix('d').and_then(|n| n.parse::<u32>().ok()).map(WindowDays).ok_or_else(|| {
            de::Error::invalid_value(de::Unexpected::Str(&text), &"a window in whole days like \"30d\"")
        })
    }
}
