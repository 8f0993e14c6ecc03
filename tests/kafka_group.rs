//! Group membership on a real broker process: when an instance dies, the survivor takes its
//! shards over, even while librdkafka floods the group member's queue with events.
//!
//! Runs on tansu's main build (scripts/tansu-txn.sh, the transactional tests' broker), not on
//! tansu 0.6.0: 0.6.0's group coordinator keeps a member whose session has expired, and even
//! makes it the leader of the next generation (librdkafka `debug=cgrp`: "JoinGroup response:
//! … LeaderId <the dead member's id>"). The survivor then gets its old assignment back in
//! SyncGroup, and the dead member's shards stay unowned (README → Tests against real brokers).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use support::*;

/// The lines of a processor's JSON log that name a shard: (shard, the whole line).
fn shard_lines(text: &str) -> impl Iterator<Item = (u32, serde_json::Value)> + '_ {
    text.lines().filter_map(|line| {
        let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
        Some((v["shard"].as_u64()? as u32, v))
    })
}

/// The shards a processor owns now, from its JSON log: acquired, less released since.
fn owned(log: &Path) -> BTreeSet<u32> {
    let mut owned = BTreeSet::new();
    for (shard, v) in shard_lines(&std::fs::read_to_string(log).unwrap_or_default()) {
        match v["message"].as_str() {
            Some("shard acquired") => owned.insert(shard),
            Some("shard released") => owned.remove(&shard),
            _ => false,
        };
    }
    owned
}

/// Waits until `ok` holds (at most `limit`), panicking with `what` and what the processors
/// last logged.
fn wait_for(what: &str, limit: Duration, logs: &[&Path], ok: impl Fn() -> bool) {
    wait_until(what, limit, logs, |l| l.contains("shopscore"), ok);
}

/// Two instances split the four shards; the first is SIGKILLed; the second must own all four
/// once the group has noticed (6 s session timeout). The second runs with librdkafka's
/// `debug=cgrp`, whose log events queue up on the group member's queue faster than one per
/// commit cycle. Until session 17 the runtime took one event per cycle from that queue
/// (rust-rdkafka's `poll` with a zero timeout), so the revocation that starts the rebalance
/// sat behind the logs, and the survivor kept two shards for as long as it ran (seen: 40 s,
/// never released).
#[test]
fn a_survivor_takes_over_a_dead_instances_shards_under_a_flood_of_client_events() {
    let t = Tansu::start_build(TansuBuild::Transactional);
    setup_inputs(&t.brokers, &gen_lines(3_000, 8, 5, 17), 3);
    let dir = tempfile::tempdir().unwrap();
    let (x_log, y_log) = (dir.path().join("x.log"), dir.path().join("y.log"));
    let logs = [x_log.as_path(), y_log.as_path()];
    let x = Running(
        processor(&t.brokers, "grp", &dir.path().join("x"), false)
            .stderr(std::fs::File::create(&x_log).unwrap())
            .spawn()
            .expect("spawn shopscore"),
    );
    wait_for("the first instance to own all four shards", Duration::from_secs(60), &logs, || {
        owned(&x_log).len() == 4
    });
    let _y = Running(
        processor(&t.brokers, "grp", &dir.path().join("y"), false)
            // librdkafka logs at the level the Rust side lets through: debug, for the flood.
            .env("SHOPSCORE__KAFKA__CLIENT__DEBUG", "cgrp")
            .env("RUST_LOG", "shopscore=info,librdkafka=debug")
            .stderr(std::fs::File::create(&y_log).unwrap())
            .spawn()
            .expect("spawn shopscore"),
    );
    wait_for("the two instances to split the shards", Duration::from_secs(60), &logs, || {
        let (a, b) = (owned(&x_log), owned(&y_log));
        a.len() == 2 && b.len() == 2 && a.is_disjoint(&b)
    });
    drop(x); // SIGKILL
    wait_for("the survivor to take over every shard", Duration::from_secs(60), &logs, || {
        owned(&y_log).len() == 4
    });
}

/// A new owner restores each shard's state from the changelog before it reads input, which
/// takes as long as the changelog is big; the group member must be served meanwhile, or
/// librdkafka leaves the group once `max.poll.interval.ms` passes without a poll (Kafka's
/// default is 5 minutes; "Application maximum poll interval … exceeded … leaving group"), the
/// shards go to a rebalance mid-restore, and on a big enough changelog the instance never
/// gets to read input. Here a second instance on an empty data directory restores every shard
/// with a poll interval shorter than its restore: it must acquire each shard once and finish.
/// The restore is made slow by the test hook `SHOPSCORE_TEST_RESTORE_DELAY_MS` (a sleep after
/// every changelog record), so the openings outlast the poll interval by far on any machine,
/// and long enough for the restore to report its progress (in the log, and at `/metrics`).
#[test]
fn a_restore_longer_than_the_poll_interval_keeps_the_instance_in_the_group() {
    const POLL_INTERVAL_MS: u64 = 1_000;
    const DELAY_PER_RECORD_MS: u64 = 8;
    let t = Tansu::start_build(TansuBuild::Transactional);
    setup_inputs(&t.brokers, &gen_lines(6_000, 200, 30, 23), 3);
    let dir = tempfile::tempdir().unwrap();
    run_until_idle_within(
        &mut processor(&t.brokers, "grp", &dir.path().join("first"), false),
        Duration::from_secs(120),
    );

    let mut second = processor(&t.brokers, "grp", &dir.path().join("second"), false);
    second
        .env("SHOPSCORE_TEST_RESTORE_DELAY_MS", DELAY_PER_RECORD_MS.to_string())
        .env("SHOPSCORE__KAFKA__CLIENT__MAX_POLL_INTERVAL_MS", POLL_INTERVAL_MS.to_string())
        .env("SHOPSCORE__KAFKA__CLIENT__SESSION_TIMEOUT_MS", POLL_INTERVAL_MS.to_string())
        .env("SHOPSCORE__KAFKA__CLIENT__HEARTBEAT_INTERVAL_MS", "500")
        .args(["--http-addr", "127.0.0.1:0"]);
    let (status, log, scrapes) = run_until_idle_scraped(&mut second, &dir.path().join("second.log"));
    assert!(
        status.is_some_and(|s| s.success()),
        "the restoring instance failed or hung:\n{}",
        tail(&log, 30)
    );
    let lines: Vec<(u32, serde_json::Value)> = shard_lines(&log).collect();
    let acquired: Vec<(u32, u64)> = lines
        .iter()
        .filter(|(_, v)| v["message"] == "shard acquired")
        .map(|(shard, v)| (*shard, v["ms"].as_u64().unwrap()))
        .collect();
    let restored: Vec<(u32, u64)> = lines
        .iter()
        .filter(|(_, v)| v["message"] == "shard state restored")
        .map(|(shard, v)| (*shard, v["records"].as_u64().unwrap()))
        .collect();
    eprintln!("acquired (shard, ms): {acquired:?}; restored (shard, records): {restored:?}");
    let slowest = acquired.iter().map(|&(_, ms)| ms).max().unwrap_or(0);
    // Past the poll interval many times over (librdkafka checks it every 500 ms; on the old
    // runtime every shard was acquired twice with openings of 1.4 s), and past the 10 s after
    // which a restore reports its progress.
    assert!(
        slowest > 11_000,
        "the test needs an opening longer than 11 s; the slowest took {slowest} ms (raise the delay)"
    );
    assert!(
        !log.contains("maximum poll interval"),
        "librdkafka left the group mid-restore:\n{}",
        tail(&log, 30)
    );
    let mut shards: Vec<u32> = acquired.iter().map(|&(s, _)| s).collect();
    shards.sort_unstable();
    assert_eq!(shards, vec![0, 1, 2, 3], "each shard acquired once; acquired (shard, ms): {acquired:?}");
    // The longest restores reported where they were: offset, the fence they read up to, records.
    let progress: Vec<&serde_json::Value> =
        lines.iter().filter(|(_, v)| v["message"] == "restoring shard state").map(|(_, v)| v).collect();
    assert!(!progress.is_empty(), "an opening took {slowest} ms and no restore reported its progress");
    for p in &progress {
        assert!(
            p["offset"].as_i64() <= p["fence"].as_i64() && p["records"].as_u64() > Some(0),
            "a progress line that says nothing useful: {p}"
        );
    }
    eprintln!("progress: {progress:?}");
    // `/metrics` showed each restore's remaining records go down while it ran, and every
    // shard at 0 once restored.
    let remaining = |text: &str, shard: u32| {
        metric(text, &format!("shopscore_restore_remaining_records{{shard=\"{shard}\"}}"))
    };
    for shard in 0..4 {
        let seen: Vec<f64> = scrapes.iter().filter_map(|text| remaining(text, shard)).collect();
        let first_positive = seen.iter().position(|&v| v > 0.0);
        assert!(
            first_positive.is_some_and(|i| seen[i..].iter().any(|&v| v > 0.0 && v < seen[i])),
            "shard {shard}: no falling remaining count while restoring: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&0.0), "shard {shard} restored: {seen:?}");
    }
}

/// Runs `cmd --until-idle` (at most 240 s) with its log in `log`, scraping the `/metrics` of
/// the HTTP address it announces every 200 ms: its exit status, its log, and the scrapes.
fn run_until_idle_scraped(
    cmd: &mut std::process::Command,
    log: &Path,
) -> (Option<std::process::ExitStatus>, String, Vec<String>) {
    let mut child =
        cmd.arg("--until-idle").stderr(std::fs::File::create(log).unwrap()).spawn().expect("run shopscore");
    let started = std::time::Instant::now();
    let (mut addr, mut scrapes) = (None::<String>, Vec::new());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if addr.is_none() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            addr =
                text.lines().find_map(|l| l.strip_prefix("shopscore: http listening on ")).map(str::to_owned);
        }
        // The process may exit between the check above and this request: no scrape then.
        if let Some(Ok((200, text))) = addr.as_ref().map(|a| try_http_get(a, "/metrics")) {
            scrapes.push(text);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default(), scrapes)
}
