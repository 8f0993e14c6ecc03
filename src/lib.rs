//! shopscore — a stream processor for e-commerce after-sales shop scores and late-shipment
//! compensation. `../shared/SPEC.md` (in the repository's planning area) is the product
//! specification; the README says how to run it.
//!
//! # Layout
//!
//! | module | holds | async? |
//! |---|---|---|
//! | [`domain`] | input event types, Asia/Shanghai time, JSON/protobuf decoding with dead-letter reasons | no |
//! | [`rules`] | the pure rules: watermark, windows, metrics, snapshots (`apply(event)` / `advance(watermark)`) | no |
//! | [`state`] | the [`state::KvStore`] trait, its RocksDB and in-memory implementations, typed keys, the per-commit overlay | no |
//! | [`sources`] | where records come from (JSON-lines files) | no |
//! | [`sinks`] | where outputs go (files), through the [`sinks::Sink`] trait with commit checkpoints | no |
//! | [`output`] | the output records (snapshot, compensation, alert, dead letter), their JSON form and protobuf form | no |
//! | [`pb`] | the protobuf messages generated from `proto/shopscore/v1/` (inputs and outputs) | no |
//! | [`kafka`] | Kafka mode: shards by shop, each on a thread of its own, changelog-backed state that follows its shard, transactional or outbox commits | no (blocking rdkafka calls, std threads) |
//! | [`pipeline`] | the loop that moves records: source → decode → rules → sink, committing state, positions and sink checkpoints in one batch | no |
//! | [`config`] | typed, layered configuration: defaults → file → `SHOPSCORE__…` env | no |
//! | [`telemetry`] | `tracing` setup, Prometheus [`telemetry::metrics`], [`telemetry::progress`] reporting | no |
//! | [`http`] | the operations endpoint: `/healthz`, `/readyz`, `/metrics`, `/v1/shops/{id}` (axum on a background runtime) | yes (own thread) |
//! | [`live`] | the [`live::LiveView`] trait the endpoint serves (readiness, a shop's committed snapshot) and its state-store implementation | no |
//! | [`shutdown`] | SIGTERM/SIGINT → a shared stop flag; second signal or timeout → forced exit | no |
//! | [`diff`] | comparing two output sets (`shopscore diff A B`) from their JSON lines | no |
//! | [`gen`] | the seeded sample-event generator behind `shopscore gen` | no |
//! | [`mod@bench`] | the benchmark behind `shopscore bench` | no |
//!
//! The rules never touch I/O; the pipeline never computes a metric.

pub mod bench;
pub mod config;
pub mod diff;
pub mod domain;
pub mod gen;
pub mod http;
pub mod kafka;
pub mod live;
pub mod output;
pub mod pb;
pub mod pipeline;
pub mod rules;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod telemetry;
