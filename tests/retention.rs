//! Retention (SPEC §9): state stays bounded by the event-time horizon, not by history, and
//! dropping what the policy declares dead changes no output for input within the allowed
//! lateness.

use shopscore::gen::{generate, GenOptions};
use shopscore::pipeline::{run_files_on, FileRun};
use shopscore::rules::retention::{horizon_ms, Retention};
use shopscore::rules::RulesConfig;
use shopscore::state::keys;
use shopscore::state::memory::MemStore;
use shopscore::state::KvStore;
use std::collections::BTreeMap;
use std::path::Path;

const SEGMENTS: u64 = 12;

fn file_run(dir: &Path, input: &Path, stop_after: Option<u64>) -> FileRun {
    FileRun {
        commit_every_records: 5_000,
        stop_after,
        ..FileRun::new(vec![input.to_path_buf()], dir.join("out"), dir.join("unused"))
    }
}

fn family_counts(store: &MemStore) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (k, _) in store.scan(&[], &[], usize::MAX).unwrap() {
        *counts.entry(format!("{:?}", keys::family(&k).unwrap())).or_default() += 1;
    }
    counts
}

#[test]
fn state_is_bounded_by_the_horizon_and_expiry_changes_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let events = 60_000u64;
    let opts = GenOptions { seed: 5, events, shops: 10, days: 720, ..GenOptions::default() };
    generate(&opts, &mut std::fs::File::create(&input).unwrap()).unwrap();

    // Reference: unbounded state.
    let plain = MemStore::new();
    let ref_dir = dir.path().join("ref");
    for _ in 0..SEGMENTS {
        run_files_on(&plain, &file_run(&ref_dir, &input, Some(events / SEGMENTS)), None).unwrap();
    }
    run_files_on(&plain, &file_run(&ref_dir, &input, None), None).unwrap();

    // Same input in the same segments, sweeping expired state after each one.
    let swept = MemStore::new();
    let retention = Retention::new(&RulesConfig::default());
    let out_dir = dir.path().join("swept");
    let mut dropped = 0;
    for _ in 0..SEGMENTS {
        run_files_on(&swept, &file_run(&out_dir, &input, Some(events / SEGMENTS)), Some(&retention)).unwrap();
        dropped += swept.sweep(&retention);
    }
    run_files_on(&swept, &file_run(&out_dir, &input, None), Some(&retention)).unwrap();
    dropped += swept.sweep(&retention);

    for f in ["snapshots.jsonl", "compensations.jsonl", "alerts.jsonl", "dead_letters.jsonl"] {
        let a = std::fs::read(ref_dir.join("out").join(f)).unwrap();
        let b = std::fs::read(out_dir.join("out").join(f)).unwrap();
        assert!(a == b, "{f} differs once expired state is dropped");
    }

    let (full, bounded) = (family_counts(&plain), family_counts(&swept));
    eprintln!("unbounded: {full:?}\nwith retention: {bounded:?}\ndropped {dropped}");
    assert!(dropped > 0);
    // 720 days of history, a horizon of ~228 days: day buckets and dedup keys shrink to
    // about the horizon's share (the last segment's data is still live).
    let horizon_days = (horizon_ms(&RulesConfig::default()) / 86_400_000) as usize;
    assert!(bounded["DayBucket"] <= 10 * (horizon_days + 2), "{bounded:?}");
    assert!(bounded["DayBucket"] * 2 < full["DayBucket"], "{bounded:?} vs {full:?}");
    assert!(bounded["Seen"] * 2 < full["Seen"], "{bounded:?} vs {full:?}");
    assert!(bounded["Order"] * 2 < full["Order"], "{bounded:?} vs {full:?}");
    assert!(bounded.get("DayShop").copied().unwrap_or(0) * 2 < full["DayShop"]);
}
