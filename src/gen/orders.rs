//! An order's story: payment (with realistic options), shipping—merchant pick-up or the
//! Cainiao warehouse and sorting-center chain, on time or late or never—transit,
//! delivery (against any delivery promise), then a refund or completion and a DSR rating.

use super::world::{Order, World, MIN_MS};
use crate::domain::event::*;
use crate::domain::time::{Timestamp, DAY_MS, HOUR_MS};
use rand::rngs::SmallRng;
use rand::Rng;

const CARRIERS: &[&str] = &["SF", "ZTO", "YTO", "STO", "YUNDA", "JD", "EMS", "JTEXPRESS"];

impl World {
    pub(super) fn order_story(&mut self, rng: &mut SmallRng, shop_idx: usize, t0: Timestamp) -> u64 {
        self.next_order += 1;
        let shop = &self.shops[shop_idx];
        let (late_rate, refund_rate, five_star) = (shop.late_rate, shop.refund_rate, shop.five_star);
        let shop_id = shop.id.clone();
        let o = Order {
            shop: &shop_id,
            order_id: format!("ord-{:09}", self.next_order),
            buyer_id: self.buyer(rng, shop_idx),
            amount_fen: price(rng),
        };
        let paid = paid(rng, &o, t0);
        let deadline = paid.ship_deadline;
        let (fulfillment, promise) = (paid.fulfillment, paid.promised_delivery_by);
        let door_only = paid.delivery_promise == DeliveryPromise::DoorDelivery;
        let mut n = self.event(o.shop, t0, EventBody::OrderPaid(paid));
        let order_ref = || OrderRef { order_id: o.order_id.clone(), buyer_id: o.buyer_id.clone() };

        if rng.random_bool(0.03) {
            // Cancelled before shipping.
            let t = t0.plus_ms(rng.random_range(10 * MIN_MS..20 * HOUR_MS));
            return n + self.event(o.shop, t, EventBody::OrderClosed(order_ref()));
        }
        let carrier = CARRIERS[rng.random_range(0..CARRIERS.len())];
        let tracking = format!("{carrier}{:012}", self.next_order * 7 + 13);
        let created = t0.plus_ms(rng.random_range(5 * MIN_MS..4 * HOUR_MS));
        let window = (deadline.0 - created.0).max(2 * HOUR_MS);
        let shipped = if rng.random_bool(late_rate) {
            if rng.random_bool(0.3) {
                None
            } else {
                Some(deadline.plus_ms(rng.random_range(MIN_MS..36 * HOUR_MS)))
            }
        } else {
            Some(created.plus_ms(rng.random_range(HOUR_MS / 2..window * 9 / 10)))
        };
        let log = |w: &mut World, t: Timestamp, status: LogisticsStatus| {
            let body = EventBody::Logistics(LogisticsUpdate {
                order_id: o.order_id.clone(),
                tracking_no: tracking.clone(),
                carrier: carrier.to_string(),
                status,
            });
            w.event(o.shop, t, body)
        };
        n += log(self, created, LogisticsStatus::Created);
        let Some(shipped) = shipped else {
            // Never shipped: usually closed a few days after the deadline.
            if rng.random_bool(0.7) {
                let t = deadline.plus_ms(rng.random_range(HOUR_MS..3 * DAY_MS));
                n += self.event(o.shop, t, EventBody::OrderClosed(order_ref()));
            }
            return n;
        };
        n += match fulfillment {
            Fulfillment::Merchant => log(self, shipped, LogisticsStatus::PickedUp),
            Fulfillment::Cainiao => {
                use LogisticsStatus::*;
                let mut k =
                    log(self, shipped.plus_ms(-rng.random_range(MIN_MS..20 * MIN_MS)), WarehouseOutbound);
                let mut t = shipped;
                for status in [ToSortingCenter, AtSortingCenter, Sorted, LeftSortingCenter] {
                    k += log(self, t, status);
                    t = t.plus_ms(rng.random_range(20 * MIN_MS..3 * HOUR_MS));
                }
                k
            }
        };
        let transit = shipped.plus_ms(rng.random_range(2 * HOUR_MS..12 * HOUR_MS));
        n += log(self, transit, LogisticsStatus::InTransit);
        if rng.random_bool(0.015) {
            let bad = [LogisticsStatus::Lost, LogisticsStatus::Damaged, LogisticsStatus::Rejected];
            let t = transit.plus_ms(rng.random_range(HOUR_MS..3 * DAY_MS));
            n += log(self, t, bad[rng.random_range(0..3)]);
            return n + self.refund_story(rng, &o, t.plus_ms(HOUR_MS), Some(RefundReason::NotReceived));
        }
        let mut delivered = transit.plus_ms(rng.random_range(6 * HOUR_MS..3 * DAY_MS));
        if let Some(by) = promise {
            if rng.random_bool(0.85) && by.0 > transit.0 + HOUR_MS {
                delivered = Timestamp(transit.0 + rng.random_range(HOUR_MS / 2..by.0 - transit.0));
            }
        }
        let door = if door_only { rng.random_bool(0.85) } else { rng.random_bool(0.1) };
        let status = if door { LogisticsStatus::DoorDelivered } else { LogisticsStatus::Delivered };
        n += log(self, delivered, status);

        if rng.random_bool(refund_rate) {
            let t = delivered.plus_ms(rng.random_range(HOUR_MS..7 * DAY_MS));
            n += self.refund_story(rng, &o, t, None);
            return n;
        }
        if !rng.random_bool(0.93) {
            return n;
        }
        let completed = delivered.plus_ms(rng.random_range(HOUR_MS..10 * DAY_MS));
        n += self.event(o.shop, completed, EventBody::OrderCompleted(order_ref()));
        if rng.random_bool(0.55) {
            let after = if rng.random_bool(0.95) { 0..15 * DAY_MS } else { 15 * DAY_MS..20 * DAY_MS };
            let t = completed.plus_ms(rng.random_range(after));
            let mut score = || dsr_score(rng, five_star);
            let body = OrderRated {
                order_id: o.order_id.clone(),
                buyer_id: o.buyer_id.clone(),
                description: score(),
                service: score(),
                logistics: score(),
            };
            n += self.event(o.shop, t, EventBody::OrderRated(body));
        }
        n
    }
}

/// An `order.paid` with realistic options (explicit deadline ~20 %, Cainiao ~15 %,
/// delivery promise ~10 %).
pub(super) fn paid(rng: &mut SmallRng, o: &Order<'_>, t0: Timestamp) -> OrderPaid {
    let given = rng.random_bool(0.2);
    let ship_deadline = if given {
        t0.plus_ms([24, 48, 72][rng.random_range(0..3)] * HOUR_MS)
    } else {
        t0.plus_ms(48 * HOUR_MS)
    };
    let fulfillment = if rng.random_bool(0.15) { Fulfillment::Cainiao } else { Fulfillment::Merchant };
    let (delivery_promise, promised_delivery_by) = if rng.random_bool(0.1) {
        match rng.random_range(0..3) {
            0 => (DeliveryPromise::SameDay, Some(t0.plus_ms(12 * HOUR_MS))),
            1 => (DeliveryPromise::NextDay, Some(Timestamp(t0.day().start().0 + 2 * DAY_MS))),
            _ => (DeliveryPromise::DoorDelivery, Some(t0.plus_ms(72 * HOUR_MS))),
        }
    } else {
        (DeliveryPromise::None, None)
    };
    OrderPaid {
        order_id: o.order_id.clone(),
        buyer_id: o.buyer_id.clone(),
        amount_fen: o.amount_fen,
        ship_deadline,
        ship_deadline_given: given,
        fulfillment,
        delivery_promise,
        promised_delivery_by,
    }
}

/// A price in fen: log-uniform from 5 yuan to 3 000 yuan, mostly ending in 0 or 9.
fn price(rng: &mut SmallRng) -> i64 {
    let yuan = (rng.random_range(5f64.ln()..3000f64.ln())).exp();
    let fen = (yuan * 100.0) as i64;
    if rng.random_bool(0.6) {
        (fen / 100).max(1) * 100 - 1 // x.99 yuan
    } else {
        (fen / 10) * 10
    }
}

fn dsr_score(rng: &mut SmallRng, five_star: f64) -> u8 {
    if rng.random_bool(five_star) {
        5
    } else {
        [4, 4, 4, 3, 3, 2, 1][rng.random_range(0..7)]
    }
}
