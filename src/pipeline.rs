//! The file-mode loop: source → decode → rules → sink, committing in batches.
//!
//! Each commit writes ONE state batch holding the rule state changed since the last
//! commit, the watermark and counters, every input file's read position and the sink's
//! checkpoint (the output files' committed lengths). Outputs are written and synced
//! before that batch. A crash therefore leaves either the old batch — and the restart
//! truncates the outputs back to it and re-reads the same input lines, recreating the
//! same records — or the new one, with outputs already complete. No record is lost,
//! repeated or torn.

use crate::domain::decode::{decode_json, DecodeOptions};
use crate::domain::Timestamp;
use crate::live::{Freshness, StateView};
use crate::output::{DeadLetter, Output, SourcePos};
use crate::rules::retention::Retention;
use crate::rules::{ApplyOutcome, Counters, Engine, RulesConfig};
use crate::shutdown::Shutdown;
use crate::sinks::file::FileSink;
use crate::sinks::{Sink, SinkError};
use crate::sources::file::{FilePosition, FileSource, SourceError};
use crate::state::keys::{Key, MetaKey};
use crate::state::overlay::Overlay;
use crate::state::rocks::{MemoryBudget, MemoryLimits, RocksStore};
use crate::state::{KvStore, StateError, WriteBatch};
use crate::telemetry::memory::MemoryUse;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::progress::{Position, Progress};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Errors that stop a run (bad input never does: it becomes a dead letter).
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What a file-mode run needs.
#[derive(Clone, Debug)]
pub struct FileRun {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub data_dir: PathBuf,
    pub rules: RulesConfig,
    pub decode: DecodeOptions,
    /// Commit after this many input records…
    pub commit_every_records: u64,
    /// …or after this much time, whichever comes first.
    pub commit_interval: Duration,
    /// Report progress ([`Progress`]: a bar on a terminal, else log lines) this often
    /// (None: never).
    pub progress_every: Option<Duration>,
    /// Stop (committing, without ending the input) after this many records — a graceful
    /// stop; the next run continues from there.
    pub stop_after: Option<u64>,
    /// The same graceful stop when this is requested (SIGTERM/SIGINT): the record in flight
    /// is finished and the batch committed.
    pub stop: Option<Shutdown>,
    /// Metrics to update (None: none kept).
    pub metrics: Option<Arc<Metrics>>,
    /// The live view to feed (the store once open, readiness, freshness after each commit).
    pub live: Option<Arc<StateView>>,
    /// The state store's block cache and memtable cap (`[state]`).
    pub memory: MemoryLimits,
}

impl FileRun {
    /// A run with default rules and decoding that commits only by record count (every
    /// 1 000 000 records, no time-based commits — so batch boundaries, and with them the
    /// intermediate snapshots, do not depend on machine speed), without progress logs,
    /// metrics, live view or stop flag.
    pub fn new(inputs: Vec<PathBuf>, output: PathBuf, data_dir: PathBuf) -> FileRun {
        FileRun {
            inputs,
            output,
            data_dir,
            rules: RulesConfig::default(),
            decode: DecodeOptions::default(),
            commit_every_records: 1_000_000,
            commit_interval: Duration::MAX,
            progress_every: None,
            stop_after: None,
            stop: None,
            metrics: None,
            live: None,
            memory: MemoryLimits::default(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Input records read in this run (blank lines excluded).
    pub records: u64,
    /// Commits written in this run.
    pub commits: u64,
    /// Totals over the life of the data directory.
    pub totals: Counters,
    pub watermark: Option<Timestamp>,
    /// The run stopped on request ([`FileRun::stop`]) before the end of its input.
    pub stopped: bool,
}

/// Runs file mode on a RocksDB store in `run.data_dir`, whose compactions drop what the
/// retention policy declares dead.
pub fn run_files(run: &FileRun) -> Result<RunSummary, PipelineError> {
    let retention = Arc::new(Retention::new(&run.rules));
    let budget = run.memory.budget();
    let store = Arc::new(RocksStore::open_with(&run.data_dir, Some(retention.clone()), Some(&budget))?);
    if let Some(live) = &run.live {
        live.attach(store.clone());
    }
    run_files_with(store.as_ref(), run, Some(&retention), Some(&budget))
}

/// One input file of a run.
struct Input {
    path: PathBuf,
    shown: String,
    canon: String,
    start: FilePosition,
    len: u64,
}

/// Runs file mode on any store; `retention` (if any) is told each committed watermark.
pub fn run_files_on(
    store: &dyn KvStore,
    run: &FileRun,
    retention: Option<&Retention>,
) -> Result<RunSummary, PipelineError> {
    run_files_with(store, run, retention, None)
}

/// [`run_files_on`], with the RocksDB memory budget whose use the metrics report.
fn run_files_with(
    store: &dyn KvStore,
    run: &FileRun,
    retention: Option<&Retention>,
    budget: Option<&MemoryBudget>,
) -> Result<RunSummary, PipelineError> {
    let mut sink = FileSink::open(&run.output)?;
    let cp_key = Key::Meta(MetaKey::SinkCheckpoint).encode();
    let committed = store.get(&cp_key)?;
    sink.recover(committed.as_deref())?;
    if committed.is_none() {
        // Claim the (empty) outputs for this data directory before writing anything.
        let mut batch = WriteBatch::new();
        batch.put(cp_key.clone(), sink.flush()?);
        store.write(batch)?;
    }

    let mut ov = Overlay::new(store);
    let mut engine = Engine::load(&mut ov, run.rules.clone())?;
    let mut inputs = Vec::with_capacity(run.inputs.len());
    for path in &run.inputs {
        let io = |source| SourceError::Io { path: path.display().to_string(), source };
        let canon = std::fs::canonicalize(path).map_err(io)?.display().to_string();
        let len = std::fs::metadata(path).map_err(io)?.len();
        let start: FilePosition = ov.get(&Key::Meta(MetaKey::FilePosition(&canon)))?.unwrap_or_default();
        inputs.push(Input { path: path.clone(), shown: path.display().to_string(), canon, start, len });
    }
    // Where every input stands (committed offsets; updated at each commit).
    let mut positions: Vec<Position> = inputs
        .iter()
        .map(|i| Position { source: i.shown.clone(), offset: i.start.offset, end: Some(i.len) })
        .collect();
    let ops = Ops { store, retention, budget, metrics: run.metrics.as_deref(), live: run.live.as_deref() };
    ops.committed(&engine, &positions);
    if let Some(live) = &run.live {
        live.set_ready(true);
    }
    if let Some(m) = &run.metrics {
        m.set_ready(true);
    }
    let total: u64 = inputs.iter().map(|i| i.len.saturating_sub(i.start.offset)).sum();
    let mut progress = run.progress_every.map(|every| Progress::new(Some(total), every));
    let mut done_before = 0u64; // bytes consumed in this run from inputs already finished

    let mut outputs = Vec::new();
    let mut summary =
        RunSummary { records: 0, commits: 0, totals: Counters::default(), watermark: None, stopped: false };
    let mut last_commit = Instant::now();
    let mut since_commit = 0u64;
    let mut buf = Vec::with_capacity(4096);
    let mut stopped_early = false;
    let stop_requested = || run.stop.as_ref().is_some_and(Shutdown::is_requested);

    'files: for (idx, input) in inputs.iter().enumerate() {
        if stop_requested() {
            summary.stopped = true;
            stopped_early = true;
            break;
        }
        let pos_key = Key::Meta(MetaKey::FilePosition(&input.canon));
        let mut src = FileSource::open(&input.path, input.start)?;
        while let Some(line) = src.next_record(&mut buf)? {
            summary.records += 1;
            since_commit += 1;
            let source = SourcePos::File { file: input.shown.clone(), line };
            match decode_json(&buf, None, &run.decode) {
                Ok(ev) => {
                    let outcome = engine.apply(&mut ov, &ev, 0, &source)?;
                    if let Some(m) = &run.metrics {
                        m.event_in(ev.event_type().stream().as_str());
                        match outcome {
                            ApplyOutcome::Duplicate => m.duplicate(),
                            ApplyOutcome::Applied { late: true } => m.late_event(),
                            ApplyOutcome::Applied { late: false } => {}
                        }
                    }
                }
                Err(e) => {
                    if let Some(m) = &run.metrics {
                        m.event_in("unknown");
                    }
                    engine.note_dead_letter();
                    outputs.push(Output::DeadLetter(DeadLetter::from_decode(&e, source, buf.clone(), None)));
                }
            }
            if since_commit >= run.commit_every_records || last_commit.elapsed() >= run.commit_interval {
                ov.put(&pos_key, &src.position());
                ops.commit(&mut ov, &mut engine, &mut sink, &mut outputs, false)?;
                positions[idx].offset = src.position().offset;
                ops.committed(&engine, &positions);
                summary.commits += 1;
                since_commit = 0;
                last_commit = Instant::now();
            }
            let stop = stop_requested();
            if stop || run.stop_after.is_some_and(|n| summary.records >= n) {
                ov.put(&pos_key, &src.position());
                positions[idx].offset = src.position().offset;
                summary.stopped = stop;
                stopped_early = true;
                break 'files;
            }
            if let Some(p) = progress.as_mut().filter(|p| p.due()) {
                let offset = src.position().offset;
                let mut now = positions.clone();
                now[idx].offset = offset;
                p.update(done_before + offset.saturating_sub(input.start.offset), summary.records, &now);
            }
        }
        ov.put(&pos_key, &src.position());
        positions[idx].offset = src.position().offset;
        done_before += src.position().offset.saturating_sub(input.start.offset);
    }
    if summary.stopped {
        tracing::info!(records = summary.records, "stop requested: committing the batch in flight");
        if let Some(live) = &run.live {
            live.set_ready(false);
        }
        if let Some(m) = &run.metrics {
            m.set_ready(false);
        }
    }
    ops.commit(&mut ov, &mut engine, &mut sink, &mut outputs, !stopped_early)?;
    ops.committed(&engine, &positions);
    if let Some(p) = progress.as_mut() {
        let done = positions.iter().zip(&inputs).map(|(p, i)| p.offset.saturating_sub(i.start.offset)).sum();
        p.update(done, summary.records, &positions);
        p.finish();
    }
    summary.commits += 1;
    summary.totals = engine.counters().clone();
    summary.watermark = engine.watermark();
    Ok(summary)
}

/// Compacts the state in `run.data_dir` now, dropping everything past the retention
/// horizon of its committed watermark; returns the state's size on disk afterwards.
pub fn compact_state(run: &FileRun) -> Result<u64, PipelineError> {
    let retention = Arc::new(Retention::new(&run.rules));
    let store = RocksStore::open_with(&run.data_dir, Some(retention.clone()), Some(&run.memory.budget()))?;
    let mut ov = Overlay::new(&store);
    retention.set_watermark(Engine::load(&mut ov, run.rules.clone())?.watermark());
    drop(ov);
    store.compact()?;
    Ok(store.size_bytes())
}

/// What a commit touches besides the rules: the store, and whoever is told about it.
struct Ops<'a> {
    store: &'a dyn KvStore,
    retention: Option<&'a Retention>,
    budget: Option<&'a MemoryBudget>,
    metrics: Option<&'a Metrics>,
    live: Option<&'a StateView>,
}

impl Ops<'_> {
    /// Flushes the rules, writes and syncs their outputs, then commits state, positions
    /// and the sink checkpoint in one batch.
    fn commit(
        &self,
        ov: &mut Overlay<'_>,
        engine: &mut Engine,
        sink: &mut FileSink,
        outputs: &mut Vec<Output>,
        end_of_input: bool,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        engine.flush(ov, end_of_input, outputs)?;
        for o in outputs.iter() {
            sink.write(o)?;
        }
        let checkpoint = sink.flush()?;
        ov.put_raw(Key::Meta(MetaKey::SinkCheckpoint).encode(), Some(checkpoint));
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch)?;
        self.store.write(batch)?;
        if let Some(m) = self.metrics {
            for o in outputs.iter() {
                m.record_out(o);
            }
            m.commit_took(started.elapsed());
        }
        outputs.clear();
        Ok(())
    }

    /// Tells retention, metrics and the live view what is now committed.
    fn committed(&self, engine: &Engine, positions: &[Position]) {
        if let Some(r) = self.retention {
            r.set_watermark(engine.watermark());
        }
        if let Some(m) = self.metrics {
            m.set_watermark(engine.watermark());
            m.set_state_size(self.store.size_bytes());
            let (cache, memtables) = self.budget.map_or((0, 0), MemoryBudget::usage);
            m.set_memory(&MemoryUse::sample(cache, memtables, None));
        }
        if let Some(live) = self.live {
            live.committed(Freshness { watermark: engine.watermark(), positions: positions.to_vec() });
        }
    }
}
