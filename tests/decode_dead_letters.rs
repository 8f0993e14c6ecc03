//! One test per class of bad input (SPEC §7, §9 "Input"): each checks the error's `code()`
//! and that the reason names the field and value. Also: what must NOT be a dead letter
//! (unknown extra fields, fields of other types/stages), and that no input panics.

use proptest::prelude::*;
use serde_json::{json, Value};
use shopscore::domain::decode::*;
use shopscore::domain::*;

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

fn base(ty: &str) -> Value {
    let mut v = json!({
        "event_id": "e1", "type": ty, "shop_id": "s1", "event_time": "2024-05-31T18:00:00+08:00",
    });
    let extra = match ty {
        "order.paid" => json!({"order_id": "o1", "buyer_id": "b1", "amount_fen": 100}),
        "order.completed" | "order.closed" => json!({"order_id": "o1", "buyer_id": "b1"}),
        "order.rated" => {
            json!({"order_id": "o1", "buyer_id": "b1", "description": 5, "service": 4, "logistics": 3})
        }
        "logistics.update" => {
            json!({"order_id": "o1", "tracking_no": "t1", "carrier": "SF", "status": "PICKED_UP"})
        }
        "refund.update" => {
            json!({"refund_id": "r1", "order_id": "o1", "buyer_id": "b1", "stage": "REQUESTED",
                                  "kind": "REFUND_ONLY", "reason": "QUALITY", "amount_fen": 100})
        }
        "service.rated" => {
            json!({"buyer_id": "b1", "agent_id": "a1", "handler": "HUMAN", "phase": "PRE_SALE",
                                  "level": "SATISFIED"})
        }
        _ => json!({}),
    };
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

fn with(ty: &str, changes: Value) -> Vec<u8> {
    let mut v = base(ty);
    for (k, x) in changes.as_object().expect("object") {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).expect("serializes")
}

fn without(ty: &str, field: &str) -> Vec<u8> {
    let mut v = base(ty);
    v.as_object_mut().expect("object").remove(field);
    serde_json::to_vec(&v).expect("serializes")
}

/// Decodes raw text with a number/literal spliced in for `field` (serde_json::Value cannot
/// hold `100.0`-as-written or out-of-range integers).
fn splice(ty: &str, field: &str, literal: &str) -> Vec<u8> {
    let mut v = base(ty);
    v[field] = json!("__X__");
    serde_json::to_string(&v).expect("serializes").replace("\"__X__\"", literal).into_bytes()
}

/// Asserts a dead letter of class `code` whose reason contains every needle.
fn dead(bytes: &[u8], code: &str, needles: &[&str]) -> DecodeError {
    let err = match decode_json(bytes, None, &opts()) {
        Ok(ev) => panic!("expected {code}, decoded {ev:?} from {}", String::from_utf8_lossy(bytes)),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{err}");
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "reason {msg:?} should contain {n:?}");
    }
    err
}

#[test]
fn valid_bases_decode() {
    for ty in EventType::ALL {
        let ev = decode_json(&with(ty.as_str(), json!({})), None, &opts()).unwrap();
        assert_eq!(ev.event_type(), *ty);
        assert_eq!(ev.event_id, "e1");
    }
}

#[test]
fn malformed_json() {
    let e = dead(br#"{"event_id":"e1","type":}"#, "malformed_json", &["malformed JSON at line 1 column 25"]);
    assert!(matches!(e, DecodeError::MalformedJson { line: 1, column: 25, .. }));
    dead(b"{event_id: 1}", "malformed_json", &["key must be a string"]);
    dead(b"{\"a\":1} {\"b\":2}", "malformed_json", &["trailing characters"]);
    dead(b"", "malformed_json", &["EOF"]);
    dead(b"   ", "malformed_json", &["EOF"]);
}

#[test]
fn truncated_json() {
    let full = with("order.paid", json!({}));
    for cut in [1, 10, full.len() / 2, full.len() - 1] {
        dead(&full[..cut], "malformed_json", &["EOF while parsing"]);
    }
}

#[test]
fn not_an_object() {
    dead(b"[1,2,3]", "not_an_object", &["expected a JSON object, found an array"]);
    dead(br#""order.paid""#, "not_an_object", &["found a string"]);
    dead(b"42", "not_an_object", &["found a number"]);
    dead(b"null", "not_an_object", &["found null"]);
    dead(b"true", "not_an_object", &["found a boolean"]);
}

#[test]
fn duplicate_key_top_level() {
    dead(
        br#"{"event_id":"e1","type":"order.closed","shop_id":"s1","event_time":1717149600000,"order_id":"o1","buyer_id":"b1","order_id":"o2"}"#,
        "duplicate_key",
        &["duplicate key `order_id`"],
    );
    // Also for unknown keys, and for a known key given once as null.
    dead(br#"{"x":1,"type":"order.closed","x":2}"#, "duplicate_key", &["`x`"]);
    dead(br#"{"type":null,"type":"order.closed"}"#, "duplicate_key", &["`type`"]);
}

#[test]
fn duplicate_key_nested_in_unknown_field() {
    let mut line = String::from_utf8(with("order.closed", json!({}))).unwrap();
    line.pop();
    line.push_str(r#","meta":{"trace":{"span":1,"span":2}}}"#);
    dead(line.as_bytes(), "duplicate_key", &["duplicate key `span`"]);
    let mut line = String::from_utf8(with("order.closed", json!({}))).unwrap();
    line.pop();
    line.push_str(r#","tags":[{"k":1},{"k":1,"k":1}]}"#);
    dead(line.as_bytes(), "duplicate_key", &["`k`"]);
}

#[test]
fn not_utf8() {
    let mut bytes = with("order.paid", json!({}));
    bytes[20] = 0xff;
    let e = dead(&bytes, "not_utf8", &["not valid UTF-8"]);
    assert_eq!(e, DecodeError::NotUtf8 { valid_up_to: 20 });
    dead(b"\xef\xbb\xbf{}\xc3", "not_utf8", &["UTF-8"]);
}

#[test]
fn unknown_type() {
    dead(&with("order.shipped", json!({})), "unknown_type", &[r#"unknown event type "order.shipped""#]);
    dead(&with("ORDER.PAID", json!({})), "unknown_type", &["ORDER.PAID"]);
}

#[test]
fn unknown_enum_value() {
    dead(
        &with("logistics.update", json!({"status": "shipped"})),
        "unknown_enum_value",
        &[r#"unknown value "shipped" for `status` (expected one of CREATED, PICKED_UP,"#],
    );
    dead(
        &with("logistics.update", json!({"status": "picked_up"})),
        "unknown_enum_value",
        &["\"picked_up\"", "`status`"],
    );
    dead(&with("order.paid", json!({"fulfillment": "Cainiao"})), "unknown_enum_value", &["`fulfillment`"]);
    dead(
        &with("refund.update", json!({"stage": "DONE"})),
        "unknown_enum_value",
        &["`stage`", "LABEL_CONFIRMED"],
    );
    dead(&with("refund.update", json!({"kind": "REFUND"})), "unknown_enum_value", &["`kind`"]);
    dead(
        &with("service.rated", json!({"flags": ["ROBOT", "robot"]})),
        "unknown_enum_value",
        &["\"robot\"", "`flags`"],
    );
}

#[test]
fn missing_field_for_every_type() {
    let cases = [
        ("order.paid", "amount_fen", "for type order.paid"),
        ("order.paid", "order_id", "for type order.paid"),
        ("order.completed", "buyer_id", "for type order.completed"),
        ("order.closed", "order_id", "for type order.closed"),
        ("order.rated", "logistics", "for type order.rated"),
        ("logistics.update", "carrier", "for type logistics.update"),
        ("refund.update", "refund_id", "for type refund.update"),
        ("refund.update", "kind", "for type refund.update stage REQUESTED"),
        ("service.rated", "level", "for type service.rated"),
        ("service.rated", "event_time", ""),
        ("order.paid", "shop_id", ""),
        ("order.paid", "event_id", ""),
        ("order.paid", "type", ""),
    ];
    for (ty, field, ctx) in cases {
        let msg = format!("missing required field `{field}`{}{ctx}", if ctx.is_empty() { "" } else { " " });
        dead(&without(ty, field), "missing_field", &[&msg]);
        // null counts as absent
        dead(&with(ty, json!({ field: null })), "missing_field", &[&msg]);
    }
}

#[test]
fn missing_stage_fields() {
    let refund = |stage: &str, extra: Value| {
        let mut v = base("refund.update");
        v["stage"] = json!(stage);
        for k in ["kind", "reason", "amount_fen"] {
            v.as_object_mut().unwrap().remove(k);
        }
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::to_vec(&v).unwrap()
    };
    let stage_msg =
        |f: &str, s: &str| format!("missing required field `{f}` for type refund.update stage {s}");
    dead(
        &refund("MODIFIED", json!({"reason": "OTHER"})),
        "missing_field",
        &[&stage_msg("amount_fen", "MODIFIED")],
    );
    dead(
        &refund("RETURN_SHIPPED", json!({})),
        "missing_field",
        &[&stage_msg("return_tracking_no", "RETURN_SHIPPED")],
    );
    dead(&refund("PLATFORM_RULED", json!({})), "missing_field", &[&stage_msg("liable", "PLATFORM_RULED")]);
    dead(
        &refund("COMPLETED", json!({"refunded": true})),
        "missing_field",
        &[&stage_msg("closed_by", "COMPLETED")],
    );
    dead(
        &refund("COMPLETED", json!({"closed_by": "BUYER"})),
        "missing_field",
        &[&stage_msg("refunded", "COMPLETED")],
    );
    dead(&refund("LABEL_CONFIRMED", json!({})), "missing_field", &[&stage_msg("label", "LABEL_CONFIRMED")]);
    // Stages without fields need none.
    for s in ["MERCHANT_AGREED", "MERCHANT_REJECTED", "RETURN_RECEIVED", "PLATFORM_INTERVENED"] {
        assert!(decode_json(&refund(s, json!({})), None, &opts()).is_ok(), "{s}");
    }
    // A promise needs promised_delivery_by.
    dead(
        &with("order.paid", json!({"delivery_promise": "DOOR_DELIVERY"})),
        "missing_field",
        &["missing required field `promised_delivery_by` for type order.paid"],
    );
}

#[test]
fn empty_identifiers() {
    for (ty, field) in [
        ("order.paid", "event_id"),
        ("order.paid", "shop_id"),
        ("logistics.update", "tracking_no"),
        ("service.rated", "agent_id"),
    ] {
        let e = dead(
            &with(ty, json!({ field: "" })),
            "empty_field",
            &[&format!("`{field}` must be a non-empty string")],
        );
        assert_eq!(e, DecodeError::EmptyField { field });
    }
}

#[test]
fn ill_typed_integers() {
    let int = "must be a JSON integer fitting in 64 bits";
    dead(
        &splice("order.paid", "amount_fen", "100.0"),
        "ill_typed",
        &["`amount_fen`", int, "found float 100.0"],
    );
    dead(&splice("order.paid", "amount_fen", "1e3"), "ill_typed", &["`amount_fen`", "found float 1000.0"]);
    dead(
        &splice("order.paid", "amount_fen", "\"100\""),
        "ill_typed",
        &["`amount_fen`", "found string \"100\""],
    );
    dead(
        &splice("order.paid", "amount_fen", "9223372036854775808"),
        "ill_typed",
        &["`amount_fen`", "9223372036854775808"],
    );
    dead(
        &splice("order.paid", "amount_fen", "-9223372036854775809"),
        "ill_typed",
        &["`amount_fen`", "found float"],
    );
    dead(
        &splice("order.paid", "amount_fen", "123456789012345678901234567890"),
        "ill_typed",
        &["`amount_fen`"],
    );
    dead(&splice("order.rated", "service", "true"), "ill_typed", &["`service`", "found bool true"]);
    dead(&splice("order.rated", "service", "[5]"), "ill_typed", &["`service`", "found an array"]);
    // i64 extremes that fit are fine.
    assert!(decode_json(&splice("order.paid", "amount_fen", "9223372036854775807"), None, &opts()).is_ok());
}

#[test]
fn ill_typed_strings_bools_and_lists() {
    dead(
        &splice("order.paid", "order_id", "true"),
        "ill_typed",
        &["field `order_id` must be a string, found bool true"],
    );
    dead(&splice("order.paid", "buyer_id", "42"), "ill_typed", &["`buyer_id`", "found integer 42"]);
    dead(&splice("order.paid", "type", "{}"), "ill_typed", &["`type`", "found an object"]);
    dead(&splice("logistics.update", "status", "1"), "ill_typed", &["`status`"]);
    let completed = |refunded: &str| {
        let mut v = base("refund.update");
        v["stage"] = json!("COMPLETED");
        v["closed_by"] = json!("BUYER");
        v["refunded"] = json!("__X__");
        serde_json::to_string(&v).unwrap().replace("\"__X__\"", refunded).into_bytes()
    };
    dead(&completed("\"true\""), "ill_typed", &["`refunded` must be a JSON bool, found string \"true\""]);
    dead(&completed("1"), "ill_typed", &["`refunded`"]);
    assert!(decode_json(&completed("false"), None, &opts()).is_ok());
    dead(
        &splice("service.rated", "flags", "\"ROBOT\""),
        "ill_typed",
        &["`flags` must be an array of strings"],
    );
    dead(&splice("service.rated", "flags", "[\"ROBOT\",3]"), "ill_typed", &["`flags[1]` must be a string"]);
}

#[test]
fn negative_amount() {
    dead(
        &with("order.paid", json!({"amount_fen": -5})),
        "negative_amount",
        &["`amount_fen` is negative (-5)"],
    );
    dead(
        &with("refund.update", json!({"amount_fen": -1})),
        "negative_amount",
        &["`amount_fen` is negative (-1)"],
    );
}

#[test]
fn score_out_of_range() {
    dead(
        &with("order.rated", json!({"description": 6})),
        "score_out_of_range",
        &["`description` must be 1–5, found 6"],
    );
    dead(
        &with("order.rated", json!({"service": 0})),
        "score_out_of_range",
        &["`service` must be 1–5, found 0"],
    );
    dead(&with("order.rated", json!({"logistics": -1})), "score_out_of_range", &["`logistics`", "found -1"]);
}

#[test]
fn impossible_times() {
    let range = "is outside [2000-01-01T00:00:00+08:00, 2100-01-01T00:00:00+08:00)";
    dead(
        &with("order.closed", json!({"event_time": "1999-12-31T23:59:59+08:00"})),
        "impossible_time",
        &["`event_time` 1999-12-31T23:59:59+08:00", range],
    );
    dead(
        &with("order.closed", json!({"event_time": "2100-01-01T00:00:00+08:00"})),
        "impossible_time",
        &["`event_time` 2100-01-01", range],
    );
    dead(
        &with("order.closed", json!({"event_time": 0})),
        "impossible_time",
        &["`event_time` 0 (epoch ms)", range],
    );
    dead(
        &with("order.paid", json!({"ship_deadline": "2099-12-31T16:00:00Z"})),
        "impossible_time",
        &["`ship_deadline`", range],
    );
    dead(
        &with("order.paid", json!({"ship_deadline": "2024-05-31T17:59:59+08:00"})),
        "impossible_time",
        &["`ship_deadline` 2024-05-31T17:59:59+08:00 is before the payment time 2024-05-31T18:00:00+08:00"],
    );
    dead(
        &with(
            "order.paid",
            json!({"delivery_promise": "SAME_DAY", "promised_delivery_by": 1717149599999_i64}),
        ),
        "impossible_time",
        &["`promised_delivery_by` 2024-05-31T17:59:59.999+08:00 is before the payment time"],
    );
}

#[test]
fn times_that_are_not_times() {
    let not_time = "must be an RFC 3339 time (with `T` and an offset or `Z`) or integer epoch milliseconds";
    dead(
        &with("order.closed", json!({"event_time": "1717149600000"})),
        "ill_typed",
        &["`event_time`", not_time, "\"1717149600000\""],
    );
    dead(
        &splice("order.closed", "event_time", "1717149600000.0"),
        "ill_typed",
        &["`event_time`", "found float"],
    );
    dead(
        &with("order.closed", json!({"event_time": "2024-05-31 18:00:00+08:00"})),
        "ill_typed",
        &["`event_time`", "\"2024-05-31 18:00:00+08:00\""],
    );
    dead(&with("order.closed", json!({"event_time": "2024-05-31T18:00:00"})), "ill_typed", &["`event_time`"]);
    dead(
        &with("order.paid", json!({"ship_deadline": true})),
        "ill_typed",
        &["`ship_deadline`", "found bool true"],
    );
}

#[test]
fn wrong_topic() {
    let bytes = with("order.paid", json!({}));
    let e = decode_json(&bytes, Some(Stream::Logistics), &opts()).unwrap_err();
    assert_eq!(e.code(), "wrong_topic");
    assert_eq!(e.to_string(), "event type order.paid belongs on topic orders, not logistics");
    assert!(decode_json(&bytes, Some(Stream::Orders), &opts()).is_ok());
    // Protobuf: a logistics type inside an OrderEvent.
    let m = pb::OrderEvent {
        event_id: Some("e".into()),
        r#type: Some("refund.update".into()),
        shop_id: Some("s".into()),
        event_time: Some(1_717_149_600_000),
        ..Default::default()
    };
    let e = decode_proto(Stream::Orders, &prost::Message::encode_to_vec(&m), &opts()).unwrap_err();
    assert_eq!(e.to_string(), "event type refund.update belongs on topic refunds, not orders");
}

#[test]
fn malformed_protobuf() {
    for (stream, bytes) in [
        (Stream::Orders, &[0x0a, 0x05, b'a'][..]), // string longer than the buffer
        (Stream::Logistics, &[0x0f][..]),          // invalid wire type 7
        (Stream::Refunds, &[0x0a, 0x02, 0xff, 0xfe][..]), // string that is not UTF-8
        (Stream::Service, &[0x20, 0xff][..]),      // truncated varint
    ] {
        let e = decode_proto(stream, bytes, &opts()).unwrap_err();
        assert_eq!(e.code(), "malformed_protobuf", "{stream}: {e}");
        assert!(e.to_string().starts_with("malformed protobuf: "));
    }
}

#[test]
fn protobuf_validation_matches_json() {
    let m = pb::OrderEvent {
        event_id: Some("e".into()),
        r#type: Some("order.rated".into()),
        shop_id: Some("s".into()),
        event_time: Some(1_717_149_600_000),
        order_id: Some("o".into()),
        buyer_id: Some("b".into()),
        description: Some(6),
        service: Some(5),
        logistics: Some(5),
        ..Default::default()
    };
    let e = decode_proto(Stream::Orders, &prost::Message::encode_to_vec(&m), &opts()).unwrap_err();
    assert_eq!(e.to_string(), "`description` must be 1–5, found 6");
    let m = pb::ServiceEvent { r#type: Some("service.rated".into()), ..Default::default() };
    let e = decode_proto(Stream::Service, &prost::Message::encode_to_vec(&m), &opts()).unwrap_err();
    assert_eq!(e.to_string(), "missing required field `event_id`");
    let m = pb::LogisticsEvent {
        event_id: Some("e".into()),
        r#type: Some("logistics.update".into()),
        shop_id: Some("s".into()),
        event_time: Some(1_717_149_600_000),
        order_id: Some("o".into()),
        tracking_no: Some("t".into()),
        carrier: Some("c".into()),
        status: Some("picked_up".into()),
    };
    let e = decode_proto(Stream::Logistics, &prost::Message::encode_to_vec(&m), &opts()).unwrap_err();
    assert_eq!(e.code(), "unknown_enum_value");
    let e = decode_proto(Stream::Orders, &[], &opts()).unwrap_err();
    assert_eq!(e.to_string(), "missing required field `type`");
}

#[test]
fn unknown_and_foreign_fields_are_ignored() {
    // Unknown extra fields of any shape, fields of other types, fields of other stages,
    // and promised_delivery_by without a promise: none is validated.
    let bytes = with(
        "order.completed",
        json!({
            "producer": {"name": "x", "nested": [1, 2.5, {"a": null}]},
            "amount_fen": "not a number",
            "status": "nonsense",
            "description": 99,
            "flags": 7,
            "ship_deadline": "yesterday",
        }),
    );
    let ev = decode_json(&bytes, None, &opts()).unwrap();
    assert_eq!(ev.body, EventBody::OrderCompleted(OrderRef { order_id: "o1".into(), buyer_id: "b1".into() }));
    let ev = decode_json(
        &with("refund.update", json!({"stage": "MERCHANT_AGREED", "liable": 3, "label": "x"})),
        None,
        &opts(),
    )
    .unwrap();
    let EventBody::Refund(r) = ev.body else { panic!() };
    assert_eq!(r.stage, RefundStage::MerchantAgreed);
    let ev = decode_json(
        &with("order.paid", json!({"promised_delivery_by": "garbage", "delivery_promise": null})),
        None,
        &opts(),
    )
    .unwrap();
    let EventBody::OrderPaid(p) = ev.body else { panic!() };
    assert_eq!((p.delivery_promise, p.promised_delivery_by), (DeliveryPromise::None, None));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_json(&bytes, None, &opts());
        for s in Stream::ALL {
            let _ = decode_proto(*s, &bytes, &opts());
        }
    }

    #[test]
    fn json_ish_text_never_panics(s in r#"[{}\[\]",:0-9a-z_.eE+\- \\]{0,120}"#) {
        let _ = decode_json(s.as_bytes(), None, &opts());
        let _ = decode_json(s.as_bytes(), Some(Stream::Orders), &opts());
    }

    #[test]
    fn mutated_valid_events_never_panic(
        ty in proptest::sample::select(EventType::ALL),
        field in proptest::sample::select(&["event_time", "amount_fen", "ship_deadline", "promised_delivery_by",
            "description", "status", "stage", "flags", "refunded", "type", "delivery_promise"][..]),
        literal in prop_oneof![
            Just("null".to_string()), Just("1e400".to_string()), Just("-0".to_string()), Just("[]".to_string()),
            any::<i64>().prop_map(|i| i.to_string()), any::<f64>().prop_map(|f| format!("{f:?}")),
            "\\PC{0,30}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ],
    ) {
        let bytes = splice(ty.as_str(), field, &literal);
        let mut v = base(ty.as_str());
        v["delivery_promise"] = json!("SAME_DAY");
        let _ = decode_json(&bytes, None, &opts());
        let _ = decode_json(&serde_json::to_vec(&v).unwrap(), None, &opts());
    }
}
