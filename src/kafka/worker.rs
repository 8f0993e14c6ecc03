//! A shard on a thread of its own. The runtime's thread reads and decodes input records and
//! hands them out in batches; each owned shard applies them, and commits when told, in
//! parallel with the other shards (a commit's CPU work — the rules' flush, the local write —
//! and its wait for the broker overlap across shards). Shards are opened (fenced, restored)
//! in parallel too.
//!
//! A worker only moves commands to its [`Shard`] and reports back; what a shard does with a
//! record and how it commits is all in [`super::shard`].

use super::reader::InputPartition;
use super::shard::{CommitStats, Offered, Shard, ShardSetup, Taken};
use super::KafkaError;
use crate::domain::decode::DecodeError;
use crate::domain::{Event, Timestamp};
use crate::rules::Counters;
use crate::state::overlay::Overlay;
use crate::state::rocks::RocksStore;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Batches a worker may have queued before the reading thread waits for it.
const QUEUE_BATCHES: usize = 32;

/// An input record, read and decoded once, shared by every owned shard.
pub struct Record {
    pub input: InputPartition,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub raw: Vec<u8>,
    pub decoded: Result<Event, DecodeError>,
    /// The shard that owns it (the shop's, or for a dead letter its partition's).
    pub owner: u32,
}

impl Record {
    fn offered(&self) -> Offered<'_> {
        Offered {
            input: self.input,
            offset: self.offset,
            key: self.key.as_deref(),
            raw: &self.raw,
            decoded: &self.decoded,
            owner: self.owner,
        }
    }
}

/// What the runtime tells a worker.
pub enum Command {
    /// Offer these records, in order.
    Records(Arc<Vec<Record>>),
    /// Mark these partitions idle, then commit everything offered so far.
    Commit { idle: Arc<Vec<InputPartition>> },
    /// Wait for the last commit's outputs and stop.
    Stop,
}

/// What the runtime needs to know of a shard between commits.
#[derive(Clone)]
pub struct ShardView {
    pub store: Arc<RocksStore>,
    pub watermark: Option<Timestamp>,
    pub positions: BTreeMap<InputPartition, i64>,
    /// The next commit has something to write even without new input.
    pub needs_commit: bool,
}

impl ShardView {
    fn of(shard: &Shard) -> ShardView {
        ShardView {
            store: shard.store(),
            watermark: shard.engine().watermark(),
            positions: shard.positions().clone(),
            needs_commit: shard.needs_commit(),
        }
    }
}

/// What a worker tells the runtime.
pub enum Report {
    Opened {
        id: u32,
        view: ShardView,
        took_ms: u64,
    },
    Committed {
        id: u32,
        stats: CommitStats,
        view: ShardView,
        finished: Instant,
    },
    Stopped {
        id: u32,
        counters: Counters,
        /// When the last output was acknowledged.
        outputs_acked: Option<Instant>,
    },
    Failed {
        id: u32,
        error: KafkaError,
    },
}

/// A running worker.
pub struct Worker {
    tx: SyncSender<Command>,
    handle: JoinHandle<()>,
}

impl Worker {
    /// Starts a thread that opens shard `id` and then serves commands; everything it does is
    /// reported on `reports` (a failure, a panic included, as [`Report::Failed`]).
    pub fn spawn(setup: Arc<ShardSetup>, id: u32, reports: Sender<Report>) -> Result<Worker, KafkaError> {
        let (tx, rx) = sync_channel::<Command>(QUEUE_BATCHES);
        let handle = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                let served = std::panic::catch_unwind(AssertUnwindSafe(|| serve(setup, id, rx, &reports)));
                let report = match served {
                    Ok(Ok(r)) => r,
                    Ok(Err(error)) => Report::Failed { id, error: error.in_shard(id) },
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Report::Failed {
                            id,
                            error: KafkaError::Shard { shard: id, why: format!("panicked: {why}") },
                        }
                    }
                };
                let _ = reports.send(report);
            })
            .map_err(|e| KafkaError::Shard { shard: id, why: format!("cannot start its thread: {e}") })?;
        Ok(Worker { tx, handle })
    }

    /// Queues a command; false if the worker has stopped (its report says why).
    pub fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// Waits for the thread to end (after its final report).
    pub fn join(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

fn serve(
    setup: Arc<ShardSetup>,
    id: u32,
    rx: std::sync::mpsc::Receiver<Command>,
    reports: &Sender<Report>,
) -> Result<Report, KafkaError> {
    let began = Instant::now();
    let mut shard = Shard::open(setup.clone(), id)?;
    let took_ms = began.elapsed().as_millis() as u64;
    let _ = reports.send(Report::Opened { id, view: ShardView::of(&shard), took_ms });
    let store = shard.store();
    // One overlay for the shard's life: a commit drains it (nothing stays cached across
    // commits), and its hash map keeps the capacity the last commit needed.
    let mut ov = Overlay::new(store.as_ref());
    loop {
        loop {
            match rx.recv() {
                Ok(Command::Records(batch)) => {
                    for r in batch.iter() {
                        let taken = shard.offer(&mut ov, &r.offered())?;
                        if let Some(m) = &setup.metrics {
                            match taken {
                                Taken::Applied { late: true } => m.late_event(),
                                Taken::Duplicate => m.duplicate(),
                                _ => {}
                            }
                        }
                    }
                }
                Ok(Command::Commit { idle }) => {
                    shard.set_idle(&idle);
                    let stats = shard.commit(&mut ov)?;
                    let view = ShardView::of(&shard);
                    let _ = reports.send(Report::Committed { id, stats, view, finished: Instant::now() });
                    break;
                }
                // Stop comes right after a commit (or before any record): nothing offered is
                // left uncommitted. A closed channel means the runtime is gone.
                Ok(Command::Stop) | Err(_) => {
                    drop(ov);
                    let outputs_acked = shard.settle()?;
                    return Ok(Report::Stopped {
                        id,
                        counters: shard.engine().counters().clone(),
                        outputs_acked,
                    });
                }
            }
        }
    }
}
