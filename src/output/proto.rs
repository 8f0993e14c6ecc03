//! The protobuf form of the outputs (`proto/shopscore/v1/outputs.proto`), and its way back
//! to the JSON form.
//!
//! Field names are the JSON names; times are int64 epoch milliseconds (as in the input
//! messages); a JSON `null` is an absent `optional` field. [`to_json_value`] turns a protobuf
//! payload into the `serde_json::Value` of the same record's JSON line, so both forms can be
//! compared by meaning. Dead letters have no protobuf form (SPEC §6: the original bytes).

use super::{Alert, Compensation, OutputKind, Snapshot, SourcePos};
use crate::domain::Timestamp;
use crate::pb;
use crate::rules::metrics::{rate, WindowCounts, SERVICE_SLOT_NAMES};
use crate::rules::snapshot::ShopValues;
use prost::Message;
use serde_json::{json, Map, Value};

fn window(c: &WindowCounts) -> pb::Window {
    pb::Window {
        paid_orders: c.paid_orders,
        refunds_requested: c.refunds_requested,
        refund_rate: c.refund_rate(),
        dispute_refunds: c.dispute_refunds,
        dispute_refund_rate: c.dispute_refund_rate(),
        quality_refunds: c.quality_refunds,
        quality_refund_rate: c.quality_refund_rate(),
        interventions: c.interventions,
        intervention_rate: c.intervention_rate(),
        completed_refunds: c.completed_refunds,
        self_completed_refunds: c.self_completed_refunds,
        self_completion_rate: c.self_completion_rate(),
        avg_refund_hours: c.avg_refund_hours(),
        manual_refunds: c.manual_refunds,
        manual_refund_rate: c.manual_refund_rate(),
        ship_due_orders: c.ship_due_orders,
        late_shipments: c.late_shipments,
        late_shipment_rate: c.late_shipment_rate(),
        service_ratings: c.service_ratings_total(),
        satisfied_ratings: c.satisfied_ratings_total(),
        satisfaction_rate: c.satisfaction_rate(),
        // The slots in SERVICE_SLOT_NAMES order.
        satisfaction_by: Some(pb::SatisfactionBy {
            human_pre_sale: c.satisfaction_rate_of(0),
            human_after_sale: c.satisfaction_rate_of(1),
            bot_pre_sale: c.satisfaction_rate_of(2),
            bot_after_sale: c.satisfaction_rate_of(3),
        }),
    }
}

fn dsr(v: &ShopValues) -> pb::Dsr {
    let dim = |i: usize| {
        Some(pb::DsrDimension {
            sum: v.dsr_sum[i],
            count: v.dsr_count,
            score: rate(v.dsr_sum[i], v.dsr_count),
        })
    };
    pb::Dsr { description: dim(0), service: dim(1), logistics: dim(2) }
}

/// The protobuf message of a snapshot.
pub fn snapshot(s: &Snapshot) -> pb::Snapshot {
    let failed = s.values.campaign_failures();
    pb::Snapshot {
        shop_id: s.shop_id.clone(),
        as_of: s.as_of.0,
        version: s.version,
        windows: s
            .window_days
            .iter()
            .zip(&s.values.windows)
            .map(|(days, counts)| (format!("{days}d"), window(counts)))
            .collect(),
        dsr: Some(dsr(&s.values)),
        campaign: Some(pb::Campaign {
            eligible: failed.is_empty(),
            failed: failed.into_iter().map(str::to_owned).collect(),
        }),
    }
}

fn source(s: &SourcePos) -> pb::Source {
    match s {
        SourcePos::File { file, line } => {
            pb::Source { file: Some(file.clone()), line: Some(*line), ..Default::default() }
        }
        SourcePos::Kafka { topic, partition, offset } => pb::Source {
            topic: Some(topic.clone()),
            partition: Some(*partition),
            offset: Some(*offset),
            ..Default::default()
        },
    }
}

/// The protobuf message of a compensation.
pub fn compensation(c: &Compensation) -> pb::Compensation {
    pb::Compensation {
        compensation_id: c.compensation_id(),
        kind: c.kind.as_str().to_owned(),
        order_id: c.order_id.clone(),
        shop_id: c.shop_id.clone(),
        buyer_id: c.buyer_id.clone(),
        amount_fen: c.amount_fen,
        basis_fen: c.basis_fen,
        group_id: c.group_id.clone(),
        deadline: c.deadline.0,
        shipped_at: c.shipped_at.map(|t| t.0),
        decided_at: c.decided_at.0,
        lineage: Some(pb::Lineage {
            rule_version: c.rule_version.clone(),
            events: c
                .lineage
                .iter()
                .map(|e| pb::LineageEvent {
                    role: e.role.to_owned(),
                    event_id: e.event_id.clone(),
                    source: Some(source(&e.source)),
                })
                .collect(),
        }),
    }
}

/// The protobuf message of an alert.
pub fn alert(a: &Alert) -> pb::Alert {
    pb::Alert {
        shop_id: a.shop_id.clone(),
        rule: a.rule.clone(),
        state: a.state.to_owned(),
        condition: a.condition.clone(),
        value: a.value,
        as_of: a.as_of.0,
    }
}

impl Snapshot {
    /// The snapshot as an encoded `shopscore.v1.Snapshot`.
    pub fn to_protobuf(&self) -> Vec<u8> {
        snapshot(self).encode_to_vec()
    }
}

impl Compensation {
    /// The compensation as an encoded `shopscore.v1.Compensation`.
    pub fn to_protobuf(&self) -> Vec<u8> {
        compensation(self).encode_to_vec()
    }
}

impl Alert {
    /// The alert as an encoded `shopscore.v1.Alert`.
    pub fn to_protobuf(&self) -> Vec<u8> {
        alert(self).encode_to_vec()
    }
}

/// Why a payload has no JSON form.
#[derive(Debug, thiserror::Error)]
pub enum ProtoOutputError {
    #[error("not a protobuf {kind} record: {source}")]
    Malformed { kind: &'static str, source: prost::DecodeError },
    #[error("`{field}` is {ms}, not an epoch-millisecond time in the valid range")]
    Time { field: &'static str, ms: i64 },
    #[error("dead letters have no protobuf form: their payload is the original record")]
    DeadLetter,
}

fn time(field: &'static str, ms: i64) -> Result<Value, ProtoOutputError> {
    Timestamp::from_epoch_ms(ms)
        .map(|t| Value::String(t.to_rfc3339()))
        .map_err(|_| ProtoOutputError::Time { field, ms })
}

fn window_json(w: &pb::Window) -> Value {
    let by = w.satisfaction_by.unwrap_or_default();
    let slots = [by.human_pre_sale, by.human_after_sale, by.bot_pre_sale, by.bot_after_sale];
    let satisfaction_by: Map<String, Value> =
        SERVICE_SLOT_NAMES.iter().zip(slots).map(|(name, r)| ((*name).to_owned(), json!(r))).collect();
    json!({
        "paid_orders": w.paid_orders,
        "refunds_requested": w.refunds_requested,
        "refund_rate": w.refund_rate,
        "dispute_refunds": w.dispute_refunds,
        "dispute_refund_rate": w.dispute_refund_rate,
        "quality_refunds": w.quality_refunds,
        "quality_refund_rate": w.quality_refund_rate,
        "interventions": w.interventions,
        "intervention_rate": w.intervention_rate,
        "completed_refunds": w.completed_refunds,
        "self_completed_refunds": w.self_completed_refunds,
        "self_completion_rate": w.self_completion_rate,
        "avg_refund_hours": w.avg_refund_hours,
        "manual_refunds": w.manual_refunds,
        "manual_refund_rate": w.manual_refund_rate,
        "ship_due_orders": w.ship_due_orders,
        "late_shipments": w.late_shipments,
        "late_shipment_rate": w.late_shipment_rate,
        "service_ratings": w.service_ratings,
        "satisfied_ratings": w.satisfied_ratings,
        "satisfaction_rate": w.satisfaction_rate,
        "satisfaction_by": satisfaction_by,
    })
}

fn snapshot_json(s: &pb::Snapshot) -> Result<Value, ProtoOutputError> {
    let dim = |d: &Option<pb::DsrDimension>| {
        let d = d.unwrap_or_default();
        json!({"sum": d.sum, "count": d.count, "score": d.score})
    };
    let dsr = s.dsr.unwrap_or_default();
    let campaign = s.campaign.clone().unwrap_or_default();
    let windows: Map<String, Value> = s.windows.iter().map(|(k, w)| (k.clone(), window_json(w))).collect();
    Ok(json!({
        "shop_id": s.shop_id,
        "as_of": time("as_of", s.as_of)?,
        "version": s.version,
        "windows": windows,
        "dsr": {
            "description": dim(&dsr.description),
            "service": dim(&dsr.service),
            "logistics": dim(&dsr.logistics),
        },
        "campaign": {"eligible": campaign.eligible, "failed": campaign.failed},
    }))
}

fn source_json(s: &pb::Source) -> Value {
    let mut m = Map::new();
    if let Some(file) = &s.file {
        m.insert("file".into(), json!(file));
    }
    if let Some(line) = s.line {
        m.insert("line".into(), json!(line));
    }
    if let Some(topic) = &s.topic {
        m.insert("topic".into(), json!(topic));
    }
    if let Some(partition) = s.partition {
        m.insert("partition".into(), json!(partition));
    }
    if let Some(offset) = s.offset {
        m.insert("offset".into(), json!(offset));
    }
    Value::Object(m)
}

fn compensation_json(c: &pb::Compensation) -> Result<Value, ProtoOutputError> {
    let lineage = c.lineage.clone().unwrap_or_default();
    let events: Vec<Value> = lineage
        .events
        .iter()
        .map(|e| {
            json!({
                "role": e.role,
                "event_id": e.event_id,
                "source": source_json(&e.source.clone().unwrap_or_default()),
            })
        })
        .collect();
    Ok(json!({
        "compensation_id": c.compensation_id,
        "kind": c.kind,
        "order_id": c.order_id,
        "shop_id": c.shop_id,
        "buyer_id": c.buyer_id,
        "amount_fen": c.amount_fen,
        "basis_fen": c.basis_fen,
        "group_id": c.group_id,
        "deadline": time("deadline", c.deadline)?,
        "shipped_at": c.shipped_at.map(|ms| time("shipped_at", ms)).transpose()?,
        "decided_at": time("decided_at", c.decided_at)?,
        "lineage": {"rule_version": lineage.rule_version, "events": events},
    }))
}

fn alert_json(a: &pb::Alert) -> Result<Value, ProtoOutputError> {
    Ok(json!({
        "shop_id": a.shop_id,
        "rule": a.rule,
        "state": a.state,
        "condition": a.condition,
        "value": a.value,
        "as_of": time("as_of", a.as_of)?,
    }))
}

fn decode<M: Message + Default>(kind: OutputKind, payload: &[u8]) -> Result<M, ProtoOutputError> {
    M::decode(payload).map_err(|source| ProtoOutputError::Malformed { kind: kind.name(), source })
}

/// The JSON form (the file-mode line, as a value) of a protobuf payload of output `kind`:
/// equal to the JSON line's value of the same record. For consumers and tests that compare
/// the two encodings; never panics, whatever the bytes.
pub fn to_json_value(kind: OutputKind, payload: &[u8]) -> Result<Value, ProtoOutputError> {
    match kind {
        OutputKind::Snapshot => snapshot_json(&decode(kind, payload)?),
        OutputKind::Compensation => compensation_json(&decode(kind, payload)?),
        OutputKind::Alert => alert_json(&decode(kind, payload)?),
        OutputKind::DeadLetter => Err(ProtoOutputError::DeadLetter),
    }
}

/// The `compensation_id` of a protobuf compensation payload (none when it does not decode or
/// has no id).
pub fn compensation_id(payload: &[u8]) -> Option<String> {
    pb::Compensation::decode(payload).ok().map(|c| c.compensation_id).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::{CompensationKind, LineageEvent, Output};
    use super::*;

    fn protobuf(o: &Output) -> Vec<u8> {
        match o {
            Output::Snapshot(s) => s.to_protobuf(),
            Output::Compensation(c) => c.to_protobuf(),
            Output::Alert(a) => a.to_protobuf(),
            Output::DeadLetter(_) => panic!("dead letters have no protobuf form"),
        }
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    /// SPEC §8's example window (30d), an empty window (every rate null), a window whose
    /// rates are 0 (not null), and an `as_of` with milliseconds.
    fn snapshot_example() -> Snapshot {
        let w30 = crate::output::tests::spec_example_window();
        let w7 = WindowCounts { paid_orders: 3, completed_refunds: 1, ..Default::default() };
        Snapshot {
            shop_id: "s1".into(),
            as_of: ts("2024-05-31T18:00:00.250+08:00"),
            version: 42,
            window_days: vec![1, 7, 30],
            values: ShopValues {
                windows: vec![WindowCounts::default(), w7, w30],
                dsr_sum: [96, 90, 100],
                dsr_count: 20,
                campaign_manual: 1,
                campaign_paid: 120,
            },
        }
    }

    fn compensations() -> Vec<Compensation> {
        let late = Compensation {
            kind: CompensationKind::LateShipment,
            order_id: "o1".into(),
            shop_id: "s1".into(),
            buyer_id: "b1".into(),
            amount_fen: 0,
            basis_fen: 3_000,
            group_id: Some("o0".into()),
            deadline: ts("2024-05-02T10:00:00+08:00"),
            shipped_at: Some(ts("2024-05-02T11:30:00.5+08:00")),
            decided_at: ts("2024-05-02T12:00:00+08:00"),
            rule_version: "2024-01".into(),
            lineage: vec![
                LineageEvent {
                    role: "paid",
                    event_id: "e1".into(),
                    source: SourcePos::Kafka { topic: "orders".into(), partition: 0, offset: 0 },
                },
                LineageEvent {
                    role: "shipped",
                    event_id: "e2".into(),
                    source: SourcePos::File { file: "in.jsonl".into(), line: 7 },
                },
            ],
        };
        let breach = Compensation {
            kind: CompensationKind::DeliveryPromiseBreach,
            amount_fen: 1_000,
            basis_fen: 1_000,
            group_id: None,
            shipped_at: None,
            lineage: Vec::new(),
            ..late.clone()
        };
        vec![late, breach]
    }

    fn alerts() -> Vec<Alert> {
        let raised = Alert {
            shop_id: "s1".into(),
            rule: "refunds-high".into(),
            state: "RAISED",
            condition: "refund_rate[30d] > 0.05".into(),
            value: Some(0.075),
            as_of: ts("2024-05-31T18:00:00+08:00"),
        };
        let cleared = Alert { state: "CLEARED", value: None, ..raised.clone() };
        vec![raised, cleared]
    }

    /// Every output but dead letters: encoded to protobuf, decoded with prost and turned back
    /// into JSON, it equals its JSON line field by field.
    #[test]
    fn every_output_round_trips_through_protobuf_to_its_json_form() {
        let mut outputs = vec![Output::Snapshot(snapshot_example())];
        outputs.extend(compensations().into_iter().map(Output::Compensation));
        outputs.extend(alerts().into_iter().map(Output::Alert));
        for o in &outputs {
            let from_proto = to_json_value(o.kind(), &protobuf(o)).unwrap();
            let from_json: Value = serde_json::from_str(&o.to_json()).unwrap();
            assert_eq!(from_proto, from_json, "{}", o.to_json());
        }
    }

    #[test]
    fn nulls_are_absent_fields_and_zeros_stay_zeros() {
        let s = snapshot(&snapshot_example());
        let decoded = pb::Snapshot::decode(&*s.encode_to_vec()).unwrap();
        assert_eq!(decoded, s);
        let w1 = &decoded.windows["1d"];
        assert_eq!(w1.refund_rate, None);
        assert_eq!(w1.avg_refund_hours, None);
        assert_eq!(w1.paid_orders, 0);
        let w7 = &decoded.windows["7d"];
        assert_eq!(w7.refund_rate, Some(0.0), "0 / 3 is 0, not null");
        assert_eq!(w7.self_completion_rate, Some(0.0));
        let w30 = &decoded.windows["30d"];
        assert_eq!(w30.refund_rate, Some(0.075));
        assert_eq!(w30.avg_refund_hours, Some(30.5));
        let by = w30.satisfaction_by.unwrap();
        assert_eq!((by.human_pre_sale, by.bot_pre_sale), (Some(0.95), None));
        assert_eq!(decoded.as_of, 1_717_149_600_250);
        let dsr = decoded.dsr.unwrap();
        assert_eq!(dsr.service.unwrap().score, Some(4.5));
        let campaign = decoded.campaign.unwrap();
        assert!(!campaign.eligible);
        assert_eq!(campaign.failed, ["DSR_SERVICE_BELOW_4_6"]);

        let no_dsr = Snapshot {
            values: ShopValues { dsr_sum: [0; 3], dsr_count: 0, ..snapshot_example().values },
            ..snapshot_example()
        };
        let d = snapshot(&no_dsr).dsr.unwrap().description.unwrap();
        assert_eq!((d.sum, d.count, d.score), (0, 0, None));

        let [late, breach] = &compensations()[..] else { unreachable!() };
        let l = pb::Compensation::decode(&*compensation(late).encode_to_vec()).unwrap();
        assert_eq!(l.compensation_id, "o1:LATE_SHIPMENT");
        assert_eq!(l.amount_fen, 0);
        assert_eq!(l.group_id.as_deref(), Some("o0"));
        assert_eq!(l.shipped_at, Some(late.shipped_at.unwrap().0));
        let src = l.lineage.unwrap().events[0].source.clone().unwrap();
        assert_eq!(
            (src.topic.as_deref(), src.partition, src.offset, src.file),
            (Some("orders"), Some(0), Some(0), None)
        );
        let b = pb::Compensation::decode(&*compensation(breach).encode_to_vec()).unwrap();
        assert_eq!((b.group_id, b.shipped_at), (None, None));
        assert_eq!(b.kind, "DELIVERY_PROMISE_BREACH");

        let cleared = pb::Alert::decode(&*alert(&alerts()[1]).encode_to_vec()).unwrap();
        assert_eq!((cleared.state.as_str(), cleared.value), ("CLEARED", None));
    }

    #[test]
    fn the_same_snapshot_always_has_the_same_bytes() {
        let first = snapshot_example().to_protobuf();
        for _ in 0..10 {
            assert_eq!(snapshot_example().to_protobuf(), first);
        }
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert!(matches!(
            to_json_value(OutputKind::Snapshot, b"\xff\xff\xff"),
            Err(ProtoOutputError::Malformed { kind: "snapshot", .. })
        ));
        let far = pb::Alert { as_of: i64::MAX, ..Default::default() }.encode_to_vec();
        assert!(matches!(
            to_json_value(OutputKind::Alert, &far),
            Err(ProtoOutputError::Time { field: "as_of", .. })
        ));
        assert!(matches!(to_json_value(OutputKind::DeadLetter, b"x"), Err(ProtoOutputError::DeadLetter)));
    }

    #[test]
    fn compensation_id_of_a_protobuf_payload() {
        let c = &compensations()[0];
        assert_eq!(compensation_id(&c.to_protobuf()).as_deref(), Some("o1:LATE_SHIPMENT"));
        assert_eq!(compensation_id(b"\xff\xff"), None);
        assert_eq!(compensation_id(&pb::Alert::default().encode_to_vec()), None);
    }
}
