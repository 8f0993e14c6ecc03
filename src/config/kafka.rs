//! `[kafka]`, `[kafka.topics]`, `[kafka.encoding]` and the free-form `[kafka.client]` settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::serde_util;

/// `[kafka]`: Kafka mode (SPEC §7, §10). `Debug` is in `redact.rs`: it masks secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`; empty means file mode.
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub brokers: String,
    /// Consumer group id.
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub group: String,
    /// Exactly-once transactions (consume + state + outputs commit together).
    pub transactional: bool,
    /// With transactions, also keep each commit's outputs in the **outbox** (as without
    /// transactions) and send them only once the commit's changelog marker is acknowledged.
    /// Each output then reaches its topic exactly once even on a broker that accepts
    /// transactions but does not isolate them from `read_committed` readers (librdkafka's mock
    /// cluster). A broker that isolates them (Kafka) does not need it. Costs, per commit with
    /// outputs, a read of the output partitions' end offsets and one more round trip.
    pub transactional_outbox: bool,
    /// Number of shards: shops are split into this many state partitions (by murmur2 of
    /// `shop_id`, like Kafka's default partitioner); the changelog topic has one partition
    /// per shard and the group spreads shards over instances. Fixed for the life of a group.
    pub shards: u32,
    /// The input topics are already partitioned by `shop_id` with Kafka's default partitioner
    /// and have `shards` partitions each: shard N then reads only partition N of every input
    /// topic instead of all of them.
    pub co_partitioned: bool,
    /// Replication factor of the topics shopscore creates (-1: the broker's default).
    pub replication_factor: i32,
    /// How often a shard refreshes the snapshots (and alerts) of the shops that changed:
    /// at a commit at least this long after its last refresh, and at every commit that
    /// follows no input (the input is quiet or idle). In between, changed shops are marked
    /// in the state and their snapshots coalesced (SPEC §6). "0s": at every commit.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: std::time::Duration,
    /// Extra librdkafka settings, e.g. `"security.protocol" = "SASL_SSL"`. Keys are normalized to
    /// librdkafka's dotted form (`security_protocol` and nested tables work too), values to strings.
    #[serde(deserialize_with = "serde_util::client_map")]
    pub client: BTreeMap<String, String>,
    pub topics: TopicsConfig,
    pub encoding: EncodingConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group: "shopscore".to_owned(),
            transactional: true,
            transactional_outbox: false,
            shards: 4,
            co_partitioned: false,
            replication_factor: -1,
            snapshot_interval: std::time::Duration::from_secs(5),
            client: BTreeMap::new(),
            topics: TopicsConfig::default(),
            encoding: EncodingConfig::default(),
        }
    }
}

impl KafkaConfig {
    /// The internal changelog topic holding every shard's state (compacted).
    pub fn changelog_topic(&self) -> String {
        format!("{}-changelog", self.group)
    }
}

/// `[kafka.topics]`: topic names (SPEC §10 defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub orders: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub logistics: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub refunds: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub service: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub metrics: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub compensations: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub alerts: String,
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub dead_letters: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            orders: "orders".to_owned(),
            logistics: "logistics".to_owned(),
            refunds: "refunds".to_owned(),
            service: "service".to_owned(),
            metrics: "shop-metrics".to_owned(),
            compensations: "compensations".to_owned(),
            alerts: "shop-alerts".to_owned(),
            dead_letters: "dead-letters".to_owned(),
        }
    }
}

impl TopicsConfig {
    /// `(key, topic)` for every topic, inputs first, in declaration order.
    pub fn all(&self) -> [(&'static str, &str); 8] {
        [
            ("orders", &self.orders),
            ("logistics", &self.logistics),
            ("refunds", &self.refunds),
            ("service", &self.service),
            ("metrics", &self.metrics),
            ("compensations", &self.compensations),
            ("alerts", &self.alerts),
            ("dead_letters", &self.dead_letters),
        ]
    }
}

/// Wire format of a topic's record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object per record (outputs: the file-mode lines).
    #[default]
    Json,
    /// The messages of `proto/shopscore/v1/` (inputs: one per input topic; outputs:
    /// `outputs.proto`).
    Protobuf,
}

/// `[kafka.encoding]`: the encoding of each input topic and of each output topic but the
/// dead letters, which carry the original record bytes untouched whatever their encoding
/// (SPEC §6), so no encoding applies to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    pub orders: Encoding,
    pub logistics: Encoding,
    pub refunds: Encoding,
    pub service: Encoding,
    /// The metric-snapshot topic (`kafka.topics.metrics`).
    pub metrics: Encoding,
    /// The compensation topic (`kafka.topics.compensations`).
    pub compensations: Encoding,
    /// The alert topic (`kafka.topics.alerts`).
    pub alerts: Encoding,
}
