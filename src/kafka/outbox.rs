//! Exactly-once outputs without transactions (brokers such as tansu that lack `EndTxn`), and
//! with transactions on a broker that does not isolate them (`kafka.transactional_outbox`).
//!
//! A commit first makes its outputs part of the shard's state — the **outbox**: the records,
//! each with an id header `{shard}:{commit}:{index}`, and the end offsets of every output
//! partition they may go to, read before any is sent — then writes the changelog, then sends
//! the outputs. The next commit deletes the outbox. A new owner that finds an outbox reads
//! each of those partitions from the recorded offset to its end and sends only the records
//! whose ids are not there. The outputs are thus fixed before they are sent, and each
//! reaches its topic once, whatever the moment of a crash.

use super::changelog::chunked;
use super::client::Clients;
use super::records::{KafkaRecord, ID_HEADER};
use super::scan_end::{fetched_end, positions, scan_from, ScanEnd};
use super::{Context, KafkaError};
use crate::state::keys::{Key, MetaKey};
use crate::state::overlay::Overlay;
use crate::state::StateError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

const SCAN_STALL: Duration = Duration::from_secs(300);

/// The outputs of one commit, persisted before they are sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub shard: u32,
    pub seq: u64,
    /// `(topic, partition, end offset before sending)` for every partition of every topic
    /// the records go to.
    pub starts: Vec<(String, i32, i64)>,
    pub records: Vec<KafkaRecord>,
}

/// The outbox as stored under [`MetaKey::Outbox`]; its records are in `chunks` chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OutboxHead {
    shard: u32,
    seq: u64,
    starts: Vec<(String, i32, i64)>,
    chunks: u32,
}

fn head(ov: &mut Overlay<'_>) -> Result<Option<OutboxHead>, StateError> {
    ov.get(&Key::Meta(MetaKey::Outbox))
}

/// Puts `outbox` into the state delta (replacing the previous one).
pub fn save(ov: &mut Overlay<'_>, outbox: &Outbox) -> Result<(), StateError> {
    let old_chunks = head(ov)?.map_or(0, |h| h.chunks);
    // Each chunk is one changelog record: an outbox of a large commit is split.
    let chunks = chunked(&outbox.records, |r| r.payload.len() + r.key.as_ref().map_or(0, Vec::len) + 64);
    for (i, chunk) in chunks.iter().enumerate() {
        ov.put(&Key::Meta(MetaKey::OutboxChunk(i as u32)), chunk);
    }
    for i in chunks.len() as u32..old_chunks {
        ov.delete(&Key::Meta(MetaKey::OutboxChunk(i)));
    }
    let head = OutboxHead {
        shard: outbox.shard,
        seq: outbox.seq,
        starts: outbox.starts.clone(),
        chunks: chunks.len() as u32,
    };
    ov.put(&Key::Meta(MetaKey::Outbox), &head);
    Ok(())
}

/// The stored outbox, if any.
pub fn load(ov: &mut Overlay<'_>) -> Result<Option<Outbox>, StateError> {
    let Some(h) = head(ov)? else { return Ok(None) };
    let mut records = Vec::new();
    for i in 0..h.chunks {
        let chunk: Vec<KafkaRecord> = ov.get(&Key::Meta(MetaKey::OutboxChunk(i)))?.unwrap_or_default();
        records.extend(chunk);
    }
    Ok(Some(Outbox { shard: h.shard, seq: h.seq, starts: h.starts, records }))
}

/// Removes the stored outbox from the state delta.
pub fn clear(ov: &mut Overlay<'_>) -> Result<(), StateError> {
    if let Some(h) = head(ov)? {
        for i in 0..h.chunks {
            ov.delete(&Key::Meta(MetaKey::OutboxChunk(i)));
        }
        ov.delete(&Key::Meta(MetaKey::Outbox));
    }
    Ok(())
}

/// The id of record `index` of commit `seq` of `shard`.
pub fn record_id(shard: u32, seq: u64, index: usize) -> Vec<u8> {
    format!("{shard}:{seq}:{index}").into_bytes()
}

/// How long a topic's partition count is trusted before it is read again (partitions are
/// rarely added, but a record sent to a new one must have a recorded start).
const PARTITIONS_FOR: Duration = Duration::from_secs(60);

/// Reads the end offsets of every partition of the output topics a commit's records go to:
/// all partitions in one request (a `ListOffsets` for the latest offset, which is what
/// `fetch_watermarks` asks one partition at a time), with each topic's partition count
/// remembered for [`PARTITIONS_FOR`].
#[derive(Default)]
pub struct EndOffsets {
    partitions: BTreeMap<String, (i32, Instant)>,
}

impl EndOffsets {
    pub fn read(
        &mut self,
        consumer: &BaseConsumer,
        records: &[KafkaRecord],
    ) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let topics: BTreeSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let parts = match self.partitions.get(topic) {
                Some(&(n, at)) if at.elapsed() < PARTITIONS_FOR => n,
                _ => {
                    let n = super::topics::partition_count_retried(consumer, topic)?.unwrap_or(0) as i32;
                    self.partitions.insert(topic.to_owned(), (n, Instant::now()));
                    n
                }
            };
            for p in 0..parts {
                // In a request for offsets by time, "the end" asks for the latest offset.
                tpl.add_partition_offset(topic, p, Offset::End)
                    .context(|| format!("listing {topic:?} partition {p}"))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        let ends = super::retry::retried(
            || "reading the end offsets of the output partitions".into(),
            || consumer.offsets_for_times(tpl.clone(), Duration::from_secs(10)),
        )?;
        let mut out = Vec::new();
        for e in ends.elements() {
            let Offset::Offset(end) = e.offset() else {
                return Err(KafkaError::Topics(format!(
                    "the broker gave no end offset for {:?} partition {} ({:?})",
                    e.topic(),
                    e.partition(),
                    e.error()
                )));
            };
            out.push((e.topic().to_owned(), e.partition(), end));
        }
        Ok(out)
    }
}

/// How often a scan that has not ended logs which partitions it waits for.
const SCAN_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How often a scan reads its consumer's positions and the partitions' last reported ends
/// (each a lock in librdkafka per partition: not once per record).
const OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// The outbox records that are not yet in their topics.
///
/// The scan reads each partition from one offset before its recorded start ([`scan_from`]).
/// It ends when every record is found, or when every partition is read through to the end the
/// broker reported ([`ScanEnd`]: never on quiet time alone, which let a slow broker make
/// delivered records look missing). A partition that never gets there, because its broker
/// does not answer or stops answering below that end, fails the shard after [`SCAN_STALL`]
/// rather than re-sending.
pub fn missing(clients: &Clients, outbox: &Outbox) -> Result<Vec<KafkaRecord>, KafkaError> {
    let consumer: BaseConsumer =
        clients.outbox_scanner().create().context(|| "creating an outbox reader".into())?;
    let mut tpl = TopicPartitionList::new();
    for (topic, p, start) in &outbox.starts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(scan_from(*start)))
            .context(|| "building the outbox scan".into())?;
    }
    let mut found: HashSet<Vec<u8>> = HashSet::new();
    let prefix = format!("{}:{}:", outbox.shard, outbox.seq).into_bytes();
    let wanted = outbox.records.len();
    if !outbox.starts.is_empty() {
        consumer.assign(&tpl).context(|| "assigning the outbox scan".into())?;
        let mut progress = ScanEnd::new(&outbox.starts);
        let began = Instant::now();
        let mut last_report = began;
        let mut observed: Option<Instant> = None;
        while found.len() < wanted && !progress.ended(Instant::now()) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    progress.record(m.topic(), m.partition(), m.offset(), Instant::now());
                    if let Some(h) = m.headers() {
                        for hdr in h.iter() {
                            if hdr.key == ID_HEADER {
                                if let Some(v) = hdr.value.filter(|v| v.starts_with(&prefix)) {
                                    found.insert(v.to_vec());
                                }
                            }
                        }
                    }
                }
                Some(Err(RdError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    return Err(KafkaError::Client { context: "scanning output topics".into(), source: e })
                }
            }
            if observed.is_none_or(|o| o.elapsed() >= OBSERVE_EVERY) {
                let now = Instant::now();
                observed = Some(now);
                for (topic, p, next) in positions(&consumer)? {
                    progress.position(&topic, p, next);
                }
                progress.observe(|topic, p| fetched_end(&consumer, topic, p), now);
            }
            if last_report.elapsed() >= SCAN_REPORT_EVERY {
                last_report = Instant::now();
                tracing::warn!(
                    shard = outbox.shard,
                    commit = outbox.seq,
                    found = found.len(),
                    records = wanted,
                    waiting = %progress.waiting(Instant::now()),
                    "the outbox scan is still waiting for partitions' ends"
                );
            }
            if began.elapsed() > SCAN_STALL {
                return Err(KafkaError::Shard {
                    shard: outbox.shard,
                    why: "scanning the output topics for delivered records took too long".into(),
                });
            }
        }
    }
    Ok(outbox
        .records
        .iter()
        .filter(|r| r.header(ID_HEADER).is_none_or(|id| !found.contains(id)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::changelog::RECORD_BYTES;
    use crate::state::memory::MemStore;
    use crate::state::{KvStore, WriteBatch};

    fn record(i: usize, bytes: usize) -> KafkaRecord {
        KafkaRecord {
            topic: "compensations".into(),
            key: Some(format!("o{i}").into_bytes()),
            payload: vec![b'x'; bytes],
            headers: vec![(ID_HEADER.into(), record_id(0, 1, i))],
        }
    }

    fn commit(store: &MemStore, ov: Overlay<'_>) {
        let mut ov = ov;
        let mut b = WriteBatch::new();
        ov.drain_into(&mut b).unwrap();
        store.write(b).unwrap();
    }

    #[test]
    fn a_large_outbox_is_chunked_and_a_smaller_one_leaves_no_stale_chunk() {
        let store = MemStore::default();
        let big = Outbox {
            shard: 0,
            seq: 1,
            starts: vec![("compensations".into(), 0, 7)],
            records: (0..300).map(|i| record(i, 4000)).collect(),
        };
        let mut ov = Overlay::new(&store);
        save(&mut ov, &big).unwrap();
        commit(&store, ov);
        let chunk_keys = |store: &MemStore| {
            (0..100u32)
                .filter(|&i| store.get(&Key::Meta(MetaKey::OutboxChunk(i)).encode()).unwrap().is_some())
                .count()
        };
        // 300 × ~4 KB = ~1.2 MB: more than one 256 KiB chunk, every chunk under the limit.
        assert!(chunk_keys(&store) >= 5);
        for i in 0..chunk_keys(&store) as u32 {
            let v = store.get(&Key::Meta(MetaKey::OutboxChunk(i)).encode()).unwrap().unwrap();
            assert!(v.len() < 2 * RECORD_BYTES, "chunk {i}: {} bytes", v.len());
        }
        let mut ov = Overlay::new(&store);
        assert_eq!(load(&mut ov).unwrap(), Some(big));

        let small = Outbox { shard: 0, seq: 2, starts: Vec::new(), records: vec![record(0, 10)] };
        save(&mut ov, &small).unwrap();
        commit(&store, ov);
        assert_eq!(chunk_keys(&store), 1);
        let mut ov = Overlay::new(&store);
        assert_eq!(load(&mut ov).unwrap(), Some(small));
        clear(&mut ov).unwrap();
        commit(&store, ov);
        assert_eq!(chunk_keys(&store), 0);
        assert_eq!(load(&mut Overlay::new(&store)).unwrap(), None);
    }

    /// The end offsets read for an outbox, in one request for every partition, are those
    /// `fetch_watermarks` gives partition by partition; a topic no record goes to is left out.
    #[test]
    fn end_offsets_of_every_partition_in_one_request() {
        use rdkafka::mocking::MockCluster;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        use rdkafka::ClientConfig;
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("compensations", 3, 1).unwrap();
        mock.create_topic("shop-alerts", 2, 1).unwrap();
        let brokers = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        for (p, n) in [(0, 5), (1, 0), (2, 12)] {
            for _ in 0..n {
                producer.send(BaseRecord::<(), _>::to("compensations").partition(p).payload("x")).unwrap();
            }
        }
        producer.send(BaseRecord::<(), _>::to("shop-alerts").partition(1).payload("x")).unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", "ends").create().unwrap();

        let mut ends = EndOffsets::default();
        let got = ends.read(&consumer, &[record(0, 10), record(1, 10)]).unwrap();
        let want: Vec<(String, i32, i64)> = (0..3)
            .map(|p| {
                let (_, high) =
                    consumer.fetch_watermarks("compensations", p, Duration::from_secs(10)).unwrap();
                ("compensations".to_owned(), p, high)
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(want.iter().map(|e| e.2).collect::<Vec<_>>(), [5, 0, 12]);
        // The partition count is remembered: a second read asks for offsets only.
        assert!(ends.partitions.contains_key("compensations"));
        assert_eq!(ends.read(&consumer, &[record(2, 10)]).unwrap(), want);
    }
}
