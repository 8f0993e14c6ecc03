//! Crash test of file mode: SIGKILL the real binary at random points many times, restart
//! it on the same data and output directories, and check the outputs equal those of an
//! uninterrupted run — nothing lost, nothing twice, no torn line.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shopscore");

fn shopscore(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        // Small commits so that kills land between many of them.
        .env("SHOPSCORE__PIPELINE__COMMIT_EVERY_EVENTS", "997")
        .env("SHOPSCORE__PIPELINE__COMMIT_INTERVAL", "1h")
        .env("SHOPSCORE__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn run_args<'a>(input: &'a str, out: &'a str, data: &'a str) -> Vec<&'a str> {
    vec!["run", "--input", input, "--output", out, "--data-dir", data]
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every line is complete JSON; returns the last snapshot values per shop and checks that
/// each shop's versions go 1, 2, 3… without gaps or repeats.
fn final_snapshots(out: &Path) -> BTreeMap<String, serde_json::Value> {
    let text = read(&out.join("snapshots.jsonl"));
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line in snapshots");
    let mut last: BTreeMap<String, (u64, serde_json::Value)> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every snapshot line is whole JSON");
        let shop = v["shop_id"].as_str().unwrap().to_owned();
        let version = v["version"].as_u64().unwrap();
        let prev = last.get(&shop).map_or(0, |(n, _)| *n);
        assert_eq!(version, prev + 1, "shop {shop}: version {version} after {prev}");
        last.insert(shop, (version, v["windows"].clone()));
    }
    last.into_iter().map(|(k, (_, w))| (k, w)).collect()
}

#[test]
fn sigkill_many_times_then_restart_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| -> PathBuf { dir.path().join(s) };
    let input = p("events.jsonl");
    let status = shopscore(&[
        "gen",
        "--out",
        input.to_str().unwrap(),
        "--events",
        "300000",
        "--shops",
        "200",
        "--days",
        "60",
        "--seed",
        "11",
    ])
    .status()
    .unwrap();
    assert!(status.success());

    // Reference: one uninterrupted run.
    let (ref_out, ref_data) = (p("ref-out"), p("ref-data"));
    let status =
        shopscore(&run_args(input.to_str().unwrap(), ref_out.to_str().unwrap(), ref_data.to_str().unwrap()))
            .status()
            .unwrap();
    assert!(status.success());

    // Crashing runs on the same directories.
    let (out, data) = (p("out"), p("data"));
    let args = run_args(input.to_str().unwrap(), out.to_str().unwrap(), data.to_str().unwrap());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(20241124);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while kills < 25 && Instant::now() < deadline {
        let mut child = shopscore(&args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        if kills == 0 && read(&out.join("snapshots.jsonl")).is_empty() && Instant::now() > deadline {
            break;
        }
    }
    assert!(kills >= 20, "only {kills} kills landed mid-run: input too small for this machine");
    let status = shopscore(&args).status().unwrap();
    assert!(status.success());
    // A further run over the same input changes nothing.
    let before = read(&out.join("snapshots.jsonl"));
    assert!(shopscore(&args).status().unwrap().success());
    assert_eq!(read(&out.join("snapshots.jsonl")), before, "a second run re-applied input");

    for f in ["dead_letters.jsonl", "compensations.jsonl", "alerts.jsonl"] {
        assert_eq!(read(&out.join(f)), read(&ref_out.join(f)), "{f} differs from the uninterrupted run");
    }
    let dead = read(&out.join("dead_letters.jsonl"));
    assert!(dead.lines().count() > 100, "the generated input has malformed lines");
    let (got, want) = (final_snapshots(&out), final_snapshots(&ref_out));
    assert_eq!(got.len(), 200);
    assert_eq!(got, want, "final snapshot values differ from the uninterrupted run");
}
