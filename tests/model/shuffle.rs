//! Reorders input lines so arrival order differs from event-time order while staying within
//! the out-of-orderness bound. Shared by the model tests and `tests/determinism.rs`.

use rand::{Rng, SeedableRng};
use shopscore::domain::decode::{decode_json, DecodeOptions};

/// Sorts lines by event time plus a random delay below `bound_ms`: every event then arrives
/// less than `bound_ms` behind the latest one seen, so none is late. Lines that do not
/// decode keep the key of the line before them.
pub fn within_bound<L: AsRef<[u8]> + Clone>(lines: &[L], seed: u64, bound_ms: i64) -> Vec<L> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut last = 0i64;
    let mut keyed: Vec<(i64, usize, &L)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if let Ok(ev) = decode_json(l.as_ref(), None, &DecodeOptions::default()) {
                last = ev.event_time.0 + rng.random_range(0..bound_ms);
            }
            (last, i, l)
        })
        .collect();
    keyed.sort_by_key(|&(t, i, _)| (t, i));
    keyed.into_iter().map(|(_, _, l)| l.clone()).collect()
}
