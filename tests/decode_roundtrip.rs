//! Round trips through the public decode API: JSON → Event → protobuf → Event → JSON for
//! every event type and refund stage (defaults included), and property tests over
//! arbitrary valid events.

use proptest::prelude::*;
use shopscore::domain::decode::*;
use shopscore::domain::time::{Timestamp, HOUR_MS, MAX_VALID_EXCLUSIVE, MIN_VALID};
use shopscore::domain::*;

const T0: i64 = 1_717_149_600_000; // 2024-05-31T18:00:00+08:00

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

/// JSON → Event → protobuf → Event → JSON → Event; returns the first Event.
fn round_trip(json: &str) -> Event {
    let e1 = decode_json(json.as_bytes(), None, &opts()).unwrap_or_else(|e| panic!("{e}: {json}"));
    let stream = e1.event_type().stream();
    let e1_in_topic = decode_json(json.as_bytes(), Some(stream), &opts()).unwrap();
    assert_eq!(e1_in_topic, e1);
    let bytes = encode_proto(&e1);
    let e2 = decode_proto(stream, &bytes, &opts()).unwrap();
    assert_eq!(e2, e1, "protobuf round trip of {json}");
    let line = encode_json(&e2);
    assert!(!line.contains('\n') && line.starts_with('{') && line.ends_with('}'));
    let e3 = decode_json(line.as_bytes(), None, &opts()).unwrap();
    assert_eq!(e3, e1, "JSON round trip of {json} via {line}");
    assert_eq!(encode_json(&e3), line, "encoding is stable");
    e1
}

fn head(ty: &str) -> String {
    format!(r#""event_id":"e1","type":"{ty}","shop_id":"s1","event_time":"2024-05-31T18:00:00+08:00""#)
}

#[test]
fn order_paid_with_defaults() {
    let e = round_trip(&format!(
        r#"{{{},"order_id":"o1","buyer_id":"b1","amount_fen":12990}}"#,
        head("order.paid")
    ));
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.shop_id, "s1");
    assert_eq!(e.event_time, Timestamp(T0));
    let EventBody::OrderPaid(p) = &e.body else { panic!("{e:?}") };
    assert_eq!(p.order_id, "o1");
    assert_eq!(p.buyer_id, "b1");
    assert_eq!(p.amount_fen, 12990);
    assert_eq!(p.ship_deadline, Timestamp(T0 + 48 * HOUR_MS));
    assert!(!p.ship_deadline_given);
    assert_eq!(p.fulfillment, Fulfillment::Merchant);
    assert_eq!(p.delivery_promise, DeliveryPromise::None);
    assert_eq!(p.promised_delivery_by, None);
    // Defaults are not written back.
    let line = encode_json(&e);
    assert_eq!(
        line,
        r#"{"event_id":"e1","type":"order.paid","shop_id":"s1","event_time":"2024-05-31T18:00:00+08:00","order_id":"o1","buyer_id":"b1","amount_fen":12990}"#
    );
}

#[test]
fn order_paid_default_window_is_configurable() {
    let json = format!(r#"{{{},"order_id":"o1","buyer_id":"b1","amount_fen":1}}"#, head("order.paid"));
    let o = DecodeOptions { default_ship_window_ms: 24 * HOUR_MS };
    let e = decode_json(json.as_bytes(), None, &o).unwrap();
    let EventBody::OrderPaid(p) = &e.body else { panic!() };
    assert_eq!(p.ship_deadline, Timestamp(T0 + 24 * HOUR_MS));
    let back = decode_proto(Stream::Orders, &encode_proto(&e), &o).unwrap();
    assert_eq!(back, e);
}

#[test]
fn order_paid_with_every_option() {
    let e = round_trip(&format!(
        r#"{{{},"order_id":"o2","buyer_id":"b2","amount_fen":0,"ship_deadline":"2024-06-01T10:00:00Z",
            "fulfillment":"CAINIAO","delivery_promise":"NEXT_DAY","promised_delivery_by":1717344000000}}"#,
        head("order.paid")
    ));
    let EventBody::OrderPaid(p) = &e.body else { panic!() };
    assert_eq!(p.amount_fen, 0);
    assert_eq!(p.ship_deadline.to_rfc3339(), "2024-06-01T18:00:00+08:00");
    assert!(p.ship_deadline_given);
    assert_eq!(p.fulfillment, Fulfillment::Cainiao);
    assert_eq!(p.delivery_promise, DeliveryPromise::NextDay);
    assert_eq!(p.promised_delivery_by, Some(Timestamp(1_717_344_000_000)));
}

#[test]
fn every_delivery_promise() {
    for promise in DeliveryPromise::ALL {
        let e = round_trip(&format!(
            r#"{{{},"order_id":"o","buyer_id":"b","amount_fen":5,"delivery_promise":"{promise}","promised_delivery_by":"2024-06-01T00:00:00+08:00"}}"#,
            head("order.paid")
        ));
        let EventBody::OrderPaid(p) = &e.body else { panic!() };
        assert_eq!(p.delivery_promise, *promise);
        let expect = (*promise != DeliveryPromise::None).then_some(Timestamp(T0 + 6 * HOUR_MS));
        assert_eq!(p.promised_delivery_by, expect);
    }
}

#[test]
fn order_completed_closed_rated() {
    let e = round_trip(&format!(r#"{{{},"order_id":"o1","buyer_id":"b1"}}"#, head("order.completed")));
    assert_eq!(e.body, EventBody::OrderCompleted(OrderRef { order_id: "o1".into(), buyer_id: "b1".into() }));
    let e = round_trip(&format!(r#"{{{},"order_id":"o1","buyer_id":"b1"}}"#, head("order.closed")));
    assert_eq!(e.body, EventBody::OrderClosed(OrderRef { order_id: "o1".into(), buyer_id: "b1".into() }));
    let e = round_trip(&format!(
        r#"{{{},"order_id":"o1","buyer_id":"b1","description":5,"service":1,"logistics":3}}"#,
        head("order.rated")
    ));
    assert_eq!(
        e.body,
        EventBody::OrderRated(OrderRated {
            order_id: "o1".into(),
            buyer_id: "b1".into(),
            description: 5,
            service: 1,
            logistics: 3
        })
    );
}

#[test]
fn every_logistics_status() {
    for status in LogisticsStatus::ALL {
        let e = round_trip(&format!(
            r#"{{{},"order_id":"o1","tracking_no":"SF123","carrier":"SF","status":"{status}"}}"#,
            head("logistics.update")
        ));
        let EventBody::Logistics(l) = &e.body else { panic!() };
        assert_eq!((l.status, l.tracking_no.as_str(), l.carrier.as_str()), (*status, "SF123", "SF"));
    }
}

#[test]
fn every_refund_stage() {
    let cases: Vec<(&str, RefundStage)> = vec![
        (
            r#""stage":"REQUESTED","kind":"RETURN_AND_REFUND","reason":"QUALITY","amount_fen":5000"#,
            RefundStage::Requested {
                kind: RefundKind::ReturnAndRefund,
                reason: RefundReason::Quality,
                amount_fen: 5000,
            },
        ),
        (
            r#""stage":"MODIFIED","reason":"SEVEN_DAY_NO_REASON","amount_fen":4000"#,
            RefundStage::Modified { reason: RefundReason::SevenDayNoReason, amount_fen: 4000 },
        ),
        (r#""stage":"MERCHANT_AGREED""#, RefundStage::MerchantAgreed),
        (r#""stage":"MERCHANT_REJECTED""#, RefundStage::MerchantRejected),
        (
            r#""stage":"RETURN_SHIPPED","return_tracking_no":"YT9""#,
            RefundStage::ReturnShipped { return_tracking_no: "YT9".into() },
        ),
        (r#""stage":"RETURN_RECEIVED""#, RefundStage::ReturnReceived),
        (r#""stage":"PLATFORM_INTERVENED""#, RefundStage::PlatformIntervened),
        (
            r#""stage":"PLATFORM_RULED","liable":"BUYER""#,
            RefundStage::PlatformRuled { liable: Liable::Buyer },
        ),
        (
            r#""stage":"COMPLETED","refunded":false,"closed_by":"SYSTEM_TIMEOUT""#,
            RefundStage::Completed { refunded: false, closed_by: ClosedBy::SystemTimeout },
        ),
        (
            r#""stage":"COMPLETED","refunded":true,"closed_by":"PLATFORM""#,
            RefundStage::Completed { refunded: true, closed_by: ClosedBy::Platform },
        ),
        (
            r#""stage":"LABEL_CONFIRMED","label":"REUSED_EVIDENCE""#,
            RefundStage::LabelConfirmed { label: MaliciousLabel::ReusedEvidence },
        ),
    ];
    let mut names = Vec::new();
    for (fields, stage) in cases {
        let e = round_trip(&format!(
            r#"{{{},"refund_id":"r1","order_id":"o1","buyer_id":"b1",{fields}}}"#,
            head("refund.update")
        ));
        let expected =
            RefundUpdate { refund_id: "r1".into(), order_id: "o1".into(), buyer_id: "b1".into(), stage };
        names.push(expected.stage.name());
        assert_eq!(e.body, EventBody::Refund(expected));
    }
    for name in RefundStageName::ALL {
        assert!(names.contains(name), "stage {name} covered");
    }
}

#[test]
fn service_rated_with_and_without_flags() {
    let e = round_trip(&format!(
        r#"{{{},"buyer_id":"b1","agent_id":"a1","handler":"HUMAN","phase":"AFTER_SALE","level":"SATISFIED"}}"#,
        head("service.rated")
    ));
    let EventBody::ServiceRated(s) = &e.body else { panic!() };
    assert_eq!(
        (s.handler, s.phase, s.level),
        (Handler::Human, Phase::AfterSale, SatisfactionLevel::Satisfied)
    );
    assert!(s.flags.is_empty());
    let e = round_trip(&format!(
        r#"{{{},"buyer_id":"b1","agent_id":"bot","handler":"BOT","phase":"PRE_SALE","level":"VERY_DISSATISFIED","flags":["ROBOT","SUSPECTED_FRAUD"]}}"#,
        head("service.rated")
    ));
    let EventBody::ServiceRated(s) = &e.body else { panic!() };
    assert_eq!(s.flags, vec![ServiceFlag::Robot, ServiceFlag::SuspectedFraud]);
    let e = round_trip(&format!(
        r#"{{{},"buyer_id":"b1","agent_id":"a","handler":"BOT","phase":"PRE_SALE","level":"NEUTRAL","flags":[]}}"#,
        head("service.rated")
    ));
    let EventBody::ServiceRated(s) = &e.body else { panic!() };
    assert!(s.flags.is_empty());
}

#[test]
fn epoch_ms_fractions_and_escapes() {
    let e = round_trip(
        r#"{"event_id":"e\"1\u00e9","type":"order.closed","shop_id":"店铺\n1","event_time":1717149600123,"order_id":"o","buyer_id":"b"}"#,
    );
    assert_eq!(e.event_id, "e\"1é");
    assert_eq!(e.shop_id, "店铺\n1");
    assert_eq!(e.event_time, Timestamp(T0 + 123));
    assert!(encode_json(&e).contains(r#""event_time":"2024-05-31T18:00:00.123+08:00""#));
}

// ---- property tests ----

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(?s).{1,12}").expect("regex")
}

fn time() -> impl Strategy<Value = Timestamp> {
    (MIN_VALID.0..MAX_VALID_EXCLUSIVE.0 - 100 * 24 * HOUR_MS).prop_map(Timestamp)
}

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn order_paid(t: Timestamp) -> impl Strategy<Value = EventBody> {
    (
        text(),
        text(),
        0..=i64::MAX,
        prop::option::of(0..30 * 24 * HOUR_MS),
        pick(Fulfillment::ALL),
        pick(DeliveryPromise::ALL),
        0..30 * 24 * HOUR_MS,
    )
        .prop_map(
            move |(order_id, buyer_id, amount_fen, deadline, fulfillment, delivery_promise, by)| {
                EventBody::OrderPaid(OrderPaid {
                    order_id,
                    buyer_id,
                    amount_fen,
                    ship_deadline: t.plus_ms(deadline.unwrap_or(48 * HOUR_MS)),
                    ship_deadline_given: deadline.is_some(),
                    fulfillment,
                    delivery_promise,
                    promised_delivery_by: (delivery_promise != DeliveryPromise::None).then(|| t.plus_ms(by)),
                })
            },
        )
}

fn refund_stage() -> impl Strategy<Value = RefundStage> {
    prop_oneof![
        (pick(RefundKind::ALL), pick(RefundReason::ALL), 0..=i64::MAX)
            .prop_map(|(kind, reason, amount_fen)| RefundStage::Requested { kind, reason, amount_fen }),
        (pick(RefundReason::ALL), 0..=i64::MAX)
            .prop_map(|(reason, amount_fen)| RefundStage::Modified { reason, amount_fen }),
        Just(RefundStage::MerchantAgreed),
        Just(RefundStage::MerchantRejected),
        text().prop_map(|return_tracking_no| RefundStage::ReturnShipped { return_tracking_no }),
        Just(RefundStage::ReturnReceived),
        Just(RefundStage::PlatformIntervened),
        pick(Liable::ALL).prop_map(|liable| RefundStage::PlatformRuled { liable }),
        (any::<bool>(), pick(ClosedBy::ALL))
            .prop_map(|(refunded, closed_by)| { RefundStage::Completed { refunded, closed_by } }),
        pick(MaliciousLabel::ALL).prop_map(|label| RefundStage::LabelConfirmed { label }),
    ]
}

fn body(t: Timestamp) -> impl Strategy<Value = EventBody> {
    let order_ref = || (text(), text()).prop_map(|(order_id, buyer_id)| OrderRef { order_id, buyer_id });
    prop_oneof![
        order_paid(t),
        order_ref().prop_map(EventBody::OrderCompleted),
        order_ref().prop_map(EventBody::OrderClosed),
        (text(), text(), 1u8..=5, 1u8..=5, 1u8..=5).prop_map(
            |(order_id, buyer_id, description, service, logistics)| {
                EventBody::OrderRated(OrderRated { order_id, buyer_id, description, service, logistics })
            }
        ),
        (text(), text(), text(), pick(LogisticsStatus::ALL)).prop_map(
            |(order_id, tracking_no, carrier, status)| {
                EventBody::Logistics(LogisticsUpdate { order_id, tracking_no, carrier, status })
            }
        ),
        (text(), text(), text(), refund_stage()).prop_map(|(refund_id, order_id, buyer_id, stage)| {
            EventBody::Refund(RefundUpdate { refund_id, order_id, buyer_id, stage })
        }),
        (
            text(),
            text(),
            pick(Handler::ALL),
            pick(Phase::ALL),
            pick(SatisfactionLevel::ALL),
            prop::collection::vec(pick(ServiceFlag::ALL), 0..4)
        )
            .prop_map(|(buyer_id, agent_id, handler, phase, level, flags)| {
                EventBody::ServiceRated(ServiceRated { buyer_id, agent_id, handler, phase, level, flags })
            }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (text(), text(), time()).prop_flat_map(|(event_id, shop_id, event_time)| {
        body(event_time).prop_map(move |body| Event {
            event_id: event_id.clone(),
            shop_id: shop_id.clone(),
            event_time,
            body,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn json_round_trip(e in event()) {
        let line = encode_json(&e);
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(decode_json(line.as_bytes(), None, &opts()), Ok(e.clone()));
        prop_assert_eq!(decode_json(line.as_bytes(), Some(e.event_type().stream()), &opts()), Ok(e));
    }

    #[test]
    fn proto_round_trip(e in event()) {
        let bytes = encode_proto(&e);
        prop_assert_eq!(decode_proto(e.event_type().stream(), &bytes, &opts()), Ok(e));
    }
}
