//! `shopscore run`: file mode (`--input`, the default with no brokers) or Kafka mode
//! (`--brokers`), with the optional HTTP endpoint.

use super::args::RunArgs;
use super::wiring::{file_run, kafka_run};
use anyhow::{bail, Result};
use shopscore::config::Config;
use shopscore::domain::Timestamp;
use shopscore::http::HttpServer;
use shopscore::kafka::murmur::partition_for;
use shopscore::kafka::runtime::run_kafka;
use shopscore::live::{LiveView, ShardOf, ShardsView, StateView};
use shopscore::pipeline::run_files;
use shopscore::shutdown::Shutdown;
use shopscore::telemetry::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Starts the HTTP endpoint when `http.enabled` (or `--http-addr`) says so, and prints the
/// bound address as `shopscore: http listening on IP:PORT` on stderr.
pub(super) fn serve_http(
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

/// `shopscore run`: Kafka mode when brokers are given (flag or `kafka.brokers`), else file mode.
pub fn cmd_run(cfg: &Config, args: RunArgs) -> Result<()> {
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
