//! Restated facts: with `restated_per_mille`, an order or refund event is sometimes reported
//! twice, under two `event_id`s, the copies differing in content and event time — the case
//! of SPEC §9 "one fact reported twice": the earliest by (`event_time`, `event_id`) counts
//! (a second payment with another amount, deadline or delivery promise; a second
//! completion, closing, rating, pick-up; a second `REQUESTED`, `COMPLETED`, label), while
//! the latest `PLATFORM_RULED` decides `liable`.
//!
//! Either copy may be the earlier one, sometimes at the same second (then the smaller
//! `event_id` wins), so the story's own event wins in some pairs and loses in others. Both
//! copies lie at or after the story's event, which every story schedules ahead of what has
//! been written: restatements keep the stream's disorder within its bound. They draw from
//! a random source of their own, so a generator without them writes exactly what it wrote
//! before they existed.

use super::orders;
use super::world::Order;
use crate::domain::event::*;
use crate::domain::time::Timestamp;
use rand::rngs::SmallRng;
use rand::Rng;

/// A restatement of `ev`: the other copy's body and the two copies' times (the story's own
/// first), or None for an event that states no fact (customer-service ratings: a second
/// one is another rating).
pub(super) fn restate(rng: &mut SmallRng, ev: &Event) -> Option<(EventBody, Timestamp, Timestamp)> {
    let t = ev.event_time;
    let shift = if rng.random_bool(0.1) { 0 } else { rng.random_range(1..36 * 3600) * 1000 };
    let (own_at, other_at) = if rng.random_bool(0.5) { (t, t.plus_ms(shift)) } else { (t.plus_ms(shift), t) };
    let body = match &ev.body {
        EventBody::OrderPaid(p) => {
            let o = Order {
                shop: &ev.shop_id,
                order_id: p.order_id.clone(),
                buyer_id: p.buyer_id.clone(),
                amount_fen: (p.amount_fen as f64 * rng.random_range(0.5..1.5)).round().max(1.0) as i64,
            };
            EventBody::OrderPaid(orders::paid(rng, &o, other_at))
        }
        EventBody::OrderRated(r) => {
            let mut score = || rng.random_range(1..=5u8);
            EventBody::OrderRated(OrderRated {
                description: score(),
                service: score(),
                logistics: score(),
                ..r.clone()
            })
        }
        EventBody::Refund(r) => {
            EventBody::Refund(RefundUpdate { stage: other_stage(rng, &r.stage), ..r.clone() })
        }
        EventBody::OrderCompleted(_) | EventBody::OrderClosed(_) | EventBody::Logistics(_) => ev.body.clone(),
        EventBody::ServiceRated(_) => return None,
    };
    Some((body, own_at, other_at))
}

/// The story's own event moved to `at` (an `order.paid` keeps its deadlines as far after
/// its payment as they were).
pub(super) fn moved(mut ev: Event, at: Timestamp) -> Event {
    let by = at.0 - ev.event_time.0;
    if let EventBody::OrderPaid(p) = &mut ev.body {
        p.ship_deadline = p.ship_deadline.plus_ms(by);
        p.promised_delivery_by = p.promised_delivery_by.map(|t| t.plus_ms(by));
    }
    ev.event_time = at;
    ev
}

/// Another report of a refund stage: other fields where the stage has any.
fn other_stage(rng: &mut SmallRng, stage: &RefundStage) -> RefundStage {
    fn pick<T: Copy>(rng: &mut SmallRng, all: &[T]) -> T {
        all[rng.random_range(0..all.len())]
    }
    match stage {
        RefundStage::Requested { amount_fen, .. } => RefundStage::Requested {
            kind: pick(rng, RefundKind::ALL),
            reason: pick(rng, RefundReason::ALL),
            amount_fen: (*amount_fen as f64 * rng.random_range(0.3..1.2)).round().max(1.0) as i64,
        },
        RefundStage::Modified { amount_fen, .. } => {
            RefundStage::Modified { reason: pick(rng, RefundReason::ALL), amount_fen: *amount_fen }
        }
        RefundStage::PlatformRuled { liable } => RefundStage::PlatformRuled {
            liable: if *liable == Liable::Merchant { Liable::Buyer } else { Liable::Merchant },
        },
        RefundStage::Completed { .. } => {
            RefundStage::Completed { refunded: rng.random_bool(0.5), closed_by: pick(rng, ClosedBy::ALL) }
        }
        RefundStage::LabelConfirmed { .. } => {
            RefundStage::LabelConfirmed { label: pick(rng, MaliciousLabel::ALL) }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::HOUR_MS;
    use rand::SeedableRng;

    #[test]
    fn a_moved_payment_keeps_its_deadlines_after_it() {
        let paid = Event {
            event_id: "e1".into(),
            shop_id: "s".into(),
            event_time: Timestamp(1_000_000),
            body: EventBody::OrderPaid(OrderPaid {
                order_id: "o".into(),
                buyer_id: "b".into(),
                amount_fen: 100,
                ship_deadline: Timestamp(1_000_000 + 48 * HOUR_MS),
                ship_deadline_given: false,
                fulfillment: Fulfillment::Merchant,
                delivery_promise: DeliveryPromise::SameDay,
                promised_delivery_by: Some(Timestamp(1_000_000 + 12 * HOUR_MS)),
            }),
        };
        let m = moved(paid, Timestamp(1_000_000 + 30 * HOUR_MS));
        let EventBody::OrderPaid(p) = &m.body else { unreachable!() };
        assert_eq!(m.event_time, Timestamp(1_000_000 + 30 * HOUR_MS));
        assert_eq!(p.ship_deadline, Timestamp(1_000_000 + 78 * HOUR_MS));
        assert_eq!(p.promised_delivery_by, Some(Timestamp(1_000_000 + 42 * HOUR_MS)));
    }

    #[test]
    fn restated_payments_are_valid_after_their_own_time() {
        let mut rng = SmallRng::seed_from_u64(3);
        let paid = |t: i64| Event {
            event_id: "e1".into(),
            shop_id: "s".into(),
            event_time: Timestamp(t),
            body: EventBody::OrderPaid(OrderPaid {
                order_id: "o".into(),
                buyer_id: "b".into(),
                amount_fen: 1_000,
                ship_deadline: Timestamp(t + 48 * HOUR_MS),
                ship_deadline_given: false,
                fulfillment: Fulfillment::Merchant,
                delivery_promise: DeliveryPromise::None,
                promised_delivery_by: None,
            }),
        };
        let (mut earlier, mut later, mut other_promise) = (0, 0, 0);
        for i in 0..500 {
            let ev = paid(1_714_492_800_000 + i * 1000);
            let (body, own_at, other_at) = restate(&mut rng, &ev).unwrap();
            assert!(own_at >= ev.event_time && other_at >= ev.event_time);
            let EventBody::OrderPaid(p) = body else { panic!("{body:?}") };
            assert!(p.ship_deadline > other_at);
            assert!(p.promised_delivery_by.is_none_or(|by| by > other_at));
            assert_eq!(p.promised_delivery_by.is_some(), p.delivery_promise != DeliveryPromise::None);
            match other_at.cmp(&own_at) {
                std::cmp::Ordering::Less => earlier += 1,
                std::cmp::Ordering::Greater => later += 1,
                std::cmp::Ordering::Equal => {}
            }
            other_promise += usize::from(p.delivery_promise != DeliveryPromise::None);
        }
        assert!(earlier > 150 && later > 150, "{earlier} {later}");
        assert!(other_promise > 20, "{other_promise}");
    }
}
