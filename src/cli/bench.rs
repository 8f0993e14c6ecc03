//! `shopscore bench`: the benchmark in file mode or through Kafka, printed as a report.

use super::args::BenchArgs;
use super::wiring::{file_run, kafka_run};
use anyhow::{Context, Result};
use shopscore::bench::kafka::admin_create;
use shopscore::config::Config;
use shopscore::gen::GenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The rates of one run, for the summary of repeated runs.
struct Rates {
    /// End to end (Kafka) or throughput (file mode), events/s.
    events: f64,
    /// Kafka: what the broker alone delivers to a reader with the same settings, records/s.
    consume: Option<f64>,
}

/// `shopscore bench`: file mode by default; through Kafka with `--brokers` or `--mock-cluster`;
/// `--repeat N` times, each run on fresh state, then the median, lowest and highest rates.
pub fn cmd_bench(cfg: &Config, args: BenchArgs) -> Result<()> {
    let gen = GenOptions {
        seed: args.seed,
        events: args.events,
        shops: args.shops,
        days: args.days,
        ..GenOptions::default()
    };
    let work = BenchWorkDir::of(&args);
    let mut runs = Vec::with_capacity(args.repeat as usize);
    for i in 0..args.repeat {
        let dir = if args.repeat > 1 { work.path.join(format!("run-{}", i + 1)) } else { work.path.clone() };
        if args.repeat > 1 {
            println!("shopscore bench: run {} of {}", i + 1, args.repeat);
        }
        if i > 0 {
            // Each run's peak, not the process's so far (Kafka mode resets it itself).
            shopscore::bench::reset_peak_rss();
        }
        runs.push(if args.brokers.is_some() || args.mock_cluster {
            cmd_bench_kafka(cfg, &args, &gen, &dir)?
        } else {
            bench_file(cfg, &args, &gen, &dir)?
        });
    }
    drop(work);
    if runs.len() > 1 {
        print_repeated(&runs);
    }
    Ok(())
}

/// The summary of repeated runs: the median (of an even count, the mean of the middle two),
/// lowest and highest of each rate.
fn print_repeated(runs: &[Rates]) {
    let spread = |mut v: Vec<f64>| -> String {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        format!("{median:.0} (lowest {:.0}, highest {:.0})", v[0], v[n - 1])
    };
    println!("shopscore bench: {} runs", runs.len());
    let events = spread(runs.iter().map(|r| r.events).collect());
    let consume: Vec<f64> = runs.iter().filter_map(|r| r.consume).collect();
    if consume.len() == runs.len() {
        println!("  median     {events} events/s end to end");
        println!("  median     {} records/s consume (broker alone)", spread(consume));
        let ceilings = runs.iter().map(|r| 100.0 * r.events / r.consume.unwrap_or(f64::NAN)).collect();
        println!("  median     {} % ceiling (end to end over consume, per run)", spread(ceilings));
    } else {
        println!("  median     {events} events/s throughput");
    }
}

/// One file-mode run in `work`, reported.
fn bench_file(cfg: &Config, args: &BenchArgs, gen: &GenOptions, work: &Path) -> Result<Rates> {
    std::fs::create_dir_all(work)?;
    let report = shopscore::bench::run_bench(gen, work, file_run(cfg))?;
    let t = &report.summary.totals;
    println!("shopscore bench: file mode, RocksDB state");
    println!(
        "  input      {} lines ({:.1} MiB), {} shops, {} days ({}), seed {}",
        report.input_lines,
        report.input_bytes as f64 / 1048576.0,
        args.shops,
        args.days,
        density(args),
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
    Ok(Rates { events: report.lines_per_second(), consume: None })
}

/// `shopscore bench --brokers …` / `--mock-cluster`: produce, consume and end-to-end rates of
/// one run (a fresh mock cluster, or fresh topics on the broker).
fn cmd_bench_kafka(cfg: &Config, args: &BenchArgs, gen: &GenOptions, work: &Path) -> Result<Rates> {
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
        "  input      {} records ({:.1} MiB), {} shops, {} days ({}), seed {}; {} partitions per input topic, {} shards, {}",
        r.records,
        r.bytes as f64 / 1048576.0,
        args.shops,
        args.days,
        density(args),
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
        "  consume    {:>10.0} records/s  (broker alone, shopscore's reader settings; {:.2} s from the first record read to the last, {:.2} s to the first before that)",
        r.per_second(r.consume_seconds),
        r.consume_seconds,
        r.consume_startup_seconds
    );
    println!(
        "  end to end {:>10.0} events/s   ({:.2} s from the first record read to the last commit; whole run {:.2} s incl. startup and a 5 s idle wait)",
        r.per_second(r.process_seconds),
        r.process_seconds,
        r.run_seconds
    );
    println!(
        "  ceiling    {:>10.1} %          (end to end over consume: reading alone, with the same reader settings, is the most this broker can feed Kafka mode)",
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
    if let Some(m) = &r.summary.memory_at_peak {
        println!("  memory     {}", memory_parts(m));
    }
    Ok(Rates { events: r.per_second(r.process_seconds), consume: Some(r.per_second(r.consume_seconds)) })
}

/// Where the memory went at the highest resident set sampled, in MiB.
fn memory_parts(m: &shopscore::telemetry::memory::MemoryUse) -> String {
    let mib = |b: Option<u64>| b.map_or("?".to_owned(), |b| format!("{:.0}", b as f64 / 1048576.0));
    format!(
        "at the highest RSS sampled ({} MiB, every 0.5 s while reading): Rust heap {} allocated / {} resident \
         (jemalloc), RocksDB block cache {} and memtables {}, reader prefetch {}, other {} \
         (librdkafka's other buffers, glibc's free lists, code, stacks)",
        mib(m.resident),
        mib(m.heap_allocated),
        mib(m.heap_resident),
        mib(Some(m.block_cache)),
        mib(Some(m.memtables)),
        mib(m.reader_prefetch),
        mib(m.other())
    )
}

/// How dense the generated input is in event time: records per shop and per day of story
/// starts. Kafka-mode throughput depends on it (docs/benchmark-history.md, session 11): commits
/// re-evaluate shops for every day the watermark crosses, so sparse input costs more per event.
fn density(args: &BenchArgs) -> String {
    let per = args.events as f64 / (f64::from(args.shops.max(1)) * f64::from(args.days.max(1)));
    format!("{per:.1} events per shop and day")
}
