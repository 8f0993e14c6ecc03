//! A customer-service rating story: one rating, sometimes a second one by the same buyer
//! a few minutes later (so `min_interval` exclusions occur); BOT chats are sometimes
//! flagged ROBOT, a few ratings SUSPECTED_FRAUD.

use super::world::{World, MIN_MS};
use crate::domain::event::*;
use crate::domain::time::Timestamp;
use rand::rngs::SmallRng;
use rand::Rng;

impl World {
    pub(super) fn service_story(&mut self, rng: &mut SmallRng, shop_idx: usize, t0: Timestamp) -> u64 {
        let shop_id = self.shops[shop_idx].id.clone();
        let satisfied = self.shops[shop_idx].satisfied;
        let buyer_id = self.buyer(rng, shop_idx);
        // Sometimes the same buyer rates again within minutes (min_interval exclusions).
        let ratings = if rng.random_bool(0.06) { 2 } else { 1 };
        let mut t = t0;
        let mut n = 0;
        for _ in 0..ratings {
            let handler = if rng.random_bool(0.7) { Handler::Human } else { Handler::Bot };
            let phase = if rng.random_bool(0.5) { Phase::PreSale } else { Phase::AfterSale };
            let level = if rng.random_bool(satisfied) {
                [SatisfactionLevel::VerySatisfied, SatisfactionLevel::Satisfied][rng.random_range(0..2)]
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
            let body = ServiceRated { buyer_id: buyer_id.clone(), agent_id, handler, phase, level, flags };
            n += self.event(&shop_id, t, EventBody::ServiceRated(body));
            t = t.plus_ms(rng.random_range(2 * MIN_MS..15 * MIN_MS));
        }
        n
    }
}
