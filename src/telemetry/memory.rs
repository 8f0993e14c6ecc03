//! Where the process's memory goes, for `/metrics` (`shopscore_memory_bytes{part}`) and the
//! benchmark: the resident set (the kernel's count), the Rust heap (jemalloc's own counters),
//! RocksDB's block cache and memtables (the budget the stores share), and the bytes the input
//! reader has fetched ahead (librdkafka's statistics). RocksDB and librdkafka allocate with
//! glibc's malloc, not jemalloc, so the parts do not overlap; what the resident set holds
//! beyond them is librdkafka's other buffers, malloc's free lists, code and stacks.

/// One sample of the parts (`None`: not measurable here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Resident set size (`VmRSS`).
    pub resident: Option<u64>,
    /// Bytes the Rust code has allocated (jemalloc `stats.allocated`).
    pub heap_allocated: Option<u64>,
    /// Pages jemalloc holds resident, its own metadata and unused cached pages included
    /// (`stats.resident`).
    pub heap_resident: Option<u64>,
    /// RocksDB block cache in use (shared by the stores).
    pub block_cache: u64,
    /// RocksDB memtables (shared by the stores).
    pub memtables: u64,
    /// Input records fetched and not yet read (librdkafka's fetch queues; `None` until its
    /// first statistics, every 5 s).
    pub reader_prefetch: Option<u64>,
}

impl MemoryUse {
    /// The process-wide parts now, with the stores' and the reader's as given.
    pub fn sample(block_cache: u64, memtables: u64, reader_prefetch: Option<u64>) -> MemoryUse {
        let (heap_allocated, heap_resident) = heap().unzip();
        MemoryUse {
            resident: resident_bytes(),
            heap_allocated,
            heap_resident,
            block_cache,
            memtables,
            reader_prefetch,
        }
    }

    /// The parts by their metric label.
    pub fn parts(&self) -> [(&'static str, Option<u64>); 6] {
        [
            ("resident", self.resident),
            ("heap_allocated", self.heap_allocated),
            ("heap_resident", self.heap_resident),
            ("rocksdb_block_cache", Some(self.block_cache)),
            ("rocksdb_memtables", Some(self.memtables)),
            ("reader_prefetch", self.reader_prefetch),
        ]
    }

    /// What the resident set holds beyond the parts measured (librdkafka's other buffers,
    /// glibc's free lists, code, stacks); `None` unless the resident set and the heap are known.
    pub fn other(&self) -> Option<u64> {
        let known =
            self.heap_resident? + self.block_cache + self.memtables + self.reader_prefetch.unwrap_or(0);
        Some(self.resident?.saturating_sub(known))
    }
}

/// The resident set size, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS")
}

/// A size field of `/proc/self/status` (`VmRSS`, `VmHWM`, … given in kB there), in bytes
/// (Linux; `None` elsewhere).
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// jemalloc's allocated and resident bytes. Its counters are cached until the epoch is
/// advanced. In a binary whose global allocator is not jemalloc (the library's unit tests)
/// they count only what was allocated through jemalloc explicitly, next to nothing.
fn heap() -> Option<(u64, u64)> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let allocated = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()?;
    Some((allocated as u64, resident as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_the_resident_set_and_keeps_the_given_parts() {
        let m = MemoryUse::sample(3 << 20, 5 << 20, Some(7));
        let rss = m.resident.expect("Linux has /proc/self/status");
        assert!(rss > 1 << 20, "a test process has more than 1 MiB resident: {rss}");
        assert_eq!((m.block_cache, m.memtables, m.reader_prefetch), (3 << 20, 5 << 20, Some(7)));
        assert!(m.heap_allocated.is_some() && m.heap_resident.is_some(), "jemalloc answers: {m:?}");
    }

    #[test]
    fn other_is_what_the_resident_set_holds_beyond_the_parts() {
        let m = MemoryUse {
            resident: Some(1000),
            heap_allocated: Some(150),
            heap_resident: Some(200),
            block_cache: 300,
            memtables: 100,
            reader_prefetch: Some(50),
        };
        assert_eq!(m.other(), Some(350));
        assert_eq!(MemoryUse { resident: None, ..m }.other(), None);
        assert_eq!(MemoryUse { reader_prefetch: None, ..m }.other(), Some(400));
        assert_eq!(MemoryUse { resident: Some(10), ..m }.other(), Some(0));
        let labels: Vec<&str> = m.parts().iter().map(|(l, _)| *l).collect();
        assert_eq!(labels.len(), 6);
    }
}
