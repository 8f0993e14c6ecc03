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
use crate::output::{DeadLetter, Output, SourcePos};
use crate::rules::retention::Retention;
use crate::rules::{Counters, Engine, RulesConfig};
use crate::sinks::file::FileSink;
use crate::sinks::{Sink, SinkError};
use crate::sources::file::{FilePosition, FileSource, SourceError};
use crate::state::keys::{Key, MetaKey};
use crate::state::overlay::Overlay;
use crate::state::rocks::RocksStore;
use crate::state::{KvStore, StateError, WriteBatch};
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
    /// Log progress this often (None: never).
    pub progress_every: Option<Duration>,
    /// Stop (committing, without ending the input) after this many records — a graceful
    /// stop; the next run continues from there.
    pub stop_after: Option<u64>,
}

impl FileRun {
    /// A run with default rules and decoding that commits only by record count (every
    /// 1 000 000 records, no time-based commits — so batch boundaries, and with them the
    /// intermediate snapshots, do not depend on machine speed), without progress logs.
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
}

/// Runs file mode on a RocksDB store in `run.data_dir`, whose compactions drop what the
/// retention policy declares dead.
pub fn run_files(run: &FileRun) -> Result<RunSummary, PipelineError> {
    let retention = Arc::new(Retention::new(&run.rules));
    let store = RocksStore::open_with_expiry(&run.data_dir, Some(retention.clone()))?;
    run_files_on(&store, run, Some(&retention))
}

/// Runs file mode on any store; `retention` (if any) is told each committed watermark.
pub fn run_files_on(
    store: &dyn KvStore,
    run: &FileRun,
    retention: Option<&Retention>,
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
    let committed = |engine: &Engine| {
        if let Some(r) = retention {
            r.set_watermark(engine.watermark());
        }
    };
    committed(&engine);
    let mut outputs = Vec::new();
    let mut summary = RunSummary { records: 0, commits: 0, totals: Counters::default(), watermark: None };
    let started = Instant::now();
    let mut last_commit = Instant::now();
    let mut last_progress = Instant::now();
    let mut since_commit = 0u64;
    let mut buf = Vec::with_capacity(4096);
    let mut stopped_early = false;

    'files: for path in &run.inputs {
        let canon = std::fs::canonicalize(path)
            .map_err(|source| SourceError::Io { path: path.display().to_string(), source })?
            .display()
            .to_string();
        let pos_key = Key::Meta(MetaKey::FilePosition(&canon));
        let start: FilePosition = ov.get(&pos_key)?.unwrap_or_default();
        let mut src = FileSource::open(path, start)?;
        let shown = path.display().to_string();
        while let Some(line) = src.next_record(&mut buf)? {
            summary.records += 1;
            since_commit += 1;
            let source = SourcePos::File { file: shown.clone(), line };
            match decode_json(&buf, None, &run.decode) {
                Ok(ev) => {
                    engine.apply(&mut ov, &ev, 0, &source)?;
                }
                Err(e) => {
                    engine.note_dead_letter();
                    outputs.push(Output::DeadLetter(DeadLetter {
                        reason: e.to_string(),
                        reason_code: e.code(),
                        source,
                        raw: buf.clone(),
                        key: None,
                    }));
                }
            }
            if since_commit >= run.commit_every_records || last_commit.elapsed() >= run.commit_interval {
                ov.put(&pos_key, &src.position());
                commit(store, &mut ov, &mut engine, &mut sink, &mut outputs, false)?;
                committed(&engine);
                summary.commits += 1;
                since_commit = 0;
                last_commit = Instant::now();
            }
            if run.stop_after.is_some_and(|n| summary.records >= n) {
                ov.put(&pos_key, &src.position());
                stopped_early = true;
                break 'files;
            }
            if let Some(every) = run.progress_every {
                if last_progress.elapsed() >= every {
                    last_progress = Instant::now();
                    let rate = summary.records as f64 / started.elapsed().as_secs_f64();
                    tracing::info!(
                        file = %shown, line, records = summary.records, records_per_s = rate as u64,
                        watermark = ?engine.watermark().map(|w| w.to_rfc3339()),
                        "progress"
                    );
                }
            }
        }
        ov.put(&pos_key, &src.position());
    }
    commit(store, &mut ov, &mut engine, &mut sink, &mut outputs, !stopped_early)?;
    committed(&engine);
    summary.commits += 1;
    summary.totals = engine.counters().clone();
    summary.watermark = engine.watermark();
    Ok(summary)
}

/// Compacts the state in `run.data_dir` now, dropping everything past the retention
/// horizon of its committed watermark; returns the state's size on disk afterwards.
pub fn compact_state(run: &FileRun) -> Result<u64, PipelineError> {
    let retention = Arc::new(Retention::new(&run.rules));
    let store = RocksStore::open_with_expiry(&run.data_dir, Some(retention.clone()))?;
    let mut ov = Overlay::new(&store);
    retention.set_watermark(Engine::load(&mut ov, run.rules.clone())?.watermark());
    drop(ov);
    store.compact()?;
    Ok(store.size_bytes())
}

/// Flushes the rules, writes and syncs their outputs, then commits state, positions and
/// the sink checkpoint in one batch.
fn commit(
    store: &dyn KvStore,
    ov: &mut Overlay<'_>,
    engine: &mut Engine,
    sink: &mut FileSink,
    outputs: &mut Vec<Output>,
    end_of_input: bool,
) -> Result<(), PipelineError> {
    engine.flush(ov, end_of_input, outputs)?;
    for o in outputs.drain(..) {
        sink.write(&o)?;
    }
    let checkpoint = sink.flush()?;
    ov.put_raw(Key::Meta(MetaKey::SinkCheckpoint).encode(), Some(checkpoint));
    let mut batch = WriteBatch::new();
    ov.drain_into(&mut batch);
    store.write(batch)?;
    Ok(())
}
