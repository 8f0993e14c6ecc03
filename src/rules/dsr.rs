//! DSR ratings (SPEC §4, seed 000 (6)): validity and the three-per-month rule.
//!
//! A rating counts only if given within 15 days after the trade's `order.completed`
//! (0 ≤ rated − completed ≤ 15 × 24 h). For one buyer and one shop, per natural month of
//! trade success, only the 3 valid ratings with the earliest trade-success times count
//! (ties: smaller `order_id`). A [`DsrGroup`] holds one such month's valid ratings; its
//! contribution is the top three, so a late rating of an earlier trade displaces the third
//! one when the engine swaps the group's old contribution for the new one.

use super::facts::OrderFacts;
use super::metrics::{Contribution, DayCounters};
use crate::domain::time::DAY_MS;
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

/// Ratings that count per buyer, shop and month.
pub const PER_MONTH: usize = 3;
/// A rating must come within this long after completion.
pub const VALIDITY_MS: i64 = 15 * DAY_MS;

/// A valid rating of one trade.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DsrEntry {
    pub completed: Timestamp,
    pub order_id: String,
    pub scores: [u8; 3],
}

/// Where a valid rating belongs: buyer and month of trade success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRef {
    pub buyer: String,
    pub month: i32,
}

/// The valid rating an order's facts give, if any, with its group.
pub fn valid_rating(order_id: &str, o: &OrderFacts) -> Option<(GroupRef, DsrEntry)> {
    let completed = o.completed.as_ref()?;
    let rated = o.rated.as_ref()?;
    let gap = rated.fact.time.0 - completed.fact.time.0;
    if !(0..=VALIDITY_MS).contains(&gap) {
        return None;
    }
    Some((
        GroupRef { buyer: completed.value.clone(), month: completed.fact.time.month() },
        DsrEntry { completed: completed.fact.time, order_id: order_id.to_owned(), scores: rated.value.1 },
    ))
}

/// One buyer's valid ratings of one shop for one month of trade success, kept sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsrGroup {
    pub entries: Vec<DsrEntry>,
}

impl DsrGroup {
    pub fn insert(&mut self, e: DsrEntry) {
        let at = self.entries.partition_point(|x| x < &e);
        self.entries.insert(at, e);
    }

    pub fn remove(&mut self, e: &DsrEntry) {
        self.entries.retain(|x| x != e);
    }

    /// The counted ratings (the earliest three by trade success, then `order_id`).
    pub fn contribution(&self) -> Contribution {
        self.entries
            .iter()
            .take(PER_MONTH)
            .map(|e| {
                let s = e.scores.map(i64::from);
                (e.completed.day(), DayCounters { dsr_sum: s, dsr_count: 1, ..Default::default() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: i64, id: &str, s: u8) -> DsrEntry {
        DsrEntry { completed: Timestamp(t), order_id: id.into(), scores: [s; 3] }
    }

    #[test]
    fn only_first_three_by_completion_count_and_late_earlier_trade_displaces_third() {
        let mut g = DsrGroup::default();
        for (t, id) in [(5, "o5"), (2, "o2"), (9, "o9"), (7, "o7")] {
            g.insert(e(t * DAY_MS, id, 5));
        }
        let ids = |g: &DsrGroup| g.entries.iter().take(3).map(|x| x.order_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&g), ["o2", "o5", "o7"]);
        g.insert(e(DAY_MS, "o1", 1));
        assert_eq!(ids(&g), ["o1", "o2", "o5"]);
        let c = g.contribution();
        assert_eq!(c.iter().map(|(_, d)| d.dsr_count).sum::<i64>(), 3);
        assert_eq!(c.iter().map(|(_, d)| d.dsr_sum[0]).sum::<i64>(), 1 + 5 + 5);
        // Ties on completion time: smaller order_id first.
        let mut g = DsrGroup::default();
        for id in ["ob", "oa", "od", "oc"] {
            g.insert(e(DAY_MS, id, 4));
        }
        assert_eq!(ids(&g), ["oa", "ob", "oc"]);
    }
}
