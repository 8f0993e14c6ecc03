//! Alert rules (SPEC §6): `RAISED` / `CLEARED` records when a configured condition such as
//! `refund_rate[30d] > 0.05` or `campaign_eligible == false` changes state for a shop.
//!
//! Rules are evaluated on every new snapshot of a shop; the set of raised rules is kept per
//! shop, so a record is emitted only on a change of state. A null metric (zero
//! denominator) never holds.

use super::snapshot::ShopValues;
use crate::config::{AlertMetric, AlertRule};
use crate::output::{Alert, Snapshot};
use serde::{Deserialize, Serialize};

/// The rules raised for one shop (by name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    pub raised: Vec<String>,
}

/// The value a rule watches in a snapshot.
pub fn metric_value(rule: &AlertRule, window_days: &[u32], v: &ShopValues) -> Option<f64> {
    let window = || {
        let days = rule.window?.0;
        window_days.iter().position(|d| *d == days).map(|i| &v.windows[i])
    };
    match rule.metric {
        AlertMetric::RefundRate => window()?.refund_rate(),
        AlertMetric::DisputeRefundRate => window()?.dispute_refund_rate(),
        AlertMetric::QualityRefundRate => window()?.quality_refund_rate(),
        AlertMetric::InterventionRate => window()?.intervention_rate(),
        AlertMetric::SelfCompletionRate => window()?.self_completion_rate(),
        AlertMetric::AvgRefundHours => window()?.avg_refund_hours(),
        AlertMetric::ManualRefundRate => window()?.manual_refund_rate(),
        AlertMetric::LateShipmentRate => window()?.late_shipment_rate(),
        AlertMetric::SatisfactionRate => window()?.satisfaction_rate(),
        AlertMetric::DsrDescription => v.dsr_score(0),
        AlertMetric::DsrService => v.dsr_score(1),
        AlertMetric::DsrLogistics => v.dsr_score(2),
        AlertMetric::CampaignEligible => Some(if v.campaign_failures().is_empty() { 1.0 } else { 0.0 }),
    }
}

/// The rule as text, e.g. `refund_rate[30d] > 0.05`.
pub fn condition_text(rule: &AlertRule) -> String {
    let op =
        serde_json::to_value(rule.op).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    match (rule.metric, rule.window) {
        (AlertMetric::CampaignEligible, _) => {
            format!("campaign_eligible {op} {}", if rule.threshold == 0.0 { "false" } else { "true" })
        }
        (m, Some(w)) => format!("{}[{w}] {op} {}", m.as_str(), rule.threshold),
        (m, None) => format!("{} {op} {}", m.as_str(), rule.threshold),
    }
}

/// Evaluates every rule on a new snapshot, updates `state`, and returns the transitions.
pub fn evaluate(rules: &[AlertRule], snap: &Snapshot, state: &mut AlertState) -> Vec<Alert> {
    let mut out = Vec::new();
    for rule in rules {
        let value = metric_value(rule, &snap.window_days, &snap.values);
        let holds = rule.holds(value);
        let was = state.raised.contains(&rule.name);
        if holds == was {
            continue;
        }
        if holds {
            state.raised.push(rule.name.clone());
        } else {
            state.raised.retain(|r| *r != rule.name);
        }
        out.push(Alert {
            shop_id: snap.shop_id.clone(),
            rule: rule.name.clone(),
            state: if holds { "RAISED" } else { "CLEARED" },
            condition: condition_text(rule),
            value,
            as_of: snap.as_of,
        });
    }
    out
}
