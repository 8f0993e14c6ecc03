//! Determinism property tests (SPEC §7): for input whose disorder stays within the
//! out-of-orderness bound, outputs depend only on the events — not on arrival order, commit
//! (batch) size, restarts in between, or (Kafka mode's arrangement, without a broker) how
//! the input is split into partitions, how the partitions interleave and how many shards
//! share the shops.
//!
//! Compared: the final values of every shop's snapshot (all but `as_of`/`version`), the
//! set of compensation records byte for byte, and the final state of every alert.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use shopscore::domain::decode::{decode_json, DecodeOptions};
use shopscore::domain::event::Stream;
use shopscore::gen::{generate, GenOptions};
use shopscore::pipeline::{run_files, FileRun};
use shopscore::rules::rolling::SumsLimits;
use shopscore::rules::RulesConfig;
use std::collections::BTreeMap;
use std::path::Path;

const OOO_MS: i64 = 5 * 60_000;

fn sample(seed: u64) -> Vec<String> {
    let opts = GenOptions {
        seed,
        events: 2_500,
        shops: 12,
        days: 12,
        restated_per_mille: 30,
        ..GenOptions::default()
    };
    let mut buf = Vec::new();
    generate(&opts, &mut buf).unwrap();
    String::from_utf8_lossy(&buf).lines().map(str::to_owned).collect()
}

#[path = "model/shuffle.rs"]
mod shuffle;

/// `lines` reordered within the out-of-orderness bound ([`shuffle::within_bound`]).
fn shuffle_within_bound(lines: &[String], seed: u64) -> Vec<String> {
    shuffle::within_bound(lines, seed, OOO_MS)
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    snapshots: BTreeMap<String, String>,
    compensations: Vec<String>,
    alerts: BTreeMap<(String, String), String>,
}

/// How much of a compensation's lineage `source` to compare: positions change when lines
/// are reordered; the file path changes with the directory.
#[derive(Clone, Copy)]
enum Lineage {
    EventIdsOnly,
    LineNumbers,
}

fn run(dir: &Path, lines: &[String], commit_every: u64, stops: &[u64], lineage: Lineage) -> Outcome {
    run_remembering(dir, lines, commit_every, stops, lineage, SumsLimits::default())
}

/// [`run`], with the engine remembering window sums within `sums`.
fn run_remembering(
    dir: &Path,
    lines: &[String],
    commit_every: u64,
    stops: &[u64],
    lineage: Lineage,
    sums: SumsLimits,
) -> Outcome {
    std::fs::create_dir_all(dir).unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let rules = RulesConfig {
        alerts: toml::from_str::<Alerts>(ALERTS).unwrap().alerts,
        sums,
        ..RulesConfig::default()
    };
    let mut run = FileRun {
        rules,
        commit_every_records: commit_every,
        ..FileRun::new(vec![input], dir.join("out"), dir.join("data"))
    };
    for &n in stops {
        run.stop_after = Some(n);
        run_files(&run).unwrap();
    }
    run.stop_after = None;
    run_files(&run).unwrap();
    outcome(&dir.join("out"), lineage)
}

#[derive(serde::Deserialize)]
struct Alerts {
    alerts: Vec<shopscore::config::AlertRule>,
}

const ALERTS: &str = r#"
[[alerts]]
name = "refunds-high"
metric = "refund_rate"
window = "7d"
op = ">"
threshold = 0.1
[[alerts]]
name = "not-eligible"
metric = "campaign_eligible"
op = "=="
threshold = false
"#;

fn outcome(out: &Path, lineage: Lineage) -> Outcome {
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let (snapshots, compensations, alerts) =
        (read("snapshots.jsonl"), read("compensations.jsonl"), read("alerts.jsonl"));
    outcome_of(snapshots.lines(), compensations.lines(), alerts.lines(), lineage)
}

/// The compared outcome of output lines, each kind in output order.
fn outcome_of<'a>(
    snapshot_lines: impl Iterator<Item = &'a str>,
    compensation_lines: impl Iterator<Item = &'a str>,
    alert_lines: impl Iterator<Item = &'a str>,
    lineage: Lineage,
) -> Outcome {
    let mut snapshots = BTreeMap::new();
    for line in snapshot_lines {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let shop = v["shop_id"].as_str().unwrap().to_owned();
        let obj = v.as_object_mut().unwrap();
        obj.remove("as_of");
        obj.remove("version");
        snapshots.insert(shop, v.to_string());
    }
    let mut compensations: Vec<String> = compensation_lines
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            for ev in v["lineage"]["events"].as_array_mut().unwrap() {
                let ev = ev.as_object_mut().unwrap();
                match lineage {
                    Lineage::EventIdsOnly => drop(ev.remove("source")),
                    Lineage::LineNumbers => drop(ev["source"].as_object_mut().unwrap().remove("file")),
                }
            }
            v.to_string()
        })
        .collect();
    compensations.sort();
    let mut alerts = BTreeMap::new();
    for line in alert_lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (v["shop_id"].as_str().unwrap().to_owned(), v["rule"].as_str().unwrap().to_owned());
        alerts.insert(key, v["state"].as_str().unwrap().to_owned());
    }
    // The final state: a rule never raised and one raised then cleared are alike.
    alerts.retain(|_, state| state == "RAISED");
    Outcome { snapshots, compensations, alerts }
}

/// How [`sharded`] splits and reads the input.
#[derive(Clone, Copy, Debug)]
struct Split {
    /// Partitions per input topic (records go round-robin, not by shop, as the Kafka tests
    /// produce them).
    partitions: usize,
    /// Engines, each owning the shops murmur2 gives it (`kafka.shards`).
    shards: u32,
    /// Seed of the interleaving of the partitions and of the restarts.
    seed: u64,
    /// Each shard commits after this many records offered to it.
    commit_every: u64,
}

/// The events of `lines` through Kafka mode's engine arrangement without a broker: split over
/// the four input topics' partitions, read in a random interleaving of the partitions (each
/// in its own order, as a consumer reads them), offered to every shard — the owner applies
/// an event, the others only move that partition's clock (`observe_foreign`), as
/// `kafka::shard` does — each shard committing to its own store and now and then reloading
/// its engine from it (a restart, or a new owner after a move), and all finished as a
/// bounded input is (the watermark becomes the largest event time).
fn sharded(lines: &[String], split: Split) -> Outcome {
    use shopscore::kafka::topics::Layout;
    use shopscore::output::{Output, SourcePos};
    use shopscore::rules::engine::{Engine, Snapshots};
    use shopscore::state::memory::MemStore;
    use shopscore::state::overlay::Overlay;
    use shopscore::state::{KvStore, WriteBatch};
    use std::collections::VecDeque;

    let mut rng = rand::rngs::SmallRng::seed_from_u64(split.seed);
    let clock = |topic: usize, partition: usize| Layout::clock_id(topic, partition as i32);
    let mut queues: Vec<VecDeque<(u64, shopscore::domain::event::Event)>> =
        (0..4 * split.partitions).map(|_| VecDeque::new()).collect();
    let mut next = [0usize; 4];
    for (i, line) in lines.iter().enumerate() {
        // Undecodable lines are dead letters: they move no clock and change no outcome here.
        let Ok(ev) = decode_json(line.as_bytes(), None, &DecodeOptions::default()) else { continue };
        let topic = Stream::ALL.iter().position(|s| *s == ev.event_type().stream()).unwrap();
        let partition = next[topic] % split.partitions;
        next[topic] += 1;
        queues[topic * split.partitions + partition].push_back((i as u64 + 1, ev));
    }
    let rules =
        RulesConfig { alerts: toml::from_str::<Alerts>(ALERTS).unwrap().alerts, ..RulesConfig::default() };
    let stores: Vec<MemStore> = (0..split.shards).map(|_| MemStore::new()).collect();
    let mut overlays: Vec<Overlay<'_>> = stores.iter().map(|s| Overlay::new(s as &dyn KvStore)).collect();
    let partitions = queues.len();
    let load = |ov: &mut Overlay<'_>| {
        let mut engine = Engine::load(ov, rules.clone()).unwrap();
        for q in 0..partitions {
            let topic = Stream::ALL[q / split.partitions].as_str();
            engine.register_partition(clock(q / split.partitions, q % split.partitions), topic);
        }
        engine
    };
    let mut engines: Vec<Engine> = overlays.iter_mut().map(&load).collect();
    let mut offered = vec![0u64; split.shards as usize];
    let mut outputs: Vec<Output> = Vec::new();
    let commit = |i: usize, ov: &mut Overlay<'_>, engine: &mut Engine, end: bool, out: &mut Vec<Output>| {
        engine.flush_with(ov, end, Snapshots::Refresh, out).unwrap();
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch).unwrap();
        stores[i].write(batch).unwrap();
    };
    let pending = |queues: &[VecDeque<_>]| {
        queues.iter().enumerate().filter(|(_, q)| !q.is_empty()).map(|(i, _)| i).collect::<Vec<_>>()
    };
    loop {
        let open = pending(&queues);
        if open.is_empty() {
            break;
        }
        // A partition read ahead of the others for a while, as fetches come.
        let q = open[rng.random_range(0..open.len())];
        for _ in 0..rng.random_range(1..40) {
            let Some((line, ev)) = queues[q].pop_front() else { break };
            let c = clock(q / split.partitions, q % split.partitions);
            let owner = shopscore::kafka::murmur::partition_for(ev.shop_id.as_bytes(), split.shards) as usize;
            for i in 0..split.shards as usize {
                if i == owner {
                    let source = SourcePos::File { file: "in".into(), line };
                    engines[i].apply(&mut overlays[i], &ev, c, &source).unwrap();
                } else {
                    engines[i].observe_foreign(c, ev.event_time);
                }
                offered[i] += 1;
                if offered[i].is_multiple_of(split.commit_every) {
                    commit(i, &mut overlays[i], &mut engines[i], false, &mut outputs);
                    if rng.random_bool(0.05) {
                        engines[i] = load(&mut overlays[i]);
                    }
                }
            }
        }
    }
    for i in 0..split.shards as usize {
        commit(i, &mut overlays[i], &mut engines[i], true, &mut outputs);
    }
    let lines_of = |kind: fn(&Output) -> bool| -> Vec<String> {
        outputs.iter().filter(|o| kind(o)).map(Output::to_json).collect()
    };
    let snapshots = lines_of(|o| matches!(o, Output::Snapshot(_)));
    let compensations = lines_of(|o| matches!(o, Output::Compensation(_)));
    let alerts = lines_of(|o| matches!(o, Output::Alert(_)));
    outcome_of(
        snapshots.iter().map(String::as_str),
        compensations.iter().map(String::as_str),
        alerts.iter().map(String::as_str),
        Lineage::EventIdsOnly,
    )
}

/// A short description of where two outcomes differ.
fn diff(a: &Outcome, b: &Outcome) -> String {
    let mut out = String::new();
    for (shop, v) in &a.snapshots {
        if b.snapshots.get(shop) != Some(v) {
            out += &format!("snapshot {shop}:\n  {v}\n  {:?}\n", b.snapshots.get(shop));
        }
    }
    for c in a.compensations.iter().filter(|c| !b.compensations.contains(c)) {
        out += &format!("only left: {c}\n");
    }
    for c in b.compensations.iter().filter(|c| !a.compensations.contains(c)) {
        out += &format!("only right: {c}\n");
    }
    if a.alerts != b.alerts {
        out += &format!("alerts: {:?} vs {:?}\n", a.alerts, b.alerts);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn same_events_same_outputs_whatever_order_batching_or_restarts(
        seed in 0u64..1_000_000,
        shuffle_seed in any::<u64>(),
        commit_every in prop::sample::select(vec![1u64, 7, 64, 1_000, 1_000_000]),
        stop_a in 1u64..2_500,
        stop_b in 1u64..2_500,
    ) {
        let lines = sample(seed);
        let base = tempfile::tempdir().unwrap();
        let reference = run(&base.path().join("ref"), &lines, 1_000_000, &[], Lineage::EventIdsOnly);
        prop_assert!(!reference.snapshots.is_empty());
        prop_assert!(!reference.compensations.is_empty());

        let shuffled = shuffle_within_bound(&lines, shuffle_seed);
        let got = run(&base.path().join("shuffled"), &shuffled, commit_every, &[], Lineage::EventIdsOnly);
        prop_assert!(got == reference, "shuffled within the bound, commit every {}:\n{}", commit_every, diff(&got, &reference));

        // Same order, batches and restarts: identical down to the lineage's line numbers.
        let whole = run(&base.path().join("whole"), &shuffled, 1_000_000, &[], Lineage::LineNumbers);
        let mut stops = vec![stop_a.min(stop_b), stop_a.max(stop_b)];
        stops.dedup();
        let got = run(&base.path().join("restarts"), &shuffled, commit_every, &stops, Lineage::LineNumbers);
        prop_assert!(got == whole, "stopped after {:?} records and restarted:\n{}", stops, diff(&got, &whole));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// SPEC §7: the outputs do not depend on how the input is split into partitions, on how
    /// many shards (instances) share the shops, on how partitions interleave, on commit sizes
    /// or on restarts — the file-mode run of the same lines gives the same final snapshots,
    /// compensations and alert states.
    #[test]
    fn same_events_same_outputs_whatever_partitions_shards_or_interleaving(
        seed in 0u64..1_000_000,
        partitions in 1usize..5,
        shards in 1u32..5,
        split_seed in any::<u64>(),
        commit_every in prop::sample::select(vec![1u64, 13, 200, 5_000]),
    ) {
        let lines = sample(seed);
        let base = tempfile::tempdir().unwrap();
        let reference = run(&base.path().join("ref"), &lines, 1_000_000, &[], Lineage::EventIdsOnly);
        prop_assert!(!reference.compensations.is_empty());
        let split = Split { partitions, shards, seed: split_seed, commit_every };
        let got = sharded(&lines, split);
        prop_assert!(got == reference, "{:?}:\n{}", split, diff(&got, &reference));
    }
}

/// How many shops' window sums the engine remembers changes speed and memory, never an output
/// (`[state] window_sums_*`): none, a few (shops forgotten and read again all the time), and
/// the default give the same outputs, down to the lineage's line numbers.
#[test]
fn remembered_window_sums_change_no_output() {
    let lines = sample(11);
    let base = tempfile::tempdir().unwrap();
    let run_with = |name: &str, sums: SumsLimits| {
        run_remembering(&base.path().join(name), &lines, 64, &[], Lineage::LineNumbers, sums)
    };
    let default = run_with("default", SumsLimits::default());
    assert!(!default.snapshots.is_empty() && !default.compensations.is_empty());
    for (name, sums) in
        [("none", SumsLimits { shops: 0, buckets: 0 }), ("few", SumsLimits { shops: 4, buckets: 10 })]
    {
        let got = run_with(name, sums);
        assert!(got == default, "{name}:\n{}", diff(&got, &default));
    }
}
