//! Compares engine output with the model and describes every difference readably
//! (shop, window, field, engine value, model value; or compensation id, field, values).

use super::compensation::Record;
use serde_json::Value;
use shopscore::domain::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// Relative tolerance for floats (rates and averages computed in another order).
const REL_TOLERANCE: f64 = 1e-9;

fn numbers_match(a: &Value, b: &Value) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= REL_TOLERANCE * x.abs().max(y.abs()),
            _ => false,
        },
    }
}

/// Appends `path: engine … model …` for every leaf where `engine` and `model` differ.
/// Integers must match exactly, floats within the tolerance, `null` only `null`.
fn diff_values(path: &str, engine: &Value, model: &Value, out: &mut Vec<String>) {
    match (engine, model) {
        (Value::Object(e), Value::Object(m)) => {
            let keys: BTreeSet<&String> = e.keys().chain(m.keys()).collect();
            for k in keys {
                let (ev, mv) = (e.get(k).unwrap_or(&Value::Null), m.get(k).unwrap_or(&Value::Null));
                if !e.contains_key(k) || !m.contains_key(k) {
                    out.push(format!(
                        "{path}.{k}: key only in {}",
                        if e.contains_key(k) { "engine" } else { "model" }
                    ));
                } else {
                    diff_values(&format!("{path}.{k}"), ev, mv, out);
                }
            }
        }
        (Value::Number(_), Value::Number(_)) if numbers_match(engine, model) => {}
        _ if engine == model => {}
        _ => out.push(format!("{path}: engine {engine} model {model}")),
    }
}

/// Differences between the engine's last snapshots and the model's (without `as_of` and
/// `version`), and shops only one side has.
pub fn snapshots(engine: &BTreeMap<String, Value>, model: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for shop in engine.keys().chain(model.keys()).collect::<BTreeSet<_>>() {
        match (engine.get(shop), model.get(shop)) {
            (Some(e), Some(m)) => {
                let mut e = e.clone();
                let obj = e.as_object_mut().unwrap();
                obj.remove("as_of");
                obj.remove("version");
                diff_values(shop, &e, m, &mut out);
            }
            (Some(_), None) => out.push(format!("{shop}: snapshot only from the engine")),
            (None, Some(_)) => out.push(format!("{shop}: no engine snapshot")),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn time(t: Timestamp) -> Value {
    Value::String(t.to_rfc3339())
}

/// The fields of a model record in the output's JSON form (lineage as sorted `role:event_id@line`).
fn record_json(r: &Record) -> Value {
    serde_json::json!({
        "compensation_id": r.id(),
        "kind": r.kind,
        "order_id": r.order_id,
        "shop_id": r.shop_id,
        "buyer_id": r.buyer_id,
        "amount_fen": r.amount_fen,
        "basis_fen": r.basis_fen,
        "group_id": r.group_id,
        "deadline": time(r.deadline),
        "shipped_at": r.shipped_at.map(time),
        "decided_at": time(r.decided_at),
        "lineage": r.lineage,
    })
}

/// An engine compensation line reduced to the compared fields (times re-read, so any
/// offset compares as the instant it is; lineage as sorted `role:event_id@line`).
fn engine_json(v: &Value) -> Value {
    let mut v = v.clone();
    let obj = v.as_object_mut().unwrap();
    for k in ["deadline", "shipped_at", "decided_at"] {
        if let Some(Value::String(s)) = obj.get(k) {
            let t = Timestamp::parse_rfc3339(s).unwrap();
            obj.insert(k.into(), time(t));
        }
    }
    let mut lineage: Vec<String> = obj["lineage"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}@{}",
                e["role"].as_str().unwrap(),
                e["event_id"].as_str().unwrap(),
                e["source"]["line"]
            )
        })
        .collect();
    lineage.sort();
    obj.insert("lineage".into(), lineage.into());
    v
}

/// Differences between the engine's compensations and the model's records, plus any
/// `compensation_id` the engine emitted twice.
pub fn compensations(engine: &[Value], model: &[Record]) -> Vec<String> {
    let mut out = repeated_compensations(engine);
    let by_id: BTreeMap<String, Value> = engine
        .iter()
        .map(|e| (e["compensation_id"].as_str().unwrap_or("<no id>").to_owned(), engine_json(e)))
        .collect();
    let model: BTreeMap<String, Value> = model.iter().map(|r| (r.id(), record_json(r))).collect();
    for id in by_id.keys().chain(model.keys()).collect::<BTreeSet<_>>() {
        match (by_id.get(id), model.get(id)) {
            (Some(e), Some(m)) => diff_values(id, e, m, &mut out),
            (Some(e), None) => out.push(format!("{id}: only from the engine: {e}")),
            (None, Some(m)) => out.push(format!("{id}: only in the model: {m}")),
            (None, None) => unreachable!(),
        }
    }
    out
}

/// Every `compensation_id` the engine emitted more than once (SPEC §5: exactly once).
pub fn repeated_compensations(engine: &[Value]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    engine
        .iter()
        .map(|e| e["compensation_id"].as_str().unwrap_or("<no id>").to_owned())
        .filter(|id| !seen.insert(id.clone()))
        .map(|id| format!("{id}: emitted more than once"))
        .collect()
}
