//! The changelog: every shard's state as a compacted topic, one partition per shard.
//!
//! A commit appends the state keys it changed (value, or a tombstone for a delete), then a
//! **marker** record. Restoring applies records only up to the last marker: records after it
//! are a torn commit of an owner that died mid-write (possible without transactions; with
//! them, `read_committed` never shows such records). The next owner overwrites the torn keys
//! with their restored values in its first commit, so any later restore — which replays the
//! torn records and then the corrections, in order — ends in the same state. Compaction keeps
//! the latest record per key, the latest marker included, which preserves exactly that.
//!
//! One family is packed: the `event_id` dedup keys ([`Family::Seen`], one per applied event,
//! never overwritten) go as a few **seen packs** per commit (keys
//! `SEEN_PACK_PREFIX + seq + chunk`) instead of one record each — a third of the changelog
//! records otherwise. Compaction had nothing to merge among them anyway (every key is new).
//! Restoring unpacks a pack into its keys as if they had come one by one, so a torn pack's
//! keys are torn keys like any other and are overwritten key by key.
//!
//! Derived keys are left out: the event-time timers and the day→shop index are a function
//! of the entries they index ([`crate::rules::derived`]), so restoring rebuilds them from the
//! entries it applies: batch by batch when catching up ([`add_derived`]), with one scan at
//! the end onto an empty store ([`rebuild_derived`]).

use super::client::Clients;
use super::{Context, KafkaError};
use crate::domain::{Day, Timestamp};
use crate::rules::derived::{add_derived, rebuild_derived};
use crate::state::keys::{family, Family, Key, MetaKey};
use crate::state::{codec, KvStore, StateError, WriteBatch};
use crate::telemetry::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The key of marker records. State keys start with a family tag below 0x10, so this cannot
/// collide with one.
pub const MARKER_KEY: &[u8] = b"\xffshopscore.commit";

/// The key of fence records, written by a new owner to learn the partition's end. Ignored
/// when restoring.
pub const FENCE_KEY: &[u8] = b"\xffshopscore.fence";

/// Seen packs: this prefix, the commit's sequence number and the chunk index, big-endian.
pub const SEEN_PACK_PREFIX: &[u8] = b"\xffshopscore.seen/";

/// A changelog record whose size grows with a commit (an outbox chunk, a seen pack) stays
/// under about this many bytes: brokers refuse records over `message.max.bytes` (1 MB by
/// default).
pub const RECORD_BYTES: usize = 256 * 1024;

/// `items` in order, cut into chunks whose `size`s add up to at most [`RECORD_BYTES`] (an item
/// larger than that gets a chunk of its own).
pub fn chunked<T>(items: impl IntoIterator<Item = T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut used = usize::MAX;
    for item in items {
        let len = size(&item);
        if used.saturating_add(len) > RECORD_BYTES {
            chunks.push(Vec::new());
            used = 0;
        }
        used += len;
        chunks.last_mut().expect("pushed above").push(item);
    }
    chunks
}

/// A state change: key and value (`None`: a delete).
type Change<'a> = (&'a [u8], Option<&'a [u8]>);

/// Whether a state key goes into a seen pack rather than a record of its own.
pub fn is_packed(key: &[u8]) -> bool {
    family(key) == Some(Family::Seen)
}

/// One seen pack of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenPack {
    /// Its changelog key ([`seen_pack_key`]).
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// The latest event time of its entries: the pack is dead once the retention cutoff
    /// passes it (see [`MetaKey::SeenPack`], which indexes packs by it).
    pub max_time: Timestamp,
    pub chunk: u32,
    /// How many entries it holds.
    pub entries: u32,
}

/// The changelog key of chunk `chunk` of commit `seq`'s seen pack.
pub fn seen_pack_key(seq: u64, chunk: u32) -> Vec<u8> {
    let mut key = SEEN_PACK_PREFIX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// The seen packs of commit `seq`.
pub fn seen_packs<'a>(seq: u64, entries: impl IntoIterator<Item = Change<'a>>) -> Vec<SeenPack> {
    // Entries are grouped by the day of their event time, so a pack expires no later than a
    // day after its oldest entry could (a commit of a replay can span months).
    let mut by_day: BTreeMap<Option<Day>, Vec<(Change<'a>, Option<Timestamp>)>> = BTreeMap::new();
    for (k, v) in entries {
        let time = v.and_then(|v| codec::decode::<Timestamp>(k, v).ok());
        by_day.entry(time.map(Timestamp::day)).or_default().push(((k, v), time));
    }
    let mut packs = Vec::new();
    for group in by_day.into_values() {
        for chunk in chunked(group, |((k, v), _)| k.len() + v.map_or(0, <[u8]>::len) + 8) {
            let max_time = chunk.iter().filter_map(|(_, t)| *t).max().unwrap_or(Timestamp(i64::MIN));
            let changes: Vec<Change<'a>> = chunk.into_iter().map(|(c, _)| c).collect();
            let index = packs.len() as u32;
            packs.push(SeenPack {
                key: seen_pack_key(seq, index),
                payload: codec::encode(&changes),
                max_time,
                chunk: index,
                entries: changes.len() as u32,
            });
        }
    }
    packs
}

/// Writes to the local store are grouped into batches of about this many operations.
const RESTORE_BATCH_OPS: usize = 50_000;
/// Restoring gives up when the changelog stops answering for this long.
const RESTORE_STALL: Duration = Duration::from_secs(60);
/// A restore sets `shopscore_restore_remaining_records` this often.
const RESTORE_GAUGE_EVERY: Duration = Duration::from_millis(500);
/// A long restore logs where it is this often (the shard is not acquired, nor `/readyz` 200,
/// until it ends).
const RESTORE_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A test hook, not configuration: when set to a number of milliseconds, restoring sleeps that
/// long after every changelog record, so a test can make an opening last as long as it needs
/// (a restore longer than `max.poll.interval.ms`, the progress log) without a changelog that
/// big. Unset in production; read once per restore.
pub const RESTORE_DELAY_ENV: &str = "SHOPSCORE_TEST_RESTORE_DELAY_MS";

fn restore_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(RESTORE_DELAY_ENV).ok()?.trim().parse().ok()?;
    tracing::warn!(ms, "{RESTORE_DELAY_ENV} is set: restoring sleeps after every changelog record");
    Some(Duration::from_millis(ms))
}

/// The payload of a marker record: the commit's sequence number and the state format its
/// records are written in ([`codec::FORMAT_VERSION`]), so that a build of another format
/// refuses to restore them instead of misreading them.
pub fn marker_payload(seq: u64) -> Vec<u8> {
    codec::encode(&(seq, codec::FORMAT_VERSION))
}

/// The sequence number of a marker written in this build's state format, or why not.
fn marker_seq(offset: i64, payload: &[u8]) -> Result<u64, String> {
    let format = match codec::decode::<(u64, u32)>(MARKER_KEY, payload) {
        Ok((seq, codec::FORMAT_VERSION)) => return Ok(seq),
        Ok((_, other)) => other,
        // Format 1 wrote the sequence number alone.
        Err(_) if codec::decode::<u64>(MARKER_KEY, payload).is_ok() => 1,
        Err(e) => return Err(format!("the commit marker at offset {offset} is unreadable: {e}")),
    };
    Err(format!(
        "the commit marker at offset {offset} was written in state format {format}, this build \
         reads format {}: a changelog cannot be restored across formats; replay the input \
         topics into a new group (`--group`)",
        codec::FORMAT_VERSION
    ))
}

/// True for state keys that never go to the changelog (local bookkeeping).
pub fn is_local(key: &[u8]) -> bool {
    key == Key::Meta(MetaKey::ChangelogOffset).encode().as_slice()
}

/// Folds changelog records into store batches, holding back records after the last marker.
#[derive(Debug, Default)]
pub struct Restorer {
    pending: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ready: WriteBatch,
    /// Offset just after the last marker applied.
    next_offset: Option<i64>,
    pub last_seq: Option<u64>,
    pub records: u64,
    /// The first undecodable seen pack.
    pub corrupt: Option<String>,
    /// Keys of the seen packs after the last marker.
    pending_packs: Vec<Vec<u8>>,
    /// Restoring onto an empty store: batches leave the changelog position out, and the
    /// last one is kept here, written only once the derived keys are rebuilt ([`restore`]).
    defer_offset: bool,
    deferred_offset: Option<i64>,
}

impl Restorer {
    /// A restorer for a store that has applied the changelog up to `local_offset` (0: none
    /// of it, an empty store).
    pub fn onto(local_offset: i64) -> Restorer {
        Restorer { defer_offset: local_offset == 0, ..Restorer::default() }
    }

    /// Takes one changelog record, and writes to `store` what is complete and enough for a
    /// batch.
    pub fn apply(
        &mut self,
        store: &dyn KvStore,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StateError> {
        self.record(offset, key, value);
        match self.take_batch(false) {
            Some(batch) => self.write(store, batch),
            None => Ok(()),
        }
    }

    /// Writes what is left; onto an empty store, then rebuilds the derived keys and records
    /// the position, returning how many derived keys it put.
    pub fn finish(&mut self, store: &dyn KvStore) -> Result<Option<u64>, StateError> {
        if let Some(batch) = self.take_batch(true) {
            self.write(store, batch)?;
        }
        let Some(next) = self.deferred_offset.take() else { return Ok(None) };
        let derived = rebuild_derived(store)?;
        let mut batch = WriteBatch::new();
        batch.put(Key::Meta(MetaKey::ChangelogOffset).encode(), codec::encode(&next));
        store.write(batch)?;
        Ok(Some(derived))
    }

    /// Writes a restored batch; catching up, with its derived keys' changes.
    fn write(&self, store: &dyn KvStore, mut batch: WriteBatch) -> Result<(), StateError> {
        if !self.defer_offset {
            add_derived(store, &mut batch)?;
        }
        store.write(batch)
    }

    /// Takes one changelog record.
    pub fn record(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) {
        self.records += 1;
        if key == FENCE_KEY {
            return;
        }
        if key.starts_with(SEEN_PACK_PREFIX) {
            // A pack's entries count as if they had come one by one; the pack key itself is
            // pending too, so a torn pack is deleted along with its entries. A tombstone (an
            // expired pack) changes no state. An undecodable pack is a corrupt changelog,
            // reported when the restore ends.
            let Some(value) = value else { return };
            match codec::decode::<Vec<(Vec<u8>, Option<Vec<u8>>)>>(key, value) {
                Ok(entries) => {
                    self.pending.extend(entries);
                    self.pending_packs.push(key.to_vec());
                }
                Err(e) => {
                    self.corrupt.get_or_insert(e.to_string());
                }
            }
            return;
        }
        if key == MARKER_KEY {
            for (k, v) in self.pending.drain(..) {
                match v {
                    Some(v) => self.ready.put(k, v),
                    None => self.ready.delete(k),
                }
            }
            self.pending_packs.clear();
            self.last_seq = match value.map(|v| marker_seq(offset, v)) {
                Some(Ok(seq)) => Some(seq),
                Some(Err(why)) => {
                    self.corrupt.get_or_insert(why);
                    None
                }
                None => None,
            };
            self.next_offset = Some(offset + 1);
        } else {
            self.pending.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        }
    }

    /// Takes the applied records as a batch that also records the changelog position (unless
    /// that is deferred), when there are enough of them (`force`: whenever there is anything).
    pub fn take_batch(&mut self, force: bool) -> Option<WriteBatch> {
        let next = self.next_offset?;
        if !force && self.ready.len() < RESTORE_BATCH_OPS {
            return None;
        }
        let mut batch = std::mem::take(&mut self.ready);
        if self.defer_offset {
            self.deferred_offset = Some(next);
        } else {
            batch.put(Key::Meta(MetaKey::ChangelogOffset).encode(), codec::encode(&next));
        }
        self.next_offset = None;
        Some(batch)
    }

    /// Keys written after the last marker: a torn commit to overwrite.
    pub fn torn_keys(&self) -> Vec<Vec<u8>> {
        let set: BTreeSet<&Vec<u8>> =
            self.pending.iter().map(|(k, _)| k).chain(self.pending_packs.iter()).collect();
        set.into_iter().cloned().collect()
    }
}

/// What restoring found.
#[derive(Debug)]
pub struct Restored {
    /// Keys of a torn commit, to be overwritten with the store's values by the next commit.
    pub torn: Vec<Vec<u8>>,
    /// Sequence number of the last complete commit (None: the shard never committed).
    pub last_seq: Option<u64>,
    pub records: u64,
}

/// The offset the local store has applied the changelog up to.
pub fn local_offset(store: &dyn KvStore) -> Result<i64, KafkaError> {
    let key = Key::Meta(MetaKey::ChangelogOffset).encode();
    Ok(match store.get(&key)? {
        Some(b) => codec::decode(&key, &b)?,
        None => 0,
    })
}

/// Whether `store` holds state but no changelog position: what a restore onto an empty store
/// leaves when it dies before its end (its batches carry no position, see [`restore`]). Such a
/// store is discarded and restored afresh: re-applying the changelog over it would be exact
/// only while the changelog still holds every record it was built from, and compaction may
/// have dropped a tombstone since.
pub fn holds_unpositioned_state(store: &dyn KvStore) -> Result<bool, KafkaError> {
    if local_offset(store)? != 0 {
        return Ok(false);
    }
    let format = Key::Meta(MetaKey::FormatVersion).encode();
    Ok(store.scan(&[], &[], 2)?.iter().any(|(k, _)| *k != format))
}

/// Brings `store` up to `fence` — the offset of the fence record the new owner just wrote,
/// which is the partition's end — from the offset it has already applied. With transactions,
/// writing the fence has also fenced earlier owners, so no open transaction holds the end
/// back.
///
/// Derived keys ([`crate::rules::derived`]) are rebuilt from the restored entries. Catching
/// up from a position, each batch brings its own changes ([`add_derived`], a read of each
/// restored entry's previous value). Onto an empty store (a new owner's first restore), one
/// scan at the end rebuilds them all ([`rebuild_derived`]); the batches before it carry no
/// changelog position, the position is written after the rebuild. A crash before then leaves
/// state without a position, which the next owner discards ([`holds_unpositioned_state`])
/// before restoring from the start again.
pub fn restore(
    store: &dyn KvStore,
    clients: &Clients,
    topic: &str,
    shard: u32,
    fence: i64,
    metrics: Option<&Metrics>,
) -> Result<Restored, KafkaError> {
    let start = local_offset(store)?;
    let high = fence + 1;
    let mut r = Restorer::onto(start);
    // Records left before the fence, for `shopscore_restore_remaining_records`.
    let remaining = |next: i64| {
        if let Some(m) = metrics {
            m.set_restore_remaining(shard, (fence - next).max(0));
        }
    };
    remaining(start);
    if start < high {
        let consumer: BaseConsumer =
            clients.restorer().create().context(|| "creating a changelog reader".into())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, shard as i32, Offset::Offset(start))
            .context(|| "building the restore assignment".into())?;
        consumer.assign(&tpl).context(|| format!("assigning changelog {topic:?} partition {shard}"))?;
        let delay = restore_delay();
        let began = Instant::now();
        let (mut last_progress, mut last_log, mut last_gauge) = (began, began, began);
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    if let Some(d) = delay {
                        std::thread::sleep(d);
                    }
                    last_progress = Instant::now();
                    if last_progress.duration_since(last_gauge) >= RESTORE_GAUGE_EVERY {
                        last_gauge = last_progress;
                        remaining(m.offset() + 1);
                    }
                    if last_log.elapsed() >= RESTORE_PROGRESS_EVERY {
                        last_log = Instant::now();
                        let secs = began.elapsed().as_secs_f64().max(1e-9);
                        tracing::info!(
                            shard,
                            offset = m.offset(),
                            fence,
                            records = r.records,
                            records_per_s = (r.records as f64 / secs) as u64,
                            "restoring shard state"
                        );
                    }
                    r.apply(store, m.offset(), m.key().unwrap_or_default(), m.payload())?;
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                // The end is the fence's offset: EOF events follow the broker's reported end,
                // which tansu 0.6 gets wrong.
                Some(Err(RdError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    return Err(KafkaError::Client {
                        context: format!("restoring shard {shard} from {topic:?}"),
                        source: e,
                    })
                }
                None if last_progress.elapsed() > RESTORE_STALL => {
                    let at = consumer
                        .position()
                        .ok()
                        .and_then(|tpl| tpl.find_partition(topic, shard as i32).map(|e| e.offset()))
                        .and_then(|o| o.to_raw())
                        .map_or_else(|| start.to_string(), |o| o.to_string());
                    return Err(KafkaError::Shard {
                        shard,
                        why: format!(
                            "restoring from {topic:?} partition {shard} stalled for {RESTORE_STALL:?} at \
                             offset {at}, before this owner's fence record at offset {fence}: nothing more \
                             could be read. With transactions this is an open transaction in that \
                             partition holding read_committed readers back (a broker aborts a dead \
                             producer's transaction after its transaction.timeout.ms; tansu's main \
                             build never does); otherwise the broker stopped answering"
                        ),
                    });
                }
                None => {}
            }
        }
    }
    if let Some(why) = r.corrupt.take() {
        return Err(KafkaError::Shard { shard, why: format!("changelog {topic:?}: {why}") });
    }
    let began = Instant::now();
    remaining(fence);
    if let Some(derived) = r.finish(store)? {
        tracing::info!(shard, derived, ms = began.elapsed().as_millis() as u64, "derived keys rebuilt");
    }
    Ok(Restored { torn: r.torn_keys(), last_seq: r.last_seq, records: r.records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::derived::is_derived;
    use crate::state::keys::TimerKind;
    use crate::state::memory::MemStore;

    #[test]
    fn applies_up_to_last_marker_and_reports_torn_keys() {
        let mut r = Restorer::default();
        r.record(0, b"a", Some(b"1"));
        r.record(1, b"b", Some(b"1"));
        r.record(2, MARKER_KEY, Some(&marker_payload(1)));
        r.record(3, b"a", None);
        r.record(4, MARKER_KEY, Some(&marker_payload(2)));
        r.record(5, b"c", Some(b"torn"));
        r.record(6, b"b", Some(b"torn"));
        let store = MemStore::default();
        store.write(r.take_batch(true).unwrap()).unwrap();
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(store.get(b"b").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"c").unwrap(), None);
        assert_eq!(local_offset(&store).unwrap(), 5);
        assert_eq!(r.last_seq, Some(2));
        assert_eq!(r.torn_keys(), vec![b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn seen_packs_restore_as_their_keys_and_tear_key_by_key() {
        let seen = |id: &str| Key::Seen(id).encode();
        let t = codec::encode(&Timestamp(1));
        let ids: Vec<Vec<u8>> = (0..20_000).map(|i| seen(&format!("event-{i}"))).collect();
        assert!(ids.iter().all(|k| is_packed(k)));
        assert!(!is_packed(&Key::Meta(MetaKey::KafkaProgress).encode()));
        let packs = seen_packs(7, ids.iter().map(|k| (k.as_slice(), Some(t.as_slice()))));
        assert!(packs.len() > 1, "20 000 keys need more than one 256 KiB pack");
        for (i, p) in packs.iter().enumerate() {
            assert_eq!(p.key, seen_pack_key(7, i as u32));
            assert!(p.payload.len() <= RECORD_BYTES + 16);
            assert_eq!(p.max_time, Timestamp(1));
        }
        let mut r = Restorer::default();
        let mut offset = 0;
        for p in &packs {
            r.record(offset, &p.key, Some(&p.payload));
            offset += 1;
        }
        // Entries of different days go to different packs.
        let day = |d: i32| codec::encode(&Day(d).start());
        let (d1, d2) = (day(100), day(101));
        let split = seen_packs(
            9,
            [(ids[0].as_slice(), Some(d2.as_slice())), (ids[1].as_slice(), Some(d1.as_slice()))],
        );
        assert_eq!(
            split.iter().map(|p| (p.max_time, p.entries)).collect::<Vec<_>>(),
            [(Day(100).start(), 1), (Day(101).start(), 1)]
        );
        // An expired pack's tombstone changes nothing.
        r.record(offset, &seen_pack_key(3, 0), None);
        r.record(offset + 1, MARKER_KEY, Some(&marker_payload(7)));
        // A torn commit: one pack of two keys, no marker.
        let later = codec::encode(&Timestamp(9));
        let torn =
            seen_packs(8, [(seen("x").as_slice(), Some(later.as_slice())), (seen("y").as_slice(), None)]);
        assert_eq!(torn.iter().map(|p| p.max_time).max(), Some(Timestamp(9)));
        for (i, p) in torn.iter().enumerate() {
            r.record(offset + 2 + i as i64, &p.key, Some(&p.payload));
        }
        let store = MemStore::default();
        store.write(r.take_batch(true).unwrap()).unwrap();
        assert!(ids.iter().all(|k| store.get(k).unwrap() == Some(t.clone())));
        assert_eq!(store.get(&seen("x")).unwrap(), None);
        // The torn packs' entries and the packs themselves are overwritten by the next owner.
        let mut expected = vec![seen("x"), seen("y"), seen_pack_key(8, 0), seen_pack_key(8, 1)];
        expected.sort();
        assert_eq!(r.torn_keys(), expected);
        assert!(r.corrupt.is_none());
        r.record(offset + 4, &torn[0].key, Some(b"\xff\xff\xff"));
        assert!(r.corrupt.is_some(), "an undecodable pack is reported");
    }

    #[test]
    fn torn_records_then_corrections_restore_to_the_corrected_state() {
        // Owner 1 commits b=1, dies writing b=torn; owner 2 overwrites b with 1 and commits.
        let mut r = Restorer::default();
        r.record(0, b"b", Some(b"1"));
        r.record(1, MARKER_KEY, Some(&marker_payload(1)));
        r.record(2, b"b", Some(b"torn"));
        r.record(3, b"b", Some(b"1"));
        r.record(4, b"d", Some(b"2"));
        r.record(5, MARKER_KEY, Some(&marker_payload(2)));
        let store = MemStore::default();
        store.write(r.take_batch(true).unwrap()).unwrap();
        assert_eq!(store.get(b"b").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"d").unwrap(), Some(b"2".to_vec()));
        assert!(r.torn_keys().is_empty());
    }

    #[test]
    fn a_changelog_of_another_state_format_is_refused() {
        let mut r = Restorer::default();
        r.record(0, b"b", Some(b"1"));
        r.record(1, MARKER_KEY, Some(&marker_payload(1)));
        assert_eq!((r.last_seq, r.corrupt.as_deref()), (Some(1), None));
        // Format 1 wrote the sequence number alone.
        r.record(2, MARKER_KEY, Some(&codec::encode(&2u64)));
        let why = r.corrupt.take().expect("a format-1 marker is refused");
        assert!(
            why.contains("offset 2") && why.contains("state format 1") && why.contains("new group"),
            "{why}"
        );
        r.record(3, MARKER_KEY, Some(&codec::encode(&(3u64, codec::FORMAT_VERSION + 1))));
        let why = r.corrupt.take().expect("a newer format is refused");
        assert!(why.contains(&format!("state format {}", codec::FORMAT_VERSION + 1)), "{why}");
        r.record(4, MARKER_KEY, Some(b""));
        let why = r.corrupt.take().expect("an empty marker is refused");
        assert!(why.contains("offset 4 is unreadable"), "{why}");
    }

    #[test]
    fn restores_onto_an_empty_store_rebuild_derived_keys_once_and_survive_a_crash_before_it() {
        use crate::rules::compensation::{BuyerOrders, PendingOrder};
        let bucket = |day: i32| Key::DayBucket { shop: "s", day: Day(day) }.encode();
        let buyer = Key::BuyerOrders { shop: "s", buyer: "b1" }.encode();
        let pending = |at: i64| {
            codec::encode(&BuyerOrders {
                pending: vec![PendingOrder {
                    paid: Timestamp(1),
                    order_id: "o1".into(),
                    deadline: Timestamp(at),
                }],
                timer_at: Some(Timestamp(at)),
            })
        };
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (bucket(3), Some(vec![1])),
            (buyer.clone(), Some(pending(30))),
            (MARKER_KEY.to_vec(), Some(marker_payload(1))),
            (bucket(4), Some(vec![1])),
            (buyer.clone(), Some(pending(40))),
            (MARKER_KEY.to_vec(), Some(marker_payload(2))),
            (bucket(3), None),
            (MARKER_KEY.to_vec(), Some(marker_payload(3))),
        ];
        let feed = |store: &MemStore, r: &mut Restorer, range: std::ops::Range<usize>| {
            for i in range {
                let (k, v) = &records[i];
                r.apply(store, i as i64, k, v.as_deref()).unwrap();
            }
        };
        let everything = |store: &MemStore| store.scan(&[], &[], usize::MAX).unwrap();

        // A new owner on an empty store: the derived keys are rebuilt once, at the end.
        let clean = MemStore::default();
        let mut r = Restorer::onto(local_offset(&clean).unwrap());
        feed(&clean, &mut r, 0..records.len());
        assert_eq!(r.finish(&clean).unwrap(), Some(2));
        assert_eq!(local_offset(&clean).unwrap(), 8);
        let timer = Key::Timer { at: Timestamp(40), kind: TimerKind::GroupDecision, shop: "s", id: "b1" };
        let derived: Vec<Vec<u8>> =
            everything(&clean).into_iter().map(|(k, _)| k).filter(|k| is_derived(k)).collect();
        assert_eq!(derived, vec![Key::DayShop { day: Day(4), shop: "s" }.encode(), timer.encode()]);

        // Killed after writing its batches, before the rebuild: the position is still 0. The
        // next owner discards such a store (`holds_unpositioned_state`, tested below); applying
        // everything again over it and rebuilding gives the same store too, while the
        // changelog is whole.
        let crashed = MemStore::default();
        let mut r = Restorer::onto(0);
        feed(&crashed, &mut r, 0..6);
        let batch = r.take_batch(true).unwrap();
        r.write(&crashed, batch).unwrap();
        assert_eq!(local_offset(&crashed).unwrap(), 0, "no position before the rebuild");
        assert!(crashed.get(&bucket(4)).unwrap().is_some());
        let mut again = Restorer::onto(local_offset(&crashed).unwrap());
        feed(&crashed, &mut again, 0..records.len());
        again.finish(&crashed).unwrap();
        assert_eq!(everything(&crashed), everything(&clean));

        // Catching up from a position moves the derived keys batch by batch: no rebuild.
        let caught_up = MemStore::default();
        let mut first = Restorer::onto(0);
        feed(&caught_up, &mut first, 0..3);
        first.finish(&caught_up).unwrap();
        let mut rest = Restorer::onto(local_offset(&caught_up).unwrap());
        feed(&caught_up, &mut rest, 3..records.len());
        assert_eq!(rest.finish(&caught_up).unwrap(), None);
        assert_eq!(everything(&caught_up), everything(&clean));
    }

    #[test]
    fn state_without_a_position_is_recognised() {
        let store = MemStore::default();
        assert!(!holds_unpositioned_state(&store).unwrap(), "empty");
        let mut format = WriteBatch::new();
        format.put(Key::Meta(MetaKey::FormatVersion).encode(), codec::encode(&codec::FORMAT_VERSION));
        store.write(format).unwrap();
        assert!(!holds_unpositioned_state(&store).unwrap(), "only the format version");
        // A restore onto it that died after writing a batch (positions deferred).
        let mut r = Restorer::onto(0);
        r.apply(&store, 0, b"a", Some(b"1")).unwrap();
        r.apply(&store, 1, MARKER_KEY, Some(&marker_payload(1))).unwrap();
        let batch = r.take_batch(true).unwrap();
        r.write(&store, batch).unwrap();
        assert!(holds_unpositioned_state(&store).unwrap(), "entries, no position");
        r.finish(&store).unwrap();
        assert!(!holds_unpositioned_state(&store).unwrap(), "restored: positioned");
    }
}
