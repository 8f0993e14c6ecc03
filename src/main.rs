//! The `shopscore` binary: command-line parsing and wiring (SPEC §10). Everything it calls
//! lives in the library; `anyhow` is used only here, at the edge.

/// jemalloc instead of glibc's malloc: ~14 % more events/s in file and Kafka mode (shard
/// threads allocate and free small keys and values at a high rate; README → Benchmark).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read at its first allocation; `_RJEM_MALLOC_CONF` overrides them):
/// freed pages go back to the kernel after about a second, by a background thread. With
/// jemalloc's defaults (ten seconds, and only on a later allocation) the Kafka-mode
/// benchmark's peak RSS was ~100 MiB above glibc's; with these, ~50 MiB. `tests/cli.rs` checks
/// that they are applied (under a wrong symbol name they would be silently ignored).
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use shopscore::bench::kafka::admin_create;
use shopscore::config::{self, Config};
use shopscore::diff::{diff, OutputSet};
use shopscore::domain::decode::DecodeOptions;
use shopscore::domain::Timestamp;
use shopscore::gen::{generate, generate_file, GenOptions};
use shopscore::http::HttpServer;
use shopscore::kafka::murmur::partition_for;
use shopscore::kafka::replay::{run_replay, ReplayFrom, ReplayRun, ReplayTarget};
use shopscore::kafka::runtime::{run_kafka, KafkaRun};
use shopscore::kafka::topics::OutputTopics;
use shopscore::live::{LiveView, ShardOf, ShardsView, StateView};
use shopscore::pipeline::{run_files, FileRun};
use shopscore::rules::compensation::CompensationRules;
use shopscore::rules::satisfaction::SatisfactionRules;
use shopscore::rules::RulesConfig;
use shopscore::shutdown::Shutdown;
use shopscore::telemetry::metrics::Metrics;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "shopscore",
    version,
    about = "After-sales shop scores and late-shipment compensation, from event streams"
)]
struct Cli {
    /// Configuration file (default: config/shopscore.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline: on JSON-lines files (--input), or on Kafka (--brokers).
    Run(RunArgs),
    /// Replay historical Kafka topics into fresh state and chosen outputs.
    Replay(ReplayArgs),
    /// Write sample events (JSON lines).
    Gen(GenArgs),
    /// Measure end-to-end throughput and peak memory in file mode.
    Bench(BenchArgs),
    /// Compare two file-mode output directories; exit 0 when equal, 1 when different, 2 on error.
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Input JSON-lines file; repeat for several (one stream, in the order given).
    #[arg(long = "input", value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Output directory (file mode).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// State directory (RocksDB).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (Kafka mode).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Kafka consumer group.
    #[arg(long, value_name = "ID")]
    group: Option<String>,
    /// Kafka mode: stop (after a final commit) once every input partition is idle, i.e. all
    /// input so far is processed. Without it, Kafka mode runs until SIGTERM/SIGINT.
    #[arg(long)]
    until_idle: bool,
    /// Serve /healthz, /readyz, /metrics and /v1/shops/{id} on this address (port 0: any
    /// free port); overrides http.addr and turns http.enabled on.
    #[arg(long, value_name = "IP:PORT")]
    http_addr: Option<SocketAddr>,
    /// File mode: after the input is done, keep serving HTTP until SIGTERM/SIGINT.
    #[arg(long)]
    keep_serving: bool,
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// Output directory A (e.g. the live run's).
    a: PathBuf,
    /// Output directory B (e.g. a replay's).
    b: PathBuf,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["output", "topic_prefix"])))]
struct ReplayArgs {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: String,
    /// Start at the beginning of every input partition, or at the first record whose Kafka
    /// timestamp is at or after this time.
    #[arg(long, value_name = "earliest|RFC3339")]
    from: String,
    /// Stop before the first record whose Kafka timestamp is after this time (default: at the
    /// end offsets when the replay starts).
    #[arg(long, value_name = "RFC3339")]
    to: Option<String>,
    /// Write the outputs as JSON-lines files into this (new or empty) directory.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Write the outputs to the configured output topics with this prefix (created when
    /// missing); compensations already in the destination topic are not sent again.
    #[arg(long, value_name = "P")]
    topic_prefix: Option<String>,
    /// The replay's state directory (new or empty; removed after success). Default: a new
    /// directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Consumer group whose topic names and live-group check apply (default: kafka.group).
    #[arg(long, value_name = "ID")]
    group: Option<String>,
}

#[derive(Args, Debug)]
struct GenArgs {
    /// Output file ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    #[arg(long, default_value_t = 50)]
    shops: u32,
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// First day (RFC 3339).
    #[arg(long, default_value = "2024-05-01T00:00:00+08:00")]
    start: String,
    /// Malformed lines per thousand.
    #[arg(long, default_value_t = 5)]
    malformed_per_mille: u32,
    /// Duplicated lines per thousand.
    #[arg(long, default_value_t = 5)]
    duplicate_per_mille: u32,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 10_000)]
    shops: u32,
    #[arg(long, default_value_t = 200)]
    days: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Work directory (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Measure through this Kafka broker instead of file mode (fresh `bench-…` topics and group).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "mock_cluster")]
    brokers: Option<String>,
    /// Measure through librdkafka's in-process mock cluster (supports transactions).
    #[arg(long)]
    mock_cluster: bool,
    /// Partitions per input topic (Kafka benchmark).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Kafka benchmark with transactions on or off (default: kafka.transactional).
    #[arg(long, value_name = "BOOL")]
    transactional: Option<bool>,
}

fn main() {
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shopscore: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main(cli: Cli) -> Result<()> {
    let cfg = config::load(cli.config.as_deref())?;
    shopscore::telemetry::init(&cfg.log);
    // Debug of the configuration masks secrets (`[kafka.client]` passwords and keys).
    tracing::debug!(config = ?cfg, "configuration loaded");
    match cli.command {
        Command::Run(args) => cmd_run(&cfg, args),
        Command::Replay(args) => cmd_replay(&cfg, args),
        Command::Gen(args) => cmd_gen(args),
        Command::Bench(args) => cmd_bench(&cfg, args),
        Command::Diff(args) => cmd_diff(args),
    }
}

fn rules_config(cfg: &Config) -> RulesConfig {
    let c = &cfg.compensation;
    RulesConfig {
        windows: cfg.windows.days.clone(),
        dsr_days: cfg.windows.dsr_days,
        out_of_orderness_ms: cfg.time.out_of_orderness_ms(),
        allowed_lateness_ms: cfg.time.allowed_lateness_ms(),
        satisfaction: SatisfactionRules {
            max_per_buyer: cfg.satisfaction.max_per_buyer,
            min_interval_ms: cfg.satisfaction.min_interval_ms(),
        },
        compensation: CompensationRules {
            rule_version: c.rule_version.clone(),
            late_rate_percent: c.late_rate_percent,
            late_min_fen: c.late_min_fen,
            group_cap_fen: c.group_cap_fen,
            group_span_ms: c.group_span_ms(),
            promise_breach_fen: c.promise_breach_fen,
        },
        alerts: cfg.alerts.clone(),
    }
}

fn file_run(cfg: &Config) -> FileRun {
    FileRun {
        inputs: cfg.file.inputs.clone(),
        output: cfg.file.output.clone(),
        data_dir: cfg.file.data_dir.clone(),
        rules: rules_config(cfg),
        decode: DecodeOptions { default_ship_window_ms: cfg.orders.default_ship_window_ms() },
        commit_every_records: cfg.pipeline.commit_every_events,
        commit_interval: cfg.pipeline.commit_interval,
        progress_every: Some(Duration::from_secs(10)),
        ..FileRun::new(Vec::new(), PathBuf::new(), PathBuf::new())
    }
}

/// Starts the HTTP endpoint when `http.enabled` (or `--http-addr`) says so, and prints the
/// bound address as `shopscore: http listening on IP:PORT` on stderr.
fn serve_http(
    cfg: &Config,
    addr_flag: Option<SocketAddr>,
    kafka_mode: bool,
    metrics: &Arc<Metrics>,
    view: Arc<dyn LiveView>,
) -> Result<Option<HttpServer>> {
    if addr_flag.is_none() && !cfg.http.enabled.serves(kafka_mode) {
        return Ok(None);
    }
    let server = HttpServer::start(addr_flag.unwrap_or(cfg.http.addr), metrics.clone(), view)?;
    tracing::info!(addr = %server.addr(), "http listening");
    eprintln!("shopscore: http listening on {}", server.addr());
    Ok(Some(server))
}

fn cmd_run(cfg: &Config, args: RunArgs) -> Result<()> {
    let brokers = args.brokers.clone().unwrap_or_else(|| cfg.kafka.brokers.clone());
    if !brokers.trim().is_empty() {
        return cmd_run_kafka(cfg, args, brokers);
    }
    let mut run = file_run(cfg);
    if !args.inputs.is_empty() {
        run.inputs = args.inputs;
    }
    if let Some(o) = args.output {
        run.output = o;
    }
    if let Some(d) = args.data_dir {
        run.data_dir = d;
    }
    if run.inputs.is_empty() {
        bail!("no input: give --input FILE (repeatable) or set file.inputs in the config");
    }
    let shutdown = Shutdown::install(cfg.pipeline.shutdown_timeout)?;
    let metrics = Arc::new(Metrics::new());
    let live = Arc::new(StateView::new(run.rules.windows.clone()));
    let server = serve_http(cfg, args.http_addr, false, &metrics, live.clone())?;
    if args.keep_serving && server.is_none() {
        bail!("--keep-serving needs the HTTP endpoint: give --http-addr IP:PORT or set http.enabled = true");
    }
    run.stop = Some(shutdown.clone());
    run.metrics = Some(metrics);
    run.live = Some(live);
    let summary = run_files(&run)?;
    let t = &summary.totals;
    tracing::info!(
        records = summary.records,
        commits = summary.commits,
        applied = t.applied,
        duplicates = t.duplicates,
        dead_letters = t.dead_letters,
        late_events = t.late_events,
        snapshots = t.snapshots,
        watermark = summary.watermark.map(Timestamp::to_rfc3339).unwrap_or_default(),
        "run finished"
    );
    eprintln!(
        "shopscore: read {} records; totals: {} applied, {} duplicates, {} dead letters, {} late, {} snapshots; outputs in {}",
        summary.records,
        t.applied,
        t.duplicates,
        t.dead_letters,
        t.late_events,
        t.snapshots,
        run.output.display()
    );
    if summary.stopped {
        eprintln!(
            "shopscore: stopped on request after {} records; everything read is committed and the next run continues from there",
            summary.records
        );
    } else if args.keep_serving {
        eprintln!("shopscore: input done; serving HTTP until SIGTERM/SIGINT");
        while !shutdown.is_requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(server);
    Ok(())
}

/// `shopscore bench --brokers …` / `--mock-cluster`: produce, consume and end-to-end rates.
fn cmd_bench_kafka(cfg: &Config, args: &BenchArgs, gen: &GenOptions, work: &Path) -> Result<()> {
    let mock = if args.mock_cluster {
        Some(rdkafka::mocking::MockCluster::new(1).context("starting the mock cluster")?)
    } else {
        None
    };
    let (brokers, broker_name) = match (&mock, &args.brokers) {
        (Some(m), _) => (m.bootstrap_servers(), "librdkafka mock cluster (in this process)".to_owned()),
        (None, Some(b)) => (b.clone(), b.clone()),
        (None, None) => unreachable!("called with --brokers or --mock-cluster"),
    };
    let mut run = kafka_run(cfg, brokers, None, Some(work.to_path_buf()));
    if let Some(t) = args.transactional {
        run.kafka.transactional = t;
    }
    if mock.is_some() {
        run.kafka.replication_factor = 1;
    }
    // Idle detection ends the run; shorter than the 60 s default so the run ends soon after the
    // input, long enough that no partition looks idle while it still has records.
    run.idle_timeout = Duration::from_secs(5);
    run.progress_every = None;
    let commits = match (run.kafka.transactional, run.kafka.transactional_outbox) {
        (false, _) => "transactions off (outbox)",
        (true, false) => "transactions on",
        (true, true) => "transactions on, with the outbox",
    };
    let shards = run.kafka.shards;
    let r = match &mock {
        Some(m) => {
            let create = |wanted: &[(String, u32, bool)]| {
                for (name, partitions, _) in wanted {
                    m.create_topic(name, *partitions as i32, 1).map_err(|e| {
                        shopscore::kafka::KafkaError::Topics(format!("mock cluster: creating {name}: {e}"))
                    })?;
                }
                Ok(())
            };
            shopscore::bench::kafka::run_kafka_bench(gen, run, args.partitions, &create)?
        }
        None => {
            let admin = run.clone();
            let create = admin_create(&admin);
            shopscore::bench::kafka::run_kafka_bench(gen, run, args.partitions, &create)?
        }
    };
    let t = &r.summary.totals;
    println!("shopscore bench: Kafka mode through {broker_name}");
    println!(
        "  input      {} records ({:.1} MiB), {} shops, {} days, seed {}; {} partitions per input topic, {} shards, {}",
        r.records,
        r.bytes as f64 / 1048576.0,
        args.shops,
        args.days,
        args.seed,
        args.partitions,
        shards,
        commits
    );
    println!(
        "  produce    {:>10.0} records/s  (broker alone, shopscore's producer settings)",
        r.per_second(r.produce_seconds)
    );
    println!(
        "  consume    {:>10.0} records/s  (broker alone, shopscore's reader settings)",
        r.per_second(r.consume_seconds)
    );
    println!(
        "  end to end {:>10.0} events/s   ({:.2} s from the first record read to the last commit; whole run {:.2} s incl. startup and a 5 s idle wait)",
        r.per_second(r.process_seconds),
        r.process_seconds,
        r.run_seconds
    );
    println!(
        "  ceiling    {:>10.0} %          (end to end over consume: reading alone, with the same reader settings, is the most this broker can feed Kafka mode)",
        100.0 * r.consume_seconds / r.process_seconds.max(1e-9)
    );
    if let Some(used) = &r.process_cpu {
        let (cpu, wall) = (used.cpu_seconds, used.wall_seconds);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "  cpu        {:.2} s of CPU in {:.2} s of end to end: {:.0} % of {} cores (the process: shopscore and librdkafka{})",
            cpu,
            wall,
            100.0 * cpu / (wall * cores as f64).max(1e-9),
            cores,
            if mock.is_some() { ", and the mock broker" } else { "" }
        );
        let roles: Vec<String> = used
            .by_role
            .iter()
            .map(|(role, s)| format!("{role} {s:.2} s ({:.1} µs/event)", 1e6 * s / r.records.max(1) as f64))
            .collect();
        println!("             by thread: {}", roles.join(", "));
    }
    println!(
        "  applied    {} events ({} late), {} duplicates, {} dead letters; {} commits; outputs {:?}",
        t.applied, t.late_events, t.duplicates, t.dead_letters, r.summary.commits, r.summary.outputs
    );
    println!(
        "  commits    {:.2} s with a commit running (shards commit in parallel, while reading goes on); {} changelog records ({:.1} per input record)",
        r.summary.commit_time.as_secs_f64(),
        r.summary.changelog_records,
        r.summary.changelog_records as f64 / r.records.max(1) as f64
    );
    let ph = &r.summary.commit_phases;
    println!(
        "             per phase, summed over the shards: rules flush {:.2} s, retention {:.2} s, outbox offsets {:.2} s, changelog {:.2} s, local write {:.2} s, waiting for outputs {:.2} s",
        ph.rules.as_secs_f64(),
        ph.retention.as_secs_f64(),
        ph.outbox.as_secs_f64(),
        ph.changelog.as_secs_f64(),
        ph.local.as_secs_f64(),
        ph.outputs.as_secs_f64()
    );
    match r.peak_rss_bytes {
        Some(b) => println!(
            "  peak RSS   {:.1} MiB (the whole process during end to end{})",
            b as f64 / 1048576.0,
            if mock.is_some() { ", mock broker included" } else { "" }
        ),
        None => println!("  peak RSS   unknown (no /proc/self/status)"),
    }
    Ok(())
}

/// `shopscore diff A B`: prints the differences; exits 1 when there are any, 2 on error.
fn cmd_diff(args: DiffArgs) -> Result<()> {
    let read = |dir: &PathBuf| OutputSet::read_dir(dir);
    let (a, b) = match (read(&args.a), read(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shopscore: error: {e}");
            std::process::exit(2);
        }
    };
    let d = diff(&a, &b);
    println!("A = {}\nB = {}", args.a.display(), args.b.display());
    print!("{d}");
    if !d.is_empty() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}

fn kafka_run(cfg: &Config, brokers: String, group: Option<String>, data_dir: Option<PathBuf>) -> KafkaRun {
    let mut kafka = cfg.kafka.clone();
    kafka.brokers = brokers;
    if let Some(g) = group {
        kafka.group = g;
    }
    KafkaRun {
        outputs: OutputTopics::from_config(&kafka),
        kafka,
        rules: rules_config(cfg),
        decode: DecodeOptions { default_ship_window_ms: cfg.orders.default_ship_window_ms() },
        data_dir: data_dir.unwrap_or_else(|| cfg.file.data_dir.clone()),
        commit_interval: cfg.pipeline.commit_interval,
        commit_every_records: cfg.pipeline.commit_every_events,
        idle_timeout: Duration::from_millis(cfg.time.idle_timeout_ms() as u64),
        exit_when_idle: false,
        stop: Arc::new(AtomicBool::new(false)),
        progress_every: Some(Duration::from_secs(10)),
        live: None,
        metrics: None,
    }
}

fn cmd_run_kafka(cfg: &Config, args: RunArgs, brokers: String) -> Result<()> {
    if !args.inputs.is_empty() || args.output.is_some() {
        bail!("--input/--output are for file mode; Kafka mode (--brokers) reads and writes the topics of [kafka.topics]");
    }
    let mut run = kafka_run(cfg, brokers, args.group, args.data_dir);
    run.exit_when_idle = args.until_idle;
    let shutdown = Shutdown::install(cfg.pipeline.shutdown_timeout)?;
    run.stop = shutdown.flag();
    let metrics = Arc::new(Metrics::new());
    let (shards, co_partitioned) = (run.kafka.shards, run.kafka.co_partitioned);
    let shard_of: ShardOf = Box::new(move |shop: &str| {
        // Co-partitioned inputs place shops by their partition, unknown here.
        (!co_partitioned).then(|| partition_for(shop.as_bytes(), shards))
    });
    let live = Arc::new(ShardsView::new(run.rules.windows.clone(), shard_of));
    let _server = serve_http(cfg, args.http_addr, true, &metrics, live.clone())?;
    run.live = Some(live);
    run.metrics = Some(metrics);
    let summary = run_kafka(&run)?;
    let t = &summary.totals;
    eprintln!(
        "shopscore: read {} records in {} commits; outputs {:?}; owned shards' totals: {} applied, {} duplicates, {} dead letters, {} late",
        summary.records, summary.commits, summary.outputs, t.applied, t.duplicates, t.dead_letters, t.late_events
    );
    Ok(())
}

fn cmd_replay(cfg: &Config, args: ReplayArgs) -> Result<()> {
    let from = ReplayFrom::parse(&args.from).map_err(anyhow::Error::msg)?;
    let to = match &args.to {
        None => None,
        Some(s) => Some(
            Timestamp::parse_rfc3339(s)
                .map_err(|e| anyhow::anyhow!("--to {s:?}: give an RFC 3339 time ({e})"))?,
        ),
    };
    if let (ReplayFrom::Time(f), Some(t)) = (from, to) {
        if t < f {
            bail!("--to {} is before --from {}: nothing to replay", t.to_rfc3339(), f.to_rfc3339());
        }
    }
    let live = kafka_run(cfg, args.brokers, args.group, None);
    let target = match (&args.output, &args.topic_prefix) {
        (Some(dir), None) => ReplayTarget::Files(dir.clone()),
        (None, Some(prefix)) => ReplayTarget::Topics(live.outputs.prefixed(prefix)),
        _ => bail!("give exactly one of --output DIR and --topic-prefix P"),
    };
    let data_dir = args.data_dir.unwrap_or_else(|| {
        let ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        std::env::temp_dir().join(format!("shopscore-replay-{}-{ms}", std::process::id()))
    });
    let shutdown = Shutdown::install(cfg.pipeline.shutdown_timeout)?;
    let run = ReplayRun {
        kafka: live.kafka,
        from,
        to,
        target: target.clone(),
        rules: live.rules,
        decode: live.decode,
        data_dir,
        commit_every_records: cfg.pipeline.commit_every_events,
        stop: shutdown.flag(),
        progress_every: Some(Duration::from_secs(10)),
    };
    let s = run_replay(&run)?;
    let t = &s.totals;
    tracing::info!(
        records = s.records,
        applied = t.applied,
        duplicates = t.duplicates,
        dead_letters = t.dead_letters,
        late_events = t.late_events,
        compensations_already_emitted = s.compensations_already_emitted,
        seconds = s.elapsed.as_secs_f64(),
        "replay finished"
    );
    eprintln!("shopscore replay: {} records in {:.1} s", s.records, s.elapsed.as_secs_f64());
    for r in &s.ranges {
        eprintln!(
            "  {}/{}: offsets {}..{} ({} records)",
            r.topic,
            r.partition,
            r.start,
            r.end,
            r.end - r.start
        );
    }
    eprintln!(
        "  totals: {} applied, {} duplicates, {} dead letters, {} late; watermark {}",
        t.applied,
        t.duplicates,
        t.dead_letters,
        t.late_events,
        s.watermark.map(Timestamp::to_rfc3339).unwrap_or_else(|| "none".into())
    );
    let outputs: Vec<String> = s.outputs.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let place = match &target {
        ReplayTarget::Files(dir) => dir.display().to_string(),
        ReplayTarget::Topics(t) => {
            format!("topics {}, {}, {}, {}", t.metrics, t.compensations, t.alerts, t.dead_letters)
        }
    };
    eprintln!("  outputs: {} → {place}", if outputs.is_empty() { "none".into() } else { outputs.join(", ") });
    if s.compensations_already_emitted > 0 {
        eprintln!(
            "  {} compensations were already in the destination topic and were not sent again",
            s.compensations_already_emitted
        );
    }
    if s.outside_time_range > 0 {
        eprintln!(
            "  {} records in the offset ranges had a timestamp outside --from/--to and were skipped",
            s.outside_time_range
        );
    }
    if s.stopped {
        eprintln!("shopscore replay: stopped on request; the outputs are incomplete — run the replay again into new outputs");
    }
    Ok(())
}

fn gen_options(a: &GenArgs) -> Result<GenOptions> {
    let start =
        Timestamp::parse_rfc3339(&a.start).map_err(|e| anyhow::anyhow!("--start {:?}: {e}", a.start))?;
    Ok(GenOptions {
        seed: a.seed,
        events: a.events,
        shops: a.shops,
        days: a.days,
        start,
        malformed_per_mille: a.malformed_per_mille,
        duplicate_per_mille: a.duplicate_per_mille,
        ..GenOptions::default()
    })
}

fn cmd_gen(args: GenArgs) -> Result<()> {
    let opts = gen_options(&args)?;
    let summary = if args.out.as_os_str() == "-" {
        generate(&opts, &mut std::io::stdout().lock())?
    } else {
        generate_file(&opts, &args.out).with_context(|| format!("writing {}", args.out.display()))?
    };
    eprintln!(
        "shopscore: wrote {} lines ({} valid events, {} duplicates, {} malformed) to {}",
        summary.lines,
        summary.valid,
        summary.duplicates,
        summary.malformed,
        args.out.display()
    );
    Ok(())
}

/// The benchmark's work directory: `--work-dir`, or a temporary one, removed when dropped.
struct BenchWorkDir {
    path: PathBuf,
    temporary: bool,
}

impl BenchWorkDir {
    fn of(args: &BenchArgs) -> BenchWorkDir {
        match &args.work_dir {
            Some(d) => BenchWorkDir { path: d.clone(), temporary: false },
            None => BenchWorkDir {
                path: std::env::temp_dir().join(format!("shopscore-bench-{}", std::process::id())),
                temporary: true,
            },
        }
    }
}

impl Drop for BenchWorkDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn cmd_bench(cfg: &Config, args: BenchArgs) -> Result<()> {
    let gen = GenOptions {
        seed: args.seed,
        events: args.events,
        shops: args.shops,
        days: args.days,
        ..GenOptions::default()
    };
    let work = BenchWorkDir::of(&args);
    if args.brokers.is_some() || args.mock_cluster {
        return cmd_bench_kafka(cfg, &args, &gen, &work.path);
    }
    std::fs::create_dir_all(&work.path)?;
    let report = shopscore::bench::run_bench(&gen, &work.path, file_run(cfg))?;
    drop(work);
    let t = &report.summary.totals;
    println!("shopscore bench: file mode, RocksDB state");
    println!(
        "  input      {} lines ({:.1} MiB), {} shops, {} days, seed {}",
        report.input_lines,
        report.input_bytes as f64 / 1048576.0,
        args.shops,
        args.days,
        args.seed
    );
    println!(
        "  applied    {} events, {} duplicates, {} dead letters, {} snapshots",
        t.applied, t.duplicates, t.dead_letters, t.snapshots
    );
    println!(
        "  time       {:.2} s  (generation {:.2} s, not counted)",
        report.run_seconds, report.gen_seconds
    );
    println!("  throughput {:.0} events/s", report.lines_per_second());
    match report.peak_rss_bytes {
        Some(b) => println!("  peak RSS   {:.1} MiB", b as f64 / 1048576.0),
        None => println!("  peak RSS   unknown (no /proc/self/status)"),
    }
    println!(
        "  state      {:.1} MiB on disk after the run, {:.1} MiB live after compaction with retention",
        report.state_bytes as f64 / 1048576.0,
        report.compacted_state_bytes as f64 / 1048576.0
    );
    Ok(())
}
