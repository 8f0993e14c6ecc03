//! Output records as Kafka records (SPEC §6): topic, key, payload and headers. Payloads are
//! encoded as the topic's `kafka.encoding` says: JSON (the same lines file mode writes) or
//! protobuf (`proto/shopscore/v1/outputs.proto`); dead letters carry the original bytes and
//! key untouched, with the reason and the source position in headers.
//!
//! A record is encoded once, when its commit is prepared; the outbox keeps those bytes, so a
//! re-send after a crash is byte-identical whatever the configuration then says.

use super::topics::OutputTopics;
use crate::config::Encoding;
use crate::output::{Output, SourcePos};
use serde::{Deserialize, Serialize};

/// Header carrying a record's identity `{shard}:{commit}:{index}`: lets an owner without
/// transactions find which of a commit's outputs already reached their topics.
pub const ID_HEADER: &str = "shopscore.id";
/// Dead-letter headers.
pub const REASON_HEADER: &str = "shopscore.reason";
pub const REASON_CODE_HEADER: &str = "shopscore.reason_code";
pub const SOURCE_TOPIC_HEADER: &str = "shopscore.source.topic";
pub const SOURCE_PARTITION_HEADER: &str = "shopscore.source.partition";
pub const SOURCE_OFFSET_HEADER: &str = "shopscore.source.offset";
/// Dead-letter headers of a record whose source is a file line.
pub const SOURCE_FILE_HEADER: &str = "shopscore.source.file";
pub const SOURCE_LINE_HEADER: &str = "shopscore.source.line";

/// One record to produce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaRecord {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

/// The payload of `output` in `encoding`: its JSON line, or `protobuf()`.
fn encode(output: &Output, encoding: Encoding, protobuf: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    match encoding {
        Encoding::Json => output.to_json().into_bytes(),
        Encoding::Protobuf => protobuf(),
    }
}

/// The Kafka record of an output, encoded as its topic is configured.
pub fn to_record(output: &Output, topics: &OutputTopics) -> KafkaRecord {
    let enc = &topics.encoding;
    match output {
        Output::Snapshot(s) => KafkaRecord {
            topic: topics.metrics.clone(),
            key: Some(s.shop_id.as_bytes().to_vec()),
            payload: encode(output, enc.metrics, || s.to_protobuf()),
            headers: Vec::new(),
        },
        Output::Compensation(c) => KafkaRecord {
            topic: topics.compensations.clone(),
            key: Some(c.order_id.as_bytes().to_vec()),
            payload: encode(output, enc.compensations, || c.to_protobuf()),
            headers: Vec::new(),
        },
        Output::Alert(a) => KafkaRecord {
            topic: topics.alerts.clone(),
            key: Some(format!("{}/{}", a.shop_id, a.rule).into_bytes()),
            payload: encode(output, enc.alerts, || a.to_protobuf()),
            headers: Vec::new(),
        },
        Output::DeadLetter(d) => {
            let mut headers = vec![
                (REASON_HEADER.to_owned(), d.reason.as_bytes().to_vec()),
                (REASON_CODE_HEADER.to_owned(), d.reason_code.as_bytes().to_vec()),
            ];
            match &d.source {
                SourcePos::Kafka { topic, partition, offset } => {
                    headers.push((SOURCE_TOPIC_HEADER.to_owned(), topic.as_bytes().to_vec()));
                    headers.push((SOURCE_PARTITION_HEADER.to_owned(), partition.to_string().into_bytes()));
                    headers.push((SOURCE_OFFSET_HEADER.to_owned(), offset.to_string().into_bytes()));
                }
                SourcePos::File { file, line } => {
                    headers.push((SOURCE_FILE_HEADER.to_owned(), file.as_bytes().to_vec()));
                    headers.push((SOURCE_LINE_HEADER.to_owned(), line.to_string().into_bytes()));
                }
            }
            KafkaRecord {
                topic: topics.dead_letters.clone(),
                key: d.key.clone(),
                payload: d.raw.clone(),
                headers,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::output::proto::to_json_value;
    use crate::output::{Alert, DeadLetter};

    fn topics(encoding: Encoding) -> OutputTopics {
        OutputTopics::uniform(encoding)
    }

    #[test]
    fn dead_letter_keeps_bytes_and_key_with_reason_headers_in_any_encoding() {
        let out = Output::DeadLetter(DeadLetter {
            reason: "not JSON".into(),
            reason_code: "malformed_json",
            source: SourcePos::Kafka { topic: "orders".into(), partition: 2, offset: 17 },
            raw: vec![0xff, b'{'],
            key: Some(b"k1".to_vec()),
        });
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let r = to_record(&out, &topics(encoding));
            assert_eq!(r.topic, "d");
            assert_eq!(r.payload, vec![0xff, b'{']);
            assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(r.header(REASON_HEADER), Some(&b"not JSON"[..]));
            assert_eq!(r.header(SOURCE_TOPIC_HEADER), Some(&b"orders"[..]));
            assert_eq!(r.header(SOURCE_PARTITION_HEADER), Some(&b"2"[..]));
            assert_eq!(r.header(SOURCE_OFFSET_HEADER), Some(&b"17"[..]));
        }
    }

    #[test]
    fn each_topic_gets_its_configured_encoding_with_the_same_key() {
        let out = Output::Alert(Alert {
            shop_id: "s1".into(),
            rule: "r".into(),
            state: "RAISED",
            condition: "refund_rate[30d] > 0.05".into(),
            value: Some(0.5),
            as_of: Timestamp(1_717_149_600_000),
        });
        let json = to_record(&out, &topics(Encoding::Json));
        assert_eq!(json.payload, out.to_json().into_bytes());
        let mut mixed = topics(Encoding::Json);
        mixed.encoding.alerts = Encoding::Protobuf;
        let proto = to_record(&out, &mixed);
        assert_eq!((proto.topic.as_str(), proto.key.as_deref()), ("a", Some(&b"s1/r"[..])));
        assert_eq!(json.key, proto.key);
        assert_ne!(proto.payload, json.payload);
        assert_eq!(
            to_json_value(out.kind(), &proto.payload).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&json.payload).unwrap()
        );
    }
}
