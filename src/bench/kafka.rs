//! `shopscore bench --brokers …` / `--mock-cluster`: the same measurement as the file-mode
//! benchmark, through a Kafka-protocol broker, with the broker alone as the baseline.
//!
//! Three phases on fresh topics (`bench-{id}-…`) and a fresh group:
//! 1. **produce**: the generated events into the four input topics, with the settings of
//!    shopscore's own producer ([`Clients::producer`]) — the broker's produce rate;
//! 2. **consume**: every input record read back with the settings of shopscore's input reader
//!    ([`Clients::reader`]), doing nothing with it — the broker's fetch rate, the ceiling for
//!    phase 3;
//! 3. **end to end**: Kafka mode on those topics (`run --until-idle`), from the first record
//!    read to the last commit; the idle wait that ends the run is not counted, the final commit is.

use crate::config::KafkaConfig;
use crate::gen::{generate, GenOptions};
use crate::kafka::client::{Clients, FIRST_OFFSET};
use crate::kafka::runtime::{run_kafka, KafkaRun, KafkaSummary};
use crate::kafka::topics::{self, OutputTopics};
use crate::kafka::{Context, KafkaError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// What the Kafka benchmark measures.
#[derive(Clone, Debug)]
pub struct KafkaBenchReport {
    pub records: u64,
    pub bytes: u64,
    pub produce_seconds: f64,
    /// First record read → last record read, reading alone.
    pub consume_seconds: f64,
    /// Assignment → first record read, reading alone (not in `consume_seconds`).
    pub consume_startup_seconds: f64,
    /// First record read → last record processed and committed.
    pub process_seconds: f64,
    /// The whole Kafka-mode run: startup, shard opening, processing, the idle wait, exit.
    pub run_seconds: f64,
    pub summary: KafkaSummary,
    pub peak_rss_bytes: Option<u64>,
    /// CPU the process used from the first record read to the last commit, by thread role
    /// (`None` without `/proc`).
    pub process_cpu: Option<super::cpu::CpuUse>,
}

impl KafkaBenchReport {
    pub fn per_second(&self, seconds: f64) -> f64 {
        self.records as f64 / seconds.max(1e-9)
    }
}

/// The input topic of a generated line (by its `type`).
fn stream_of(line: &str) -> usize {
    let ty = line.split("\"type\":\"").nth(1).unwrap_or("");
    match ty.split('.').next().unwrap_or("") {
        "logistics" => 1,
        "refund" => 2,
        "service" => 3,
        _ => 0,
    }
}

/// Creates topics `(name, partitions, compacted)` (the admin API, or a mock cluster's own call).
pub type CreateTopics<'a> = &'a dyn Fn(&[(String, u32, bool)]) -> Result<(), KafkaError>;

/// Creates topics through the admin API.
pub fn admin_create(run: &KafkaRun) -> impl Fn(&[(String, u32, bool)]) -> Result<(), KafkaError> + '_ {
    move |wanted| topics::create(&Clients::new(&run.kafka), run.kafka.replication_factor, wanted)
}

/// Runs the three phases with `run`'s settings (topics, group and data directory replaced by
/// fresh ones); `partitions` per input topic; `create` makes the inputs, outputs and changelog.
pub fn run_kafka_bench(
    gen: &GenOptions,
    mut run: KafkaRun,
    partitions: i32,
    create: CreateTopics<'_>,
) -> Result<KafkaBenchReport, KafkaError> {
    let id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let prefix = format!("bench-{id}");
    let cfg: &mut KafkaConfig = &mut run.kafka;
    cfg.group = prefix.clone();
    let t = &mut cfg.topics;
    for (slot, name) in [
        (&mut t.orders, "orders"),
        (&mut t.logistics, "logistics"),
        (&mut t.refunds, "refunds"),
        (&mut t.service, "service"),
        (&mut t.metrics, "shop-metrics"),
        (&mut t.compensations, "compensations"),
        (&mut t.alerts, "shop-alerts"),
        (&mut t.dead_letters, "dead-letters"),
    ] {
        *slot = format!("{prefix}-{name}");
    }
    let inputs = [t.orders.clone(), t.logistics.clone(), t.refunds.clone(), t.service.clone()];
    run.outputs = OutputTopics::from_config(cfg);
    run.data_dir = run.data_dir.join(&prefix);
    let clients = Clients::new(cfg);
    let mut wanted: Vec<(String, u32, bool)> =
        inputs.iter().map(|n| (n.clone(), partitions as u32, false)).collect();
    for (name, _, compacted) in run.outputs.all() {
        wanted.push((name.to_owned(), cfg.shards, compacted));
    }
    wanted.push((cfg.changelog_topic(), cfg.shards, true));
    create(&wanted)?;

    let mut buf = Vec::new();
    generate(gen, &mut buf).map_err(|e| KafkaError::Topics(format!("generating events: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();

    // 1. Produce.
    let producer: ThreadedProducer<DefaultProducerContext> =
        clients.producer(0, false).create().context(|| "creating the bench producer".into())?;
    let started = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        let key = i.to_le_bytes();
        let mut rec = BaseRecord::to(&inputs[stream_of(line)]).key(&key[..]).payload(line.as_bytes());
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).context(|| "flushing the bench input".into())?;
    let produce_seconds = started.elapsed().as_secs_f64();
    drop(producer);

    // 2. Consume (the broker alone, shopscore's reader settings).
    let consumer: BaseConsumer = clients
        .reader()
        .set("enable.partition.eof", "false")
        .create()
        .context(|| "creating the bench consumer".into())?;
    let mut tpl = TopicPartitionList::new();
    for topic in &inputs {
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Offset(FIRST_OFFSET))
                .context(|| "bench assignment".into())?;
        }
    }
    consumer.assign(&tpl).context(|| "assigning the bench inputs".into())?;
    // Timed like end to end: from the first record read to the last, so the wait for the
    // first fetch (offset lookups, the broker's first response) counts in neither.
    let assigned = Instant::now();
    let mut first: Option<Instant> = None;
    let mut read = 0usize;
    let mut last = Instant::now();
    while read < lines.len() && last.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
            last = Instant::now();
            first.get_or_insert(last);
        }
    }
    let first = first.unwrap_or(assigned);
    let consume_seconds = last.duration_since(first).as_secs_f64();
    let consume_startup_seconds = first.duration_since(assigned).as_secs_f64();
    drop(consumer);
    if read < lines.len() {
        return Err(KafkaError::Topics(format!(
            "the bench consumer read {read} of {} records back; is the broker healthy?",
            lines.len()
        )));
    }

    // 3. End to end, its memory measured apart: the generated input is dropped and the peak
    // reset, so the peak reported is Kafka mode's (plus what the allocator kept of the
    // earlier phases' memory).
    let records = lines.len() as u64;
    drop(lines);
    drop(text);
    drop(buf);
    super::reset_peak_rss();
    run.exit_when_idle = true;
    let sampler = super::cpu::CpuSampler::start();
    let started = Instant::now();
    let summary = run_kafka(&run)?;
    let run_seconds = started.elapsed().as_secs_f64();
    let process_seconds = match (summary.first_record, summary.last_commit) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => run_seconds,
    };
    let process_cpu = match (&sampler, summary.first_record, summary.last_commit) {
        (Some(s), Some(a), Some(b)) => s.between(a, b),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&run.data_dir);
    Ok(KafkaBenchReport {
        records,
        bytes,
        produce_seconds,
        consume_seconds,
        consume_startup_seconds,
        process_seconds,
        run_seconds,
        summary,
        peak_rss_bytes: super::peak_rss_bytes(),
        process_cpu,
    })
}
