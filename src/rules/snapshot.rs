//! Building a shop's snapshot from its day buckets and deciding whether it changed.
//!
//! Windows are whole Asia/Shanghai days ending with the watermark's day (SPEC §3); DSR uses
//! its own (180-day) window and campaign eligibility a 30-day one. A snapshot is emitted
//! only when some value other than `as_of`/`version` changes (§9), so the last emitted
//! values are kept per shop and compared as exact counts.

use super::metrics::WindowCounts;
use super::rolling::RollingSums;
use crate::domain::Timestamp;
use crate::output::Snapshot;
use crate::state::keys::Key;
use crate::state::overlay::Overlay;
use crate::state::StateError;
use serde::{Deserialize, Serialize};

/// Days of the campaign-eligibility manual-refund window (SPEC §4, seed 004).
pub const CAMPAIGN_DAYS: u32 = 30;

/// Everything a snapshot shows, as counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopValues {
    /// One entry per configured window, in order.
    pub windows: Vec<WindowCounts>,
    /// DSR sums (description, service, logistics) and count over the DSR window.
    pub dsr_sum: [i64; 3],
    pub dsr_count: i64,
    /// Manual refunds and paid orders over the last [`CAMPAIGN_DAYS`] days.
    pub campaign_manual: i64,
    pub campaign_paid: i64,
}

/// The values of the last snapshot emitted for a shop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSnapshot {
    pub version: u64,
    pub values: ShopValues,
}

/// Campaign-eligibility condition names, in SPEC §8 order.
pub const DSR_FAILS: [&str; 3] =
    ["DSR_DESCRIPTION_BELOW_4_6", "DSR_SERVICE_BELOW_4_6", "DSR_LOGISTICS_BELOW_4_6"];
pub const MANUAL_FAIL: &str = "MANUAL_REFUNDS_OVER_LIMIT";

impl ShopValues {
    /// All zero, with `windows` windows.
    pub fn empty(windows: usize) -> ShopValues {
        ShopValues { windows: vec![WindowCounts::default(); windows], ..Default::default() }
    }

    /// DSR score of dimension `i` (description, service, logistics), null without ratings.
    pub fn dsr_score(&self, i: usize) -> Option<f64> {
        super::metrics::rate(self.dsr_sum[i], self.dsr_count)
    }

    /// The failed campaign conditions (empty = eligible): each DSR score ≥ 4.6 (a dimension
    /// with no rating passes), and manual refunds ≤ 6 or ≤ 0.1 % of paid orders over 30
    /// days. Compared in integers, so exactly 4.6 passes.
    pub fn campaign_failures(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        for (i, name) in DSR_FAILS.iter().enumerate() {
            if self.dsr_count > 0 && self.dsr_sum[i] * 10 < 46 * self.dsr_count {
                failed.push(*name);
            }
        }
        if self.campaign_manual > 6 && self.campaign_manual * 1000 > self.campaign_paid {
            failed.push(MANUAL_FAIL);
        }
        failed
    }
}

/// Every window length in days a snapshot looks at: the configured windows, the DSR window
/// and the campaign window. Day rollover and retention follow the same set.
pub fn window_lengths(windows: &[u32], dsr_days: u32) -> impl Iterator<Item = u32> + '_ {
    windows.iter().copied().chain([dsr_days, CAMPAIGN_DAYS])
}

/// Recomputes `shop`'s values at `as_of`; when they differ from the last emitted ones,
/// stores them with the next version and returns the snapshot to emit.
pub fn refresh(
    ov: &mut Overlay<'_>,
    sums: &mut RollingSums,
    shop: &str,
    as_of: Timestamp,
    windows: &[u32],
) -> Result<Option<Snapshot>, StateError> {
    let values = sums.values(ov, shop, as_of.day())?;
    let key = Key::Snapshot { shop };
    let last: Option<LastSnapshot> = ov.get(&key)?;
    if last.as_ref().is_some_and(|l| l.values == values) {
        return Ok(None);
    }
    let version = last.map_or(1, |l| l.version + 1);
    ov.put(&key, &LastSnapshot { version, values: values.clone() });
    Ok(Some(Snapshot { shop_id: shop.to_owned(), as_of, version, window_days: windows.to_vec(), values }))
}
