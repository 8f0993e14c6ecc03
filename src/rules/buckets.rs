//! The per-commit cache of day buckets.
//!
//! Every event moves some counts between days; the engine applies those moves here, to
//! typed counters held in memory for the length of one commit, and writes each touched
//! bucket to the overlay once, at flush. This is what keeps RocksDB traffic per commit
//! proportional to the (shop, day) pairs touched, not to the events.

use super::metrics::{Contribution, DayCounters};
use crate::domain::Day;
use crate::state::keys::Key;
use crate::state::overlay::Overlay;
use crate::state::StateError;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub struct Buckets {
    cache: HashMap<String, BTreeMap<Day, DayCounters>>,
}

impl Buckets {
    fn slot<'a>(
        &'a mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        day: Day,
    ) -> Result<&'a mut DayCounters, StateError> {
        if !self.cache.contains_key(shop) {
            self.cache.insert(shop.to_owned(), BTreeMap::new());
        }
        let days = self.cache.get_mut(shop).expect("inserted above");
        if let std::collections::btree_map::Entry::Vacant(v) = days.entry(day) {
            let stored: DayCounters = ov.get(&Key::DayBucket { shop, day })?.unwrap_or_default();
            v.insert(stored);
        }
        Ok(days.get_mut(&day).expect("present"))
    }

    /// Replaces an entity's `old` contribution with `new`; returns whether anything moved.
    pub fn replace(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        old: &Contribution,
        new: &Contribution,
    ) -> Result<bool, StateError> {
        if old == new {
            return Ok(false);
        }
        for (day, c) in old {
            self.slot(ov, shop, *day)?.sub(c);
        }
        for (day, c) in new {
            self.slot(ov, shop, *day)?.add(c);
        }
        Ok(true)
    }

    /// Writes every cached bucket to the overlay (deleting zero ones) with its day→shop
    /// index entry; returns the range of days written, and empties the cache.
    pub fn write_back(&mut self, ov: &mut Overlay<'_>) -> Option<(Day, Day)> {
        let mut range: Option<(Day, Day)> = None;
        for (shop, days) in self.cache.drain() {
            for (day, c) in days {
                let key = Key::DayBucket { shop: &shop, day };
                if c.is_zero() {
                    ov.delete(&key);
                } else {
                    ov.put(&key, &c);
                    ov.put(&Key::DayShop { day, shop: &shop }, &());
                }
                range = Some(range.map_or((day, day), |(lo, hi)| (lo.min(day), hi.max(day))));
            }
        }
        range
    }
}
