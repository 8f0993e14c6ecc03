//! Every librdkafka setting shopscore uses, built in one place per client role. The user's
//! `[kafka.client]` map comes first; the settings the commit protocol depends on are set after
//! it (validation already refuses them in the map).

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;

/// Where a reader of a partition from its start begins: offset 0, never `Offset::Beginning`.
/// On a broker whose log starts later (retention), offset 0 is out of range and the readers'
/// `auto.offset.reset = earliest` ([`Clients::reader`], inherited by the restorer) moves them
/// to the log start, as `Offset::Beginning` would. `Offset::Beginning` asks the broker for its
/// earliest offset instead. On tansu's main build a test reader starting there once began an
/// output partition at offset 17, skipping its first 17 records without any error (session
/// 26, in 1 of 6 probe runs; README → Brokers). tansu answers "earliest" with the batch whose
/// stored object is oldest by modification time, which, when several producers write one
/// partition, need not be the lowest offset: the likely cause.
pub const FIRST_OFFSET: i64 = 0;

/// Builds client configurations for one Kafka-mode process.
#[derive(Clone, Debug)]
pub struct Clients {
    brokers: String,
    group: String,
    extra: Vec<(String, String)>,
}

impl Clients {
    pub fn new(cfg: &KafkaConfig) -> Clients {
        Clients {
            brokers: cfg.brokers.clone(),
            group: cfg.group.clone(),
            extra: cfg.client.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    fn base(&self) -> ClientConfig {
        self.layered(&[])
    }

    /// A client's settings in layers: shopscore's `defaults`, then `[kafka.client]` over them,
    /// then the brokers (the caller sets what must be shopscore's after this).
    fn layered(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// The group member: joins `kafka.group` on the changelog topic; its assignment is the set
    /// of shards this instance owns. It never commits offsets (shard progress lives in the
    /// changelog) and its partitions stay paused. Session and heartbeat defaults may be
    /// overridden in `[kafka.client]`.
    pub fn member(&self) -> ClientConfig {
        let mut c = self.layered(&[
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("max.poll.interval.ms", "300000"),
        ]);
        c.set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest");
        c
    }

    /// Reads input topics at positions shopscore chooses (manual assignment, no group
    /// offsets), only committed records, reporting the end of each partition.
    pub fn reader(&self) -> ClientConfig {
        // Prefetch: up to 64 MiB or 100 000 records (`queued.min.messages`, librdkafka's
        // default) over every input partition together: each partition has its own queue
        // ([`super::reader::Reader`]), where librdkafka applies both per partition, so the
        // reader divides them by the number of input partitions. A 4 MiB queue capped fetching at ~70 000 records/s, 16 MiB cost about
        // a quarter of the end-to-end rate; it is also the largest part of Kafka mode's
        // memory, so `[kafka.client]` may set it lower. A prefetched record waits at most a
        // few seconds, far below `time.idle_timeout`, and an idle partition must also have
        // reported its end after its last record, so prefetching never makes one look idle.
        //
        // When the queue is full, librdkafka stops fetching for `fetch.queue.backoff.ms`, by
        // default a whole second: measured here (debug=fetch: "Fetch backoff for 1000ms:
        // Local: Queue full" on all 16 partitions at once), a 200 000-record bench then sat
        // ~0.8 s with nothing to read after the shards had drained the queue, and the process
        // used 60 % of the two cores. At 10 ms fetching resumes as soon as there is room.
        let mut c = self.layered(&[
            ("queued.max.messages.kbytes", "65536"),
            ("queued.min.messages", "100000"),
            ("fetch.wait.max.ms", "50"),
            ("fetch.queue.backoff.ms", "10"),
            // Partitions added to an input topic are noticed from this metadata (the run then
            // stops so that its restart reads them, `Reader::grown_inputs`): every 30 s rather
            // than librdkafka's 5 minutes, which would leave their records unread for longer
            // than the out-of-orderness bound.
            ("topic.metadata.refresh.interval.ms", "30000"),
        ]);
        c.set("group.id", format!("{}.reader", self.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        c
    }

    /// Reads the changelog from a given offset (restore), and topics' metadata and end offsets;
    /// `read_committed`, so an aborted commit is never restored.
    pub fn restorer(&self) -> ClientConfig {
        let mut c = self.reader();
        c.set("group.id", format!("{}.restore", self.group))
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "65536");
        c
    }

    /// Scans output topics for the records of a restored outbox (outbox recovery):
    /// `read_uncommitted`. A `read_committed` scan stops at the first open transaction of any
    /// producer (another shard's, or a dead instance's not yet fenced), and its end would then
    /// come before committed records behind it, which it would re-send. Uncommitted reads cannot
    /// make a missing record look present: an outbox is only restored with its commit, so on a
    /// broker that isolates transactions its outputs were committed with it, and on one that
    /// does not, whatever is visible is delivered to every reader.
    ///
    /// A partition's fetch answer may be as large as the whole answer (librdkafka's default
    /// `fetch.max.bytes`, 50 MiB), so the records from the recorded start to the end usually come
    /// in one answer: should a broker report a last batch's first offset as a partition's end
    /// (as earlier sessions took tansu 0.6's to do), an answer split just before that batch
    /// would let the scan reach "the end" without it ([`super::scan_end`]).
    pub fn outbox_scanner(&self) -> ClientConfig {
        let mut c = self.restorer();
        c.set("isolation.level", "read_uncommitted").set("max.partition.fetch.bytes", "52428800");
        c
    }

    /// The producer of one shard: idempotent (no duplicates or reordering from retries), and
    /// transactional with a stable id per shard when transactions are on, so a new owner's
    /// `init_transactions` fences and aborts whatever a crashed owner left open.
    ///
    /// Batching, compression and the delivery timeout are defaults that `[kafka.client]` may
    /// change; idempotence, `acks=all` and the partitioner (the outputs' keys decide their
    /// partitions, which the outbox records) are set after it.
    pub fn producer(&self, shard: u32, transactional: bool) -> ClientConfig {
        let mut c = self.layered(&[
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
            ("message.timeout.ms", "60000"),
        ]);
        c.set("enable.idempotence", "true").set("acks", "all").set("partitioner", "murmur2_random");
        if transactional {
            c.set("transactional.id", self.transactional_id(shard)).set("transaction.timeout.ms", "60000");
        }
        c
    }

    /// The transactional id of a shard's producer.
    pub fn transactional_id(&self, shard: u32) -> String {
        format!("{}-shard-{shard}", self.group)
    }

    /// Topic checks and creation.
    pub fn admin(&self) -> ClientConfig {
        self.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(extra: &[(&str, &str)]) -> Clients {
        Clients {
            brokers: "b:9092".into(),
            group: "g".into(),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn the_producer_takes_the_users_batching_but_keeps_what_exactly_once_needs() {
        let c = clients(&[
            ("compression.type", "zstd"),
            ("linger.ms", "20"),
            ("acks", "1"),
            ("enable.idempotence", "false"),
        ])
        .producer(2, true);
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("linger.ms"), Some("20"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("transactional.id"), Some("g-shard-2"));
        let defaults = clients(&[]).producer(0, false);
        assert_eq!(defaults.get("compression.type"), Some("lz4"));
        assert_eq!(defaults.get("transactional.id"), None);
    }
}
