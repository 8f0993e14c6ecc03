//! Per-day counters and their window sums (SPEC §4).
//!
//! State keeps one [`DayCounters`] per shop and Asia/Shanghai day; a window's figures are
//! the sum of its days ([`WindowCounts`]), and rates are derived from counts only when a
//! snapshot is written, so comparing two snapshots compares exact integers.

use serde::{Deserialize, Serialize};

/// One shop's counters for one day. Every field is a count of facts whose own timestamp
/// falls on that day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounters {
    /// Orders whose (earliest) `order.paid` is on this day.
    pub paid_orders: i64,
    /// Refunds whose (earliest) `REQUESTED` is on this day.
    pub refunds_requested: i64,
}

impl DayCounters {
    /// Whether every counter is zero (the bucket can be deleted).
    pub fn is_zero(&self) -> bool {
        *self == DayCounters::default()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DayCounters) {
        self.paid_orders += other.paid_orders;
        self.refunds_requested += other.refunds_requested;
    }
}

/// The sums of one window.
pub type WindowCounts = DayCounters;

/// `num / den`, or `None` for a zero denominator (SPEC §4: null, never NaN).
pub fn rate(num: i64, den: i64) -> Option<f64> {
    if den == 0 {
        None
    } else {
        Some(num as f64 / den as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_null_on_zero_denominator() {
        assert_eq!(rate(3, 0), None);
        assert_eq!(rate(9, 120), Some(0.075));
        assert_eq!(rate(3, 2), Some(1.5));
    }
}
