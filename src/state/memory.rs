//! In-memory [`KvStore`] for unit tests: a `BTreeMap` behind a mutex.

use super::{Expiry, KvStore, StateError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// An in-memory store; not durable.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.lock().expect("poisoned").len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops every expired entry (what RocksDB's compaction filter does).
    pub fn sweep(&self, expiry: &dyn Expiry) -> usize {
        let mut map = self.map.lock().expect("poisoned");
        let before = map.len();
        map.retain(|k, v| !expiry.expired(k, v));
        before - map.len()
    }
}

impl KvStore for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.lock().expect("poisoned").get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let map = self.map.lock().expect("poisoned");
        let from = if start > prefix { start } else { prefix };
        Ok(map
            .range(from.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        let mut map = self.map.lock().expect("poisoned");
        for (k, v) in batch.ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }
}
