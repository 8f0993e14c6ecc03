//! `shopscore replay` against a real broker (tansu): replaying the same history twice gives the
//! same outputs, and the outputs of the live run; a replay never touches the live group's
//! changelog; a replay into the live compensation topic sends no compensation twice; protobuf
//! output topics carry the JSON outputs' records, and a replay into them sends no compensation
//! twice either; `--from` and `--to` cut the input by record time; `--http-addr` serves the
//! replay's metrics.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::*;

const PARTITIONS: i32 = 3;

/// A `shopscore replay` command with the test's settings (as [`processor`]).
fn replay(brokers: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopscore"));
    cmd.args(["replay", "--brokers", brokers, "--group", "live"])
        .args(args)
        .env("SHOPSCORE__KAFKA__TRANSACTIONAL", "false")
        .env("SHOPSCORE__KAFKA__REPLICATION_FACTOR", "1")
        .env("SHOPSCORE__LOG__FORMAT", "json")
        .env("RUST_LOG", "shopscore=info,rdkafka=warn,librdkafka=warn")
        .stdout(Stdio::null());
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.stderr(Stdio::piped()).output().expect("run shopscore replay");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed:\n{err}");
    err
}

/// The number in the summary line `shopscore replay: N records in …`.
fn replayed_records(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("shopscore replay: ")).expect("summary line");
    line["shopscore replay: ".len()..].split(' ').next().unwrap().parse().unwrap()
}

/// `shopscore diff A B` through `brokers` (exit status and standard output).
fn diff(brokers: &str, a: &str, b: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopscore"));
    cmd.args(["diff", a, b, "--brokers", brokers]).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Exit status and report (standard output) of a diff; its standard error must be empty.
fn diff_output(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run shopscore diff");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "diff wrote to stderr:\n{err}\nreport:\n{report}");
    (out.status.code(), report)
}

/// Every section of a diff's report says its records are the same on both sides (the alert
/// record counts may differ: where commits cut the input decides how often a rule toggled).
fn sections_agree(report: &str) {
    let sections = ["snapshots", "compensations", "alerts (final", "dead letters"];
    for title in sections {
        let line = report.lines().find(|l| l.starts_with(title)).unwrap_or_else(|| panic!("{report}"));
        assert!(line.ends_with("0 changed, 0 only in A, 0 only in B"), "{report}");
        let counts: Vec<&str> =
            line.split(": ").nth(1).unwrap().split(';').next().unwrap().split(", ").collect();
        assert_eq!(counts[0].trim_end_matches(" in A"), counts[1].trim_end_matches(" in B"), "{report}");
    }
}

fn changelog_end(brokers: &str) -> usize {
    read_all(brokers, "live-changelog", false).len()
}

#[test]
fn replays_are_deterministic_equal_the_live_run_and_never_resend_a_compensation() {
    let t = Tansu::start();
    let lines = gen_lines(5_000, 15, 10, 23);
    setup_inputs(&t.brokers, &lines, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle(&mut processor(&t.brokers, "live", &dir.path().join("live"), false));
    let live = outputs(&t.brokers, false);
    assert!(!live.compensations.is_empty() && !live.dead_letters.is_empty());
    let changelog_before = changelog_end(&t.brokers);

    // Twice into files, once into prefixed topics: the same outputs, and the live run's.
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let err = run_ok(replay(&t.brokers, &["--from", "earliest", "--output"]).arg(&a));
    assert_eq!(replayed_records(&err), lines.len() as u64, "{err}");
    run_ok(replay(&t.brokers, &["--from", "earliest", "--output"]).arg(&b));
    let (in_a, in_b) = (outputs_in_dir(&a), outputs_in_dir(&b));
    assert_same(&in_a, &in_b);

    // With --http-addr a replay serves its metrics (--keep-serving: after it is done too):
    // every record read, the outputs it wrote, nothing left to read.
    let c = dir.path().join("c");
    let mut cmd = replay(&t.brokers, &["--from", "earliest", "--http-addr", "127.0.0.1:0", "--keep-serving"]);
    cmd.arg("--output").arg(&c).stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd);
    let addr = proc.http_addr();
    proc.wait_line("serving HTTP until SIGTERM");
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let samples = |prefix: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(samples("shopscore_events_in_total{").iter().sum::<f64>(), lines.len() as f64, "{text}");
    let out = |kind: &str| metric(&text, &format!("shopscore_records_out_total{{output=\"{kind}\"}}"));
    assert_eq!(out("compensation"), Some(live.compensations.len() as f64), "{text}");
    assert_eq!(out("dead_letter"), Some(live.dead_letters.len() as f64), "{text}");
    let lag = samples("shopscore_consumer_lag{");
    assert_eq!((lag.len(), lag.iter().sum::<f64>()), (INPUTS.len() * PARTITIONS as usize, 0.0), "{text}");
    assert!(metric(&text, "shopscore_watermark_seconds").is_some_and(|w| w > 0.0), "{text}");
    proc.signal("-TERM");
    let (status, rest) = proc.wait(Duration::from_secs(30));
    assert!(status.success(), "{rest}");
    assert_same(&outputs_in_dir(&c), &in_a);
    assert_eq!(
        std::fs::read_to_string(a.join("compensations.jsonl")).unwrap().lines().count(),
        live.compensations.len()
    );
    assert_same(&in_a, &live);
    run_ok(&mut replay(&t.brokers, &["--from", "earliest", "--topic-prefix", "r1-"]));
    assert_same(&outputs_prefixed(&t.brokers, "r1-", false), &live);

    // `shopscore diff` compares topic sets (the live ones, a replay's) and directories alike.
    let (code, report) = diff_output(&mut diff(&t.brokers, "topics:", "topics:r1-"));
    assert_eq!(code, Some(0), "{report}");
    assert!(report.ends_with("equal\n"), "{report}");
    sections_agree(&report);
    let (code, report) = diff_output(&mut diff(&t.brokers, "topics:r1-", a.to_str().unwrap()));
    assert_eq!(code, Some(0), "{report}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, report) = diff_output(&mut diff(&t.brokers, "topics:", empty.to_str().unwrap()));
    assert_eq!(code, Some(1), "{report}");
    let only_in_live = format!(
        "compensations (by compensation_id): {n} in A, 0 in B; 0 changed, {n} only in A, 0 only in B",
        n = live.compensations.len()
    );
    assert!(report.contains(&only_in_live), "{report}");
    // A prefix no run wrote to is an error that names the topic, not an empty output set.
    let out = diff(&t.brokers, "topics:nope-", "topics:").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope-shop-metrics\""), "{out:?}");
    // Topic sets need a broker; without one the error says how to give it.
    let out = Command::new(env!("CARGO_BIN_EXE_shopscore"))
        .args(["diff", "topics:", "topics:r1-"])
        .env("SHOPSCORE__KAFKA__BROKERS", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --brokers HOST:PORT or set kafka.brokers"));

    // A second replay into the same topics sends no compensation again.
    let err = run_ok(&mut replay(&t.brokers, &["--from", "earliest", "--topic-prefix", "r1-"]));
    assert!(
        err.contains(&format!("{} compensations were already in the destination", live.compensations.len())),
        "{err}"
    );
    // (Other outputs are sent again: snapshots and alerts are states, dead letters a log.)
    let r1 = outputs_prefixed(&t.brokers, "r1-", false);
    assert_eq!(r1.compensations, live.compensations);

    // Into the live topics (the live job is stopped): nothing is emitted twice.
    run_ok(&mut replay(&t.brokers, &["--from", "earliest", "--topic-prefix", ""]));
    let after = outputs(&t.brokers, false);
    assert_eq!(after.compensations, live.compensations);

    // No replay wrote to the live group's changelog, and the live job still continues from
    // where it stopped: it reads nothing again.
    assert_eq!(changelog_end(&t.brokers), changelog_before);
    run_until_idle(&mut processor(&t.brokers, "live", &dir.path().join("live"), false));
    assert_eq!(outputs(&t.brokers, false).compensations, live.compensations);

    protobuf_outputs_mean_the_json_ones(&t.brokers, dir.path(), &live);

    // A non-empty output directory is refused with the fix.
    let out = replay(&t.brokers, &["--from", "earliest", "--output"])
        .arg(&a)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
}

const ALERT_RULES: &str = r#"
[[alerts]]
name = "refunds-high"
metric = "refund_rate"
window = "30d"
op = ">"
threshold = 0.05

[[alerts]]
name = "not-eligible"
metric = "campaign_eligible"
op = "=="
threshold = false
"#;

/// Protobuf snapshots, compensations and alerts (`kafka.encoding`), into topics of their own
/// (`pb-` in front of the default names; dead letters there too, raw as always).
fn protobuf_outputs(cmd: &mut Command) -> &mut Command {
    let keys = ["METRICS", "COMPENSATIONS", "ALERTS", "DEAD_LETTERS"];
    for (key, topic) in keys.into_iter().zip(OUTPUTS) {
        cmd.env(format!("SHOPSCORE__KAFKA__TOPICS__{key}"), format!("pb-{topic}"));
        if key != "DEAD_LETTERS" {
            cmd.env(format!("SHOPSCORE__KAFKA__ENCODING__{key}"), "protobuf");
        }
    }
    cmd
}

/// The last alert state of each `shop_id/rule`, from alerts in emission order. (Only the state:
/// an alert's `value` and `as_of` are those of the snapshot that saw the crossing, which depends
/// on batch boundaries.)
/// The alerts raised at the end (`shop/rule`). A rule that was raised and cleared again counts
/// as never raised: whether a value crossed a threshold for a while depends on where commits
/// cut the input, the final state does not.
fn final_alert_states(alerts: impl IntoIterator<Item = serde_json::Value>) -> BTreeSet<String> {
    let last: BTreeMap<String, String> = alerts
        .into_iter()
        .map(|v| {
            let key = format!("{}/{}", v["shop_id"].as_str().unwrap(), v["rule"].as_str().unwrap());
            (key, v["state"].as_str().unwrap().to_owned())
        })
        .collect();
    last.into_iter().filter(|(_, state)| state == "RAISED").map(|(key, _)| key).collect()
}

/// A live run of another group with protobuf outputs (and alert rules) gives the JSON run's
/// outputs by meaning; a replay into those topics reads their protobuf compensations and sends
/// none again.
fn protobuf_outputs_mean_the_json_ones(brokers: &str, dir: &Path, live: &Outputs) {
    let rules = dir.join("alerts.toml");
    std::fs::write(&rules, ALERT_RULES).unwrap();
    let mut cmd = processor(brokers, "live-pb", &dir.join("live-pb"), false);
    run_until_idle(protobuf_outputs(cmd.arg("--config").arg(&rules)));
    let pb = outputs_protobuf_prefixed(brokers, "pb-", false);
    assert_same(&pb, &canonical(live));

    // Alerts: the same final states as a JSON replay with the same rules.
    let json_dir = dir.join("alerts-json");
    run_ok(replay(brokers, &["--from", "earliest", "--config"]).arg(&rules).arg("--output").arg(&json_dir));
    let json_alerts = final_alert_states(
        std::fs::read_to_string(json_dir.join("alerts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap()),
    );
    let pb_alerts: Vec<Rec> = read_all(brokers, "pb-shop-alerts", false)
        .into_iter()
        .map(|r| decode_protobuf(shopscore::output::OutputKind::Alert, r))
        .collect();
    for r in &pb_alerts {
        let v = r.json();
        let key = format!("{}/{}", v["shop_id"].as_str().unwrap(), v["rule"].as_str().unwrap());
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
    }
    assert!(!json_alerts.is_empty());
    assert_eq!(final_alert_states(pb_alerts.iter().map(Rec::json)), json_alerts);

    // `shopscore diff` reads protobuf output topics by meaning too.
    let mut cmd = diff(brokers, "topics:", json_dir.to_str().unwrap());
    let (code, report) = diff_output(protobuf_outputs(&mut cmd));
    assert!(code == Some(0) || code == Some(1), "{report}");
    sections_agree(&report);

    // A replay into the protobuf topics finds every compensation there and sends none again.
    let mut cmd = replay(brokers, &["--from", "earliest", "--topic-prefix", ""]);
    let err = run_ok(protobuf_outputs(cmd.arg("--config").arg(&rules)));
    assert!(
        err.contains(&format!("{} compensations were already in the destination", live.compensations.len())),
        "{err}"
    );
    assert_eq!(outputs_protobuf_prefixed(brokers, "pb-", false).compensations, pb.compensations);
}

/// Produces `lines` with the record timestamps the broker gives them now.
fn produce_now(brokers: &str, lines: &[String]) -> i64 {
    produce_lines(brokers, lines, PARTITIONS);
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    shopscore::domain::Timestamp(ms).to_rfc3339()
}

#[test]
fn from_and_to_cut_by_record_time() {
    let t = Tansu::start();
    let lines = gen_lines(1_200, 5, 5, 5);
    let (first, second) = lines.split_at(600);
    create_topics(&t.brokers, &INPUTS.map(|n| (n, PARTITIONS)));
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t1 = produce_now(&t.brokers, first);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t2 = produce_now(&t.brokers, second);
    let dir = tempfile::tempdir().unwrap();
    let count = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let mut cmd = replay(&t.brokers, args);
        replayed_records(&run_ok(cmd.arg("--output").arg(&out)))
    };
    let mid = rfc3339(t1 + 700);
    assert_eq!(count("all", &["--from", &rfc3339(t0)]), lines.len() as u64);
    assert_eq!(count("first", &["--from", "earliest", "--to", &mid]), first.len() as u64);
    assert_eq!(count("second", &["--from", &mid]), second.len() as u64);
    assert_eq!(count("none", &["--from", &rfc3339(t2 + 60_000)]), 0);
    assert!(Path::new(&dir.path().join("none").join("compensations.jsonl")).exists());
}

/// A replay from the earliest offsets must read every input record and finish, whatever the
/// batches and transactions of the inputs' producer: on tansu 0.6.0 with batches of many
/// records, whose `ListOffsets` names the last batch's first offset + 1 as a partition's end,
/// and on tansu's main build with transactions, whose partitions end with a commit marker
/// that no reader is given.
#[test]
fn replays_read_batched_and_transactional_inputs_to_their_end() {
    let lines = gen_lines(6_000, 15, 10, 53);
    for (build, transactional) in [(TansuBuild::Release, false), (TansuBuild::Transactional, true)] {
        let t = Tansu::start_build(build);
        create_topics(&t.brokers, &INPUTS.map(|n| (n, PARTITIONS)));
        produce_batched(&t.brokers, &lines, PARTITIONS, transactional);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut cmd = replay(&t.brokers, &["--from", "earliest", "--output", out.to_str().unwrap()]);
        cmd.stderr(Stdio::piped());
        let (status, log) = Proc::spawn(cmd).wait(Duration::from_secs(120));
        assert!(status.success(), "{build:?}: replay failed:\n{}", tail(&log, 30));
        assert_eq!(replayed_records(&log), lines.len() as u64, "{build:?}: records replayed");
    }
}

/// A replay into the live topics is refused while the live compensation topic holds an open
/// transaction: a live instance that crashed mid-commit leaves one until the broker aborts it
/// (its transaction timeout). A `read_committed` read of the topic, which is how a replay learns
/// which compensations are already there, cannot see past it, so compensations other shards
/// committed behind it would look absent and be sent again. tansu's main build hides open
/// transactions from committed reads, as Kafka does (session 29).
#[test]
fn a_replay_into_the_live_topics_is_refused_while_a_transaction_is_open() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let lines = gen_lines(2_000, 5, 5, 61);
    let t = Tansu::start_build(TansuBuild::Transactional);
    setup_inputs(&t.brokers, &lines, PARTITIONS);
    create_topics(&t.brokers, &[("compensations", 4)]);
    let crashed: ThreadedProducer<DefaultProducerContext> =
        client(&t.brokers).set("transactional.id", "crashed-live-shard").create().unwrap();
    crashed.init_transactions(Duration::from_secs(30)).unwrap();
    crashed.begin_transaction().unwrap();
    crashed.send(BaseRecord::<(), [u8]>::to("compensations").partition(1).payload(b"open")).unwrap();
    crashed.flush(Duration::from_secs(30)).unwrap();

    let out = replay(&t.brokers, &["--from", "earliest", "--topic-prefix", ""])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the replay ran:\n{err}");
    assert!(
        err.contains("\"compensations\" holds an open transaction") && err.contains("retry the replay"),
        "{err}"
    );
    assert!(err.contains("partition 1: committed end"), "the partition is named:\n{err}");
}
