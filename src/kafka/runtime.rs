//! The Kafka-mode loop: joins the group, starts and stops shard workers as the group moves
//! shards ([`super::worker`]), reads and decodes input records and hands them to every owned
//! shard in batches, and tells the shards to commit on a cadence — pipelined: commit `n` is
//! waited for when commit `n+1` starts. It only moves records; the rules decide everything
//! (see [`super::shard`]).

use super::client::Clients;
use super::murmur::partition_for;
use super::reader::{InputPartition, Polled, Reader};
use super::shard::{CommitPhases, CommitStats, ShardSetup};
use super::topics::{self, Layout, OutputTopics};
use super::worker::{Command, Record, Report, ShardView, Worker};
use super::{Context, KafkaError};
use crate::config::KafkaConfig;
use crate::domain::decode::DecodeOptions;
use crate::live::{Freshness, ShardsView};
use crate::rules::{Counters, RulesConfig};
use crate::state::rocks::MemoryLimits;
use crate::state::KvStore;
use crate::telemetry::memory::MemoryUse;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::Position;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a Kafka-mode run needs.
#[derive(Clone, Debug)]
pub struct KafkaRun {
    pub kafka: KafkaConfig,
    /// Where outputs go.
    pub outputs: OutputTopics,
    pub rules: RulesConfig,
    pub decode: DecodeOptions,
    pub data_dir: PathBuf,
    pub commit_interval: Duration,
    pub commit_every_records: u64,
    pub idle_timeout: Duration,
    /// Stop (after a final commit) once every input partition is idle: bounded runs, tests.
    pub exit_when_idle: bool,
    /// Set by a signal handler: finish the batch in flight, commit, return.
    pub stop: Arc<AtomicBool>,
    pub progress_every: Option<Duration>,
    /// Told which shards are owned and what each committed (`/readyz`, `/v1/shops/{id}`).
    pub live: Option<Arc<ShardsView>>,
    /// Prometheus metrics to feed.
    pub metrics: Option<Arc<Metrics>>,
    /// The block cache and memtable cap all owned shards' stores share (`[state]`).
    pub memory: MemoryLimits,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct KafkaSummary {
    pub records: u64,
    pub commits: u64,
    pub outputs: BTreeMap<&'static str, u64>,
    /// Totals of the shards owned at the end.
    pub totals: Counters,
    /// Records written to the changelog (state changes and markers).
    pub changelog_records: u64,
    /// Time with a commit running, from telling the shards to the last one finishing (reading
    /// goes on meanwhile).
    pub commit_time: Duration,
    /// Where the commit time went.
    pub commit_phases: CommitPhases,
    /// When the last output was acknowledged, as of the shards' stop.
    pub outputs_acked: Option<Instant>,
    /// When the first input record was read (benchmark).
    pub first_record: Option<Instant>,
    /// When the last commit that followed input records finished, its outputs acknowledged
    /// (benchmark).
    pub last_commit: Option<Instant>,
    /// Where the memory went when the resident set was at its highest, of the samples taken
    /// every [`MEMORY_EVERY`] while reading (benchmark; `/metrics` shows the latest).
    pub memory_at_peak: Option<MemoryUse>,
}

impl KafkaSummary {
    fn note_memory(&mut self, usage: MemoryUse) {
        if self.memory_at_peak.is_none_or(|m| usage.resident > m.resident) {
            self.memory_at_peak = Some(usage);
        }
    }
}

/// Records handed to the shards at a time.
const BATCH_RECORDS: usize = 512;

/// Runs Kafka mode until stopped (or, with `exit_when_idle`, until all input is consumed).
pub fn run_kafka(run: &KafkaRun) -> Result<KafkaSummary, KafkaError> {
    let clients = Clients::new(&run.kafka);
    let layout = Arc::new(topics::prepare(&clients, &run.kafka, &run.outputs)?);
    tracing::info!(
        inputs = ?layout.inputs.iter().map(|t| (&t.name, t.partitions)).collect::<Vec<_>>(),
        shards = layout.shards,
        changelog = %layout.changelog,
        transactional = run.kafka.transactional,
        transactional_outbox = run.kafka.transactional_outbox,
        "topics checked"
    );
    let setup = Arc::new(ShardSetup {
        rules: run.rules.clone(),
        decode: run.decode.clone(),
        transactional: run.kafka.transactional,
        transactional_outbox: run.kafka.transactional_outbox,
        crash: super::crash::CrashHook::from_env(),
        data_dir: run.data_dir.clone(),
        clients: clients.clone(),
        layout: layout.clone(),
        metrics: run.metrics.clone(),
        // However many shards this instance owns: one budget for all their stores.
        memory: run.memory.budget(),
        snapshot_interval: run.kafka.snapshot_interval,
    });
    let member: BaseConsumer = clients.member().create().context(|| "creating the group member".into())?;
    member.subscribe(&[&layout.changelog]).context(|| format!("joining group {:?}", run.kafka.group))?;
    let mut reader = Reader::new(&clients.reader(), layout.clone())?;
    let mut shards = Shards::new(setup);
    let mut summary = KafkaSummary::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_idle: BTreeSet<InputPartition> = BTreeSet::new();
    let mut last_gauges = Instant::now();
    let mut last_memory = Instant::now();

    let outcome = loop {
        // Group membership: serve rebalances, then follow the assignment.
        serve_member(&member, if shards.is_empty() { Duration::from_millis(100) } else { MEMBER_POLL });
        let assigned = assigned_shards(&member, &layout.changelog)?;
        if assigned != shards.ids() {
            if let Some(l) = &run.live {
                l.set_ready(false);
            }
            if let Some(m) = &run.metrics {
                m.set_ready(false);
            }
            // The shards restore their changelog partitions themselves: the member must not
            // fetch them too.
            pause_assignment(&member);
            if let Err(e) = shards.follow(run, &member, &assigned, &mut summary) {
                break Err(e);
            }
            reader.assign(&shards.reader_starts())?;
            last_idle.clear();
            if let Some(l) = &run.live {
                l.set_shards(
                    shards.views.iter().map(|(&id, v)| (id, v.store.clone() as Arc<dyn KvStore>)).collect(),
                );
                publish_committed(l, &layout, &shards.views);
                l.set_ready(!shards.is_empty());
            }
            if let Some(m) = &run.metrics {
                m.set_ready(!shards.is_empty());
            }
        }
        if shards.is_empty() {
            if run.stop.load(Ordering::SeqCst) {
                break Ok(());
            }
            continue;
        }

        // One commit cycle: read and decode here, apply in the shards' threads.
        let cycle = Instant::now();
        let mut records = 0u64;
        let mut drained = false;
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH_RECORDS);
        while cycle.elapsed() < run.commit_interval
            && records < run.commit_every_records
            && !run.stop.load(Ordering::SeqCst)
        {
            match reader.poll(Duration::from_millis(50))? {
                Polled::Record { input, message } => {
                    records += 1;
                    summary.first_record.get_or_insert_with(Instant::now);
                    let t = &layout.inputs[input.0];
                    let raw = message.payload().unwrap_or_default();
                    let decoded = t.decode(raw, &run.decode);
                    if let Some(m) = &run.metrics {
                        m.event_in(&t.name);
                    }
                    let owner = owner_of(&layout, input, decoded.as_ref().ok().map(|e| e.shop_id.as_str()));
                    batch.push(Record {
                        input,
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        raw: raw.to_vec(),
                        decoded,
                        owner,
                    });
                    if batch.len() >= BATCH_RECORDS {
                        shards.offer(std::mem::take(&mut batch), &mut reader)?;
                    }
                }
                Polled::Nothing => {
                    shards.offer(std::mem::take(&mut batch), &mut reader)?;
                    if run.exit_when_idle && reader.all_idle(run.idle_timeout) {
                        drained = true;
                        break;
                    }
                }
            }
        }
        shards.offer(batch, &mut reader)?;
        let idle: BTreeSet<InputPartition> = reader.idle(run.idle_timeout).into_iter().collect();
        let idle_changed = idle != last_idle;
        if records > 0 || idle_changed || drained || shards.needs_commit() {
            // Commits are pipelined: the shards commit while this thread reads on; a commit
            // is waited for when the next one starts (it has normally finished by then).
            let waiting = Instant::now();
            shards.complete_commit(run, &member, &mut summary)?;
            reader.discount(waiting.elapsed());
            shards.start_commit(idle.iter().copied().collect(), records > 0)?;
            last_idle = idle;
        }
        summary.records += records;
        if last_memory.elapsed() >= MEMORY_EVERY {
            last_memory = Instant::now();
            let (cache, memtables) = shards.setup.memory.usage();
            let usage = MemoryUse::sample(cache, memtables, reader.prefetched_bytes());
            if let Some(m) = &run.metrics {
                m.set_memory(&usage);
            }
            summary.note_memory(usage);
        }
        if last_gauges.elapsed() >= GAUGES_EVERY {
            last_gauges = Instant::now();
            if let Some(m) = &run.metrics {
                update_gauges(m, &layout, &shards.views, &reader);
            }
            if let Some(grown) = reader.grown_inputs().first() {
                break Err(grown.error());
            }
        }
        if let Some(every) = run.progress_every {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                log_progress(&shards.views, &reader, summary.records, started);
            }
        }
        if drained || run.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
    };
    let stopped = shards.follow(run, &member, &BTreeSet::new(), &mut summary);
    outcome.and(stopped)?;
    if shards.outputs_unsettled {
        summary.last_commit = summary.last_commit.max(summary.outputs_acked);
    }
    member.unsubscribe();
    Ok(summary)
}

/// The owned shards: a worker thread each, and what the runtime knows of them.
struct Shards {
    setup: Arc<ShardSetup>,
    workers: BTreeMap<u32, Worker>,
    views: BTreeMap<u32, ShardView>,
    reports: Receiver<Report>,
    report_tx: Sender<Report>,
    /// A commit the shards were told to make and have not all reported: when it started,
    /// and whether input was read before it.
    in_flight: Option<(Instant, bool)>,
    /// The last completed commit followed input records, and its outputs may still be in
    /// flight (the benchmark's end is when they are acknowledged).
    outputs_unsettled: bool,
    /// Workers that reported a failure: their threads have ended, so they will never report
    /// again, and nothing may wait for them (waiting for a stopped report from one made the
    /// process hang after any shard failure instead of exiting with its error).
    dead: BTreeSet<u32>,
}

/// A commit of every owned shard, completed.
struct Completed {
    stats: Vec<CommitStats>,
    started: Instant,
    /// When the last shard finished.
    finished: Instant,
    with_records: bool,
}

impl Shards {
    fn new(setup: Arc<ShardSetup>) -> Shards {
        let (report_tx, reports) = channel();
        Shards {
            setup,
            workers: BTreeMap::new(),
            views: BTreeMap::new(),
            reports,
            report_tx,
            in_flight: None,
            outputs_unsettled: false,
            dead: BTreeSet::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    fn ids(&self) -> BTreeSet<u32> {
        self.workers.keys().copied().collect()
    }

    /// The owned shards whose workers still run (and so will report).
    fn live_ids(&self) -> BTreeSet<u32> {
        self.workers.keys().copied().filter(|id| !self.dead.contains(id)).collect()
    }

    fn needs_commit(&self) -> bool {
        self.views.values().any(|v| v.needs_commit)
    }

    /// Completes the commit in flight, stops the workers of shards no longer `assigned`
    /// (after their outputs are acknowledged) and starts and opens the newly assigned ones,
    /// in parallel. The group `member` is served while it waits (opening restores state from
    /// the changelog, which takes as long as the changelog is big).
    fn follow(
        &mut self,
        run: &KafkaRun,
        member: &BaseConsumer,
        assigned: &BTreeSet<u32>,
        summary: &mut KafkaSummary,
    ) -> Result<(), KafkaError> {
        // A worker reports its commit before its stop: wait for the commits first.
        self.complete_commit(run, member, summary)?;
        let released: BTreeSet<u32> =
            self.workers.keys().copied().filter(|id| !assigned.contains(id)).collect();
        for id in &released {
            self.workers[id].send(Command::Stop);
        }
        let reporting: BTreeSet<u32> = released.difference(&self.dead).copied().collect();
        let stopped = await_reports(&self.reports, &reporting, &mut self.dead, member, |report| {
            if let Report::Stopped { id, counters, outputs_acked } = report {
                if assigned.is_empty() {
                    // The final stop: the summary's totals are those of the shards owned at the end.
                    summary.totals.add(&counters);
                }
                summary.outputs_acked = summary.outputs_acked.max(outputs_acked);
                tracing::info!(shard = id, "shard released");
            }
        });
        for id in &released {
            self.views.remove(id);
            self.dead.remove(id);
            if let Some(w) = self.workers.remove(id) {
                w.join();
            }
        }
        stopped?;
        let opening: BTreeSet<u32> =
            assigned.iter().copied().filter(|id| !self.workers.contains_key(id)).collect();
        for &id in &opening {
            self.workers.insert(id, Worker::spawn(self.setup.clone(), id, self.report_tx.clone())?);
        }
        let views = &mut self.views;
        await_reports(&self.reports, &opening, &mut self.dead, member, |report| {
            if let Report::Opened { id, view, took_ms } = report {
                tracing::info!(shard = id, ms = took_ms, "shard acquired");
                views.insert(id, view);
            }
        })
    }

    /// Hands a batch of records to every owned shard; time spent waiting for a busy shard is
    /// not quiet time of the input partitions.
    fn offer(&mut self, batch: Vec<Record>, reader: &mut Reader) -> Result<(), KafkaError> {
        if batch.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        let batch = Arc::new(batch);
        if !self.workers.values().all(|worker| worker.send(Command::Records(batch.clone()))) {
            return Err(self.failure());
        }
        let waited = began.elapsed();
        if waited > Duration::from_millis(1) {
            reader.discount(waited);
        }
        Ok(())
    }

    /// Tells every owned shard to commit what it was offered so far (they commit in
    /// parallel, while the runtime reads on); `with_records`: input was read since the last.
    fn start_commit(&mut self, idle: Vec<InputPartition>, with_records: bool) -> Result<(), KafkaError> {
        let idle = Arc::new(idle);
        if !self.workers.values().all(|worker| worker.send(Command::Commit { idle: idle.clone() })) {
            return Err(self.failure());
        }
        self.in_flight = Some((Instant::now(), with_records));
        Ok(())
    }

    /// Waits for the commit in flight, if any, and adds what it did to the summary, the
    /// metrics and the live view.
    fn complete_commit(
        &mut self,
        run: &KafkaRun,
        member: &BaseConsumer,
        summary: &mut KafkaSummary,
    ) -> Result<(), KafkaError> {
        let Some((started, with_records)) = self.in_flight.take() else { return Ok(()) };
        let ids = self.live_ids();
        let mut done =
            Completed { stats: Vec::with_capacity(ids.len()), started, finished: started, with_records };
        let views = &mut self.views;
        await_reports(&self.reports, &ids, &mut self.dead, member, |report| {
            if let Report::Committed { id, stats, view, finished } = report {
                views.insert(id, view);
                done.stats.push(stats);
                done.finished = done.finished.max(finished);
            }
        })?;
        self.account(run, summary, done);
        Ok(())
    }

    fn account(&mut self, run: &KafkaRun, summary: &mut KafkaSummary, done: Completed) {
        for stats in done.stats {
            summary.changelog_records += stats.changelog_records;
            summary.commit_phases.add(&stats.phases);
            for (k, n) in stats.outputs {
                *summary.outputs.entry(k).or_default() += n;
            }
            if self.outputs_unsettled {
                // The previous commit ended when its outputs were acknowledged.
                summary.last_commit = summary.last_commit.max(stats.previous_outputs_acked);
            }
        }
        let took = done.finished.saturating_duration_since(done.started);
        summary.commit_time += took;
        if let Some(m) = &run.metrics {
            m.commit_took(took);
        }
        if let Some(l) = &run.live {
            publish_committed(l, &self.setup.layout, &self.views);
        }
        summary.commits += 1;
        self.outputs_unsettled = done.with_records;
        if done.with_records {
            summary.last_commit = Some(done.finished);
        }
    }

    /// The error of a worker that stopped taking commands.
    fn failure(&mut self) -> KafkaError {
        while let Ok(report) = self.reports.recv_timeout(Duration::from_secs(10)) {
            if let Report::Failed { id, error } = report {
                record_failure(&mut self.dead, id, &error);
                return error;
            }
        }
        KafkaError::Shard { shard: u32::MAX, why: "a shard's thread stopped without a report".into() }
    }

    /// Where the reader starts: each input partition at the lowest position of the shards
    /// that read it (shards further along skip what they have already processed).
    fn reader_starts(&self) -> BTreeMap<InputPartition, i64> {
        reader_starts(&self.views)
    }
}

/// Waits for one report from each of `ids`, handing each to `on`, except failures: each is
/// logged, its shard added to `dead`, and the first one returned (once every worker has
/// reported). Serves the group `member` every [`KEEP_MEMBER_EVERY`] meanwhile.
fn await_reports(
    reports: &Receiver<Report>,
    ids: &BTreeSet<u32>,
    dead: &mut BTreeSet<u32>,
    member: &BaseConsumer,
    mut on: impl FnMut(Report),
) -> Result<(), KafkaError> {
    let mut waiting = ids.clone();
    let mut failure = None;
    while !waiting.is_empty() {
        let report = match reports.recv_timeout(KEEP_MEMBER_EVERY) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => {
                keep_member(member);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let id = match &report {
            Report::Opened { id, .. }
            | Report::Committed { id, .. }
            | Report::Stopped { id, .. }
            | Report::Failed { id, .. } => *id,
        };
        waiting.remove(&id);
        match report {
            Report::Failed { id, error } => {
                record_failure(dead, id, &error);
                failure.get_or_insert(error);
            }
            report => on(report),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Logs a worker's failure at once and counts its shard among the `dead`, whose ended
/// threads nothing may wait for.
fn record_failure(dead: &mut BTreeSet<u32>, id: u32, error: &KafkaError) {
    tracing::error!(shard = id, error = %error, "shard failed");
    dead.insert(id);
}

/// How often the watermark, consumer-lag and state-size gauges are refreshed, and the input
/// topics' partition counts compared with those the run started with.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// How often the memory is sampled ([`MemoryUse`]: the resident set, jemalloc's counters and
/// the stores' budget, each a few microseconds to read).
const MEMORY_EVERY: Duration = Duration::from_millis(500);

/// Tells the live view what each shard has committed: its watermark and input positions.
fn publish_committed(live: &ShardsView, layout: &Layout, shards: &BTreeMap<u32, ShardView>) {
    for (&id, shard) in shards {
        let positions = shard
            .positions
            .iter()
            .map(|(&(t, p), &at)| Position {
                source: format!("{}/{p}", layout.inputs[t].name),
                offset: at.max(0) as u64,
                end: None,
            })
            .collect();
        live.committed(id, Freshness { watermark: shard.watermark, positions });
    }
}

/// Watermark (the lowest of the owned shards'), consumer lag per input partition (end offset
/// − the lowest position of the owned shards) and the size of the owned shards' stores.
fn update_gauges(m: &Metrics, layout: &Layout, shards: &BTreeMap<u32, ShardView>, reader: &Reader) {
    m.set_watermark(shards.values().filter_map(|s| s.watermark).min());
    let starts = reader_starts(shards);
    for (k, end) in reader.end_offsets() {
        if let Some(&at) = starts.get(&k) {
            m.set_consumer_lag(&layout.inputs[k.0].name, k.1, (end - at).max(0));
        }
    }
    m.set_state_size(shards.values().map(|s| s.store.size_bytes()).sum());
}

/// The shard a record belongs to: its shop's (or, co-partitioned, its partition's); a record
/// that could not be decoded belongs to its partition's shard.
fn owner_of(layout: &Layout, input: InputPartition, shop: Option<&str>) -> u32 {
    match shop {
        Some(shop) if !layout.co_partitioned => partition_for(shop.as_bytes(), layout.shards),
        _ => input.1 as u32 % layout.shards,
    }
}

/// How long each turn of the loop lets the group member serve its queue while shards run.
const MEMBER_POLL: Duration = Duration::from_millis(1);

/// How often the member is served while the runtime waits for its shards (opening, a commit,
/// stopping). librdkafka leaves the group when the application has not polled the member for
/// `max.poll.interval.ms` (5 minutes by default); opening a shard restores its state from the
/// changelog, and did so without a poll until session 18: a restore longer than the interval
/// sent the shards to a rebalance mid-restore (test `kafka_group::a_restore_longer_…`).
const KEEP_MEMBER_EVERY: Duration = Duration::from_millis(100);

/// Serves the member while the runtime waits, and pauses whatever a rebalance served here
/// assigned: the loop follows the new assignment once the wait is over.
fn keep_member(member: &BaseConsumer) {
    serve_member(member, MEMBER_POLL);
    pause_assignment(member);
}

/// Pauses every partition assigned to the member: it only holds shards, their workers read
/// the changelog.
fn pause_assignment(member: &BaseConsumer) {
    if let Ok(tpl) = member.assignment() {
        let _ = member.pause(&tpl);
    }
}

/// Serves the group member's queue for up to `budget`: rebalances, errors, librdkafka's logs.
/// rust-rdkafka's `poll` with a zero timeout takes a single event, and the loop turns once per
/// commit cycle, so anything queued before a rebalance (a burst of logs, changelog records
/// fetched before the partitions were paused) held it back for as many cycles. Within a
/// non-zero timeout `poll` goes on through such events; it returns early at a rebalance or a
/// fetched record, hence the loop.
fn serve_member(member: &BaseConsumer, budget: Duration) {
    let began = Instant::now();
    while let Some(left) = budget.checked_sub(began.elapsed()).filter(|d| !d.is_zero()) {
        let _ = member.poll(left);
    }
}

fn assigned_shards(member: &BaseConsumer, changelog: &str) -> Result<BTreeSet<u32>, KafkaError> {
    let tpl = member.assignment().context(|| "reading the group assignment".into())?;
    Ok(tpl.elements().iter().filter(|e| e.topic() == changelog).map(|e| e.partition() as u32).collect())
}

/// Where the reader starts: each input partition at the lowest position of the shards that
/// read it (shards further along skip what they have already processed).
fn reader_starts(shards: &BTreeMap<u32, ShardView>) -> BTreeMap<InputPartition, i64> {
    let mut starts: BTreeMap<InputPartition, i64> = BTreeMap::new();
    for shard in shards.values() {
        for (&input, &at) in &shard.positions {
            starts.entry(input).and_modify(|s| *s = (*s).min(at)).or_insert(at);
        }
    }
    starts
}

fn log_progress(shards: &BTreeMap<u32, ShardView>, reader: &Reader, records: u64, started: Instant) {
    let ends = reader.end_offsets();
    let starts = reader_starts(shards);
    let lag: i64 = starts.iter().map(|(k, &at)| ends.get(k).map_or(0, |&e| (e - at).max(0))).sum();
    let wm = shards.values().filter_map(|s| s.watermark).min();
    tracing::info!(
        records,
        records_per_s = (records as f64 / started.elapsed().as_secs_f64().max(1e-9)) as u64,
        shards = ?shards.keys().collect::<Vec<_>>(),
        lag,
        watermark = ?wm.map(|w| w.to_rfc3339()),
        "progress"
    );
}
