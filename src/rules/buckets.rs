//! The per-commit cache of day buckets.
//!
//! Every event moves some counts between days; the engine applies those moves here, to
//! typed counters held in memory for the length of one commit, and writes each touched
//! bucket to the overlay once, at flush. This is what keeps RocksDB traffic per commit
//! proportional to the (shop, day) pairs touched, not to the events.

use super::metrics::{Contribution, DayCounters};
use super::rolling::RollingSums;
use crate::domain::Day;
use crate::state::keys::Key;
use crate::state::overlay::Overlay;
use crate::state::StateError;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// A cached bucket: its value as read (None: absent) and as updated.
struct Slot {
    stored: Option<DayCounters>,
    current: DayCounters,
}

#[derive(Default)]
pub struct Buckets {
    /// Hashed with Fx, as the engine's other per-event maps (shop ids are not attacker-chosen
    /// keys of a long-lived map: the cache lives for one commit).
    cache: FxHashMap<String, BTreeMap<Day, Slot>>,
}

impl Buckets {
    /// The bucket of `shop` and `day` as cached for this commit, read on first use — from
    /// `known` (the window sums' remembered buckets) when it holds the shop, else from the
    /// overlay.
    fn slot<'a>(
        &'a mut self,
        ov: &mut Overlay<'_>,
        known: &RollingSums,
        shop: &str,
        day: Day,
    ) -> Result<&'a mut DayCounters, StateError> {
        if !self.cache.contains_key(shop) {
            self.cache.insert(shop.to_owned(), BTreeMap::new());
        }
        let days = self.cache.get_mut(shop).expect("inserted above");
        if let std::collections::btree_map::Entry::Vacant(v) = days.entry(day) {
            let stored: Option<DayCounters> = match known.bucket(shop, day) {
                Some(remembered) => remembered.cloned(),
                None => ov.get(&Key::DayBucket { shop, day })?,
            };
            v.insert(Slot { current: stored.clone().unwrap_or_default(), stored });
        }
        Ok(&mut days.get_mut(&day).expect("present").current)
    }

    /// Replaces an entity's `old` contribution with `new`; returns whether anything moved.
    pub fn replace(
        &mut self,
        ov: &mut Overlay<'_>,
        known: &RollingSums,
        shop: &str,
        old: &Contribution,
        new: &Contribution,
    ) -> Result<bool, StateError> {
        if old == new {
            return Ok(false);
        }
        for (day, c) in old {
            self.slot(ov, known, shop, *day)?.sub(c);
        }
        for (day, c) in new {
            self.slot(ov, known, shop, *day)?.add(c);
        }
        Ok(true)
    }

    /// Writes every changed cached bucket to the overlay (deleting zero ones) with its
    /// day→shop index entry (already present when the bucket was; deleted with it), telling
    /// `sums` of each change; returns the range of days that hold a non-zero bucket now (a
    /// day touched and left at zero holds no data: leaving it out keeps the range a function
    /// of the buckets, not of the order their events came in), and empties the cache.
    pub fn write_back(&mut self, ov: &mut Overlay<'_>, sums: &mut RollingSums) -> Option<(Day, Day)> {
        let mut range: Option<(Day, Day)> = None;
        for (shop, days) in self.cache.drain() {
            for (day, Slot { stored, current: c }) in days {
                if stored.as_ref() != Some(&c) {
                    sums.bucket_changed(&shop, day, stored.as_ref().unwrap_or(&DayCounters::default()), &c);
                }
                let key = Key::DayBucket { shop: &shop, day };
                if c.is_zero() {
                    if stored.is_some() {
                        ov.delete(&key);
                        // A zero bucket adds nothing to any window: its shop need not be
                        // re-evaluated when the day moves (and the index stays a function
                        // of the buckets, see `derived`).
                        ov.delete(&Key::DayShop { day, shop: &shop });
                    }
                } else if stored.as_ref() != Some(&c) {
                    ov.put(&key, &c);
                    if stored.is_none() {
                        ov.put(&Key::DayShop { day, shop: &shop }, &());
                    }
                }
                if !c.is_zero() {
                    range = Some(range.map_or((day, day), |(lo, hi)| (lo.min(day), hi.max(day))));
                }
            }
        }
        range
    }
}
