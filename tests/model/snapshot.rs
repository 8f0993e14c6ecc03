//! The model of a shop's final snapshot (SPEC §4, §8, §9): every window metric, the
//! 180-day DSR, satisfaction and campaign eligibility as of the final watermark, built as a
//! JSON value in the shape of a `snapshots.jsonl` line without `as_of`/`version`.

use super::facts::{Fact, Shop};
use serde_json::{json, Value};
use shopscore::domain::event::*;
use shopscore::domain::Timestamp;
use std::collections::BTreeMap;

/// Default windows (SPEC §8) and the DSR window.
pub const WINDOWS: [i32; 3] = [1, 7, 30];
const DSR_DAYS: i32 = 180;
const DSR_VALID_MS: i64 = 15 * 24 * 3_600_000;
const SAT_MAX_PER_BUYER: usize = 3;
const SAT_MIN_INTERVAL_MS: i64 = 10 * 60_000;
const SLOTS: [(&str, Handler, Phase); 4] = [
    ("HUMAN_PRE_SALE", Handler::Human, Phase::PreSale),
    ("HUMAN_AFTER_SALE", Handler::Human, Phase::AfterSale),
    ("BOT_PRE_SALE", Handler::Bot, Phase::PreSale),
    ("BOT_AFTER_SALE", Handler::Bot, Phase::AfterSale),
];

/// A rate; `null` for a zero denominator (SPEC §4).
fn rate(num: i64, den: i64) -> Value {
    if den == 0 {
        Value::Null
    } else {
        json!(num as f64 / den as f64)
    }
}

/// The last `days` Shanghai calendar days ending with the day of `as_of`.
#[derive(Clone, Copy)]
struct Window {
    first_day: i32,
    last_day: i32,
}

impl Window {
    fn new(as_of: Timestamp, days: i32) -> Window {
        let last_day = as_of.day().0;
        Window { first_day: last_day - days + 1, last_day }
    }
    fn holds(self, t: Timestamp) -> bool {
        (self.first_day..=self.last_day).contains(&t.day().0)
    }
}

/// Counts of one window.
#[derive(Default, Debug)]
pub struct Counts {
    pub paid_orders: i64,
    pub refunds_requested: i64,
    pub dispute_refunds: i64,
    pub quality_refunds: i64,
    pub interventions: i64,
    pub completed_refunds: i64,
    pub self_completed_refunds: i64,
    pub refund_ms_sum: i64,
    pub refund_ms_count: i64,
    pub manual_refunds: i64,
    pub ship_due_orders: i64,
    pub late_shipments: i64,
    pub service: [(i64, i64); 4],
}

fn window_counts(
    shop: &Shop,
    counted_service: &[&Fact<ServiceRated>],
    as_of: Timestamp,
    w: Window,
) -> Counts {
    let mut c = Counts::default();
    for order in shop.orders.values() {
        let Some(paid) = &order.paid else { continue };
        if w.holds(paid.time) {
            c.paid_orders += 1;
        }
        let deadline = paid.value.ship_deadline;
        let closed_in_time = order.closed.as_ref().is_some_and(|f| f.time <= deadline);
        if !closed_in_time && deadline < as_of && w.holds(deadline) {
            c.ship_due_orders += 1;
            let shipped_in_time = order.shipped(paid.value.fulfillment).is_some_and(|f| f.time <= deadline);
            if !shipped_in_time {
                c.late_shipments += 1;
            }
        }
    }
    for refund in shop.refunds.values() {
        if shop.labelled_orders.contains(&refund.order_id) {
            continue; // protected (SPEC §4)
        }
        if refund.requested.as_ref().is_some_and(|f| w.holds(f.time)) {
            c.refunds_requested += 1;
        }
        let intervened = refund.first_intervened.is_some();
        if refund.first_intervened.as_ref().is_some_and(|f| w.holds(f.time)) {
            c.interventions += 1;
        }
        let Some(done) = &refund.completed else { continue };
        if !w.holds(done.time) {
            continue;
        }
        let (refunded, closed_by) = done.value;
        c.completed_refunds += 1;
        if closed_by != ClosedBy::Platform {
            c.self_completed_refunds += 1;
        }
        if !intervened {
            if let Some(req) = &refund.requested {
                c.refund_ms_sum += done.time.0 - req.time.0;
                c.refund_ms_count += 1;
            }
        }
        if refunded {
            let merchant_liable = refund.latest_ruling.as_ref().is_some_and(|f| f.value == Liable::Merchant);
            if intervened && merchant_liable {
                c.dispute_refunds += 1;
            }
            if intervened {
                c.manual_refunds += 1;
            }
            if refund.latest_reason.as_ref().is_some_and(|f| f.value.is_quality()) {
                c.quality_refunds += 1;
            }
        }
    }
    for r in counted_service.iter().filter(|r| w.holds(r.time)) {
        let slot = SLOTS.iter().position(|(_, h, p)| *h == r.value.handler && *p == r.value.phase).unwrap();
        c.service[slot].0 += 1;
        c.service[slot].1 += i64::from(r.value.level.is_satisfied());
    }
    c
}

impl Counts {
    fn to_json(&self) -> Value {
        let p = self.paid_orders;
        let ratings: i64 = self.service.iter().map(|s| s.0).sum();
        let satisfied: i64 = self.service.iter().map(|s| s.1).sum();
        let by: serde_json::Map<String, Value> = SLOTS
            .iter()
            .zip(self.service)
            .map(|((name, ..), (n, s))| (name.to_string(), rate(s, n)))
            .collect();
        let avg_hours = if self.refund_ms_count == 0 {
            Value::Null
        } else {
            json!(self.refund_ms_sum as f64 / self.refund_ms_count as f64 / 3_600_000.0)
        };
        json!({
            "paid_orders": p,
            "refunds_requested": self.refunds_requested, "refund_rate": rate(self.refunds_requested, p),
            "dispute_refunds": self.dispute_refunds, "dispute_refund_rate": rate(self.dispute_refunds, p),
            "quality_refunds": self.quality_refunds, "quality_refund_rate": rate(self.quality_refunds, p),
            "interventions": self.interventions, "intervention_rate": rate(self.interventions, p),
            "completed_refunds": self.completed_refunds,
            "self_completed_refunds": self.self_completed_refunds,
            "self_completion_rate": rate(self.self_completed_refunds, self.completed_refunds),
            "avg_refund_hours": avg_hours,
            "manual_refunds": self.manual_refunds, "manual_refund_rate": rate(self.manual_refunds, p),
            "ship_due_orders": self.ship_due_orders, "late_shipments": self.late_shipments,
            "late_shipment_rate": rate(self.late_shipments, self.ship_due_orders),
            "service_ratings": ratings, "satisfied_ratings": satisfied,
            "satisfaction_rate": rate(satisfied, ratings),
            "satisfaction_by": by,
        })
    }
}

/// What the model noticed along the way, to check the generated input exercises the rules.
#[derive(Default, Debug, Clone, Copy)]
pub struct Coverage {
    pub dsr_counted: u64,
    pub dsr_outside_15_days: u64,
    pub dsr_displaced_by_three_per_month: u64,
    /// Counted ratings of a month whose trades straddle the 180-day window start.
    pub dsr_outside_180_days: u64,
    pub service_counted: u64,
    pub service_flagged: u64,
    pub service_over_monthly_cap: u64,
    pub service_too_soon: u64,
    pub protected_refunds: u64,
    pub campaign_failed: u64,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, o: Coverage) {
        self.dsr_counted += o.dsr_counted;
        self.dsr_outside_15_days += o.dsr_outside_15_days;
        self.dsr_displaced_by_three_per_month += o.dsr_displaced_by_three_per_month;
        self.dsr_outside_180_days += o.dsr_outside_180_days;
        self.service_counted += o.service_counted;
        self.service_flagged += o.service_flagged;
        self.service_over_monthly_cap += o.service_over_monthly_cap;
        self.service_too_soon += o.service_too_soon;
        self.protected_refunds += o.protected_refunds;
        self.campaign_failed += o.campaign_failed;
    }
}

/// The service ratings that count (SPEC §4 satisfaction exclusions, decided over the
/// shop's whole history in event time; SPEC §9).
fn counted_service<'a>(shop: &'a Shop, cov: &mut Coverage) -> Vec<&'a Fact<ServiceRated>> {
    let mut by_buyer: BTreeMap<&str, Vec<&Fact<ServiceRated>>> = BTreeMap::new();
    for r in &shop.service {
        by_buyer.entry(&r.value.buyer_id).or_default().push(r);
    }
    let mut counted = Vec::new();
    for ratings in by_buyer.values_mut() {
        ratings.sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
        let mut per_month: BTreeMap<i32, usize> = BTreeMap::new();
        let mut previous: Option<Timestamp> = None;
        for r in ratings.iter() {
            let flagged = !r.value.flags.is_empty(); // ROBOT or SUSPECTED_FRAUD
            let month = per_month.entry(r.time.month()).or_default();
            let too_soon = previous.is_some_and(|p| r.time.0 - p.0 < SAT_MIN_INTERVAL_MS);
            previous = Some(r.time);
            if flagged {
                cov.service_flagged += 1;
            } else if *month >= SAT_MAX_PER_BUYER {
                cov.service_over_monthly_cap += 1;
            } else if too_soon {
                cov.service_too_soon += 1;
            } else {
                *month += 1;
                cov.service_counted += 1;
                counted.push(*r);
            }
        }
    }
    counted
}

/// A valid DSR rating: the trade's completion time, its order id and the rating.
type ValidRating<'a> = (Timestamp, &'a str, &'a OrderRated);

/// DSR sums (description, service, logistics) and count (SPEC §4 validity, three per month,
/// then the 180-day window; SPEC §9).
fn dsr(shop: &Shop, as_of: Timestamp, cov: &mut Coverage) -> ([i64; 3], i64) {
    // (buyer, month of trade success) -> valid (completed time, order_id, rating)
    let mut months: BTreeMap<(&str, i32), Vec<ValidRating<'_>>> = BTreeMap::new();
    for (order_id, order) in &shop.orders {
        let (Some(done), Some(rated)) = (&order.completed, &order.rated) else { continue };
        let after = rated.time.0 - done.time.0;
        if !(0..=DSR_VALID_MS).contains(&after) {
            cov.dsr_outside_15_days += 1;
            continue;
        }
        months.entry((&done.value, done.time.month())).or_default().push((done.time, order_id, &rated.value));
    }
    let window = Window::new(as_of, DSR_DAYS);
    let (mut sum, mut count) = ([0i64; 3], 0i64);
    for trades in months.values_mut() {
        trades.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        cov.dsr_displaced_by_three_per_month += trades.len().saturating_sub(3) as u64;
        for (done, _, r) in trades.iter().take(3) {
            if !window.holds(*done) {
                cov.dsr_outside_180_days += 1;
                continue;
            }
            cov.dsr_counted += 1;
            count += 1;
            sum[0] += i64::from(r.description);
            sum[1] += i64::from(r.service);
            sum[2] += i64::from(r.logistics);
        }
    }
    (sum, count)
}

/// The shop's snapshot values at the final watermark `as_of`.
pub fn snapshot(shop_id: &str, shop: &Shop, as_of: Timestamp, cov: &mut Coverage) -> Value {
    cov.protected_refunds +=
        shop.refunds.values().filter(|r| shop.labelled_orders.contains(&r.order_id)).count() as u64;
    let service = counted_service(shop, cov);
    let mut windows = serde_json::Map::new();
    for days in WINDOWS {
        let counts = window_counts(shop, &service, as_of, Window::new(as_of, days));
        windows.insert(format!("{days}d"), counts.to_json());
    }
    let (sum, count) = dsr(shop, as_of, cov);
    let dims = ["description", "service", "logistics"];
    let dsr: serde_json::Map<String, Value> = dims
        .iter()
        .zip(sum)
        .map(|(name, s)| (name.to_string(), json!({"sum": s, "count": count, "score": rate(s, count)})))
        .collect();
    // Campaign (SPEC §4, §8): a DSR with no counted rating does not fail; exactly 4.6 passes.
    let mut failed = Vec::new();
    for (i, name) in ["DSR_DESCRIPTION_BELOW_4_6", "DSR_SERVICE_BELOW_4_6", "DSR_LOGISTICS_BELOW_4_6"]
        .into_iter()
        .enumerate()
    {
        if count > 0 && sum[i] * 10 < 46 * count {
            failed.push(name);
        }
    }
    let month = window_counts(shop, &[], as_of, Window::new(as_of, 30));
    let (manual, paid) = (month.manual_refunds, month.paid_orders);
    if !(manual <= 6 || manual * 1000 <= paid) {
        failed.push("MANUAL_REFUNDS_OVER_LIMIT");
    }
    cov.campaign_failed += u64::from(!failed.is_empty());
    json!({
        "shop_id": shop_id,
        "windows": windows,
        "dsr": dsr,
        "campaign": {"eligible": failed.is_empty(), "failed": failed},
    })
}
