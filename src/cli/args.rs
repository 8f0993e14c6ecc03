//! The subcommands' arguments (SPEC §10), parsed by clap.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Input JSON-lines file; repeat for several (one stream, in the order given).
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Output directory (file mode).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// State directory (RocksDB).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (Kafka mode).
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
    /// Kafka consumer group.
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Kafka mode: stop (after a final commit) once every input partition is idle, i.e. all
    /// input so far is processed. Without it, Kafka mode runs until SIGTERM/SIGINT.
    #[arg(long)]
    pub until_idle: bool,
    /// Serve /healthz, /readyz, /metrics and /v1/shops/{id} on this address (port 0: any
    /// free port); overrides http.addr and turns http.enabled on.
    #[arg(long, value_name = "IP:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// File mode: after the input is done, keep serving HTTP until SIGTERM/SIGINT.
    #[arg(long)]
    pub keep_serving: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Output set A: a file-mode output directory, or `topics:PREFIX` for the output topics of
    /// `[kafka.topics]` with PREFIX in front of their names (`topics:` for the live ones).
    #[arg(value_name = "DIR|topics:PREFIX")]
    pub a: String,
    /// Output set B, like A (e.g. a replay's: `topics:replay-` or its `--output` directory).
    #[arg(value_name = "DIR|topics:PREFIX")]
    pub b: String,
    /// Kafka bootstrap servers, for a `topics:` side (default: kafka.brokers).
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["output", "topic_prefix"])))]
pub struct ReplayArgs {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: String,
    /// Start at the beginning of every input partition, or at the first record whose Kafka
    /// timestamp is at or after this time.
    #[arg(long, value_name = "earliest|RFC3339")]
    pub from: String,
    /// Stop before the first record whose Kafka timestamp is after this time (default: at the
    /// end offsets when the replay starts).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// Write the outputs as JSON-lines files into this (new or empty) directory.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Write the outputs to the configured output topics with this prefix (created when
    /// missing); compensations already in the destination topic are not sent again.
    #[arg(long, value_name = "P")]
    pub topic_prefix: Option<String>,
    /// The replay's state directory (new or empty; removed after success). Default: a new
    /// directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Consumer group whose topic names and live-group check apply (default: kafka.group).
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Serve /healthz, /readyz and /metrics (records, outputs, watermark, records left per
    /// partition as consumer lag) on this address while the replay runs (port 0: any free
    /// port). Without it a replay serves nothing, whatever http.enabled says: beside a live
    /// instance with the same configuration it would take, or fail on, the live port.
    #[arg(long, value_name = "IP:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// After the replay is done, keep serving HTTP (the final metrics) until SIGTERM/SIGINT.
    #[arg(long)]
    pub keep_serving: bool,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Output file ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    #[arg(long, default_value_t = 50)]
    pub shops: u32,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// First day (RFC 3339).
    #[arg(long, default_value = "2024-05-01T00:00:00+08:00")]
    pub start: String,
    /// Malformed lines per thousand.
    #[arg(long, default_value_t = 5)]
    pub malformed_per_mille: u32,
    /// Duplicated lines per thousand.
    #[arg(long, default_value_t = 5)]
    pub duplicate_per_mille: u32,
    /// Order and refund events reported twice with different content, per thousand (SPEC §9
    /// "one fact reported twice": the earliest counts).
    #[arg(long, default_value_t = 0)]
    pub restated_per_mille: u32,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 10_000)]
    pub shops: u32,
    #[arg(long, default_value_t = 200)]
    pub days: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Work directory (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Measure through this Kafka broker instead of file mode (fresh `bench-…` topics and group).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "mock_cluster")]
    pub brokers: Option<String>,
    /// Measure through librdkafka's in-process mock cluster (supports transactions).
    #[arg(long)]
    pub mock_cluster: bool,
    /// Partitions per input topic (Kafka benchmark).
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Kafka benchmark with transactions on or off (default: kafka.transactional).
    #[arg(long, value_name = "BOOL")]
    pub transactional: Option<bool>,
    /// Runs the benchmark this many times, each on fresh state (and fresh topics, or a fresh
    /// mock cluster), and ends with the median, lowest and highest rates: single runs on a
    /// shared 2-core machine vary by ±15 %.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
}
