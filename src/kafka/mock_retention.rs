//! A test helper: a mock-cluster partition whose head the broker has deleted, as retention
//! does on Kafka. The readers that start a partition at [`super::client::FIRST_OFFSET`] are
//! tested on it, because no other broker here deletes records (tansu keeps everything in the
//! tests).

use super::client::Clients;
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;
use std::time::Duration;

/// Records written, ~100 KiB each: 8 MiB, past the 5 MiB the mock cluster keeps per partition
/// (`rd_kafka_mock_msgset_new` drops the oldest batches beyond it, moving the log start).
const RECORDS: usize = 80;
const RECORD_BYTES: usize = 100 * 1024;

/// A mock cluster holding `topic`, whose partition 0 lost its head, and shopscore's clients
/// for it.
pub struct Truncated {
    /// Kept alive for the test: the cluster stops when it is dropped.
    pub _cluster: MockCluster<'static, DefaultProducerContext>,
    pub clients: Clients,
    /// Partition 0's watermarks: the log start (past 0) and the end.
    pub low: i64,
    pub high: i64,
}

/// Creates `topic` with two partitions on a new mock cluster and fills partition 0 past the
/// cluster's size limit, so that its head is deleted; partition 1 stays empty. Asserts that
/// the head was deleted (`low > 0`).
pub fn truncated_topic(topic: &str) -> Truncated {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(topic, 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("batch.size", RECORD_BYTES.to_string())
        .create()
        .unwrap();
    let payload = vec![b'x'; RECORD_BYTES];
    for _ in 0..RECORDS {
        producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&payload)).unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    assert!(low > 0 && high == RECORDS as i64, "the head of partition 0 was not deleted: {low}..{high}");
    let clients = Clients::new(&KafkaConfig { brokers, ..KafkaConfig::default() });
    Truncated { _cluster: mock, clients, low, high }
}
