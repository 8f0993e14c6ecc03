//! The output records of SPEC §6/§8 and their JSON-lines form.
//!
//! Rules produce [`Output`]s; sinks only serialize and move them. The JSON field order
//! follows SPEC §8 so files are stable and diffable.

use crate::domain::Timestamp;
use crate::rules::metrics::{rate, WindowCounts};
use base64::Engine as _;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

/// Which output stream a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKind {
    Snapshot,
    Compensation,
    Alert,
    DeadLetter,
}

impl OutputKind {
    pub const ALL: [OutputKind; 4] = [
        OutputKind::Snapshot,
        OutputKind::Compensation,
        OutputKind::Alert,
        OutputKind::DeadLetter,
    ];

    /// File name in file mode (SPEC §8).
    pub fn file_name(self) -> &'static str {
        match self {
            OutputKind::Snapshot => "snapshots.jsonl",
            OutputKind::Compensation => "compensations.jsonl",
            OutputKind::Alert => "alerts.jsonl",
            OutputKind::DeadLetter => "dead_letters.jsonl",
        }
    }
}

/// One output record.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Snapshot(Snapshot),
    DeadLetter(DeadLetter),
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Snapshot(_) => OutputKind::Snapshot,
            Output::DeadLetter(_) => OutputKind::DeadLetter,
        }
    }

    /// The record as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let r = match self {
            Output::Snapshot(s) => serde_json::to_string(s),
            Output::DeadLetter(d) => serde_json::to_string(d),
        };
        r.expect("output records always serialize")
    }
}

/// A per-shop metric snapshot (SPEC §8). Carries counts; rates are derived on output.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub shop_id: String,
    pub as_of: Timestamp,
    pub version: u64,
    /// `(days, counts)` in configured window order.
    pub windows: Vec<(u32, WindowCounts)>,
}

struct WindowJson<'a>(&'a WindowCounts);

impl Serialize for WindowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_struct("Window", 3)?;
        m.serialize_field("paid_orders", &c.paid_orders)?;
        m.serialize_field("refunds_requested", &c.refunds_requested)?;
        m.serialize_field("refund_rate", &rate(c.refunds_requested, c.paid_orders))?;
        m.end()
    }
}

struct WindowsJson<'a>(&'a [(u32, WindowCounts)]);

impl Serialize for WindowsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (days, counts) in self.0 {
            m.serialize_entry(&format!("{days}d"), &WindowJson(counts))?;
        }
        m.end()
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Snapshot", 4)?;
        m.serialize_field("shop_id", &self.shop_id)?;
        m.serialize_field("as_of", &self.as_of.to_rfc3339())?;
        m.serialize_field("version", &self.version)?;
        m.serialize_field("windows", &WindowsJson(&self.windows))?;
        m.end()
    }
}

/// Where an input record came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SourcePos {
    File {
        file: String,
        line: u64,
    },
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// An input record that could not be used, with the reason (SPEC §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: String,
    /// Stable class of the reason (e.g. `missing_field`), for metrics and filtering.
    pub reason_code: &'static str,
    pub source: SourcePos,
    /// The record exactly as read.
    pub raw: Vec<u8>,
}

impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("DeadLetter", 4)?;
        m.serialize_field("reason", &self.reason)?;
        m.serialize_field("reason_code", self.reason_code)?;
        m.serialize_field("source", &self.source)?;
        match std::str::from_utf8(&self.raw) {
            Ok(text) => m.serialize_field("raw", text)?,
            Err(_) => m.serialize_field(
                "raw_base64",
                &base64::engine::general_purpose::STANDARD.encode(&self.raw),
            )?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_json_has_spec_order_and_null_rates() {
        let s = Snapshot {
            shop_id: "s1".into(),
            as_of: Timestamp::parse_rfc3339("2024-05-31T18:00:00+08:00").unwrap(),
            version: 42,
            windows: vec![
                (
                    1,
                    WindowCounts {
                        paid_orders: 0,
                        refunds_requested: 0,
                    },
                ),
                (
                    30,
                    WindowCounts {
                        paid_orders: 120,
                        refunds_requested: 9,
                    },
                ),
            ],
        };
        assert_eq!(
            Output::Snapshot(s).to_json(),
            r#"{"shop_id":"s1","as_of":"2024-05-31T18:00:00+08:00","version":42,"windows":{"1d":{"paid_orders":0,"refunds_requested":0,"refund_rate":null},"30d":{"paid_orders":120,"refunds_requested":9,"refund_rate":0.075}}}"#
        );
    }

    #[test]
    fn dead_letter_keeps_raw_or_base64() {
        let d = DeadLetter {
            reason: "bad".into(),
            reason_code: "malformed_json",
            source: SourcePos::File {
                file: "in.jsonl".into(),
                line: 3,
            },
            raw: b"{\"a\":".to_vec(),
        };
        assert_eq!(
            Output::DeadLetter(d.clone()).to_json(),
            r#"{"reason":"bad","reason_code":"malformed_json","source":{"file":"in.jsonl","line":3},"raw":"{\"a\":"}"#
        );
        let bin = DeadLetter {
            raw: vec![0xff, 0x00],
            ..d
        };
        assert!(Output::DeadLetter(bin)
            .to_json()
            .ends_with(r#""raw_base64":"/wA="}"#));
    }
}
