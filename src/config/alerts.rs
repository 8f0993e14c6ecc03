//! `[[alerts]]` rules: `metric[window] op threshold`, e.g. `refund_rate[30d] > 0.05`.

use serde::{Deserialize, Serialize};

use super::serde_util::{self, WindowDays};

/// One `[[alerts]]` rule: `metric[window] op threshold`, e.g. `refund_rate[30d] > 0.05`.
///
/// `campaign_eligible` is a boolean: write `op = "=="` and `threshold = false` (or `0`) to alert
/// when a shop is not eligible, `threshold = true` (or `1`) for the opposite; it takes no window.
/// The DSR metrics take no window either (they always use `windows.dsr_days`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique rule name, part of the alert key.
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub name: String,
    pub metric: AlertMetric,
    /// `"30d"`: one of `windows.days`; absent for DSR metrics and `campaign_eligible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowDays>,
    pub op: AlertOp,
    /// Compared with the metric value; for `campaign_eligible`, false = 0 and true = 1.
    #[serde(deserialize_with = "serde_util::number_or_bool")]
    pub threshold: f64,
}

impl AlertRule {
    /// True when the rule holds for `value`; a `null` metric (zero denominator) never holds.
    pub fn holds(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| self.op.apply(v, self.threshold))
    }
}

/// Metrics an alert rule can watch (SPEC §4 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    RefundRate,
    DisputeRefundRate,
    QualityRefundRate,
    InterventionRate,
    SelfCompletionRate,
    AvgRefundHours,
    ManualRefundRate,
    LateShipmentRate,
    SatisfactionRate,
    DsrDescription,
    DsrService,
    DsrLogistics,
    CampaignEligible,
}

impl AlertMetric {
    pub const ALL: [AlertMetric; 13] = [
        AlertMetric::RefundRate,
        AlertMetric::DisputeRefundRate,
        AlertMetric::QualityRefundRate,
        AlertMetric::InterventionRate,
        AlertMetric::SelfCompletionRate,
        AlertMetric::AvgRefundHours,
        AlertMetric::ManualRefundRate,
        AlertMetric::LateShipmentRate,
        AlertMetric::SatisfactionRate,
        AlertMetric::DsrDescription,
        AlertMetric::DsrService,
        AlertMetric::DsrLogistics,
        AlertMetric::CampaignEligible,
    ];

    /// The configuration name, e.g. `"refund_rate"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::RefundRate => "refund_rate",
            AlertMetric::DisputeRefundRate => "dispute_refund_rate",
            AlertMetric::QualityRefundRate => "quality_refund_rate",
            AlertMetric::InterventionRate => "intervention_rate",
            AlertMetric::SelfCompletionRate => "self_completion_rate",
            AlertMetric::AvgRefundHours => "avg_refund_hours",
            AlertMetric::ManualRefundRate => "manual_refund_rate",
            AlertMetric::LateShipmentRate => "late_shipment_rate",
            AlertMetric::SatisfactionRate => "satisfaction_rate",
            AlertMetric::DsrDescription => "dsr_description",
            AlertMetric::DsrService => "dsr_service",
            AlertMetric::DsrLogistics => "dsr_logistics",
            AlertMetric::CampaignEligible => "campaign_eligible",
        }
    }

    /// True for metrics computed per `windows.days` window (they need `window`).
    pub fn is_windowed(self) -> bool {
        !matches!(
            self,
            AlertMetric::DsrDescription
                | AlertMetric::DsrService
                | AlertMetric::DsrLogistics
                | AlertMetric::CampaignEligible
        )
    }
}

/// Comparison of an alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertOp {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
}

impl AlertOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertOp::Gt => ">",
            AlertOp::Ge => ">=",
            AlertOp::Lt => "<",
            AlertOp::Le => "<=",
            AlertOp::Eq => "==",
        }
    }

    /// `value op threshold`.
    pub fn apply(self, value: f64, threshold: f64) -> bool {
        match self {
            AlertOp::Gt => value > threshold,
            AlertOp::Ge => value >= threshold,
            AlertOp::Lt => value < threshold,
            AlertOp::Le => value <= threshold,
            AlertOp::Eq => value == threshold,
        }
    }
}
