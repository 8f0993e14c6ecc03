//! Operations against the real binary: the HTTP endpoint of a running process (health,
//! readiness, Prometheus metrics, a shop's live snapshot), graceful shutdown on SIGTERM
//! (exit 0, committed, a second run finishes like an uninterrupted one), forced shutdown
//! (second signal, shutdown timeout: exit 2, nothing more committed, recovery still exact),
//! and `shopscore diff`. The in-process part checks the 503s while state is restoring.

mod support;

use shopscore::http::HttpServer;
use shopscore::live::StateView;
use shopscore::telemetry::metrics::{Metrics, METRIC_NAMES};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{http_get, metric, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_shopscore");

fn shopscore(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("SHOPSCORE__LOG__LEVEL", "warn").stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn gen(path: &Path, events: u64, shops: u32) {
    let out = shopscore(&[
        "gen",
        "--out",
        path.to_str().unwrap(),
        "--events",
        &events.to_string(),
        "--shops",
        &shops.to_string(),
        "--seed",
        "5",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A file-mode run committing every `commit_every` records and never by time, so batch
/// boundaries (and with them the order of outputs) do not depend on machine speed.
fn batched(args: &[String], commit_every: u64, shutdown_timeout: &str) -> Command {
    let mut cmd = shopscore(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("SHOPSCORE__PIPELINE__COMMIT_EVERY_EVENTS", commit_every.to_string())
        .env("SHOPSCORE__PIPELINE__COMMIT_INTERVAL", "1h")
        .env("SHOPSCORE__PIPELINE__SHUTDOWN_TIMEOUT", shutdown_timeout);
    cmd
}

fn run_args(input: &Path, out: &Path, data: &Path) -> Vec<String> {
    ["run", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--data-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([data.to_str().unwrap().to_owned()])
        .collect()
}

/// The value of the sample `series` (name with labels) in a Prometheus text body.
fn sample(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Last snapshot line per shop (as JSON); checks whole lines and gap-free versions.
fn last_snapshots(out: &Path) -> BTreeMap<String, serde_json::Value> {
    let text = read(&out.join("snapshots.jsonl"));
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    let mut last: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines");
        let shop = v["shop_id"].as_str().unwrap().to_owned();
        let prev = last.get(&shop).map_or(0, |p| p["version"].as_u64().unwrap());
        assert_eq!(v["version"].as_u64().unwrap(), prev + 1, "shop {shop}: versions without gaps");
        last.insert(shop, v);
    }
    last
}

fn values(v: &serde_json::Value) -> serde_json::Value {
    serde_json::json!([v["windows"], v["dsr"], v["campaign"]])
}

/// Alerts and dead letters byte for byte, compensations as a set of byte-identical records
/// (SPEC §5: the same *set*; an extra commit at the stop can change the order in which one
/// watermark advance emits its decisions), last snapshot values per shop.
fn assert_same_outputs(got: &Path, want: &Path) {
    for f in ["compensations.jsonl", "alerts.jsonl", "dead_letters.jsonl"] {
        let (mut g, mut w) = (read(&got.join(f)), read(&want.join(f)));
        if f == "compensations.jsonl" {
            let sorted = |t: &str| {
                let mut v: Vec<&str> = t.lines().collect();
                v.sort_unstable();
                v.join("\n")
            };
            (g, w) = (sorted(&g), sorted(&w));
        }
        let lines = |t: &str| t.lines().count();
        assert!(g == w, "{f} differs from the uninterrupted run ({} vs {} lines)", lines(&g), lines(&w));
    }
    let (g, w) = (last_snapshots(got), last_snapshots(want));
    assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
    for (shop, v) in &g {
        assert_eq!(values(v), values(&w[shop]), "shop {shop}");
    }
    let diff = shopscore(&["diff", got.to_str().unwrap(), want.to_str().unwrap()])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(diff.status.code(), Some(0), "shopscore diff: {}", String::from_utf8_lossy(&diff.stdout));
}

#[test]
fn http_endpoints_of_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    gen(&p("in.jsonl"), 20_000, 7);
    let mut args = run_args(&p("in.jsonl"), &p("out"), &p("data"));
    args.extend(["--http-addr", "127.0.0.1:0", "--keep-serving"].map(String::from));
    let mut proc = Proc::spawn(shopscore(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let addr = proc.http_addr();
    assert_ne!(addr.port(), 0, "the real port is reported");
    assert_eq!(http_get(addr, "/healthz").0, 200);
    proc.wait_line("serving HTTP until");

    assert_eq!(http_get(addr, "/readyz"), (200, "ready\n".to_owned()));
    let snapshots = last_snapshots(&p("out"));
    assert_eq!(snapshots.len(), 7);
    for (shop, line) in &snapshots {
        let (status, body) = http_get(addr, &format!("/v1/shops/{shop}"));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["shop_id"], *shop);
        assert_eq!(v["version"], line["version"], "the committed version");
        assert_eq!(values(&v), values(line), "the live values equal the last snapshot's");
        let fresh = &v["freshness"];
        assert!(fresh["watermark"].as_str().unwrap().starts_with("20"), "{fresh}");
        assert_eq!(fresh["watermark"], v["as_of"]);
        let len = std::fs::metadata(p("in.jsonl")).unwrap().len();
        assert_eq!(fresh["positions"][0]["offset"], len, "the whole input is committed: {fresh}");
    }
    let (status, body) = http_get(addr, "/v1/shops/no-such-shop");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no-such-shop"));

    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    // Consumer lag and restores have series only once the Kafka runtime sets one per
    // partition or shard.
    let kafka_only = ["shopscore_consumer_lag", "shopscore_restore_remaining_records"];
    for name in METRIC_NAMES.iter().filter(|n| !kafka_only.contains(n)) {
        assert!(metrics.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    let events_in: f64 = ["orders", "logistics", "refunds", "service", "unknown"]
        .iter()
        .map(|t| sample(&metrics, &format!("shopscore_events_in_total{{topic=\"{t}\"}}")))
        .sum();
    assert_eq!(events_in, 20_000.0, "every input line counted once");
    let lines = |f: &str| read(&p("out").join(f)).lines().count() as f64;
    assert_eq!(
        sample(&metrics, "shopscore_records_out_total{output=\"snapshot\"}"),
        lines("snapshots.jsonl")
    );
    assert_eq!(
        sample(&metrics, "shopscore_records_out_total{output=\"compensation\"}"),
        lines("compensations.jsonl")
    );
    let dead = lines("dead_letters.jsonl");
    assert!(dead > 0.0);
    assert_eq!(sample(&metrics, "shopscore_records_out_total{output=\"dead_letter\"}"), dead);
    let by_reason: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shopscore_dead_letters_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(by_reason, dead, "dead letters by reason add up");
    assert!(sample(&metrics, "shopscore_duplicates_total") > 0.0, "the sample has duplicates");
    let wm = sample(&metrics, "shopscore_watermark_seconds");
    assert!(wm > 1.7e9 && wm < 1.8e9, "a 2024 watermark: {wm}");
    assert!(sample(&metrics, "shopscore_watermark_lag_seconds") > 0.0);
    assert!(sample(&metrics, "shopscore_state_size_bytes") > 0.0);
    // Where the memory goes: the resident set, jemalloc's heap, RocksDB's memtables (written
    // by every commit) — each measured, the heap and memtables within the resident set.
    let memory = |part: &str| sample(&metrics, &format!("shopscore_memory_bytes{{part=\"{part}\"}}"));
    let rss = memory("resident");
    assert!(rss > 1e6, "resident set {rss}");
    assert!(memory("heap_allocated") > 0.0 && memory("heap_allocated") < rss);
    assert!(memory("rocksdb_memtables") > 0.0 && memory("rocksdb_memtables") < rss);
    assert!(sample(&metrics, "shopscore_commit_duration_seconds_count") >= 1.0);
    assert_eq!(sample(&metrics, "shopscore_ready"), 1.0);

    proc.signal("-TERM");
    let (status, _) = proc.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn file_mode_binds_no_port_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "").unwrap();
    let args = run_args(&dir.path().join("in.jsonl"), &dir.path().join("out"), &dir.path().join("data"));
    let out = shopscore(&args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("http listening"));
    let mut keep = args.clone();
    keep.push("--keep-serving".into());
    let out = shopscore(&keep.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "--keep-serving without HTTP is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http-addr"));
}

#[test]
fn sigterm_mid_run_commits_exits_0_and_a_second_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    gen(&p("in.jsonl"), 300_000, 100);
    let reference =
        batched(&run_args(&p("in.jsonl"), &p("ref-out"), &p("ref-data")), 997, "10s").output().unwrap();
    assert!(reference.status.success());

    let args = run_args(&p("in.jsonl"), &p("out"), &p("data"));
    let proc = Proc::spawn(batched(&args, 997, "10s"));
    // Stop once a few commits are out.
    let started = Instant::now();
    while read(&p("out").join("snapshots.jsonl")).lines().count() < 50 {
        assert!(started.elapsed() < Duration::from_secs(30), "no commit within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    proc.signal("-TERM");
    let (status, stderr) = proc.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(sent.elapsed() < Duration::from_secs(10));
    let line = stderr.lines().find(|l| l.contains("stopped on request after")).unwrap_or_else(|| {
        panic!("the run ended before the signal (input too small for this machine?): {stderr}")
    });
    let records: u64 = line.split("after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(records > 0 && records < 300_000, "{line}");
    last_snapshots(&p("out")); // whole lines, versions without gaps
    let dead = read(&p("out").join("dead_letters.jsonl"));
    let last_dead_line: u64 = dead
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["source"]["line"].as_u64().unwrap())
        .unwrap_or(0);
    assert!(last_dead_line <= records, "no output beyond the records read");

    let again = batched(&args, 997, "10s").output().unwrap();
    assert!(again.status.success());
    assert_same_outputs(&p("out"), &p("ref-out"));
}

#[test]
fn second_signal_or_timeout_exits_2_without_committing_and_recovery_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    gen(&p("in.jsonl"), 300_000, 100);
    const HUGE: u64 = 100_000_000;
    let reference =
        batched(&run_args(&p("in.jsonl"), &p("ref-out"), &p("ref-data")), HUGE, "30s").output().unwrap();
    assert!(reference.status.success());
    let args = run_args(&p("in.jsonl"), &p("out"), &p("data"));

    // One huge batch: its final commit takes far longer than these limits.
    for (timeout, second_signal) in [("1ms", false), ("30s", true)] {
        let proc = Proc::spawn(batched(&args, HUGE, timeout));
        std::thread::sleep(Duration::from_millis(700));
        proc.signal("-TERM");
        if second_signal {
            std::thread::sleep(Duration::from_millis(20));
            proc.signal("-TERM");
        }
        let (status, stderr) = proc.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "timeout {timeout}, second signal {second_signal}: {stderr}");
        if !second_signal {
            assert!(stderr.contains("shutdown_timeout"), "{stderr}");
        }
    }
    // Nothing of the big batch was committed: a plain run recomputes it exactly.
    let again = batched(&args, HUGE, "30s").output().unwrap();
    assert!(again.status.success());
    assert_same_outputs(&p("out"), &p("ref-out"));
}

#[test]
fn diff_exits_1_and_names_what_moved() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    gen(&p("in.jsonl"), 5_000, 5);
    for out in ["a", "b"] {
        let args = run_args(&p("in.jsonl"), &p(out), &p(&format!("data-{out}")));
        assert!(shopscore(&args.iter().map(String::as_str).collect::<Vec<_>>()).status().unwrap().success());
    }
    let diff = |a: &str, b: &str| {
        shopscore(&["diff", a, b]).stdout(Stdio::piped()).stderr(Stdio::null()).output().unwrap()
    };
    let (a, b) = (p("a"), p("b"));
    let same = diff(a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(same.status.code(), Some(0));
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(text.trim_end().ends_with("equal"), "{text}");

    // B: one compensation more generous, one gone; one shop's last snapshot moved.
    let comps = read(&b.join("compensations.jsonl"));
    let mut lines: Vec<String> = comps.lines().map(String::from).collect();
    assert!(lines.len() >= 2, "the sample has compensations");
    let removed: serde_json::Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    let mut first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let old_amount = first["amount_fen"].as_i64().unwrap();
    first["amount_fen"] = (old_amount + 1).into();
    lines[0] = first.to_string();
    std::fs::write(b.join("compensations.jsonl"), lines.join("\n") + "\n").unwrap();
    let snaps = read(&b.join("snapshots.jsonl"));
    let mut last: serde_json::Value = serde_json::from_str(snaps.lines().last().unwrap()).unwrap();
    let paid = last["windows"]["30d"]["paid_orders"].as_i64().unwrap();
    last["windows"]["30d"]["paid_orders"] = (paid + 5).into();
    last["version"] = (last["version"].as_u64().unwrap() + 1).into();
    std::fs::write(b.join("snapshots.jsonl"), format!("{snaps}{last}\n")).unwrap();

    let out = diff(a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let shop = last["shop_id"].as_str().unwrap();
    assert!(text.contains(&format!("shop {shop}: paid_orders[30d] {paid} → {}", paid + 5)), "{text}");
    let id = first["compensation_id"].as_str().unwrap();
    assert!(
        text.contains(&format!("compensation {id}: amount_fen {old_amount} → {}", old_amount + 1)),
        "{text}"
    );
    assert!(text.contains(&format!("only in A: {}", removed["compensation_id"].as_str().unwrap())), "{text}");
    assert!(text.trim_end().ends_with("different"));

    let missing = shopscore(&["diff", a.to_str().unwrap(), p("nope").to_str().unwrap()]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "an unreadable output set is an error, not a difference");
}

#[test]
fn restoring_state_answers_503_in_process() {
    let metrics = Arc::new(Metrics::new());
    let view = Arc::new(StateView::new(vec![1, 7, 30]));
    let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), metrics, view.clone()).unwrap();
    let addr = server.addr();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert_eq!(http_get(addr, "/readyz").0, 503);
    let (status, body) = http_get(addr, "/v1/shops/s1");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("restored"));
    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "shopscore_ready"), 0.0);
    view.attach(Arc::new(shopscore::state::memory::MemStore::new()));
    view.set_ready(true);
    assert_eq!(http_get(addr, "/readyz").0, 200);
    assert_eq!(http_get(addr, "/v1/shops/s1").0, 404);
    server.stop();
    assert!(TcpStream::connect(addr).is_err(), "stopped servers release the port");
}
