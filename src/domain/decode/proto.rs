//! Protobuf: the input messages generated from `proto/shopscore/v1/*.proto` ([`crate::pb`])
//! and their conversions to [`RawEvent`] (decoding) and from [`Event`] (encoding).
//!
//! Decoding goes through [`RawEvent`] so protobuf records are validated by exactly the
//! same rules, with the same dead-letter reasons, as JSON ones. Times are int64 epoch
//! milliseconds; enumerations are strings with the JSON wire names.

use super::emit::{for_each_field, Out};
use super::error::DecodeError;
use super::raw::{Field, RawEvent, RawValue};
use crate::domain::event::{Event, Stream};
use prost::Message;
use std::borrow::Cow;

pub use crate::pb;
pub use pb::{LogisticsEvent, OrderEvent, RefundEvent, ServiceEvent};

fn s(v: Option<String>) -> RawValue<'static> {
    v.map_or(RawValue::Null, |v| RawValue::Str(Cow::Owned(v)))
}

fn i(v: Option<i64>) -> RawValue<'static> {
    v.map_or(RawValue::Null, RawValue::Int)
}

/// Fills the four common fields every message has.
macro_rules! common {
    ($m:expr) => {{
        let mut r = RawEvent::default();
        r.set(Field::EventId, s($m.event_id));
        r.set(Field::Type, s($m.r#type));
        r.set(Field::ShopId, s($m.shop_id));
        r.set(Field::EventTime, i($m.event_time));
        r
    }};
}

fn order_raw(m: OrderEvent) -> RawEvent<'static> {
    let mut r = common!(m);
    r.set(Field::OrderId, s(m.order_id));
    r.set(Field::BuyerId, s(m.buyer_id));
    r.set(Field::AmountFen, i(m.amount_fen));
    r.set(Field::ShipDeadline, i(m.ship_deadline));
    r.set(Field::Fulfillment, s(m.fulfillment));
    r.set(Field::DeliveryPromise, s(m.delivery_promise));
    r.set(Field::PromisedDeliveryBy, i(m.promised_delivery_by));
    r.set(Field::Description, i(m.description));
    r.set(Field::Service, i(m.service));
    r.set(Field::Logistics, i(m.logistics));
    r
}

fn logistics_raw(m: LogisticsEvent) -> RawEvent<'static> {
    let mut r = common!(m);
    r.set(Field::OrderId, s(m.order_id));
    r.set(Field::TrackingNo, s(m.tracking_no));
    r.set(Field::Carrier, s(m.carrier));
    r.set(Field::Status, s(m.status));
    r
}

fn refund_raw(m: RefundEvent) -> RawEvent<'static> {
    let mut r = common!(m);
    r.set(Field::RefundId, s(m.refund_id));
    r.set(Field::OrderId, s(m.order_id));
    r.set(Field::BuyerId, s(m.buyer_id));
    r.set(Field::Stage, s(m.stage));
    r.set(Field::Kind, s(m.kind));
    r.set(Field::Reason, s(m.reason));
    r.set(Field::AmountFen, i(m.amount_fen));
    r.set(Field::ReturnTrackingNo, s(m.return_tracking_no));
    r.set(Field::Liable, s(m.liable));
    r.set(Field::Refunded, m.refunded.map_or(RawValue::Null, RawValue::Bool));
    r.set(Field::ClosedBy, s(m.closed_by));
    r.set(Field::Label, s(m.label));
    r
}

fn service_raw(m: ServiceEvent) -> RawEvent<'static> {
    let mut r = common!(m);
    r.set(Field::BuyerId, s(m.buyer_id));
    r.set(Field::AgentId, s(m.agent_id));
    r.set(Field::Handler, s(m.handler));
    r.set(Field::Phase, s(m.phase));
    r.set(Field::Level, s(m.level));
    if !m.flags.is_empty() {
        let flags = m.flags.into_iter().map(|f| RawValue::Str(Cow::Owned(f))).collect();
        r.set(Field::Flags, RawValue::Array(flags));
    }
    r
}

fn malformed(e: prost::DecodeError) -> DecodeError {
    DecodeError::MalformedProtobuf { message: e.to_string() }
}

/// Decodes `bytes` as the message of `stream`'s topic into a [`RawEvent`] (moving the
/// message's strings, so validation does not copy them again).
pub(crate) fn decode_raw(stream: Stream, bytes: &[u8]) -> Result<RawEvent<'static>, DecodeError> {
    Ok(match stream {
        Stream::Orders => order_raw(OrderEvent::decode(bytes).map_err(malformed)?),
        Stream::Logistics => logistics_raw(LogisticsEvent::decode(bytes).map_err(malformed)?),
        Stream::Refunds => refund_raw(RefundEvent::decode(bytes).map_err(malformed)?),
        Stream::Service => service_raw(ServiceEvent::decode(bytes).map_err(malformed)?),
    })
}

fn os(v: Out<'_>) -> Option<String> {
    match v {
        Out::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn oi(v: Out<'_>) -> Option<i64> {
    match v {
        Out::Int(i) => Some(i),
        Out::Time(t) => Some(t.0),
        _ => None,
    }
}

fn ob(v: Out<'_>) -> Option<bool> {
    match v {
        Out::Bool(b) => Some(b),
        _ => None,
    }
}

/// Sets one of the four common fields (any other field is not in this message).
macro_rules! set_common {
    ($m:expr, $f:expr, $v:expr) => {
        match $f {
            Field::EventId => $m.event_id = os($v),
            Field::Type => $m.r#type = os($v),
            Field::ShopId => $m.shop_id = os($v),
            Field::EventTime => $m.event_time = oi($v),
            _ => {}
        }
    };
}

/// Encodes `ev` as the protobuf message of its stream.
pub(crate) fn encode(ev: &Event) -> Vec<u8> {
    match ev.event_type().stream() {
        Stream::Orders => {
            let mut m = OrderEvent::default();
            for_each_field(ev, |f, v| match f {
                Field::OrderId => m.order_id = os(v),
                Field::BuyerId => m.buyer_id = os(v),
                Field::AmountFen => m.amount_fen = oi(v),
                Field::ShipDeadline => m.ship_deadline = oi(v),
                Field::Fulfillment => m.fulfillment = os(v),
                Field::DeliveryPromise => m.delivery_promise = os(v),
                Field::PromisedDeliveryBy => m.promised_delivery_by = oi(v),
                Field::Description => m.description = oi(v),
                Field::Service => m.service = oi(v),
                Field::Logistics => m.logistics = oi(v),
                _ => set_common!(m, f, v),
            });
            m.encode_to_vec()
        }
        Stream::Logistics => {
            let mut m = LogisticsEvent::default();
            for_each_field(ev, |f, v| match f {
                Field::OrderId => m.order_id = os(v),
                Field::TrackingNo => m.tracking_no = os(v),
                Field::Carrier => m.carrier = os(v),
                Field::Status => m.status = os(v),
                _ => set_common!(m, f, v),
            });
            m.encode_to_vec()
        }
        Stream::Refunds => {
            let mut m = RefundEvent::default();
            for_each_field(ev, |f, v| match f {
                Field::RefundId => m.refund_id = os(v),
                Field::OrderId => m.order_id = os(v),
                Field::BuyerId => m.buyer_id = os(v),
                Field::Stage => m.stage = os(v),
                Field::Kind => m.kind = os(v),
                Field::Reason => m.reason = os(v),
                Field::AmountFen => m.amount_fen = oi(v),
                Field::ReturnTrackingNo => m.return_tracking_no = os(v),
                Field::Liable => m.liable = os(v),
                Field::Refunded => m.refunded = ob(v),
                Field::ClosedBy => m.closed_by = os(v),
                Field::Label => m.label = os(v),
                _ => set_common!(m, f, v),
            });
            m.encode_to_vec()
        }
        Stream::Service => {
            let mut m = ServiceEvent::default();
            for_each_field(ev, |f, v| match (f, v) {
                (Field::BuyerId, _) => m.buyer_id = os(v),
                (Field::AgentId, _) => m.agent_id = os(v),
                (Field::Handler, _) => m.handler = os(v),
                (Field::Phase, _) => m.phase = os(v),
                (Field::Level, _) => m.level = os(v),
                (Field::Flags, Out::Flags(flags)) => {
                    m.flags = flags.iter().map(|f| f.as_str().to_string()).collect()
                }
                _ => set_common!(m, f, v),
            });
            m.encode_to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_null() {
        let m = OrderEvent { r#type: Some("order.paid".into()), amount_fen: Some(7), ..Default::default() };
        let r = decode_raw(Stream::Orders, &m.encode_to_vec()).unwrap();
        assert_eq!(r.get(Field::AmountFen), &RawValue::Int(7));
        assert_eq!(r.get(Field::Type), &RawValue::Str("order.paid".into()));
        assert_eq!(r.get(Field::OrderId), &RawValue::Null);
        assert_eq!(r.get(Field::Flags), &RawValue::Null);
    }

    #[test]
    fn refunded_false_and_flags_are_present() {
        let m = RefundEvent { refunded: Some(false), ..Default::default() };
        let r = decode_raw(Stream::Refunds, &m.encode_to_vec()).unwrap();
        assert_eq!(r.get(Field::Refunded), &RawValue::Bool(false));
        let m = ServiceEvent { flags: vec!["ROBOT".into(), "x".into()], ..Default::default() };
        let r = decode_raw(Stream::Service, &m.encode_to_vec()).unwrap();
        let expected = vec![RawValue::Str("ROBOT".into()), RawValue::Str("x".into())];
        assert_eq!(r.get(Field::Flags), &RawValue::Array(expected));
    }

    #[test]
    fn garbage_is_malformed() {
        let e = decode_raw(Stream::Service, &[0x0a, 0x05, b'a']).unwrap_err();
        assert_eq!(e.code(), "malformed_protobuf");
        assert!(e.to_string().starts_with("malformed protobuf: "), "{e}");
    }
}
