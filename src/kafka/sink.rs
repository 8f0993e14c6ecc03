//! A plain (non-transactional) Kafka sink for replays: outputs go to the topics the operator
//! chose, and a compensation already present in the destination compensation topic is never
//! sent again (SPEC §5: "replays into the same output topic" emit nothing twice).
//!
//! The live runtime does not use it: a live shard's outputs go through its commit protocol
//! ([`super::shard`]).

use super::client::Clients;
use super::producer::ShardProducer;
use super::records::to_record;
use super::scan::scan_topic;
use super::topics::OutputTopics;
use super::KafkaError;
use crate::config::Encoding;
use crate::output::{proto, Output};
use crate::sinks::{Sink, SinkError};
use rdkafka::Message;
use std::collections::HashSet;

/// The `compensation_id`s already in `topic` (committed records only), read from the start of
/// every partition to its end. `encoding` is the topic's configured one (see
/// `compensation_id` for records in the other).
pub fn emitted_compensations(
    clients: &Clients,
    topic: &str,
    encoding: Encoding,
) -> Result<HashSet<String>, KafkaError> {
    let mut ids = HashSet::new();
    scan_topic(clients, topic, |m| {
        if let Some(id) = m.payload().and_then(|p| compensation_id(p, encoding)) {
            ids.insert(id);
        }
    })?;
    Ok(ids)
}

/// The `compensation_id` of a compensation record's payload, read in the topic's `encoding`
/// first, then in the other one: a topic whose encoding was changed holds records of both,
/// and a compensation of either kind must not be sent again. (The two cannot be mistaken for
/// each other: a protobuf compensation holds raw control bytes — the tag 0x12 of its `kind` —
/// so it is not JSON; and our JSON lines hold none — no 0x0a, the tag of `compensation_id` —
/// so read as protobuf they yield no id.)
fn compensation_id(payload: &[u8], encoding: Encoding) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        compensation_id: String,
    }
    let json = || serde_json::from_slice::<Id>(payload).ok().map(|r| r.compensation_id);
    let protobuf = || proto::compensation_id(payload);
    match encoding {
        Encoding::Json => json().or_else(protobuf),
        Encoding::Protobuf => protobuf().or_else(json),
    }
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
    use super::*;
    use crate::domain::Timestamp;
    use crate::output::{Compensation, CompensationKind, LineageEvent, SourcePos};

    #[test]
    fn reads_the_id_of_a_json_compensation_payload() {
        let p = br#"{"compensation_id":"o1:LATE_SHIPMENT","kind":"LATE_SHIPMENT","amount_fen":500}"#;
        for e in [Encoding::Json, Encoding::Protobuf] {
            assert_eq!(compensation_id(p, e).as_deref(), Some("o1:LATE_SHIPMENT"));
            assert_eq!(compensation_id(b"not json", e), None);
            assert_eq!(compensation_id(br#"{"shop_id":"s1"}"#, e), None);
        }
    }

    #[test]
    fn reads_the_id_of_a_protobuf_compensation_payload() {
        let c = Compensation {
            kind: CompensationKind::DeliveryPromiseBreach,
            order_id: "o7".into(),
            shop_id: "s1".into(),
            buyer_id: "b1".into(),
            amount_fen: 1_000,
            basis_fen: 1_000,
            group_id: None,
            deadline: Timestamp(1_717_149_600_000),
            shipped_at: None,
            decided_at: Timestamp(1_717_149_600_000),
            rule_version: "2024-01".into(),
            lineage: vec![LineageEvent {
                role: "paid",
                event_id: "e1".into(),
                source: SourcePos::Kafka { topic: "orders".into(), partition: 0, offset: 3 },
            }],
        };
        let payload = c.to_protobuf();
        // In a protobuf topic, and in a JSON topic that held protobuf records before.
        for e in [Encoding::Protobuf, Encoding::Json] {
            assert_eq!(compensation_id(&payload, e).as_deref(), Some("o7:DELIVERY_PROMISE_BREACH"));
        }
        assert_eq!(compensation_id(b"\x0a\x05", Encoding::Protobuf), None, "truncated");
    }
}
