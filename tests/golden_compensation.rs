//! Golden tests for compensation (SPEC §5): small event files under
//! `tests/golden_compensation/<case>/input.jsonl` with the hand-computed records in
//! `expected.jsonl` (the case's README.md shows the computation). Records are compared
//! whole, byte for byte, as a set (their order in the file is not specified); the input's
//! path in lineage sources is written `input.jsonl`.

use shopscore::pipeline::{run_files, FileRun};
use std::path::Path;

fn check(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden_compensation").join(case);
    let tmp = tempfile::tempdir().unwrap();
    let input = dir.join("input.jsonl");
    let run = FileRun::new(vec![input.clone()], tmp.path().join("out"), tmp.path().join("data"));
    run_files(&run).unwrap();
    let dead = std::fs::read_to_string(tmp.path().join("out/dead_letters.jsonl")).unwrap();
    assert_eq!(dead, "", "case {case}: input lines were rejected");
    let actual = std::fs::read_to_string(tmp.path().join("out/compensations.jsonl"))
        .unwrap()
        .replace(&serde_json::to_string(&input.display().to_string()).unwrap(), "\"input.jsonl\"");
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    let (a, e) = (sorted(&actual), sorted(&expected));
    for line in e.iter().filter(|l| !a.contains(l)) {
        eprintln!("case {case}: missing  {line}");
    }
    for line in a.iter().filter(|l| !e.contains(l)) {
        eprintln!("case {case}: unexpected {line}");
    }
    assert_eq!(a, e, "case {case}: compensation records differ (see above)");
}

#[test]
fn minimum_and_rounding() {
    check("minimum_and_rounding");
}

#[test]
fn group_cap_500_yuan() {
    check("group_cap_500_yuan");
}

#[test]
fn groups_25h_and_24h_apart() {
    check("groups_25h_and_24h_apart");
}

#[test]
fn shipped_cainiao_closed_late_pickup() {
    check("shipped_cainiao_closed_late_pickup");
}

#[test]
fn delivery_promise_met_and_broken() {
    check("delivery_promise_met_and_broken");
}
