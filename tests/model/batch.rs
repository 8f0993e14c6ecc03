//! The whole model as one batch computation: decode, fold into facts, then every shop's
//! final snapshot and every compensation decidable at the final watermark.

use super::compensation::{self, Record};
use super::input::{self, Input};
use super::{facts, snapshot};
use serde_json::Value;
use std::collections::BTreeMap;

pub struct ModelOutput {
    pub input: Input,
    pub snapshots: BTreeMap<String, Value>,
    pub compensations: Vec<Record>,
    pub snapshot_coverage: snapshot::Coverage,
    pub compensation_coverage: compensation::Coverage,
}

pub fn compute(lines: &[Vec<u8>]) -> ModelOutput {
    let input = input::read(lines);
    let shops = facts::fold(&input.events);
    let (mut snapshot_coverage, mut compensation_coverage) = Default::default();
    let mut snapshots = BTreeMap::new();
    let mut compensations = Vec::new();
    for (id, shop) in &shops {
        snapshots.insert(id.clone(), snapshot::snapshot(id, shop, input.watermark, &mut snapshot_coverage));
        compensations.extend(compensation::records(id, shop, input.watermark, &mut compensation_coverage));
    }
    ModelOutput { input, snapshots, compensations, snapshot_coverage, compensation_coverage }
}
