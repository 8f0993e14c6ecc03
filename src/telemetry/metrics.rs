//! Prometheus metrics: what an operator watches while shopscore runs (issue 6).
//!
//! One [`Metrics`] per process, with its own [`prometheus::Registry`] (never the global
//! default registry), passed explicitly to whoever updates it — the file-mode pipeline now,
//! the Kafka runtime later — and to the HTTP server that exposes it at `/metrics`. Every
//! update method names the event it records, so callers never touch metric objects.

use super::memory::MemoryUse;
use crate::domain::Timestamp;
use crate::output::Output;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every metric name, for documentation and tests.
pub const METRIC_NAMES: [&str; 16] = [
    "shopscore_events_in_total",
    "shopscore_records_out_total",
    "shopscore_dead_letters_total",
    "shopscore_late_events_total",
    "shopscore_duplicates_total",
    "shopscore_watermark_seconds",
    "shopscore_watermark_lag_seconds",
    "shopscore_consumer_lag",
    "shopscore_restore_remaining_records",
    "shopscore_commit_duration_seconds",
    "shopscore_transaction_aborts_total",
    "shopscore_outbox_resent_total",
    "shopscore_state_size_bytes",
    "shopscore_ready",
    "shopscore_retention_deleted_total",
    "shopscore_memory_bytes",
];

/// The process's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    events_in: IntCounterVec,
    records_out: IntCounterVec,
    dead_letters: IntCounterVec,
    late_events: IntCounter,
    duplicates: IntCounter,
    watermark: Gauge,
    watermark_lag: Gauge,
    consumer_lag: IntGaugeVec,
    restore_remaining: IntGaugeVec,
    commit_duration: Histogram,
    transaction_aborts: IntCounter,
    outbox_resent: IntCounter,
    retention_deleted: IntCounterVec,
    state_size: IntGauge,
    memory: IntGaugeVec,
    ready: IntGauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` in `registry` (names are fixed and unique, so this cannot fail).
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Metrics {
    /// All metrics at zero, in a fresh registry.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, label: &str| {
            register(&r, IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
        };
        let counter =
            |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid metric"));
        let gauge = |name: &str, help: &str| register(&r, Gauge::new(name, help).expect("valid metric"));
        let m = Metrics {
            events_in: counter_vec(
                "shopscore_events_in_total",
                "Input records read, by input topic (file mode: the event's stream, `unknown` when undecodable).",
                "topic",
            ),
            records_out: counter_vec(
                "shopscore_records_out_total",
                "Output records committed, by output (snapshot, compensation, alert, dead_letter).",
                "output",
            ),
            dead_letters: counter_vec(
                "shopscore_dead_letters_total",
                "Dead letters committed, by reason code (e.g. malformed_json, missing_field).",
                "reason",
            ),
            late_events: counter(
                "shopscore_late_events_total",
                "Events that arrived behind the watermark (applied anyway, SPEC §3).",
            ),
            duplicates: counter(
                "shopscore_duplicates_total",
                "Records with an event_id seen before (counted and ignored).",
            ),
            watermark: gauge(
                "shopscore_watermark_seconds",
                "The committed event-time watermark, Unix seconds (0 before any event).",
            ),
            watermark_lag: gauge(
                "shopscore_watermark_lag_seconds",
                "Wall clock minus the committed watermark, seconds (large when replaying history).",
            ),
            consumer_lag: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "shopscore_consumer_lag",
                        "Records behind the end of each input partition (Kafka mode).",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            restore_remaining: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "shopscore_restore_remaining_records",
                        "Kafka mode: changelog records a shard's restore has left to read before it is acquired (0 once restored).",
                    ),
                    &["shard"],
                )
                .expect("valid metric"),
            ),
            commit_duration: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "shopscore_commit_duration_seconds",
                        "Time to commit one batch: flush rules, write and sync outputs, write state.",
                    )
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )
                .expect("valid metric"),
            ),
            transaction_aborts: counter(
                "shopscore_transaction_aborts_total",
                "Kafka transactions aborted (their batch is re-processed).",
            ),
            outbox_resent: counter(
                "shopscore_outbox_resent_total",
                "Kafka mode: outputs a new shard owner found missing from their topics and sent from the last commit's outbox (after a crash).",
            ),
            retention_deleted: counter_vec(
                "shopscore_retention_deleted_total",
                "Kafka mode: dead state entries deleted through the changelog (kind=entry) and seen packs tombstoned (kind=seen_pack) by retention.",
                "kind",
            ),
            state_size: register(
                &r,
                IntGauge::new("shopscore_state_size_bytes", "RocksDB state size on disk (SST files and memtables).")
                    .expect("valid metric"),
            ),
            memory: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "shopscore_memory_bytes",
                        "Where the process's memory goes: part=resident (the resident set), heap_allocated and heap_resident (the Rust heap, jemalloc), rocksdb_block_cache and rocksdb_memtables (shared by the stores), reader_prefetch (Kafka mode: input fetched, not yet read).",
                    ),
                    &["part"],
                )
                .expect("valid metric"),
            ),
            ready: register(
                &r,
                IntGauge::new("shopscore_ready", "1 when state is restored and the pipeline is processing, else 0.")
                    .expect("valid metric"),
            ),
            registry: r,
        };
        for output in ["snapshot", "compensation", "alert", "dead_letter"] {
            m.records_out.with_label_values(&[output]);
        }
        for kind in ["entry", "seen_pack"] {
            m.retention_deleted.with_label_values(&[kind]);
        }
        m
    }

    /// One input record read from `topic` (a Kafka topic, or in file mode the stream of the
    /// decoded event, `unknown` when it could not be decoded).
    pub fn event_in(&self, topic: &str) {
        self.events_in.with_label_values(&[topic]).inc();
    }

    /// One output record committed (its kind, and its reason code for a dead letter).
    pub fn record_out(&self, output: &Output) {
        if let Output::DeadLetter(d) = output {
            self.dead_letters.with_label_values(&[d.reason_code]).inc();
        }
        self.records_out.with_label_values(&[output.kind().name()]).inc();
    }

    /// An event that arrived behind the watermark.
    pub fn late_event(&self) {
        self.late_events.inc();
    }

    /// A duplicate `event_id`.
    pub fn duplicate(&self) {
        self.duplicates.inc();
    }

    /// The committed watermark; also sets its lag behind the wall clock.
    pub fn set_watermark(&self, watermark: Option<Timestamp>) {
        let Some(wm) = watermark else { return };
        let seconds = wm.0 as f64 / 1000.0;
        self.watermark.set(seconds);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.watermark_lag.set(now - seconds);
    }

    /// Records behind the end of one input partition (set by the Kafka runtime).
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }

    /// Changelog records shard `shard`'s restore has left to read (Kafka mode).
    pub fn set_restore_remaining(&self, shard: u32, records: i64) {
        self.restore_remaining.with_label_values(&[&shard.to_string()]).set(records);
    }

    /// How long one commit took.
    pub fn commit_took(&self, d: Duration) {
        self.commit_duration.observe(d.as_secs_f64());
    }

    /// A Kafka transaction was aborted.
    pub fn transaction_aborted(&self) {
        self.transaction_aborts.inc();
    }

    /// A new shard owner sent `n` outputs of the last commit's outbox that were missing.
    pub fn outbox_resent(&self, n: u64) {
        self.outbox_resent.inc_by(n);
    }

    /// A commit's retention deleted `entries` dead state entries and tombstoned `packs` seen
    /// packs.
    pub fn retention_deleted(&self, entries: u64, packs: u64) {
        self.retention_deleted.with_label_values(&["entry"]).inc_by(entries);
        self.retention_deleted.with_label_values(&["seen_pack"]).inc_by(packs);
    }

    /// The state store's size on disk.
    pub fn set_state_size(&self, bytes: u64) {
        self.state_size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Where the process's memory goes (the parts that could be measured).
    pub fn set_memory(&self, usage: &MemoryUse) {
        for (part, bytes) in usage.parts() {
            if let Some(b) = bytes {
                self.memory.with_label_values(&[part]).set(i64::try_from(b).unwrap_or(i64::MAX));
            }
        }
    }

    /// Whether the process is ready (state restored, processing).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The registry, for a caller that adds its own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding never fails");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{DeadLetter, SourcePos};

    /// The value of the sample line starting with `series ` in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn updates_show_in_the_text_format() {
        let m = Metrics::new();
        m.event_in("orders");
        m.event_in("orders");
        m.event_in("unknown");
        let dl = |code| {
            Output::DeadLetter(DeadLetter {
                reason: "x".into(),
                reason_code: code,
                source: SourcePos::File { file: "f".into(), line: 1 },
                raw: vec![],
                key: None,
            })
        };
        m.record_out(&dl("malformed_json"));
        m.record_out(&dl("malformed_json"));
        m.record_out(&dl("missing_field"));
        m.late_event();
        m.duplicate();
        m.duplicate();
        m.set_watermark(Some(Timestamp(1_700_000_000_500)));
        m.set_consumer_lag("orders", 3, 42);
        m.set_restore_remaining(2, 1234);
        m.commit_took(Duration::from_millis(30));
        m.transaction_aborted();
        m.outbox_resent(5);
        m.retention_deleted(7, 2);
        m.retention_deleted(1, 0);
        m.set_state_size(12345);
        m.set_memory(&MemoryUse {
            resident: Some(9000),
            block_cache: 300,
            reader_prefetch: None,
            ..Default::default()
        });
        m.set_ready(true);
        let text = m.render();
        for name in METRIC_NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert_eq!(sample(&text, "shopscore_events_in_total{topic=\"orders\"}"), Some(2.0));
        assert_eq!(sample(&text, "shopscore_events_in_total{topic=\"unknown\"}"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_records_out_total{output=\"dead_letter\"}"), Some(3.0));
        assert_eq!(sample(&text, "shopscore_records_out_total{output=\"snapshot\"}"), Some(0.0));
        assert_eq!(sample(&text, "shopscore_dead_letters_total{reason=\"malformed_json\"}"), Some(2.0));
        assert_eq!(sample(&text, "shopscore_dead_letters_total{reason=\"missing_field\"}"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_late_events_total"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_duplicates_total"), Some(2.0));
        assert_eq!(sample(&text, "shopscore_watermark_seconds"), Some(1_700_000_000.5));
        assert!(sample(&text, "shopscore_watermark_lag_seconds").unwrap() > 0.0);
        assert_eq!(sample(&text, "shopscore_consumer_lag{partition=\"3\",topic=\"orders\"}"), Some(42.0));
        assert_eq!(sample(&text, "shopscore_restore_remaining_records{shard=\"2\"}"), Some(1234.0));
        assert_eq!(sample(&text, "shopscore_commit_duration_seconds_count"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_commit_duration_seconds_bucket{le=\"0.05\"}"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_commit_duration_seconds_bucket{le=\"0.025\"}"), Some(0.0));
        assert_eq!(sample(&text, "shopscore_transaction_aborts_total"), Some(1.0));
        assert_eq!(sample(&text, "shopscore_outbox_resent_total"), Some(5.0));
        assert_eq!(sample(&text, "shopscore_retention_deleted_total{kind=\"entry\"}"), Some(8.0));
        assert_eq!(sample(&text, "shopscore_retention_deleted_total{kind=\"seen_pack\"}"), Some(2.0));
        assert_eq!(sample(&text, "shopscore_state_size_bytes"), Some(12345.0));
        assert_eq!(sample(&text, "shopscore_memory_bytes{part=\"resident\"}"), Some(9000.0));
        assert_eq!(sample(&text, "shopscore_memory_bytes{part=\"rocksdb_block_cache\"}"), Some(300.0));
        assert_eq!(
            sample(&text, "shopscore_memory_bytes{part=\"reader_prefetch\"}"),
            None,
            "unknown parts are left out"
        );
        assert_eq!(sample(&text, "shopscore_ready"), Some(1.0));
    }

    #[test]
    fn registries_are_independent() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.duplicate();
        assert_eq!(sample(&b.render(), "shopscore_duplicates_total"), Some(0.0));
        assert!(prometheus::gather().is_empty(), "nothing registered in the global default registry");
    }
}
