//! The input consumer of one instance: reads the input partitions its shards need, from
//! positions shopscore keeps itself (manual assignment: the group's offsets are not used),
//! and tells when a partition is idle — no record for `time.idle_timeout` — so it stops
//! holding the watermark back (SPEC §3): it must have reported its end since its last record
//! and been quiet for `time.idle_timeout`. Wall-clock time enters only here.

use super::topics::Layout;
use super::{Context, KafkaError};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An input partition: (index of the input topic in the layout, partition).
pub type InputPartition = (usize, i32);

#[derive(Clone, Copy, Debug)]
struct PartitionActivity {
    /// An end-of-partition event came after the last record (necessary, not sufficient:
    /// tansu 0.6 sends them early, hence also the quiet time).
    at_end: bool,
    last_record: Instant,
}

/// What one poll returned.
pub enum Polled<'a> {
    Record {
        input: InputPartition,
        message: BorrowedMessage<'a>,
    },
    /// Nothing within the timeout, or only bookkeeping events.
    Nothing,
}

/// The reader's client context: an end-of-partition report is routine here (it drives idle
/// detection), so librdkafka's global-error callback does not log it as an error. It also
/// keeps the end offset of every partition from librdkafka's periodic statistics, so lag is
/// known without a broker round trip on the reading thread.
#[derive(Default)]
pub struct QuietEof {
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl ClientContext for QuietEof {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // The last stable offset is the end for a read_committed reader; brokers
                // without transactions report it equal to the high watermark.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if partition >= 0 && end >= 0 {
                    ends.insert((topic.clone(), partition), end);
                }
            }
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        match error {
            RdError::PartitionEOF(_) | RdError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "end of partition")
            }
            e => tracing::error!(error = %e, reason, "librdkafka error"),
        }
    }
}

impl ConsumerContext for QuietEof {}

/// The input consumer.
pub struct Reader {
    consumer: BaseConsumer<QuietEof>,
    layout: Arc<Layout>,
    activity: BTreeMap<InputPartition, PartitionActivity>,
}

impl Reader {
    pub fn new(config: &ClientConfig, layout: Arc<Layout>) -> Result<Reader, KafkaError> {
        let mut config = config.clone();
        if config.get("statistics.interval.ms").is_none() {
            // End offsets for the lag gauge and progress come from these statistics.
            config.set("statistics.interval.ms", "5000");
        }
        let consumer: BaseConsumer<QuietEof> = config
            .create_with_context(QuietEof::default())
            .context(|| "creating the input consumer".into())?;
        Ok(Reader { consumer, layout, activity: BTreeMap::new() })
    }

    /// Reads exactly `starts`: each partition from the given offset.
    pub fn assign(&mut self, starts: &BTreeMap<InputPartition, i64>) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (&(t, p), &offset) in starts {
            let topic = &self.layout.inputs[t].name;
            let at = if offset <= 0 { Offset::Beginning } else { Offset::Offset(offset) };
            tpl.add_partition_offset(topic, p, at).context(|| "building the input assignment".into())?;
        }
        self.consumer.assign(&tpl).context(|| "assigning the input partitions".into())?;
        let now = Instant::now();
        self.activity =
            starts.keys().map(|&k| (k, PartitionActivity { at_end: false, last_record: now })).collect();
        Ok(())
    }

    /// Waits up to `timeout` for the next input record.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled<'_>, KafkaError> {
        let (consumer, activity, layout) = (&self.consumer, &mut self.activity, &self.layout);
        match consumer.poll(timeout) {
            None => Ok(Polled::Nothing),
            Some(Ok(message)) => {
                let Some(t) = layout.inputs.iter().position(|t| t.name == message.topic()) else {
                    return Ok(Polled::Nothing);
                };
                let input = (t, message.partition());
                if let Some(a) = activity.get_mut(&input) {
                    a.at_end = false;
                    a.last_record = Instant::now();
                }
                Ok(Polled::Record { input, message })
            }
            Some(Err(RdError::PartitionEOF(p))) => {
                // The event names only the partition number: mark it in every input topic.
                for ((_, q), a) in activity.iter_mut() {
                    if *q == p {
                        a.at_end = true;
                    }
                }
                Ok(Polled::Nothing)
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "input consumer error (librdkafka retries)");
                Ok(Polled::Nothing)
            }
        }
    }

    /// Time spent elsewhere (a commit) does not count as quiet: a partition whose records
    /// simply were not polled for `d` must not look idle.
    pub fn discount(&mut self, d: Duration) {
        let now = Instant::now();
        for a in self.activity.values_mut() {
            a.last_record = (a.last_record + d).min(now);
        }
    }

    /// Partitions at their end that delivered no record for `idle_after`.
    pub fn idle(&self, idle_after: Duration) -> Vec<InputPartition> {
        self.activity
            .iter()
            .filter(|(_, a)| a.at_end && a.last_record.elapsed() >= idle_after)
            .map(|(&k, _)| k)
            .collect()
    }

    /// True when every assigned partition is idle.
    pub fn all_idle(&self, idle_after: Duration) -> bool {
        !self.activity.is_empty() && self.idle(idle_after).len() == self.activity.len()
    }

    /// End offsets (for lag and progress) of the assigned partitions, as of librdkafka's last
    /// statistics (every 5 s; none before the first): no broker round trip.
    pub fn end_offsets(&self) -> BTreeMap<InputPartition, i64> {
        let ends = self.consumer.context().ends.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        for &(t, p) in self.activity.keys() {
            if let Some(&end) = ends.get(&(self.layout.inputs[t].name.clone(), p)) {
                out.insert((t, p), end);
            }
        }
        out
    }
}
