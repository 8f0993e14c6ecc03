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
//!
//! Kafka mode needs more: a shard's store is a copy of its changelog, and an entry that only
//! disappears locally stays in the changelog for ever (and is restored again by every new
//! owner). There the compaction filter only drops `event_id` dedup entries (their changelog
//! records, seen packs, are expired by the shard), and a [`Sweeper`] deletes the other dead
//! entries through the commit, so their deletes reach the changelog as tombstones.

use super::derived::derived_keys;
use super::dsr::{DsrGroup, VALIDITY_MS};
use super::engine::RulesConfig;
use super::facts::{OrderFacts, RefundFacts};
use super::satisfaction::ServiceHistory;
use super::snapshot::window_lengths;
use crate::domain::time::DAY_MS;
use crate::domain::{Day, Timestamp};
use crate::state::codec;
use crate::state::keys::{self, Family};
use crate::state::overlay::Overlay;
use crate::state::{Expiry, KvStore, StateError};
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
    /// The compaction filter drops only dedup entries; a [`Sweeper`] deletes the rest.
    swept: bool,
}

const NONE: i64 = i64::MIN;

impl Retention {
    pub fn new(cfg: &RulesConfig) -> Retention {
        Retention { horizon_ms: horizon_ms(cfg), committed_watermark: AtomicI64::new(NONE), swept: false }
    }

    /// The policy of a store that a changelog mirrors: RocksDB compactions drop only dedup
    /// entries, every other dead entry is left to a [`Sweeper`].
    pub fn swept(cfg: &RulesConfig) -> Retention {
        Retention { swept: true, ..Retention::new(cfg) }
    }

    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
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

    /// Whether no rule can use this entry any more (every family, whatever the mode).
    pub fn is_dead(&self, key: &[u8], value: &[u8]) -> bool {
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
            Family::Meta
            | Family::Snapshot
            | Family::Timer
            | Family::AlertState
            | Family::BuyerOrders
            | Family::PendingSnapshot => false,
        }
    }
}

impl Expiry for Retention {
    fn expired(&self, key: &[u8], value: &[u8]) -> bool {
        if self.swept && keys::family(key) != Some(Family::Seen) {
            return false;
        }
        self.is_dead(key, value)
    }
}

/// The families a [`Sweeper`] deletes from (every family with an expiry rule except the dedup
/// entries, which go by seen pack).
const SWEPT: [Family; 6] = [
    Family::Order,
    Family::Refund,
    Family::DayBucket,
    Family::DayShop,
    Family::DsrGroup,
    Family::ServiceHistory,
];

/// Deletes dead entries through a commit's overlay, so that the deletes reach the changelog
/// (Kafka mode). A **pass** walks every swept family in key order, a budget of entries per
/// commit, deleting what [`Retention::is_dead`] says; it reads the store and checks the
/// overlay's current value, so an entry this commit rewrote is judged by its new value.
///
/// Passes are spaced out: one starts only once the cutoff has reached the earliest day with
/// activity in the store, and the next one once the cutoff has also moved on by an eighth of
/// the horizon (at least a day) and reached the earliest time at which an entry kept by the
/// last pass could be dead. A run or replay shorter than the horizon thus never sweeps; a long
/// run sweeps every few weeks of event time. Entries written after a
/// pass that are already dead (very late events) wait for the next pass. Deleting dead entries
/// never changes a result, so when passes run does not either.
#[derive(Debug)]
pub struct Sweeper {
    /// The pass in progress: index into [`SWEPT`] and the key to resume from.
    pass: Option<(usize, Vec<u8>)>,
    /// The cutoff the pass in progress started at.
    pass_cutoff: Timestamp,
    /// The earliest cutoff at which an entry kept by the pass in progress could be dead.
    earliest: Timestamp,
    /// The next pass starts once the cutoff reaches this (None: at the first chance).
    next_pass_at: Option<Timestamp>,
    step_ms: i64,
}

/// What one sweep step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub scanned: usize,
    pub deleted: usize,
}

impl Sweeper {
    pub fn new(retention: &Retention) -> Sweeper {
        Sweeper {
            pass: None,
            pass_cutoff: Timestamp(i64::MIN),
            earliest: Timestamp(i64::MAX),
            next_pass_at: None,
            step_ms: (retention.horizon_ms() / 8).max(DAY_MS),
        }
    }

    /// Looks at up to `budget` stored entries, deleting the dead ones in `ov`.
    pub fn step(
        &mut self,
        ov: &mut Overlay<'_>,
        store: &dyn KvStore,
        retention: &Retention,
        budget: usize,
    ) -> Result<Swept, StateError> {
        let mut done = Swept::default();
        let Some(cutoff) = retention.cutoff() else { return Ok(done) };
        if self.pass.is_none() {
            if self.next_pass_at.is_some_and(|at| cutoff < at) {
                return Ok(done);
            }
            // Nothing can be dead before the earliest day with activity in the store (the
            // day→shop index sorts by day: one seek). This keeps a run or replay shorter than
            // the horizon from walking its whole state for nothing.
            let first_day = store.scan(&[keys::family_tag(Family::DayShop)], &[], 1)?;
            match first_day.first().and_then(|(k, _)| keys::day_of_day_shop_key(k)) {
                Some(day) if cutoff >= day.start() => {}
                _ => return Ok(done),
            }
            self.pass = Some((0, Vec::new()));
            self.pass_cutoff = cutoff;
            self.earliest = Timestamp(i64::MAX);
        }
        let Some((mut family, mut from)) = self.pass.take() else { return Ok(done) };
        while family < SWEPT.len() && done.scanned < budget {
            let prefix = [keys::family_tag(SWEPT[family])];
            let rows = store.scan(&prefix, &from, budget - done.scanned)?;
            let Some((last, _)) = rows.last() else {
                family += 1;
                from.clear();
                continue;
            };
            from = last.clone();
            from.push(0);
            for (key, stored) in &rows {
                done.scanned += 1;
                // The overlay's value if this commit has one for the key, else the row just
                // scanned (reading it again would cost a point read per row).
                let value = match ov.cached_raw(key) {
                    Some(None) => continue,
                    Some(Some(current)) => current,
                    None => stored.as_slice(),
                };
                if retention.is_dead(key, value) {
                    // Its timers go with it (a decided order has none left but for a
                    // payment reported after the decision with a later deadline), so the
                    // timers stay a function of the entries (`derived`). The day→shop index,
                    // the other derived family, is swept by its own rule, the buckets' one.
                    for timer in derived_keys(key, value)?.into_iter().filter(|k| !is_day_shop(k)) {
                        ov.put_raw(timer, None);
                    }
                    ov.delete_stored_raw(key.clone());
                    done.deleted += 1;
                } else if let Some(at) = dead_from(key, value) {
                    self.earliest = self.earliest.min(at);
                }
            }
        }
        if family < SWEPT.len() {
            self.pass = Some((family, from));
        } else {
            let spaced = self.pass_cutoff.plus_ms(self.step_ms);
            self.next_pass_at = Some(spaced.max(self.earliest));
        }
        Ok(done)
    }
}

fn is_day_shop(key: &[u8]) -> bool {
    keys::family(key) == Some(Family::DayShop)
}

/// The earliest cutoff at which an entry with this value could be dead: a lower bound (an
/// entry's times only move forward when it is rewritten). None: not a swept entry.
fn dead_from(key: &[u8], value: &[u8]) -> Option<Timestamp> {
    let after = |t: Timestamp| t.plus_ms(1);
    match keys::family(key)? {
        Family::DayBucket => keys::day_of_bucket_key(key).map(|d| Day(d.0 + 1).start()),
        Family::DayShop => keys::day_of_day_shop_key(key).map(|d| Day(d.0 + 1).start()),
        Family::Order => codec::decode::<OrderFacts>(key, value).ok().map(|o| after(o.last_activity)),
        Family::Refund => codec::decode::<RefundFacts>(key, value).ok().map(|r| after(r.last_activity)),
        Family::DsrGroup => codec::decode::<DsrGroup>(key, value).ok().map(|g| {
            g.entries
                .iter()
                .map(|e| after(e.completed.plus_ms(VALIDITY_MS)))
                .max()
                .unwrap_or(Timestamp(i64::MIN))
        }),
        Family::ServiceHistory => codec::decode::<ServiceHistory>(key, value)
            .ok()
            .map(|h| h.entries.last().map_or(Timestamp(i64::MIN), |e| after(e.time))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClosedBy;
    use crate::rules::facts::{Fact, With};
    use crate::rules::origins::Pos;
    use crate::state::memory::MemStore;
    use crate::state::WriteBatch;

    fn bucket(shop: &str, day: i32) -> Vec<u8> {
        keys::Key::DayBucket { shop, day: Day(day) }.encode()
    }

    fn day_shop(day: i32, shop: &str) -> Vec<u8> {
        keys::Key::DayShop { day: Day(day), shop }.encode()
    }

    fn refund(shop: &str, id: &str, completed: bool, last: i64) -> (Vec<u8>, Vec<u8>) {
        let facts = RefundFacts {
            completed: completed.then(|| With {
                fact: Fact::new(Timestamp(last), "e", Pos::File { origin: 0, line: 1 }),
                value: (true, ClosedBy::Merchant),
            }),
            last_activity: Timestamp(last),
            ..RefundFacts::default()
        };
        (keys::Key::Refund { shop, refund: id }.encode(), codec::encode(&facts))
    }

    /// Commits `ov` into `store`, returning the deletes it carried.
    fn commit(store: &MemStore, mut ov: Overlay<'_>) -> Vec<Vec<u8>> {
        let mut batch = WriteBatch::new();
        ov.drain_into(&mut batch).unwrap();
        let deletes = batch.ops().iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()).collect();
        store.write(batch).unwrap();
        deletes
    }

    #[test]
    fn sweeps_dead_entries_in_budgeted_steps_and_spaces_passes() {
        let cfg = RulesConfig::default();
        let retention = Retention::swept(&cfg);
        let store = MemStore::default();
        let mut batch = WriteBatch::new();
        for day in 0..10 {
            batch.put(bucket("s1", day), vec![1]);
            batch.put(bucket("s2", day), vec![1]);
            batch.put(day_shop(day, "s1"), Vec::new());
        }
        let (old_done, v1) = refund("s1", "r-old-done", true, Day(2).start().0);
        let (old_open, v2) = refund("s1", "r-old-open", false, Day(2).start().0);
        let (new_done, v3) = refund("s1", "r-new-done", true, Day(8).start().0);
        batch.put(old_done.clone(), v1);
        batch.put(old_open.clone(), v2);
        batch.put(new_done.clone(), v3);
        store.write(batch).unwrap();

        // No committed watermark: nothing is dead yet. A cutoff before the earliest day with
        // activity (day 0) starts no pass at all.
        let mut sweeper = Sweeper::new(&retention);
        let mut ov = Overlay::new(&store);
        assert_eq!(sweeper.step(&mut ov, &store, &retention, 100).unwrap(), Swept::default());
        retention.set_watermark(Some(Day(-1).start().plus_ms(retention.horizon_ms())));
        assert_eq!(sweeper.step(&mut ov, &store, &retention, 100).unwrap(), Swept::default());
        drop(ov);

        // Cutoff at the start of day 5: days 0..5 and the completed old refund are dead.
        retention.set_watermark(Some(Day(5).start().plus_ms(retention.horizon_ms())));
        let mut deleted = Vec::new();
        let mut steps = 0;
        loop {
            let mut ov = Overlay::new(&store);
            // This commit rewrote one old bucket: judged by its current value (still dead by
            // its day) — and one dead refund was reopened by new activity: kept.
            if steps == 0 {
                let (_, reopened) = refund("s1", "r-old-done", true, Day(9).start().0);
                ov.put_raw(old_done.clone(), Some(reopened));
            }
            let done = sweeper.step(&mut ov, &store, &retention, 7).unwrap();
            assert!(done.scanned <= 7);
            deleted.extend(commit(&store, ov));
            steps += 1;
            if done.scanned == 0 {
                break;
            }
        }
        assert!(steps > 3, "a budget of 7 needs several steps for 33 entries");
        let mut expected: Vec<Vec<u8>> =
            (0..5).flat_map(|d| [bucket("s1", d), bucket("s2", d), day_shop(d, "s1")]).collect();
        expected.sort();
        deleted.sort();
        assert_eq!(deleted, expected);
        assert!(store.get(&old_open).unwrap().is_some(), "open refunds are kept");
        assert!(store.get(&old_done).unwrap().is_some(), "rewritten with new activity: kept");
        assert!(store.get(&new_done).unwrap().is_some());
        assert!(store.get(&bucket("s2", 5)).unwrap().is_some());

        // The next pass waits until the cutoff has moved on (an eighth of the horizon) and
        // something kept could be dead; then it deletes what became dead.
        retention.set_watermark(Some(Day(6).start().plus_ms(retention.horizon_ms())));
        let mut ov = Overlay::new(&store);
        assert_eq!(sweeper.step(&mut ov, &store, &retention, 100).unwrap(), Swept::default());
        drop(ov);
        retention.set_watermark(Some(Day(5 + 40).start().plus_ms(retention.horizon_ms())));
        let mut ov = Overlay::new(&store);
        let done = sweeper.step(&mut ov, &store, &retention, 100).unwrap();
        assert_eq!(done.deleted, 15 + 2, "days 5..10 of two shops and the index, the completed refunds");
        assert!(commit(&store, ov).contains(&new_done));
    }

    #[test]
    fn a_swept_order_takes_its_leftover_timer_with_it() {
        use crate::domain::{DeliveryPromise, Fulfillment};
        use crate::rules::facts::Payment;
        let cfg = RulesConfig::default();
        let retention = Retention::swept(&cfg);
        let store = MemStore::default();
        // Decided long ago, but a payment reported after the decision moved its ship
        // deadline far ahead: its ship-deadline timer is still set.
        let deadline = Day(400).start();
        let facts = OrderFacts {
            paid: Some(With {
                fact: Fact::new(Day(1).start(), "e", Pos::File { origin: 0, line: 1 }),
                value: Payment {
                    buyer_id: "b".into(),
                    amount_fen: 100,
                    ship_deadline: deadline,
                    fulfillment: Fulfillment::Merchant,
                    delivery_promise: DeliveryPromise::None,
                    promised_delivery_by: None,
                },
            }),
            late_decided: true,
            last_activity: Day(2).start(),
            ..OrderFacts::default()
        };
        let order = keys::Key::Order { shop: "s", order: "o" }.encode();
        let timer =
            keys::Key::Timer { at: deadline, kind: keys::TimerKind::ShipDeadline, shop: "s", id: "o" }
                .encode();
        let mut batch = WriteBatch::new();
        batch.put(order.clone(), codec::encode(&facts));
        batch.put(timer.clone(), Vec::new());
        batch.put(day_shop(1, "s"), Vec::new());
        store.write(batch).unwrap();
        retention.set_watermark(Some(Day(50).start().plus_ms(retention.horizon_ms())));
        let mut ov = Overlay::new(&store);
        let done = Sweeper::new(&retention).step(&mut ov, &store, &retention, 100).unwrap();
        let mut deleted = commit(&store, ov);
        deleted.sort();
        let mut expected = vec![order, timer, day_shop(1, "s")];
        expected.sort();
        assert_eq!(deleted, expected);
        assert_eq!(done.deleted, 2, "the order and the index entry; the timer went with the order");
    }

    #[test]
    fn the_compaction_filter_of_a_swept_store_only_drops_dedup_entries() {
        let cfg = RulesConfig::default();
        let (file, swept) = (Retention::new(&cfg), Retention::swept(&cfg));
        for r in [&file, &swept] {
            r.set_watermark(Some(Day(100).start().plus_ms(r.horizon_ms())));
        }
        let seen = keys::Key::Seen("e1").encode();
        let old = codec::encode(&Day(1).start());
        assert!(file.expired(&seen, &old) && swept.expired(&seen, &old));
        assert!(file.expired(&bucket("s", 1), &[1]));
        assert!(!swept.expired(&bucket("s", 1), &[1]), "left to the sweeper");
        assert!(swept.is_dead(&bucket("s", 1), &[1]));
    }
}
