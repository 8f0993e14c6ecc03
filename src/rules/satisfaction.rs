//! Customer-service satisfaction (SPEC §4, seed 001, the new 口径): which ratings count.
//!
//! A rating does not count if it is flagged (`ROBOT`, `SUSPECTED_FRAUD`); or the same buyer
//! already has `max_per_buyer` counted ratings of the shop in the same natural month; or it
//! comes less than `min_interval` after the same buyer's previous rating of the shop, of any
//! status. These are decided over the buyer's whole history in event time (ordering ties by
//! `event_id`), so a [`ServiceHistory`] keeps one buyer's ratings of one shop and its
//! contribution is recomputed whenever a rating arrives, in whatever order.

use super::metrics::{service_slot, Contribution, DayCounters};
use crate::domain::{Handler, Phase, Timestamp};
use serde::{Deserialize, Serialize};

/// The exclusion parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SatisfactionRules {
    pub max_per_buyer: u32,
    pub min_interval_ms: i64,
}

impl Default for SatisfactionRules {
    fn default() -> Self {
        SatisfactionRules { max_per_buyer: 3, min_interval_ms: 10 * 60_000 }
    }
}

/// One service rating as far as counting is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub time: Timestamp,
    pub event_id: String,
    pub flagged: bool,
    pub handler: Handler,
    pub phase: Phase,
    pub satisfied: bool,
}

/// One buyer's ratings of one shop, in (`event_time`, `event_id`) order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHistory {
    pub entries: Vec<ServiceEntry>,
}

impl ServiceHistory {
    pub fn insert(&mut self, e: ServiceEntry) {
        let key = |x: &ServiceEntry| (x.time, x.event_id.clone());
        let at = self.entries.partition_point(|x| key(x) < key(&e));
        self.entries.insert(at, e);
    }

    /// Which entries count, in order.
    pub fn counted(&self, rules: SatisfactionRules) -> Vec<bool> {
        let mut out = Vec::with_capacity(self.entries.len());
        let mut month = None;
        let mut in_month = 0u32;
        let mut previous: Option<Timestamp> = None;
        for e in &self.entries {
            let m = e.time.month();
            if month != Some(m) {
                month = Some(m);
                in_month = 0;
            }
            let too_soon = previous.is_some_and(|p| e.time.0 - p.0 < rules.min_interval_ms);
            let counts = !e.flagged && !too_soon && in_month < rules.max_per_buyer;
            if counts {
                in_month += 1;
            }
            previous = Some(e.time);
            out.push(counts);
        }
        out
    }

    /// The counted ratings' contribution, on the days they were given.
    pub fn contribution(&self, rules: SatisfactionRules) -> Contribution {
        self.entries
            .iter()
            .zip(self.counted(rules))
            .filter(|(_, c)| *c)
            .map(|(e, _)| {
                let mut d = DayCounters::default();
                let slot = service_slot(e.handler, e.phase);
                d.service_ratings[slot] = 1;
                d.satisfied_ratings[slot] = e.satisfied as i64;
                (e.time.day(), d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIN: i64 = 60_000;

    fn e(min: i64, id: &str, flagged: bool) -> ServiceEntry {
        ServiceEntry {
            time: Timestamp(1_717_171_200_000 + min * MIN), // 2024-06-01T00:00+08:00
            event_id: id.into(),
            flagged,
            handler: Handler::Human,
            phase: Phase::PreSale,
            satisfied: true,
        }
    }

    #[test]
    fn flags_interval_and_monthly_cap() {
        let mut h = ServiceHistory::default();
        h.insert(e(0, "a", false)); // counts
        h.insert(e(5, "b", false)); // 5 min after a: too soon
        h.insert(e(20, "c", true)); // flagged
        h.insert(e(25, "d", false)); // 5 min after flagged c: too soon (any status)
        h.insert(e(40, "e", false)); // counts
        h.insert(e(60, "f", false)); // counts (3rd)
        h.insert(e(80, "g", false)); // cap reached
        assert_eq!(h.counted(SatisfactionRules::default()), [true, false, false, false, true, true, false]);
        // Next natural month resets the cap.
        h.insert(e(30 * 24 * 60 + 10, "h", false));
        assert_eq!(h.counted(SatisfactionRules::default()).last(), Some(&true));
    }

    #[test]
    fn out_of_order_arrival_gives_same_result() {
        let ids = [(0, "a"), (5, "b"), (12, "c"), (30, "d"), (31, "e"), (50, "f")];
        let mut fwd = ServiceHistory::default();
        let mut rev = ServiceHistory::default();
        for (m, id) in ids {
            fwd.insert(e(m, id, false));
        }
        for (m, id) in ids.iter().rev() {
            rev.insert(e(*m, id, false));
        }
        assert_eq!(fwd, rev);
        assert_eq!(
            fwd.contribution(SatisfactionRules::default()),
            rev.contribution(SatisfactionRules::default())
        );
    }
}
