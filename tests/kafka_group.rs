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
use std::time::{Duration, Instant};
use support::*;

/// The shards a processor owns now, from its JSON log: acquired, less released since.
fn owned(log: &Path) -> BTreeSet<u32> {
    let mut owned = BTreeSet::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(shard) = v["shard"].as_u64() else { continue };
        match v["message"].as_str() {
            Some("shard acquired") => owned.insert(shard as u32),
            Some("shard released") => owned.remove(&(shard as u32)),
            _ => false,
        };
    }
    owned
}

/// A processor killed when dropped, so that a failed assertion leaves none running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `ok` holds (at most `limit`), panicking with `what` and both logs.
fn wait_for(what: &str, limit: Duration, logs: &[&Path], ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > limit {
            let tails: Vec<String> = logs
                .iter()
                .map(|l| {
                    let text = std::fs::read_to_string(l).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().filter(|l| l.contains("shopscore")).collect();
                    format!("{}:\n{}", l.display(), lines[lines.len().saturating_sub(15)..].join("\n"))
                })
                .collect();
            panic!("timed out after {limit:?} waiting for {what}\n{}", tails.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
    create_topics(&t.brokers, &INPUTS.map(|n| (n, 3)));
    produce_lines(&t.brokers, &gen_lines(3_000, 8, 5, 17), 3);
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
