//! The live view behind `/readyz` and `/v1/shops/{shop_id}`: readiness and each shop's
//! committed snapshot, with how fresh it is.
//!
//! [`LiveView`] is what the HTTP server asks; runtimes implement it. [`StateView`] is the
//! implementation over a [`KvStore`] that file mode uses now (and the Kafka runtime can
//! reuse per partition set): it reads the last snapshot values the rules stored for a shop
//! (`Key::Snapshot`) straight from the committed state — RocksDB is safe to read while the
//! pipeline writes — and the freshness the pipeline publishes after every commit.

use crate::domain::Timestamp;
use crate::output::Snapshot;
use crate::rules::snapshot::LastSnapshot;
use crate::state::keys::Key;
use crate::state::{codec, KvStore, StateError};
use crate::telemetry::progress::Position;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// How fresh the served state is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The committed watermark (None before any event).
    pub watermark: Option<Timestamp>,
    /// The committed input position of every source.
    pub positions: Vec<Position>,
}

/// The answer to a shop lookup.
#[derive(Debug)]
pub enum Lookup {
    /// State is still being opened or restored: ask again later.
    Restoring,
    /// No valid event of this shop has been committed.
    NotFound,
    /// The shop's current snapshot and the freshness it reflects.
    Found { snapshot: Snapshot, freshness: Freshness },
    /// Kafka mode: the shop belongs to a shard another instance owns.
    Elsewhere { shard: u32 },
    /// Reading state failed.
    Failed(StateError),
}

/// What the HTTP server serves; implemented by each runtime.
pub trait LiveView: Send + Sync {
    /// True once state is restored and the pipeline is processing (and not stopping).
    fn ready(&self) -> bool;
    /// The current committed snapshot of `shop_id`.
    fn shop(&self, shop_id: &str) -> Lookup;
}

/// A [`LiveView`] over a state store: `Restoring` until [`StateView::attach`], then the
/// committed snapshot of each shop.
pub struct StateView {
    store: OnceLock<Arc<dyn KvStore>>,
    window_days: Vec<u32>,
    freshness: Mutex<Freshness>,
    ready: AtomicBool,
}

impl StateView {
    /// A view whose snapshots show the windows `window_days` (the rules' `windows`, in order).
    pub fn new(window_days: Vec<u32>) -> StateView {
        StateView {
            store: OnceLock::new(),
            window_days,
            freshness: Mutex::new(Freshness::default()),
            ready: AtomicBool::new(false),
        }
    }

    /// State is open and recovered: lookups read `store` from now on.
    pub fn attach(&self, store: Arc<dyn KvStore>) {
        let _ = self.store.set(store);
    }

    /// Publishes what the last commit made durable.
    pub fn committed(&self, freshness: Freshness) {
        *self.freshness.lock().unwrap_or_else(|e| e.into_inner()) = freshness;
    }

    /// Marks the pipeline ready (processing) or not (starting, stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The freshness last published.
    pub fn freshness(&self) -> Freshness {
        self.freshness.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView")
            .field("attached", &self.store.get().is_some())
            .field("window_days", &self.window_days)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveView for StateView {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.store.get().is_some()
    }

    fn shop(&self, shop_id: &str) -> Lookup {
        let Some(store) = self.store.get() else { return Lookup::Restoring };
        // Freshness first: the snapshot read after it is at least as new.
        let freshness = self.freshness();
        let key = Key::Snapshot { shop: shop_id }.encode();
        let last: LastSnapshot =
            match store.get(&key).and_then(|v| v.map(|b| codec::decode(&key, &b)).transpose()) {
                Ok(Some(last)) => last,
                Ok(None) => return Lookup::NotFound,
                Err(e) => return Lookup::Failed(e),
            };
        // The stored values are the shop's state at the committed watermark (the rules
        // refresh every shop whose windows change), so that is their `as_of`.
        let as_of = freshness.watermark.unwrap_or(Timestamp(0));
        let snapshot = Snapshot {
            shop_id: shop_id.to_owned(),
            as_of,
            version: last.version,
            window_days: self.window_days.clone(),
            values: last.values,
        };
        Lookup::Found { snapshot, freshness }
    }
}

/// Which shard holds a shop (None: unknown, e.g. co-partitioned inputs; every owned shard is
/// asked).
pub type ShardOf = Box<dyn Fn(&str) -> Option<u32> + Send + Sync>;

/// The [`LiveView`] of Kafka mode: one [`StateView`] per owned shard, a shop looked up in its
/// shard's store.
pub struct ShardsView {
    window_days: Vec<u32>,
    shard_of: ShardOf,
    shards: RwLock<BTreeMap<u32, Arc<StateView>>>,
    ready: AtomicBool,
}

impl ShardsView {
    pub fn new(window_days: Vec<u32>, shard_of: ShardOf) -> ShardsView {
        ShardsView {
            window_days,
            shard_of,
            shards: RwLock::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// The shards this instance now owns, with their (restored) stores.
    pub fn set_shards(&self, stores: BTreeMap<u32, Arc<dyn KvStore>>) {
        let views = stores
            .into_iter()
            .map(|(id, store)| {
                let view = StateView::new(self.window_days.clone());
                view.attach(store);
                view.set_ready(true);
                (id, Arc::new(view))
            })
            .collect();
        *self.shards.write().unwrap_or_else(|e| e.into_inner()) = views;
    }

    /// Publishes what shard `id`'s last commit made durable.
    pub fn committed(&self, id: u32, freshness: Freshness) {
        if let Some(v) = self.shards.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            v.committed(freshness);
        }
    }

    /// Ready: owns shards, all restored, processing.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ShardsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shards: Vec<u32> =
            self.shards.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        f.debug_struct("ShardsView")
            .field("shards", &shards)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveView for ShardsView {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn shop(&self, shop_id: &str) -> Lookup {
        if !self.ready() {
            return Lookup::Restoring;
        }
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner()).clone();
        match (self.shard_of)(shop_id) {
            Some(id) => match shards.get(&id) {
                Some(view) => view.shop(shop_id),
                None => Lookup::Elsewhere { shard: id },
            },
            None => {
                for view in shards.values() {
                    match view.shop(shop_id) {
                        Lookup::NotFound => {}
                        other => return other,
                    }
                }
                Lookup::NotFound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::snapshot::ShopValues;
    use crate::state::memory::MemStore;
    use crate::state::WriteBatch;

    #[test]
    fn restoring_then_found_or_not_found() {
        let view = StateView::new(vec![1, 7]);
        assert!(matches!(view.shop("s1"), Lookup::Restoring));
        assert!(!view.ready());

        let store = Arc::new(MemStore::default());
        let values = ShopValues { windows: vec![Default::default(); 2], dsr_count: 1, ..Default::default() };
        let mut b = WriteBatch::new();
        b.put(Key::Snapshot { shop: "s1" }.encode(), codec::encode(&LastSnapshot { version: 3, values }));
        store.write(b).unwrap();
        view.attach(store);
        assert!(!view.ready(), "attached but not processing yet");
        view.set_ready(true);
        assert!(view.ready());
        let wm = Timestamp::parse_rfc3339("2024-05-31T18:00:00+08:00").unwrap();
        let pos = Position { source: "in.jsonl".into(), offset: 10, end: Some(10) };
        view.committed(Freshness { watermark: Some(wm), positions: vec![pos.clone()] });

        match view.shop("s1") {
            Lookup::Found { snapshot, freshness } => {
                assert_eq!(snapshot.version, 3);
                assert_eq!(snapshot.as_of, wm);
                assert_eq!(snapshot.window_days, vec![1, 7]);
                assert_eq!(freshness.positions, vec![pos]);
                let json = crate::output::Output::Snapshot(snapshot).to_json();
                assert!(
                    json.starts_with(r#"{"shop_id":"s1","as_of":"2024-05-31T18:00:00+08:00","version":3"#)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(view.shop("nope"), Lookup::NotFound));
    }

    #[test]
    fn shards_view_routes_a_shop_to_its_shard() {
        let store = Arc::new(MemStore::default());
        let values = ShopValues { windows: vec![Default::default()], ..Default::default() };
        let mut b = WriteBatch::new();
        b.put(Key::Snapshot { shop: "a" }.encode(), codec::encode(&LastSnapshot { version: 1, values }));
        store.write(b).unwrap();
        let view = ShardsView::new(vec![1], Box::new(|shop| Some(if shop == "b" { 1 } else { 0 })));
        assert!(matches!(view.shop("a"), Lookup::Restoring));
        view.set_shards(BTreeMap::from([(0, store as Arc<dyn KvStore>)]));
        view.set_ready(true);
        assert!(matches!(view.shop("a"), Lookup::Found { .. }));
        assert!(matches!(view.shop("b"), Lookup::Elsewhere { shard: 1 }));
        assert!(matches!(view.shop("c"), Lookup::NotFound));
    }
}
