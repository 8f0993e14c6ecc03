//! [`RawEvent`] → [`Event`]: the input rules of SPEC §2/§9, shared by JSON and protobuf.
//!
//! Rules, in the order they are checked:
//! - `type` first (absent → `missing_field`, not a string → `ill_typed`, unknown →
//!   `unknown_type`); then, when the record came from a known topic, the type must belong
//!   to it (`wrong_topic`). Then `event_id`, `shop_id`, `event_time`, then the type's own
//!   fields in the order of SPEC §2.
//! - `null` is absent. An absent optional field takes its default (`ship_deadline` =
//!   `event_time` + the default ship window, `fulfillment` MERCHANT, `delivery_promise`
//!   NONE, `flags` empty); an absent required field is `missing_field`.
//! - Identifiers and other free-text fields (`event_id`, `shop_id`, `order_id`,
//!   `buyer_id`, `refund_id`, `tracking_no`, `carrier`, `return_tracking_no`, `agent_id`)
//!   must be non-empty strings: `""` is `empty_field` (it is present, so not "missing",
//!   but cannot identify anything). They are kept byte-exact, not trimmed.
//! - Integers must be JSON integers fitting i64 (`100.0`, `1e3`, `"100"` are `ill_typed`);
//!   amounts ≥ 0 (`negative_amount`); DSR scores 1–5 (`score_out_of_range`). (`-0` is
//!   read by serde_json as the float -0.0, so it is `ill_typed` too.)
//! - Times: an RFC 3339 string with `T` and an offset or `Z`, or integer epoch ms. Any
//!   other value (numeric string, float, a space for `T`) is `ill_typed`; a time outside
//!   [2000, 2100) Shanghai, or a `ship_deadline`/`promised_delivery_by` before the payment
//!   (`event_time`), is `impossible_time`.
//! - Enumerations are case-sensitive wire names (`unknown_enum_value` otherwise);
//!   `refunded` must be a JSON bool.
//! - `promised_delivery_by` is required when `delivery_promise` is not NONE, and ignored
//!   (not validated, decoded as `None`) otherwise. Likewise a field of another type or
//!   refund stage is ignored, never validated.

use super::error::{DecodeError, FieldContext};
use super::raw::{Field, RawEvent, RawValue};
use super::read::*;
use super::DecodeOptions;
use crate::domain::event::*;
use crate::domain::time::Timestamp;

/// Validates a raw record. `expected`: the stream (topic) it was read from, if known.
pub(crate) fn validate(
    mut raw: RawEvent<'_>,
    expected: Option<Stream>,
    opts: &DecodeOptions,
) -> Result<Event, DecodeError> {
    let event_type = event_type(&raw)?;
    if let Some(found_on) = expected {
        let belongs = event_type.stream();
        if belongs != found_on {
            return Err(DecodeError::WrongTopic { event_type, belongs, found_on });
        }
    }
    let common = FieldContext::Common;
    let event_id = req_str(&mut raw, Field::EventId, common)?;
    let shop_id = req_str(&mut raw, Field::ShopId, common)?;
    let event_time = req_time(&raw, Field::EventTime, common)?;
    let mut v = Validator { raw, ctx: FieldContext::Type(event_type) };
    let body = match event_type {
        EventType::OrderPaid => EventBody::OrderPaid(v.order_paid(event_time, opts)?),
        EventType::OrderCompleted => EventBody::OrderCompleted(v.order_ref()?),
        EventType::OrderClosed => EventBody::OrderClosed(v.order_ref()?),
        EventType::OrderRated => EventBody::OrderRated(v.order_rated()?),
        EventType::LogisticsUpdate => EventBody::Logistics(v.logistics()?),
        EventType::RefundUpdate => EventBody::Refund(v.refund()?),
        EventType::ServiceRated => EventBody::ServiceRated(v.service_rated()?),
    };
    Ok(Event { event_id, shop_id, event_time, body })
}

fn event_type(raw: &RawEvent<'_>) -> Result<EventType, DecodeError> {
    match raw.get(Field::Type) {
        RawValue::Null => Err(missing(Field::Type, FieldContext::Common)),
        RawValue::Str(s) => {
            EventType::parse(s).ok_or_else(|| DecodeError::UnknownType { value: s.to_string() })
        }
        other => Err(ill_typed(Field::Type, "a string", other)),
    }
}

/// Validates the type-specific fields, with the context named in "missing" reasons.
struct Validator<'a> {
    raw: RawEvent<'a>,
    ctx: FieldContext,
}

impl Validator<'_> {
    fn str(&mut self, f: Field) -> Result<String, DecodeError> {
        req_str(&mut self.raw, f, self.ctx)
    }

    fn order_paid(&mut self, paid: Timestamp, opts: &DecodeOptions) -> Result<OrderPaid, DecodeError> {
        let order_id = self.str(Field::OrderId)?;
        let buyer_id = self.str(Field::BuyerId)?;
        let amount_fen = amount(&self.raw, Field::AmountFen, self.ctx)?;
        let (ship_deadline, ship_deadline_given) = match opt_time(&self.raw, Field::ShipDeadline)? {
            Some(t) => (not_before(Field::ShipDeadline, t, paid)?, true),
            None => (paid.plus_ms(opts.default_ship_window_ms), false),
        };
        let fulfillment = opt_enum(&self.raw, Field::Fulfillment)?.unwrap_or(Fulfillment::Merchant);
        let delivery_promise = opt_enum(&self.raw, Field::DeliveryPromise)?.unwrap_or(DeliveryPromise::None);
        let promised_delivery_by = match delivery_promise {
            DeliveryPromise::None => None,
            _ => {
                let t = req_time(&self.raw, Field::PromisedDeliveryBy, self.ctx)?;
                Some(not_before(Field::PromisedDeliveryBy, t, paid)?)
            }
        };
        Ok(OrderPaid {
            order_id,
            buyer_id,
            amount_fen,
            ship_deadline,
            ship_deadline_given,
            fulfillment,
            delivery_promise,
            promised_delivery_by,
        })
    }

    fn order_ref(&mut self) -> Result<OrderRef, DecodeError> {
        Ok(OrderRef { order_id: self.str(Field::OrderId)?, buyer_id: self.str(Field::BuyerId)? })
    }

    fn order_rated(&mut self) -> Result<OrderRated, DecodeError> {
        Ok(OrderRated {
            order_id: self.str(Field::OrderId)?,
            buyer_id: self.str(Field::BuyerId)?,
            description: score(&self.raw, Field::Description, self.ctx)?,
            service: score(&self.raw, Field::Service, self.ctx)?,
            logistics: score(&self.raw, Field::Logistics, self.ctx)?,
        })
    }

    fn logistics(&mut self) -> Result<LogisticsUpdate, DecodeError> {
        Ok(LogisticsUpdate {
            order_id: self.str(Field::OrderId)?,
            tracking_no: self.str(Field::TrackingNo)?,
            carrier: self.str(Field::Carrier)?,
            status: req_enum(&self.raw, Field::Status, self.ctx)?,
        })
    }

    fn refund(&mut self) -> Result<RefundUpdate, DecodeError> {
        let refund_id = self.str(Field::RefundId)?;
        let order_id = self.str(Field::OrderId)?;
        let buyer_id = self.str(Field::BuyerId)?;
        let name: RefundStageName = req_enum(&self.raw, Field::Stage, self.ctx)?;
        let ctx = FieldContext::Stage(name);
        let raw = &mut self.raw;
        let stage = match name {
            RefundStageName::Requested => RefundStage::Requested {
                kind: req_enum(raw, Field::Kind, ctx)?,
                reason: req_enum(raw, Field::Reason, ctx)?,
                amount_fen: amount(raw, Field::AmountFen, ctx)?,
            },
            RefundStageName::Modified => RefundStage::Modified {
                reason: req_enum(raw, Field::Reason, ctx)?,
                amount_fen: amount(raw, Field::AmountFen, ctx)?,
            },
            RefundStageName::MerchantAgreed => RefundStage::MerchantAgreed,
            RefundStageName::MerchantRejected => RefundStage::MerchantRejected,
            RefundStageName::ReturnShipped => {
                RefundStage::ReturnShipped { return_tracking_no: req_str(raw, Field::ReturnTrackingNo, ctx)? }
            }
            RefundStageName::ReturnReceived => RefundStage::ReturnReceived,
            RefundStageName::PlatformIntervened => RefundStage::PlatformIntervened,
            RefundStageName::PlatformRuled => {
                RefundStage::PlatformRuled { liable: req_enum(raw, Field::Liable, ctx)? }
            }
            RefundStageName::Completed => RefundStage::Completed {
                refunded: req_bool(raw, Field::Refunded, ctx)?,
                closed_by: req_enum(raw, Field::ClosedBy, ctx)?,
            },
            RefundStageName::LabelConfirmed => {
                RefundStage::LabelConfirmed { label: req_enum(raw, Field::Label, ctx)? }
            }
        };
        Ok(RefundUpdate { refund_id, order_id, buyer_id, stage })
    }

    fn service_rated(&mut self) -> Result<ServiceRated, DecodeError> {
        Ok(ServiceRated {
            buyer_id: self.str(Field::BuyerId)?,
            agent_id: self.str(Field::AgentId)?,
            handler: req_enum(&self.raw, Field::Handler, self.ctx)?,
            phase: req_enum(&self.raw, Field::Phase, self.ctx)?,
            level: req_enum(&self.raw, Field::Level, self.ctx)?,
            flags: flags(&self.raw)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn raw<'a>(fields: &[(Field, RawValue<'a>)]) -> RawEvent<'a> {
        let mut r = RawEvent::default();
        for (f, v) in fields {
            r.set(*f, v.clone());
        }
        r
    }
    fn s(v: &str) -> RawValue<'_> {
        RawValue::Str(Cow::Borrowed(v))
    }
    const T0: i64 = 1_717_149_600_000; // 2024-05-31T18:00:00+08:00

    fn paid<'a>(extra: &[(Field, RawValue<'a>)]) -> RawEvent<'a> {
        let mut r = raw(&[
            (Field::Type, s("order.paid")),
            (Field::EventId, s("e1")),
            (Field::ShopId, s("s1")),
            (Field::EventTime, RawValue::Int(T0)),
            (Field::OrderId, s("o1")),
            (Field::BuyerId, s("b1")),
            (Field::AmountFen, RawValue::Int(100)),
        ]);
        for (f, v) in extra {
            r.set(*f, v.clone());
        }
        r
    }

    fn check(r: RawEvent<'_>) -> Result<Event, DecodeError> {
        validate(r, None, &DecodeOptions::default())
    }

    #[test]
    fn applies_order_paid_defaults() {
        let ev = check(paid(&[])).unwrap();
        let EventBody::OrderPaid(p) = ev.body else { panic!("not paid") };
        assert_eq!(p.ship_deadline, Timestamp(T0 + 48 * 3_600_000));
        assert!(!p.ship_deadline_given);
        assert_eq!(p.fulfillment, Fulfillment::Merchant);
        assert_eq!(p.delivery_promise, DeliveryPromise::None);
        assert_eq!(p.promised_delivery_by, None);
        assert_eq!(ev.event_time, Timestamp(T0));
    }

    #[test]
    fn promised_delivery_by_ignored_without_promise() {
        let ev = check(paid(&[(Field::PromisedDeliveryBy, s("garbage"))])).unwrap();
        let EventBody::OrderPaid(p) = ev.body else { panic!("not paid") };
        assert_eq!(p.promised_delivery_by, None);
        let e = check(paid(&[(Field::DeliveryPromise, s("SAME_DAY"))])).unwrap_err();
        assert_eq!(e.to_string(), "missing required field `promised_delivery_by` for type order.paid");
    }

    #[test]
    fn deadline_equal_to_payment_is_fine_before_is_not() {
        let ev = check(paid(&[(Field::ShipDeadline, RawValue::Int(T0))])).unwrap();
        let EventBody::OrderPaid(p) = ev.body else { panic!("not paid") };
        assert!(p.ship_deadline_given);
        assert_eq!(p.ship_deadline, Timestamp(T0));
        let e = check(paid(&[(Field::ShipDeadline, RawValue::Int(T0 - 1))])).unwrap_err();
        assert_eq!(e.code(), "impossible_time");
        assert_eq!(
            e.to_string(),
            "`ship_deadline` 2024-05-31T17:59:59.999+08:00 is before the payment time \
             2024-05-31T18:00:00+08:00"
        );
    }

    #[test]
    fn scores_and_amounts() {
        let e = check(paid(&[(Field::AmountFen, RawValue::Int(-5))])).unwrap_err();
        assert_eq!(e.to_string(), "`amount_fen` is negative (-5)");
        let mut r = paid(&[(Field::Description, RawValue::Int(6))]);
        r.set(Field::Type, s("order.rated"));
        r.set(Field::Service, RawValue::Int(1));
        r.set(Field::Logistics, RawValue::Int(5));
        assert_eq!(check(r.clone()).unwrap_err().to_string(), "`description` must be 1–5, found 6");
        r.set(Field::Description, RawValue::Int(i64::MIN));
        assert_eq!(check(r.clone()).unwrap_err().code(), "score_out_of_range");
        r.set(Field::Description, RawValue::Int(3));
        let EventBody::OrderRated(d) = check(r).unwrap().body else { panic!("not rated") };
        assert_eq!((d.description, d.service, d.logistics), (3, 1, 5));
    }

    #[test]
    fn out_of_range_epoch_ms_names_value() {
        let e = check(paid(&[(Field::EventTime, RawValue::Int(i64::MAX))])).unwrap_err();
        assert_eq!(e.code(), "impossible_time");
        assert!(e.to_string().starts_with("`event_time` 9223372036854775807 (epoch ms) is outside"));
    }

    #[test]
    fn wrong_topic_and_type_errors() {
        let e = validate(paid(&[]), Some(Stream::Refunds), &DecodeOptions::default()).unwrap_err();
        assert_eq!(e.code(), "wrong_topic");
        let e = check(paid(&[(Field::Type, RawValue::Int(1))])).unwrap_err();
        assert_eq!(e.to_string(), "field `type` must be a string, found integer 1");
        let e = check(paid(&[(Field::Type, RawValue::Null)])).unwrap_err();
        assert_eq!(e.to_string(), "missing required field `type`");
    }

    #[test]
    fn flags_validation() {
        let base = [
            (Field::Type, s("service.rated")),
            (Field::EventId, s("e")),
            (Field::ShopId, s("s")),
            (Field::EventTime, RawValue::Int(T0)),
            (Field::BuyerId, s("b")),
            (Field::AgentId, s("a")),
            (Field::Handler, s("BOT")),
            (Field::Phase, s("PRE_SALE")),
            (Field::Level, s("NEUTRAL")),
        ];
        let mut r = raw(&base);
        r.set(Field::Flags, RawValue::Array(vec![s("ROBOT"), RawValue::Int(1)]));
        assert_eq!(
            check(r.clone()).unwrap_err().to_string(),
            "field `flags[1]` must be a string, found integer 1"
        );
        r.set(Field::Flags, s("ROBOT"));
        assert_eq!(check(r.clone()).unwrap_err().code(), "ill_typed");
        r.set(Field::Flags, RawValue::Array(vec![s("SUSPECTED_FRAUD"), s("ROBOT")]));
        let EventBody::ServiceRated(sr) = check(r).unwrap().body else { panic!("not service") };
        assert_eq!(sr.flags, vec![ServiceFlag::SuspectedFraud, ServiceFlag::Robot]);
    }
}
