//! The per-commit working set over a [`KvStore`].
//!
//! Rules read and write state through an [`Overlay`]: reads go through a cache, writes stay
//! in memory until the pipeline commits them as one [`WriteBatch`] together with input
//! positions and the sink checkpoint. Hot keys (a shop's day bucket) are therefore read
//! from RocksDB once and written once per commit, however many events touch them.

use super::codec;
use super::keys::Key;
use super::{KvStore, StateError, WriteBatch};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

#[derive(Debug)]
struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// Cached reads and buffered writes over a store.
pub struct Overlay<'s> {
    store: &'s dyn KvStore,
    cache: BTreeMap<Vec<u8>, Entry>,
}

impl<'s> Overlay<'s> {
    pub fn new(store: &'s dyn KvStore) -> Self {
        Overlay { store, cache: BTreeMap::new() }
    }

    /// Raw read.
    pub fn get_raw(&mut self, key: &[u8]) -> Result<Option<&[u8]>, StateError> {
        if !self.cache.contains_key(key) {
            let value = self.store.get(key)?;
            self.cache.insert(key.to_vec(), Entry { value, dirty: false });
        }
        Ok(self.cache.get(key).and_then(|e| e.value.as_deref()))
    }

    /// Raw write (`None` deletes).
    pub fn put_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.cache.insert(key, Entry { value, dirty: true });
    }

    /// Typed read of a state value.
    pub fn get<T: DeserializeOwned>(&mut self, key: &Key<'_>) -> Result<Option<T>, StateError> {
        let k = key.encode();
        match self.get_raw(&k)? {
            Some(bytes) => codec::decode(&k, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a key exists.
    pub fn contains(&mut self, key: &Key<'_>) -> Result<bool, StateError> {
        Ok(self.get_raw(&key.encode())?.is_some())
    }

    /// Typed write.
    pub fn put<T: Serialize>(&mut self, key: &Key<'_>, value: &T) {
        self.put_raw(key.encode(), Some(codec::encode(value)));
    }

    /// Delete.
    pub fn delete(&mut self, key: &Key<'_>) {
        self.put_raw(key.encode(), None);
    }

    /// Entries under `prefix` with key `>= start`, merging buffered writes over the
    /// store, in key order, at most `limit`.
    pub fn scan(
        &mut self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let from = if start > prefix { start.to_vec() } else { prefix.to_vec() };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        // Store entries first; the cache then overrides (dirty writes and deletes win).
        // Reading `limit + pending` store rows keeps the result complete when buffered
        // deletes remove some of them.
        let pending = self
            .cache
            .range(from.clone()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.dirty)
            .count();
        for (k, v) in self.store.scan(prefix, &from, limit.saturating_add(pending))? {
            merged.insert(k, Some(v));
        }
        for (k, e) in self.cache.range(from..).take_while(|(k, _)| k.starts_with(prefix)) {
            if e.dirty {
                merged.insert(k.clone(), e.value.clone());
            }
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).take(limit).collect())
    }

    /// Number of buffered writes.
    pub fn dirty_len(&self) -> usize {
        self.cache.values().filter(|e| e.dirty).count()
    }

    /// Moves the buffered writes into `batch` and forgets the cache.
    pub fn drain_into(&mut self, batch: &mut WriteBatch) {
        for (k, e) in std::mem::take(&mut self.cache) {
            if e.dirty {
                match e.value {
                    Some(v) => batch.put(k, v),
                    None => batch.delete(k),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemStore;

    #[test]
    fn reads_see_buffered_writes_and_scans_merge() {
        let store = MemStore::new();
        let mut b = WriteBatch::new();
        b.put(b"pa".to_vec(), b"1".to_vec());
        b.put(b"pb".to_vec(), b"2".to_vec());
        b.put(b"q".to_vec(), b"9".to_vec());
        store.write(b).unwrap();

        let mut ov = Overlay::new(&store);
        ov.put_raw(b"pc".to_vec(), Some(b"3".to_vec()));
        ov.put_raw(b"pa".to_vec(), None);
        assert_eq!(ov.get_raw(b"pa").unwrap(), None);
        assert_eq!(ov.get_raw(b"pb").unwrap(), Some(&b"2"[..]));
        let got = ov.scan(b"p", b"", 10).unwrap();
        assert_eq!(got, vec![(b"pb".to_vec(), b"2".to_vec()), (b"pc".to_vec(), b"3".to_vec())]);
        assert_eq!(ov.scan(b"p", b"", 1).unwrap().len(), 1);
        // Nothing reaches the store before the batch is written.
        assert_eq!(store.get(b"pc").unwrap(), None);
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch);
        assert_eq!(batch.len(), 2);
        store.write(batch).unwrap();
        assert_eq!(store.get(b"pc").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.get(b"pa").unwrap(), None);
    }
}
