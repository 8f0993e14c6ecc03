//! The derived keys (timers, the day→shop index) are a function of the entries they index:
//! after every commit, the store holds exactly `rules::derived::derived_keys` of its
//! entries. Kafka mode relies on it: its changelog leaves derived keys out and a restore
//! rebuilds them, so a restored shard must hold what its previous owner held.
//!
//! Checked on every commit of file-mode runs (the engine is the same in both modes) over
//! the golden inputs and a generated input whose disorder goes past the allowed lateness
//! (late and too-late payments, timers moved by earlier reports).

use shopscore::gen::{generate, GenOptions};
use shopscore::pipeline::{run_files_on, FileRun};
use shopscore::rules::derived::held_and_expected;
use shopscore::state::memory::MemStore;
use shopscore::state::{keys, KvRows, KvStore, StateError, WriteBatch};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A store that checks the derived keys after every batch written.
struct Checking {
    store: MemStore,
    commits: AtomicUsize,
    /// Derived keys seen over the whole run (so the test knows it checked some).
    timers: AtomicUsize,
    day_shops: AtomicUsize,
}

impl Checking {
    fn new() -> Self {
        Checking {
            store: MemStore::new(),
            commits: AtomicUsize::new(0),
            timers: AtomicUsize::new(0),
            day_shops: AtomicUsize::new(0),
        }
    }

    fn check(&self) {
        let all = self.store.scan(&[], &[], usize::MAX).unwrap();
        let (held, expected) = held_and_expected(all.iter().map(|(k, v)| (&k[..], &v[..]))).unwrap();
        let describe = |set: &BTreeSet<Vec<u8>>| set.iter().map(|k| keys::describe(k)).collect::<Vec<_>>();
        let extra: BTreeSet<Vec<u8>> = held.difference(&expected).cloned().collect();
        let missing: BTreeSet<Vec<u8>> = expected.difference(&held).cloned().collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "after commit {}: derived keys the entries do not derive {:?}; derived keys missing {:?}",
            self.commits.load(Ordering::Relaxed),
            describe(&extra),
            describe(&missing)
        );
        for k in &held {
            match keys::family(k) {
                Some(keys::Family::Timer) => self.timers.fetch_add(1, Ordering::Relaxed),
                _ => self.day_shops.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

impl KvStore for Checking {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.store.get(key)
    }
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<KvRows, StateError> {
        self.store.scan(prefix, start, limit)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.store.write(batch)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.check();
        Ok(())
    }
}

fn run(inputs: Vec<PathBuf>, dir: &Path, commit_every: u64) -> Checking {
    let store = Checking::new();
    let run = FileRun {
        commit_every_records: commit_every,
        ..FileRun::new(inputs, dir.join("out"), dir.join("unused"))
    };
    run_files_on(&store, &run, None).unwrap();
    store
}

#[test]
fn golden_inputs_keep_derived_keys_a_function_of_the_entries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut cases = 0;
    for suite in ["golden", "golden_compensation"] {
        for entry in std::fs::read_dir(root.join(suite)).unwrap() {
            let input = entry.unwrap().path().join("input.jsonl");
            if !input.exists() {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            // A commit every 3 lines: timers set, moved and fired across many commits.
            let store = run(vec![input], dir.path(), 3);
            assert!(store.commits.load(Ordering::Relaxed) > 1);
            cases += 1;
        }
    }
    assert!(cases >= 20, "only {cases} golden inputs found");
}

#[test]
fn disordered_generated_input_keeps_derived_keys_a_function_of_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // Disorder of up to two days: beyond the allowed lateness (one day) too.
    let opts = GenOptions {
        seed: 11,
        events: 12_000,
        shops: 15,
        days: 40,
        max_disorder_ms: 2 * 86_400_000,
        // Payments reported twice with other deadlines and promises move an order's timers.
        restated_per_mille: 50,
        ..GenOptions::default()
    };
    generate(&opts, &mut std::fs::File::create(&input).unwrap()).unwrap();
    let store = run(vec![input], dir.path(), 400);
    let commits = store.commits.load(Ordering::Relaxed);
    let (timers, day_shops) = (store.timers.load(Ordering::Relaxed), store.day_shops.load(Ordering::Relaxed));
    eprintln!(
        "{commits} commits checked; timers {timers}, day→shop entries {day_shops} (summed over commits)"
    );
    assert!(commits >= 25, "{commits}");
    assert!(timers > 0 && day_shops > 0);
}
