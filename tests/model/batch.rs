//! The whole model as one batch computation: decode, fold into facts, then every shop's
//! final snapshot and every compensation decidable at the final watermark.

use super::compensation::{self, Record};
use super::input::{self, Input};
use super::{facts, snapshot};
use serde_json::Value;
use shopscore::domain::Timestamp;
use std::collections::BTreeMap;

pub struct ModelOutput {
    pub input: Input,
    pub snapshots: BTreeMap<String, Value>,
    pub compensations: Vec<Record>,
    pub snapshot_coverage: snapshot::Coverage,
    pub compensation_coverage: compensation::Coverage,
}

/// The model at the final watermark of a bounded file run: the largest event time.
pub fn compute(lines: &[Vec<u8>]) -> ModelOutput {
    let input = input::read(lines);
    let watermark = input.watermark;
    compute_from(input, watermark)
}

/// The model at `watermark`: every event applied, snapshots as of it, the compensations it
/// has passed the decision time of (a Kafka run ends at the largest event time less the
/// out-of-orderness bound).
pub fn compute_at(lines: &[Vec<u8>], watermark: Timestamp) -> ModelOutput {
    compute_from(input::read(lines), watermark)
}

fn compute_from(input: Input, watermark: Timestamp) -> ModelOutput {
    let shops = facts::fold(&input.events);
    let (mut snapshot_coverage, mut compensation_coverage) = Default::default();
    let mut snapshots = BTreeMap::new();
    let mut compensations = Vec::new();
    for (id, shop) in &shops {
        snapshots.insert(id.clone(), snapshot::snapshot(id, shop, watermark, &mut snapshot_coverage));
        compensations.extend(compensation::records(id, shop, watermark, &mut compensation_coverage));
    }
    ModelOutput { input, snapshots, compensations, snapshot_coverage, compensation_coverage }
}
