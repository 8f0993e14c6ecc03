//! The input consumer of one instance: reads the input partitions its shards need, from
//! positions shopscore keeps itself (manual assignment: the group's offsets are not used),
//! and tells when a partition is idle — no record for `time.idle_timeout` — so it stops
//! holding the watermark back (SPEC §3): it must have reported its end since its last record
//! and been quiet for `time.idle_timeout`. Wall-clock time enters only here.

use super::client::FIRST_OFFSET;
use super::topics::Layout;
use super::{Context, KafkaError};
use rdkafka::client::ClientContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
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

/// A record of `input` came: it is not at its end.
fn record_seen(activity: &mut BTreeMap<InputPartition, PartitionActivity>, input: InputPartition) {
    if let Some(a) = activity.get_mut(&input) {
        a.at_end = false;
        a.last_record = Instant::now();
    }
}

/// The partition count of each topic from the partition ids librdkafka lists for it (its
/// statistics also list an internal partition -1, which is not one).
fn partition_counts<'a, P: Iterator<Item = i32>>(
    topics: impl Iterator<Item = (&'a str, P)>,
) -> HashMap<String, u32> {
    topics
        .filter_map(|(topic, ids)| {
            let max = ids.filter(|&p| p >= 0).max()?;
            Some((topic.to_owned(), max as u32 + 1))
        })
        .collect()
}

/// An input topic that has more partitions than when the run started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grown {
    pub topic: String,
    pub at_start: u32,
    pub now: u32,
}

impl Grown {
    /// Why the run stops, and what the operator gets by restarting it.
    pub fn error(&self) -> KafkaError {
        KafkaError::Topics(format!(
            "input topic {:?} now has {} partitions, {} when this run started: a run reads a fixed \
             set of input partitions, so the new ones would go unread. Stopping; the restart (by \
             the supervisor, or by hand) reads every partition, the new ones from their beginning",
            self.topic, self.now, self.at_start
        ))
    }
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
    /// Partition count of every topic in the statistics (from librdkafka's metadata).
    partitions: Mutex<HashMap<String, u32>>,
    /// Bytes fetched and not yet read, over all partitions (`fetchq_size`), as of the last
    /// statistics.
    prefetched: Mutex<Option<u64>>,
}

impl ClientContext for QuietEof {
    fn stats(&self, statistics: Statistics) {
        let counts = partition_counts(
            statistics.topics.iter().map(|(topic, t)| (topic.as_str(), t.partitions.keys().copied())),
        );
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).extend(counts);
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        let mut prefetched = 0;
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                prefetched += p.fetchq_size;
                // The last stable offset is the end for a read_committed reader; brokers
                // without transactions report it equal to the high watermark.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if partition >= 0 && end >= 0 {
                    ends.insert((topic.clone(), partition), end);
                }
            }
        }
        *self.prefetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(prefetched);
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
///
/// Every assigned partition is read from its own queue (librdkafka's per-partition queues),
/// because an end-of-partition report names only the partition number: on the shared queue
/// the end of partition 3 of one topic could not be told from that of partition 3 of
/// another, and a partition whose records were still queued could look idle. Queues are
/// taken in turns, a run of up to [`RUN`] records each.
pub struct Reader {
    consumer: Arc<BaseConsumer<QuietEof>>,
    layout: Arc<Layout>,
    activity: BTreeMap<InputPartition, PartitionActivity>,
    queues: Vec<(InputPartition, PartitionQueue<QuietEof>)>,
    /// The queue read next, and how many records it has given in its current run.
    cursor: usize,
    run: usize,
    /// Records since the consumer's own queue (statistics, errors) was last served.
    unserved: usize,
}

/// Records taken from one partition's queue before the next partition's turn.
const RUN: usize = 64;

/// Records between two services of the consumer's own queue while records keep coming.
const SERVE_EVERY: usize = 4096;

/// Prefetch settings that librdkafka applies per partition once each partition has its own
/// queue; shopscore's defaults and `[kafka.client]` give them for all input partitions
/// together, so the reader divides them.
const PER_PARTITION: [&str; 2] = ["queued.max.messages.kbytes", "queued.min.messages"];

impl Reader {
    pub fn new(config: &ClientConfig, layout: Arc<Layout>) -> Result<Reader, KafkaError> {
        let mut config = config.clone();
        if config.get("statistics.interval.ms").is_none() {
            // End offsets for the lag gauge and progress come from these statistics.
            config.set("statistics.interval.ms", "5000");
        }
        let partitions: u64 = layout.inputs.iter().map(|t| u64::from(t.partitions)).sum::<u64>().max(1);
        for key in PER_PARTITION {
            if let Some(total) = config.get(key).and_then(|v| v.trim().parse::<u64>().ok()) {
                config.set(key, (total / partitions).max(1).to_string());
            }
        }
        let consumer: BaseConsumer<QuietEof> = config
            .create_with_context(QuietEof::default())
            .context(|| "creating the input consumer".into())?;
        Ok(Reader {
            consumer: Arc::new(consumer),
            layout,
            activity: BTreeMap::new(),
            queues: Vec::new(),
            cursor: 0,
            run: 0,
            unserved: 0,
        })
    }

    /// Reads exactly `starts`: each partition from the given offset, on its own queue.
    pub fn assign(&mut self, starts: &BTreeMap<InputPartition, i64>) -> Result<(), KafkaError> {
        // Split before assigning, so no fetched record or end report reaches the shared queue.
        self.queues.clear();
        let waker = std::thread::current();
        let mut tpl = TopicPartitionList::new();
        for (&(t, p), &offset) in starts {
            let topic = &self.layout.inputs[t].name;
            let Some(mut queue) = self.consumer.split_partition_queue(topic, p) else {
                return Err(KafkaError::Topics(format!(
                    "librdkafka gave input partition {topic:?} [{p}] no queue of its own"
                )));
            };
            let waker = waker.clone();
            queue.set_nonempty_callback(move || waker.unpark());
            self.queues.push(((t, p), queue));
            // No stored position: from the start (`FIRST_OFFSET` says why not `Offset::Beginning`).
            let at = Offset::Offset(offset.max(FIRST_OFFSET));
            tpl.add_partition_offset(topic, p, at).context(|| "building the input assignment".into())?;
        }
        self.consumer.assign(&tpl).context(|| "assigning the input partitions".into())?;
        let now = Instant::now();
        self.activity =
            starts.keys().map(|&k| (k, PartitionActivity { at_end: false, last_record: now })).collect();
        (self.cursor, self.run) = (0, 0);
        Ok(())
    }

    /// Waits up to `timeout` for the next input record.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled<'_>, KafkaError> {
        let deadline = Instant::now() + timeout;
        let Reader { consumer, layout, activity, queues, cursor, run, unserved } = self;
        let n = queues.len();
        let mut waited = false;
        loop {
            if *unserved >= SERVE_EVERY || n == 0 {
                *unserved = 0;
                // Statistics and errors; no record should come here, but one that did would
                // still be handed on rather than lost.
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(message)) => {
                        if let Some(t) = layout.inputs.iter().position(|t| t.name == message.topic()) {
                            let input = (t, message.partition());
                            record_seen(activity, input);
                            return Ok(Polled::Record { input, message });
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "input consumer error (librdkafka retries)"),
                    None => {}
                }
            }
            for k in 0..n {
                let i = (*cursor + k) % n;
                let (input, queue) = &queues[i];
                match queue.poll(Duration::ZERO) {
                    None => {}
                    Some(Ok(message)) => {
                        if i != *cursor {
                            (*cursor, *run) = (i, 0);
                        }
                        *run += 1;
                        if *run >= RUN {
                            (*cursor, *run) = ((i + 1) % n, 0);
                        }
                        *unserved += 1;
                        record_seen(activity, *input);
                        return Ok(Polled::Record { input: *input, message });
                    }
                    Some(Err(RdError::PartitionEOF(_))) => {
                        if let Some(a) = activity.get_mut(input) {
                            a.at_end = true;
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "input consumer error (librdkafka retries)"),
                }
            }
            // Every queue is empty: serve the consumer's own queue, then wait once.
            *unserved = SERVE_EVERY;
            let now = Instant::now();
            if waited || now >= deadline {
                return Ok(Polled::Nothing);
            }
            // A queue that becomes non-empty wakes this thread (its callback unparks it).
            std::thread::park_timeout(deadline - now);
            waited = true;
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

    /// Input topics that have more partitions now, by librdkafka's metadata as of its last
    /// statistics, than the layout this run started with.
    pub fn grown_inputs(&self) -> Vec<Grown> {
        let counts = self.consumer.context().partitions.lock().unwrap_or_else(|p| p.into_inner());
        self.layout
            .inputs
            .iter()
            .filter_map(|t| {
                let now = *counts.get(&t.name)?;
                (now > t.partitions).then(|| Grown { topic: t.name.clone(), at_start: t.partitions, now })
            })
            .collect()
    }

    /// Bytes of input fetched ahead and not yet read, as of librdkafka's last statistics
    /// (every 5 s; `None` before the first).
    pub fn prefetched_bytes(&self) -> Option<u64> {
        *self.consumer.context().prefetched.lock().unwrap_or_else(|p| p.into_inner())
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

#[cfg(test)]
mod tests {
    use super::super::topics::{InputTopic, OutputTopics};
    use super::*;
    use crate::config::Encoding;
    use crate::domain::event::Stream;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    fn layout(topics: &[&str]) -> Arc<Layout> {
        let input = |name: &&str| InputTopic {
            name: name.to_string(),
            stream: Stream::Orders,
            encoding: Encoding::Json,
            partitions: 1,
        };
        Arc::new(Layout {
            inputs: topics.iter().map(input).collect(),
            outputs: OutputTopics::uniform(Encoding::Json),
            changelog: "changelog".into(),
            shards: 1,
            co_partitioned: false,
        })
    }

    #[test]
    fn partition_counts_come_from_the_largest_id_and_skip_the_internal_one() {
        let stats = [("a", vec![-1, 0, 1, 2]), ("b", vec![-1]), ("c", vec![3, 0])];
        let counts = partition_counts(stats.iter().map(|(t, ids)| (*t, ids.iter().copied())));
        assert_eq!(counts, HashMap::from([("a".to_owned(), 3), ("c".to_owned(), 4)]));
    }

    /// An input partition with no stored position (-1) whose head the broker deleted: the
    /// reader starts at `FIRST_OFFSET`, out of range there, and the reader settings'
    /// `auto.offset.reset = earliest` move it to the log start. Every record still held is
    /// read, in order, from the first.
    #[test]
    fn a_partition_whose_head_was_deleted_is_read_from_its_log_start() {
        let t = crate::kafka::mock_retention::truncated_topic("orders");
        let (low, high) = (t.low, t.high);
        let mut reader = Reader::new(&t.clients.reader(), layout(&["orders"])).unwrap();
        reader.assign(&[((0, 0), -1)].into_iter().collect()).unwrap();
        let mut offsets = Vec::new();
        let started = Instant::now();
        while offsets.len() < (high - low) as usize {
            assert!(started.elapsed() < Duration::from_secs(30), "read {offsets:?} of {low}..{high} in 30 s");
            if let Polled::Record { message, .. } = reader.poll(Duration::from_millis(50)).unwrap() {
                offsets.push(message.offset());
            }
        }
        assert_eq!(offsets, (low..high).collect::<Vec<_>>());
    }

    /// A run started when the input topic had one partition; the broker now has two (as after
    /// an operator added one): librdkafka's statistics tell the reader, which names the topic,
    /// both counts, and the restart that reads the new partition. (No broker here implements
    /// CreatePartitions — tansu 0.6.0, tansu's main build and the mock cluster all answer
    /// UNSUPPORTED_FEATURE — so the layout is the one that is behind.)
    #[test]
    fn an_input_topic_with_more_partitions_than_at_start_is_reported() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("orders", 2, 1).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "grown-test")
            .set("statistics.interval.ms", "100");
        let mut reader = Reader::new(&config, layout(&["orders"])).unwrap();
        reader.assign(&[((0, 0), 0)].into_iter().collect()).unwrap();
        let started = Instant::now();
        while reader.grown_inputs().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "no growth reported in 20 s");
            let _ = reader.poll(Duration::from_millis(50)).unwrap();
        }
        let grown = reader.grown_inputs();
        assert_eq!(grown, vec![Grown { topic: "orders".into(), at_start: 1, now: 2 }]);
        let message = grown[0].error().to_string();
        assert!(message.contains("\"orders\" now has 2 partitions, 1 when this run started"), "{message}");
    }

    /// Partition 0 of an empty topic reports its end at once, while partition 0 of a full one
    /// still has most of its records to give (small fetches). Only the empty one may be at its
    /// end then; the full one only once all its records were read.
    #[test]
    fn a_partition_is_at_its_end_only_once_its_own_records_are_read() {
        const RECORDS: usize = 20_000;
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("full", 1, 1).unwrap();
        mock.create_topic("empty", 1, 1).unwrap();
        let brokers = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        for i in 0..RECORDS {
            let payload = format!("{{\"n\":{i}}}");
            producer.send(BaseRecord::<(), _>::to("full").payload(&payload)).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();

        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("group.id", "reader-test")
            .set("enable.partition.eof", "true")
            .set("max.partition.fetch.bytes", "1024")
            .set("queued.min.messages", "100");
        let mut reader = Reader::new(&config, layout(&["full", "empty"])).unwrap();
        reader.assign(&[((0, 0), 0), ((1, 0), 0)].into_iter().collect()).unwrap();
        let (full, empty) = ((0, 0), (1, 0));
        let mut read = 0;
        let mut empty_at_end_before_full_read = false;
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(60), "read {read} of {RECORDS} in 60 s");
            if read >= RECORDS / 2 && !empty_at_end_before_full_read {
                // The empty partition's end report can come late (the mock cluster sometimes
                // answers its first fetch after the full partition's records were all
                // fetched): read the second half slowly until it comes, so the test always
                // exercises the case it is for.
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Polled::Record { input, .. } = reader.poll(Duration::from_millis(50)).unwrap() {
                assert_eq!(input, full);
                read += 1;
            }
            let at_end = reader.idle(Duration::ZERO);
            assert!(
                !at_end.contains(&full) || read == RECORDS,
                "the full partition was at its end with {read} of {RECORDS} records read"
            );
            empty_at_end_before_full_read |= at_end.contains(&empty) && read < RECORDS;
            if at_end.len() == 2 {
                break;
            }
        }
        assert_eq!(read, RECORDS);
        assert!(empty_at_end_before_full_read, "the empty partition's end should come first");
    }
}
