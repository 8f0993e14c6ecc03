//! Differential test: the real pipeline against an independent batch model of SPEC §4/§5/§8/§9.
//!
//! The engine computes incrementally (rolling windows, pending groups, watermarks, RocksDB
//! state); the model (`tests/model/`) recomputes everything from the full list of events in
//! one pass, written from the spec and README "Choices where the spec is silent" only, never
//! from `src/rules/` or `src/state/`. For input within the out-of-orderness bound no event is
//! late, so at the end of a file run each shop's last snapshot must equal the model's values
//! at the final watermark (SPEC §9) and the compensations must be exactly the records
//! decidable at that watermark (SPEC §5). Money is involved: every field is compared.

// Shared with tests/model_replay.rs (Kafka input), which uses parts this file does not.
#[allow(dead_code)]
mod model {
    pub mod batch;
    pub mod compare;
    pub mod compensation;
    pub mod engine;
    pub mod facts;
    pub mod input;
    pub mod mutate;
    pub mod shuffle;
    pub mod snapshot;
}

use model::{batch, compare, engine, mutate, shuffle};
use shopscore::gen::{generate, GenOptions};
use std::path::{Path, PathBuf};

/// Out-of-orderness bound (SPEC §8 default): input disorder below it makes no event late.
const OOO_MS: i64 = 5 * 60_000;

/// Input lines as bytes (malformed ones may not be UTF-8).
fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn generated(seed: u64, events: u64, shops: u32, days: u32) -> Vec<Vec<u8>> {
    let opts = GenOptions { seed, events, shops, days, ..GenOptions::default() };
    let mut buf = Vec::new();
    generate(&opts, &mut buf).unwrap();
    split_lines(&buf)
}

/// Runs engine and model on `lines`; returns every difference (empty: they agree) and the
/// model's output for coverage checks.
fn differences(dir: &Path, lines: &[Vec<u8>], commit_every: u64) -> (Vec<String>, batch::ModelOutput) {
    let model = batch::compute(lines);
    let disorder = model::input::max_disorder_ms(&model.input);
    assert!(
        disorder < OOO_MS,
        "input disorder {disorder} ms is not within the bound: the model assumes no late event"
    );
    let engine = engine::run(dir, lines, commit_every);
    let mut diffs = compare::snapshots(&engine.snapshots, &model.snapshots);
    diffs.extend(compare::compensations(&engine.compensations, &model.compensations));
    assert_eq!(engine.snapshots.len(), model.snapshots.len());
    (diffs, model)
}

fn report(name: &str, diffs: &[String]) -> String {
    let shown: Vec<&str> = diffs.iter().take(40).map(String::as_str).collect();
    format!("{name}: {} difference(s) between engine and model:\n  {}", diffs.len(), shown.join("\n  "))
}

/// Seeds and shapes: few to many shops, 20 to 200 days (windows roll, the 180-day DSR
/// window and 15-day rating validity and natural months are crossed).
const CASES: &[(u64, u64, u32, u32)] = &[
    (1, 3_000, 10, 20),
    (2, 8_000, 15, 60),
    (3, 12_000, 20, 120),
    (4, 20_000, 30, 200),
    (5, 20_000, 10, 200),
    (6, 6_000, 12, 45),
    // Few shops, many orders each: regular buyers pass the DSR three-per-month and the
    // satisfaction monthly cap, and share 24-hour groups.
    (7, 15_000, 2, 40),
    (8, 10_000, 1, 25),
];

#[test]
fn generated_inputs_match_the_model() {
    let base = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut scov, mut ccov) =
        (model::snapshot::Coverage::default(), model::compensation::Coverage::default());
    let mut events = 0;
    for &(seed, n, shops, days) in CASES {
        let lines = generated(seed, n, shops, days);
        let (diffs, model) = differences(&base.path().join(format!("seed{seed}")), &lines, 1_000_000);
        events += model.input.events.len();
        scov += model.snapshot_coverage;
        ccov += model.compensation_coverage;
        if !diffs.is_empty() {
            failures.push(report(&format!("seed {seed} ({n} lines, {shops} shops, {days} days)"), &diffs));
        }
    }
    eprintln!("compared {events} unique events; {scov:?}; {ccov:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The generated input exercises the rules the model checks.
    assert!(
        scov.dsr_counted > 0 && scov.dsr_outside_15_days > 0 && scov.dsr_displaced_by_three_per_month > 0
    );
    assert!(scov.service_flagged > 0 && scov.service_too_soon > 0 && scov.service_over_monthly_cap > 0);
    assert!(scov.protected_refunds > 0 && scov.campaign_failed > 0);
    assert!(ccov.late_records > 0 && ccov.breach_records > 0 && ccov.capped_records > 0);
    assert!(ccov.multi_order_groups > 0 && ccov.minimum_records > 0 && ccov.groups_pending > 0);
}

#[test]
fn input_shuffled_within_the_bound_matches_the_model() {
    let base = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for &(seed, n, shops, days) in &[(7u64, 10_000u64, 15u32, 90u32), (8, 5_000, 8, 30)] {
        let lines = shuffle::within_bound(&generated(seed, n, shops, days), seed ^ 0x5eed, OOO_MS);
        let (diffs, _) = differences(&base.path().join(format!("seed{seed}")), &lines, 64);
        if !diffs.is_empty() {
            failures.push(report(&format!("shuffled seed {seed}"), &diffs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Generated input perturbed into restated facts, reused ids, dropped events and times on
/// rule boundaries (`model/mutate.rs`), then re-sorted within the bound.
#[test]
fn perturbed_inputs_match_the_model() {
    let base = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut events = 0;
    let (mut scov, mut ccov) =
        (model::snapshot::Coverage::default(), model::compensation::Coverage::default());
    for &(seed, n, shops, days, rate) in &[
        (11u64, 8_000u64, 3u32, 40u32, 0.15),
        (12, 12_000, 10, 100, 0.1),
        (13, 6_000, 2, 20, 0.3),
        (14, 15_000, 20, 200, 0.05),
    ] {
        let lines = mutate::perturb(&generated(seed, n, shops, days), seed, rate, OOO_MS);
        let (diffs, model) = differences(&base.path().join(format!("seed{seed}")), &lines, 500);
        events += model.input.events.len();
        scov += model.snapshot_coverage;
        ccov += model.compensation_coverage;
        if !diffs.is_empty() {
            failures.push(report(&format!("perturbed seed {seed} (rate {rate})"), &diffs));
        }
    }
    eprintln!("compared {events} unique perturbed events; {scov:?}; {ccov:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        scov.protected_refunds > 0 && scov.dsr_displaced_by_three_per_month > 0 && scov.service_too_soon > 0
    );
    assert!(ccov.zero_records > 0 && ccov.capped_records > 0 && ccov.closed_exempt > 0);
}

/// Late events (SPEC §3): up to 12 hours late (within the 1-day allowed lateness) they are
/// applied exactly like on-time ones; up to 3 days late (beyond it) they are still applied to
/// the metric windows they fall in, all retained here. Either way the last snapshots must
/// still equal the batch model. Compensations are not compared (a late event never changes
/// one already decided); each must still be emitted once.
#[test]
fn late_input_gives_the_model_snapshots() {
    let base = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for late_ms in [12 * 3_600_000, 3 * 86_400_000] {
        for &(seed, n, shops, days, perturbed) in
            &[(21u64, 10_000u64, 6u32, 60u32, false), (22, 8_000, 15, 200, false), (23, 8_000, 4, 90, true)]
        {
            let lines = if perturbed {
                mutate::perturb(&generated(seed, n, shops, days), seed, 0.1, late_ms)
            } else {
                shuffle::within_bound(&generated(seed, n, shops, days), seed, late_ms)
            };
            let model = batch::compute(&lines);
            let disorder = model::input::max_disorder_ms(&model.input);
            assert!(disorder > OOO_MS, "the input should hold late events ({disorder} ms)");
            if late_ms > 86_400_000 {
                assert!(disorder > 86_400_000, "the input should hold events beyond the allowed lateness");
            }
            let engine = engine::run(&base.path().join(format!("seed{seed}-{late_ms}")), &lines, 1_000);
            let mut diffs = compare::snapshots(&engine.snapshots, &model.snapshots);
            diffs.extend(compare::repeated_compensations(&engine.compensations));
            if !diffs.is_empty() {
                failures.push(report(&format!("late seed {seed}, up to {late_ms} ms"), &diffs));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SPEC §8: a second run with more input continues where the first stopped. The input is
/// split where no later event is older than the first part's newest (so the watermark the
/// first run ends with makes nothing late); copies of first-part events may follow and must
/// still be ignored as duplicates.
#[test]
fn a_second_run_with_more_input_matches_the_model() {
    let base = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for &(seed, n, shops, days) in &[(31u64, 8_000u64, 5u32, 60u32), (32, 6_000, 12, 30)] {
        let lines = mutate::perturb(&generated(seed, n, shops, days), seed, 0.05, OOO_MS);
        let split = split_point(&lines);
        let model = batch::compute(&lines);
        let engine = engine::run_in_parts(
            &base.path().join(format!("seed{seed}")),
            &[&lines[..split], &lines[split..]],
            300,
        );
        let mut diffs = compare::snapshots(&engine.snapshots, &model.snapshots);
        diffs.extend(compare::compensations(&engine.compensations, &model.compensations));
        if !diffs.is_empty() {
            failures.push(report(&format!("two runs, seed {seed}, split at line {split}"), &diffs));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first line index at or after the middle where every later event (first copies) is at
/// least as new as every earlier one.
fn split_point(lines: &[Vec<u8>]) -> usize {
    let input = model::input::read(lines);
    let times: Vec<(usize, i64)> =
        input.events.iter().map(|(l, e)| (*l as usize - 1, e.event_time.0)).collect();
    let mut suffix_min = vec![i64::MAX; times.len() + 1];
    for i in (0..times.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(times[i].1);
    }
    let mut prefix_max = i64::MIN;
    for (i, &(line, t)) in times.iter().enumerate() {
        if line >= lines.len() / 2 && prefix_max <= suffix_min[i] {
            return line;
        }
        prefix_max = prefix_max.max(t);
    }
    panic!("no split point");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]

    /// Random shapes: any seed, 1–30 shops, 5–200 days, with or without perturbation, commits
    /// of any size.
    #[test]
    fn random_shapes_match_the_model(
        seed in 0u64..1_000_000,
        events in 1_000u64..8_000,
        shops in 1u32..30,
        days in 5u32..200,
        rate in proptest::prop_oneof![proptest::strategy::Just(0.0), 0.0f64..0.3],
        commit_every in proptest::sample::select(vec![1u64, 50, 1_000, 1_000_000]),
    ) {
        let lines = mutate::perturb(&generated(seed, events, shops, days), seed, rate, OOO_MS);
        let base = tempfile::tempdir().unwrap();
        let (diffs, model) = differences(base.path(), &lines, commit_every);
        proptest::prop_assert!(!model.snapshots.is_empty());
        proptest::prop_assert!(diffs.is_empty(), "{}", report("random shape", &diffs));
    }
}

/// The hand-written golden inputs (they hold the rare cases: capped groups, zero-amount
/// records, exact boundaries), where their disorder stays within the bound.
#[test]
fn golden_inputs_match_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in ["golden", "golden_compensation"] {
        for case in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = case.unwrap().path().join("input.jsonl");
            if path.exists() {
                inputs.push(path);
            }
        }
    }
    inputs.sort();
    let base = tempfile::tempdir().unwrap();
    let (mut compared, mut failures) = (0, Vec::new());
    for (i, path) in inputs.iter().enumerate() {
        let lines = split_lines(&std::fs::read(path).unwrap());
        let model = batch::compute(&lines);
        if model::input::max_disorder_ms(&model.input) >= OOO_MS {
            continue; // has late events: outside what the batch model covers
        }
        compared += 1;
        let (diffs, _) = differences(&base.path().join(i.to_string()), &lines, 1_000_000);
        if !diffs.is_empty() {
            failures.push(report(&path.display().to_string(), &diffs));
        }
    }
    eprintln!("compared {compared} of {} golden inputs", inputs.len());
    assert!(compared >= 5);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
