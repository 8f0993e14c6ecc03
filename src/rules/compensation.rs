//! Compensation owed to buyers (SPEC §5, seed 003): late shipment with its 24-hour group
//! cap, and broken delivery promises. Pure functions over order facts; the engine decides
//! *when* (event-time timers) and makes sure each record is emitted once.

use super::facts::{Fact, OrderFacts};
use super::origins::Origins;
use crate::domain::{DeliveryPromise, Timestamp};
use crate::output::{Compensation, CompensationKind, LineageEvent};
use serde::{Deserialize, Serialize};

/// The money parameters (configurable; defaults are the seed's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompensationRules {
    pub rule_version: String,
    /// Late shipment: this percentage of the paid amount…
    pub late_rate_percent: u32,
    /// …but at least this much.
    pub late_min_fen: i64,
    /// Cap per group of one buyer's orders at one shop.
    pub group_cap_fen: i64,
    /// A group holds the orders paid less than this long after its first.
    pub group_span_ms: i64,
    /// Per broken delivery promise.
    pub promise_breach_fen: i64,
}

impl Default for CompensationRules {
    fn default() -> Self {
        CompensationRules {
            rule_version: "2024-01".into(),
            late_rate_percent: 30,
            late_min_fen: 500,
            group_cap_fen: 50_000,
            group_span_ms: 24 * 3_600_000,
            promise_breach_fen: 1_000,
        }
    }
}

impl CompensationRules {
    /// The uncapped late-shipment amount: `late_rate_percent` % of `amount_fen`, rounded
    /// half up to a whole fen, at least `late_min_fen`.
    pub fn late_basis(&self, amount_fen: i64) -> i64 {
        let pct = amount_fen as i128 * self.late_rate_percent as i128;
        let rounded = (pct + 50).div_euclid(100);
        (rounded.min(i64::MAX as i128) as i64).max(self.late_min_fen)
    }
}

/// An order of one buyer at one shop whose late-shipment decision is still open.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PendingOrder {
    pub paid: Timestamp,
    pub order_id: String,
    pub deadline: Timestamp,
}

/// One buyer's undecided orders at one shop, sorted by (payment time, `order_id`), and the
/// time of the decision timer currently set for them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerOrders {
    pub pending: Vec<PendingOrder>,
    pub timer_at: Option<Timestamp>,
}

impl BuyerOrders {
    pub fn insert(&mut self, p: PendingOrder) {
        self.remove(&p.order_id);
        let at = self.pending.partition_point(|x| x < &p);
        self.pending.insert(at, p);
    }

    pub fn remove(&mut self, order_id: &str) {
        self.pending.retain(|x| x.order_id != order_id);
    }

    /// The first group of the pending orders: how many orders it holds and its decision
    /// time (the later of its end, start + span, and its last ship deadline). It may be
    /// decided once the watermark is strictly past that time.
    pub fn first_group(&self, span_ms: i64) -> Option<(usize, Timestamp)> {
        let start = self.pending.first()?.paid;
        let end = start.plus_ms(span_ms);
        let len = self.pending.iter().take_while(|p| p.paid < end).count();
        let last_deadline = self.pending[..len].iter().map(|p| p.deadline).max().unwrap_or(end);
        Some((len, end.max(last_deadline)))
    }
}

/// Whether the order is late: no shipped time at or before its deadline, and not closed by
/// then (SPEC §5). Orders never paid owe nothing.
pub fn is_late(o: &OrderFacts) -> bool {
    let Some(p) = &o.paid else { return false };
    let deadline = p.value.ship_deadline;
    !o.closed_by(deadline) && o.shipped().is_none_or(|s| s.time > deadline)
}

fn lineage(role: &'static str, f: &Fact, origins: &Origins) -> LineageEvent {
    LineageEvent { role, event_id: f.event_id.clone(), source: origins.source(&f.source) }
}

/// The events that decided a record: the payment, and the shipping, delivery and closing
/// events up to `decided_at` (later ones cannot have mattered, and are not yet known at
/// decision time in every arrival order, so including them would break determinism).
fn order_lineage(
    o: &OrderFacts,
    delivered: Option<&Fact>,
    decided_at: Timestamp,
    origins: &Origins,
) -> Vec<LineageEvent> {
    let mut out = Vec::new();
    if let Some(p) = &o.paid {
        out.push(lineage("paid", &p.fact, origins));
    }
    let until = |f: &&Fact| f.time <= decided_at;
    if let Some(s) = o.shipped().filter(until) {
        out.push(lineage("shipped", s, origins));
    }
    if let Some(d) = delivered.filter(until) {
        out.push(lineage("delivered", d, origins));
    }
    if let Some(c) = o.closed.as_ref().map(|c| &c.fact).filter(until) {
        out.push(lineage("closed", c, origins));
    }
    out
}

/// Decides one group: `orders` are its members in (payment time, `order_id`) order with
/// their facts. Every late member gets a record; the cap is used in that order, and a
/// member left with nothing still gets a zero record with its basis. `origins` names the
/// facts' topics and files for the lineage.
pub fn decide_group(
    shop: &str,
    orders: &[(String, OrderFacts)],
    decided_at: Timestamp,
    rules: &CompensationRules,
    origins: &Origins,
) -> Vec<Compensation> {
    let group_id = orders.first().map(|(id, _)| id.clone()).unwrap_or_default();
    let mut remaining = rules.group_cap_fen;
    let mut out = Vec::new();
    for (order_id, o) in orders {
        let Some(p) = o.paid.as_ref().filter(|_| is_late(o)) else { continue };
        let basis = rules.late_basis(p.value.amount_fen);
        let amount = basis.min(remaining).max(0);
        remaining -= amount;
        out.push(Compensation {
            kind: CompensationKind::LateShipment,
            order_id: order_id.clone(),
            shop_id: shop.to_owned(),
            buyer_id: p.value.buyer_id.clone(),
            amount_fen: amount,
            basis_fen: basis,
            group_id: Some(group_id.clone()),
            deadline: p.value.ship_deadline,
            shipped_at: o.shipped().map(|s| s.time).filter(|t| *t <= decided_at),
            decided_at,
            rule_version: rules.rule_version.clone(),
            lineage: order_lineage(o, None, decided_at, origins),
        });
    }
    out
}

/// The delivery-promise decision for an order whose `promised_delivery_by` the watermark
/// has passed: a record when the promise was broken, else `None`.
pub fn promise_breach(
    shop: &str,
    order_id: &str,
    o: &OrderFacts,
    rules: &CompensationRules,
    origins: &Origins,
) -> Option<Compensation> {
    let p = o.paid.as_ref()?;
    let by = p.value.promised_delivery_by?;
    let kept_by = match p.value.delivery_promise {
        DeliveryPromise::None => return None,
        DeliveryPromise::SameDay | DeliveryPromise::NextDay => {
            [&o.delivered, &o.door_delivered].into_iter().flatten().map(|d| &d.fact).min_by_key(|f| f.time)
        }
        DeliveryPromise::DoorDelivery => o.door_delivered.as_ref().map(|d| &d.fact),
    };
    if o.closed_by(by) || kept_by.is_some_and(|d| d.time <= by) {
        return None;
    }
    Some(Compensation {
        kind: CompensationKind::DeliveryPromiseBreach,
        order_id: order_id.to_owned(),
        shop_id: shop.to_owned(),
        buyer_id: p.value.buyer_id.clone(),
        amount_fen: rules.promise_breach_fen,
        basis_fen: rules.promise_breach_fen,
        group_id: None,
        deadline: by,
        shipped_at: None,
        decided_at: by,
        rule_version: rules.rule_version.clone(),
        lineage: order_lineage(o, kept_by, by, origins),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_percent_half_up_with_minimum() {
        let r = CompensationRules::default();
        assert_eq!(r.late_basis(100_000), 30_000);
        assert_eq!(r.late_basis(1_000), 500); // 300 < minimum
        assert_eq!(r.late_basis(1_666), 500);
        assert_eq!(r.late_basis(10_005), 3_002); // 3001.5 → 3002
        assert_eq!(r.late_basis(10_001), 3_000); // 3000.3 → 3000
        assert_eq!(r.late_basis(i64::MAX), i64::MAX / 100 * 30 + 2); // no overflow
    }

    #[test]
    fn groups_anchor_at_first_payment_and_exactly_24h_starts_a_new_one() {
        const H: i64 = 3_600_000;
        let mut b = BuyerOrders::default();
        for (h, id, dl) in [(0, "a", 48), (23, "b", 71), (24, "c", 72), (47, "d", 95)] {
            b.insert(PendingOrder {
                paid: Timestamp(h * H),
                order_id: id.into(),
                deadline: Timestamp(dl * H),
            });
        }
        let (len, at) = b.first_group(24 * H).unwrap();
        assert_eq!(len, 2);
        assert_eq!(at, Timestamp(71 * H)); // last deadline after the group's end
        b.pending.drain(..len);
        assert_eq!(b.first_group(24 * H), Some((2, Timestamp(95 * H))));
    }
}
