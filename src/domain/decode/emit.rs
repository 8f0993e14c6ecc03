//! The fields an [`Event`] is written with, shared by the JSON and protobuf encoders so the
//! two encodings can never disagree on which fields appear.
//!
//! Defaults are left out, so re-decoding gives the same [`Event`]: `ship_deadline` is
//! written exactly when it was given, `fulfillment` only when not MERCHANT,
//! `delivery_promise` (and `promised_delivery_by`) only when not NONE, `flags` only when
//! non-empty.

use super::raw::Field;
use crate::domain::event::*;
use crate::domain::time::Timestamp;

/// One field value to write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Out<'e> {
    Str(&'e str),
    Int(i64),
    Time(Timestamp),
    Bool(bool),
    Flags(&'e [ServiceFlag]),
}

/// Calls `f` for every field of `ev`, common fields first, in the order of SPEC §2.
pub(crate) fn for_each_field<'e>(ev: &'e Event, mut f: impl FnMut(Field, Out<'e>)) {
    f(Field::EventId, Out::Str(&ev.event_id));
    f(Field::Type, Out::Str(ev.event_type().as_str()));
    f(Field::ShopId, Out::Str(&ev.shop_id));
    f(Field::EventTime, Out::Time(ev.event_time));
    match &ev.body {
        EventBody::OrderPaid(p) => {
            f(Field::OrderId, Out::Str(&p.order_id));
            f(Field::BuyerId, Out::Str(&p.buyer_id));
            f(Field::AmountFen, Out::Int(p.amount_fen));
            if p.ship_deadline_given {
                f(Field::ShipDeadline, Out::Time(p.ship_deadline));
            }
            if p.fulfillment != Fulfillment::Merchant {
                f(Field::Fulfillment, Out::Str(p.fulfillment.as_str()));
            }
            if p.delivery_promise != DeliveryPromise::None {
                f(Field::DeliveryPromise, Out::Str(p.delivery_promise.as_str()));
                if let Some(t) = p.promised_delivery_by {
                    f(Field::PromisedDeliveryBy, Out::Time(t));
                }
            }
        }
        EventBody::OrderCompleted(r) | EventBody::OrderClosed(r) => {
            f(Field::OrderId, Out::Str(&r.order_id));
            f(Field::BuyerId, Out::Str(&r.buyer_id));
        }
        EventBody::OrderRated(r) => {
            f(Field::OrderId, Out::Str(&r.order_id));
            f(Field::BuyerId, Out::Str(&r.buyer_id));
            f(Field::Description, Out::Int(r.description.into()));
            f(Field::Service, Out::Int(r.service.into()));
            f(Field::Logistics, Out::Int(r.logistics.into()));
        }
        EventBody::Logistics(l) => {
            f(Field::OrderId, Out::Str(&l.order_id));
            f(Field::TrackingNo, Out::Str(&l.tracking_no));
            f(Field::Carrier, Out::Str(&l.carrier));
            f(Field::Status, Out::Str(l.status.as_str()));
        }
        EventBody::Refund(r) => {
            f(Field::RefundId, Out::Str(&r.refund_id));
            f(Field::OrderId, Out::Str(&r.order_id));
            f(Field::BuyerId, Out::Str(&r.buyer_id));
            f(Field::Stage, Out::Str(r.stage.name().as_str()));
            stage_fields(&r.stage, f);
        }
        EventBody::ServiceRated(s) => {
            f(Field::BuyerId, Out::Str(&s.buyer_id));
            f(Field::AgentId, Out::Str(&s.agent_id));
            f(Field::Handler, Out::Str(s.handler.as_str()));
            f(Field::Phase, Out::Str(s.phase.as_str()));
            f(Field::Level, Out::Str(s.level.as_str()));
            if !s.flags.is_empty() {
                f(Field::Flags, Out::Flags(&s.flags));
            }
        }
    }
}

fn stage_fields<'e>(stage: &'e RefundStage, mut f: impl FnMut(Field, Out<'e>)) {
    match stage {
        RefundStage::Requested { kind, reason, amount_fen } => {
            f(Field::Kind, Out::Str(kind.as_str()));
            f(Field::Reason, Out::Str(reason.as_str()));
            f(Field::AmountFen, Out::Int(*amount_fen));
        }
        RefundStage::Modified { reason, amount_fen } => {
            f(Field::Reason, Out::Str(reason.as_str()));
            f(Field::AmountFen, Out::Int(*amount_fen));
        }
        RefundStage::ReturnShipped { return_tracking_no } => {
            f(Field::ReturnTrackingNo, Out::Str(return_tracking_no));
        }
        RefundStage::PlatformRuled { liable } => f(Field::Liable, Out::Str(liable.as_str())),
        RefundStage::Completed { refunded, closed_by } => {
            f(Field::Refunded, Out::Bool(*refunded));
            f(Field::ClosedBy, Out::Str(closed_by.as_str()));
        }
        RefundStage::LabelConfirmed { label } => f(Field::Label, Out::Str(label.as_str())),
        RefundStage::MerchantAgreed
        | RefundStage::MerchantRejected
        | RefundStage::ReturnReceived
        | RefundStage::PlatformIntervened => {}
    }
}
