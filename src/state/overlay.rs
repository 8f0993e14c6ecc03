//! The per-commit working set over a [`KvStore`].
//!
//! Rules read and write state through an [`Overlay`]: reads go through a cache, writes stay
//! in memory until the pipeline commits them as one [`WriteBatch`] together with input
//! positions and the sink checkpoint. Hot keys (a shop's day bucket) are therefore read
//! from RocksDB once and written once per commit, however many events touch them.
//!
//! The cache is a hash map (point reads and writes are the hot path). Buffered writes of
//! the families that rules scan by prefix (see [`keys::is_point_only`]) are also indexed in
//! key order, so a scan merges them with the store's rows without walking the whole cache.
//! The buffered writes are bounded by what one commit touches.
//!
//! Deletes of keys the store does not hold are not written at all: a timer set and cleared
//! within one commit costs no store write and no changelog record. Whether the store holds
//! a key is known from its read, or learned by a scan that passed it; a key deleted after a
//! scan returned it ([`Overlay::delete_scanned`], fired timers) needs no read either. (Keeping committed values
//! cached across commits was measured too, and was slower than RocksDB's own memtable.)

use super::codec;
use super::keys::{self, Key};
use super::{KvRows, KvStore, StateError, WriteBatch};
use hashbrown::hash_map::{Entry as MapEntry, EntryRef};
use rustc_hash::FxBuildHasher;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeSet;

/// The cache: hashbrown's map for its `entry_ref` (one hash and probe per read, no key
/// allocation on a hit).
type Cache = hashbrown::HashMap<Vec<u8>, Entry, FxBuildHasher>;

#[derive(Debug)]
struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
    /// Whether the store holds the key (None: written before it was ever read).
    in_store: Option<bool>,
}

/// Cached reads and buffered writes over a store.
pub struct Overlay<'s> {
    store: &'s dyn KvStore,
    cache: Cache,
    /// Keys of buffered writes in scanned families, in key order.
    ordered: BTreeSet<Vec<u8>>,
    /// Scratch buffer for encoding typed keys.
    key_buf: Vec<u8>,
}

impl<'s> Overlay<'s> {
    pub fn new(store: &'s dyn KvStore) -> Self {
        Overlay { store, cache: Cache::default(), ordered: BTreeSet::new(), key_buf: Vec::new() }
    }

    /// Raw read.
    pub fn get_raw(&mut self, key: &[u8]) -> Result<Option<&[u8]>, StateError> {
        let entry = match self.cache.entry_ref(key) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                let value = self.store.get(key)?;
                let in_store = Some(value.is_some());
                v.insert(Entry { value, dirty: false, in_store })
            }
        };
        Ok(entry.value.as_deref())
    }

    /// Raw write (`None` deletes).
    pub fn put_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.buffer(key, value, None);
    }

    /// Buffers a write; `in_store`: what is known of the store holding `key` if the cache
    /// has no entry for it yet.
    fn buffer(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, in_store: Option<bool>) {
        if !keys::is_point_only(&key) && !self.ordered.contains(&key) {
            self.ordered.insert(key.clone());
        }
        match self.cache.entry(key) {
            MapEntry::Occupied(mut o) => {
                let e = o.get_mut();
                e.value = value;
                e.dirty = true;
            }
            MapEntry::Vacant(v) => {
                v.insert(Entry { value, dirty: true, in_store });
            }
        }
    }

    /// Runs `f` on the encoded `key` (encoded into a reused buffer).
    fn with_key<R>(&mut self, key: &Key<'_>, f: impl FnOnce(&mut Self, &[u8]) -> R) -> R {
        let mut buf = std::mem::take(&mut self.key_buf);
        buf.clear();
        key.encode_into(&mut buf);
        let r = f(self, &buf);
        self.key_buf = buf;
        r
    }

    /// Typed read of a state value.
    pub fn get<T: DeserializeOwned>(&mut self, key: &Key<'_>) -> Result<Option<T>, StateError> {
        self.with_key(key, |ov, k| match ov.get_raw(k)? {
            Some(bytes) => codec::decode(k, bytes).map(Some),
            None => Ok(None),
        })
    }

    /// Whether a key exists.
    pub fn contains(&mut self, key: &Key<'_>) -> Result<bool, StateError> {
        self.with_key(key, |ov, k| Ok(ov.get_raw(k)?.is_some()))
    }

    /// Typed write.
    pub fn put<T: Serialize>(&mut self, key: &Key<'_>, value: &T) {
        self.put_raw(key.encode(), Some(codec::encode(value)));
    }

    /// Delete.
    pub fn delete(&mut self, key: &Key<'_>) {
        self.put_raw(key.encode(), None);
    }

    /// Deletes a key that a [`Overlay::scan`] of this overlay returned. Such a key is either
    /// a buffered write here or held by the store, so unlike [`Overlay::delete`] the commit
    /// need not ask the store whether the delete is needed (a fired timer costs no read).
    pub fn delete_scanned(&mut self, key: &Key<'_>) {
        self.delete_stored_raw(key.encode());
    }

    /// Deletes a key known to be held by the store, or buffered here (a key a scan of the
    /// store or of this overlay returned): no read to learn whether the delete is needed.
    pub fn delete_stored_raw(&mut self, key: Vec<u8>) {
        // Not cached: the store holds it. Cached: the entry knows whether the store does.
        self.buffer(key, None, Some(true));
    }

    /// What this overlay holds for `key` without reading the store: `Some(None)` for a
    /// key read as absent or deleted here, `None` when it has no entry for it.
    pub fn cached_raw(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.cache.get(key).map(|e| e.value.as_deref())
    }

    /// Entries under `prefix` with key `>= start`, merging buffered writes over the
    /// store, in key order, at most `limit`.
    pub fn scan(&mut self, prefix: &[u8], start: &[u8], limit: usize) -> Result<KvRows, StateError> {
        let from = if start > prefix { start } else { prefix };
        let (rows, learned) = if !prefix.is_empty() && !keys::is_point_only(prefix) {
            let dirty =
                self.ordered.range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded));
            let dirty = dirty.take_while(|k| k.starts_with(prefix)).map(Vec::as_slice);
            merge(self.store, &self.cache, dirty, prefix, from, limit)?
        } else {
            // A family without an ordered index (or the whole store): sort its buffered
            // writes first. Correct for any prefix; rules do not take this path.
            let mut dirty: Vec<&[u8]> = self
                .cache
                .iter()
                .filter(|(k, e)| e.dirty && k.starts_with(prefix) && k.as_slice() >= from)
                .map(|(k, _)| k.as_slice())
                .collect();
            dirty.sort_unstable();
            merge(self.store, &self.cache, dirty.into_iter(), prefix, from, limit)?
        };
        for (k, held) in learned {
            if let Some(e) = self.cache.get_mut(k.as_slice()) {
                e.in_store = Some(held);
            }
        }
        Ok(rows)
    }

    /// Number of buffered writes.
    pub fn dirty_len(&self) -> usize {
        self.cache.values().filter(|e| e.dirty).count()
    }

    /// Moves the buffered writes into `batch`, in key order (RocksDB inserts sorted keys
    /// into its skiplist memtables much faster); leaves out deletes of keys the store does not
    /// hold, and forgets the cache.
    pub fn drain_into(&mut self, batch: &mut WriteBatch) -> Result<(), StateError> {
        self.ordered.clear();
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (k, e) in self.cache.drain() {
            if !e.dirty {
                continue;
            }
            let needed = match (&e.value, e.in_store) {
                (Some(_), _) => true,
                (None, Some(held)) => held,
                (None, None) => self.store.get(&k)?.is_some(),
            };
            if needed {
                writes.push((k, e.value));
            }
        }
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        Ok(())
    }
}

/// Buffered keys a merge passed whose cache entries did not know whether the store holds
/// them, and whether it does.
type Learned = Vec<(Vec<u8>, bool)>;

/// Merges the store's rows under `prefix` from `from` with the buffered writes `dirty`
/// (sorted keys of dirty cache entries, which win over the store), at most `limit` rows.
/// Store rows are fetched in chunks, so buffered deletes never truncate the result. Also
/// returns what the merge learned: whether the store holds each buffered key passed whose
/// cache entry did not know.
fn merge<'a>(
    store: &dyn KvStore,
    cache: &Cache,
    dirty: impl Iterator<Item = &'a [u8]>,
    prefix: &[u8],
    from: &[u8],
    limit: usize,
) -> Result<(KvRows, Learned), StateError> {
    let mut out = Vec::new();
    let mut learned = Vec::new();
    let mut dirty = dirty.peekable();
    let mut cursor = from.to_vec();
    let mut rows = Vec::new().into_iter().peekable();
    let mut store_done = false;
    // Each refill is at least twice the last, so buffered deletes cost few store seeks.
    let mut min_chunk = 0usize;
    while out.len() < limit {
        if rows.peek().is_none() && !store_done {
            let need = (limit - out.len()).max(min_chunk);
            min_chunk = need.saturating_mul(2);
            let chunk = store.scan(prefix, &cursor, need)?;
            store_done = chunk.len() < need;
            if let Some((k, _)) = chunk.last() {
                cursor.clone_from(k);
                cursor.push(0);
            }
            rows = chunk.into_iter().peekable();
        }
        let take_dirty = match (rows.peek(), dirty.peek()) {
            (None, None) => break,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some((s, _)), Some(d)) => *d <= s.as_slice(),
        };
        if take_dirty {
            let d = dirty.next().expect("peeked");
            // The store's rows from the cursor on are at hand (or there are none), so the
            // next one tells whether the store holds `d`.
            let held = rows.peek().is_some_and(|(s, _)| s.as_slice() == d);
            if held {
                rows.next();
            }
            if let Some(e) = cache.get(d) {
                if e.in_store.is_none() {
                    learned.push((d.to_vec(), held));
                }
                if let Some(v) = &e.value {
                    out.push((d.to_vec(), v.clone()));
                }
            }
        } else {
            out.push(rows.next().expect("peeked"));
        }
    }
    Ok((out, learned))
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
        ov.drain_into(&mut batch).unwrap();
        assert_eq!(batch.len(), 2);
        store.write(batch).unwrap();
        assert_eq!(store.get(b"pc").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.get(b"pa").unwrap(), None);
    }

    #[test]
    fn deletes_of_keys_the_store_never_held_are_not_written() {
        let store = MemStore::new();
        let mut b = WriteBatch::new();
        b.put(b"held".to_vec(), b"1".to_vec());
        b.put(b"read".to_vec(), b"2".to_vec());
        store.write(b).unwrap();
        let mut ov = Overlay::new(&store);
        // Set and cleared within one commit, never read: the store is asked at drain.
        ov.put_raw(b"timer".to_vec(), Some(vec![]));
        ov.put_raw(b"timer".to_vec(), None);
        // Read first (absent), then written and deleted: known absent.
        assert_eq!(ov.get_raw(b"gone").unwrap(), None);
        ov.put_raw(b"gone".to_vec(), Some(b"x".to_vec()));
        ov.put_raw(b"gone".to_vec(), None);
        // Deleted without a read, and held by the store: the delete is written.
        ov.put_raw(b"held".to_vec(), None);
        // Read (present), then deleted.
        assert_eq!(ov.get_raw(b"read").unwrap(), Some(&b"2"[..]));
        ov.put_raw(b"read".to_vec(), None);
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch).unwrap();
        let ops: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch.ops().to_vec();
        assert_eq!(ops, vec![(b"held".to_vec(), None), (b"read".to_vec(), None)]);
    }

    #[test]
    fn deleting_scanned_keys_needs_no_store_read_and_drops_buffered_ones() {
        /// Counts point reads.
        struct Counting(MemStore, std::sync::atomic::AtomicUsize);
        impl KvStore for Counting {
            fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.get(key)
            }
            fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<KvRows, StateError> {
                self.0.scan(prefix, start, limit)
            }
            fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
                self.0.write(batch)
            }
        }
        let store = Counting(MemStore::new(), Default::default());
        let timer = |id: &'static str| Key::Timer {
            at: crate::domain::Timestamp(5),
            kind: keys::TimerKind::ShipDeadline,
            shop: "s",
            id,
        };
        let mut b = WriteBatch::new();
        b.put(timer("stored").encode(), vec![]);
        b.put(timer("set again").encode(), vec![]);
        store.write(b).unwrap();
        let mut ov = Overlay::new(&store);
        // Buffered in this commit only, then fired: nothing to write.
        ov.put(&timer("buffered"), &());
        // Held by the store and written again without a read: the scan learns it is held.
        ov.put(&timer("set again"), &());
        let due = ov.scan(&keys::timer_prefix(), &[], 10).unwrap();
        assert_eq!(due.len(), 3);
        for id in ["stored", "buffered", "set again"] {
            ov.delete_scanned(&timer(id));
        }
        assert_eq!(ov.scan(&keys::timer_prefix(), &[], 10).unwrap(), vec![]);
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch).unwrap();
        let mut deletes = vec![(timer("set again").encode(), None), (timer("stored").encode(), None)];
        deletes.sort();
        assert_eq!(batch.ops().to_vec(), deletes);
        assert_eq!(store.1.load(std::sync::atomic::Ordering::Relaxed), 0, "no point read");
    }

    #[test]
    fn drained_writes_are_in_key_order() {
        let store = MemStore::new();
        let mut ov = Overlay::new(&store);
        let seen = |id: &str| Key::Seen(id).encode();
        for id in ["c", "a", "b"] {
            ov.put_raw(seen(id), Some(vec![1]));
        }
        for k in [vec![0x09, 2], vec![0x02, 7], vec![0x09, 1], vec![0x00, 3]] {
            ov.put_raw(k, Some(vec![2]));
        }
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch).unwrap();
        let keys: Vec<Vec<u8>> = batch.ops().iter().map(|(k, _)| k.clone()).collect();
        let mut expected =
            vec![seen("a"), seen("b"), seen("c"), vec![0x09, 2], vec![0x02, 7], vec![0x09, 1], vec![0x00, 3]];
        expected.sort();
        assert_eq!(keys, expected, "every write, dedup entries too, in key order");
    }

    #[test]
    fn scans_stay_complete_past_many_buffered_deletes() {
        let store = MemStore::new();
        let mut b = WriteBatch::new();
        for i in 0..100u8 {
            b.put(vec![0x09, i], vec![i]);
        }
        store.write(b).unwrap();
        let mut ov = Overlay::new(&store);
        for i in 0..90u8 {
            ov.put_raw(vec![0x09, i], None);
        }
        ov.put_raw(vec![0x09, 95, 0], Some(vec![1]));
        let got: Vec<Vec<u8>> = ov.scan(&[0x09], &[], 5).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, vec![vec![0x09, 90], vec![0x09, 91], vec![0x09, 92], vec![0x09, 93], vec![0x09, 94]]);
        let all = ov.scan(&[0x09], &[0x09, 94], usize::MAX).unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(all[2].0, vec![0x09, 95, 0]);
        // A point-only family still merges its buffered writes (slow path).
        ov.put_raw(vec![0x02, 1], Some(vec![7]));
        assert_eq!(ov.scan(&[0x02], &[], 10).unwrap(), vec![(vec![0x02, 1], vec![7])]);
    }
}
