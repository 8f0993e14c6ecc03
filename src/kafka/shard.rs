//! One shard: its RocksDB store, engine, input positions and producer, and its commit.
//!
//! # Commit protocol
//!
//! Per commit `n` of a shard, in this order:
//!
//! 1. the engine flushes (watermark, timers, snapshots) into outputs; retention deletes dead
//!    entries; the input positions and `n` are put into the same state delta;
//! 2. without transactions (or with `kafka.transactional_outbox`), the outputs (with ids
//!    `{shard}:{n}:{i}` and the end offsets of their partitions) are put into the delta as the
//!    **outbox** ([`super::outbox`]) — after the outputs of commit `n-1` are all acknowledged,
//!    since this delta replaces their outbox;
//! 3. the delta goes to the shard's changelog partition, closed by a marker record — with
//!    transactions, in one transaction together with the outputs (with the transactional
//!    outbox, the outputs are sent only once the marker is acknowledged, then the transaction
//!    commits);
//! 4. the delta, with the changelog offset it corresponds to, is written to local RocksDB in
//!    one batch (without a write-ahead log: the store is a cache of the changelog);
//! 5. without transactions, the outputs are sent; commit `n+1` (or the shard's release or
//!    stop) waits for their acknowledgement.
//!
//! Steps 1–3 are `Shard::prepare` (queued, not waited for), 3–5 `Shard::finish`.
//!
//! A crash before 3 completes leaves the changelog at commit `n-1` (a torn, unmarked tail is
//! ignored and overwritten, see [`super::changelog`]; an unfinished transaction is aborted
//! when the next owner fences it): the next owner restores state and positions of `n-1` and
//! reprocesses the same input. A crash after 3 leaves the changelog at `n`; RocksDB catches up
//! from it on restore. Outputs: with transactions they commit with the changelog, atomically;
//! with an outbox, the outbox of `n` is in the restored state and only its missing records are
//! sent. The transactional outbox covers a broker that shows an unfinished transaction to
//! `read_committed` readers: a restore may then see commit `n` whole though its transaction
//! never committed, and its outputs, sent only after the marker, may be partly missing.

use super::changelog::{
    self, is_local, is_packed, marker_payload, seen_pack_key, seen_packs, SeenPack, FENCE_KEY, MARKER_KEY,
};
use super::client::Clients;
use super::crash::CrashPoint;
use super::outbox::{self, record_id, Outbox};
use super::producer::ShardProducer;
use super::reader::InputPartition;
use super::records::{to_record, KafkaRecord, ID_HEADER};
use super::topics::Layout;
use super::{Context, KafkaError};
use crate::domain::decode::{DecodeError, DecodeOptions};
use crate::domain::Event;
use crate::output::{DeadLetter, Output, SourcePos};
use crate::rules::derived::is_derived;
use crate::rules::engine::Snapshots;
use crate::rules::retention::{Retention, Sweeper};
use crate::rules::{ApplyOutcome, Engine, RulesConfig};
use crate::state::keys::{seen_pack_index_prefix, seen_pack_of_index_key, Key, MetaKey};
use crate::state::overlay::Overlay;
use crate::state::rocks::{MemoryBudget, RocksStore};
use crate::state::{codec, KvStore, WriteBatch};
use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every shard of a process shares.
pub struct ShardSetup {
    pub rules: RulesConfig,
    pub decode: DecodeOptions,
    pub transactional: bool,
    /// With transactions, keep the outbox too (`kafka.transactional_outbox`).
    pub transactional_outbox: bool,
    /// The test hook that aborts mid-commit ([`super::crash`]); None in normal runs.
    pub crash: Option<super::crash::CrashHook>,
    /// Shard `n` keeps its store in `data_dir/shard-n`.
    pub data_dir: PathBuf,
    pub clients: Clients,
    pub layout: Arc<Layout>,
    /// Committed outputs and aborted transactions are counted here.
    pub metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
    /// The block cache and memtable cap every shard's store shares.
    pub memory: MemoryBudget,
    /// `kafka.snapshot_interval`.
    pub snapshot_interval: Duration,
}

/// A shard's progress as stored (topics by name, so renaming a topic starts it afresh).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredProgress {
    seq: u64,
    positions: Vec<(String, i32, i64)>,
}

/// A record as offered to a shard.
pub struct Offered<'a> {
    pub input: InputPartition,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub raw: &'a [u8],
    pub decoded: &'a Result<Event, DecodeError>,
    /// The shard that owns this record (the shop's, or for a dead letter its partition's).
    pub owner: u32,
}

/// Counts of one commit, for metrics and logs.
#[derive(Clone, Debug, Default)]
pub struct CommitStats {
    pub outputs: BTreeMap<&'static str, u64>,
    pub changelog_records: u64,
    pub phases: CommitPhases,
    /// When the previous commit's outputs were all acknowledged (the last output ack once
    /// they were; the benchmark's end of that commit).
    pub previous_outputs_acked: Option<Instant>,
    /// Dead entries deleted by retention (their tombstones went to the changelog).
    pub swept: u64,
    /// Seen packs past the retention horizon, tombstoned.
    pub packs_expired: u64,
}

/// Stored entries a commit's retention sweep looks at, at most.
const SWEEP_BUDGET: usize = 20_000;
/// Seen packs a commit expires, at most.
const PACK_EXPIRY_BUDGET: usize = 1_000;

/// Where a commit's time went (the benchmark's breakdown).
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitPhases {
    /// The engine's flush: watermark, timers, snapshots, building the output records.
    pub rules: Duration,
    /// The retention sweep and seen-pack expiry.
    pub retention: Duration,
    /// Reading the output partitions' end offsets for the outbox.
    pub outbox: Duration,
    /// Sending the changelog delta and waiting for it (with transactions: the outputs too,
    /// and the transaction commit).
    pub changelog: Duration,
    /// The local RocksDB write.
    pub local: Duration,
    /// Sending the outputs and waiting for them (without transactions).
    pub outputs: Duration,
}

impl CommitPhases {
    pub fn add(&mut self, o: &CommitPhases) {
        self.rules += o.rules;
        self.retention += o.retention;
        self.outbox += o.outbox;
        self.changelog += o.changelog;
        self.local += o.local;
        self.outputs += o.outputs;
    }
}

/// A commit queued by [`Shard::prepare`], to be completed by [`Shard::finish`].
struct Prepared {
    seq: u64,
    batch: WriteBatch,
    records: Vec<KafkaRecord>,
    stats: CommitStats,
}

/// The time since `clock`, restarting it.
fn lap(clock: &mut Instant) -> Duration {
    std::mem::replace(clock, Instant::now()).elapsed()
}

/// What a shard did with an offered record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Not this shard's input, or already processed before (position beyond it).
    Skipped,
    Applied {
        late: bool,
    },
    Duplicate,
    /// Another shard's event: only the watermark clock moved.
    Observed,
    DeadLetter,
    /// Another shard's dead letter.
    Ignored,
}

pub struct Shard {
    pub id: u32,
    setup: Arc<ShardSetup>,
    store: Arc<RocksStore>,
    retention: Arc<Retention>,
    sweeper: Sweeper,
    engine: Engine,
    positions: BTreeMap<InputPartition, i64>,
    seq: u64,
    producer: ShardProducer,
    /// Keys of a torn changelog tail, overwritten by the next commit.
    torn: Vec<Vec<u8>>,
    outbox_pending: bool,
    /// Outputs of the last commit sent but not yet known to be acknowledged.
    outputs_in_flight: bool,
    outputs: Vec<Output>,
    meta_consumer: BaseConsumer,
    output_ends: outbox::EndOffsets,
    /// When this shard last refreshed its snapshots, and the records offered to it since its
    /// last commit (none: the input is quiet, so the snapshots are refreshed).
    snapshots_refreshed: Instant,
    offered_since_commit: u64,
}

fn dir_of(setup: &ShardSetup, id: u32) -> PathBuf {
    setup.data_dir.join(format!("shard-{id}"))
}

/// A shard's store is a cache of its changelog: a write skips RocksDB's write-ahead log, since
/// what a crash loses (the batches still in memtables) is restored from the changelog, from
/// the offset recorded by the last batch that survived.
fn open_store(setup: &ShardSetup, id: u32, retention: &Arc<Retention>) -> Result<RocksStore, KafkaError> {
    let mut store = RocksStore::open_with(&dir_of(setup, id), Some(retention.clone()), Some(&setup.memory))?;
    store.set_durable(false);
    Ok(store)
}

impl Shard {
    /// Takes ownership of shard `id`: fences earlier owners, restores the store from the
    /// changelog, and re-sends what an earlier owner's last commit left unsent.
    pub fn open(setup: Arc<ShardSetup>, id: u32) -> Result<Shard, KafkaError> {
        let producer = ShardProducer::new(&setup.clients, id, setup.transactional)?;
        let retention = Arc::new(Retention::swept(&setup.rules));
        let mut store = open_store(&setup, id, &retention)?;
        let meta_consumer: BaseConsumer =
            setup.clients.restorer().create().context(|| "creating a metadata consumer".into())?;
        producer.check_transactions(&meta_consumer, &setup.layout.changelog)?;
        let fence =
            producer.fence(&setup.layout.changelog, FENCE_KEY, &codec::encode(&std::process::id()))?;
        let stale = if changelog::local_offset(&store)? > fence {
            Some("local state is ahead of the changelog (a new changelog topic?): discarding it")
        } else if changelog::holds_unpositioned_state(&store)? {
            Some("local state is from a restore that did not finish: discarding it")
        } else {
            None
        };
        if let Some(why) = stale {
            tracing::warn!(shard = id, "{why}");
            drop(store);
            std::fs::remove_dir_all(dir_of(&setup, id)).map_err(|e| KafkaError::Shard {
                shard: id,
                why: format!("cannot remove stale state {}: {e}", dir_of(&setup, id).display()),
            })?;
            store = open_store(&setup, id, &retention)?;
        }
        let restored = changelog::restore(
            &store,
            &setup.clients,
            &setup.layout.changelog,
            id,
            fence,
            setup.metrics.as_deref(),
        )?;
        tracing::info!(
            shard = id,
            records = restored.records,
            last_commit = restored.last_seq,
            torn = restored.torn.len(),
            "shard state restored"
        );
        let store = Arc::new(store);
        let inputs = setup.layout.shard_inputs(id);
        let (engine, progress, outbox) = {
            let mut ov = Overlay::new(store.as_ref());
            let mut engine = Engine::load(&mut ov, setup.rules.clone())?;
            let progress: StoredProgress = ov.get(&Key::Meta(MetaKey::KafkaProgress))?.unwrap_or_default();
            let outbox: Option<Outbox> = outbox::load(&mut ov)?;
            for &(t, p) in &inputs {
                engine.register_partition(Layout::clock_id(t, p), &setup.layout.inputs[t].name);
            }
            (engine, progress, outbox)
        };
        retention.set_watermark(engine.watermark());
        let mut positions = BTreeMap::new();
        for (t, p) in inputs {
            let name = &setup.layout.inputs[t].name;
            let at = progress.positions.iter().find(|(n, q, _)| n == name && *q == p).map_or(0, |e| e.2);
            positions.insert((t, p), at);
        }
        let mut shard = Shard {
            id,
            store,
            sweeper: Sweeper::new(&retention),
            retention,
            engine,
            positions,
            seq: progress.seq,
            producer,
            torn: restored.torn,
            outbox_pending: false,
            outputs_in_flight: false,
            outputs: Vec::new(),
            meta_consumer,
            output_ends: outbox::EndOffsets::default(),
            snapshots_refreshed: Instant::now(),
            offered_since_commit: 0,
            setup,
        };
        if let Some(outbox) = outbox {
            shard.outbox_pending = true;
            let missing = outbox::missing(&shard.setup.clients, &outbox)?;
            tracing::info!(
                shard = id,
                commit = outbox.seq,
                records = outbox.records.len(),
                missing = missing.len(),
                "re-sending the unsent outputs of the last commit"
            );
            if let Some(m) = &shard.setup.metrics {
                m.outbox_resent(missing.len() as u64);
            }
            if !missing.is_empty() {
                let txn = shard.producer.transactional();
                if txn {
                    shard.producer.begin()?;
                }
                shard.producer.send_all(&missing)?;
                if txn {
                    shard.producer.commit()?;
                } else {
                    shard.producer.flush()?;
                }
            }
        }
        Ok(shard)
    }

    pub fn store(&self) -> Arc<RocksStore> {
        self.store.clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Positions of the inputs this shard reads.
    pub fn positions(&self) -> &BTreeMap<InputPartition, i64> {
        &self.positions
    }

    /// True when the next commit has something to write even without new input.
    pub fn needs_commit(&self) -> bool {
        !self.torn.is_empty() || self.outbox_pending
    }

    /// Offers one input record.
    pub fn offer(&mut self, ov: &mut Overlay<'_>, r: &Offered<'_>) -> Result<Taken, KafkaError> {
        self.offered_since_commit += 1;
        let Some(pos) = self.positions.get_mut(&r.input) else { return Ok(Taken::Skipped) };
        if r.offset < *pos {
            return Ok(Taken::Skipped);
        }
        *pos = r.offset + 1;
        let clock = Layout::clock_id(r.input.0, r.input.1);
        let mine = r.owner == self.id;
        let source = || SourcePos::Kafka {
            topic: self.setup.layout.inputs[r.input.0].name.clone(),
            partition: r.input.1,
            offset: r.offset,
        };
        match (r.decoded, mine) {
            (Ok(ev), true) => {
                let source = source();
                Ok(match self.engine.apply(ov, ev, clock, &source)? {
                    ApplyOutcome::Applied { late } => Taken::Applied { late },
                    ApplyOutcome::Duplicate => Taken::Duplicate,
                })
            }
            (Ok(ev), false) => {
                self.engine.observe_foreign(clock, ev.event_time);
                Ok(Taken::Observed)
            }
            (Err(e), true) => {
                let source = source();
                self.engine.note_dead_letter();
                let key = r.key.map(<[u8]>::to_vec);
                self.outputs.push(Output::DeadLetter(DeadLetter::from_decode(
                    e,
                    source,
                    r.raw.to_vec(),
                    key,
                )));
                Ok(Taken::DeadLetter)
            }
            (Err(_), false) => Ok(Taken::Ignored),
        }
    }

    /// Marks input partitions idle (they stop holding the watermark back until their next
    /// record).
    pub fn set_idle(&mut self, idle: &[InputPartition]) {
        for &(t, p) in idle {
            if self.positions.contains_key(&(t, p)) {
                self.engine.set_partition_idle(Layout::clock_id(t, p), true);
            }
        }
    }

    /// Commits: see the module documentation for the protocol.
    pub fn commit(&mut self, ov: &mut Overlay<'_>) -> Result<CommitStats, KafkaError> {
        let prepared = self.prepare(ov)?;
        self.finish(prepared)
    }

    /// Commit steps 1–3 without waiting: flushes the rules, builds the delta (with the outbox)
    /// and queues the changelog records and the marker — with transactions, also the outputs.
    /// Without transactions, first waits until the previous commit's outputs are acknowledged:
    /// this commit's delta deletes their outbox.
    fn prepare(&mut self, ov: &mut Overlay<'_>) -> Result<Prepared, KafkaError> {
        let mut stats = CommitStats::default();
        let mut clock = Instant::now();
        stats.previous_outputs_acked = self.settle()?;
        stats.phases.outputs = lap(&mut clock);
        let interval = self.setup.snapshot_interval;
        let refresh = interval.is_zero()
            || self.offered_since_commit == 0
            || self.snapshots_refreshed.elapsed() >= interval;
        let snapshots = if refresh { Snapshots::Refresh } else { Snapshots::Defer };
        self.engine.flush_with(ov, false, snapshots, &mut self.outputs)?;
        if refresh {
            self.snapshots_refreshed = Instant::now();
        }
        self.offered_since_commit = 0;
        stats.phases.rules = lap(&mut clock);
        // Retention through the changelog: dead entries are deleted here, in the commit, so
        // the deletes reach the changelog (the local compaction filter only drops dedup
        // entries, whose seen packs expire below).
        let swept = self.sweeper.step(ov, self.store.as_ref(), &self.retention, SWEEP_BUDGET)?;
        stats.swept = swept.deleted as u64;
        let expired_packs = self.expire_seen_packs(ov)?;
        stats.packs_expired = expired_packs.len() as u64;
        stats.phases.retention = lap(&mut clock);
        let seq = self.seq + 1;
        let layout = self.setup.layout.clone();
        let positions =
            self.positions.iter().map(|(&(t, p), &at)| (layout.inputs[t].name.clone(), p, at)).collect();
        ov.put(&Key::Meta(MetaKey::KafkaProgress), &StoredProgress { seq, positions });
        let records: Vec<KafkaRecord> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                *stats.outputs.entry(o.kind().name()).or_default() += 1;
                let mut r = to_record(o, &layout.outputs);
                r.headers.push((ID_HEADER.to_owned(), record_id(self.id, seq, i)));
                r
            })
            .collect();
        stats.phases.rules += lap(&mut clock);
        let txn = self.producer.transactional();
        if self.keeps_outbox() {
            if !records.is_empty() {
                let starts = self.output_ends.read(&self.meta_consumer, &records)?;
                stats.phases.outbox = lap(&mut clock);
                let outbox = Outbox { shard: self.id, seq, starts, records: records.clone() };
                outbox::save(ov, &outbox)?;
                self.outbox_pending = true;
            } else if self.outbox_pending {
                outbox::clear(ov)?;
                self.outbox_pending = false;
            }
        } else if self.outbox_pending {
            // Left by a run that kept an outbox: its records were re-sent on open.
            outbox::clear(ov)?;
            self.outbox_pending = false;
        }
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch)?;
        let packs = seen_packs(
            seq,
            batch.ops().iter().filter(|(k, _)| is_packed(k)).map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
        for p in &packs {
            let index = Key::Meta(MetaKey::SeenPack { max_time: p.max_time, seq, chunk: p.chunk });
            batch.put(index.encode(), codec::encode(&p.entries));
        }
        stats.phases.rules += lap(&mut clock);

        if txn {
            self.producer.begin()?;
        }
        let queued = self.send_changelog(&batch, &packs, &expired_packs, seq, &mut stats).and_then(|()| {
            if txn && !self.keeps_outbox() {
                self.producer.send_all(&records)?;
            }
            Ok(())
        });
        if let Err(e) = queued {
            return Err(self.abort_after(e));
        }
        stats.phases.changelog = lap(&mut clock);
        Ok(Prepared { seq, batch, records, stats })
    }

    /// Commit steps 3–5: waits for the changelog (with transactions: commits the
    /// transaction), writes the local store, and without transactions queues the outputs —
    /// acknowledged by the next [`Shard::prepare`] or [`Shard::settle`].
    fn finish(&mut self, prepared: Prepared) -> Result<CommitStats, KafkaError> {
        let Prepared { seq, mut batch, records, mut stats } = prepared;
        self.crash_point(CrashPoint::Queued, seq, records.len());
        let mut clock = Instant::now();
        let txn = self.producer.transactional();
        let acked = if txn && self.keeps_outbox() {
            // The marker first, then the outputs: a broker without isolation must never show
            // an output of a commit whose marker it does not have (see the module docs).
            self.producer.flush().and_then(|()| {
                self.crash_point(CrashPoint::Marker, seq, records.len());
                self.producer.send_all(&records)?;
                self.producer.commit()
            })
        } else if txn {
            self.producer.commit()
        } else {
            self.producer.flush().map(|()| self.crash_point(CrashPoint::Marker, seq, records.len()))
        };
        if let Err(e) = acked {
            return Err(self.abort_after(e));
        }
        stats.phases.changelog += lap(&mut clock);
        let next = self.producer.marker_offset() + 1;
        batch.put(Key::Meta(MetaKey::ChangelogOffset).encode(), codec::encode(&next));
        self.store.write(batch)?;
        self.crash_point(CrashPoint::Stored, seq, records.len());
        stats.phases.local = lap(&mut clock);
        if !txn && !records.is_empty() {
            self.producer.send_all(&records)?;
            self.outputs_in_flight = true;
            // The test hook's last point: only then does the commit wait for the outputs here.
            if self.setup.crash.as_ref().is_some_and(|h| h.point() == CrashPoint::Sent) {
                self.producer.flush()?;
                self.crash_point(CrashPoint::Sent, seq, records.len());
            }
        }
        stats.phases.outputs += lap(&mut clock);
        if let Some(m) = &self.setup.metrics {
            for o in &self.outputs {
                m.record_out(o);
            }
            m.retention_deleted(stats.swept, stats.packs_expired);
        }
        self.seq = seq;
        self.outputs.clear();
        self.retention.set_watermark(self.engine.watermark());
        Ok(stats)
    }

    /// The test hook ([`super::crash`]): commit `seq`, with `outputs` outputs, is at `point`.
    fn crash_point(&self, point: CrashPoint, seq: u64, outputs: usize) {
        if let Some(hook) = &self.setup.crash {
            hook.reached(point, self.id, seq, outputs);
        }
    }

    /// Whether commits keep their outputs in the outbox: always without transactions, and with
    /// them when `kafka.transactional_outbox` asks for it.
    fn keeps_outbox(&self) -> bool {
        !self.producer.transactional() || self.setup.transactional_outbox
    }

    /// Waits until the outputs of the last commit are acknowledged (before their outbox is
    /// deleted, before the shard is released, before the process ends), and returns when an
    /// output of this shard was last acknowledged.
    pub fn settle(&mut self) -> Result<Option<Instant>, KafkaError> {
        if self.outputs_in_flight {
            self.producer.flush()?;
            self.outputs_in_flight = false;
        }
        Ok(self.producer.last_output_ack())
    }

    /// With transactions, aborts the open one after `e` (its records never become visible).
    fn abort_after(&self, e: KafkaError) -> KafkaError {
        if self.producer.transactional() {
            if let Some(m) = &self.setup.metrics {
                m.transaction_aborted();
            }
            if let Err(abort) = self.producer.abort() {
                tracing::error!(shard = self.id, error = %abort, "aborting the failed transaction failed too");
            }
        }
        e
    }

    /// Queues the commit's changelog records: corrections of a torn tail, the state changes
    /// (dedup entries as seen packs), tombstones of expired packs, and the marker.
    fn send_changelog(
        &mut self,
        batch: &WriteBatch,
        packs: &[SeenPack],
        expired_packs: &[Vec<u8>],
        seq: u64,
        stats: &mut CommitStats,
    ) -> Result<(), KafkaError> {
        let topic = self.setup.layout.changelog.clone();
        for key in std::mem::take(&mut self.torn) {
            let value = self.store.get(&key)?;
            self.producer.send_state(&topic, &key, value.as_deref())?;
            stats.changelog_records += 1;
        }
        for (k, v) in batch.ops() {
            // Derived keys (timers, the day→shop index) are rebuilt by the restore.
            if !is_packed(k) && !is_local(k) && !is_derived(k) {
                self.producer.send_state(&topic, k, v.as_deref())?;
                stats.changelog_records += 1;
            }
        }
        for p in packs {
            self.producer.send_state(&topic, &p.key, Some(&p.payload))?;
            stats.changelog_records += 1;
        }
        for key in expired_packs {
            self.producer.send_state(&topic, key, None)?;
            stats.changelog_records += 1;
        }
        self.producer.send_marker(&topic, MARKER_KEY, &marker_payload(seq))?;
        Ok(())
    }

    /// Deletes the index entries of the seen packs past the retention cutoff (in `ov`) and
    /// returns the packs' changelog keys, to be tombstoned. The index sorts by a pack's
    /// latest event time, so the dead packs are a prefix of it.
    fn expire_seen_packs(&self, ov: &mut Overlay<'_>) -> Result<Vec<Vec<u8>>, KafkaError> {
        let Some(cutoff) = self.retention.cutoff() else { return Ok(Vec::new()) };
        let prefix = seen_pack_index_prefix();
        let mut expired = Vec::new();
        for (key, _) in self.store.scan(&prefix, &prefix, PACK_EXPIRY_BUDGET)? {
            let Some((max_time, seq, chunk)) = seen_pack_of_index_key(&key) else { continue };
            if max_time >= cutoff {
                break;
            }
            ov.put_raw(key, None);
            expired.push(seen_pack_key(seq, chunk));
        }
        Ok(expired)
    }
}
