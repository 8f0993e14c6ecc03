//! Output records as Kafka records (SPEC §6): topic, key, payload and headers. JSON payloads,
//! the same lines file mode writes; dead letters carry the original bytes and key untouched,
//! with the reason and the source position in headers.

use super::topics::OutputTopics;
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

/// The Kafka record of an output.
pub fn to_record(output: &Output, topics: &OutputTopics) -> KafkaRecord {
    match output {
        Output::Snapshot(s) => KafkaRecord {
            topic: topics.metrics.clone(),
            key: Some(s.shop_id.as_bytes().to_vec()),
            payload: output.to_json().into_bytes(),
            headers: Vec::new(),
        },
        Output::Compensation(c) => KafkaRecord {
            topic: topics.compensations.clone(),
            key: Some(c.order_id.as_bytes().to_vec()),
            payload: output.to_json().into_bytes(),
            headers: Vec::new(),
        },
        Output::Alert(a) => KafkaRecord {
            topic: topics.alerts.clone(),
            key: Some(format!("{}/{}", a.shop_id, a.rule).into_bytes()),
            payload: output.to_json().into_bytes(),
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
                    headers.push(("shopscore.source.file".to_owned(), file.as_bytes().to_vec()));
                    headers.push(("shopscore.source.line".to_owned(), line.to_string().into_bytes()));
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
    use crate::output::DeadLetter;

    #[test]
    fn dead_letter_keeps_bytes_and_key_with_reason_headers() {
        let topics = OutputTopics {
            metrics: "m".into(),
            compensations: "c".into(),
            alerts: "a".into(),
            dead_letters: "d".into(),
        };
        let out = Output::DeadLetter(DeadLetter {
            reason: "not JSON".into(),
            reason_code: "malformed_json",
            source: SourcePos::Kafka { topic: "orders".into(), partition: 2, offset: 17 },
            raw: vec![0xff, b'{'],
            key: Some(b"k1".to_vec()),
        });
        let r = to_record(&out, &topics);
        assert_eq!(r.topic, "d");
        assert_eq!(r.payload, vec![0xff, b'{']);
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.header(REASON_HEADER), Some(&b"not JSON"[..]));
        assert_eq!(r.header(SOURCE_TOPIC_HEADER), Some(&b"orders"[..]));
        assert_eq!(r.header(SOURCE_PARTITION_HEADER), Some(&b"2"[..]));
        assert_eq!(r.header(SOURCE_OFFSET_HEADER), Some(&b"17"[..]));
    }
}
