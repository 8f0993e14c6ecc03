//! Decode throughput on typical `order.paid` lines (one core). Ignored by default; run with
//! `cargo test --release --test decode_throughput -- --ignored --nocapture`.

use shopscore::domain::decode::*;
use shopscore::domain::time::{Timestamp, HOUR_MS};
use shopscore::domain::*;
use std::time::Instant;

fn lines(n: usize) -> Vec<String> {
    let t0 = 1_717_149_600_000;
    (0..n)
        .map(|i| {
            let t = Timestamp(t0 + i as i64 * 1_337);
            let given = i % 5 == 0;
            encode_json(&Event {
                event_id: format!("evt-{i:09}"),
                shop_id: format!("shop-{:05}", i % 10_000),
                event_time: t,
                body: EventBody::OrderPaid(OrderPaid {
                    order_id: format!("ord-{i:09}"),
                    buyer_id: format!("buyer-{:07}", i * 7 % 1_500_000),
                    amount_fen: 1_000 + (i as i64 * 7_919) % 300_000,
                    ship_deadline: t.plus_ms(if given { 24 } else { 48 } * HOUR_MS),
                    ship_deadline_given: given,
                    fulfillment: if i % 7 == 0 { Fulfillment::Cainiao } else { Fulfillment::Merchant },
                    delivery_promise: DeliveryPromise::None,
                    promised_delivery_by: None,
                }),
            })
        })
        .collect()
}

#[test]
#[ignore]
fn order_paid_json_throughput() {
    let lines = lines(100_000);
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let opts = DecodeOptions::default();
    let rounds = 20;
    let start = Instant::now();
    let mut ok = 0u64;
    for _ in 0..rounds {
        for l in &lines {
            ok += u64::from(decode_json(l.as_bytes(), Some(Stream::Orders), &opts).is_ok());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(ok, rounds * lines.len() as u64);
    println!(
        "decode_json order.paid: {:.0} events/s, {:.0} MB/s (avg line {} bytes)",
        ok as f64 / secs,
        (bytes as f64 * rounds as f64) / secs / 1e6,
        bytes / lines.len()
    );
    let protos: Vec<Vec<u8>> =
        lines.iter().map(|l| encode_proto(&decode_json(l.as_bytes(), None, &opts).unwrap())).collect();
    let start = Instant::now();
    let mut ok = 0u64;
    for _ in 0..rounds {
        for p in &protos {
            ok += u64::from(decode_proto(Stream::Orders, p, &opts).is_ok());
        }
    }
    println!("decode_proto order.paid: {:.0} events/s", ok as f64 / start.elapsed().as_secs_f64());
}
