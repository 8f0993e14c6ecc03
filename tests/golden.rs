//! Golden tests: hand-computed expectations from SPEC §4/§8/§9, one directory per case.
//!
//! For every directory `tests/golden/<case>/`, `input.jsonl` is run through file mode
//! ([`shopscore::pipeline::run_files`], default rules) into fresh temporary state and output
//! directories, and the LAST snapshot line per `shop_id` in `snapshots.jsonl` is compared with
//! `expected.json`:
//!
//! ```text
//! { "<shop_id>": <partial snapshot>,   // every key given must equal the final snapshot's value
//!   "_dead_letters": N,                 // optional: number of lines in dead_letters.jsonl
//!   "_shops": ["s1", …],                // optional: exact set of shops that have a snapshot
//!   "_same_as": "<other case>",         // optional: use that case's expected.json (keys here override)
//!   "_why": "…" }                       // the hand computation (ignored by the harness)
//! ```
//!
//! The match is a recursive subset match on objects; arrays must match element for element;
//! `null` must be `null`; an integer expectation needs an integer with the same value; a
//! float expectation accepts any number within 1e-12. Every case directory must have a
//! `golden!` line below (checked by `every_case_directory_has_a_test`).

use serde_json::{Map, Value};
use shopscore::pipeline::{run_files, FileRun};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FLOAT_TOLERANCE: f64 = 1e-12;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

/// What one run produced.
struct Outcome {
    /// The last snapshot per shop.
    snapshots: BTreeMap<String, Value>,
    dead_letters: usize,
}

fn run_case_input(input: &Path) -> Outcome {
    let tmp = tempfile::tempdir().expect("temp dir");
    let output = tmp.path().join("output");
    let run = FileRun::new(vec![input.to_path_buf()], output.clone(), tmp.path().join("data"));
    run_files(&run).unwrap_or_else(|e| panic!("run_files failed on {}: {e}", input.display()));

    let read = |name: &str| std::fs::read_to_string(output.join(name)).unwrap_or_default();
    let mut snapshots = BTreeMap::new();
    for (i, line) in read("snapshots.jsonl").lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("snapshots.jsonl line {} is not JSON ({e}): {line}", i + 1));
        let shop = v["shop_id"].as_str().expect("snapshot has a string shop_id").to_owned();
        snapshots.insert(shop, v);
    }
    let dead_letters = read("dead_letters.jsonl").lines().filter(|l| !l.trim().is_empty()).count();
    Outcome { snapshots, dead_letters }
}

/// Loads `expected.json` of a case, following `_same_as`.
fn load_expected(case: &str) -> Map<String, Value> {
    let path = golden_dir().join(case).join("expected.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut own: Map<String, Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a JSON object: {e}", path.display()));
    match own.remove("_same_as") {
        None => own,
        Some(Value::String(other)) => {
            let mut base = load_expected(&other);
            base.remove("_why");
            base.extend(own);
            base
        }
        Some(v) => panic!("{}: _same_as must be a case name, got {v}", path.display()),
    }
}

fn is_int(v: &Value) -> bool {
    v.as_i64().is_some() || v.as_u64().is_some()
}

/// Recursive subset match; pushes one line per mismatch.
fn compare(path: &str, expected: &Value, actual: Option<&Value>, errors: &mut Vec<String>) {
    let Some(actual) = actual else {
        errors.push(format!("{path}: missing in actual (expected {expected})"));
        return;
    };
    let ok = match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                compare(&format!("{path}.{k}"), ev, a.get(k), errors);
            }
            return;
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() == a.len() {
                for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                    compare(&format!("{path}[{i}]"), ev, Some(av), errors);
                }
                return;
            }
            false
        }
        (Value::Number(e), Value::Number(a)) => {
            if is_int(expected) {
                is_int(actual) && e == a
            } else {
                let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
                (e - a).abs() <= FLOAT_TOLERANCE
            }
        }
        (e, a) => e == a,
    };
    if !ok {
        errors.push(format!("{path}: expected {expected}, actual {actual}"));
    }
}

fn run_golden(case: &str) {
    let dir = golden_dir().join(case);
    let expected = load_expected(case);
    let outcome = run_case_input(&dir.join("input.jsonl"));

    let mut errors = Vec::new();
    for (key, want) in &expected {
        match key.as_str() {
            "_why" => {}
            "_dead_letters" => {
                let n = want.as_u64().expect("_dead_letters is a count");
                if outcome.dead_letters as u64 != n {
                    errors.push(format!("_dead_letters: expected {n}, actual {}", outcome.dead_letters));
                }
            }
            "_shops" => {
                let want: BTreeSet<String> = want
                    .as_array()
                    .expect("_shops is a list")
                    .iter()
                    .map(|s| s.as_str().expect("_shops holds strings").to_owned())
                    .collect();
                let have: BTreeSet<String> = outcome.snapshots.keys().cloned().collect();
                if want != have {
                    errors.push(format!("_shops: expected {want:?}, actual {have:?}"));
                }
            }
            k if k.starts_with('_') => panic!("case {case}: unknown directive {k}"),
            shop => compare(shop, want, outcome.snapshots.get(shop), &mut errors),
        }
    }
    if !errors.is_empty() {
        let finals: Vec<String> = expected
            .keys()
            .filter(|k| !k.starts_with('_'))
            .map(|k| match outcome.snapshots.get(k) {
                Some(v) => format!("final snapshot {k}: {v}"),
                None => format!("final snapshot {k}: (none)"),
            })
            .collect();
        panic!(
            "golden case `{case}`: {} mismatch(es):\n  {}\n{}",
            errors.len(),
            errors.join("\n  "),
            finals.join("\n")
        );
    }
}

macro_rules! golden {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        /// Case names with a test, for `every_case_directory_has_a_test`.
        const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                run_golden(stringify!($name));
            }
        )*
    };
}

golden! {
    a_refund_rate_windows,
    b_dsr_worked_example,
    c_dsr_validity,
    d_dsr_three_per_month,
    e_satisfaction_exclusions,
    f_protected_refunds,
    g_quality_latest_reason,
    h_dispute_vs_manual,
    i_avg_hours_self_completion,
    j_late_shipment,
    k_campaign_eligibility,
    k2_campaign_manual_ratio,
    l1_order_independence_satisfaction,
    l2_order_independence_refunds,
    l3_order_independence_dsr,
    m_duplicates,
    n_dead_letters,
    o_retroactive_and_late,
    p_dsr_window_and_grouping,
    q_ties_and_snapshot_presence,
    r_window_rolloff,
}

#[test]
fn every_case_directory_has_a_test() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = CASES.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, listed, "every tests/golden/<case>/ needs a golden! entry and vice versa");
    for case in &on_disk {
        let dir = golden_dir().join(case);
        assert!(dir.join("input.jsonl").is_file(), "{case}: no input.jsonl");
        assert!(dir.join("expected.json").is_file(), "{case}: no expected.json");
    }
}

/// The comparator itself: it must catch what it is meant to catch.
#[test]
fn comparator_catches_mismatches() {
    let actual: Value = serde_json::json!({"a": 1, "b": 0.1, "c": null, "d": [1, 2], "e": {"f": 2.0}});
    let check = |expected: Value| {
        let mut errors = Vec::new();
        compare("x", &expected, Some(&actual), &mut errors);
        errors
    };
    assert!(check(serde_json::json!({"a": 1, "b": 0.1000000000001, "c": null, "d": [1, 2]})).is_empty());
    assert!(check(serde_json::json!({"e": {"f": 2.0}})).is_empty());
    assert_eq!(check(serde_json::json!({"a": 2})).len(), 1);
    assert_eq!(check(serde_json::json!({"a": 1.0})).len(), 0, "float expectation accepts an equal integer");
    assert_eq!(check(serde_json::json!({"e": {"f": 2}})).len(), 1, "integer expectation needs an integer");
    assert_eq!(check(serde_json::json!({"b": 0.100000001})).len(), 1);
    assert_eq!(check(serde_json::json!({"c": 0})).len(), 1);
    assert_eq!(check(serde_json::json!({"b": null})).len(), 1);
    assert_eq!(check(serde_json::json!({"d": [1]})).len(), 1);
    assert_eq!(check(serde_json::json!({"zz": 1})).len(), 1);
}
