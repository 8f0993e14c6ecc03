//! Event-time retention: which stored entries no rule can use any more (SPEC §9
//! "Retention"), so state stays bounded by the horizon, not by history.
//!
//! The horizon is the longest window (metrics, DSR, campaign) plus the allowed lateness plus
//! the DSR rating validity (15 days) plus one natural month (a DSR month that straddles the
//! window start), plus a day of margin. An entry is dead once everything it can contribute
//! to lies before `watermark − horizon`: such days never enter a window again, and an event
//! that old is beyond the allowed lateness. Open refunds (no `COMPLETED` yet) and undecided
//! orders are kept whatever their age. The watermark used is the last *committed* one.
//!
//! Expiry runs inside RocksDB compactions ([`crate::state::Expiry`]); it only ever removes
//! entries, so when it runs does not change any result for input within the allowed
//! lateness.

use super::dsr::{DsrGroup, VALIDITY_MS};
use super::engine::RulesConfig;
use super::facts::{OrderFacts, RefundFacts};
use super::satisfaction::ServiceHistory;
use super::snapshot::window_lengths;
use crate::domain::time::DAY_MS;
use crate::domain::Timestamp;
use crate::state::codec;
use crate::state::keys::{self, Family};
use crate::state::Expiry;
use std::sync::atomic::{AtomicI64, Ordering};

/// How long state must be kept behind the watermark.
pub fn horizon_ms(cfg: &RulesConfig) -> i64 {
    let longest = window_lengths(&cfg.windows, cfg.dsr_days).max().unwrap_or(1) as i64;
    (longest + 1) * DAY_MS + cfg.allowed_lateness_ms + VALIDITY_MS + 31 * DAY_MS
}

/// The retention policy, fed with the committed watermark.
pub struct Retention {
    horizon_ms: i64,
    committed_watermark: AtomicI64,
}

const NONE: i64 = i64::MIN;

impl Retention {
    pub fn new(cfg: &RulesConfig) -> Retention {
        Retention { horizon_ms: horizon_ms(cfg), committed_watermark: AtomicI64::new(NONE) }
    }

    /// Call after each commit with the watermark that commit stored.
    pub fn set_watermark(&self, wm: Option<Timestamp>) {
        self.committed_watermark.store(wm.map_or(NONE, |t| t.0), Ordering::Release);
    }

    /// Everything strictly before this instant is past the horizon.
    pub fn cutoff(&self) -> Option<Timestamp> {
        match self.committed_watermark.load(Ordering::Acquire) {
            NONE => None,
            wm => Some(Timestamp(wm.saturating_sub(self.horizon_ms))),
        }
    }
}

impl Expiry for Retention {
    fn expired(&self, key: &[u8], value: &[u8]) -> bool {
        let Some(cutoff) = self.cutoff() else { return false };
        let Some(family) = keys::family(key) else { return false };
        match family {
            Family::Seen => codec::decode::<Timestamp>(key, value).is_ok_and(|t| t < cutoff),
            Family::DayBucket => keys::day_of_bucket_key(key).is_some_and(|d| d < cutoff.day()),
            Family::DayShop => keys::day_of_day_shop_key(key).is_some_and(|d| d < cutoff.day()),
            Family::Order => codec::decode::<OrderFacts>(key, value).is_ok_and(|o| {
                let paid = o.paid.as_ref();
                let late_open = paid.is_some() && !o.late_decided;
                let promise_open =
                    paid.and_then(|p| p.value.promised_delivery_by).is_some() && !o.promise_decided;
                !late_open && !promise_open && o.last_activity < cutoff
            }),
            Family::Refund => codec::decode::<RefundFacts>(key, value)
                .is_ok_and(|r| r.completed.is_some() && r.last_activity < cutoff),
            Family::DsrGroup => codec::decode::<DsrGroup>(key, value)
                .is_ok_and(|g| g.entries.iter().all(|e| e.completed.plus_ms(VALIDITY_MS) < cutoff)),
            Family::ServiceHistory => codec::decode::<ServiceHistory>(key, value)
                .is_ok_and(|h| h.entries.last().is_none_or(|e| e.time < cutoff)),
            Family::Meta | Family::Snapshot | Family::Timer | Family::AlertState | Family::BuyerOrders => {
                false
            }
        }
    }
}
