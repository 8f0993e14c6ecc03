//! Per-shop window sums and day buckets kept in memory between snapshots, so that a
//! snapshot reads no bucket from the store.
//!
//! A snapshot's values are sums of a shop's day buckets over windows ending with the
//! watermark's day. [`RollingSums`] remembers, per shop,
//! the values at the day of its last snapshot and **every bucket of the shop from the first
//! day of its longest window on** (later days too). Both stay exact as buckets change:
//! every bucket write goes through [`super::buckets::Buckets::write_back`], which reports
//! the change (old and new counters, integers, so subtracting and adding is exact). When the
//! watermark's day moves on, the days that enter or leave a window are taken from the
//! remembered buckets, whatever the step; and [`super::buckets::Buckets`] reads a remembered
//! shop's buckets from here instead of the store (absent ones included).
//!
//! It is a cache, held in memory only: a shop not in it (a new process, a shard just
//! restored, more than [`MAX_SHOPS`] shops or [`MAX_BUCKETS`] buckets) is read from the
//! store with one scan when its snapshot is next computed. A remembered shop's buckets
//! before the first day of its longest window are dropped as the day moves on: no window
//! reaches them again (the watermark never goes back), a late event that changes one
//! changes no window, and retention, which deletes buckets without telling this cache, only
//! deletes buckets older than that (see [`super::retention::horizon_ms`]).
//!
//! Measured: session 7 kept only the sums, and re-read the days entering and leaving the
//! windows from the store; a step needing more than one range scan (a commit moving the day
//! by more than a few days, as in a fast replay or a Kafka shard's benchmark commits) was
//! summed afresh with a scan of up to 180 days. Session 13 keeps the buckets too (README →
//! Benchmark).

use super::metrics::DayCounters;
use super::snapshot::{window_lengths, ShopValues};
use crate::domain::Day;
use crate::state::keys::{self, Key};
use crate::state::overlay::Overlay;
use crate::state::StateError;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// At most this many shops are remembered per engine.
pub const MAX_SHOPS: usize = 20_000;

/// A shop is taken in only while the day buckets remembered per engine stay within this
/// (~0.2 KiB each with the map's own overhead: ~11 MiB; a Kafka-mode shard has an engine of
/// its own). Remembered shops gain buckets as days pass; one whose new bucket takes the total
/// over twice this is forgotten, so the total never exceeds [`MAX_BUCKETS_HELD`]. The gap
/// between the two keeps remembered shops from being forgotten and read again at every
/// new day once the limit is reached.
pub const MAX_BUCKETS: usize = 50_000;

/// The most day buckets remembered per engine (~22 MiB).
pub const MAX_BUCKETS_HELD: usize = 2 * MAX_BUCKETS;

/// How much an engine remembers (configuration: `[state]`): at most `shops` shops, taken in
/// while the buckets held stay within `buckets`, never more than twice that held. The
/// defaults are [`MAX_SHOPS`] and [`MAX_BUCKETS`]. Only speed and memory depend on them, never
/// a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SumsLimits {
    pub shops: usize,
    pub buckets: usize,
}

impl Default for SumsLimits {
    fn default() -> Self {
        SumsLimits { shops: MAX_SHOPS, buckets: MAX_BUCKETS }
    }
}

/// One shop's values at `day`, and its buckets from `from` on.
struct Rolling {
    day: Day,
    values: ShopValues,
    /// Every non-zero bucket of the shop on day `from` or later, as stored.
    from: Day,
    buckets: BTreeMap<Day, DayCounters>,
}

/// The window sums and buckets of recently snapshotted shops.
pub struct RollingSums {
    windows: Vec<u32>,
    dsr_days: u32,
    /// Days of the longest window (configured, DSR or campaign).
    longest: i32,
    shops: FxHashMap<String, Rolling>,
    /// Buckets held over all shops.
    held: usize,
    limits: SumsLimits,
    /// [`RollingSums::bucket`] answers only for days from here on: the first day of the
    /// longest window at the last watermark. Retention deletes from the store only buckets
    /// far older (the horizon is longer than the longest window), so a remembered bucket of
    /// a remembered shop that has not had a snapshot for a long time may be one the store no
    /// longer has; it is never one a window still uses.
    floor: Day,
}

impl RollingSums {
    pub fn new(windows: &[u32], dsr_days: u32, limits: SumsLimits) -> RollingSums {
        let longest = window_lengths(windows, dsr_days).max().unwrap_or(1) as i32;
        RollingSums {
            windows: windows.to_vec(),
            dsr_days,
            longest,
            shops: FxHashMap::default(),
            held: 0,
            limits,
            floor: Day(i32::MIN),
        }
    }

    /// The watermark's day moved to `day` (it only moves forward).
    pub fn watermark_day(&mut self, day: Day) {
        self.floor = self.floor.max(Day(day.0 - self.longest + 1));
    }

    /// `shop`'s bucket of `day` went from `old` to `new`.
    pub fn bucket_changed(&mut self, shop: &str, day: Day, old: &DayCounters, new: &DayCounters) {
        if let Some(r) = self.shops.get_mut(shop) {
            let (windows, dsr_days) = (&self.windows, self.dsr_days);
            accumulate(&mut r.values, r.day, day, old, windows, dsr_days, Sign::Minus);
            accumulate(&mut r.values, r.day, day, new, windows, dsr_days, Sign::Plus);
            if day >= r.from {
                if new.is_zero() {
                    if r.buckets.remove(&day).is_some() {
                        self.held -= 1;
                    }
                } else if r.buckets.insert(day, new.clone()).is_none() {
                    self.held += 1;
                    if self.held > 2 * self.limits.buckets {
                        self.forget(shop);
                    }
                }
            }
        }
    }

    fn forget(&mut self, shop: &str) {
        if let Some(r) = self.shops.remove(shop) {
            self.held -= r.buckets.len();
        }
    }

    /// `shop`'s stored bucket of `day` if this cache knows it (`Some(None)`: known to be
    /// absent), `None` if it does not.
    pub fn bucket(&self, shop: &str, day: Day) -> Option<Option<&DayCounters>> {
        let r = self.shops.get(shop)?;
        (day >= r.from && day >= self.floor).then(|| r.buckets.get(&day))
    }

    /// `shop`'s values over the windows ending with `as_of_day`.
    pub fn values(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        as_of_day: Day,
    ) -> Result<ShopValues, StateError> {
        let first = Day(as_of_day.0 - self.longest + 1);
        if self.shops.get(shop).is_some_and(|r| as_of_day < r.day || first < r.from) {
            // The day went back (it never does): read it all again.
            self.forget(shop);
        }
        let (windows, dsr_days) = (&self.windows, self.dsr_days);
        if let Some(r) = self.shops.get_mut(shop) {
            advance(r, as_of_day, windows, dsr_days);
            // No window reaches these days again.
            let kept = r.buckets.split_off(&first);
            self.held -= r.buckets.len();
            r.buckets = kept;
            r.from = first;
            return Ok(r.values.clone());
        }
        let buckets = read_buckets(ov, shop, first)?;
        let mut values = ShopValues::empty(windows.len());
        for (day, c) in buckets.range(first..=as_of_day) {
            accumulate(&mut values, as_of_day, *day, c, windows, dsr_days, Sign::Plus);
        }
        if self.shops.len() < self.limits.shops && self.held + buckets.len() <= self.limits.buckets {
            self.held += buckets.len();
            self.shops.insert(
                shop.to_owned(),
                Rolling { day: as_of_day, values: values.clone(), from: first, buckets },
            );
        }
        Ok(values)
    }
}

/// Every bucket of `shop` on day `first` or later, with one scan.
fn read_buckets(
    ov: &mut Overlay<'_>,
    shop: &str,
    first: Day,
) -> Result<BTreeMap<Day, DayCounters>, StateError> {
    let prefix = keys::day_bucket_prefix(shop);
    let start = Key::DayBucket { shop, day: first }.encode();
    let mut buckets = BTreeMap::new();
    for (k, bytes) in ov.scan(&prefix, &start, usize::MAX)? {
        if let Some(day) = keys::day_of_bucket_key(&k) {
            buckets.insert(day, crate::state::codec::decode(&k, &bytes)?);
        }
    }
    Ok(buckets)
}

/// The days whose membership of some window changes when its last day moves from `from`
/// to `to` (later), as disjoint ranges in day order: those entering, (from, to], and for a
/// window of n days those leaving it, (from - n, min(from, to - n)].
fn changing_days(from: Day, to: Day, windows: &[u32], dsr_days: u32) -> Vec<(i32, i32)> {
    let mut ranges: Vec<(i32, i32)> = window_lengths(windows, dsr_days)
        .map(|n| (from.0 - n as i32 + 1, from.0.min(to.0 - n as i32)))
        .collect();
    ranges.push((from.0 + 1, to.0));
    ranges.retain(|(lo, hi)| lo <= hi);
    ranges.sort_unstable();
    let mut merged: Vec<(i32, i32)> = Vec::new();
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// Moves `r`'s values from its day to `to` (not earlier) with its remembered buckets:
/// every bucket of a day that changes windows is taken out of the windows of the old day
/// and put into those of the new one.
fn advance(r: &mut Rolling, to: Day, windows: &[u32], dsr_days: u32) {
    let from = r.day;
    if to == from {
        return;
    }
    for (lo, hi) in changing_days(from, to, windows, dsr_days) {
        for (day, c) in r.buckets.range(Day(lo)..=Day(hi)) {
            accumulate(&mut r.values, from, *day, c, windows, dsr_days, Sign::Minus);
            accumulate(&mut r.values, to, *day, c, windows, dsr_days, Sign::Plus);
        }
    }
    r.day = to;
}

#[derive(Clone, Copy)]
enum Sign {
    Plus,
    Minus,
}

/// Adds (or subtracts) bucket `c` of `day` into the windows ending with `as_of_day` that hold
/// it.
fn accumulate(
    v: &mut ShopValues,
    as_of_day: Day,
    day: Day,
    c: &DayCounters,
    windows: &[u32],
    dsr_days: u32,
    sign: Sign,
) {
    if day > as_of_day {
        return;
    }
    let within = |n: u32| day.0 > as_of_day.0 - n as i32;
    let k: i64 = match sign {
        Sign::Plus => 1,
        Sign::Minus => -1,
    };
    for (sum, &n) in v.windows.iter_mut().zip(windows) {
        if within(n) {
            match sign {
                Sign::Plus => sum.add(c),
                Sign::Minus => sum.sub(c),
            }
        }
    }
    if within(dsr_days) {
        for (s, x) in v.dsr_sum.iter_mut().zip(c.dsr_sum) {
            *s += k * x;
        }
        v.dsr_count += k * c.dsr_count;
    }
    if within(super::snapshot::CAMPAIGN_DAYS) {
        v.campaign_manual += k * c.manual_refunds;
        v.campaign_paid += k * c.paid_orders;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemStore;
    use proptest::prelude::*;

    /// The plain computation the remembered sums are checked against: every bucket of the
    /// longest window ending at `as_of_day`, read from the store and summed.
    fn shop_values(
        ov: &mut Overlay<'_>,
        shop: &str,
        as_of_day: Day,
        windows: &[u32],
        dsr_days: u32,
    ) -> Result<ShopValues, StateError> {
        let longest = window_lengths(windows, dsr_days).max().unwrap_or(1) as i32;
        let first = Day(as_of_day.0 - longest + 1);
        let mut v = ShopValues::empty(windows.len());
        let prefix = keys::day_bucket_prefix(shop);
        let start = Key::DayBucket { shop, day: first }.encode();
        for (k, bytes) in ov.scan(&prefix, &start, longest as usize)? {
            let Some(day) = keys::day_of_bucket_key(&k) else { continue };
            if day > as_of_day {
                break;
            }
            let c: DayCounters = crate::state::codec::decode(&k, &bytes)?;
            accumulate(&mut v, as_of_day, day, &c, windows, dsr_days, Sign::Plus);
        }
        Ok(v)
    }

    const WINDOWS: [u32; 3] = [1, 7, 30];
    const DSR_DAYS: u32 = 180;

    #[derive(Clone, Debug)]
    enum Op {
        /// Sets `shop`'s bucket of day `base + day` to these counts (all zero: deleted).
        Set { shop: u8, day: i32, paid: i64, manual: i64, dsr: i64, rated: i64 },
        /// Moves the watermark day on by `days` and asks for `shop`'s values.
        Query { shop: u8, days: i32 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, -40i32..260, 0i64..3, 0i64..2, 0i64..6, 0i64..2).prop_map(
                |(shop, day, paid, manual, dsr, rated)| Op::Set { shop, day, paid, manual, dsr, rated }
            ),
            (0u8..3, prop_oneof![Just(0i32), 0i32..3, 0i32..40])
                .prop_map(|(shop, days)| Op::Query { shop, days }),
        ]
    }

    proptest! {
        /// Whatever the order of bucket changes and watermark moves — days before, inside
        /// and after the windows, small steps and long jumps — the remembered sums equal the
        /// sums read afresh from the buckets, and every remembered bucket the cache answers
        /// for equals the stored one.
        #[test]
        fn remembered_sums_equal_fresh_sums(ops in prop::collection::vec(op(), 1..120)) {
            let store = MemStore::new();
            let mut ov = Overlay::new(&store);
            let mut sums = RollingSums::new(&WINDOWS, DSR_DAYS, SumsLimits::default());
            let base = 20_000;
            let mut today = Day(base);
            for op in ops {
                // Every bucket the cache answers for is the stored one (absent ones too).
                for shop in ["s0", "s1", "s2"] {
                    for day in (base - 40)..(base + 260) {
                        if let Some(known) = sums.bucket(shop, Day(day)) {
                            let stored: Option<DayCounters> = ov.get(&Key::DayBucket { shop, day: Day(day) }).unwrap();
                            prop_assert_eq!(known.cloned(), stored, "{} day {}", shop, day - base);
                        }
                    }
                }
                match op {
                    Op::Set { shop, day, paid, manual, dsr, rated } => {
                        let shop = format!("s{shop}");
                        let key = Key::DayBucket { shop: &shop, day: Day(base + day) };
                        let old: DayCounters = ov.get(&key).unwrap().unwrap_or_default();
                        let new = DayCounters {
                            paid_orders: paid,
                            manual_refunds: manual,
                            dsr_sum: [dsr, dsr / 2, 1],
                            dsr_count: rated,
                            service_ratings: [rated, 0, paid, 0],
                            ..Default::default()
                        };
                        if new.is_zero() {
                            ov.delete(&key);
                        } else {
                            ov.put(&key, &new);
                        }
                        sums.bucket_changed(&shop, Day(base + day), &old, &new);
                    }
                    Op::Query { shop, days } => {
                        today = Day(today.0 + days);
                        sums.watermark_day(today);
                        let shop = format!("s{shop}");
                        let got = sums.values(&mut ov, &shop, today).unwrap();
                        let fresh = shop_values(&mut ov, &shop, today, &WINDOWS, DSR_DAYS).unwrap();
                        prop_assert_eq!(got, fresh);
                    }
                }
            }
        }
    }

    /// More buckets than [`MAX_BUCKETS_HELD`]: shops past [`MAX_BUCKETS`] are not taken in,
    /// a remembered shop whose new bucket goes over the most held is forgotten, and every
    /// answer stays equal to a fresh sum.
    #[test]
    fn remembered_buckets_stay_within_the_limit() {
        let store = MemStore::new();
        let mut ov = Overlay::new(&store);
        let mut sums = RollingSums::new(&WINDOWS, DSR_DAYS, SumsLimits::default());
        let one = DayCounters { paid_orders: 1, ..Default::default() };
        let today = Day(20_200);
        let shops: Vec<String> = (0..(MAX_BUCKETS / 150 + 50)).map(|i| format!("s{i}")).collect();
        for shop in &shops {
            for d in 0..150 {
                ov.put(&Key::DayBucket { shop, day: Day(today.0 - d) }, &one);
            }
        }
        for shop in &shops {
            let got = sums.values(&mut ov, shop, today).unwrap();
            assert_eq!(got.windows[2].paid_orders, 30);
            assert!(sums.held <= MAX_BUCKETS_HELD);
        }
        let remembered = sums.shops.len();
        assert!(remembered < shops.len() && sums.held > MAX_BUCKETS - 150, "{remembered} {}", sums.held);
        // New days for every shop: the remembered ones grow until the limit forgets some.
        for d in 1..=160 {
            let day = Day(today.0 + d);
            for shop in &shops {
                ov.put(&Key::DayBucket { shop, day }, &one);
                sums.bucket_changed(shop, day, &DayCounters::default(), &one);
                assert!(sums.held <= MAX_BUCKETS_HELD);
            }
        }
        assert!(sums.shops.len() < remembered);
        let next = Day(today.0 + 1);
        sums.watermark_day(next);
        for shop in &shops {
            let fresh = shop_values(&mut ov, shop, next, &WINDOWS, DSR_DAYS).unwrap();
            assert_eq!(sums.values(&mut ov, shop, next).unwrap(), fresh);
            assert!(sums.held <= MAX_BUCKETS_HELD);
        }
    }

    #[test]
    fn a_remembered_shop_follows_bucket_changes_and_day_steps() {
        let store = MemStore::new();
        let mut ov = Overlay::new(&store);
        let mut sums = RollingSums::new(&WINDOWS, DSR_DAYS, SumsLimits::default());
        let one = DayCounters { paid_orders: 1, ..Default::default() };
        for d in 0..100 {
            let day = Day(20_000 + d);
            ov.put(&Key::DayBucket { shop: "s", day }, &one);
        }
        let first = sums.values(&mut ov, "s", Day(20_099)).unwrap();
        assert_eq!(first.windows.iter().map(|w| w.paid_orders).collect::<Vec<_>>(), vec![1, 7, 30]);
        assert_eq!(first.campaign_paid, 30);
        // A bucket inside the 7-day window changes: applied as a difference.
        let two = DayCounters { paid_orders: 2, ..Default::default() };
        ov.put(&Key::DayBucket { shop: "s", day: Day(20_095) }, &two);
        sums.bucket_changed("s", Day(20_095), &one, &two);
        let second = sums.values(&mut ov, "s", Day(20_099)).unwrap();
        assert_eq!(second.windows.iter().map(|w| w.paid_orders).collect::<Vec<_>>(), vec![1, 8, 31]);
        // Two days later: days 20_098..20_099 leave the 1-day window, 20_093.. the 7-day one…
        let third = sums.values(&mut ov, "s", Day(20_101)).unwrap();
        assert_eq!(third, shop_values(&mut ov, "s", Day(20_101), &WINDOWS, DSR_DAYS).unwrap());
        assert_eq!(third.windows.iter().map(|w| w.paid_orders).collect::<Vec<_>>(), vec![0, 6, 29]);
    }
}
