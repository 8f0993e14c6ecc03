//! The output records of SPEC §6/§8 and their JSON-lines form; their protobuf form (Kafka
//! topics configured so) is in [`proto`].
//!
//! Rules produce [`Output`]s; sinks only serialize and move them. The JSON field order
//! follows SPEC §8 so files are stable and diffable.

pub mod proto;

use crate::domain::decode::DecodeError;
use crate::domain::Timestamp;
use crate::rules::metrics::{rate, WindowCounts, SERVICE_SLOT_NAMES};
use crate::rules::snapshot::ShopValues;
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
    pub const ALL: [OutputKind; 4] =
        [OutputKind::Snapshot, OutputKind::Compensation, OutputKind::Alert, OutputKind::DeadLetter];

    /// The kind's name in summaries and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Snapshot => "snapshot",
            OutputKind::Compensation => "compensation",
            OutputKind::Alert => "alert",
            OutputKind::DeadLetter => "dead_letter",
        }
    }

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
    Compensation(Compensation),
    Alert(Alert),
    DeadLetter(DeadLetter),
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Snapshot(_) => OutputKind::Snapshot,
            Output::Compensation(_) => OutputKind::Compensation,
            Output::Alert(_) => OutputKind::Alert,
            Output::DeadLetter(_) => OutputKind::DeadLetter,
        }
    }

    /// The record as one JSON line (no newline).
    ///
    /// Written into a buffer sized for the record up front: `serde_json::to_string` grows
    /// its vector from empty, which for a ~2 KiB snapshot means a reallocation and copy at
    /// every doubling.
    pub fn to_json(&self) -> String {
        match self {
            Output::Snapshot(s) => json_text(s, SNAPSHOT_JSON_BYTES_PER_WINDOW * (s.window_days.len() + 1)),
            Output::Compensation(c) => json_text(c, 1024),
            Output::Alert(a) => json_text(a, 256),
            Output::DeadLetter(d) => json_text(d, 256 + d.raw.len() * 2),
        }
    }
}

/// `value` as JSON text, written into a buffer of `capacity` bytes to start with.
fn json_text<T: Serialize>(value: &T, capacity: usize) -> String {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value).expect("output records always serialize");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Room per window (and once more for the rest) a snapshot's JSON is given up front: a
/// window's 22 fields take ~600 bytes, shop id, times, DSR and campaign fit the extra one.
const SNAPSHOT_JSON_BYTES_PER_WINDOW: usize = 640;

/// A per-shop metric snapshot (SPEC §8). Carries counts; rates are derived on output.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub shop_id: String,
    pub as_of: Timestamp,
    pub version: u64,
    /// Window lengths in days, in output order (one per `values.windows` entry).
    pub window_days: Vec<u32>,
    pub values: ShopValues,
}

impl Snapshot {
    /// The counts of the `days`-day window, if configured.
    pub fn window(&self, days: u32) -> Option<&WindowCounts> {
        self.window_days.iter().position(|d| *d == days).map(|i| &self.values.windows[i])
    }
}

struct WindowJson<'a>(&'a WindowCounts);

impl Serialize for WindowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_struct("Window", 22)?;
        m.serialize_field("paid_orders", &c.paid_orders)?;
        m.serialize_field("refunds_requested", &c.refunds_requested)?;
        m.serialize_field("refund_rate", &c.refund_rate())?;
        m.serialize_field("dispute_refunds", &c.dispute_refunds)?;
        m.serialize_field("dispute_refund_rate", &c.dispute_refund_rate())?;
        m.serialize_field("quality_refunds", &c.quality_refunds)?;
        m.serialize_field("quality_refund_rate", &c.quality_refund_rate())?;
        m.serialize_field("interventions", &c.interventions)?;
        m.serialize_field("intervention_rate", &c.intervention_rate())?;
        m.serialize_field("completed_refunds", &c.completed_refunds)?;
        m.serialize_field("self_completed_refunds", &c.self_completed_refunds)?;
        m.serialize_field("self_completion_rate", &c.self_completion_rate())?;
        m.serialize_field("avg_refund_hours", &c.avg_refund_hours())?;
        m.serialize_field("manual_refunds", &c.manual_refunds)?;
        m.serialize_field("manual_refund_rate", &c.manual_refund_rate())?;
        m.serialize_field("ship_due_orders", &c.ship_due_orders)?;
        m.serialize_field("late_shipments", &c.late_shipments)?;
        m.serialize_field("late_shipment_rate", &c.late_shipment_rate())?;
        m.serialize_field("service_ratings", &c.service_ratings_total())?;
        m.serialize_field("satisfied_ratings", &c.satisfied_ratings_total())?;
        m.serialize_field("satisfaction_rate", &c.satisfaction_rate())?;
        m.serialize_field("satisfaction_by", &SatisfactionBy(c))?;
        m.end()
    }
}

struct SatisfactionBy<'a>(&'a WindowCounts);

impl Serialize for SatisfactionBy<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        for (i, name) in SERVICE_SLOT_NAMES.iter().enumerate() {
            m.serialize_entry(name, &self.0.satisfaction_rate_of(i))?;
        }
        m.end()
    }
}

struct WindowsJson<'a>(&'a [u32], &'a [WindowCounts]);

impl Serialize for WindowsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (days, counts) in self.0.iter().zip(self.1) {
            m.serialize_entry(&format!("{days}d"), &WindowJson(counts))?;
        }
        m.end()
    }
}

struct DsrDim {
    sum: i64,
    count: i64,
}

impl Serialize for DsrDim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Dsr", 3)?;
        m.serialize_field("sum", &self.sum)?;
        m.serialize_field("count", &self.count)?;
        m.serialize_field("score", &rate(self.sum, self.count))?;
        m.end()
    }
}

struct DsrJson<'a>(&'a ShopValues);

impl Serialize for DsrJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let mut m = s.serialize_struct("Dsr", 3)?;
        for (i, name) in ["description", "service", "logistics"].into_iter().enumerate() {
            m.serialize_field(name, &DsrDim { sum: v.dsr_sum[i], count: v.dsr_count })?;
        }
        m.end()
    }
}

struct CampaignJson<'a>(&'a ShopValues);

impl Serialize for CampaignJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let failed = self.0.campaign_failures();
        let mut m = s.serialize_struct("Campaign", 2)?;
        m.serialize_field("eligible", &failed.is_empty())?;
        m.serialize_field("failed", &failed)?;
        m.end()
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Snapshot", 6)?;
        m.serialize_field("shop_id", &self.shop_id)?;
        m.serialize_field("as_of", &self.as_of.to_rfc3339())?;
        m.serialize_field("version", &self.version)?;
        m.serialize_field("windows", &WindowsJson(&self.window_days, &self.values.windows))?;
        m.serialize_field("dsr", &DsrJson(&self.values))?;
        m.serialize_field("campaign", &CampaignJson(&self.values))?;
        m.end()
    }
}

/// What a compensation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompensationKind {
    LateShipment,
    DeliveryPromiseBreach,
}

impl CompensationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CompensationKind::LateShipment => "LATE_SHIPMENT",
            CompensationKind::DeliveryPromiseBreach => "DELIVERY_PROMISE_BREACH",
        }
    }
}

/// One input event behind a compensation decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageEvent {
    /// `paid`, `shipped`, `delivered` or `closed`.
    pub role: &'static str,
    pub event_id: String,
    pub source: SourcePos,
}

/// Money owed to a buyer (SPEC §5). Final once emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compensation {
    pub kind: CompensationKind,
    pub order_id: String,
    pub shop_id: String,
    pub buyer_id: String,
    pub amount_fen: i64,
    /// The uncapped amount.
    pub basis_fen: i64,
    /// The late-shipment group (its first order); `None` for a breach.
    pub group_id: Option<String>,
    /// `ship_deadline`, or `promised_delivery_by` for a breach.
    pub deadline: Timestamp,
    pub shipped_at: Option<Timestamp>,
    pub decided_at: Timestamp,
    pub rule_version: String,
    pub lineage: Vec<LineageEvent>,
}

impl Compensation {
    /// The deterministic id `{order_id}:{kind}`.
    pub fn compensation_id(&self) -> String {
        format!("{}:{}", self.order_id, self.kind.as_str())
    }
}

struct LineageJson<'a>(&'a Compensation);

impl Serialize for LineageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Ev<'a>(&'a LineageEvent);
        impl Serialize for Ev<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_struct("LineageEvent", 3)?;
                m.serialize_field("role", self.0.role)?;
                m.serialize_field("event_id", &self.0.event_id)?;
                m.serialize_field("source", &SourceJson(&self.0.source))?;
                m.end()
            }
        }
        let mut m = s.serialize_struct("Lineage", 2)?;
        m.serialize_field("rule_version", &self.0.rule_version)?;
        m.serialize_field("events", &self.0.lineage.iter().map(Ev).collect::<Vec<_>>())?;
        m.end()
    }
}

impl Serialize for Compensation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Compensation", 12)?;
        m.serialize_field("compensation_id", &self.compensation_id())?;
        m.serialize_field("kind", self.kind.as_str())?;
        m.serialize_field("order_id", &self.order_id)?;
        m.serialize_field("shop_id", &self.shop_id)?;
        m.serialize_field("buyer_id", &self.buyer_id)?;
        m.serialize_field("amount_fen", &self.amount_fen)?;
        m.serialize_field("basis_fen", &self.basis_fen)?;
        m.serialize_field("group_id", &self.group_id)?;
        m.serialize_field("deadline", &self.deadline.to_rfc3339())?;
        m.serialize_field("shipped_at", &self.shipped_at.map(Timestamp::to_rfc3339))?;
        m.serialize_field("decided_at", &self.decided_at.to_rfc3339())?;
        m.serialize_field("lineage", &LineageJson(self))?;
        m.end()
    }
}

/// An alert rule changing state for a shop (SPEC §6).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub shop_id: String,
    /// The rule's name.
    pub rule: String,
    /// `RAISED` or `CLEARED`.
    pub state: &'static str,
    /// The rule as text, e.g. `refund_rate[30d] > 0.05`.
    pub condition: String,
    /// The metric's value when the state changed (null when undefined).
    pub value: Option<f64>,
    pub as_of: Timestamp,
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Alert", 6)?;
        m.serialize_field("shop_id", &self.shop_id)?;
        m.serialize_field("rule", &self.rule)?;
        m.serialize_field("state", self.state)?;
        m.serialize_field("condition", &self.condition)?;
        m.serialize_field("value", &self.value)?;
        m.serialize_field("as_of", &self.as_of.to_rfc3339())?;
        m.end()
    }
}

/// Where an input record came from. (Serialized untagged in outputs, via `SourceJson`;
/// tagged in state, which needs a non-self-describing format.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum SourcePos {
    File { file: String, line: u64 },
    Kafka { topic: String, partition: i32, offset: i64 },
}

/// The untagged JSON form: `{"file","line"}` or `{"topic","partition","offset"}`.
pub(crate) struct SourceJson<'a>(&'a SourcePos);

impl Serialize for SourceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            SourcePos::File { file, line } => {
                let mut m = s.serialize_struct("Source", 2)?;
                m.serialize_field("file", file)?;
                m.serialize_field("line", line)?;
                m.end()
            }
            SourcePos::Kafka { topic, partition, offset } => {
                let mut m = s.serialize_struct("Source", 3)?;
                m.serialize_field("topic", topic)?;
                m.serialize_field("partition", partition)?;
                m.serialize_field("offset", offset)?;
                m.end()
            }
        }
    }
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
    /// The record's Kafka key, if any (the dead-letter topic keeps it; files have none).
    pub key: Option<Vec<u8>>,
}

impl DeadLetter {
    /// The dead letter of a record that failed to decode with `error`.
    pub fn from_decode(
        error: &DecodeError,
        source: SourcePos,
        raw: Vec<u8>,
        key: Option<Vec<u8>>,
    ) -> DeadLetter {
        DeadLetter { reason: error.to_string(), reason_code: error.code(), source, raw, key }
    }
}

impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("DeadLetter", 4)?;
        m.serialize_field("reason", &self.reason)?;
        m.serialize_field("reason_code", self.reason_code)?;
        m.serialize_field("source", &SourceJson(&self.source))?;
        match std::str::from_utf8(&self.raw) {
            Ok(text) => m.serialize_field("raw", text)?,
            Err(_) => {
                m.serialize_field("raw_base64", &base64::engine::general_purpose::STANDARD.encode(&self.raw))?
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts behind SPEC §8's example `30d` window (shared with the protobuf tests).
    pub(crate) fn spec_example_window() -> WindowCounts {
        WindowCounts {
            paid_orders: 120,
            refunds_requested: 9,
            dispute_refunds: 1,
            quality_refunds: 3,
            interventions: 2,
            completed_refunds: 7,
            self_completed_refunds: 6,
            refund_ms_sum: 4 * 109_800_000,
            refund_ms_count: 4,
            manual_refunds: 1,
            ship_due_orders: 110,
            late_shipments: 4,
            service_ratings: [20, 10, 0, 20],
            satisfied_ratings: [19, 8, 0, 18],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_json_matches_spec_example_window() {
        let w30 = spec_example_window();
        let s = Snapshot {
            shop_id: "s1".into(),
            as_of: Timestamp::parse_rfc3339("2024-05-31T18:00:00+08:00").unwrap(),
            version: 42,
            window_days: vec![1, 30],
            values: ShopValues {
                windows: vec![WindowCounts::default(), w30],
                dsr_sum: [96, 90, 100],
                dsr_count: 20,
                campaign_manual: 1,
                campaign_paid: 120,
            },
        };
        let text = Output::Snapshot(s).to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let w = &v["windows"]["30d"];
        assert_eq!(w["refund_rate"], 0.075);
        assert_eq!(w["dispute_refund_rate"], 0.008333333333333333);
        assert_eq!(w["self_completion_rate"], 0.8571428571428571);
        assert_eq!(w["avg_refund_hours"], 30.5);
        assert_eq!(w["late_shipment_rate"], 0.03636363636363636);
        assert_eq!(w["satisfaction_rate"], 0.9);
        assert_eq!(w["satisfaction_by"]["HUMAN_PRE_SALE"], 0.95);
        assert_eq!(w["satisfaction_by"]["BOT_PRE_SALE"], serde_json::Value::Null);
        assert_eq!(v["windows"]["1d"]["refund_rate"], serde_json::Value::Null);
        assert_eq!(v["dsr"]["description"]["score"], 4.8);
        assert_eq!(v["dsr"]["service"]["score"], 4.5);
        assert_eq!(v["campaign"]["eligible"], false);
        assert_eq!(v["campaign"]["failed"], serde_json::json!(["DSR_SERVICE_BELOW_4_6"]));
        // Field order follows SPEC §8.
        let keys: Vec<_> =
            ["\"shop_id\"", "\"as_of\"", "\"version\"", "\"windows\"", "\"dsr\"", "\"campaign\""]
                .iter()
                .map(|k| text.find(k).unwrap())
                .collect();
        assert!(keys.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn dead_letter_keeps_raw_or_base64() {
        let d = DeadLetter {
            reason: "bad".into(),
            reason_code: "malformed_json",
            source: SourcePos::File { file: "in.jsonl".into(), line: 3 },
            raw: b"{\"a\":".to_vec(),
            key: None,
        };
        assert_eq!(
            Output::DeadLetter(d.clone()).to_json(),
            r#"{"reason":"bad","reason_code":"malformed_json","source":{"file":"in.jsonl","line":3},"raw":"{\"a\":"}"#
        );
        let bin = DeadLetter { raw: vec![0xff, 0x00], ..d };
        assert!(Output::DeadLetter(bin).to_json().ends_with(r#""raw_base64":"/wA="}"#));
    }
}
