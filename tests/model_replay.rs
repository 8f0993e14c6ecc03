//! Kafka input against the independent model (`tests/model/`): the perturbed input of
//! `tests/model.rs` — restated facts, dropped events, times exactly on rule boundaries,
//! second refunds, shops going silent — produced round-robin into three partitions per input
//! topic of a real broker (tansu 0.6.0), so a shop's events interleave across partitions,
//! then replayed (`kafka::replay`, the same engine as a live group; tests/replay.rs shows a
//! replay equals the live run). Each shop's last snapshot and every compensation must equal
//! the model at the replay's final watermark — the largest event time less the bound, not
//! the largest event time as in file mode — with lineage compared by `event_id`.

mod support;

#[path = "model"]
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

use model::engine::{read_outputs, EngineOutput};
use model::mutate::{perturb_with, Ids};
use model::{batch, compare};
use serde_json::Value;
use shopscore::config::Config;
use shopscore::domain::decode::DecodeOptions;
use shopscore::kafka::replay::{run_replay, ReplayFrom, ReplayRun, ReplayTarget};
use shopscore::rules::RulesConfig;
use shopscore::state::rocks::MemoryLimits;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use support::*;

const OOO_MS: i64 = 5 * 60_000;
const PARTITIONS: i32 = 3;

/// Replays the input topics of `brokers` into `dir/out`; returns the final watermark.
fn replay(brokers: &str, dir: &Path) -> shopscore::domain::Timestamp {
    let mut kafka = Config::default().kafka;
    kafka.brokers = brokers.to_owned();
    kafka.replication_factor = 1;
    let run = ReplayRun {
        kafka,
        from: ReplayFrom::Earliest,
        to: None,
        target: ReplayTarget::Files(dir.join("out")),
        rules: RulesConfig::default(),
        decode: DecodeOptions::default(),
        data_dir: dir.join("data"),
        commit_every_records: 700,
        stop: Arc::new(AtomicBool::new(false)),
        progress_every: None,
        memory: MemoryLimits::default(),
        metrics: None,
    };
    let summary = run_replay(&run).unwrap();
    assert!(!summary.stopped);
    // Within the bound, split over partitions, nothing arrives behind the watermark.
    assert_eq!(summary.totals.late_events, 0, "{:?}", summary.totals);
    summary.watermark.expect("a watermark after the replay")
}

/// The replay's last snapshot per shop and its compensations, each lineage event's Kafka
/// position replaced by the line the model numbers it with (its `event_id`'s first line:
/// ids are unique here, so every copy of one is the same event).
fn replayed(out: &Path, first_line: &HashMap<String, u64>) -> (BTreeMap<String, Value>, Vec<Value>) {
    let EngineOutput { snapshots, mut compensations } = read_outputs(out);
    for c in &mut compensations {
        for ev in c["lineage"]["events"].as_array_mut().into_iter().flatten() {
            assert!(ev["source"]["topic"].is_string(), "a Kafka source: {ev}");
            let id = ev["event_id"].as_str().unwrap();
            ev["source"] = serde_json::json!({ "line": first_line[id] });
        }
    }
    (snapshots, compensations)
}

#[test]
fn replayed_perturbed_input_matches_the_model() {
    let t = Tansu::start();
    let lines: Vec<String> = {
        let generated: Vec<Vec<u8>> =
            gen_lines(20_000, 4, 60, 31).into_iter().map(String::into_bytes).collect();
        perturb_with(&generated, 31, 0.25, OOO_MS, Ids::Unique)
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    create_topics(&t.brokers, &INPUTS.map(|n| (n, PARTITIONS)));
    produce_lines(&t.brokers, &lines, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let watermark = replay(&t.brokers, dir.path());

    let bytes: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
    let model = batch::compute_at(&bytes, watermark);
    assert!(model::input::max_disorder_ms(&model.input) < OOO_MS);
    assert!(watermark < model.input.watermark, "the replay ends before the largest event time");
    let first_line: HashMap<String, u64> =
        model.input.events.iter().map(|(line, ev)| (ev.event_id.clone(), *line)).collect();
    let (snapshots, compensations) = replayed(&dir.path().join("out"), &first_line);
    assert_eq!(snapshots.len(), model.snapshots.len(), "shops with a snapshot");
    let mut diffs = compare::snapshots(&snapshots, &model.snapshots);
    diffs.extend(compare::compensations(&compensations, &model.compensations));
    let shown: Vec<&String> = diffs.iter().take(40).collect();
    assert!(
        diffs.is_empty(),
        "{} difference(s) between the replay and the model:\n  {shown:#?}",
        diffs.len()
    );
    // The input exercised what the model checks.
    let (s, c) = (&model.snapshot_coverage, &model.compensation_coverage);
    assert!(s.dsr_counted > 0 && s.service_too_soon > 0 && s.protected_refunds > 0, "{s:?}");
    assert!(
        c.late_records > 0 && c.breach_records > 0 && c.capped_records > 0 && c.zero_records > 0,
        "{c:?}"
    );
    eprintln!(
        "replay watermark {} (largest event time {}); {} shops, {} compensations, {c:?}",
        watermark.to_rfc3339(),
        model.input.watermark.to_rfc3339(),
        snapshots.len(),
        compensations.len()
    );
    assert!(compensations.len() > 50, "{} compensations", compensations.len());
}
