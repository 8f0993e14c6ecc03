//! A plain (non-transactional) Kafka sink for replays: outputs go to the topics the operator
//! chose, and a compensation already present in the destination compensation topic is never
//! sent again (SPEC §5: "replays into the same output topic" emit nothing twice).
//!
//! The live runtime does not use it: a live shard's outputs go through its commit protocol
//! ([`super::shard`]).

use super::client::Clients;
use super::producer::ShardProducer;
use super::records::to_record;
use super::topics::OutputTopics;
use super::{Context, KafkaError};
use crate::output::Output;
use crate::sinks::{Sink, SinkError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// How long a scan waits after the last record and the last end-of-partition report: end
/// offsets are not trusted alone (tansu 0.6 reports the last batch's first offset as the end).
const SCAN_QUIET: Duration = Duration::from_millis(1500);
const SCAN_STALL: Duration = Duration::from_secs(600);

/// The `compensation_id`s already in `topic` (committed records only), read from the start of
/// every partition to its end.
pub fn emitted_compensations(clients: &Clients, topic: &str) -> Result<HashSet<String>, KafkaError> {
    let consumer: BaseConsumer = clients
        .restorer()
        .set("enable.partition.eof", "true")
        .create()
        .context(|| "creating a compensation-topic reader".into())?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context(|| format!("reading metadata of {topic:?}"))?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .context(|| format!("reading the offsets of {topic:?} partition {p}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).context(|| "building the scan".into())?;
            ends.insert(p, high);
        }
    }
    let mut ids = HashSet::new();
    if ends.is_empty() {
        return Ok(ids);
    }
    consumer.assign(&tpl).context(|| format!("assigning {topic:?}"))?;
    let began = Instant::now();
    let mut last = Instant::now();
    let mut at_end: HashSet<i32> = HashSet::new();
    while at_end.len() < ends.len() || last.elapsed() < SCAN_QUIET {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                at_end.remove(&m.partition());
                if let Some(id) = m.payload().and_then(compensation_id) {
                    ids.insert(id);
                }
            }
            Some(Err(RdError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            None => {}
            Some(Err(e)) => {
                return Err(KafkaError::Client { context: format!("scanning {topic:?}"), source: e })
            }
        }
        if began.elapsed() > SCAN_STALL {
            return Err(KafkaError::Topics(format!("reading {topic:?} to its end took over 10 minutes")));
        }
    }
    Ok(ids)
}

/// The `compensation_id` of a compensation record's JSON payload.
fn compensation_id(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        compensation_id: String,
    }
    serde_json::from_slice::<Id>(payload).ok().map(|r| r.compensation_id)
}

/// Sends outputs to topics; skips compensations whose id is already emitted.
pub struct TopicSink {
    producer: ShardProducer,
    topics: OutputTopics,
    emitted: HashSet<String>,
    /// Compensations not sent because their topic already had them.
    pub skipped: u64,
}

impl TopicSink {
    /// A sink to `topics` that will not send the compensations in `emitted`.
    pub fn new(
        clients: &Clients,
        topics: OutputTopics,
        emitted: HashSet<String>,
    ) -> Result<TopicSink, KafkaError> {
        Ok(TopicSink { producer: ShardProducer::new(clients, 0, false)?, topics, emitted, skipped: 0 })
    }
}

fn sink_error(e: KafkaError) -> SinkError {
    SinkError::Inconsistent(e.to_string())
}

impl Sink for TopicSink {
    fn write(&mut self, record: &Output) -> Result<(), SinkError> {
        if let Output::Compensation(c) = record {
            if !self.emitted.insert(c.compensation_id()) {
                self.skipped += 1;
                return Ok(());
            }
        }
        self.producer.send(&to_record(record, &self.topics), None).map_err(sink_error)
    }

    /// Waits until every queued record is acknowledged; the checkpoint is empty (a replay
    /// that dies is run again from the start, see [`super::replay`]).
    fn flush(&mut self) -> Result<Vec<u8>, SinkError> {
        self.producer.flush().map_err(sink_error)?;
        Ok(Vec::new())
    }

    fn recover(&mut self, _checkpoint: Option<&[u8]>) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::compensation_id;

    #[test]
    fn reads_the_id_of_a_compensation_payload() {
        let p = br#"{"compensation_id":"o1:LATE_SHIPMENT","kind":"LATE_SHIPMENT","amount_fen":500}"#;
        assert_eq!(compensation_id(p).as_deref(), Some("o1:LATE_SHIPMENT"));
        assert_eq!(compensation_id(b"not json"), None);
        assert_eq!(compensation_id(br#"{"shop_id":"s1"}"#), None);
    }
}
