//! The benchmark behind `shopscore bench`: generate N events, run file mode on RocksDB
//! state end to end, and report events/s and peak memory. It is a measurement, not a
//! test: nothing asserts a speed. [`kafka`] measures the same through a Kafka broker.

pub mod cpu;
pub mod kafka;

use crate::gen::{generate_file, GenOptions};
use crate::pipeline::{run_files, FileRun, PipelineError, RunSummary};
use crate::sources::file::SourceError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one benchmark run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub input_lines: u64,
    pub input_bytes: u64,
    pub gen_seconds: f64,
    pub run_seconds: f64,
    pub summary: RunSummary,
    /// Peak resident set size of the process (VmHWM), in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// RocksDB directory size after the run, in bytes.
    pub state_bytes: u64,
    /// Live state after a full compaction with retention applied, in bytes.
    pub compacted_state_bytes: u64,
}

impl BenchReport {
    /// Input lines per second through the pipeline.
    pub fn lines_per_second(&self) -> f64 {
        self.input_lines as f64 / self.run_seconds
    }
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    crate::telemetry::memory::status_bytes("VmHWM")
}

/// Resets the peak resident set size to the current one (Linux: `/proc/self/clear_refs`), so
/// that a later [`peak_rss_bytes`] tells the peak of what ran since. Without it, the peak
/// stays the process's.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Generates `gen` events under `work`, runs file mode over them with `run` settings
/// (inputs/output/data_dir are replaced), and measures.
pub fn run_bench(gen: &GenOptions, work: &Path, mut run: FileRun) -> Result<BenchReport, PipelineError> {
    let input: PathBuf = work.join("events.jsonl");
    let t0 = Instant::now();
    let g = generate_file(gen, &input)
        .map_err(|source| SourceError::Io { path: input.display().to_string(), source })?;
    let gen_seconds = t0.elapsed().as_secs_f64();
    let input_bytes = std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0);

    run.inputs = vec![input];
    run.output = work.join("out");
    run.data_dir = work.join("state");
    run.progress_every = Some(Duration::from_secs(5));
    let t1 = Instant::now();
    let summary = run_files(&run)?;
    let run_seconds = t1.elapsed().as_secs_f64();
    let state_bytes = dir_size(&work.join("state"));
    let compacted_state_bytes = crate::pipeline::compact_state(&run)?;
    Ok(BenchReport {
        input_lines: g.lines,
        input_bytes,
        gen_seconds,
        run_seconds,
        summary,
        peak_rss_bytes: peak_rss_bytes(),
        state_bytes,
        compacted_state_bytes,
    })
}
