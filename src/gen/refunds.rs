//! A refund's story: REQUESTED, sometimes MODIFIED, then the merchant agrees (with a
//! return for goods) or rejects (the buyer gives up, or the platform intervenes and
//! rules), or lets it time out; COMPLETED; rarely a malicious-refund label afterwards;
//! finally the order is closed (refunded) or completed.

use super::world::{Order, World, MIN_MS};
use crate::domain::event::*;
use crate::domain::time::{Timestamp, DAY_MS, HOUR_MS};
use rand::rngs::SmallRng;
use rand::Rng;

impl World {
    pub(super) fn refund_story(
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
        let amount_fen = if rng.random_bool(0.8) { o.amount_fen } else { o.amount_fen / 2 };
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
        let mut n = stage(self, t, RefundStage::Requested { kind, reason, amount_fen });
        let mut step = |rng: &mut SmallRng, lo: i64, hi: i64| {
            t = t.plus_ms(rng.random_range(lo..hi));
            t
        };
        if rng.random_bool(0.1) {
            let reason = pick_reason(rng);
            n += stage(
                self,
                step(rng, HOUR_MS, 10 * HOUR_MS),
                RefundStage::Modified { reason, amount_fen: amount_fen * 9 / 10 },
            );
        }
        let answer = rng.random_range(0..100);
        let (refunded, closed_by) = if answer < 70 {
            n += stage(self, step(rng, 10 * MIN_MS, 24 * HOUR_MS), RefundStage::MerchantAgreed);
            if kind != RefundKind::RefundOnly {
                let tracking = format!("RT{:012}", self.next_refund * 11 + 3);
                n += stage(
                    self,
                    step(rng, 6 * HOUR_MS, 2 * DAY_MS),
                    RefundStage::ReturnShipped { return_tracking_no: tracking },
                );
                n += stage(self, step(rng, DAY_MS, 4 * DAY_MS), RefundStage::ReturnReceived);
            }
            (kind != RefundKind::Exchange, ClosedBy::Merchant)
        } else if answer < 90 {
            n += stage(self, step(rng, HOUR_MS, 2 * DAY_MS), RefundStage::MerchantRejected);
            if rng.random_bool(0.55) {
                n += stage(self, step(rng, HOUR_MS, 3 * DAY_MS), RefundStage::PlatformIntervened);
                let liable = if rng.random_bool(0.6) { Liable::Merchant } else { Liable::Buyer };
                n += stage(self, step(rng, 6 * HOUR_MS, 2 * DAY_MS), RefundStage::PlatformRuled { liable });
                (liable == Liable::Merchant, ClosedBy::Platform)
            } else {
                (false, ClosedBy::Buyer)
            }
        } else {
            step(rng, 2 * DAY_MS, 3 * DAY_MS);
            (true, ClosedBy::SystemTimeout)
        };
        let done = step(rng, MIN_MS, 6 * HOUR_MS);
        n += stage(self, done, RefundStage::Completed { refunded, closed_by });
        if kind == RefundKind::ReturnAndRefund && rng.random_bool(0.03) {
            let label = MaliciousLabel::ALL[rng.random_range(0..MaliciousLabel::ALL.len())];
            n += stage(self, step(rng, DAY_MS, 5 * DAY_MS), RefundStage::LabelConfirmed { label });
        }
        let order_ref = OrderRef { order_id: o.order_id.clone(), buyer_id: o.buyer_id.clone() };
        let after = done.plus_ms(rng.random_range(MIN_MS..DAY_MS));
        n + if refunded {
            self.event(o.shop, after, EventBody::OrderClosed(order_ref))
        } else {
            self.event(o.shop, after, EventBody::OrderCompleted(order_ref))
        }
    }
}

fn pick_reason(rng: &mut SmallRng) -> RefundReason {
    RefundReason::ALL[rng.random_range(0..RefundReason::ALL.len())]
}
