//! Per-order and per-refund facts, and the "earliest report wins" rule of SPEC §9.
//!
//! One fact reported twice under different `event_id`s counts once, at the earliest
//! (`event_time`, `event_id`). When a later-arriving report is earlier, the fact moves to
//! the earlier day; the caller moves the day counters accordingly.

use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

/// A fact's time and the event that reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub time: Timestamp,
    pub event_id: String,
}

impl Fact {
    pub fn new(time: Timestamp, event_id: &str) -> Fact {
        Fact {
            time,
            event_id: event_id.to_owned(),
        }
    }

    /// Whether `self` is earlier than `other` by (`event_time`, `event_id`).
    pub fn is_before(&self, other: &Fact) -> bool {
        (self.time, &self.event_id) < (other.time, &other.event_id)
    }
}

/// Keeps the earliest of the stored and the new report. Returns the previous fact when
/// the new one replaced it (`Some(None)` when there was none), or `None` when the stored
/// one stays.
pub fn keep_earliest(slot: &mut Option<Fact>, new: Fact) -> Option<Option<Fact>> {
    match slot {
        Some(old) if !new.is_before(old) => None,
        _ => Some(slot.replace(new)),
    }
}

/// What state keeps per order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// The earliest `order.paid`.
    pub paid: Option<Fact>,
}

/// What state keeps per refund.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFacts {
    /// The earliest `REQUESTED`.
    pub requested: Option<Fact>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_by_time_then_event_id() {
        let mut slot = None;
        assert_eq!(
            keep_earliest(&mut slot, Fact::new(Timestamp(10), "b")),
            Some(None)
        );
        assert_eq!(
            keep_earliest(&mut slot, Fact::new(Timestamp(10), "c")),
            None
        );
        assert_eq!(
            keep_earliest(&mut slot, Fact::new(Timestamp(10), "a")),
            Some(Some(Fact::new(Timestamp(10), "b")))
        );
        assert_eq!(
            keep_earliest(&mut slot, Fact::new(Timestamp(11), "0")),
            None
        );
        assert_eq!(slot, Some(Fact::new(Timestamp(10), "a")));
    }
}
