//! Durable state behind a small key-value trait.
//!
//! The pipeline keeps everything that must survive a crash — rule state, input positions,
//! sink checkpoints, the watermark — in one [`KvStore`], and changes it only through
//! atomic [`WriteBatch`]es, so "input consumed", "state changed" and "outputs committed"
//! move together. [`rocks::RocksStore`] is the production implementation; [`memory::MemStore`]
//! serves unit tests. This module carries no RocksDB types, like tikv's `engine_traits`.

pub mod codec;
pub mod keys;
pub mod memory;
pub mod overlay;
pub mod rocks;

use thiserror::Error;

/// Errors of the state layer.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("state store I/O failed: {0}")]
    Backend(String),
    #[error("state value under key {key} is corrupt: {why}")]
    Corrupt { key: String, why: String },
    #[error(
        "state in {path} was written by state format {found}, this build reads format {expected}; \
         replay into a fresh --data-dir"
    )]
    Version { path: String, found: u32, expected: u32 },
}

/// One atomic set of puts and deletes.
#[derive(Default, Debug, Clone)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations in insertion order (later ones win).
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }
}

/// Decides whether a stored entry is dead: no rule can use it any more. The RocksDB store
/// drops such entries during compaction (a compaction filter), so expiry costs no extra
/// reads or index; entries are only ever dropped, never changed.
pub trait Expiry: Send + Sync {
    fn expired(&self, key: &[u8], value: &[u8]) -> bool;
}

/// Key-value rows returned by a prefix scan, in key order.
pub type KvRows = Vec<(Vec<u8>, Vec<u8>)>;

/// A key-value store with atomic batches and ordered prefix scans.
pub trait KvStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// All entries whose key starts with `prefix` and is `>= start` (a key with that
    /// prefix), in key order, at most `limit`.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<KvRows, StateError>;
    /// Applies the batch atomically, and durably (survives a process kill) unless the store
    /// was made a cache of a log ([`rocks::RocksStore::set_durable`]).
    fn write(&self, batch: WriteBatch) -> Result<(), StateError>;
    /// Approximate on-disk size in bytes (0 when unknown).
    fn size_bytes(&self) -> u64 {
        0
    }
    /// Compacts everything now (applying expiry); stores may do it in the background anyway.
    fn compact(&self) -> Result<(), StateError> {
        Ok(())
    }
    /// Number of live entries (approximate for RocksDB).
    fn approximate_keys(&self) -> u64 {
        0
    }
}
