//! Index keys that are a function of other state: the event-time timers and the day→shop
//! index.
//!
//! The engine keeps them in step with the entries they index (an order's ship-deadline and
//! promise timers with its facts, a buyer's group-decision timer with the buyer's pending
//! orders, a day→shop entry with each non-zero day bucket). Kafka mode therefore leaves them
//! out of the changelog — on the benchmark they were 40 % of its records, each timer written
//! once and deleted once — and a shard's restore rebuilds them from the entries it restores
//! ([`add_derived`] batch by batch, [`rebuild_derived`] in one scan onto an empty store).
//! `tests/derived.rs` checks, commit after commit, that the engine's store holds exactly the
//! derived keys of its entries, so a restored shard holds what its previous owner held.

use super::compensation::BuyerOrders;
use super::facts::OrderFacts;
use crate::domain::Timestamp;
use crate::state::codec;
use crate::state::keys::{self, Family, Key, TimerKind};
use crate::state::{KvStore, StateError, WriteBatch};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeSet;

/// Whether `key` is a derived key (never in the changelog).
pub fn is_derived(key: &[u8]) -> bool {
    matches!(keys::family(key), Some(Family::Timer | Family::DayShop))
}

/// Whether entries of `key`'s family have derived keys.
fn has_derived(key: &[u8]) -> bool {
    matches!(keys::family(key), Some(Family::Order | Family::BuyerOrders | Family::DayBucket))
}

/// An entry's timers (time and kind; the key adds the entry's shop and id), at most two.
pub type Timers = [Option<(Timestamp, TimerKind)>; 2];

/// An order's timers: its ship deadline while it is paid and the deadline has not passed,
/// its promised delivery time while the promise is undecided.
pub fn order_timers(o: &OrderFacts) -> Timers {
    let Some(p) = &o.paid else { return [None, None] };
    [
        (!o.deadline_passed).then_some((p.value.ship_deadline, TimerKind::ShipDeadline)),
        p.value
            .promised_delivery_by
            .filter(|_| !o.promise_decided)
            .map(|at| (at, TimerKind::PromiseDeadline)),
    ]
}

/// A buyer's pending orders' timer: the first group's decision time.
pub fn buyer_timers(bo: &BuyerOrders) -> Timers {
    [bo.timer_at.map(|at| (at, TimerKind::GroupDecision)), None]
}

/// `timers` without `fired`: the timers an entry still holds in the store once `fired` has
/// fired (its key is already deleted, so moving the entry's timers must not delete it again).
pub fn without(mut timers: Timers, fired: (Timestamp, TimerKind)) -> Timers {
    for t in &mut timers {
        if *t == Some(fired) {
            *t = None;
        }
    }
    timers
}

/// The derived keys the engine keeps for the entry `key` = `value`: keys of the timers above,
/// and a day bucket's day→shop index entry.
pub fn derived_keys(key: &[u8], value: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
    let mut out = Vec::new();
    match keys::family(key) {
        Some(Family::Order) => {
            let Some((shop, order)) = keys::order_of_key(key) else { return Ok(out) };
            let o: OrderFacts = codec::decode(key, value)?;
            for (at, kind) in order_timers(&o).into_iter().flatten() {
                out.push(Key::Timer { at, kind, shop, id: order }.encode());
            }
        }
        Some(Family::BuyerOrders) => {
            let Some((shop, buyer)) = keys::buyer_orders_of_key(key) else { return Ok(out) };
            let bo: BuyerOrders = codec::decode(key, value)?;
            for (at, kind) in buyer_timers(&bo).into_iter().flatten() {
                out.push(Key::Timer { at, kind, shop, id: buyer }.encode());
            }
        }
        Some(Family::DayBucket) => {
            if let Some((shop, day)) = keys::shop_day_of_bucket_key(key) {
                out.push(Key::DayShop { day, shop }.encode());
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Keys in key order.
pub type KeySet = BTreeSet<Vec<u8>>;

/// The derived keys among `rows`, and the derived keys their entries have, each in key order:
/// equal in any store the engine or a restore keeps. For checks (tests); the engine does not
/// need it.
pub fn held_and_expected<'a>(
    rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(KeySet, KeySet), StateError> {
    let (mut held, mut expected) = (BTreeSet::new(), BTreeSet::new());
    for (k, v) in rows {
        if is_derived(k) {
            held.insert(k.to_vec());
        } else {
            expected.extend(derived_keys(k, v)?);
        }
    }
    Ok((held, expected))
}

/// Completes `batch` — entries restored from a changelog, about to be written to `store` —
/// with the changes of their derived keys: those of each entry's previous value (in the
/// batch or else in the store) that its new value no longer has are deleted, those it did not
/// have put (a bucket rewritten keeps its index entry: nothing to write). Changelog records of
/// derived keys (none are written) are left as they are.
pub fn add_derived(store: &dyn KvStore, batch: &mut WriteBatch) -> Result<(), StateError> {
    // The latest value each source entry has in the batch so far.
    let mut latest: FxHashMap<&[u8], Option<&[u8]>> = FxHashMap::default();
    let mut changes: Vec<(Vec<u8>, bool)> = Vec::new();
    for (key, value) in batch.ops() {
        if !has_derived(key) {
            continue;
        }
        let before = match latest.get(key.as_slice()) {
            Some(v) => v.map(|v| derived_keys(key, v)).transpose()?.unwrap_or_default(),
            None => match store.get(key)? {
                Some(v) => derived_keys(key, &v)?,
                None => Vec::new(),
            },
        };
        let after = value.as_deref().map(|v| derived_keys(key, v)).transpose()?.unwrap_or_default();
        changes.extend(before.iter().filter(|k| !after.contains(k)).map(|k| (k.clone(), false)));
        changes.extend(after.into_iter().filter(|k| !before.contains(k)).map(|k| (k, true)));
        latest.insert(key, value.as_deref());
    }
    for (k, put) in changes {
        if put {
            batch.put(k, Vec::new());
        } else {
            batch.delete(k);
        }
    }
    Ok(())
}

/// Source entries or derived keys [`rebuild_derived`] reads at a time, and derived-key
/// changes it writes per batch.
const REBUILD_CHUNK: usize = 10_000;

/// Makes the store's derived keys exactly those of its entries: puts the missing ones and
/// deletes any the entries do not have, in batches of [`REBUILD_CHUNK`]; returns how many
/// it put. One scan of the families with derived keys, instead of a read of each entry's
/// previous value per restored record ([`add_derived`]): what a restore onto an empty store
/// uses. Memory holds the store's derived keys at the start (none on an empty store).
pub fn rebuild_derived(store: &dyn KvStore) -> Result<u64, StateError> {
    let mut present: FxHashSet<Vec<u8>> = FxHashSet::default();
    for family in [Family::Timer, Family::DayShop] {
        for_each_entry(store, family, |k, _| {
            present.insert(k.to_vec());
            Ok(())
        })?;
    }
    let mut batch = WriteBatch::new();
    let mut put = 0u64;
    for family in [Family::Order, Family::BuyerOrders, Family::DayBucket] {
        for_each_entry(store, family, |k, v| {
            for d in derived_keys(k, v)? {
                if !present.remove(&d) {
                    batch.put(d, Vec::new());
                    put += 1;
                }
            }
            if batch.len() >= REBUILD_CHUNK {
                store.write(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
    }
    for k in present {
        batch.delete(k);
        if batch.len() >= REBUILD_CHUNK {
            store.write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        store.write(batch)?;
    }
    Ok(put)
}

/// Calls `f` on every entry of `family`, in key order, reading [`REBUILD_CHUNK`] at a time.
fn for_each_entry(
    store: &dyn KvStore,
    family: Family,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let prefix = [keys::family_tag(family)];
    let mut start = prefix.to_vec();
    loop {
        let rows = store.scan(&prefix, &start, REBUILD_CHUNK)?;
        for (k, v) in &rows {
            f(k, v)?;
        }
        match rows.last() {
            Some((k, _)) if rows.len() == REBUILD_CHUNK => {
                start = k.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Day, DeliveryPromise, Fulfillment, Timestamp};
    use crate::rules::compensation::PendingOrder;
    use crate::rules::facts::{Fact, Payment, With};
    use crate::rules::origins::Pos;
    use crate::state::memory::MemStore;

    fn order(deadline: i64, promise: Option<i64>, deadline_passed: bool, promise_decided: bool) -> Vec<u8> {
        let o = OrderFacts {
            paid: Some(With {
                fact: Fact::new(Timestamp(1), "e1", Pos::File { origin: 0, line: 1 }),
                value: Payment {
                    buyer_id: "b1".into(),
                    amount_fen: 100,
                    ship_deadline: Timestamp(deadline),
                    fulfillment: Fulfillment::Merchant,
                    delivery_promise: if promise.is_some() {
                        DeliveryPromise::NextDay
                    } else {
                        DeliveryPromise::None
                    },
                    promised_delivery_by: promise.map(Timestamp),
                },
            }),
            deadline_passed,
            promise_decided,
            ..OrderFacts::default()
        };
        codec::encode(&o)
    }

    fn timer(at: i64, kind: TimerKind, id: &str) -> Vec<u8> {
        Key::Timer { at: Timestamp(at), kind, shop: "s", id }.encode()
    }

    #[test]
    fn orders_buyers_and_buckets_derive_their_index_keys() {
        let ok = Key::Order { shop: "s", order: "o1" }.encode();
        assert_eq!(
            derived_keys(&ok, &order(10, Some(20), false, false)).unwrap(),
            vec![timer(10, TimerKind::ShipDeadline, "o1"), timer(20, TimerKind::PromiseDeadline, "o1")]
        );
        assert_eq!(derived_keys(&ok, &order(10, Some(20), true, true)).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(derived_keys(&ok, &codec::encode(&OrderFacts::default())).unwrap(), Vec::<Vec<u8>>::new());
        let bk = Key::BuyerOrders { shop: "s", buyer: "b1" }.encode();
        let bo = BuyerOrders {
            pending: vec![PendingOrder {
                paid: Timestamp(1),
                order_id: "o1".into(),
                deadline: Timestamp(10),
            }],
            timer_at: Some(Timestamp(30)),
        };
        assert_eq!(
            derived_keys(&bk, &codec::encode(&bo)).unwrap(),
            vec![timer(30, TimerKind::GroupDecision, "b1")]
        );
        let dk = Key::DayBucket { shop: "s", day: Day(3) }.encode();
        assert_eq!(
            derived_keys(&dk, b"anything").unwrap(),
            vec![Key::DayShop { day: Day(3), shop: "s" }.encode()]
        );
        assert!(is_derived(&timer(1, TimerKind::ShipDeadline, "o")) && !is_derived(&ok));
    }

    #[test]
    fn restored_changes_move_the_derived_keys_from_store_and_batch_values() {
        let store = MemStore::new();
        let ok = Key::Order { shop: "s", order: "o1" }.encode();
        let dk = Key::DayBucket { shop: "s", day: Day(3) }.encode();
        let mut first = WriteBatch::new();
        first.put(ok.clone(), order(10, Some(20), false, false));
        first.put(dk.clone(), vec![1]);
        add_derived(&store, &mut first).unwrap();
        store.write(first).unwrap();
        let all = |s: &MemStore| -> Vec<Vec<u8>> {
            s.scan(&[], &[], usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| is_derived(k))
                .collect()
        };
        let mut expected = vec![
            timer(10, TimerKind::ShipDeadline, "o1"),
            timer(20, TimerKind::PromiseDeadline, "o1"),
            Key::DayShop { day: Day(3), shop: "s" }.encode(),
        ];
        expected.sort();
        assert_eq!(all(&store), expected);

        // The deadline passes (its timer goes), then within the same batch a new payment
        // moves the promise; the bucket is deleted.
        let mut second = WriteBatch::new();
        second.put(ok.clone(), order(10, Some(20), true, false));
        second.put(ok.clone(), order(10, Some(25), true, false));
        second.delete(dk);
        add_derived(&store, &mut second).unwrap();
        store.write(second).unwrap();
        assert_eq!(all(&store), vec![timer(25, TimerKind::PromiseDeadline, "o1")]);

        // A rewritten entry whose derived keys stay the same adds nothing to the batch.
        let mut unchanged = WriteBatch::new();
        unchanged.put(ok.clone(), order(10, Some(25), true, false));
        add_derived(&store, &mut unchanged).unwrap();
        assert_eq!(unchanged.len(), 1);
        store.write(unchanged).unwrap();

        let mut third = WriteBatch::new();
        third.delete(ok);
        add_derived(&store, &mut third).unwrap();
        store.write(third).unwrap();
        assert_eq!(all(&store), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn a_rebuild_puts_the_missing_derived_keys_and_deletes_the_stale_ones() {
        let store = MemStore::new();
        let mut batch = WriteBatch::new();
        // More entries than one scan chunk, so the scan pages.
        for i in 0..(REBUILD_CHUNK + 5) {
            let id = format!("o{i:06}");
            batch
                .put(Key::Order { shop: "s", order: &id }.encode(), order(10 + i as i64, None, false, false));
        }
        batch.put(Key::DayBucket { shop: "s", day: Day(3) }.encode(), vec![1]);
        // Stale: a timer of an order that is not stored, and one of an order whose deadline passed.
        batch.put(timer(5, TimerKind::ShipDeadline, "gone"), Vec::new());
        batch.put(Key::Order { shop: "s", order: "passed" }.encode(), order(7, None, true, false));
        batch.put(timer(7, TimerKind::ShipDeadline, "passed"), Vec::new());
        // Already right: kept, not counted as put.
        batch.put(timer(10, TimerKind::ShipDeadline, "o000000"), Vec::new());
        store.write(batch).unwrap();

        let put = rebuild_derived(&store).unwrap();
        assert_eq!(put, REBUILD_CHUNK as u64 + 4 + 1, "every order but one, and the index entry");

        let rows = store.scan(&[], &[], usize::MAX).unwrap();
        let (derived, expected) = held_and_expected(rows.iter().map(|(k, v)| (&k[..], &v[..]))).unwrap();
        assert_eq!(derived, expected);
        assert!(!derived.contains(&timer(5, TimerKind::ShipDeadline, "gone")));
        assert!(!derived.contains(&timer(7, TimerKind::ShipDeadline, "passed")));
        assert_eq!(rebuild_derived(&store).unwrap(), 0, "a second rebuild has nothing to do");
    }

    #[test]
    fn without_drops_only_the_fired_timer() {
        let ship = (Timestamp(5), TimerKind::ShipDeadline);
        let promise = (Timestamp(5), TimerKind::PromiseDeadline);
        assert_eq!(without([Some(ship), Some(promise)], ship), [None, Some(promise)]);
        assert_eq!(without([Some(ship), Some(promise)], promise), [Some(ship), None]);
        let other = (Timestamp(6), TimerKind::ShipDeadline);
        assert_eq!(without([Some(ship), None], other), [Some(ship), None]);
    }
}
