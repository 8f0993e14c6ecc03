//! The RocksDB implementation of [`KvStore`]: the production state store.
//!
//! One database per data directory. Every commit is one RocksDB write batch, so a batch either
//! survives a crash whole or not at all. Batches are written with `sync` (fsync of the
//! write-ahead log) unless the store is a cache of a durable log (Kafka mode: the changelog is
//! the truth, see [`RocksStore::set_durable`]); then they skip the write-ahead log altogether.
//!
//! The dedup entries ([`Family::Seen`], one per event, nearly every read a miss) live in a
//! column family of their own, so the other families' memtable skiplist does not hold them;
//! every other family shares the default one. Both have a whole-key bloom filter in the
//! memtable, which answers most misses without walking the skiplist. A batch spans both
//! atomically.

use super::codec::{self, FORMAT_VERSION};
use super::keys::{self, Family, Key, MetaKey};
use super::{Expiry, KvRows, KvStore, StateError, WriteBatch};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DataBlockIndexType,
    Direction, IteratorMode, Options, ReadOptions, WriteBufferManager, DB,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Block cache of a store with a budget of its own.
const CACHE_BYTES: usize = 256 << 20;
/// Size of one memtable; a store has at most three per column family.
const WRITE_BUFFER_BYTES: usize = 64 << 20;
/// The column family of the dedup entries ([`Family::Seen`]).
const SEEN_CF: &str = "seen";

/// Memory shared by the stores of one process (Kafka mode: one store per shard): one block
/// cache and one cap on all their memtables, so memory does not grow with the number of
/// shards an instance owns.
#[derive(Clone)]
pub struct MemoryBudget {
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl MemoryBudget {
    /// A budget of `cache_bytes` of block cache and `write_buffer_bytes` of memtables, shared.
    pub fn new(cache_bytes: usize, write_buffer_bytes: usize) -> MemoryBudget {
        MemoryBudget {
            cache: Cache::new_lru_cache(cache_bytes),
            write_buffers: WriteBufferManager::new_write_buffer_manager(write_buffer_bytes, false),
        }
    }

    /// Bytes in use now: (block cache, memtables), over every store sharing the budget.
    pub fn usage(&self) -> (u64, u64) {
        (self.cache.get_usage() as u64, self.write_buffers.get_usage() as u64)
    }

    /// What one store alone may use by default ([`MemoryLimits::default`]).
    pub fn single_store() -> MemoryBudget {
        MemoryLimits::default().budget()
    }
}

/// The sizes of a [`MemoryBudget`] (configuration: `[state]`), as plain numbers that run
/// descriptions can carry and print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimits {
    pub block_cache_bytes: usize,
    pub memtable_bytes: usize,
}

impl Default for MemoryLimits {
    /// 256 MiB of block cache (64 MiB was measured too small: a 4 000 000-event run over
    /// 800 days read its day buckets from files, 54 674 vs 87 771 events/s), three 64 MiB
    /// memtables.
    fn default() -> Self {
        MemoryLimits { block_cache_bytes: CACHE_BYTES, memtable_bytes: 3 * WRITE_BUFFER_BYTES }
    }
}

impl MemoryLimits {
    /// Limits of `block_cache_mib` and `memtables_mib` MiB.
    pub fn from_mib(block_cache_mib: u64, memtables_mib: u64) -> MemoryLimits {
        let bytes = |mib: u64| usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        MemoryLimits { block_cache_bytes: bytes(block_cache_mib), memtable_bytes: bytes(memtables_mib) }
    }

    /// A fresh budget of these sizes, for the stores of one run to share.
    pub fn budget(&self) -> MemoryBudget {
        MemoryBudget::new(self.block_cache_bytes, self.memtable_bytes)
    }
}

/// The options of both column families: the memtable's bloom filter, compression, memtable
/// size, the budget's block cache with bloom filters, and the retention filter.
fn family_options(budget: &MemoryBudget, expiry: Option<&Arc<dyn Expiry>>) -> Options {
    let mut opts = Options::default();
    // Most point reads miss (a new order, a new bucket, a new `event_id`): a whole-key bloom
    // filter in the memtable answers those without walking its skiplist.
    opts.set_memtable_prefix_bloom_ratio(0.1);
    opts.set_memtable_whole_key_filtering(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(3);
    let mut block = BlockBasedOptions::default();
    block.set_bloom_filter(10.0, false);
    block.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    block.set_block_cache(&budget.cache);
    block.set_cache_index_and_filter_blocks(true);
    opts.set_block_based_table_factory(&block);
    if let Some(expiry) = expiry {
        let expiry = Arc::clone(expiry);
        opts.set_compaction_filter("shopscore-retention", move |_level: u32, key: &[u8], value: &[u8]| {
            if expiry.expired(key, value) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        });
    }
    opts
}

/// Whether `key` lives in [`SEEN_CF`].
fn is_seen(key: &[u8]) -> bool {
    keys::family(key) == Some(Family::Seen)
}

/// A RocksDB-backed store.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Writes go through the write-ahead log and are fsynced ([`RocksStore::set_durable`]).
    durable: bool,
}

fn backend(e: rocksdb::Error) -> StateError {
    StateError::Backend(e.to_string())
}

impl RocksStore {
    /// Opens (creating if missing) the store under `dir`, checking the state format
    /// version.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        Self::open_with_expiry(dir, None)
    }

    /// Like [`RocksStore::open`], dropping entries `expiry` declares dead at compaction.
    pub fn open_with_expiry(dir: &Path, expiry: Option<Arc<dyn Expiry>>) -> Result<Self, StateError> {
        Self::open_with(dir, expiry, None)
    }

    /// Like [`RocksStore::open_with_expiry`], within a memory `budget` shared with other
    /// stores (None: a budget of its own, [`MemoryBudget::single_store`]).
    pub fn open_with(
        dir: &Path,
        expiry: Option<Arc<dyn Expiry>>,
        budget: Option<&MemoryBudget>,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StateError::Backend(format!("cannot create data directory {}: {e}", dir.display()))
        })?;
        let own;
        let budget = match budget {
            Some(b) => b,
            None => {
                own = MemoryBudget::single_store();
                &own
            }
        };
        // Database-wide options only: each column family gets its own below.
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_manager(&budget.write_buffers);
        opts.increase_parallelism(2);
        // Batches span both column families and may skip the write-ahead log: only flushing
        // them together keeps "a prefix of whole batches" true after a crash.
        opts.set_atomic_flush(true);
        // One writer per store (its commits are serial): memtable inserts need no atomics.
        opts.set_allow_concurrent_memtable_write(false);
        // The default family needs its options spelled out: opened without a descriptor of
        // its own, rust-rocksdb gives it `Options::default()` (no compression, no bloom
        // filters, no retention filter, a block cache outside the budget).
        let default = family_options(budget, expiry.as_ref());
        // Dedup entries are only ever read by whole key (one per event, nearly all misses)
        // and written once. Until session 23 their family had a hash memtable (one probe per
        // read or insert), but flushing one sorts a copy of all its entries: measured on
        // 1 000 000 dedup keys, 3.5-4.6 us of CPU per key in all against 1.0-1.3 for
        // sorted inserts into a skiplist (README → Benchmark).
        let seen = family_options(budget, expiry.as_ref());
        let families = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, default),
            ColumnFamilyDescriptor::new(SEEN_CF, seen),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, families).map_err(backend)?;
        let store = RocksStore { db, path: dir.to_path_buf(), durable: true };
        store.check_version()?;
        store.move_dedup_entries_to_their_family()?;
        Ok(store)
    }

    /// Whether writes go through the write-ahead log and wait for it to reach the disk
    /// (default: yes). Without (`false`), writes skip the log: a crash of the process or the
    /// machine loses the batches still in memtables, and the store reopens holding a prefix of
    /// whole batches (a batch is never split across memtables, memtables are persisted in
    /// order, and the two column families' memtables are flushed together: atomic flush). Closing the store flushes its memtables, so a clean
    /// stop loses nothing. Right for a store that a changelog restores from the offset its
    /// last surviving batch recorded; it saves the log's copy of every write (Kafka mode:
    /// 15–25 % of a shard's CPU in the benchmark).
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    fn check_version(&self) -> Result<(), StateError> {
        let key = Key::Meta(MetaKey::FormatVersion).encode();
        match self.get(&key)? {
            Some(bytes) => {
                let found: u32 = codec::decode(&key, &bytes)?;
                if found != FORMAT_VERSION {
                    return Err(StateError::Version {
                        path: self.path.display().to_string(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                let mut batch = WriteBatch::new();
                batch.put(key, codec::encode(&FORMAT_VERSION));
                self.write(batch)
            }
        }
    }
}

impl RocksStore {
    /// Data directories written before session 14 kept the dedup entries in the default
    /// column family: moves any there into [`SEEN_CF`], in atomic chunks (a crash midway
    /// leaves the rest for the next open; the first check is one seek).
    fn move_dedup_entries_to_their_family(&self) -> Result<(), StateError> {
        const CHUNK: usize = 100_000;
        let prefix = [keys::family_tag(Family::Seen)];
        loop {
            let rows = self.scan_cf(None, &prefix, &prefix, CHUNK)?;
            if rows.is_empty() {
                return Ok(());
            }
            tracing::info!(entries = rows.len(), path = %self.path.display(), "moving dedup entries to their column family");
            let mut wb = rocksdb::WriteBatch::default();
            for (k, v) in rows {
                wb.delete(&k);
                wb.put_cf(self.seen_cf(), k, v);
            }
            self.db.write(wb).map_err(backend)?;
        }
    }

    fn seen_cf(&self) -> &ColumnFamily {
        self.db.cf_handle(SEEN_CF).expect("opened with the column family")
    }

    /// Entries of one column family (None: the default one) under `prefix` from `from`.
    fn scan_cf(
        &self,
        cf: Option<&ColumnFamily>,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<KvRows, StateError> {
        let mut out = Vec::new();
        let mut ro = ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mode = IteratorMode::From(from, Direction::Forward);
        let iter = match cf {
            Some(cf) => self.db.iterator_cf_opt(cf, ro, mode),
            None => self.db.iterator_opt(mode, ro),
        };
        for item in iter {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

impl KvStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if is_seen(key) {
            self.db.get_cf(self.seen_cf(), key).map_err(backend)
        } else {
            self.db.get(key).map_err(backend)
        }
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<KvRows, StateError> {
        let from = if start > prefix { start } else { prefix };
        match prefix.first() {
            Some(&tag) if tag == keys::family_tag(Family::Seen) => {
                return self.scan_cf(Some(self.seen_cf()), prefix, from, limit)
            }
            Some(_) => return self.scan_cf(None, prefix, from, limit),
            None => {}
        }
        // The whole store: both families' rows, merged in key order.
        let mut rows = self.scan_cf(None, prefix, from, limit)?;
        rows.extend(self.scan_cf(Some(self.seen_cf()), prefix, from, limit)?);
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows.truncate(limit);
        Ok(rows)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        // Sized up front: growing the batch's buffer copies it again and again.
        let bytes: usize = batch.ops.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 16).sum();
        let mut wb = rocksdb::WriteBatch::with_capacity_bytes(bytes + 12);
        let seen = self.seen_cf();
        for (k, v) in batch.ops {
            match (v, is_seen(&k)) {
                (Some(v), false) => wb.put(k, v),
                (None, false) => wb.delete(k),
                (Some(v), true) => wb.put_cf(seen, k, v),
                (None, true) => wb.delete_cf(seen, k),
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(self.durable);
        wo.disable_wal(!self.durable);
        self.db.write_opt(wb, &wo).map_err(backend)
    }

    fn compact(&self) -> Result<(), StateError> {
        self.db.flush().map_err(backend)?;
        self.db.flush_cf(self.seen_cf()).map_err(backend)?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        self.db.compact_range_cf::<&[u8], &[u8]>(self.seen_cf(), None, None);
        Ok(())
    }

    fn approximate_keys(&self) -> u64 {
        let name = "rocksdb.estimate-num-keys";
        let default = self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        default + self.db.property_int_value_cf(self.seen_cf(), name).ok().flatten().unwrap_or(0)
    }

    fn size_bytes(&self) -> u64 {
        let seen = self.seen_cf();
        let prop = |name: &str| {
            self.db.property_int_value(name).ok().flatten().unwrap_or(0)
                + self.db.property_int_value_cf(seen, name).ok().flatten().unwrap_or(0)
        };
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }
}

/// The smallest key after every key starting with `prefix` (None: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_persist_across_reopen_and_scan_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(b"\x09b".to_vec(), b"2".to_vec());
            b.put(b"\x09a".to_vec(), b"1".to_vec());
            b.put(b"\x0ac".to_vec(), b"3".to_vec());
            b.delete(b"\x09b".to_vec());
            s.write(b).unwrap();
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get(b"\x09a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"\x09b").unwrap(), None);
        let all = s.scan(b"\x09", b"", 10).unwrap();
        assert_eq!(all, vec![(b"\x09a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn dedup_entries_of_an_older_directory_move_to_their_family_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let seen = |i: u32| Key::Seen(&format!("e{i}")).encode();
        {
            // The layout before the column family: everything in the default one.
            let mut opts = Options::default();
            opts.create_if_missing(true);
            let db = DB::open(&opts, dir.path()).unwrap();
            db.put(Key::Meta(MetaKey::FormatVersion).encode(), codec::encode(&FORMAT_VERSION)).unwrap();
            for i in 0..250_000u32 {
                db.put(seen(i), i.to_be_bytes()).unwrap();
            }
            db.put(b"\x09t", b"1").unwrap();
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get(&seen(7)).unwrap(), Some(7u32.to_be_bytes().to_vec()));
        assert_eq!(s.get(&seen(249_999)).unwrap(), Some(249_999u32.to_be_bytes().to_vec()));
        assert_eq!(s.db.get(seen(7)).unwrap(), None, "still in the default family");
        let prefix = [keys::family_tag(Family::Seen)];
        assert_eq!(s.scan(&prefix, b"", usize::MAX).unwrap().len(), 250_000);
        assert_eq!(s.get(b"\x09t").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn dedup_entries_live_in_their_column_family_and_scans_see_both() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        let seen = |id: &str| Key::Seen(id).encode();
        for id in ["b", "a", "c"] {
            b.put(seen(id), id.as_bytes().to_vec());
        }
        b.put(b"\x09t".to_vec(), b"1".to_vec());
        b.delete(seen("c"));
        s.write(b).unwrap();
        assert_eq!(s.get(&seen("a")).unwrap(), Some(b"a".to_vec()));
        assert_eq!(s.get(&seen("c")).unwrap(), None);
        // Not in the default family.
        assert_eq!(s.db.get(seen("a")).unwrap(), None);
        let prefix = [keys::family_tag(Family::Seen)];
        let family: Vec<Vec<u8>> = s.scan(&prefix, b"", 10).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(family, vec![seen("a"), seen("b")]);
        let from_b: Vec<Vec<u8>> =
            s.scan(&prefix, &seen("b"), 10).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(from_b, vec![seen("b")]);
        // The whole store, in key order across both families, and limited.
        let all: Vec<Vec<u8>> = s.scan(b"", b"", 10).unwrap().into_iter().map(|(k, _)| k).collect();
        let meta = Key::Meta(MetaKey::FormatVersion).encode();
        assert_eq!(all, vec![meta.clone(), seen("a"), seen("b"), b"\x09t".to_vec()]);
        assert_eq!(s.scan(b"", b"", 2).unwrap().len(), 2);
        s.compact().unwrap();
        assert_eq!(s.get(&seen("b")).unwrap(), Some(b"b".to_vec()));
        assert!(s.approximate_keys() >= 3);
    }

    #[test]
    fn writes_without_the_log_survive_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RocksStore::open(dir.path()).unwrap();
            s.set_durable(false);
            for i in 0..1000u32 {
                let mut b = WriteBatch::new();
                b.put(format!("\x09k{i:04}").into_bytes(), i.to_be_bytes().to_vec());
                s.write(b).unwrap();
            }
            // Nothing reached an SST file yet: only closing can have persisted them.
            assert_eq!(s.db.property_int_value("rocksdb.total-sst-files-size").unwrap(), Some(0));
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.scan(b"\x09k", b"", 2000).unwrap().len(), 1000);
        assert_eq!(s.get(b"\x09k0999").unwrap(), Some(999u32.to_be_bytes().to_vec()));
    }

    /// Runs the ignored test `child` of this module in a process of its own, telling it the
    /// store directory `dir` in the environment variable `var`; it must abort.
    fn run_aborting_child(child: &str, var: &str, dir: &Path) {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("state::rocks::tests::{child}"), "--ignored", "--test-threads", "1"])
            .env(var, dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have aborted");
    }

    /// Child half of `a_crash_without_the_log_leaves_a_prefix_of_whole_batches`: run by it in
    /// a process of its own (named by the environment variable), which it aborts.
    #[test]
    #[ignore = "run as a child process by a_crash_without_the_log_leaves_a_prefix_of_whole_batches"]
    fn crash_child() {
        let Ok(dir) = std::env::var("SHOPSCORE_CRASH_CHILD_DIR") else { return };
        let mut s = RocksStore::open(Path::new(&dir)).unwrap();
        s.set_durable(false);
        for i in 0..200u32 {
            let mut b = WriteBatch::new();
            b.put(format!("\x09{i:03}a").into_bytes(), i.to_be_bytes().to_vec());
            b.put(format!("\x09{i:03}b").into_bytes(), i.to_be_bytes().to_vec());
            // A dedup entry: the same batch, the other column family.
            b.put(Key::Seen(&format!("{i:03}")).encode(), i.to_be_bytes().to_vec());
            s.write(b).unwrap();
            if i == 99 {
                // Batches 0..=99 reach an SST file; the rest stay in the memtable.
                s.compact().unwrap();
            }
        }
        std::process::abort();
    }

    /// A store written without the write-ahead log and killed (no close, no flush) reopens
    /// holding a prefix of whole batches: what reached SST files, never half a batch, even
    /// when a batch spans both column families.
    #[test]
    fn a_crash_without_the_log_leaves_a_prefix_of_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        run_aborting_child("crash_child", "SHOPSCORE_CRASH_CHILD_DIR", dir.path());
        let s = RocksStore::open(dir.path()).unwrap();
        let present: Vec<bool> = (0..200u32)
            .map(|i| {
                let a = s.get(format!("\x09{i:03}a").as_bytes()).unwrap().is_some();
                let b = s.get(format!("\x09{i:03}b").as_bytes()).unwrap().is_some();
                let seen = s.get(&Key::Seen(&format!("{i:03}")).encode()).unwrap().is_some();
                assert_eq!(a, b, "batch {i} is torn");
                assert_eq!(a, seen, "batch {i} is torn across column families");
                a
            })
            .collect();
        assert!(present[..100].iter().all(|p| *p), "flushed batches lost: {present:?}");
        assert!(present.windows(2).all(|w| w[0] || !w[1]), "not a prefix: {present:?}");
        // The memtable's batches are gone: the changelog is what restores them.
        assert!(!present[199]);
    }

    /// Child half of `automatic_flushes_keep_both_families_at_the_same_batch`.
    #[test]
    #[ignore = "run as a child process by automatic_flushes_keep_both_families_at_the_same_batch"]
    fn flush_child() {
        let Ok(dir) = std::env::var("SHOPSCORE_FLUSH_CHILD_DIR") else { return };
        let mut s = RocksStore::open(Path::new(&dir)).unwrap();
        s.set_durable(false);
        // ~2 KiB per batch in the default family, a few bytes in the dedup one: the default
        // family's memtable fills (and flushes) long before the other's would alone.
        let write = |i: u32| {
            let mut b = WriteBatch::new();
            b.put(format!("\x09{i:06}").into_bytes(), vec![7; 2048]);
            b.put(Key::Seen(&format!("{i:06}")).encode(), i.to_be_bytes().to_vec());
            s.write(b).unwrap();
        };
        for i in 0..50_000u32 {
            write(i);
        }
        // Let the flushes the full memtables started finish, then leave more in memtables.
        let prop = |name: &str| s.db.property_int_value(name).unwrap().unwrap_or(0);
        while prop("rocksdb.num-running-flushes") > 0 || prop("rocksdb.num-immutable-mem-table") > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for i in 50_000..60_000u32 {
            write(i);
        }
        std::process::abort();
    }

    /// Memtables filling up flush both column families at the same batch: after a kill, the
    /// dedup family never holds a batch the default one lost, nor the other way round.
    #[test]
    fn automatic_flushes_keep_both_families_at_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        run_aborting_child("flush_child", "SHOPSCORE_FLUSH_CHILD_DIR", dir.path());
        let s = RocksStore::open(dir.path()).unwrap();
        let mut kept = 0;
        for i in 0..60_000u32 {
            let a = s.get(format!("\x09{i:06}").as_bytes()).unwrap().is_some();
            let seen = s.get(&Key::Seen(&format!("{i:06}")).encode()).unwrap().is_some();
            assert_eq!(a, seen, "batch {i} is torn across column families");
            kept += a as u32;
        }
        assert!(kept > 0, "no automatic flush happened: the test shows nothing");
        assert!(kept < 60_000, "nothing was lost: the test shows nothing");
    }

    #[test]
    fn refuses_other_format_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(Key::Meta(MetaKey::FormatVersion).encode(), codec::encode(&999u32));
            s.write(b).unwrap();
        }
        let err = RocksStore::open(dir.path()).err().expect("must refuse");
        assert!(err.to_string().contains("format 999"), "{err}");
    }

    /// Declares dead every entry whose value is `dead`.
    struct DeadValues;
    impl Expiry for DeadValues {
        fn expired(&self, _key: &[u8], value: &[u8]) -> bool {
            value == b"dead"
        }
    }

    #[test]
    fn expiry_applies_to_both_column_families() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open_with_expiry(dir.path(), Some(Arc::new(DeadValues))).unwrap();
        let order = Key::Order { shop: "s", order: "o" }.encode();
        let kept = Key::Order { shop: "s", order: "p" }.encode();
        let seen = Key::Seen("e").encode();
        let mut b = WriteBatch::new();
        b.put(order.clone(), b"dead".to_vec());
        b.put(kept.clone(), b"live".to_vec());
        b.put(seen.clone(), b"dead".to_vec());
        s.write(b).unwrap();
        s.compact().unwrap();
        // Read from the files, not from anything a write left in memory.
        drop(s);
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(s.get(&order).unwrap(), None, "the default family's dead entry was dropped");
        assert_eq!(s.get(&seen).unwrap(), None, "the dedup family's dead entry was dropped");
        assert_eq!(s.get(&kept).unwrap(), Some(b"live".to_vec()));
    }

    #[test]
    fn both_column_families_are_opened_with_the_store_options() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStore::open(dir.path()).unwrap());
        let options = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .expect("RocksDB writes an OPTIONS file");
        let text = std::fs::read_to_string(options).unwrap();
        for family in ["default", SEEN_CF] {
            let section = text
                .split("[CFOptions \"")
                .find(|s| s.starts_with(&format!("{family}\"")))
                .unwrap_or_else(|| panic!("no options for column family {family}"));
            let section = section.split("[TableOptions").next().unwrap();
            assert!(section.contains("compression=kLZ4Compression"), "{family}: {section}");
            assert!(section.contains("memtable_whole_key_filtering=true"), "{family}: {section}");
            // Not the hash memtable: its flushes sort a copy of every entry (session 23).
            assert!(section.contains("memtable_factory=SkipListFactory"), "{family}: {section}");
        }
    }
}
