//! Runs the real pipeline (file mode, default rules) on a list of lines and reads back what
//! the model is compared with: each shop's last snapshot and every compensation line.

use serde_json::Value;
use shopscore::pipeline::{run_files, FileRun};
use std::collections::BTreeMap;
use std::path::Path;

pub struct EngineOutput {
    /// The last snapshot line per shop.
    pub snapshots: BTreeMap<String, Value>,
    /// Every compensation line, in output order.
    pub compensations: Vec<Value>,
}

/// Runs `lines` through `run_files` into fresh state under `dir`, committing every
/// `commit_every` records.
pub fn run(dir: &Path, lines: &[Vec<u8>], commit_every: u64) -> EngineOutput {
    run_in_parts(dir, &[lines], commit_every)
}

/// Writes each part to its own file and runs file mode once per part on the same data and
/// output directories, each run given the files so far (SPEC §8: a second run with more
/// input continues where the first stopped). Lineage line numbers are made relative to the
/// concatenation of the parts, as the model counts them.
pub fn run_in_parts(dir: &Path, parts: &[&[Vec<u8>]], commit_every: u64) -> EngineOutput {
    std::fs::create_dir_all(dir).unwrap();
    let mut inputs = Vec::new();
    let mut offsets = BTreeMap::new();
    let mut offset = 0u64;
    for (i, lines) in parts.iter().enumerate() {
        let input = dir.join(format!("in{i}.jsonl"));
        std::fs::write(&input, lines.join(&b"\n"[..])).unwrap();
        offsets.insert(input.display().to_string(), offset);
        offset += lines.len() as u64;
        inputs.push(input);
        let run = FileRun {
            commit_every_records: commit_every,
            ..FileRun::new(inputs.clone(), dir.join("out"), dir.join("data"))
        };
        run_files(&run).unwrap();
    }
    let EngineOutput { snapshots, mut compensations } = read_outputs(&dir.join("out"));
    for c in &mut compensations {
        for ev in c["lineage"]["events"].as_array_mut().into_iter().flatten() {
            let file = ev["source"]["file"].as_str().unwrap_or_default().to_owned();
            if let (Some(line), Some(offset)) = (ev["source"]["line"].as_u64(), offsets.get(&file)) {
                ev["source"]["line"] = (line + offset).into();
            }
        }
    }
    EngineOutput { snapshots, compensations }
}

/// The last snapshot per shop and every compensation line of an output directory (file
/// mode's, or a replay's `--output`).
pub fn read_outputs(out: &Path) -> EngineOutput {
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    let mut snapshots = BTreeMap::new();
    for line in read("snapshots.jsonl").lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        snapshots.insert(v["shop_id"].as_str().unwrap().to_owned(), v);
    }
    let compensations =
        read("compensations.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    EngineOutput { snapshots, compensations }
}
