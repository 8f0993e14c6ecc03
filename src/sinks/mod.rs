//! Where output records go, behind the [`Sink`] trait (like arroyo's `Collector`).
//!
//! A sink takes records, makes them durable on [`Sink::flush`] and returns a checkpoint
//! that the pipeline stores in the same state batch as the input position. On restart the
//! pipeline hands the last committed checkpoint to [`Sink::recover`], which discards
//! anything written after it; re-processing from the committed input position then
//! re-creates exactly those records (the rules are deterministic). So every record is in
//! the output exactly once, whatever the moment of a crash.

pub mod file;

use crate::output::Output;
use thiserror::Error;

/// Errors of the output side.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot write output {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Inconsistent(String),
}

/// An output destination with commit checkpoints.
pub trait Sink {
    /// Queues one record.
    fn write(&mut self, record: &Output) -> Result<(), SinkError>;
    /// Makes every queued record durable; returns the checkpoint that covers them.
    fn flush(&mut self) -> Result<Vec<u8>, SinkError>;
    /// Returns the sink to `checkpoint` (`None`: nothing was ever committed).
    fn recover(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SinkError>;
}
