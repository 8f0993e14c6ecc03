//! Reading a whole topic once, from the start of every partition to its end, committed
//! records only: what a replay needs to know which compensations a topic already holds, and
//! what `shopscore diff` reads output topics with.

use super::client::{Clients, FIRST_OFFSET};
use super::reader::QuietEof;
use super::topics::partition_count;
use super::{Context, KafkaError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a scan waits after the last record and the last end-of-partition report: end
/// offsets are not trusted alone (tansu 0.6 reports the last batch's first offset as the end).
const SCAN_QUIET: Duration = Duration::from_millis(1500);
const SCAN_STALL: Duration = Duration::from_secs(600);

/// Calls `each` with every committed record of `topic` (in offset order within a partition,
/// partitions interleaved), from the start of each partition until every partition has
/// reported its end and nothing came for [`SCAN_QUIET`] (records written meanwhile may be
/// included). Returns whether the topic exists; one that does not reads as empty.
pub fn scan_topic(
    clients: &Clients,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<bool, KafkaError> {
    // End-of-partition reports are how the scan ends: not logged as librdkafka errors.
    let consumer: BaseConsumer<QuietEof> = clients
        .restorer()
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof::default())
        .context(|| format!("creating a reader of {topic:?}"))?;
    let Some(partitions) = partition_count(&consumer, topic)? else {
        return Ok(false);
    };
    let mut tpl = TopicPartitionList::new();
    let mut nonempty = 0usize;
    for p in 0..partitions as i32 {
        // Only whether the partition ever held a record: the low watermark is not where the
        // scan starts, because tansu's can be past the partition's first records
        // ([`FIRST_OFFSET`]).
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .context(|| format!("reading the offsets of {topic:?} partition {p}"))?;
        if high > FIRST_OFFSET {
            tpl.add_partition_offset(topic, p, Offset::Offset(FIRST_OFFSET))
                .context(|| "building the scan".into())?;
            nonempty += 1;
        }
    }
    if nonempty == 0 {
        return Ok(true);
    }
    consumer.assign(&tpl).context(|| format!("assigning {topic:?}"))?;
    let began = Instant::now();
    let mut last = Instant::now();
    let mut at_end: HashSet<i32> = HashSet::new();
    while at_end.len() < nonempty || last.elapsed() < SCAN_QUIET {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                at_end.remove(&m.partition());
                each(&m);
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
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::mock_retention::truncated_topic;

    /// On a partition whose head the broker deleted, the scan starts at `FIRST_OFFSET`, which
    /// is out of range there: librdkafka moves it to the log start, and the scan reads exactly
    /// the records the broker still holds, and ends (the empty partition too) without an error.
    #[test]
    fn a_partition_whose_head_was_deleted_is_scanned_from_its_log_start() {
        let t = truncated_topic("out");
        let mut read = Vec::new();
        let exists = scan_topic(&t.clients, "out", |m| read.push((m.partition(), m.offset()))).unwrap();
        assert!(exists);
        assert_eq!(read, (t.low..t.high).map(|o| (0, o)).collect::<Vec<_>>());
    }
}
