//! Per-order and per-refund facts, the "earliest report wins" rule of SPEC §9, and what
//! each entity contributes to the day counters.
//!
//! One fact reported twice under different `event_id`s counts once, at the earliest
//! (`event_time`, `event_id`); the latest `PLATFORM_RULED` and the latest reason are the
//! exceptions the spec names. Facts are stored whatever their arrival order (a logistics
//! update before its `order.paid`), and contributions are recomputed from the facts, so the
//! result does not depend on arrival order.

use super::metrics::{Contribution, DayCounters};
use super::origins::{Origins, Pos};
use crate::domain::*;
use serde::{Deserialize, Serialize};

/// A fact's time and the event that reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub time: Timestamp,
    pub event_id: String,
    /// Where the event was read (for compensation lineage), its topic or file by number.
    pub source: Pos,
}

impl Fact {
    pub fn new(time: Timestamp, event_id: &str, source: Pos) -> Fact {
        Fact { time, event_id: event_id.to_owned(), source }
    }

    /// Whether `self` is earlier than `other` by (`event_time`, `event_id`).
    pub fn is_before(&self, other: &Fact) -> bool {
        (self.time, &self.event_id) < (other.time, &other.event_id)
    }
}

/// A fact with a payload, ordered like [`Fact`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct With<T> {
    pub fact: Fact,
    pub value: T,
}

/// Keeps the earliest report in `slot`; returns whether it changed.
pub fn keep_earliest<T>(slot: &mut Option<With<T>>, fact: Fact, value: T) -> bool {
    match slot {
        Some(old) if !fact.is_before(&old.fact) => false,
        _ => {
            *slot = Some(With { fact, value });
            true
        }
    }
}

/// Keeps the latest report in `slot`; returns whether it changed.
pub fn keep_latest<T>(slot: &mut Option<With<T>>, fact: Fact, value: T) -> bool {
    match slot {
        Some(old) if !old.fact.is_before(&fact) => false,
        _ => {
            *slot = Some(With { fact, value });
            true
        }
    }
}

/// The payment details of an order (from its earliest `order.paid`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub buyer_id: String,
    pub amount_fen: i64,
    pub ship_deadline: Timestamp,
    pub fulfillment: Fulfillment,
    pub delivery_promise: DeliveryPromise,
    pub promised_delivery_by: Option<Timestamp>,
}

/// What state keeps per order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub paid: Option<With<Payment>>,
    pub closed: Option<With<()>>,
    /// Earliest `order.completed`, with its buyer.
    pub completed: Option<With<String>>,
    /// Earliest `order.rated`: buyer and (description, service, logistics).
    pub rated: Option<With<(String, [u8; 3])>>,
    pub picked_up: Option<With<()>>,
    pub outbound: Option<With<()>>,
    /// Sorting-center status reports, in (time, `event_id`) order.
    pub sorting: Vec<Fact>,
    pub delivered: Option<With<()>>,
    pub door_delivered: Option<With<()>>,
    /// The watermark has passed `ship_deadline` (the deadline timer fired).
    pub deadline_passed: bool,
    /// A refund of this order has a confirmed malicious-buyer label (SPEC §4).
    pub protected: bool,
    /// Refunds seen for this order, sorted.
    pub refunds: Vec<String>,
    /// The order's late-shipment group was decided (its compensation, if any, emitted).
    pub late_decided: bool,
    /// The delivery promise was decided.
    pub promise_decided: bool,
    /// The latest event time of any event about this order (retention).
    pub last_activity: Timestamp,
}

impl OrderFacts {
    /// The shipped time (SPEC §5): the first `PICKED_UP`; for Cainiao orders also the first
    /// sorting status strictly after the earliest `WAREHOUSE_OUTBOUND`, whichever is earliest.
    pub fn shipped(&self) -> Option<&Fact> {
        let pickup = self.picked_up.as_ref().map(|w| &w.fact);
        let cainiao = self.paid.as_ref().is_some_and(|p| p.value.fulfillment == Fulfillment::Cainiao);
        let sorted = match (&self.outbound, cainiao) {
            (Some(out), true) => self
                .sorting
                .iter()
                .filter(|s| s.time > out.fact.time)
                .min_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id))),
            _ => None,
        };
        match (pickup, sorted) {
            (Some(p), Some(s)) => Some(if s.is_before(p) { s } else { p }),
            (p, s) => p.or(s),
        }
    }

    /// A second copy of an already applied event, read at `source`: when both copies came from
    /// Kafka, the fact keeps the smaller position (topic, partition, offset) for its lineage.
    /// Copies in different partitions arrive in any interleaving; this makes the lineage the
    /// same whichever came first. (In file mode the first copy in stream order stays.)
    /// Returns whether a fact changed.
    pub fn refine_source(&mut self, event_id: &str, source: Pos, origins: &Origins) -> bool {
        let singles = [
            slot(&mut self.paid),
            slot(&mut self.closed),
            slot(&mut self.completed),
            slot(&mut self.rated),
            slot(&mut self.picked_up),
            slot(&mut self.outbound),
            slot(&mut self.delivered),
            slot(&mut self.door_delivered),
        ];
        let facts = singles.into_iter().flatten().chain(&mut self.sorting);
        refine_sources(facts, event_id, source, origins)
    }

    /// Closed at or before `t`.
    pub fn closed_by(&self, t: Timestamp) -> bool {
        self.closed.as_ref().is_some_and(|c| c.fact.time <= t)
    }

    /// Records a logistics status; returns whether any fact changed.
    pub fn record_logistics(&mut self, status: LogisticsStatus, fact: Fact) -> bool {
        match status {
            LogisticsStatus::PickedUp => keep_earliest(&mut self.picked_up, fact, ()),
            LogisticsStatus::WarehouseOutbound => keep_earliest(&mut self.outbound, fact, ()),
            LogisticsStatus::Delivered => keep_earliest(&mut self.delivered, fact, ()),
            LogisticsStatus::DoorDelivered => keep_earliest(&mut self.door_delivered, fact, ()),
            s if s.is_sorting() => {
                // Kept in (time, event_id) order, not arrival order, so the stored bytes do
                // not depend on how the input interleaved (tests/commit_determinism.rs).
                let at = self.sorting.partition_point(|f| f.is_before(&fact));
                self.sorting.insert(at, fact);
                true
            }
            _ => false,
        }
    }

    /// What the order contributes to the day counters: `paid_orders` on the payment day;
    /// once the deadline has passed and unless closed by then, `ship_due_orders` (and
    /// `late_shipments` if not shipped by then) on the deadline day.
    pub fn contribution(&self) -> Contribution {
        let mut out = Contribution::new();
        if let Some(p) = &self.paid {
            out.push((p.fact.time.day(), DayCounters { paid_orders: 1, ..Default::default() }));
            let deadline = p.value.ship_deadline;
            if self.deadline_passed && !self.closed_by(deadline) {
                let late = self.shipped().is_none_or(|s| s.time > deadline);
                out.push((
                    deadline.day(),
                    DayCounters { ship_due_orders: 1, late_shipments: late as i64, ..Default::default() },
                ));
            }
        }
        out
    }
}

/// The fact slot of an optional fact.
fn slot<T>(w: &mut Option<With<T>>) -> Option<&mut Fact> {
    w.as_mut().map(|w| &mut w.fact)
}

/// Gives each of `facts` that came from `event_id` the position `source` if that comes
/// first by (topic name, partition, offset); returns whether any changed.
fn refine_sources<'a>(
    facts: impl Iterator<Item = &'a mut Fact>,
    event_id: &str,
    source: Pos,
    origins: &Origins,
) -> bool {
    let mut changed = false;
    for f in facts {
        if f.event_id == event_id && origins.kafka_before(&source, &f.source) {
            f.source = source;
            changed = true;
        }
    }
    changed
}

/// What state keeps per refund.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFacts {
    pub order_id: String,
    /// Earliest `REQUESTED`: kind and amount.
    pub requested: Option<With<(RefundKind, i64)>>,
    /// Latest reason among `REQUESTED`/`MODIFIED`.
    pub reason: Option<With<RefundReason>>,
    /// First `PLATFORM_INTERVENED`.
    pub intervened: Option<With<()>>,
    /// Latest `PLATFORM_RULED`.
    pub ruled: Option<With<Liable>>,
    /// Earliest `COMPLETED`: refunded, closed_by.
    pub completed: Option<With<(bool, ClosedBy)>>,
    /// A malicious-buyer label was confirmed on this refund.
    pub labeled: bool,
    /// The latest event time of any stage of this refund (retention).
    pub last_activity: Timestamp,
}

impl RefundFacts {
    /// Records a stage; returns whether any fact changed.
    pub fn record(&mut self, stage: &RefundStage, fact: Fact) -> bool {
        match stage {
            RefundStage::Requested { kind, reason, amount_fen } => {
                let a = keep_latest(&mut self.reason, fact.clone(), *reason);
                let b = keep_earliest(&mut self.requested, fact, (*kind, *amount_fen));
                a || b
            }
            RefundStage::Modified { reason, .. } => keep_latest(&mut self.reason, fact, *reason),
            RefundStage::PlatformIntervened => keep_earliest(&mut self.intervened, fact, ()),
            RefundStage::PlatformRuled { liable } => keep_latest(&mut self.ruled, fact, *liable),
            RefundStage::Completed { refunded, closed_by } => {
                keep_earliest(&mut self.completed, fact, (*refunded, *closed_by))
            }
            RefundStage::LabelConfirmed { .. } => !std::mem::replace(&mut self.labeled, true),
            RefundStage::MerchantAgreed
            | RefundStage::MerchantRejected
            | RefundStage::ReturnShipped { .. }
            | RefundStage::ReturnReceived => false,
        }
    }

    /// A second copy of an already applied stage, read at `source`: as
    /// [`OrderFacts::refine_source`], so the stored facts do not depend on which copy came
    /// first. Returns whether a fact changed.
    pub fn refine_source(&mut self, event_id: &str, source: Pos, origins: &Origins) -> bool {
        let singles = [
            slot(&mut self.requested),
            slot(&mut self.reason),
            slot(&mut self.intervened),
            slot(&mut self.ruled),
            slot(&mut self.completed),
        ];
        refine_sources(singles.into_iter().flatten(), event_id, source, origins)
    }

    /// What the refund contributes to the day counters (nothing when its order is
    /// protected by a confirmed label).
    pub fn contribution(&self, protected: bool) -> Contribution {
        let mut out = Contribution::new();
        if protected {
            return out;
        }
        if let Some(r) = &self.requested {
            out.push((r.fact.time.day(), DayCounters { refunds_requested: 1, ..Default::default() }));
        }
        if let Some(i) = &self.intervened {
            out.push((i.fact.time.day(), DayCounters { interventions: 1, ..Default::default() }));
        }
        if let Some(c) = &self.completed {
            let (refunded, closed_by) = c.value;
            let intervened = self.intervened.is_some();
            let merchant_liable = self.ruled.as_ref().is_some_and(|r| r.value == Liable::Merchant);
            let quality = self.reason.as_ref().is_some_and(|r| r.value.is_quality());
            let mut d = DayCounters {
                completed_refunds: 1,
                self_completed_refunds: (closed_by != ClosedBy::Platform) as i64,
                dispute_refunds: (refunded && intervened && merchant_liable) as i64,
                quality_refunds: (refunded && quality) as i64,
                manual_refunds: (refunded && intervened) as i64,
                ..Default::default()
            };
            if let (false, Some(r)) = (intervened, &self.requested) {
                d.refund_ms_sum = c.fact.time.0 - r.fact.time.0;
                d.refund_ms_count = 1;
            }
            out.push((c.fact.time.day(), d));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_duplicate_from_a_smaller_kafka_position_becomes_the_lineage_source() {
        let mut origins = Origins::default();
        let mut at = |topic: &str, partition, offset| {
            origins.pos(&SourcePos::Kafka { topic: topic.into(), partition, offset })
        };
        let (first, later, other, smaller) =
            (at("t2", 2, 40), at("t2", 2, 41), at("t2", 0, 1), at("t2", 1, 99));
        // Numbered after "t2", but sorting before it by name.
        let other_topic = at("t1", 9, 999);
        let mut o = OrderFacts::default();
        keep_earliest(&mut o.picked_up, Fact::new(Timestamp(5), "e1", first), ());
        assert!(!o.refine_source("e1", later, &origins), "a later position changes nothing");
        assert!(!o.refine_source("e2", other, &origins), "another event changes nothing");
        assert!(o.refine_source("e1", smaller, &origins));
        assert_eq!(o.picked_up.as_ref().unwrap().fact.source, smaller);
        assert!(o.refine_source("e1", other_topic, &origins), "topics compare by name");
        assert_eq!(o.picked_up.as_ref().unwrap().fact.source, other_topic);
        // File positions keep the first copy in stream order.
        let mut line = |line| origins.pos(&SourcePos::File { file: "f".into(), line });
        let (nine, one) = (line(9), line(1));
        let mut o = OrderFacts::default();
        keep_earliest(&mut o.closed, Fact::new(Timestamp(5), "e1", nine), ());
        assert!(!o.refine_source("e1", one, &origins));
    }

    #[test]
    fn a_refund_keeps_the_smaller_kafka_position_of_a_duplicate_stage() {
        let mut origins = Origins::default();
        let mut at =
            |partition, offset| origins.pos(&SourcePos::Kafka { topic: "refunds".into(), partition, offset });
        let (first, smaller) = (at(2, 7), at(0, 30));
        let mut r = RefundFacts::default();
        let stage = RefundStage::PlatformIntervened;
        assert!(r.record(&stage, Fact::new(Timestamp(5), "e1", first)));
        assert!(!r.refine_source("e2", smaller, &origins), "another event changes nothing");
        assert!(r.refine_source("e1", smaller, &origins));
        assert_eq!(r.intervened.as_ref().unwrap().fact.source, smaller);
        assert!(!r.refine_source("e1", first, &origins), "a later position changes nothing");
    }

    #[test]
    fn sorting_reports_are_kept_in_time_order_whatever_their_arrival() {
        let mut a = OrderFacts::default();
        let mut b = OrderFacts::default();
        let reports = [f(30, "x"), f(10, "y"), f(20, "z"), f(10, "w")];
        for r in &reports {
            a.record_logistics(LogisticsStatus::Sorted, r.clone());
        }
        for r in reports.iter().rev() {
            b.record_logistics(LogisticsStatus::Sorted, r.clone());
        }
        assert_eq!(a, b);
        let ids: Vec<&str> = a.sorting.iter().map(|f| f.event_id.as_str()).collect();
        assert_eq!(ids, ["w", "y", "z", "x"]);
    }

    use super::*;
    use crate::output::SourcePos;

    fn f(t: i64, id: &str) -> Fact {
        Fact::new(Timestamp(t), id, Pos::File { origin: 0, line: 1 })
    }

    #[test]
    fn earliest_by_time_then_event_id() {
        let mut slot = None;
        assert!(keep_earliest(&mut slot, f(10, "b"), 1));
        assert!(!keep_earliest(&mut slot, f(10, "c"), 2));
        assert!(keep_earliest(&mut slot, f(10, "a"), 3));
        assert!(!keep_earliest(&mut slot, f(11, "0"), 4));
        assert_eq!(slot.unwrap().value, 3);
    }

    #[test]
    fn cainiao_sorting_counts_only_after_outbound() {
        let paid = With {
            fact: f(0, "p"),
            value: Payment {
                buyer_id: "b".into(),
                amount_fen: 1,
                ship_deadline: Timestamp(100),
                fulfillment: Fulfillment::Cainiao,
                delivery_promise: DeliveryPromise::None,
                promised_delivery_by: None,
            },
        };
        let mut o = OrderFacts { paid: Some(paid), ..Default::default() };
        o.record_logistics(LogisticsStatus::AtSortingCenter, f(5, "s1"));
        assert_eq!(o.shipped(), None, "no outbound yet");
        o.record_logistics(LogisticsStatus::WarehouseOutbound, f(7, "w"));
        assert_eq!(o.shipped(), None, "sorting before outbound does not count");
        o.record_logistics(LogisticsStatus::Sorted, f(9, "s2"));
        assert_eq!(o.shipped().unwrap().time, Timestamp(9));
        o.record_logistics(LogisticsStatus::PickedUp, f(8, "pu"));
        assert_eq!(o.shipped().unwrap().time, Timestamp(8));
        // A merchant-fulfilled order ignores sorting statuses.
        o.paid.as_mut().unwrap().value.fulfillment = Fulfillment::Merchant;
        o.picked_up = None;
        assert_eq!(o.shipped(), None);
    }

    /// The engine skips the order's state for statuses that are not recorded
    /// ([`LogisticsStatus::is_recorded`]); this checks that those are exactly the statuses
    /// `record_logistics` ignores, on an empty order and on one holding every fact.
    #[test]
    fn statuses_the_engine_skips_are_exactly_those_no_fact_keeps() {
        let pos = Origins::default().pos(&SourcePos::File { file: "f".into(), line: 1 });
        let mut full = OrderFacts::default();
        for (i, s) in LogisticsStatus::ALL.iter().enumerate() {
            full.record_logistics(*s, Fact::new(Timestamp(i as i64 + 10), "early", pos));
        }
        for s in LogisticsStatus::ALL {
            let mut empty = OrderFacts::default();
            let changed_empty = empty.record_logistics(*s, Fact::new(Timestamp(1), "x", pos));
            let mut held = full.clone();
            let changed_full = held.record_logistics(*s, Fact::new(Timestamp(1), "x", pos));
            assert_eq!(changed_empty, s.is_recorded(), "{s:?} on an empty order");
            assert_eq!(changed_full, s.is_recorded(), "{s:?} on an order with every fact");
            if !s.is_recorded() {
                assert_eq!(held, full, "{s:?} changed a fact");
            }
        }
    }
}
