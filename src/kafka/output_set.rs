//! Output topics as a [`crate::diff::OutputSet`]: what `shopscore diff` compares when one side
//! is a set of Kafka topics (a live run's, or a replay's under a prefix) rather than a
//! file-mode output directory.
//!
//! Each record becomes the JSON line the file sink would have written for it
//! ([`record_line`], pure): snapshots, compensations and alerts are their JSON payload, or the
//! JSON form of their protobuf payload; a dead letter (the original bytes, untouched) is
//! rebuilt from its headers — reason, reason code and source position, which is what the
//! comparison looks at.

use super::client::Clients;
use super::records::{
    REASON_CODE_HEADER, REASON_HEADER, SOURCE_FILE_HEADER, SOURCE_LINE_HEADER, SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER,
};
use super::scan::scan_topic;
use super::topics::OutputTopics;
use super::KafkaError;
use crate::config::Encoding;
use crate::diff::OutputSet;
use crate::output::{proto, OutputKind};
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::{json, Value};

/// The file-mode JSON line of one output record of `kind` read from a topic whose configured
/// encoding is `encoding` (dead letters have none); `header` gives a record header's value.
/// A payload in the other encoding is read too (a topic whose encoding was changed holds
/// both).
pub fn record_line<'h>(
    kind: OutputKind,
    encoding: Encoding,
    payload: &[u8],
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Result<String, String> {
    let text = |name: &str| -> Result<String, String> {
        let bytes = header(name).ok_or_else(|| format!("no {name} header"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {name} header is not UTF-8"))
    };
    let number = |name: &str| -> Result<i64, String> {
        text(name)?.parse().map_err(|_| format!("the {name} header is not a number"))
    };
    if kind == OutputKind::DeadLetter {
        let (reason, reason_code) = (text(REASON_HEADER)?, text(REASON_CODE_HEADER)?);
        let source = match header(SOURCE_TOPIC_HEADER) {
            Some(_) => json!({
                "topic": text(SOURCE_TOPIC_HEADER)?,
                "partition": number(SOURCE_PARTITION_HEADER)?,
                "offset": number(SOURCE_OFFSET_HEADER)?,
            }),
            None => json!({
                "file": text(SOURCE_FILE_HEADER)?,
                "line": number(SOURCE_LINE_HEADER)?,
            }),
        };
        let line = json!({ "reason": reason, "reason_code": reason_code, "source": source });
        return Ok(line.to_string());
    }
    let as_json = || {
        std::str::from_utf8(payload)
            .ok()
            .filter(|s| serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_object()))
            .map(str::to_owned)
    };
    // As text, not as a value: the other side of a diff (file lines) goes through serde_json's
    // text parser, whose float parsing is not exact; a value straight from protobuf differs
    // from it in the last digit (seen: 94.27111111111111 vs …113), so both sides are parsed alike.
    let as_protobuf = || proto::to_json_value(kind, payload).ok().map(|v| v.to_string());
    let line = match encoding {
        Encoding::Json => as_json().or_else(as_protobuf),
        Encoding::Protobuf => as_protobuf().or_else(as_json),
    };
    line.ok_or_else(|| {
        format!("a {} record that is neither its JSON line nor its protobuf message", kind.name())
    })
}

/// Reads the four output topics of `topics` (committed records, each from its start) into an
/// output set. Every one must exist (a run or a replay into topics creates all four): a
/// missing one is a wrong prefix or name, not an empty output.
pub fn read_output_topics(clients: &Clients, topics: &OutputTopics) -> Result<OutputSet, KafkaError> {
    let mut set = OutputSet::new();
    // In the order of `OutputTopics::all`: metrics, compensations, alerts, dead letters.
    let kinds = [
        (OutputKind::Snapshot, topics.encoding.metrics),
        (OutputKind::Compensation, topics.encoding.compensations),
        (OutputKind::Alert, topics.encoding.alerts),
        (OutputKind::DeadLetter, Encoding::Json),
    ];
    for ((kind, encoding), (topic, key, _)) in kinds.into_iter().zip(topics.all()) {
        let mut bad: Option<String> = None;
        let exists = scan_topic(clients, topic, |m| {
            if bad.is_some() {
                return;
            }
            let headers = m.headers();
            let header =
                |name: &str| headers.and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value));
            let added = record_line(kind, encoding, m.payload().unwrap_or_default(), header)
                .and_then(|line| set.add(kind, &line));
            if let Err(why) = added {
                bad = Some(format!("{topic} partition {} offset {}: {why}", m.partition(), m.offset()));
            }
        })?;
        if !exists {
            return Err(KafkaError::Topics(format!(
                "output topic {topic:?} ({key} with the prefix given) does not exist: check the prefix of topics:PREFIX and [kafka.topics]"
            )));
        }
        if let Some(why) = bad {
            return Err(KafkaError::Topics(format!("reading outputs: {why}")));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::kafka::records::to_record;
    use crate::output::{Alert, DeadLetter, Output, SourcePos};

    fn topics(encoding: Encoding) -> OutputTopics {
        OutputTopics::uniform(encoding)
    }

    fn outputs() -> Vec<Output> {
        vec![
            Output::Alert(Alert {
                shop_id: "s1".into(),
                rule: "refunds-high".into(),
                state: "RAISED",
                condition: "refund_rate[30d] > 0.05".into(),
                value: Some(0.1),
                as_of: Timestamp(1_714_492_800_000),
            }),
            Output::DeadLetter(DeadLetter {
                reason: "not JSON".into(),
                reason_code: "malformed_json",
                source: SourcePos::Kafka { topic: "orders".into(), partition: 2, offset: 17 },
                raw: b"{oops".to_vec(),
                key: Some(b"k".to_vec()),
            }),
            Output::DeadLetter(DeadLetter {
                reason: "no field `shop_id`".into(),
                reason_code: "missing_field",
                source: SourcePos::File { file: "in.jsonl".into(), line: 3 },
                raw: vec![0xff],
                key: None,
            }),
        ]
    }

    /// The lines read back from the records of either encoding make the same output set as
    /// the file sink's lines of the same outputs.
    #[test]
    fn records_of_either_encoding_read_back_as_the_file_lines() {
        let mut from_files = OutputSet::new();
        for o in outputs() {
            from_files.add(o.kind(), &o.to_json()).unwrap();
        }
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let mut from_topics = OutputSet::new();
            for o in outputs() {
                let r = to_record(&o, &topics(encoding));
                let line = record_line(o.kind(), encoding, &r.payload, |name| r.header(name)).unwrap();
                from_topics.add(o.kind(), &line).unwrap();
            }
            assert_eq!(from_topics, from_files, "{encoding:?}");
        }
    }

    #[test]
    fn a_payload_in_neither_form_is_refused_with_its_kind() {
        let err = record_line(OutputKind::Alert, Encoding::Json, b"\xff\x00garbage", |_| None).unwrap_err();
        assert!(err.contains("alert"), "{err}");
        let err = record_line(OutputKind::DeadLetter, Encoding::Json, b"x", |_| None).unwrap_err();
        assert!(err.contains(REASON_HEADER), "{err}");
    }
}
