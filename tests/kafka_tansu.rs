//! Kafka mode against a real Kafka-protocol broker: tansu 0.6.0, started per test as its own
//! server process (scripts/test.sh installs it). tansu has no transactions, so these runs use
//! `kafka.transactional = false`: the outbox protocol must still deliver every output exactly
//! once (see tests/kafka_transactions.rs for the transactional runs on librdkafka's mock
//! cluster).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use support::*;

const PARTITIONS: i32 = 3;

fn setup_inputs(t: &Tansu, lines: &[String]) {
    create_topics(&t.brokers, &INPUTS.map(|n| (n, PARTITIONS)));
    produce_lines(&t.brokers, lines, PARTITIONS);
}

/// File mode on the same lines, for cross-checks.
fn file_mode(lines: &[String], dir: &std::path::Path) -> BTreeMap<&'static str, Vec<serde_json::Value>> {
    std::fs::create_dir_all(dir).unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let run = shopscore::pipeline::FileRun::new(vec![input], dir.join("out"), dir.join("data"));
    shopscore::pipeline::run_files(&run).unwrap();
    let mut out = BTreeMap::new();
    for (k, f) in [
        ("compensations", "compensations.jsonl"),
        ("dead_letters", "dead_letters.jsonl"),
        ("snapshots", "snapshots.jsonl"),
    ] {
        let text = std::fs::read_to_string(dir.join("out").join(f)).unwrap();
        out.insert(k, text.lines().map(|l| serde_json::from_str(l).unwrap()).collect());
    }
    out
}

#[test]
fn end_to_end_every_output_and_poison_records() {
    let t = Tansu::start();
    let lines = gen_lines(6_000, 20, 10, 11);
    setup_inputs(&t, &lines);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle(&mut processor(&t.brokers, "g1", &dir.path().join("data"), false));

    let file = file_mode(&lines, &dir.path().join("file"));
    // Dead letters: every poison record, original bytes, reason and source in headers.
    let dl = read_all(&t.brokers, "dead-letters", false);
    assert_eq!(dl.len(), file["dead_letters"].len());
    assert!(!dl.is_empty());
    let want: BTreeSet<String> =
        file["dead_letters"].iter().map(|v| v["raw"].as_str().unwrap_or("").to_owned()).collect();
    for r in &dl {
        assert!(want.contains(&String::from_utf8_lossy(&r.payload).into_owned()));
        assert!(r.header("shopscore.reason").is_some_and(|s| !s.is_empty()));
        assert!(r.header("shopscore.source.topic").is_some());
        assert!(r.header("shopscore.source.offset").is_some());
    }
    // Compensations: each once, keyed by order_id, equal to file mode's up to the final
    // watermark (file mode ends at the largest event time; Kafka mode at it minus the bound).
    let comps = read_all(&t.brokers, "compensations", false);
    let mut ids = BTreeSet::new();
    for r in &comps {
        let v = r.json();
        assert_eq!(r.key.as_deref(), Some(v["order_id"].as_str().unwrap().as_bytes()));
        assert!(ids.insert(format!("{}:{}", v["order_id"], v["kind"])), "duplicate compensation {v}");
    }
    assert!(!comps.is_empty());
    let key = |v: &serde_json::Value| {
        format!("{}|{}|{}|{}", v["order_id"], v["kind"], v["amount_fen"], v["decided_at"])
    };
    let kafka_set: BTreeSet<String> = comps.iter().map(|r| key(&r.json())).collect();
    let file_set: BTreeSet<String> = file["compensations"].iter().map(key).collect();
    assert!(
        kafka_set.is_subset(&file_set),
        "Kafka-only: {:?}",
        kafka_set.difference(&file_set).collect::<Vec<_>>()
    );
    assert!(kafka_set.len() * 10 >= file_set.len() * 9, "{} of {}", kafka_set.len(), file_set.len());
    // Snapshots: compacted topic keyed by shop; every shop has one.
    let snaps = read_all(&t.brokers, "shop-metrics", false);
    for r in &snaps {
        assert_eq!(r.key.as_deref(), Some(r.json()["shop_id"].as_str().unwrap().as_bytes()));
    }
    let shops: BTreeSet<String> = final_snapshots(&snaps).into_keys().collect();
    let file_shops: BTreeSet<String> =
        file["snapshots"].iter().map(|v| v["shop_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(shops, file_shops);
}

/// Lines for the restart tests, and the outputs of one uninterrupted run on them.
fn reference(lines: &[String]) -> Outputs {
    let t = Tansu::start();
    setup_inputs(&t, lines);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle(&mut processor(&t.brokers, "ref", &dir.path().join("data"), false));
    outputs(&t.brokers, false)
}

#[test]
fn kill_9_many_times_emits_each_output_at_most_once() {
    let lines = gen_lines(40_000, 40, 40, 19);
    let t = Tansu::start();
    setup_inputs(&t, &lines);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..5u64 {
        let log = dir.path().join(format!("run-{i}.log"));
        kill_after_acquiring(&mut processor(&t.brokers, "g", &data, false), &log, 4, 100 + (i * 379) % 900);
    }
    run_until_idle(&mut processor(&t.brokers, "g", &data, false));
    let got = outputs(&t.brokers, false);
    assert!(!got.compensations.is_empty());
    assert_no_duplicates(&got);
    // Every poison record reached the dead-letter topic exactly once.
    let poison = lines
        .iter()
        .filter(|l| shopscore::domain::decode::decode_json(l.as_bytes(), None, &Default::default()).is_err())
        .count();
    assert_eq!(got.dead_letters.len(), poison);
}

#[test]
fn kill_9_many_times_outputs_equal_an_uninterrupted_run() {
    let lines = gen_lines(40_000, 40, 40, 23);
    let want = reference(&lines);
    assert!(!want.compensations.is_empty() && !want.dead_letters.is_empty());

    let t = Tansu::start();
    setup_inputs(&t, &lines);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..6u64 {
        let log = dir.path().join(format!("run-{i}.log"));
        kill_after_acquiring(&mut processor(&t.brokers, "g", &data, false), &log, 4, 100 + (i * 379) % 900);
    }
    run_until_idle(&mut processor(&t.brokers, "g", &data, false));
    assert_same(&outputs(&t.brokers, false), &want);
}

#[test]
fn moved_shards_and_lost_local_state_produce_the_same_outputs() {
    // Three instances in one group, one of them killed mid-stream, and each new instance on a
    // fresh data directory: every shard that moves is rebuilt from the changelog.
    let lines = gen_lines(30_000, 30, 30, 29);
    let want = reference(&lines);

    let t = Tansu::start();
    setup_inputs(&t, &lines);
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        processor(&t.brokers, "g", &dir.path().join(name), false)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn shopscore")
    };
    let mut a = spawn("a");
    let mut b = spawn("b");
    let mut c = spawn("c");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    b.kill().unwrap(); // SIGKILL mid-stream: its shards move once its session expires
    b.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for child in [&mut a, &mut c] {
        unsafe { libc_kill(child.id() as i32, 15) };
    }
    a.wait().unwrap();
    c.wait().unwrap();
    // A replacement on a new, empty data directory finishes the job alone.
    run_until_idle(&mut processor(&t.brokers, "g", &dir.path().join("d"), false));
    assert_same(&outputs(&t.brokers, false), &want);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
