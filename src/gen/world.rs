//! The generator's world: shops with their own quality profiles, id counters, and the
//! daily start of "stories" (`orders.rs`, `refunds.rs`, `service.rs`). Each story
//! schedules all its events at once (into [`Schedule`]) at its start time; they are
//! written later in time order.

use super::restate;
use super::schedule::Schedule;
use crate::domain::event::*;
use crate::domain::time::{Timestamp, HOUR_MS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One minute in milliseconds.
pub(super) const MIN_MS: i64 = 60_000;

/// How one shop behaves; drawn once per shop.
pub(super) struct Shop {
    pub(super) id: String,
    /// Probability that an order ships late (or never).
    pub(super) late_rate: f64,
    /// Probability that an order gets a refund request.
    pub(super) refund_rate: f64,
    /// Probability that a DSR score is 5.
    pub(super) five_star: f64,
    /// Probability that a service rating is satisfied.
    pub(super) satisfied: f64,
}

/// Shops, id counters and the schedule the stories fill.
pub(super) struct World {
    pub(super) shops: Vec<Shop>,
    buyers: u64,
    next_event: u64,
    pub(super) next_order: u64,
    pub(super) next_refund: u64,
    pub(super) schedule: Schedule,
    /// The share of events restated, and the random source that picks and shapes them
    /// ([`restate`]).
    restated: Option<(f64, SmallRng)>,
}

/// Facts about one order that later parts of its story need.
pub(super) struct Order<'a> {
    pub(super) shop: &'a str,
    pub(super) order_id: String,
    pub(super) buyer_id: String,
    pub(super) amount_fen: i64,
}

impl World {
    /// A world of `shops` shops; `restated`: the share of events restated and the seed of
    /// their own random source (None: no restatements).
    pub(super) fn new(
        rng: &mut SmallRng,
        shops: u32,
        max_disorder_ms: i64,
        restated: Option<(f64, u64)>,
    ) -> World {
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
            restated: restated.map(|(p, seed)| (p, SmallRng::seed_from_u64(seed))),
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

    /// Schedules one event, and sometimes a restatement of it ([`restate`]); returns how
    /// many. Times are rounded down to a whole second, as most producers send
    /// (payment-relative deadlines stay exact: payments are whole seconds).
    pub(super) fn event(&mut self, shop: &str, t: Timestamp, body: EventBody) -> u64 {
        let ev = self.new_event(shop, Timestamp(t.0 - t.0.rem_euclid(1000)), body);
        let restatement = match &mut self.restated {
            Some((p, rng)) => rng.random_bool(*p).then(|| restate::restate(rng, &ev)).flatten(),
            None => None,
        };
        let Some((other, own_at, other_at)) = restatement else {
            self.schedule.push(ev);
            return 1;
        };
        self.schedule.push(restate::moved(ev, own_at));
        let other = self.new_event(shop, other_at, other);
        self.schedule.push(other);
        2
    }

    fn new_event(&mut self, shop: &str, t: Timestamp, body: EventBody) -> Event {
        self.next_event += 1;
        Event {
            event_id: format!("evt-{:09}", self.next_event),
            shop_id: shop.to_string(),
            event_time: t,
            body,
        }
    }

    /// A buyer: often one of the shop's regulars (so groups and monthly caps occur).
    pub(super) fn buyer(&self, rng: &mut SmallRng, shop: usize) -> String {
        let n = if rng.random_bool(0.3) {
            (shop as u64 * 7919 + rng.random_range(0..20)) % self.buyers
        } else {
            rng.random_range(0..self.buyers)
        };
        format!("buyer-{n:07}")
    }
}

/// Milliseconds into the day, weighted to waking hours (Shanghai).
fn time_of_day(rng: &mut SmallRng) -> i64 {
    let hour = if rng.random_bool(0.9) { rng.random_range(8..24) } else { rng.random_range(0..8) };
    hour * HOUR_MS + rng.random_range(0..3600) * 1000
}
