//! The command line as an operator uses it (SPEC §10): `gen` then `run` end to end,
//! configuration errors that name the key and stop startup, and the `bench` report.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shopscore");

fn shopscore(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("SHOPSCORE__LOG__LEVEL", "warn").output().unwrap()
}

#[test]
fn gen_then_run_writes_all_four_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let g = shopscore(&["gen", "--out", input.to_str().unwrap(), "--events", "5000", "--shops", "7"]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let r = shopscore(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let count = |f: &str| std::fs::read_to_string(out.join(f)).unwrap().lines().count();
    assert!(count("snapshots.jsonl") > 0);
    let shops: std::collections::BTreeSet<String> = std::fs::read_to_string(out.join("snapshots.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["shop_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(shops.len(), 7, "every shop with a valid event has a snapshot");
    assert!(count("dead_letters.jsonl") > 0, "the sample has malformed lines");
    assert!(count("compensations.jsonl") > 0, "the sample has late orders");
    assert!(data.join("CURRENT").exists(), "state is a RocksDB database");
}

#[test]
fn configuration_errors_stop_startup_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "").unwrap();
    let out_dir = dir.path().join("o");
    let args = ["run", "--input", input.to_str().unwrap(), "--output", out_dir.to_str().unwrap()];
    let out = Command::new(BIN).args(args).env("SHOPSCORE__TIME__OUT_OF_ORDERNES", "5m").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("time.out_of_ordernes") && err.contains("SHOPSCORE__TIME__OUT_OF_ORDERNES"),
        "{err}"
    );
    let out = Command::new(BIN).args(args).env("SHOPSCORE__WINDOWS__DAYS", "[]").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("windows.days"));
    assert!(!dir.path().join("o").exists(), "nothing runs after a configuration error");
}

/// Kafka mode and `replay` pointed at an address where no broker listens stop within the
/// metadata timeout with an error that names the setting, not only librdkafka's "Broker
/// transport failure", after librdkafka's own reason ("Connection refused"; with TLS, e.g.
/// "certificate verify failed").
#[test]
fn unreachable_brokers_stop_startup_and_name_the_setting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers = format!("127.0.0.1:{port}"); // the listener is dropped: nothing listens there
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runs = [
        vec!["run", "--brokers", &brokers, "--data-dir", data.to_str().unwrap()],
        vec!["replay", "--brokers", &brokers, "--from", "earliest", "--topic-prefix", "r-"],
    ];
    for args in runs {
        let started = std::time::Instant::now();
        let out = Command::new(BIN).args(&args).env("SHOPSCORE__HTTP__ENABLED", "false").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
        // librdkafka's own reason is logged before it (its lines wait on the metadata
        // client's queue, which is polled once the request has failed).
        assert!(err.contains("Connection refused"), "{args:?}: librdkafka's reason is missing:\n{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains("cannot reach the Kafka brokers")
                && last.contains(&brokers)
                && last.contains("SHOPSCORE__KAFKA__BROKERS"),
            "{args:?}: {last}"
        );
    }
}

/// The binary allocates with jemalloc and gives freed memory back within about a second
/// (`src/main.rs`): an options symbol under the wrong name is silently ignored, so this asks
/// jemalloc which options it runs with.
#[test]
fn the_binary_runs_on_jemalloc_with_its_decay_options() {
    let out =
        Command::new(BIN).arg("--version").env("_RJEM_MALLOC_CONF", "stats_print:true").output().unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.background_thread: true", "opt.dirty_decay_ms: 1000", "opt.muzzy_decay_ms: 0"] {
        assert!(stats.contains(option), "jemalloc runs without {option}:\n{stats}");
    }
}

#[test]
fn bench_reports_throughput_and_peak_memory() {
    let out = shopscore(&["bench", "--events", "20000", "--shops", "50", "--days", "10"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // "  throughput 123 events/s", "  peak RSS   45.6 MiB": the number after the label.
    let figure = |label: &str| -> f64 {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{text}"));
        let rest = line.trim_start()[label.len()..].split_whitespace().next().unwrap();
        rest.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    assert!(figure("throughput") > 0.0, "{text}");
    assert!(figure("peak RSS") > 0.0, "{text}");
    assert!(text.contains("20000 lines"), "{text}");
}

/// `--repeat N`: N full reports, then the median, lowest and highest of their rates.
#[test]
fn bench_repeats_and_summarises_the_runs() {
    let out = shopscore(&["bench", "--events", "5000", "--shops", "20", "--days", "5", "--repeat", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers = |line: &str| -> Vec<f64> {
        line.split(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(|s| s.parse().unwrap_or_else(|_| panic!("{line}")))
            .collect()
    };
    let mut runs: Vec<f64> =
        text.lines().filter(|l| l.trim_start().starts_with("throughput")).map(|l| numbers(l)[0]).collect();
    assert_eq!(runs.len(), 3, "{text}");
    assert!(text.contains("run 3 of 3"), "{text}");
    runs.sort_by(f64::total_cmp);
    // "  median     M (lowest L, highest H) events/s throughput"
    let summary =
        text.lines().find(|l| l.trim_start().starts_with("median")).unwrap_or_else(|| panic!("{text}"));
    let got = numbers(summary);
    let expected = [runs[1].round(), runs[0].round(), runs[2].round()];
    assert_eq!(&got[..3], &expected[..], "{summary} for runs {runs:?}");
}

#[test]
fn kafka_bench_on_the_mock_cluster_reports_every_phase() {
    let out = shopscore(&[
        "bench",
        "--mock-cluster",
        "--transactional",
        "true",
        "--events",
        "5000",
        "--shops",
        "20",
        "--days",
        "5",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = |label: &str| -> f64 {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{text}"));
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    for phase in ["produce", "consume", "end to end", "ceiling", "peak RSS"] {
        assert!(figure(phase) > 0.0, "{phase}: {text}");
    }
    // Every generated record went through Kafka mode: applied + duplicates + dead letters.
    let applied = text.lines().find(|l| l.trim_start().starts_with("applied")).unwrap();
    let n: Vec<u64> = applied
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    // "applied    A events (L late), D duplicates, X dead letters; …"
    assert_eq!(n[0] + n[2] + n[3], 5000, "{applied}");
    assert!(text.contains("transactions on"), "{text}");
}
