//! Event-time watermark tracking (SPEC §3).
//!
//! Per input partition: the largest event time seen minus the out-of-orderness bound.
//! The processor's watermark is the minimum over active partitions, never moves back,
//! and does not wait for partitions the caller has marked idle. Wall-clock time enters
//! only through that idle marking, which the async layer decides; this type is pure.

use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionClock {
    max_event_time: Option<Timestamp>,
    idle: bool,
}

/// The watermark state; persisted with every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    partitions: BTreeMap<i32, PartitionClock>,
    current: Option<Timestamp>,
}

impl Watermark {
    /// The processor's current watermark (None before any event).
    pub fn current(&self) -> Option<Timestamp> {
        self.current
    }

    /// Records an applied event's time on a partition (the partition becomes active).
    pub fn observe(&mut self, partition: i32, t: Timestamp) {
        let p = self.partitions.entry(partition).or_default();
        p.idle = false;
        if p.max_event_time.is_none_or(|m| t > m) {
            p.max_event_time = Some(t);
        }
    }

    /// Makes a partition known before its first event: until it has one (or is marked idle)
    /// it holds the watermark back, so a partition read later than the others cannot find
    /// its events already behind the watermark. Keeps what is known of a partition.
    pub fn register(&mut self, partition: i32) {
        self.partitions.entry(partition).or_default();
    }

    /// Marks a partition idle or active (idle partitions do not hold the watermark back).
    pub fn set_idle(&mut self, partition: i32, idle: bool) {
        self.partitions.entry(partition).or_default().idle = idle;
    }

    /// Recomputes the watermark with the out-of-orderness bound; returns the new value.
    /// The watermark never decreases. When every partition is idle (all input read and
    /// quiet), it is the largest event time seen minus the bound: nothing is in flight.
    pub fn advance(&mut self, out_of_orderness_ms: i64) -> Option<Timestamp> {
        let bounded = |p: &PartitionClock| p.max_event_time.map(|t| t.plus_ms(-out_of_orderness_ms));
        let candidate = if self.partitions.values().all(|p| p.idle) {
            self.partitions.values().filter_map(bounded).max()
        } else {
            self.partitions.values().filter(|p| !p.idle).map(bounded).min().flatten()
        };
        self.raise(candidate);
        self.current
    }

    /// Bounded input ended: the watermark becomes the largest event time seen (SPEC §8).
    pub fn finish(&mut self) -> Option<Timestamp> {
        let max = self.partitions.values().filter_map(|p| p.max_event_time).max();
        self.raise(max);
        self.current
    }

    fn raise(&mut self, candidate: Option<Timestamp>) {
        if let Some(c) = candidate {
            if self.current.is_none_or(|cur| c > cur) {
                self.current = Some(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn minimum_over_active_partitions_never_decreasing() {
        let mut w = Watermark::default();
        w.observe(0, Timestamp(1_000 * MIN));
        w.observe(1, Timestamp(900 * MIN));
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(895 * MIN)));
        w.set_idle(1, true);
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(995 * MIN)));
        // Partition 1 wakes up far behind: the watermark does not go back.
        w.observe(1, Timestamp(901 * MIN));
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(995 * MIN)));
        assert_eq!(w.finish(), Some(Timestamp(1_000 * MIN)));
    }

    #[test]
    fn registered_partition_holds_back_until_it_has_events_or_is_idle() {
        let mut w = Watermark::default();
        w.register(0);
        w.register(1);
        w.observe(0, Timestamp(1_000 * MIN));
        assert_eq!(w.advance(5 * MIN), None);
        w.observe(1, Timestamp(2_000 * MIN));
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(995 * MIN)));
        // Registering again keeps what is known.
        w.register(1);
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(995 * MIN)));
        w.set_idle(0, true);
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(1_995 * MIN)));
    }

    #[test]
    fn all_idle_goes_to_largest_time_minus_bound() {
        let mut w = Watermark::default();
        w.observe(0, Timestamp(1_000 * MIN));
        w.observe(1, Timestamp(900 * MIN));
        w.register(2);
        assert_eq!(w.advance(5 * MIN), None);
        for p in 0..3 {
            w.set_idle(p, true);
        }
        assert_eq!(w.advance(5 * MIN), Some(Timestamp(995 * MIN)));
    }

    #[test]
    fn none_before_events() {
        let mut w = Watermark::default();
        assert_eq!(w.advance(0), None);
        assert_eq!(w.finish(), None);
    }
}
