//! Typed, layered configuration.
//!
//! Layers, later ones winning key by key:
//!
//! 1. the built-in defaults ([`Config::default()`], serialized);
//! 2. a TOML file: the `--config FILE` path, or else [`DEFAULT_CONFIG_FILE`] when it exists in
//!    the current directory;
//! 3. environment variables `SHOPSCORE__SECTION__KEY` (a double underscore separates the prefix,
//!    the sections and the key, e.g. `SHOPSCORE__TIME__OUT_OF_ORDERNESS=10m`).
//!
//! Every section rejects unknown keys (except the free-form `[kafka.client]` map), durations are
//! typed (`"5m"`, `"48h"`, `"1d"`), and after deserializing, [`Config::validate`] checks value
//! ranges. Every [`ConfigError`] names the key (and the environment variable when the value came
//! from one) and says how to fix it. `config/shopscore.toml` in the repository is the reference
//! file; a test checks that it equals the defaults.

mod alerts;
mod error;
mod http;
mod kafka;
mod redact;
mod serde_util;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use alerts::{AlertMetric, AlertOp, AlertRule};
pub use error::{ConfigError, Origin};
pub use http::HttpEnabled;
pub use kafka::{Encoding, EncodingConfig, KafkaConfig, TopicsConfig};
pub use redact::{is_secret_key, REDACTED};
pub use serde_util::WindowDays;

/// The file used when no `--config` is given and it exists in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/shopscore.toml";

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SHOPSCORE__";

/// Loads the configuration: defaults → TOML file → `SHOPSCORE__…` environment, then validates.
///
/// `file` is the `--config FILE` path: it must exist. Without it, [`DEFAULT_CONFIG_FILE`] is read
/// when it exists in the current directory, else only the defaults and the environment apply.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    let file: Option<PathBuf> = match file {
        Some(path) if !path.is_file() => return Err(ConfigError::FileNotFound { path: path.to_path_buf() }),
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let defaults = Figment::from(Serialized::defaults(Config::default()));
    let file_layer = file.as_ref().map(|p| Figment::from(Toml::file_exact(p)));
    let env_layer = Figment::from(env_provider());

    let mut figment = defaults;
    if let Some(layer) = &file_layer {
        figment = figment.merge(layer.clone());
    }
    figment = figment.merge(env_layer.clone());

    let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;

    // `[kafka.client]` keys may be spelled differently per layer (`"security.protocol"` in TOML,
    // `SECURITY_PROTOCOL` in the environment): merge them after normalizing so env still wins.
    let mut client = BTreeMap::new();
    for layer in file_layer.iter().chain(std::iter::once(&env_layer)) {
        match layer.extract_inner::<serde_util::ClientMap>("kafka.client") {
            Ok(part) => client.extend(part.0),
            Err(e) if e.missing() => {}
            Err(e) => return Err(ConfigError::from_figment(e)),
        }
    }
    config.kafka.client = client;

    config.validate().map_err(|e| e.with_origin_from(&figment, file.as_deref()))?;
    Ok(config)
}

/// The environment layer: `SHOPSCORE__TIME__OUT_OF_ORDERNESS` → `time.out_of_orderness`.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX).split("__")
}

/// Milliseconds of a duration as the rules use them (validation keeps every duration in range).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The whole configuration; see `config/shopscore.toml` for every key with its meaning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub time: TimeConfig,
    pub windows: WindowsConfig,
    pub orders: OrdersConfig,
    pub satisfaction: SatisfactionConfig,
    pub compensation: CompensationConfig,
    pub file: FileConfig,
    pub pipeline: PipelineConfig,
    pub state: StateConfig,
    pub kafka: KafkaConfig,
    pub alerts: Vec<AlertRule>,
    pub http: HttpConfig,
    pub log: LogConfig,
}

impl Config {
    /// True when Kafka brokers are configured; otherwise the embedded file mode runs.
    pub fn kafka_mode(&self) -> bool {
        !self.kafka.brokers.trim().is_empty()
    }
}

/// `[time]`: watermark and lateness (SPEC §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// The watermark trails the largest event time of a partition by this much.
    #[serde(with = "humantime_serde")]
    pub out_of_orderness: Duration,
    /// Events up to this far behind the watermark are applied exactly like on-time ones.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition idle for longer does not hold the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            out_of_orderness: Duration::from_secs(5 * 60),
            allowed_lateness: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl TimeConfig {
    pub fn out_of_orderness_ms(&self) -> i64 {
        millis(self.out_of_orderness)
    }
    pub fn allowed_lateness_ms(&self) -> i64 {
        millis(self.allowed_lateness)
    }
    pub fn idle_timeout_ms(&self) -> i64 {
        millis(self.idle_timeout)
    }
}

/// `[windows]`: metric windows in whole Asia/Shanghai days (SPEC §3, §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// "Last N days" windows every windowed metric is computed for.
    pub days: Vec<u32>,
    /// The DSR window.
    pub dsr_days: u32,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig { days: vec![1, 7, 30], dsr_days: 180 }
    }
}

/// `[orders]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// `ship_deadline` when `order.paid` has none: `event_time` + this.
    #[serde(with = "humantime_serde")]
    pub default_ship_window: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig { default_ship_window: Duration::from_secs(48 * 3600) }
    }
}

impl OrdersConfig {
    pub fn default_ship_window_ms(&self) -> i64 {
        millis(self.default_ship_window)
    }
}

/// `[satisfaction]`: service-rating exclusions (SPEC §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SatisfactionConfig {
    /// Counted ratings per buyer, shop and natural month.
    pub max_per_buyer: u32,
    /// A rating sooner than this after the same buyer's previous one does not count.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
}

impl Default for SatisfactionConfig {
    fn default() -> Self {
        SatisfactionConfig { max_per_buyer: 3, min_interval: Duration::from_secs(10 * 60) }
    }
}

impl SatisfactionConfig {
    pub fn min_interval_ms(&self) -> i64 {
        millis(self.min_interval)
    }
}

/// `[compensation]`: money owed to buyers (SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensationConfig {
    /// Written into every compensation's lineage.
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub rule_version: String,
    /// Late shipment: this percentage of `amount_fen`, rounded half up.
    pub late_rate_percent: u32,
    /// Late shipment: at least this many fen per order.
    pub late_min_fen: i64,
    /// A buyer's group of orders is owed at most this many fen in total.
    pub group_cap_fen: i64,
    /// A group holds the orders paid less than this after its first order.
    #[serde(with = "humantime_serde")]
    pub group_span: Duration,
    /// Broken delivery promise: fen per order, no cap.
    pub promise_breach_fen: i64,
}

impl Default for CompensationConfig {
    fn default() -> Self {
        CompensationConfig {
            rule_version: "2024-01".to_owned(),
            late_rate_percent: 30,
            late_min_fen: 500,
            group_cap_fen: 50_000,
            group_span: Duration::from_secs(24 * 3600),
            promise_breach_fen: 1_000,
        }
    }
}

impl CompensationConfig {
    pub fn group_span_ms(&self) -> i64 {
        millis(self.group_span)
    }
}

/// `[file]`: the embedded file mode (SPEC §8); command-line flags override these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// JSON-lines input files, read in this order as one stream.
    pub inputs: Vec<PathBuf>,
    /// Directory for `snapshots.jsonl`, `compensations.jsonl`, `alerts.jsonl`, `dead_letters.jsonl`.
    pub output: PathBuf,
    /// RocksDB state directory.
    pub data_dir: PathBuf,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig { inputs: Vec::new(), output: PathBuf::from("out"), data_dir: PathBuf::from("data") }
    }
}

/// `[pipeline]`: how often state, positions and outputs commit together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Commit after this many input records…
    pub commit_every_events: u64,
    /// …or this much wall-clock time, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// After SIGTERM/SIGINT, the batch in flight must be committed within this; else (or on a
    /// second signal) the process exits non-zero without committing more.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            commit_every_events: 50_000,
            commit_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `[state]`: the memory of the RocksDB state, shared by every store of the process (file
/// mode's one, Kafka mode's one per owned shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// RocksDB block cache, MiB: the recently read blocks of state files (and their index and
    /// filter blocks). Too small, and a long run reads its day buckets and orders from files.
    pub block_cache_mib: u64,
    /// Cap on all memtables (RocksDB's write buffers), MiB.
    pub memtables_mib: u64,
    /// Shops whose window sums and day buckets an engine (Kafka mode: a shard) remembers
    /// between snapshots, at most.
    pub window_sums_shops: u64,
    /// Day buckets those shops may hold (~0.2 KiB each; held up to twice this).
    pub window_sums_buckets: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            block_cache_mib: 256,
            memtables_mib: 192,
            window_sums_shops: 20_000,
            window_sums_buckets: 50_000,
        }
    }
}

/// `[http]`: the health, readiness, metrics and live-snapshot endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether to serve: `"auto"` (Kafka mode only), `true` or `false`.
    pub enabled: HttpEnabled,
    /// `ip:port` to listen on (port 0: any free port, logged at startup).
    pub addr: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { enabled: HttpEnabled::Auto, addr: SocketAddr::from(([127, 0, 0, 1], 9464)) }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    Human,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` EnvFilter directive, e.g. `"info"` or `"shopscore=debug,librdkafka=warn"`
    /// (librdkafka's own log lines have the target `librdkafka`, rust-rdkafka's `rdkafka::…`);
    /// `RUST_LOG` wins when set.
    #[serde(deserialize_with = "serde_util::lenient_string")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Auto, level: "info".to_owned() }
    }
}
