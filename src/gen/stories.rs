//! The generator's world: shops with their own quality profiles, and the "stories" that
//! produce realistic event sequences—an order from payment through shipping, delivery,
//! refund and rating; a customer-service rating. Each story schedules all its events at
//! once (into [`Schedule`]) at its start time; they are written later in time order.

use super::schedule::Schedule;
use crate::domain::event::*;
use crate::domain::time::{Timestamp, DAY_MS, HOUR_MS};
use rand::rngs::SmallRng;
use rand::Rng;

const MIN_MS: i64 = 60_000;

const CARRIERS: &[&str] = &["SF", "ZTO", "YTO", "STO", "YUNDA", "JD", "EMS", "JTEXPRESS"];

/// How one shop behaves; drawn once per shop.
struct Shop {
    id: String,
    /// Probability that an order ships late (or never).
    late_rate: f64,
    /// Probability that an order gets a refund request.
    refund_rate: f64,
    /// Probability that a DSR score is 5.
    five_star: f64,
    /// Probability that a service rating is satisfied.
    satisfied: f64,
}

/// Shops, id counters and the schedule the stories fill.
pub(super) struct World {
    shops: Vec<Shop>,
    buyers: u64,
    next_event: u64,
    next_order: u64,
    next_refund: u64,
    pub(super) schedule: Schedule,
}

/// Facts about one order that later parts of its story need.
struct Order<'a> {
    shop: &'a str,
    order_id: String,
    buyer_id: String,
    amount_fen: i64,
}

impl World {
    pub(super) fn new(rng: &mut SmallRng, shops: u32, max_disorder_ms: i64) -> World {
        let shops = (0..shops.max(1))
            .map(|i| Shop {
                id: format!("shop-{i:05}"),
                late_rate: rng.random_range(0.005..0.12),
                refund_rate: rng.random_range(0.02..0.14),
                five_star: rng.random_range(0.55..0.95),
                satisfied: rng.random_range(0.65..0.97),
            })
            .collect::<Vec<_>>();
        let buyers = shops.len() as u64 * 150;
        World {
            shops,
            buyers,
            next_event: 0,
            next_order: 0,
            next_refund: 0,
            schedule: Schedule::new(max_disorder_ms),
        }
    }

    /// Starts stories beginning on the day starting at `day_start` until they have
    /// scheduled at least `target` events.
    pub(super) fn start_day(&mut self, rng: &mut SmallRng, day_start: Timestamp, target: u64) {
        let mut made = 0;
        while made < target {
            let t = day_start.plus_ms(time_of_day(rng));
            // Bigger shops sell more: skew the pick towards low indices.
            let shop = ((rng.random::<f64>().powf(1.6)) * self.shops.len() as f64) as usize;
            let shop = shop.min(self.shops.len() - 1);
            made += if rng.random_bool(0.3) {
                self.service_story(rng, shop, t)
            } else {
                self.order_story(rng, shop, t)
            };
        }
    }

    /// Schedules one event; its time is rounded down to a whole second, as most
    /// producers send (payment-relative deadlines stay exact: payments are whole seconds).
    fn event(&mut self, shop: &str, t: Timestamp, body: EventBody) -> u64 {
        self.next_event += 1;
        let ev = Event {
            event_id: format!("evt-{:09}", self.next_event),
            shop_id: shop.to_string(),
            event_time: Timestamp(t.0 - t.0.rem_euclid(1000)),
            body,
        };
        self.schedule.push(ev);
        1
    }

    /// A buyer: often one of the shop's regulars (so groups and monthly caps occur).
    fn buyer(&self, rng: &mut SmallRng, shop: usize) -> String {
        let n = if rng.random_bool(0.3) {
            (shop as u64 * 7919 + rng.random_range(0..20)) % self.buyers
        } else {
            rng.random_range(0..self.buyers)
        };
        format!("buyer-{n:07}")
    }

    fn order_story(&mut self, rng: &mut SmallRng, shop_idx: usize, t0: Timestamp) -> u64 {
        self.next_order += 1;
        let shop = &self.shops[shop_idx];
        let (late_rate, refund_rate, five_star) =
            (shop.late_rate, shop.refund_rate, shop.five_star);
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
        let order_ref = || OrderRef {
            order_id: o.order_id.clone(),
            buyer_id: o.buyer_id.clone(),
        };

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
                let mut k = log(
                    self,
                    shipped.plus_ms(-rng.random_range(MIN_MS..20 * MIN_MS)),
                    WarehouseOutbound,
                );
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
            let bad = [
                LogisticsStatus::Lost,
                LogisticsStatus::Damaged,
                LogisticsStatus::Rejected,
            ];
            let t = transit.plus_ms(rng.random_range(HOUR_MS..3 * DAY_MS));
            n += log(self, t, bad[rng.random_range(0..3)]);
            return n + self.refund_story(
                rng,
                &o,
                t.plus_ms(HOUR_MS),
                Some(RefundReason::NotReceived),
            );
        }
        let mut delivered = transit.plus_ms(rng.random_range(6 * HOUR_MS..3 * DAY_MS));
        if let Some(by) = promise {
            if rng.random_bool(0.85) && by.0 > transit.0 + HOUR_MS {
                delivered = Timestamp(transit.0 + rng.random_range(HOUR_MS / 2..by.0 - transit.0));
            }
        }
        let door = if door_only {
            rng.random_bool(0.85)
        } else {
            rng.random_bool(0.1)
        };
        let status = if door {
            LogisticsStatus::DoorDelivered
        } else {
            LogisticsStatus::Delivered
        };
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
            let after = if rng.random_bool(0.95) {
                0..15 * DAY_MS
            } else {
                15 * DAY_MS..20 * DAY_MS
            };
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

    fn refund_story(
        &mut self,
        rng: &mut SmallRng,
        o: &Order<'_>,
        t0: Timestamp,
        reason: Option<RefundReason>,
    ) -> u64 {
        self.next_refund += 1;
        let refund_id = format!("rf-{:09}", self.next_refund);
        let reason = reason.unwrap_or_else(|| pick_reason(rng));
        let kind = match reason {
            RefundReason::NotReceived | RefundReason::LateShipment => RefundKind::RefundOnly,
            _ => [
                RefundKind::ReturnAndRefund,
                RefundKind::ReturnAndRefund,
                RefundKind::RefundOnly,
                RefundKind::Exchange,
            ][rng.random_range(0..4)],
        };
        let amount_fen = if rng.random_bool(0.8) {
            o.amount_fen
        } else {
            o.amount_fen / 2
        };
        let mut t = t0;
        let stage = |w: &mut World, t: Timestamp, stage: RefundStage| {
            let body = RefundUpdate {
                refund_id: refund_id.clone(),
                order_id: o.order_id.clone(),
                buyer_id: o.buyer_id.clone(),
                stage,
            };
            w.event(o.shop, t, EventBody::Refund(body))
        };
        let mut n = stage(
            self,
            t,
            RefundStage::Requested {
                kind,
                reason,
                amount_fen,
            },
        );
        let mut step = |rng: &mut SmallRng, lo: i64, hi: i64| {
            t = t.plus_ms(rng.random_range(lo..hi));
            t
        };
        if rng.random_bool(0.1) {
            let reason = pick_reason(rng);
            n += stage(
                self,
                step(rng, HOUR_MS, 10 * HOUR_MS),
                RefundStage::Modified {
                    reason,
                    amount_fen: amount_fen * 9 / 10,
                },
            );
        }
        let answer = rng.random_range(0..100);
        let (refunded, closed_by) = if answer < 70 {
            n += stage(
                self,
                step(rng, 10 * MIN_MS, 24 * HOUR_MS),
                RefundStage::MerchantAgreed,
            );
            if kind != RefundKind::RefundOnly {
                let tracking = format!("RT{:012}", self.next_refund * 11 + 3);
                n += stage(
                    self,
                    step(rng, 6 * HOUR_MS, 2 * DAY_MS),
                    RefundStage::ReturnShipped {
                        return_tracking_no: tracking,
                    },
                );
                n += stage(
                    self,
                    step(rng, DAY_MS, 4 * DAY_MS),
                    RefundStage::ReturnReceived,
                );
            }
            (kind != RefundKind::Exchange, ClosedBy::Merchant)
        } else if answer < 90 {
            n += stage(
                self,
                step(rng, HOUR_MS, 2 * DAY_MS),
                RefundStage::MerchantRejected,
            );
            if rng.random_bool(0.55) {
                n += stage(
                    self,
                    step(rng, HOUR_MS, 3 * DAY_MS),
                    RefundStage::PlatformIntervened,
                );
                let liable = if rng.random_bool(0.6) {
                    Liable::Merchant
                } else {
                    Liable::Buyer
                };
                n += stage(
                    self,
                    step(rng, 6 * HOUR_MS, 2 * DAY_MS),
                    RefundStage::PlatformRuled { liable },
                );
                (liable == Liable::Merchant, ClosedBy::Platform)
            } else {
                (false, ClosedBy::Buyer)
            }
        } else {
            step(rng, 2 * DAY_MS, 3 * DAY_MS);
            (true, ClosedBy::SystemTimeout)
        };
        let done = step(rng, MIN_MS, 6 * HOUR_MS);
        n += stage(
            self,
            done,
            RefundStage::Completed {
                refunded,
                closed_by,
            },
        );
        if kind == RefundKind::ReturnAndRefund && rng.random_bool(0.03) {
            let label = MaliciousLabel::ALL[rng.random_range(0..MaliciousLabel::ALL.len())];
            n += stage(
                self,
                step(rng, DAY_MS, 5 * DAY_MS),
                RefundStage::LabelConfirmed { label },
            );
        }
        let order_ref = OrderRef {
            order_id: o.order_id.clone(),
            buyer_id: o.buyer_id.clone(),
        };
        let after = done.plus_ms(rng.random_range(MIN_MS..DAY_MS));
        n + if refunded {
            self.event(o.shop, after, EventBody::OrderClosed(order_ref))
        } else {
            self.event(o.shop, after, EventBody::OrderCompleted(order_ref))
        }
    }

    fn service_story(&mut self, rng: &mut SmallRng, shop_idx: usize, t0: Timestamp) -> u64 {
        let shop_id = self.shops[shop_idx].id.clone();
        let satisfied = self.shops[shop_idx].satisfied;
        let buyer_id = self.buyer(rng, shop_idx);
        // Sometimes the same buyer rates again within minutes (min_interval exclusions).
        let ratings = if rng.random_bool(0.06) { 2 } else { 1 };
        let mut t = t0;
        let mut n = 0;
        for _ in 0..ratings {
            let handler = if rng.random_bool(0.7) {
                Handler::Human
            } else {
                Handler::Bot
            };
            let phase = if rng.random_bool(0.5) {
                Phase::PreSale
            } else {
                Phase::AfterSale
            };
            let level = if rng.random_bool(satisfied) {
                [
                    SatisfactionLevel::VerySatisfied,
                    SatisfactionLevel::Satisfied,
                ][rng.random_range(0..2)]
            } else {
                [
                    SatisfactionLevel::Neutral,
                    SatisfactionLevel::Dissatisfied,
                    SatisfactionLevel::VeryDissatisfied,
                ][rng.random_range(0..3)]
            };
            let mut flags = Vec::new();
            if handler == Handler::Bot && rng.random_bool(0.15) {
                flags.push(ServiceFlag::Robot);
            }
            if rng.random_bool(0.02) {
                flags.push(ServiceFlag::SuspectedFraud);
            }
            let agent_id = match handler {
                Handler::Human => format!("agent-{shop_idx}-{}", rng.random_range(0..8)),
                Handler::Bot => format!("bot-{shop_idx}"),
            };
            let body = ServiceRated {
                buyer_id: buyer_id.clone(),
                agent_id,
                handler,
                phase,
                level,
                flags,
            };
            n += self.event(&shop_id, t, EventBody::ServiceRated(body));
            t = t.plus_ms(rng.random_range(2 * MIN_MS..15 * MIN_MS));
        }
        n
    }
}

/// An `order.paid` with realistic options (explicit deadline ~20 %, Cainiao ~15 %,
/// delivery promise ~10 %).
fn paid(rng: &mut SmallRng, o: &Order<'_>, t0: Timestamp) -> OrderPaid {
    let given = rng.random_bool(0.2);
    let ship_deadline = if given {
        t0.plus_ms([24, 48, 72][rng.random_range(0..3)] * HOUR_MS)
    } else {
        t0.plus_ms(48 * HOUR_MS)
    };
    let fulfillment = if rng.random_bool(0.15) {
        Fulfillment::Cainiao
    } else {
        Fulfillment::Merchant
    };
    let (delivery_promise, promised_delivery_by) = if rng.random_bool(0.1) {
        match rng.random_range(0..3) {
            0 => (DeliveryPromise::SameDay, Some(t0.plus_ms(12 * HOUR_MS))),
            1 => (
                DeliveryPromise::NextDay,
                Some(Timestamp(t0.day().start().0 + 2 * DAY_MS)),
            ),
            _ => (
                DeliveryPromise::DoorDelivery,
                Some(t0.plus_ms(72 * HOUR_MS)),
            ),
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

/// Milliseconds into the day, weighted to waking hours (Shanghai).
fn time_of_day(rng: &mut SmallRng) -> i64 {
    let hour = if rng.random_bool(0.9) {
        rng.random_range(8..24)
    } else {
        rng.random_range(0..8)
    };
    hour * HOUR_MS + rng.random_range(0..3600) * 1000
}

fn pick_reason(rng: &mut SmallRng) -> RefundReason {
    RefundReason::ALL[rng.random_range(0..RefundReason::ALL.len())]
}

fn dsr_score(rng: &mut SmallRng, five_star: f64) -> u8 {
    if rng.random_bool(five_star) {
        5
    } else {
        [4, 4, 4, 3, 3, 2, 1][rng.random_range(0..7)]
    }
}
