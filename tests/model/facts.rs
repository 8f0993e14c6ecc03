//! Folds the events into per-shop facts, the way SPEC §9 "Identity and facts" reads them:
//! one fact reported twice counts once, the earliest by (`event_time`, `event_id`); the
//! latest `PLATFORM_RULED` decides `liable`; the latest reason is the largest
//! (`event_time`, `event_id`) among `REQUESTED`/`MODIFIED`. Orders and refunds are keyed
//! by id within their shop (work is routed by `shop_id`).

use shopscore::domain::event::*;
use shopscore::domain::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// One reported fact: when, which event (and its input line), what.
#[derive(Clone, Debug)]
pub struct Fact<T> {
    pub time: Timestamp,
    pub event_id: String,
    pub line: u64,
    pub value: T,
}

impl<T> Fact<T> {
    fn key(&self) -> (Timestamp, &str) {
        (self.time, &self.event_id)
    }
}

/// Keeps the earliest of two reports.
fn keep_earliest<T>(slot: &mut Option<Fact<T>>, new: Fact<T>) {
    if slot.as_ref().is_none_or(|old| new.key() < old.key()) {
        *slot = Some(new);
    }
}

/// Keeps the latest of two reports.
fn keep_latest<T>(slot: &mut Option<Fact<T>>, new: Fact<T>) {
    if slot.as_ref().is_none_or(|old| new.key() > old.key()) {
        *slot = Some(new);
    }
}

#[derive(Default, Debug)]
pub struct Order {
    pub paid: Option<Fact<OrderPaid>>,
    /// Value: the `order.completed` buyer.
    pub completed: Option<Fact<String>>,
    pub closed: Option<Fact<()>>,
    pub rated: Option<Fact<OrderRated>>,
    /// Every logistics update, any tracking number.
    pub logistics: Vec<Fact<LogisticsStatus>>,
}

#[derive(Default, Debug)]
pub struct Refund {
    /// The order of the refund's first event in stream order.
    pub order_id: String,
    /// Value: the request's reason.
    pub requested: Option<Fact<RefundReason>>,
    pub latest_reason: Option<Fact<RefundReason>>,
    pub first_intervened: Option<Fact<()>>,
    pub latest_ruling: Option<Fact<Liable>>,
    /// Value: (refunded, closed_by).
    pub completed: Option<Fact<(bool, ClosedBy)>>,
}

#[derive(Default, Debug)]
pub struct Shop {
    pub orders: BTreeMap<String, Order>,
    pub refunds: BTreeMap<String, Refund>,
    /// Orders with a refund that got `LABEL_CONFIRMED`.
    pub labelled_orders: BTreeSet<String>,
    pub service: Vec<Fact<ServiceRated>>,
}

/// Every shop with at least one valid event, with its facts.
pub fn fold(events: &[(u64, Event)]) -> BTreeMap<String, Shop> {
    let mut shops: BTreeMap<String, Shop> = BTreeMap::new();
    for (line, ev) in events {
        let shop = shops.entry(ev.shop_id.clone()).or_default();
        fn fact<T>(line: u64, ev: &Event, value: T) -> Fact<T> {
            Fact { time: ev.event_time, event_id: ev.event_id.clone(), line, value }
        }
        match &ev.body {
            EventBody::OrderPaid(p) => keep_earliest(
                &mut shop.orders.entry(p.order_id.clone()).or_default().paid,
                fact(*line, ev, p.clone()),
            ),
            EventBody::OrderCompleted(r) => keep_earliest(
                &mut shop.orders.entry(r.order_id.clone()).or_default().completed,
                fact(*line, ev, r.buyer_id.clone()),
            ),
            EventBody::OrderClosed(r) => keep_earliest(
                &mut shop.orders.entry(r.order_id.clone()).or_default().closed,
                fact(*line, ev, ()),
            ),
            EventBody::OrderRated(r) => keep_earliest(
                &mut shop.orders.entry(r.order_id.clone()).or_default().rated,
                fact(*line, ev, r.clone()),
            ),
            EventBody::Logistics(l) => {
                shop.orders.entry(l.order_id.clone()).or_default().logistics.push(fact(*line, ev, l.status))
            }
            EventBody::ServiceRated(s) => shop.service.push(fact(*line, ev, s.clone())),
            EventBody::Refund(r) => {
                let refund = shop
                    .refunds
                    .entry(r.refund_id.clone())
                    .or_insert_with(|| Refund { order_id: r.order_id.clone(), ..Refund::default() });
                match &r.stage {
                    RefundStage::Requested { reason, .. } => {
                        keep_earliest(&mut refund.requested, fact(*line, ev, *reason));
                        keep_latest(&mut refund.latest_reason, fact(*line, ev, *reason));
                    }
                    RefundStage::Modified { reason, .. } => {
                        keep_latest(&mut refund.latest_reason, fact(*line, ev, *reason))
                    }
                    RefundStage::PlatformIntervened => {
                        keep_earliest(&mut refund.first_intervened, fact(*line, ev, ()))
                    }
                    RefundStage::PlatformRuled { liable } => {
                        keep_latest(&mut refund.latest_ruling, fact(*line, ev, *liable))
                    }
                    RefundStage::Completed { refunded, closed_by } => {
                        keep_earliest(&mut refund.completed, fact(*line, ev, (*refunded, *closed_by)))
                    }
                    RefundStage::LabelConfirmed { .. } => {
                        shop.labelled_orders.insert(r.order_id.clone());
                    }
                    RefundStage::MerchantAgreed
                    | RefundStage::MerchantRejected
                    | RefundStage::ReturnShipped { .. }
                    | RefundStage::ReturnReceived => {}
                }
            }
        }
    }
    shops
}

impl Order {
    /// SPEC §5 shipped time: the first `PICKED_UP`; for `CAINIAO` also the first sorting
    /// status strictly after the earliest `WAREHOUSE_OUTBOUND` (any tracking number),
    /// whichever is earliest. Returns the deciding logistics fact.
    pub fn shipped(&self, fulfillment: Fulfillment) -> Option<&Fact<LogisticsStatus>> {
        fn earliest<'a>(
            it: impl Iterator<Item = &'a Fact<LogisticsStatus>>,
        ) -> Option<&'a Fact<LogisticsStatus>> {
            it.min_by(|a, b| a.key().cmp(&b.key()))
        }
        let pickup = earliest(self.logistics.iter().filter(|f| f.value == LogisticsStatus::PickedUp));
        let sorting = if fulfillment == Fulfillment::Cainiao {
            let outbound = self
                .logistics
                .iter()
                .filter(|f| f.value == LogisticsStatus::WarehouseOutbound)
                .map(|f| f.time)
                .min();
            outbound.and_then(|out| {
                earliest(self.logistics.iter().filter(|f| f.value.is_sorting() && f.time > out))
            })
        } else {
            None
        };
        match (pickup, sorting) {
            (Some(a), Some(b)) => Some(if b.key() < a.key() { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The first delivery that keeps `promise` (SPEC §5 broken delivery promise).
    pub fn delivered(&self, promise: DeliveryPromise) -> Option<&Fact<LogisticsStatus>> {
        let keeps = |s: LogisticsStatus| match promise {
            DeliveryPromise::None => false,
            DeliveryPromise::SameDay | DeliveryPromise::NextDay => {
                matches!(s, LogisticsStatus::Delivered | LogisticsStatus::DoorDelivered)
            }
            DeliveryPromise::DoorDelivery => s == LogisticsStatus::DoorDelivered,
        };
        self.logistics.iter().filter(|f| keeps(f.value)).min_by(|a, b| a.key().cmp(&b.key()))
    }
}
