//! The outbox scan (`kafka::outbox::missing`), called directly against tansu 0.6.0:
//! - whose `ListOffsets` names an offset inside a partition's last batch, and whose fetch skips
//!   a batch that starts before the fetch offset (README → Brokers). A commit records such an
//!   offset as where its outputs start, so the scan must still read that batch, and must not
//!   hang;
//! - behind a proxy that makes it slow, with answers that each carry part of the records: the
//!   scan must not take a position below the end for read through, however long the next
//!   answer takes (since session 29; see `kafka::scan_end`).

mod support;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use shopscore::config::KafkaConfig;
use shopscore::kafka::client::Clients;
use shopscore::kafka::outbox::{missing, record_id, Outbox};
use shopscore::kafka::records::{KafkaRecord, ID_HEADER};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::*;

/// Longer than a scan of a few records takes on this machine (well under a second), shorter
/// than the outbox's stall limit (5 minutes): a scan stuck below the end fails here.
const SCAN_LIMIT: Duration = Duration::from_secs(60);

fn outbox_record(seq: u64, i: usize) -> KafkaRecord {
    KafkaRecord {
        topic: "out".into(),
        key: Some(format!("k{i}").into_bytes()),
        payload: format!("output {i}").into_bytes(),
        headers: vec![(ID_HEADER.into(), record_id(0, seq, i))],
    }
}

/// Writes `records` to partition 0 of `out` as one batch (flushed together).
fn write_batch(brokers: &str, records: &[KafkaRecord]) {
    let mut config = client(brokers);
    config.set("linger.ms", "50").set("batch.num.messages", "10000");
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let record = BaseRecord::to(&r.topic).partition(0).key(r.key.as_deref().unwrap()).payload(&r.payload);
        producer.send(record.headers(headers)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Earlier outputs of commit 1: a batch of six records (offsets 0–5), then a batch of two
/// (6–7), the partition's last.
fn earlier_outputs(brokers: &str) {
    let earlier: Vec<KafkaRecord> = (0..8).map(|i| outbox_record(1, i)).collect();
    write_batch(brokers, &earlier[..6]);
    write_batch(brokers, &earlier[6..]);
}

/// A broker whose partition `out` holds [`earlier_outputs`], and that partition's end as its
/// `ListOffsets` answers it (the start a commit would record).
fn with_earlier_outputs() -> (Tansu, i64) {
    let t = Tansu::start();
    create_topics(&t.brokers, &[("out", 1)]);
    earlier_outputs(&t.brokers);
    let start = listed_end(&t.brokers);
    (t, start)
}

/// The partition's end as `ListOffsets` answers it: what a commit records as its outputs'
/// start.
fn listed_end(brokers: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = client(brokers).create().unwrap();
    use rdkafka::consumer::Consumer;
    consumer.fetch_watermarks("out", 0, Duration::from_secs(10)).unwrap().1
}

/// Runs the scan with `cfg` on a thread, failing if it takes longer than `limit`.
fn scan_with(cfg: KafkaConfig, outbox: Outbox, limit: Duration) -> (Vec<KafkaRecord>, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let began = Instant::now();
        let got = missing(&Clients::new(&cfg), &outbox);
        let _ = tx.send((got, began.elapsed()));
    });
    let (got, took) = rx.recv_timeout(limit).expect("the outbox scan did not end");
    (got.unwrap(), took)
}

/// Runs the scan with the default settings, failing if it takes longer than [`SCAN_LIMIT`].
fn scan(brokers: &str, outbox: Outbox) -> (Vec<KafkaRecord>, Duration) {
    scan_with(KafkaConfig { brokers: brokers.to_owned(), ..KafkaConfig::default() }, outbox, SCAN_LIMIT)
}

fn ids(records: &[KafkaRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8(r.header(ID_HEADER).unwrap().to_vec()).unwrap()).collect()
}

/// A crash before any output of the commit was sent: its start lies in the last batch (7 on
/// tansu 0.6.0, whose fetch from there returns nothing), and every record is missing.
#[test]
fn a_start_inside_the_last_batch_finds_every_unsent_record_missing() {
    let (t, start) = with_earlier_outputs();
    eprintln!("ListOffsets end: {start} (8 records)");
    let records: Vec<KafkaRecord> = (0..3).map(|i| outbox_record(9, i)).collect();
    let outbox = Outbox { shard: 0, seq: 9, starts: vec![("out".into(), 0, start)], records };
    let (got, took) = scan(&t.brokers, outbox);
    assert_eq!(ids(&got), ["0:9:0", "0:9:1", "0:9:2"]);
    eprintln!("scan took {took:?}");
}

/// A crash after two of the commit's three outputs were sent: the scan finds those two and
/// reports only the third missing.
#[test]
fn a_start_inside_the_last_batch_finds_the_sent_records() {
    let (t, start) = with_earlier_outputs();
    let records: Vec<KafkaRecord> = (0..3).map(|i| outbox_record(9, i)).collect();
    write_batch(&t.brokers, &records[..2]);
    let outbox = Outbox { shard: 0, seq: 9, starts: vec![("out".into(), 0, start)], records };
    let (got, _) = scan(&t.brokers, outbox);
    assert_eq!(ids(&got), ["0:9:2"]);
}

/// A slow broker whose answers each carry only part of the records: a crash after all eight of
/// a commit's outputs were sent (four batches of two), and a scan whose fetch answers the
/// broker holds back 6 s each while `fetch.max.bytes` keeps each one short. Between two answers
/// the scan's position lies below the end the last one reported, for longer than the 5 s after
/// which, until session 29, such a partition counted as read through and the records not yet
/// read were sent again. The scan must find all eight, and report none missing.
#[test]
fn a_slow_broker_answering_in_parts_gets_nothing_twice() {
    let upstream = free_port();
    let proxy = Proxy::plain(upstream);
    let t = Tansu::start_advertising_on(upstream, proxy.port);
    create_topics(&t.brokers, &[("out", 1)]);
    let start = listed_end(&t.brokers);
    let mut records: Vec<KafkaRecord> = (0..8).map(|i| outbox_record(9, i)).collect();
    for r in &mut records {
        r.payload = vec![b'x'; 8_000];
    }
    for pair in records.chunks(2) {
        write_batch(&t.brokers, pair);
    }
    let mut cfg = KafkaConfig { brokers: t.brokers.clone(), ..KafkaConfig::default() };
    cfg.client.insert("fetch.max.bytes".into(), "1000".into());
    cfg.client.insert("message.max.bytes".into(), "1000".into());
    proxy.slow(Duration::from_secs(6));
    let outbox = Outbox { shard: 0, seq: 9, starts: vec![("out".into(), 0, start)], records };
    // Four answers of ~6 s each, and the requests around them: well under 4 minutes.
    let (got, took) = scan_with(cfg, outbox, Duration::from_secs(240));
    proxy.slow(Duration::ZERO);
    eprintln!("scan took {took:?}");
    assert_eq!(ids(&got), Vec::<String>::new(), "delivered records reported missing");
}
