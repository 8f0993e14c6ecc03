//! Perturbs generated input into the cases the generator itself never writes, so the model
//! and the engine are compared on them too: facts reported twice under other `event_id`s
//! (same or other time, same or other content: the earliest by (`event_time`, `event_id`)
//! must win), an `event_id` reused with other content (the first copy in stream order
//! wins), dropped events (refunds without `REQUESTED`, ratings and logistics of orders never
//! paid), and times snapped onto rule boundaries (pick-up or close exactly at the ship
//! deadline, delivery exactly at the promise, a rating exactly 15 days after completion,
//! a payment exactly 24 h after the buyer's previous one; a service rating 10 min ± 1 s after
//! the same buyer's previous one), a second refund of the same order (so a label protects
//! both), big payments and unshipped repeat orders (so a group's cap runs out), and shops
//! whose events stop after the first third (their windows roll off).
//! The result is re-sorted within the out-of-orderness bound, so no event is late and the
//! batch model still applies.

use super::shuffle;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shopscore::domain::decode::{decode_json, encode_json, DecodeOptions};
use shopscore::domain::event::*;
use shopscore::domain::Timestamp;
use std::collections::HashMap;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// What the order's other events say, for snapping times onto its boundaries.
#[derive(Default, Clone, Copy)]
struct OrderTimes {
    deadline: Option<Timestamp>,
    promised_by: Option<Timestamp>,
    completed: Option<Timestamp>,
}

fn order_of(ev: &Event) -> Option<&str> {
    match &ev.body {
        EventBody::OrderPaid(p) => Some(&p.order_id),
        EventBody::OrderCompleted(r) | EventBody::OrderClosed(r) => Some(&r.order_id),
        EventBody::OrderRated(r) => Some(&r.order_id),
        EventBody::Logistics(l) => Some(&l.order_id),
        EventBody::Refund(r) => Some(&r.order_id),
        EventBody::ServiceRated(_) => None,
    }
}

/// Another content for a restated fact (the same kind of fact, other values).
fn vary(body: &EventBody, rng: &mut SmallRng) -> EventBody {
    let mut body = body.clone();
    match &mut body {
        EventBody::OrderPaid(p) => {
            p.amount_fen = rng.random_range(0..400_000);
            if rng.random_bool(0.3) {
                p.buyer_id = format!("buyer-x{}", rng.random_range(0..5));
            }
        }
        EventBody::OrderCompleted(r) => {
            if rng.random_bool(0.5) {
                r.buyer_id = format!("buyer-x{}", rng.random_range(0..5));
            }
        }
        EventBody::OrderRated(r) => {
            r.description = rng.random_range(1..=5);
            r.service = rng.random_range(1..=5);
            r.logistics = rng.random_range(1..=5);
        }
        EventBody::Refund(r) => match &mut r.stage {
            RefundStage::Requested { reason, .. } | RefundStage::Modified { reason, .. } => {
                *reason = RefundReason::ALL[rng.random_range(0..RefundReason::ALL.len())]
            }
            RefundStage::PlatformRuled { liable } => {
                *liable = if *liable == Liable::Merchant { Liable::Buyer } else { Liable::Merchant }
            }
            RefundStage::Completed { refunded, closed_by } => {
                *refunded = !*refunded;
                *closed_by = ClosedBy::ALL[rng.random_range(0..ClosedBy::ALL.len())];
            }
            _ => {}
        },
        EventBody::ServiceRated(s) => {
            s.level = SatisfactionLevel::ALL[rng.random_range(0..SatisfactionLevel::ALL.len())];
            s.flags.clear();
        }
        EventBody::Logistics(_) | EventBody::OrderClosed(_) => {}
    }
    body
}

/// A time on one of the order's rule boundaries for this event, if it has one.
fn boundary(ev: &Event, o: OrderTimes, rng: &mut SmallRng) -> Option<Timestamp> {
    let near =
        |t: Timestamp, rng: &mut SmallRng| Timestamp(t.0 + [-1000, 0, 0, 1000][rng.random_range(0..4)]);
    match &ev.body {
        EventBody::Logistics(l) if l.status == LogisticsStatus::PickedUp || l.status.is_sorting() => {
            o.deadline.map(|t| near(t, rng))
        }
        EventBody::Logistics(l)
            if matches!(l.status, LogisticsStatus::Delivered | LogisticsStatus::DoorDelivered) =>
        {
            o.promised_by.map(|t| near(t, rng))
        }
        EventBody::OrderClosed(_) => {
            let t = if rng.random_bool(0.5) { o.deadline } else { o.promised_by };
            t.map(|t| near(t, rng))
        }
        EventBody::OrderRated(_) => {
            let after = if rng.random_bool(0.7) { 15 * DAY_MS } else { 0 };
            o.completed.map(|t| near(Timestamp(t.0 + after), rng))
        }
        _ => None,
    }
}

/// Whether the perturbed input may reuse an `event_id` with other content. In Kafka mode the
/// copy that reaches its shard first wins, which depends on how partitions interleave (README
/// "Choices where the spec is silent"); file mode keeps the first in stream order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    MayBeReused,
    Unique,
}

/// The perturbed input: `lines` decoded, mutated with probability about `rate` per event,
/// re-encoded and re-sorted within `bound_ms` (lines that do not decode are kept).
pub fn perturb(lines: &[Vec<u8>], seed: u64, rate: f64, bound_ms: i64) -> Vec<Vec<u8>> {
    perturb_with(lines, seed, rate, bound_ms, Ids::MayBeReused)
}

/// [`perturb`], reusing `event_id`s with other content only if `ids` allows it.
pub fn perturb_with(lines: &[Vec<u8>], seed: u64, rate: f64, bound_ms: i64, ids: Ids) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let opts = DecodeOptions::default();
    let decoded: Vec<Result<Event, &Vec<u8>>> =
        lines.iter().map(|l| decode_json(l, None, &opts).map_err(|_| l)).collect();
    let mut orders: HashMap<String, OrderTimes> = HashMap::new();
    let mut last_paid_by_buyer: HashMap<(String, String), Timestamp> = HashMap::new();
    for ev in decoded.iter().flatten() {
        let Some(id) = order_of(ev) else { continue };
        let o = orders.entry(id.to_owned()).or_default();
        match &ev.body {
            EventBody::OrderPaid(p) => {
                o.deadline = Some(p.ship_deadline);
                o.promised_by = p.promised_delivery_by;
            }
            EventBody::OrderCompleted(_) => o.completed = Some(ev.event_time),
            _ => {}
        }
    }
    // A second refund of the same order (its events copied under another refund id, shifted
    // by up to a day; the label sometimes left out), so a label must protect both.
    let mut cloned_refunds: HashMap<String, (i64, bool)> = HashMap::new();
    // Shops that stop sending events part-way: their windows must roll off to the end.
    let last_time = decoded.iter().flatten().map(|e| e.event_time.0).max().unwrap_or(0);
    let first_time = decoded.iter().flatten().map(|e| e.event_time.0).min().unwrap_or(0);
    let retire_at = first_time + (last_time - first_time) / 3;
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(lines.len() * 11 / 10);
    let mut restated = 0u64;
    for item in decoded {
        let ev = match item {
            Ok(ev) => ev,
            Err(raw) => {
                out.push(raw.clone());
                continue;
            }
        };
        if ev.shop_id.ends_with('3') && ev.event_time.0 > retire_at {
            continue; // retired shop
        }
        if let EventBody::Refund(r) = &ev.body {
            let clone = *cloned_refunds
                .entry(r.refund_id.clone())
                .or_insert_with(|| (rng.random_range(-DAY_MS..DAY_MS), rng.random_bool(rate)));
            let is_label = matches!(r.stage, RefundStage::LabelConfirmed { .. });
            if clone.1 && !(is_label && clone.0 % 2 == 0) {
                let mut copy = ev.clone();
                copy.event_id = format!("{}-b", ev.event_id);
                copy.event_time = Timestamp(ev.event_time.0 + clone.0);
                if let EventBody::Refund(r) = &mut copy.body {
                    r.refund_id = format!("{}-b", r.refund_id);
                }
                out.push(encode_json(&copy).into_bytes());
            }
        }
        if !rng.random_bool(rate) {
            out.push(encode_json(&ev).into_bytes());
            continue;
        }
        let o = order_of(&ev).and_then(|id| orders.get(id)).copied().unwrap_or_default();
        let mut emit = |e: &Event| out.push(encode_json(e).into_bytes());
        match rng.random_range(0..10) {
            // Dropped.
            0 => {}
            // Restated under another id: same or other content, same or nearby time.
            1..=3 => {
                emit(&ev);
                restated += 1;
                let mut again = ev.clone();
                again.event_id = format!("{}-r{restated}", ev.event_id);
                if let EventBody::ServiceRated(_) = ev.body {
                    // Around the 10-minute minimum interval.
                    let step = [599_000, 600_000, 601_000, 0][rng.random_range(0..4)];
                    again.event_time = Timestamp(ev.event_time.0 + step);
                } else if rng.random_bool(0.5) {
                    again.event_time =
                        Timestamp(ev.event_time.0 + rng.random_range(-2 * HOUR_MS..2 * HOUR_MS));
                }
                if rng.random_bool(0.6) {
                    again.body = vary(&ev.body, &mut rng);
                }
                emit(&again);
            }
            // The same id again with other content (and maybe time): the first copy wins.
            4 if ids == Ids::MayBeReused => {
                emit(&ev);
                let mut other = ev.clone();
                other.body = vary(&ev.body, &mut rng);
                other.event_time = Timestamp(ev.event_time.0 + rng.random_range(-HOUR_MS..HOUR_MS));
                emit(&other);
            }
            // A payment exactly 24 h (± 1 s) after the buyer's previous one in this shop.
            5 if matches!(ev.body, EventBody::OrderPaid(_)) => {
                let EventBody::OrderPaid(p) = &ev.body else { unreachable!() };
                let key = (ev.shop_id.clone(), p.buyer_id.clone());
                let mut moved = ev.clone();
                if let Some(prev) = last_paid_by_buyer.get(&key) {
                    moved.event_time =
                        Timestamp(prev.0 + DAY_MS + [-1000, 0, 0, 1000][rng.random_range(0..4)]);
                }
                last_paid_by_buyer.insert(key, moved.event_time);
                emit(&moved);
            }
            // A big payment (so a group's 50 000-fen cap runs out, leaving zero-amount records).
            6 if matches!(ev.body, EventBody::OrderPaid(_)) => {
                let mut big = ev.clone();
                if let EventBody::OrderPaid(p) = &mut big.body {
                    p.amount_fen = rng.random_range(150_000..2_000_000);
                }
                emit(&big);
            }
            // The buyer orders again within hours and the shop never ships those orders: a
            // group with several late orders, where the cap runs out.
            7 if matches!(ev.body, EventBody::OrderPaid(_)) => {
                emit(&ev);
                for k in 1..=2 {
                    let mut again = ev.clone();
                    again.event_id = format!("{}-x{k}", ev.event_id);
                    again.event_time = Timestamp(ev.event_time.0 + k * HOUR_MS);
                    if let EventBody::OrderPaid(p) = &mut again.body {
                        p.order_id = format!("{}-x{k}", p.order_id);
                        p.amount_fen = rng.random_range(50_000..400_000);
                    }
                    emit(&again);
                }
            }
            // Onto a boundary of the order's rules.
            _ => {
                let mut moved = ev.clone();
                if let Some(t) = boundary(&ev, o, &mut rng) {
                    moved.event_time = t;
                }
                emit(&moved);
            }
        }
        if let EventBody::OrderPaid(p) = &ev.body {
            last_paid_by_buyer.entry((ev.shop_id.clone(), p.buyer_id.clone())).or_insert(ev.event_time);
        }
    }
    let sorted = shuffle::within_bound(&out, seed.wrapping_add(1), bound_ms);
    match ids {
        Ids::MayBeReused => sorted,
        Ids::Unique => without_reused_ids(sorted),
    }
}

/// `lines` without any line whose `event_id` an earlier line has with other content. The
/// generator's duplicate lines are exact copies, but a perturbation may move or vary one copy
/// and not the other.
fn without_reused_ids(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let opts = DecodeOptions::default();
    let mut first: HashMap<String, Vec<u8>> = HashMap::new();
    lines
        .into_iter()
        .filter(|line| {
            let Ok(ev) = decode_json(line, None, &opts) else { return true };
            first.entry(ev.event_id).or_insert_with(|| line.clone()) == line
        })
        .collect()
}
