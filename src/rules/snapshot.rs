//! Building a shop's snapshot from its day buckets and deciding whether it changed.
//!
//! Windows are whole Asia/Shanghai days ending with the watermark's day (SPEC §3). A
//! snapshot is emitted only when some value other than `as_of`/`version` changes (§9), so
//! the last emitted values are kept per shop and compared as exact counts.

use super::metrics::{DayCounters, WindowCounts};
use crate::domain::{Day, Timestamp};
use crate::output::Snapshot;
use crate::state::keys::{self, Key};
use crate::state::overlay::Overlay;
use crate::state::StateError;
use serde::{Deserialize, Serialize};

/// The values of the last snapshot emitted for a shop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSnapshot {
    pub version: u64,
    pub windows: Vec<WindowCounts>,
}

/// Sums a shop's day buckets into each window ending at `as_of_day`.
pub fn window_counts(
    ov: &mut Overlay<'_>,
    shop: &str,
    as_of_day: Day,
    windows: &[u32],
) -> Result<Vec<WindowCounts>, StateError> {
    let longest = windows.iter().copied().max().unwrap_or(0) as i32;
    let first = Day(as_of_day.0 - longest + 1);
    let prefix = keys::day_bucket_prefix(shop);
    let start = Key::DayBucket { shop, day: first }.encode();
    let mut sums = vec![WindowCounts::default(); windows.len()];
    for (k, v) in ov.scan(&prefix, &start, usize::MAX)? {
        let Some(day) = keys::day_of_bucket_key(&k) else {
            continue;
        };
        if day > as_of_day {
            break;
        }
        let counters: DayCounters = crate::state::codec::decode(&k, &v)?;
        for (sum, &n) in sums.iter_mut().zip(windows) {
            if day.0 > as_of_day.0 - n as i32 {
                sum.add(&counters);
            }
        }
    }
    Ok(sums)
}

/// Recomputes `shop`'s values at `as_of`; when they differ from the last emitted ones,
/// stores them with the next version and returns the snapshot to emit.
pub fn refresh(
    ov: &mut Overlay<'_>,
    shop: &str,
    as_of: Timestamp,
    windows: &[u32],
) -> Result<Option<Snapshot>, StateError> {
    let counts = window_counts(ov, shop, as_of.day(), windows)?;
    let key = Key::Snapshot { shop };
    let last: Option<LastSnapshot> = ov.get(&key)?;
    if last.as_ref().is_some_and(|l| l.windows == counts) {
        return Ok(None);
    }
    let version = last.map_or(1, |l| l.version + 1);
    ov.put(
        &key,
        &LastSnapshot {
            version,
            windows: counts.clone(),
        },
    );
    Ok(Some(Snapshot {
        shop_id: shop.to_owned(),
        as_of,
        version,
        windows: windows.iter().copied().zip(counts).collect(),
    }))
}
