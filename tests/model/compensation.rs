//! The model of the compensation records decidable at the final watermark (SPEC §5):
//! late-shipment groups (24 h from the group's first payment, 30 % rounded half up, at least
//! 500 fen, 50 000 fen cap per group in payment order, zero-amount records kept) and broken
//! delivery promises (1 000 fen). "Passes" means strictly greater.

use super::facts::{Fact, Order, Shop};
use shopscore::domain::event::*;
use shopscore::domain::Timestamp;
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;
const GROUP_CAP_FEN: i64 = 50_000;
const MIN_FEN: i64 = 500;
const BREACH_FEN: i64 = 1_000;

/// One compensation record, with the fields the comparison uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: &'static str,
    pub order_id: String,
    pub shop_id: String,
    pub buyer_id: String,
    pub amount_fen: i64,
    pub basis_fen: i64,
    pub group_id: Option<String>,
    pub deadline: Timestamp,
    pub shipped_at: Option<Timestamp>,
    pub decided_at: Timestamp,
    /// `role:event_id@line` of the payment and the shipping/delivery/closing events up to
    /// `decided_at` (README "Lineage"; file mode: the first copy's line), sorted.
    pub lineage: Vec<String>,
}

impl Record {
    pub fn id(&self) -> String {
        format!("{}:{}", self.order_id, self.kind)
    }
}

/// 30 % of `amount`, rounded half up, at least 500 fen.
pub fn basis(amount_fen: i64) -> i64 {
    ((3 * amount_fen + 5) / 10).max(MIN_FEN)
}

/// What the model noticed along the way.
#[derive(Default, Debug, Clone, Copy)]
pub struct Coverage {
    pub groups_decided: u64,
    pub groups_pending: u64,
    pub multi_order_groups: u64,
    pub capped_records: u64,
    pub zero_records: u64,
    pub minimum_records: u64,
    pub closed_exempt: u64,
    pub late_records: u64,
    pub breach_records: u64,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, o: Coverage) {
        self.groups_decided += o.groups_decided;
        self.groups_pending += o.groups_pending;
        self.multi_order_groups += o.multi_order_groups;
        self.capped_records += o.capped_records;
        self.zero_records += o.zero_records;
        self.minimum_records += o.minimum_records;
        self.closed_exempt += o.closed_exempt;
        self.late_records += o.late_records;
        self.breach_records += o.breach_records;
    }
}

fn lineage_entry<T>(role: &str, f: &Fact<T>) -> String {
    format!("{role}:{}@{}", f.event_id, f.line)
}

fn push_up_to<T>(out: &mut Vec<String>, role: &str, fact: Option<&Fact<T>>, until: Timestamp) {
    if let Some(f) = fact.filter(|f| f.time <= until) {
        out.push(lineage_entry(role, f));
    }
}

/// One paid order: its id, its facts and its (earliest) payment.
type PaidOrder<'a> = (&'a str, &'a Order, &'a Fact<OrderPaid>);

/// Every record decidable once the watermark is `watermark`.
pub fn records(shop_id: &str, shop: &Shop, watermark: Timestamp, cov: &mut Coverage) -> Vec<Record> {
    let mut out = Vec::new();
    // Paid orders by buyer, in payment order (ties: smaller order_id).
    let mut by_buyer: BTreeMap<&str, Vec<PaidOrder<'_>>> = BTreeMap::new();
    for (id, order) in &shop.orders {
        if let Some(paid) = &order.paid {
            by_buyer.entry(&paid.value.buyer_id).or_default().push((id, order, paid));
        }
    }
    for orders in by_buyer.values_mut() {
        orders.sort_by(|a, b| (a.2.time, a.0).cmp(&(b.2.time, b.0)));
        let mut i = 0;
        while i < orders.len() {
            let start = orders[i].2.time;
            let end = start.0 + DAY_MS;
            let n = orders[i..].iter().take_while(|o| o.2.time.0 < end).count();
            let group = &orders[i..i + n];
            i += n;
            let last_deadline = group.iter().map(|o| o.2.value.ship_deadline.0).max().unwrap();
            let decided_at = Timestamp(end.max(last_deadline));
            if watermark <= decided_at {
                cov.groups_pending += 1;
                continue;
            }
            cov.groups_decided += 1;
            cov.multi_order_groups += u64::from(n > 1);
            let group_id = group[0].0.to_string();
            let mut left = GROUP_CAP_FEN;
            for (id, order, paid) in group {
                let p = &paid.value;
                let deadline = p.ship_deadline;
                if order.closed.as_ref().is_some_and(|c| c.time <= deadline) {
                    cov.closed_exempt += 1;
                    continue;
                }
                let shipped = order.shipped(p.fulfillment);
                if shipped.is_some_and(|s| s.time <= deadline) {
                    continue;
                }
                let basis_fen = basis(p.amount_fen);
                let amount_fen = basis_fen.min(left);
                left -= amount_fen;
                cov.late_records += 1;
                cov.capped_records += u64::from(amount_fen < basis_fen);
                cov.zero_records += u64::from(amount_fen == 0);
                cov.minimum_records += u64::from(basis_fen == MIN_FEN);
                let mut lineage = vec![lineage_entry("paid", paid)];
                push_up_to(&mut lineage, "shipped", shipped, decided_at);
                push_up_to(&mut lineage, "closed", order.closed.as_ref(), decided_at);
                lineage.sort();
                out.push(Record {
                    kind: "LATE_SHIPMENT",
                    order_id: id.to_string(),
                    shop_id: shop_id.to_string(),
                    buyer_id: p.buyer_id.clone(),
                    amount_fen,
                    basis_fen,
                    group_id: Some(group_id.clone()),
                    deadline,
                    shipped_at: shipped.map(|s| s.time).filter(|t| *t <= decided_at),
                    decided_at,
                    lineage,
                });
            }
        }
    }
    for (id, order) in &shop.orders {
        let Some(paid) = &order.paid else { continue };
        let p = &paid.value;
        let Some(by) = p.promised_delivery_by else { continue };
        if p.delivery_promise == DeliveryPromise::None || watermark <= by {
            continue;
        }
        if order.closed.as_ref().is_some_and(|c| c.time <= by) {
            continue;
        }
        let delivered = order.delivered(p.delivery_promise);
        if delivered.is_some_and(|d| d.time <= by) {
            continue;
        }
        cov.breach_records += 1;
        let mut lineage = vec![lineage_entry("paid", paid)];
        push_up_to(&mut lineage, "shipped", order.shipped(p.fulfillment), by);
        push_up_to(&mut lineage, "delivered", delivered, by);
        push_up_to(&mut lineage, "closed", order.closed.as_ref(), by);
        lineage.sort();
        out.push(Record {
            kind: "DELIVERY_PROMISE_BREACH",
            order_id: id.to_string(),
            shop_id: shop_id.to_string(),
            buyer_id: p.buyer_id.clone(),
            amount_fen: BREACH_FEN,
            basis_fen: BREACH_FEN,
            group_id: None,
            deadline: by,
            shipped_at: None,
            decided_at: by,
            lineage,
        });
    }
    out
}
