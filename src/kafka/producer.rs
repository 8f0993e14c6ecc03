//! A shard's producer: sends changelog and output records, reports the offset of the last
//! commit marker and any delivery failure, and wraps the transaction calls. Idempotence keeps
//! each partition's records in send order without duplicates from retries.

use super::client::Clients;
use super::records::KafkaRecord;
use super::{Context, KafkaError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TXN_TIMEOUT: Duration = Duration::from_secs(60);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Opaque tag of a marker record (its offset is remembered).
const MARKER: usize = 1;
/// Opaque tag of a fence record (its offset is remembered).
const FENCE: usize = 2;
/// Opaque tag of an output record (the time of the last acknowledgement is remembered).
const OUTPUT: usize = 3;

/// Delivery reports of one producer.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    marker_offset: AtomicI64,
    fence_offset: AtomicI64,
    last_output_ack: Mutex<Option<Instant>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        match result {
            Ok(m) if tag == MARKER => self.marker_offset.store(m.offset(), Ordering::SeqCst),
            Ok(m) if tag == FENCE => self.fence_offset.store(m.offset(), Ordering::SeqCst),
            Ok(_) if tag == OUTPUT => {
                *self.last_output_ack.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now())
            }
            Ok(_) => {}
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| {
                    format!("{e} (topic {:?} partition {})", m.topic(), m.partition())
                });
            }
        }
    }
}

/// The producer of one shard.
pub struct ShardProducer {
    inner: ThreadedProducer<Deliveries>,
    shard: u32,
    transactional: bool,
}

impl ShardProducer {
    /// Creates the producer; with transactions, `init_transactions` fences every earlier
    /// producer with the same transactional id and aborts what it left open.
    pub fn new(clients: &Clients, shard: u32, transactional: bool) -> Result<ShardProducer, KafkaError> {
        let inner: ThreadedProducer<Deliveries> = clients
            .producer(shard, transactional)
            .create_with_context(Deliveries::default())
            .context(|| format!("creating the producer of shard {shard}"))?;
        if transactional {
            inner.init_transactions(TXN_TIMEOUT).context(|| {
                format!(
                    "initializing transactions for {} (does the broker support transactions? \
                     set kafka.transactional = false for brokers without them)",
                    clients.transactional_id(shard)
                )
            })?;
        }
        Ok(ShardProducer { inner, shard, transactional })
    }

    pub fn transactional(&self) -> bool {
        self.transactional
    }

    /// Queues one record (waiting while the local queue is full).
    pub fn send(&self, r: &KafkaRecord, partition: Option<i32>) -> Result<(), KafkaError> {
        self.send_tagged(&r.topic, r.key.as_deref(), Some(&r.payload), &r.headers, partition, OUTPUT)
    }

    /// Queues output records in order.
    pub fn send_all(&self, records: &[KafkaRecord]) -> Result<(), KafkaError> {
        records.iter().try_for_each(|r| self.send(r, None))
    }

    /// When an output record was last acknowledged (the benchmark's end of processing).
    pub fn last_output_ack(&self) -> Option<Instant> {
        *self.inner.context().last_output_ack.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a changelog record: a state key with its value, or a tombstone.
    pub fn send_state(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), KafkaError> {
        self.send_tagged(topic, Some(key), value, &[], Some(self.shard as i32), 0)
    }

    /// Queues a commit marker; its offset is reported by [`ShardProducer::marker_offset`]
    /// once flushed.
    pub fn send_marker(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
        self.send_tagged(topic, Some(key), Some(value), &[], Some(self.shard as i32), MARKER)
    }

    fn send_tagged(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(String, Vec<u8>)],
        partition: Option<i32>,
        tag: usize,
    ) -> Result<(), KafkaError> {
        let mut rec: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, tag);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(p) = payload {
            rec = rec.payload(p);
        }
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in headers {
                h = h.insert(Header { key: k, value: Some(v.as_slice()) });
            }
            rec = rec.headers(h);
        }
        loop {
            match self.inner.send(rec) {
                Ok(()) => return Ok(()),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(KafkaError::Client {
                        context: format!("producing to {topic:?} (shard {})", self.shard),
                        source: e,
                    })
                }
            }
        }
    }

    /// Waits until everything queued is acknowledged; fails if anything was not.
    pub fn flush(&self) -> Result<(), KafkaError> {
        self.wait_delivered().context(|| format!("flushing the producer of shard {}", self.shard))?;
        let ctx = self.inner.context();
        if ctx.failed.swap(0, Ordering::SeqCst) > 0 {
            let why = ctx.first_error.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
            return Err(KafkaError::Shard {
                shard: self.shard,
                why: format!("a record was not delivered: {why}"),
            });
        }
        Ok(())
    }

    /// Waits until every queued record is delivered (or failed), with librdkafka's own flush.
    ///
    /// rust-rdkafka's `Producer::flush` calls `rd_kafka_flush` with no timeout and then polls for
    /// up to 100 ms; a `ThreadedProducer`'s thread serves the delivery reports, so that poll
    /// sleeps its full 100 ms on every flush (measured here: 100 ms per commit even for two
    /// records). Given the timeout, `rd_kafka_flush` instead treats `linger.ms` as elapsed and,
    /// as delivery reports are events here, waits for the count of undelivered records to reach
    /// zero — which happens once the producer thread has run every delivery callback.
    fn wait_delivered(&self) -> Result<(), RdError> {
        let timeout_ms = i32::try_from(FLUSH_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the pointer is this live producer's own handle; `rd_kafka_flush` may be
        // called from any thread while another thread polls.
        let code = unsafe { rdkafka::bindings::rd_kafka_flush(self.inner.client().native_ptr(), timeout_ms) };
        match RDKafkaErrorCode::from(code) {
            RDKafkaErrorCode::NoError => Ok(()),
            e => Err(RdError::Flush(e)),
        }
    }

    /// Appends a fence record to the shard's changelog partition and returns its offset: the
    /// exact end of the partition for a restore (brokers' reported end offsets are not
    /// trusted: tansu 0.6 reports the last batch's first offset).
    pub fn fence(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<i64, KafkaError> {
        if self.transactional {
            self.begin()?;
        }
        self.send_tagged(topic, Some(key), Some(value), &[], Some(self.shard as i32), FENCE)?;
        if self.transactional {
            self.commit()?;
        } else {
            self.flush()?;
        }
        Ok(self.inner.context().fence_offset.load(Ordering::SeqCst))
    }

    /// Offset of the last acknowledged marker.
    pub fn marker_offset(&self) -> i64 {
        self.inner.context().marker_offset.load(Ordering::SeqCst)
    }

    /// Checks, before this owner writes anything, that the broker can complete a transaction:
    /// commits a transaction that holds no record, only an offset commit (offset 0 of this
    /// shard's changelog partition for the group of `consumer`, the restorer's, which nothing
    /// reads), so librdkafka has to send `EndTxn`. A broker without transactions (tansu 0.6.0)
    /// accepts `InitProducerId` and transactional records, and only fails at `EndTxn`: the
    /// fence record was then left in the changelog as an unfinished transaction that every
    /// later `read_committed` restore stalled at, even after the operator had set
    /// `kafka.transactional = false` as the error said (seen in session 18). Without
    /// transactions, nothing to check.
    pub fn check_transactions(&self, consumer: &BaseConsumer, changelog: &str) -> Result<(), KafkaError> {
        if !self.transactional {
            return Ok(());
        }
        let Some(group) = consumer.group_metadata() else {
            return Err(KafkaError::Shard {
                shard: self.shard,
                why: "the restorer has no consumer group metadata for the transaction check".into(),
            });
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, self.shard as i32, Offset::Offset(0))
            .context(|| "building the transaction check".into())?;
        self.begin()?;
        let done = self
            .inner
            .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)
            .and_then(|()| self.inner.commit_transaction(TXN_TIMEOUT));
        done.map_err(|e| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion) => {
                KafkaError::Shard {
                    shard: self.shard,
                    why: format!(
                        "the broker cannot complete a transaction ({e}). kafka.transactional = true \
                         needs a broker with transactions (Apache Kafka 0.11 or later); for one \
                         without them, such as tansu 0.6.0, set kafka.transactional = false \
                         (SHOPSCORE__KAFKA__TRANSACTIONAL=false). Nothing was written to the changelog"
                    ),
                }
            }
            _ => KafkaError::Client {
                context: format!("checking that the broker completes transactions (shard {})", self.shard),
                source: e,
            },
        })
    }

    pub fn begin(&self) -> Result<(), KafkaError> {
        self.inner.begin_transaction().context(|| format!("beginning a transaction (shard {})", self.shard))
    }

    /// Commits the open transaction (flushing first, so delivery reports are in).
    pub fn commit(&self) -> Result<(), KafkaError> {
        self.flush()?;
        self.inner
            .commit_transaction(TXN_TIMEOUT)
            .context(|| format!("committing the transaction of shard {}", self.shard))
    }

    /// Aborts the open transaction (after a failure; its records never become visible).
    pub fn abort(&self) -> Result<(), KafkaError> {
        self.inner
            .abort_transaction(TXN_TIMEOUT)
            .context(|| format!("aborting the transaction of shard {}", self.shard))
    }
}
