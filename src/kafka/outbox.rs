//! Exactly-once outputs without transactions (brokers such as tansu that lack `EndTxn`).
//!
//! A commit first makes its outputs part of the shard's state — the **outbox**: the records,
//! each with an id header `{shard}:{commit}:{index}`, and the end offsets of every output
//! partition they may go to, read before any is sent — then writes the changelog, then sends
//! the outputs. The next commit deletes the outbox. A new owner that finds an outbox reads
//! each of those partitions from the recorded offset to its end and sends only the records
//! whose ids are not there. The outputs are thus fixed before they are sent, and each
//! reaches its topic once, whatever the moment of a crash.

use super::client::Clients;
use super::records::{KafkaRecord, ID_HEADER};
use super::{Context, KafkaError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

const SCAN_STALL: Duration = Duration::from_secs(300);

/// The outputs of one commit, persisted before they are sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub shard: u32,
    pub seq: u64,
    /// `(topic, partition, end offset before sending)` for every partition of every topic
    /// the records go to.
    pub starts: Vec<(String, i32, i64)>,
    pub records: Vec<KafkaRecord>,
}

/// The id of record `index` of commit `seq` of `shard`.
pub fn record_id(shard: u32, seq: u64, index: usize) -> Vec<u8> {
    format!("{shard}:{seq}:{index}").into_bytes()
}

/// Reads the end offsets of every partition of the topics `records` go to.
pub fn end_offsets(
    consumer: &BaseConsumer,
    records: &[KafkaRecord],
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let topics: BTreeSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    let mut out = Vec::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .context(|| format!("reading metadata of {topic:?}"))?;
        let parts = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        for p in 0..parts as i32 {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .context(|| format!("reading the end offset of {topic:?} partition {p}"))?;
            out.push((topic.to_owned(), p, high));
        }
    }
    Ok(out)
}

/// How long the scan waits for more records after the last one: the scan has no trustworthy
/// end offset (tansu 0.6 reports the last batch's first offset as the end), so it reads from
/// the recorded starts until the partitions have been quiet this long.
const SCAN_QUIET: Duration = Duration::from_millis(1500);

/// The outbox records that are not yet in their topics.
pub fn missing(clients: &Clients, outbox: &Outbox) -> Result<Vec<KafkaRecord>, KafkaError> {
    let consumer: BaseConsumer =
        clients.restorer().create().context(|| "creating an outbox reader".into())?;
    let mut tpl = TopicPartitionList::new();
    for (topic, p, start) in &outbox.starts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*start))
            .context(|| "building the outbox scan".into())?;
    }
    let mut found: HashSet<Vec<u8>> = HashSet::new();
    let prefix = format!("{}:{}:", outbox.shard, outbox.seq).into_bytes();
    let wanted = outbox.records.len();
    if !outbox.starts.is_empty() {
        consumer.assign(&tpl).context(|| "assigning the outbox scan".into())?;
        let began = Instant::now();
        let mut last = Instant::now();
        while found.len() < wanted && last.elapsed() < SCAN_QUIET {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    if let Some(h) = m.headers() {
                        for hdr in h.iter() {
                            if hdr.key == ID_HEADER {
                                if let Some(v) = hdr.value.filter(|v| v.starts_with(&prefix)) {
                                    found.insert(v.to_vec());
                                }
                            }
                        }
                    }
                }
                Some(Err(RdError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    return Err(KafkaError::Client { context: "scanning output topics".into(), source: e })
                }
            }
            if began.elapsed() > SCAN_STALL {
                return Err(KafkaError::Shard {
                    shard: outbox.shard,
                    why: "scanning the output topics for delivered records took too long".into(),
                });
            }
        }
    }
    Ok(outbox
        .records
        .iter()
        .filter(|r| r.header(ID_HEADER).is_none_or(|id| !found.contains(id)))
        .cloned()
        .collect())
}
