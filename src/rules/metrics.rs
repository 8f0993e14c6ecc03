//! Per-day counters and their window sums (SPEC §4).
//!
//! State keeps one [`DayCounters`] per shop and Asia/Shanghai day. Every entity (order,
//! refund, rating) *contributes* counts to the days of its own timestamps; when an
//! entity's facts change, the engine subtracts its old contribution and adds the new one,
//! which is how retractions (protected refunds, displaced DSR ratings, excluded service
//! ratings) stay exact. A window's figures are the sum of its days, and rates are derived
//! from counts only when a snapshot is written, so comparing two snapshots compares exact
//! integers.

use crate::domain::{Day, Handler, Phase};
use serde::{Deserialize, Serialize};

/// Declares the counter struct with element-wise `add`/`sub`/`is_zero` over its fields.
macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),+ }

        impl $name {
            /// Adds `other` into `self`.
            pub fn add(&mut self, other: &$name) { $(self.$field.add(&other.$field);)+ }
            /// Subtracts `other` from `self`.
            pub fn sub(&mut self, other: &$name) { $(self.$field.sub(&other.$field);)+ }
            /// Whether every counter is zero (the bucket can be deleted).
            pub fn is_zero(&self) -> bool { true $(&& self.$field.is_zero())+ }
        }
    };
}

/// Element-wise arithmetic for counter fields.
pub trait Count {
    fn add(&mut self, o: &Self);
    fn sub(&mut self, o: &Self);
    fn is_zero(&self) -> bool;
}

impl Count for i64 {
    fn add(&mut self, o: &i64) {
        *self += o;
    }
    fn sub(&mut self, o: &i64) {
        *self -= o;
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl<const N: usize> Count for [i64; N] {
    fn add(&mut self, o: &Self) {
        self.iter_mut().zip(o).for_each(|(a, b)| *a += b);
    }
    fn sub(&mut self, o: &Self) {
        self.iter_mut().zip(o).for_each(|(a, b)| *a -= b);
    }
    fn is_zero(&self) -> bool {
        self.iter().all(|v| *v == 0)
    }
}

counters!(
    /// One shop's counters for one day. Every field counts facts whose own timestamp falls
    /// on that day (SPEC §9: numerators and denominators use their own timestamps).
    DayCounters {
        /// Orders whose (earliest) `order.paid` is on this day.
        paid_orders: i64,
        /// Refunds whose (earliest) `REQUESTED` is on this day.
        refunds_requested: i64,
        /// Refunds completed (refunded) this day after an intervention and a MERCHANT ruling.
        dispute_refunds: i64,
        /// Refunds completed (refunded) this day whose latest reason is quality-related.
        quality_refunds: i64,
        /// Refunds whose first `PLATFORM_INTERVENED` is on this day.
        interventions: i64,
        /// Refunds completed this day.
        completed_refunds: i64,
        /// Of those, not closed by the platform.
        self_completed_refunds: i64,
        /// Sum of (completed − requested) in ms over completed, never-intervened refunds
        /// with a known request.
        refund_ms_sum: i64,
        /// Number of refunds in `refund_ms_sum`.
        refund_ms_count: i64,
        /// Refunds completed (refunded) this day that had an intervention.
        manual_refunds: i64,
        /// Orders whose ship deadline (on this day) has passed, not closed by then.
        ship_due_orders: i64,
        /// Of those, not shipped by the deadline.
        late_shipments: i64,
        /// Counted service ratings given this day, by handler × phase
        /// (see [`service_slot`]).
        service_ratings: [i64; 4],
        /// Of those, `VERY_SATISFIED` or `SATISFIED`.
        satisfied_ratings: [i64; 4],
        /// Counted DSR scores of trades completed this day: description, service, logistics.
        dsr_sum: [i64; 3],
        /// Number of counted DSR ratings of trades completed this day.
        dsr_count: i64,
    }
);

/// The sums of one window.
pub type WindowCounts = DayCounters;

/// The rates of SPEC §4, derived from a window's counts (`None` = null).
impl DayCounters {
    pub fn refund_rate(&self) -> Option<f64> {
        rate(self.refunds_requested, self.paid_orders)
    }
    pub fn dispute_refund_rate(&self) -> Option<f64> {
        rate(self.dispute_refunds, self.paid_orders)
    }
    pub fn quality_refund_rate(&self) -> Option<f64> {
        rate(self.quality_refunds, self.paid_orders)
    }
    pub fn intervention_rate(&self) -> Option<f64> {
        rate(self.interventions, self.paid_orders)
    }
    pub fn self_completion_rate(&self) -> Option<f64> {
        rate(self.self_completed_refunds, self.completed_refunds)
    }
    pub fn avg_refund_hours(&self) -> Option<f64> {
        rate(self.refund_ms_sum, self.refund_ms_count).map(|ms| ms / 3_600_000.0)
    }
    pub fn manual_refund_rate(&self) -> Option<f64> {
        rate(self.manual_refunds, self.paid_orders)
    }
    pub fn late_shipment_rate(&self) -> Option<f64> {
        rate(self.late_shipments, self.ship_due_orders)
    }
    pub fn service_ratings_total(&self) -> i64 {
        self.service_ratings.iter().sum()
    }
    pub fn satisfied_ratings_total(&self) -> i64 {
        self.satisfied_ratings.iter().sum()
    }
    pub fn satisfaction_rate(&self) -> Option<f64> {
        rate(self.satisfied_ratings_total(), self.service_ratings_total())
    }
    /// Satisfaction of one handler × phase slot ([`service_slot`]).
    pub fn satisfaction_rate_of(&self, slot: usize) -> Option<f64> {
        rate(self.satisfied_ratings[slot], self.service_ratings[slot])
    }
}

/// Index of a handler × phase pair in the service arrays, in SPEC §8 output order:
/// HUMAN_PRE_SALE, HUMAN_AFTER_SALE, BOT_PRE_SALE, BOT_AFTER_SALE.
pub fn service_slot(handler: Handler, phase: Phase) -> usize {
    match (handler, phase) {
        (Handler::Human, Phase::PreSale) => 0,
        (Handler::Human, Phase::AfterSale) => 1,
        (Handler::Bot, Phase::PreSale) => 2,
        (Handler::Bot, Phase::AfterSale) => 3,
    }
}

/// Output names of the service slots.
pub const SERVICE_SLOT_NAMES: [&str; 4] =
    ["HUMAN_PRE_SALE", "HUMAN_AFTER_SALE", "BOT_PRE_SALE", "BOT_AFTER_SALE"];

/// What an entity adds to the day buckets: `(day, counts)` pairs (a day may repeat).
pub type Contribution = Vec<(Day, DayCounters)>;

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

    #[test]
    fn add_sub_round_trip_to_zero() {
        let mut a = DayCounters { paid_orders: 2, service_ratings: [1, 0, 0, 3], ..Default::default() };
        let b = a.clone();
        assert!(!a.is_zero());
        a.sub(&b);
        assert!(a.is_zero());
        a.add(&b);
        assert_eq!(a, b);
    }
}
