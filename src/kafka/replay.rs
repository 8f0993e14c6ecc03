//! Replay (SPEC §7, §10): re-reads the input topics from the beginning or from a time,
//! optionally up to a time, into **fresh** state and outputs the operator chooses (files, or
//! topics under a prefix), without joining the live group or touching its changelog.
//!
//! A replay is one process and one engine over every input partition: it reads with manual
//! assignment and never commits offsets to any group. Where it starts and stops is fixed when
//! it begins: `--from`/`--to` are Kafka record timestamps, resolved with `ListOffsets` by time
//! (from the first record at or after `--from` to the last before the first record after
//! `--to`), and without `--to` a partition ends at its end offset when the replay starts, so a
//! replay of a live topic finishes. That end is the larger of `ListOffsets`' answer and the
//! high watermark of the first fetch answer (tansu 0.6 answers `ListOffsets` with its last
//! batch's first offset + 1), and a partition is done once the consumer's position reaches
//! it: a partition written in transactions ends with a commit marker that no reader is given.
//! Inside those offsets only records whose timestamp lies in `[--from, --to]` are applied
//! (timestamps need not follow offsets, and some brokers answer time lookups loosely). A
//! partition that reaches its end stops holding the watermark back (as an idle live partition
//! does); at the end the watermark is the one a live instance has once every input is idle, so
//! the outputs are those of a live run over the same records.
//!
//! A replay's state is a RocksDB directory of its own, created empty and removed when the
//! replay succeeds. A replay that dies is simply run again (its output directory must be
//! empty; its topics skip compensations already there, see [`super::sink`]).

use super::client::Clients;
use super::scan_end::{self, fetched_end};
use super::sink::{emitted_compensations, TopicSink};
use super::topics::{self, InputTopic, Layout, OutputTopics};
use super::{Context, KafkaError};
use crate::config::KafkaConfig;
use crate::domain::decode::DecodeOptions;
use crate::domain::Timestamp;
use crate::output::{DeadLetter, Output, SourcePos};
use crate::rules::retention::Retention;
use crate::rules::{ApplyOutcome, Counters, Engine, RulesConfig};
use crate::sinks::file::FileSink;
use crate::sinks::Sink;
use crate::state::overlay::Overlay;
use crate::state::rocks::{MemoryLimits, RocksStore};
use crate::state::{KvStore, WriteBatch};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::{Position, Progress};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OFFSETS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    Earliest,
    /// The first record whose Kafka timestamp is at or after this.
    Time(Timestamp),
}

impl ReplayFrom {
    /// Parses `earliest` or an RFC 3339 time.
    pub fn parse(s: &str) -> Result<ReplayFrom, String> {
        if s == "earliest" {
            return Ok(ReplayFrom::Earliest);
        }
        Timestamp::parse_rfc3339(s)
            .map(ReplayFrom::Time)
            .map_err(|e| format!("--from {s:?}: give `earliest` or an RFC 3339 time ({e})"))
    }
}

/// Where a replay's outputs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayTarget {
    /// JSON-lines files as in file mode; the directory must be empty or absent.
    Files(PathBuf),
    /// These topics (created when missing); compensations already in the compensation topic
    /// are not sent again.
    Topics(OutputTopics),
}

/// What a replay needs.
#[derive(Clone, Debug)]
pub struct ReplayRun {
    pub kafka: KafkaConfig,
    pub from: ReplayFrom,
    pub to: Option<Timestamp>,
    pub target: ReplayTarget,
    pub rules: RulesConfig,
    pub decode: DecodeOptions,
    /// The replay's own state directory: must be empty or absent; removed after success.
    pub data_dir: PathBuf,
    /// Flush the rules and write state every this many records.
    pub commit_every_records: u64,
    /// Set by a signal handler: stop early (the replay is then incomplete).
    pub stop: Arc<AtomicBool>,
    pub progress_every: Option<Duration>,
    /// The replay store's block cache and memtable cap (`[state]`).
    pub memory: MemoryLimits,
    /// Where to count records, outputs, the watermark and what is left per partition
    /// (`/metrics` with `replay --http-addr`); None: not counted.
    pub metrics: Option<Arc<Metrics>>,
}

/// One input partition's range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRange {
    /// Index of the input topic (in the configuration's order).
    pub input: usize,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    /// Exclusive.
    pub end: i64,
    /// Next offset to read (= `end` when done).
    pub at: i64,
    /// `end` is the partition's end from `ListOffsets` (no `--to` record cut it), still to be
    /// checked against the high watermark of the first fetch answer: tansu 0.6 answers
    /// `ListOffsets` with its last batch's first offset + 1, which would cut that batch.
    pub end_unsettled: bool,
}

impl PartitionRange {
    /// Raises an unsettled `end` to the high watermark of the first fetch answer `consumer`
    /// got for the partition (once; `end` stays fixed after, so a live topic's replay ends).
    fn settle_end(&mut self, consumer: &BaseConsumer) {
        if self.end_unsettled {
            if let Some(fetched) = fetched_end(consumer, &self.topic, self.partition) {
                self.end = self.end.max(fetched);
                self.end_unsettled = false;
            }
        }
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    pub records: u64,
    pub totals: Counters,
    pub outputs: BTreeMap<&'static str, u64>,
    /// Compensations not sent because the destination topic already had them.
    pub compensations_already_emitted: u64,
    /// Records inside the offset ranges whose Kafka timestamp is outside `--from`/`--to`
    /// (skipped; there are some when timestamps are not in offset order).
    pub outside_time_range: u64,
    pub watermark: Option<Timestamp>,
    pub ranges: Vec<PartitionRange>,
    pub elapsed: Duration,
    /// Stopped on request before the end: the outputs are incomplete.
    pub stopped: bool,
}

/// Runs a replay to its end (or until stopped).
pub fn run_replay(run: &ReplayRun) -> Result<ReplaySummary, KafkaError> {
    let started = Instant::now();
    let clients = Clients::new(&run.kafka);
    let admin: BaseConsumer = clients.admin().create().context(|| "creating a metadata client".into())?;
    let inputs = topics::check_inputs(&admin, &run.kafka)?;
    ensure_fresh_dir(&run.data_dir, "--data-dir (the replay's state)")?;
    let mut sink = match &run.target {
        ReplayTarget::Files(dir) => {
            ensure_fresh_dir(dir, "--output")?;
            ReplaySink::Files(FileSink::open(dir).map_err(|e| KafkaError::Topics(e.to_string()))?)
        }
        ReplayTarget::Topics(outputs) => {
            refuse_live_overlap(&clients, &admin, &run.kafka, outputs)?;
            topics::ensure_outputs(&clients, &run.kafka, outputs)?;
            let emitted =
                emitted_compensations(&clients, &outputs.compensations, outputs.encoding.compensations)?;
            tracing::info!(
                topic = %outputs.compensations,
                compensations = emitted.len(),
                "compensations already in the destination: they will not be sent again"
            );
            ReplaySink::Topics(TopicSink::new(&clients, outputs.clone(), emitted)?)
        }
    };
    let consumer: BaseConsumer = clients
        .reader()
        .set("group.id", format!("{}.replay", run.kafka.group))
        .set("queued.max.messages.kbytes", "65536")
        .create()
        .context(|| "creating the replay consumer".into())?;
    let mut ranges = plan(&consumer, &inputs, run.from, run.to)?;
    for r in &ranges {
        tracing::info!(topic = %r.topic, partition = r.partition, start = r.start, end = r.end, "replay range");
    }

    let retention = Arc::new(Retention::new(&run.rules));
    let store = RocksStore::open_with(&run.data_dir, Some(retention.clone()), Some(&run.memory.budget()))?;
    let mut summary = ReplaySummary::default();
    {
        let mut ov = Overlay::new(&store);
        let mut engine = Engine::load(&mut ov, run.rules.clone())?;
        let index: BTreeMap<(usize, i32), usize> =
            ranges.iter().enumerate().map(|(i, r)| ((r.input, r.partition), i)).collect();
        let clock = |r: &PartitionRange| Layout::clock_id(r.input, r.partition);
        let mut tpl = TopicPartitionList::new();
        for r in &ranges {
            engine.register_partition(clock(r), &r.topic);
            if r.start < r.end {
                tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.start))
                    .context(|| "building the replay assignment".into())?;
            } else {
                engine.set_partition_idle(clock(r), true);
            }
        }
        let total = |ranges: &[PartitionRange]| -> u64 {
            ranges.iter().map(|r| (r.end - r.start).max(0) as u64).sum()
        };
        let mut progress = run.progress_every.map(|every| Progress::new(Some(total(&ranges)), every));
        let mut remaining = ranges.iter().filter(|r| r.start < r.end).count();
        if remaining > 0 {
            consumer.assign(&tpl).context(|| "assigning the replay partitions".into())?;
        }
        let metrics = run.metrics.as_deref();
        if let Some(m) = metrics {
            m.set_ready(true);
            set_lag(m, &ranges);
        }
        let mut last_lag = Instant::now();
        let mut outputs: Vec<Output> = Vec::new();
        let mut since_commit = 0u64;
        let mut done = 0u64;
        while remaining > 0 {
            if run.stop.load(Ordering::SeqCst) {
                summary.stopped = true;
                if let Some(m) = metrics {
                    m.set_ready(false);
                }
                break;
            }
            let message = match consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(RdError::PartitionEOF(_))) => {
                    // Partitions whose last records are ones no reader is given (transaction
                    // markers) end on the consumer's position, which passes them.
                    for (topic, partition, next) in scan_end::positions(&consumer)? {
                        let Some(t) = inputs.iter().position(|t| t.name == topic) else { continue };
                        let Some(&i) = index.get(&(t, partition)) else { continue };
                        let r = &mut ranges[i];
                        r.settle_end(&consumer);
                        if !r.end_unsettled && r.at < r.end && next >= r.end {
                            done += (r.end - r.at) as u64;
                            r.at = r.end;
                            engine.set_partition_idle(clock(r), true);
                            remaining -= 1;
                        }
                    }
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replay consumer error (librdkafka retries)");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let Some(t) = inputs.iter().position(|t| t.name == message.topic()) else { continue };
            let Some(&i) = index.get(&(t, message.partition())) else { continue };
            let r = &mut ranges[i];
            // The fetch answer that brought this record set the partition's watermark first.
            r.settle_end(&consumer);
            let offset = message.offset();
            if offset < r.at || r.at >= r.end {
                continue;
            }
            let in_time = message.timestamp().to_millis().is_none_or(|ts| {
                !matches!(run.from, ReplayFrom::Time(f) if ts < f.0) && run.to.is_none_or(|t| ts <= t.0)
            });
            if offset < r.end {
                done += (offset + 1 - r.at) as u64;
            }
            if offset < r.end && !in_time {
                summary.outside_time_range += 1;
            } else if offset < r.end {
                summary.records += 1;
                since_commit += 1;
                let raw = message.payload().unwrap_or_default();
                let source = SourcePos::Kafka { topic: r.topic.clone(), partition: r.partition, offset };
                if let Some(m) = metrics {
                    m.event_in(&r.topic);
                }
                match inputs[t].decode(raw, &run.decode) {
                    Ok(ev) => match (engine.apply(&mut ov, &ev, clock(r), &source)?, metrics) {
                        (ApplyOutcome::Duplicate, Some(m)) => m.duplicate(),
                        (ApplyOutcome::Applied { late: true }, Some(m)) => m.late_event(),
                        _ => {}
                    },
                    Err(e) => {
                        engine.note_dead_letter();
                        let key = message.key().map(<[u8]>::to_vec);
                        outputs.push(Output::DeadLetter(DeadLetter::from_decode(
                            &e,
                            source,
                            raw.to_vec(),
                            key,
                        )));
                    }
                }
            }
            r.at = (offset + 1).min(r.end);
            if r.at >= r.end {
                // This partition is done: it no longer holds the watermark back.
                engine.set_partition_idle(clock(r), true);
                remaining -= 1;
            }
            if since_commit >= run.commit_every_records {
                commit(&store, &mut ov, &mut engine, sink.as_sink(), &mut outputs, &mut summary, metrics)?;
                retention.set_watermark(engine.watermark());
                since_commit = 0;
            }
            if let Some(m) = metrics.filter(|_| last_lag.elapsed() >= LAG_EVERY) {
                set_lag(m, &ranges);
                last_lag = Instant::now();
            }
            if let Some(p) = progress.as_mut().filter(|p| p.due()) {
                // Ends raised by fetch answers (settle_end) raise the total with them.
                p.set_total(total(&ranges));
                p.update(done, summary.records, &positions(&ranges));
            }
        }
        commit(&store, &mut ov, &mut engine, sink.as_sink(), &mut outputs, &mut summary, metrics)?;
        if let Some(m) = metrics {
            set_lag(m, &ranges);
        }
        if let Some(p) = progress.as_mut() {
            p.set_total(total(&ranges));
            p.update(done, summary.records, &positions(&ranges));
            p.finish();
        }
        summary.totals = engine.counters().clone();
        summary.watermark = engine.watermark();
    }
    summary.compensations_already_emitted = sink.skipped();
    drop(store);
    if !summary.stopped {
        if let Err(e) = std::fs::remove_dir_all(&run.data_dir) {
            tracing::warn!(dir = %run.data_dir.display(), error = %e, "cannot remove the replay state");
        }
    }
    summary.ranges = ranges;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// How often a replay sets the records left per partition (`shopscore_consumer_lag`)
/// between commits.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Records left to replay per partition, as the consumer lag of the live instance would be.
fn set_lag(m: &Metrics, ranges: &[PartitionRange]) {
    for r in ranges {
        m.set_consumer_lag(&r.topic, r.partition, (r.end - r.at).max(0));
    }
}

/// Flushes the rules, sends their outputs and waits for them, then writes the state batch.
fn commit(
    store: &RocksStore,
    ov: &mut Overlay<'_>,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    outputs: &mut Vec<Output>,
    summary: &mut ReplaySummary,
    metrics: Option<&Metrics>,
) -> Result<(), KafkaError> {
    let started = Instant::now();
    let sink_err =
        |e: crate::sinks::SinkError| KafkaError::Topics(format!("writing the replay outputs: {e}"));
    engine.flush(ov, false, outputs)?;
    for o in outputs.iter() {
        sink.write(o).map_err(sink_err)?;
        *summary.outputs.entry(o.kind().name()).or_default() += 1;
    }
    sink.flush().map_err(sink_err)?;
    let mut batch = WriteBatch::new();
    ov.drain_into(&mut batch)?;
    store.write(batch)?;
    if let Some(m) = metrics {
        outputs.iter().for_each(|o| m.record_out(o));
        m.commit_took(started.elapsed());
        m.set_watermark(engine.watermark());
        m.set_state_size(store.size_bytes());
    }
    outputs.clear();
    Ok(())
}

fn positions(ranges: &[PartitionRange]) -> Vec<Position> {
    ranges
        .iter()
        .map(|r| Position {
            source: format!("{}/{}", r.topic, r.partition),
            offset: r.at.max(0) as u64,
            end: Some(r.end.max(0) as u64),
        })
        .collect()
}

/// Resolves every input partition's `[start, end)`.
fn plan(
    consumer: &BaseConsumer,
    inputs: &[InputTopic],
    from: ReplayFrom,
    to: Option<Timestamp>,
) -> Result<Vec<PartitionRange>, KafkaError> {
    let mut ranges = Vec::new();
    for (input, t) in inputs.iter().enumerate() {
        for p in 0..t.partitions as i32 {
            let (low, high) = consumer
                .fetch_watermarks(&t.name, p, OFFSETS_TIMEOUT)
                .context(|| format!("reading the offsets of {:?} partition {p}", t.name))?;
            let start = match from {
                ReplayFrom::Earliest => low,
                ReplayFrom::Time(ts) => offset_for_time(consumer, &t.name, p, ts.0, high)?.max(low),
            };
            let end = match to {
                None => high,
                Some(ts) => offset_for_time(consumer, &t.name, p, ts.0 + 1, high)?.min(high),
            };
            let end_unsettled = end >= high;
            ranges.push(PartitionRange {
                input,
                topic: t.name.clone(),
                partition: p,
                start,
                end,
                at: start,
                end_unsettled,
            });
        }
    }
    Ok(ranges)
}

/// The first offset of `topic`/`partition` whose record timestamp is ≥ `ms`; `high` when
/// there is none.
fn offset_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    ms: i64,
    high: i64,
) -> Result<i64, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms))
        .context(|| "building a time lookup".into())?;
    let found = consumer
        .offsets_for_times(tpl, OFFSETS_TIMEOUT)
        .context(|| format!("looking up {topic:?} partition {partition} by time"))?;
    let offset = found.find_partition(topic, partition).map(|e| e.offset());
    Ok(match offset {
        Some(Offset::Offset(o)) if o >= 0 => o,
        _ => high,
    })
}

/// Refuses a directory that exists and is not empty.
fn ensure_fresh_dir(dir: &std::path::Path, flag: &str) -> Result<(), KafkaError> {
    let non_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty {
        return Err(KafkaError::Topics(format!(
            "{flag} {} is not empty: a replay starts from fresh state and writes fresh outputs; \
             give a new or empty directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Writing a replay into the live topics while the live group runs could emit a compensation
/// twice (the live job decides it too, later): refuse while the live group has members, or
/// while the live compensation topic holds an open transaction ([`open_transactions`]).
fn refuse_live_overlap(
    clients: &Clients,
    admin: &BaseConsumer,
    cfg: &KafkaConfig,
    outputs: &OutputTopics,
) -> Result<(), KafkaError> {
    if outputs.compensations != cfg.topics.compensations {
        return Ok(());
    }
    match admin.fetch_group_list(Some(&cfg.group), OFFSETS_TIMEOUT) {
        Ok(list) => {
            let members: usize = list.groups().iter().map(|g| g.members().len()).sum();
            if members > 0 {
                return Err(KafkaError::Topics(format!(
                    "the replay would write to the live compensation topic {:?} while the live group {:?} \
                     has {members} running member(s): stop the live job first, or replay into other \
                     topics with a non-empty --topic-prefix",
                    outputs.compensations, cfg.group
                )));
            }
        }
        Err(e) => {
            tracing::warn!(group = %cfg.group, error = %e, "cannot tell whether the live group is running");
        }
    }
    let open = open_transactions(clients, &outputs.compensations)?;
    if !open.is_empty() {
        return Err(KafkaError::Topics(format!(
            "the live compensation topic {:?} holds an open transaction ({}), \
             left by a live instance that stopped without ending it; the broker aborts it after \
             its transaction timeout (60 s as shopscore sets it), so retry the replay then. \
             Until then the replay could not read the compensations committed behind it, and \
             would send them again",
            outputs.compensations,
            open.iter()
                .map(|(p, stable, end)| format!("partition {p}: committed end {stable}, end {end}"))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(())
}

/// The partitions of `topic` whose last stable offset (the end a `read_committed` reader sees)
/// is below their high watermark: each holds an open transaction, behind which a committed
/// read cannot see, as `(partition, stable end, end)`. A replay reads the destination's
/// compensations committed ([`emitted_compensations`]), so one written behind an open
/// transaction would look absent. A topic that does not exist has none.
fn open_transactions(clients: &Clients, topic: &str) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let committed: BaseConsumer =
        clients.restorer().create().context(|| "creating a committed reader".into())?;
    let uncommitted: BaseConsumer =
        clients.outbox_scanner().create().context(|| "creating an uncommitted reader".into())?;
    let Some(partitions) = topics::partition_count(&committed, topic)? else { return Ok(Vec::new()) };
    let mut open = Vec::new();
    for p in 0..partitions as i32 {
        let end = |c: &BaseConsumer| {
            c.fetch_watermarks(topic, p, OFFSETS_TIMEOUT)
                .map(|(_, high)| high)
                .context(|| format!("reading the end offsets of {topic:?} partition {p}"))
        };
        // The end first: records written between the two reads can then only raise the
        // committed end, never fake an open transaction.
        let high = end(&uncommitted)?;
        let stable = end(&committed)?;
        if stable < high {
            open.push((p, stable, high));
        }
    }
    Ok(open)
}

/// The replay's output: files or topics.
enum ReplaySink {
    Files(FileSink),
    Topics(TopicSink),
}

impl ReplaySink {
    fn as_sink(&mut self) -> &mut dyn Sink {
        match self {
            ReplaySink::Files(s) => s,
            ReplaySink::Topics(s) => s,
        }
    }

    /// Compensations not sent because the destination already had them.
    fn skipped(&self) -> u64 {
        match self {
            ReplaySink::Files(_) => 0,
            ReplaySink::Topics(s) => s.skipped,
        }
    }
}
