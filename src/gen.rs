//! (placeholder until the decode branch lands)
use crate::domain::Timestamp;
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub seed: u64,
    pub events: u64,
    pub shops: u32,
    pub days: u32,
    pub start: Timestamp,
    pub malformed_per_mille: u32,
    pub duplicate_per_mille: u32,
    pub max_disorder_ms: i64,
}
impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            seed: 42,
            events: 0,
            shops: 1,
            days: 1,
            start: Timestamp(0),
            malformed_per_mille: 0,
            duplicate_per_mille: 0,
            max_disorder_ms: 0,
        }
    }
}
pub struct GenSummary {
    pub lines: u64,
    pub valid: u64,
    pub malformed: u64,
    pub duplicates: u64,
}
pub fn generate(_o: &GenOptions, _w: &mut impl std::io::Write) -> std::io::Result<GenSummary> {
    Ok(GenSummary { lines: 0, valid: 0, malformed: 0, duplicates: 0 })
}
