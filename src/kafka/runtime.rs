//! The Kafka-mode loop: joins the group, opens and closes shards as the group moves them,
//! reads input records and offers each to every owned shard, and commits every shard on a
//! cadence. It only moves records; the rules decide everything (see [`super::shard`]).

use super::client::Clients;
use super::murmur::partition_for;
use super::reader::{InputPartition, Polled, Reader};
use super::shard::{Offered, Shard, ShardSetup, Taken};
use super::topics::{self, Layout, OutputTopics};
use super::{Context, KafkaError};
use crate::config::KafkaConfig;
use crate::domain::decode::DecodeOptions;
use crate::live::{Freshness, ShardsView};
use crate::rules::{Counters, RulesConfig};
use crate::state::overlay::Overlay;
use crate::state::rocks::RocksStore;
use crate::state::KvStore;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::Position;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Time spent committing (flushing rules, changelog, outputs, local state).
    pub commit_time: Duration,
    /// When the first input record was read (benchmark).
    pub first_record: Option<Instant>,
    /// When the last commit that followed input records finished (benchmark).
    pub last_commit: Option<Instant>,
}

/// Runs Kafka mode until stopped (or, with `exit_when_idle`, until all input is consumed).
pub fn run_kafka(run: &KafkaRun) -> Result<KafkaSummary, KafkaError> {
    let clients = Clients::new(&run.kafka);
    let layout = Arc::new(topics::prepare(&clients, &run.kafka, &run.outputs)?);
    tracing::info!(
        inputs = ?layout.inputs.iter().map(|t| (&t.name, t.partitions)).collect::<Vec<_>>(),
        shards = layout.shards,
        changelog = %layout.changelog,
        transactional = run.kafka.transactional,
        "topics checked"
    );
    let setup = Arc::new(ShardSetup {
        rules: run.rules.clone(),
        decode: run.decode.clone(),
        transactional: run.kafka.transactional,
        data_dir: run.data_dir.clone(),
        clients: clients.clone(),
        layout: layout.clone(),
        metrics: run.metrics.clone(),
    });
    let member: BaseConsumer = clients.member().create().context(|| "creating the group member".into())?;
    member.subscribe(&[&layout.changelog]).context(|| format!("joining group {:?}", run.kafka.group))?;
    let mut reader = Reader::new(&clients.reader(), layout.clone())?;
    let mut shards: BTreeMap<u32, Shard> = BTreeMap::new();
    let mut summary = KafkaSummary::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_idle: BTreeSet<InputPartition> = BTreeSet::new();
    let mut last_gauges = Instant::now();

    loop {
        // Group membership: serve rebalances, then follow the assignment.
        let _ = member.poll(Duration::from_millis(if shards.is_empty() { 100 } else { 0 }));
        let assigned = assigned_shards(&member, &layout.changelog)?;
        if assigned != shards.keys().copied().collect::<BTreeSet<u32>>() {
            if let Some(l) = &run.live {
                l.set_ready(false);
            }
            if let Some(m) = &run.metrics {
                m.set_ready(false);
            }
            shards.retain(|id, _| {
                let keep = assigned.contains(id);
                if !keep {
                    tracing::info!(shard = id, "shard released");
                }
                keep
            });
            for &id in &assigned {
                if let std::collections::btree_map::Entry::Vacant(slot) = shards.entry(id) {
                    let t = Instant::now();
                    slot.insert(Shard::open(setup.clone(), id)?);
                    tracing::info!(shard = id, ms = t.elapsed().as_millis() as u64, "shard acquired");
                }
            }
            if let Ok(tpl) = member.assignment() {
                let _ = member.pause(&tpl);
            }
            reader.assign(&reader_starts(&shards))?;
            last_idle.clear();
            if let Some(l) = &run.live {
                l.set_shards(shards.iter().map(|(&id, s)| (id, s.store() as Arc<dyn KvStore>)).collect());
                publish_committed(l, &layout, &shards);
                l.set_ready(!shards.is_empty());
            }
            if let Some(m) = &run.metrics {
                m.set_ready(!shards.is_empty());
            }
        }
        if shards.is_empty() {
            if run.stop.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }

        // One commit cycle.
        let stores: Vec<Arc<RocksStore>> = shards.values().map(Shard::store).collect();
        let mut ovs: Vec<Overlay<'_>> = stores.iter().map(|s| Overlay::new(s.as_ref())).collect();
        let cycle = Instant::now();
        let mut records = 0u64;
        let mut drained = false;
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
                    let offered = Offered {
                        input,
                        offset: message.offset(),
                        key: message.key(),
                        raw,
                        decoded: &decoded,
                        owner,
                    };
                    for (shard, ov) in shards.values_mut().zip(ovs.iter_mut()) {
                        let taken = shard.offer(ov, &offered)?;
                        if let Some(m) = &run.metrics {
                            match taken {
                                Taken::Applied { late: true } => m.late_event(),
                                Taken::Duplicate => m.duplicate(),
                                _ => {}
                            }
                        }
                    }
                }
                Polled::Nothing => {
                    if run.exit_when_idle && reader.all_idle(run.idle_timeout) {
                        drained = true;
                        break;
                    }
                }
            }
        }
        let idle: BTreeSet<InputPartition> = reader.idle(run.idle_timeout).into_iter().collect();
        let idle_changed = idle != last_idle;
        if records > 0 || idle_changed || drained || shards.values().any(Shard::needs_commit) {
            let idle_list: Vec<InputPartition> = idle.iter().copied().collect();
            let committing = Instant::now();
            for (shard, ov) in shards.values_mut().zip(ovs.iter_mut()) {
                shard.set_idle(&idle_list);
                let stats = shard.commit(ov)?;
                summary.changelog_records += stats.changelog_records;
                for (k, n) in stats.outputs {
                    *summary.outputs.entry(k).or_default() += n;
                }
            }
            reader.discount(committing.elapsed());
            summary.commit_time += committing.elapsed();
            if let Some(m) = &run.metrics {
                m.commit_took(committing.elapsed());
            }
            if let Some(l) = &run.live {
                publish_committed(l, &layout, &shards);
            }
            summary.commits += 1;
            if records > 0 {
                summary.last_commit = Some(Instant::now());
            }
            last_idle = idle;
        }
        drop(ovs);
        summary.records += records;
        if let Some(m) = run.metrics.as_deref().filter(|_| last_gauges.elapsed() >= GAUGES_EVERY) {
            last_gauges = Instant::now();
            update_gauges(m, &layout, &shards, &reader);
        }
        if let Some(every) = run.progress_every {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                log_progress(&shards, &reader, summary.records, started);
            }
        }
        if drained || run.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    for shard in shards.values() {
        summary.totals.add(shard.engine().counters());
    }
    member.unsubscribe();
    Ok(summary)
}

/// How often the watermark, consumer-lag and state-size gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Tells the live view what each shard has committed: its watermark and input positions.
fn publish_committed(live: &ShardsView, layout: &Layout, shards: &BTreeMap<u32, Shard>) {
    for (&id, shard) in shards {
        let positions = shard
            .positions()
            .iter()
            .map(|(&(t, p), &at)| Position {
                source: format!("{}/{p}", layout.inputs[t].name),
                offset: at.max(0) as u64,
                end: None,
            })
            .collect();
        live.committed(id, Freshness { watermark: shard.engine().watermark(), positions });
    }
}

/// Watermark (the lowest of the owned shards'), consumer lag per input partition (end offset
/// − the lowest position of the owned shards) and the size of the owned shards' stores.
fn update_gauges(m: &Metrics, layout: &Layout, shards: &BTreeMap<u32, Shard>, reader: &Reader) {
    m.set_watermark(shards.values().filter_map(|s| s.engine().watermark()).min());
    let starts = reader_starts(shards);
    for (k, end) in reader.end_offsets() {
        if let Some(&at) = starts.get(&k) {
            m.set_consumer_lag(&layout.inputs[k.0].name, k.1, (end - at).max(0));
        }
    }
    m.set_state_size(shards.values().map(|s| s.store().size_bytes()).sum());
}

/// The shard a record belongs to: its shop's (or, co-partitioned, its partition's); a record
/// that could not be decoded belongs to its partition's shard.
fn owner_of(layout: &Layout, input: InputPartition, shop: Option<&str>) -> u32 {
    match shop {
        Some(shop) if !layout.co_partitioned => partition_for(shop.as_bytes(), layout.shards),
        _ => input.1 as u32 % layout.shards,
    }
}

fn assigned_shards(member: &BaseConsumer, changelog: &str) -> Result<BTreeSet<u32>, KafkaError> {
    let tpl = member.assignment().context(|| "reading the group assignment".into())?;
    Ok(tpl.elements().iter().filter(|e| e.topic() == changelog).map(|e| e.partition() as u32).collect())
}

/// Where the reader starts: each input partition at the lowest position of the shards that
/// read it (shards further along skip what they have already processed).
fn reader_starts(shards: &BTreeMap<u32, Shard>) -> BTreeMap<InputPartition, i64> {
    let mut starts: BTreeMap<InputPartition, i64> = BTreeMap::new();
    for shard in shards.values() {
        for (&input, &at) in shard.positions() {
            starts.entry(input).and_modify(|s| *s = (*s).min(at)).or_insert(at);
        }
    }
    starts
}

fn log_progress(shards: &BTreeMap<u32, Shard>, reader: &Reader, records: u64, started: Instant) {
    let ends = reader.end_offsets();
    let starts = reader_starts(shards);
    let lag: i64 = starts.iter().map(|(k, &at)| ends.get(k).map_or(0, |&e| (e - at).max(0))).sum();
    let wm = shards.values().filter_map(|s| s.engine().watermark()).min();
    tracing::info!(
        records,
        records_per_s = (records as f64 / started.elapsed().as_secs_f64().max(1e-9)) as u64,
        shards = ?shards.keys().collect::<Vec<_>>(),
        lag,
        watermark = ?wm.map(|w| w.to_rfc3339()),
        "progress"
    );
}
