//! Index keys that are a function of other state: the event-time timers and the day→shop
//! index.
//!
//! The engine keeps them in step with the entries they index (an order's ship-deadline and
//! promise timers with its facts, a buyer's group-decision timer with the buyer's pending
//! orders, a day→shop entry with each non-zero day bucket). Kafka mode therefore leaves them
//! out of the changelog — on the benchmark they were 40 % of its records, each timer written
//! once and deleted once — and a shard's restore rebuilds them from the entries it restores
//! ([`add_derived`]). `tests/derived.rs` checks, commit after commit, that the engine's store
//! holds exactly the derived keys of its entries, so a restored shard holds what its previous
//! owner held.

use super::compensation::BuyerOrders;
use super::facts::OrderFacts;
use crate::state::codec;
use crate::state::keys::{self, Family, Key, TimerKind};
use crate::state::{KvStore, StateError, WriteBatch};
use rustc_hash::FxHashMap;

/// Whether `key` is a derived key (never in the changelog).
pub fn is_derived(key: &[u8]) -> bool {
    matches!(keys::family(key), Some(Family::Timer | Family::DayShop))
}

/// Whether entries of `key`'s family have derived keys.
fn has_derived(key: &[u8]) -> bool {
    matches!(keys::family(key), Some(Family::Order | Family::BuyerOrders | Family::DayBucket))
}

/// The derived keys the engine keeps for the entry `key` = `value`.
pub fn derived_keys(key: &[u8], value: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
    let mut out = Vec::new();
    match keys::family(key) {
        Some(Family::Order) => {
            let Some((shop, order)) = keys::order_of_key(key) else { return Ok(out) };
            let o: OrderFacts = codec::decode(key, value)?;
            if let Some(p) = &o.paid {
                if !o.deadline_passed {
                    let at = p.value.ship_deadline;
                    out.push(Key::Timer { at, kind: TimerKind::ShipDeadline, shop, id: order }.encode());
                }
                if let (Some(at), false) = (p.value.promised_delivery_by, o.promise_decided) {
                    out.push(Key::Timer { at, kind: TimerKind::PromiseDeadline, shop, id: order }.encode());
                }
            }
        }
        Some(Family::BuyerOrders) => {
            let Some((shop, buyer)) = keys::buyer_orders_of_key(key) else { return Ok(out) };
            let bo: BuyerOrders = codec::decode(key, value)?;
            if let Some(at) = bo.timer_at {
                out.push(Key::Timer { at, kind: TimerKind::GroupDecision, shop, id: buyer }.encode());
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
}
