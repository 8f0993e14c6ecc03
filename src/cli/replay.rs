//! `shopscore replay`: historical topics into fresh state and chosen outputs.

use super::args::ReplayArgs;
use super::run::serve_http;
use super::wiring::kafka_run;
use anyhow::{bail, Result};
use shopscore::config::Config;
use shopscore::domain::Timestamp;
use shopscore::kafka::replay::{run_replay, ReplayFrom, ReplayRun, ReplayTarget};
use shopscore::live::StateView;
use shopscore::shutdown::Shutdown;
use shopscore::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// `shopscore replay`: checks the time range and the target, then runs the replay and prints
/// its summary.
pub fn cmd_replay(cfg: &Config, args: ReplayArgs) -> Result<()> {
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
    let metrics = Arc::new(Metrics::new());
    // No shop view: the replay's state is its own and goes when it ends.
    let view = Arc::new(StateView::new(live.rules.windows.clone()));
    // Only on request: with `http.enabled = true` shared with a live instance's config, a
    // replay on the same host would otherwise take (or fail on) the live port.
    let _server = match args.http_addr {
        Some(addr) => serve_http(cfg, Some(addr), false, &metrics, view)?,
        None if args.keep_serving => {
            bail!("--keep-serving needs the HTTP endpoint: give --http-addr IP:PORT")
        }
        None => None,
    };
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
        memory: live.memory,
        metrics: Some(metrics),
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
    } else if args.keep_serving {
        eprintln!("shopscore replay: done; serving HTTP until SIGTERM/SIGINT");
        while !shutdown.is_requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
