//! The rule engine: applies events to state and, at commit time, advances the watermark,
//! fires event-time timers and emits the snapshots whose values changed.
//!
//! The engine keeps only per-commit bookkeeping in memory (which shops changed, the day
//! buckets being updated, the watermark and counters, which are saved into the same overlay
//! as the state they describe). Everything else lives in the [`Overlay`], so a crash between
//! commits loses nothing the next run cannot recompute from the last committed input
//! position.

use super::alerts::{self, AlertState};
use super::buckets::Buckets;
use super::compensation::{self, BuyerOrders, CompensationRules, PendingOrder};
use super::derived::{self, Timers};
use super::dsr::{self, DsrGroup};
use super::facts::{keep_earliest, Fact, OrderFacts, Payment, RefundFacts};
use super::origins::Origins;
use super::retention;
use super::rolling::{RollingSums, SumsLimits};
use super::satisfaction::{SatisfactionRules, ServiceEntry, ServiceHistory};
use super::snapshot;
use super::watermark::Watermark;
use crate::config::AlertRule;
use crate::domain::*;
use crate::output::{Output, SourcePos};
use crate::state::keys::{self, Key, MetaKey, TimerKind};
use crate::state::overlay::Overlay;
use crate::state::StateError;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The parameters the rules need (built from the typed configuration).
#[derive(Clone, Debug, PartialEq)]
pub struct RulesConfig {
    /// Window lengths in days, in output order.
    pub windows: Vec<u32>,
    /// The DSR window in days.
    pub dsr_days: u32,
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    pub satisfaction: SatisfactionRules,
    pub compensation: CompensationRules,
    /// Alert rules, evaluated on every new snapshot.
    pub alerts: Vec<AlertRule>,
    /// How many shops' window sums and day buckets the engine remembers between snapshots.
    pub sums: SumsLimits,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            windows: vec![1, 7, 30],
            dsr_days: 180,
            out_of_orderness_ms: 5 * 60_000,
            allowed_lateness_ms: 86_400_000,
            satisfaction: SatisfactionRules::default(),
            compensation: CompensationRules::default(),
            alerts: Vec::new(),
            sums: SumsLimits::default(),
        }
    }
}

/// Running totals, persisted with the state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events applied to state.
    pub applied: u64,
    /// Records with an `event_id` seen before (counted and ignored, SPEC §9).
    pub duplicates: u64,
    /// Events behind the watermark when they arrived (SPEC §3), applied anyway.
    pub late_events: u64,
    /// Of those, events later than the allowed lateness.
    pub beyond_allowed_lateness: u64,
    /// Records sent to the dead-letter output.
    pub dead_letters: u64,
    /// Snapshots emitted.
    pub snapshots: u64,
    /// Event-time timers fired.
    pub timers_fired: u64,
    /// Compensation records emitted.
    pub compensations: u64,
    /// Alert records emitted.
    pub alerts: u64,
}

impl Counters {
    /// Adds another engine's totals (several shards' engines, one report).
    pub fn add(&mut self, c: &Counters) {
        self.applied += c.applied;
        self.duplicates += c.duplicates;
        self.late_events += c.late_events;
        self.beyond_allowed_lateness += c.beyond_allowed_lateness;
        self.dead_letters += c.dead_letters;
        self.snapshots += c.snapshots;
        self.timers_fired += c.timers_fired;
        self.compensations += c.compensations;
        self.alerts += c.alerts;
    }
}

/// Whether a flush refreshes the snapshots of the shops that changed, or defers them to a
/// later flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    Refresh,
    Defer,
}

/// What [`Engine::apply`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied { late: bool },
    Duplicate,
}

/// Engine-wide state saved at every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EngineMeta {
    watermark: Watermark,
    counters: Counters,
    /// The range of days that hold any shop data (bounds index scans on day changes).
    data_days: Option<(Day, Day)>,
    /// The topics and files facts were read from (facts refer to them by number). Saved
    /// with the rest at every flush, so in the same commit as the first fact that uses a new
    /// one.
    origins: Origins,
}

/// The rules over one partition set's state.
pub struct Engine {
    cfg: RulesConfig,
    meta: EngineMeta,
    /// Watermark as of the last flush (snapshots were made at it).
    flushed_at: Option<Timestamp>,
    /// Shops to re-evaluate at the next snapshot refresh; `true`: marked in the state too
    /// ([`Key::PendingSnapshot`]), because a flush deferred their snapshots. Hashed (every
    /// applied event looks its shop up here); sorted when their snapshots are made, so
    /// snapshots come out in shop order.
    dirty: FxHashMap<String, bool>,
    buckets: Buckets,
    sums: RollingSums,
    /// No timer is due before this time (None: unknown, after a load): every timer before
    /// the last firing's watermark has fired and been deleted, and each timer set since
    /// lowers it. Firing seeks here instead of to the first timer key, so it does not walk
    /// the deletes of fired timers that RocksDB keeps until compaction (their number grows
    /// with the time between compactions).
    timers_from: Option<Timestamp>,
}

impl Engine {
    /// Loads the engine's saved bookkeeping.
    pub fn load(ov: &mut Overlay<'_>, cfg: RulesConfig) -> Result<Engine, StateError> {
        let meta: EngineMeta = ov.get(&Key::Meta(MetaKey::Watermark))?.unwrap_or_default();
        let flushed_at = meta.watermark.current();
        let sums = RollingSums::new(&cfg.windows, cfg.dsr_days, cfg.sums);
        let mut dirty = FxHashMap::default();
        for (k, _) in ov.scan(&keys::pending_snapshot_prefix(), &[], usize::MAX)? {
            if let Some(shop) = keys::shop_of_pending_snapshot_key(&k) {
                dirty.insert(shop.to_owned(), true);
            }
        }
        Ok(Engine { cfg, meta, flushed_at, dirty, buckets: Buckets::default(), sums, timers_from: None })
    }

    pub fn config(&self) -> &RulesConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.meta.counters
    }

    pub fn watermark(&self) -> Option<Timestamp> {
        self.meta.watermark.current()
    }

    /// Counts a record that went to the dead-letter output.
    pub fn note_dead_letter(&mut self) {
        self.meta.counters.dead_letters += 1;
    }

    /// Marks an input partition idle or active (Kafka mode; see [`Watermark::set_idle`]).
    pub fn set_partition_idle(&mut self, partition: i32, idle: bool) {
        self.meta.watermark.set_idle(partition, idle);
    }

    /// Makes an input partition of `topic` known before its first event (Kafka mode; see
    /// [`Watermark::register`]), and numbers the topic for the facts' source positions
    /// ([`Origins`]) unless it already has a number. So the numbers follow the order the
    /// partitions are registered in, not the order their first records happen to arrive
    /// in, and the state a commit writes does not depend on that interleaving
    /// (`tests/commit_determinism.rs`).
    pub fn register_partition(&mut self, partition: i32, topic: &str) {
        self.meta.watermark.register(partition);
        self.meta.origins.register(topic);
    }

    /// Moves the watermark clock of `partition` for a valid event this engine does not own
    /// (Kafka mode: another shard's shop). Every shard's watermark thus follows every input
    /// partition, as a single instance's would.
    pub fn observe_foreign(&mut self, partition: i32, event_time: Timestamp) {
        self.meta.watermark.observe(partition, event_time);
    }

    /// Event times before this are later than the allowed lateness (None before any event).
    fn lateness_limit(&self) -> Option<Timestamp> {
        self.meta.watermark.current().map(|wm| wm.plus_ms(-self.cfg.allowed_lateness_ms))
    }

    fn mark_dirty(&mut self, shop: &str) {
        if !self.dirty.contains_key(shop) {
            self.dirty.insert(shop.to_owned(), false);
        }
    }

    /// Applies one valid event read from `partition` at `source`.
    pub fn apply(
        &mut self,
        ov: &mut Overlay<'_>,
        ev: &Event,
        partition: i32,
        source: &SourcePos,
    ) -> Result<ApplyOutcome, StateError> {
        let seen = Key::Seen(&ev.event_id);
        if let Some(first_time) = ov.get::<Timestamp>(&seen)? {
            self.meta.counters.duplicates += 1;
            // A copy with the first copy's event time, read from another partition, moves
            // that partition's clock as the first copy moved its own (in one partition, as
            // in file mode, this changes nothing: the time was seen there). Otherwise which
            // partition's clock moved would depend on which copy arrived first, and the
            // shards that do not own the shop, which cannot tell duplicates, move it for
            // every copy (`observe_foreign`). A reused id with another time moves nothing.
            if first_time == ev.event_time {
                self.meta.watermark.observe(partition, ev.event_time);
            }
            self.refine_duplicate_source(ov, ev, source)?;
            return Ok(ApplyOutcome::Duplicate);
        }
        ov.put(&seen, &ev.event_time);
        let wm = self.meta.watermark.current();
        let late = wm.is_some_and(|wm| ev.event_time < wm);
        if late {
            self.meta.counters.late_events += 1;
            if self.lateness_limit().is_some_and(|l| ev.event_time < l) {
                self.meta.counters.beyond_allowed_lateness += 1;
            }
        }
        self.meta.watermark.observe(partition, ev.event_time);
        self.meta.counters.applied += 1;

        let shop = ev.shop_id.as_str();
        let fact = Fact::new(ev.event_time, &ev.event_id, self.meta.origins.pos(source));
        match &ev.body {
            EventBody::OrderPaid(p) => {
                let payment = Payment {
                    buyer_id: p.buyer_id.clone(),
                    amount_fen: p.amount_fen,
                    ship_deadline: p.ship_deadline,
                    fulfillment: p.fulfillment,
                    delivery_promise: p.delivery_promise,
                    promised_delivery_by: p.promised_delivery_by,
                };
                self.on_order(ov, shop, &p.order_id, ev.event_time, |o| {
                    keep_earliest(&mut o.paid, fact, payment)
                })?;
            }
            EventBody::OrderCompleted(r) => {
                let buyer = r.buyer_id.clone();
                self.on_order(ov, shop, &r.order_id, ev.event_time, |o| {
                    keep_earliest(&mut o.completed, fact, buyer)
                })?;
            }
            EventBody::OrderClosed(r) => {
                self.on_order(ov, shop, &r.order_id, ev.event_time, |o| {
                    keep_earliest(&mut o.closed, fact, ())
                })?;
            }
            EventBody::OrderRated(r) => {
                let value = (r.buyer_id.clone(), [r.description, r.service, r.logistics]);
                self.on_order(ov, shop, &r.order_id, ev.event_time, |o| {
                    keep_earliest(&mut o.rated, fact, value)
                })?;
            }
            // A status no fact keeps would leave the order unchanged: its state is not read.
            EventBody::Logistics(l) if !l.status.is_recorded() => {}
            EventBody::Logistics(l) => {
                self.on_order(ov, shop, &l.order_id, ev.event_time, |o| o.record_logistics(l.status, fact))?;
            }
            EventBody::Refund(r) => self.on_refund(ov, shop, r, fact)?,
            EventBody::ServiceRated(s) => self.on_service(ov, shop, ev, s)?,
        }
        self.mark_dirty(shop);
        Ok(ApplyOutcome::Applied { late })
    }

    /// A duplicate of an order or refund event read from Kafka: its order's or refund's
    /// facts keep the smaller source position of the two copies (see
    /// [`OrderFacts::refine_source`]), so that neither the lineage nor the stored state
    /// depends on which copy arrived first.
    fn refine_duplicate_source(
        &mut self,
        ov: &mut Overlay<'_>,
        ev: &Event,
        source: &SourcePos,
    ) -> Result<(), StateError> {
        if !matches!(source, SourcePos::Kafka { .. }) {
            return Ok(());
        }
        let order = match &ev.body {
            EventBody::OrderPaid(p) => &p.order_id,
            EventBody::OrderCompleted(r) | EventBody::OrderClosed(r) => &r.order_id,
            EventBody::OrderRated(r) => &r.order_id,
            EventBody::Logistics(l) => &l.order_id,
            EventBody::Refund(r) => {
                let key = Key::Refund { shop: &ev.shop_id, refund: &r.refund_id };
                if let Some(mut refund) = ov.get::<RefundFacts>(&key)? {
                    let pos = self.meta.origins.pos(source);
                    if refund.refine_source(&ev.event_id, pos, &self.meta.origins) {
                        ov.put(&key, &refund);
                    }
                }
                return Ok(());
            }
            // Service ratings keep no source position.
            EventBody::ServiceRated(_) => return Ok(()),
        };
        let key = Key::Order { shop: &ev.shop_id, order };
        if let Some(mut o) = ov.get::<OrderFacts>(&key)? {
            let timers = derived::order_timers(&o);
            let pos = self.meta.origins.pos(source);
            if o.refine_source(&ev.event_id, pos, &self.meta.origins) {
                self.put_order(ov, &ev.shop_id, order, timers, &o);
            }
        }
        Ok(())
    }

    /// Updates an order's facts with `change` and moves every count that depends on them.
    fn on_order(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        order: &str,
        at: Timestamp,
        change: impl FnOnce(&mut OrderFacts) -> bool,
    ) -> Result<(), StateError> {
        let key = Key::Order { shop, order };
        let mut o: OrderFacts = ov.get(&key)?.unwrap_or_default();
        let before = o.clone();
        if !change(&mut o) {
            // No fact changed (a later report of a fact already known), but the event is
            // still activity: retention's clock must not depend on which report came first
            // (tests/commit_determinism.rs). Facts, and so timers and counters, are as they
            // were.
            if at > o.last_activity {
                o.last_activity = at;
                ov.put(&key, &o);
            }
            return Ok(());
        }
        o.last_activity = o.last_activity.max(at);
        let deadline = |f: &OrderFacts| f.paid.as_ref().map(|p| p.value.ship_deadline);
        if let (Some(at), true) = (deadline(&o), deadline(&o) != deadline(&before)) {
            // A deadline the watermark has already passed is not waited for.
            o.deadline_passed = self.meta.watermark.current().is_some_and(|wm| wm > at);
        }
        self.sync_compensation(ov, shop, order, &before, &mut o)?;
        self.buckets.replace(ov, &self.sums, shop, &before.contribution(), &o.contribution())?;
        self.update_dsr(ov, shop, dsr::valid_rating(order, &before), dsr::valid_rating(order, &o))?;
        self.put_order(ov, shop, order, derived::order_timers(&before), &o);
        Ok(())
    }

    /// Writes an order's facts, and moves its timers from `before` (those of the facts as
    /// they were read) to those of `o`: an order's timers are a function of its facts
    /// ([`derived::order_timers`]), here as on restore.
    fn put_order(&mut self, ov: &mut Overlay<'_>, shop: &str, order: &str, before: Timers, o: &OrderFacts) {
        self.move_timers(ov, shop, order, &before, &derived::order_timers(o));
        ov.put(&Key::Order { shop, order }, o);
    }

    /// Deletes the timers of `before` that `after` lacks and sets those it adds, for the
    /// entry `id` of `shop`.
    fn move_timers(&mut self, ov: &mut Overlay<'_>, shop: &str, id: &str, before: &Timers, after: &Timers) {
        for &(at, kind) in before.iter().flatten() {
            if !after.contains(&Some((at, kind))) {
                ov.delete(&Key::Timer { at, kind, shop, id });
            }
        }
        for &(at, kind) in after.iter().flatten() {
            if !before.contains(&Some((at, kind))) {
                self.set_timer(ov, at, kind, shop, id);
            }
        }
    }

    /// Keeps the late-shipment pending lists in step with the order's (earliest) payment
    /// until it is decided, and marks the promise of a payment reported too late decided.
    fn sync_compensation(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        order: &str,
        before: &OrderFacts,
        after: &mut OrderFacts,
    ) -> Result<(), StateError> {
        let (old, new) = (before.paid.as_ref(), after.paid.as_ref());
        if old == new {
            return Ok(());
        }
        // A payment reported later than the allowed lateness counts for metrics but never
        // opens a compensation decision (it could not be decided deterministically, and its
        // order's earlier state may have expired). Its promise is marked decided — nothing is
        // owed for it — so it has no promise timer (see `derived::order_timers`).
        let limit = self.lateness_limit();
        if new.is_some_and(|p| limit.is_some_and(|l| p.fact.time < l)) {
            after.promise_decided = true;
            return Ok(());
        }
        if !after.late_decided {
            if let Some(p) = old {
                let mut bo: BuyerOrders = self.buyer_orders(ov, shop, &p.value.buyer_id)?;
                bo.remove(order);
                self.save_buyer_orders(ov, shop, &p.value.buyer_id, bo);
            }
            if let Some(p) = new {
                let mut bo = self.buyer_orders(ov, shop, &p.value.buyer_id)?;
                bo.insert(PendingOrder {
                    paid: p.fact.time,
                    order_id: order.to_owned(),
                    deadline: p.value.ship_deadline,
                });
                self.save_buyer_orders(ov, shop, &p.value.buyer_id, bo);
            }
        }
        Ok(())
    }

    fn buyer_orders(&self, ov: &mut Overlay<'_>, shop: &str, buyer: &str) -> Result<BuyerOrders, StateError> {
        Ok(ov.get(&Key::BuyerOrders { shop, buyer })?.unwrap_or_default())
    }

    /// Saves a buyer's pending orders with their timer at the first group's decision time
    /// (moved from the `timer_at` they carry, see [`derived::buyer_timers`]).
    fn save_buyer_orders(&mut self, ov: &mut Overlay<'_>, shop: &str, buyer: &str, mut bo: BuyerOrders) {
        let before = derived::buyer_timers(&bo);
        bo.timer_at = bo.first_group(self.cfg.compensation.group_span_ms).map(|(_, at)| at);
        self.move_timers(ov, shop, buyer, &before, &derived::buyer_timers(&bo));
        let key = Key::BuyerOrders { shop, buyer };
        if bo.pending.is_empty() {
            ov.delete(&key);
        } else {
            ov.put(&key, &bo);
        }
    }

    /// Decides every group of the buyer whose decision time the watermark has passed, in
    /// order, and emits their compensation records.
    fn decide_groups(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        buyer: &str,
        wm: Timestamp,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let mut bo = self.buyer_orders(ov, shop, buyer)?;
        bo.timer_at = None; // this timer has fired
        while let Some((len, at)) = bo.first_group(self.cfg.compensation.group_span_ms) {
            if at >= wm {
                break;
            }
            let mut members = Vec::with_capacity(len);
            for p in bo.pending.drain(..len) {
                let mut o: OrderFacts = ov.get(&Key::Order { shop, order: &p.order_id })?.unwrap_or_default();
                let timers = derived::order_timers(&o);
                o.late_decided = true;
                self.put_order(ov, shop, &p.order_id, timers, &o);
                members.push((p.order_id, o));
            }
            for c in
                compensation::decide_group(shop, &members, at, &self.cfg.compensation, &self.meta.origins)
            {
                self.meta.counters.compensations += 1;
                out.push(Output::Compensation(c));
            }
        }
        self.save_buyer_orders(ov, shop, buyer, bo);
        Ok(())
    }

    fn promise_passed(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        order: &str,
        at: Timestamp,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let key = Key::Order { shop, order };
        let mut o: OrderFacts = ov.get(&key)?.unwrap_or_default();
        let current = o.paid.as_ref().and_then(|p| p.value.promised_delivery_by);
        if current != Some(at) || o.promise_decided {
            return Ok(());
        }
        let timers = derived::without(derived::order_timers(&o), (at, TimerKind::PromiseDeadline));
        o.promise_decided = true;
        self.put_order(ov, shop, order, timers, &o);
        if let Some(c) =
            compensation::promise_breach(shop, order, &o, &self.cfg.compensation, &self.meta.origins)
        {
            self.meta.counters.compensations += 1;
            out.push(Output::Compensation(c));
        }
        Ok(())
    }

    /// Moves an order's valid DSR rating between month groups and re-ranks them.
    fn update_dsr(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        old: Option<(dsr::GroupRef, dsr::DsrEntry)>,
        new: Option<(dsr::GroupRef, dsr::DsrEntry)>,
    ) -> Result<(), StateError> {
        if old == new {
            return Ok(());
        }
        let mut groups: Vec<&dsr::GroupRef> = old.iter().chain(new.iter()).map(|(g, _)| g).collect();
        groups.dedup();
        for g in groups {
            let key = Key::DsrGroup { shop, buyer: &g.buyer, month: g.month };
            let mut group: DsrGroup = ov.get(&key)?.unwrap_or_default();
            let before = group.contribution();
            if let Some((og, e)) = &old {
                if og == g {
                    group.remove(e);
                }
            }
            if let Some((ng, e)) = &new {
                if ng == g {
                    group.insert(e.clone());
                }
            }
            self.buckets.replace(ov, &self.sums, shop, &before, &group.contribution())?;
            if group.entries.is_empty() {
                ov.delete(&key);
            } else {
                ov.put(&key, &group);
            }
        }
        Ok(())
    }

    fn on_refund(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        r: &RefundUpdate,
        fact: Fact,
    ) -> Result<(), StateError> {
        let okey = Key::Order { shop, order: &r.order_id };
        let mut order: OrderFacts = ov.get(&okey)?.unwrap_or_default();
        let rkey = Key::Refund { shop, refund: &r.refund_id };
        let mut refund: RefundFacts = ov.get(&rkey)?.unwrap_or_default();
        if refund.order_id.is_empty() {
            refund.order_id = r.order_id.clone();
        }
        let before = refund.contribution(order.protected);
        let at = fact.time;
        refund.record(&r.stage, fact);
        refund.last_activity = refund.last_activity.max(at);
        let mut order_changed = order.last_activity < at;
        order.last_activity = order.last_activity.max(at);
        if !order.refunds.contains(&r.refund_id) {
            // Sorted, not in arrival order: the stored bytes do not depend on interleaving.
            // (`contains`, not a binary search: a state written before session 24 keeps its
            // ids in arrival order, and an id must never be listed twice.)
            let at = order.refunds.partition_point(|id| *id < r.refund_id);
            order.refunds.insert(at, r.refund_id.clone());
            order_changed = true;
        }
        if refund.labeled && !order.protected {
            // Retroactive protection: every other refund of the order stops counting.
            order.protected = true;
            order_changed = true;
            for other in order.refunds.iter().filter(|id| **id != r.refund_id) {
                let other_facts: RefundFacts =
                    ov.get(&Key::Refund { shop, refund: other })?.unwrap_or_default();
                self.buckets.replace(ov, &self.sums, shop, &other_facts.contribution(false), &Vec::new())?;
            }
        }
        self.buckets.replace(ov, &self.sums, shop, &before, &refund.contribution(order.protected))?;
        ov.put(&rkey, &refund);
        if order_changed {
            // Refunds change no timer: the order's stay as they are.
            self.put_order(ov, shop, &r.order_id, derived::order_timers(&order), &order);
        }
        Ok(())
    }

    fn on_service(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        ev: &Event,
        s: &ServiceRated,
    ) -> Result<(), StateError> {
        let key = Key::ServiceHistory { shop, buyer: &s.buyer_id };
        let mut h: ServiceHistory = ov.get(&key)?.unwrap_or_default();
        let before = h.contribution(self.cfg.satisfaction);
        if let Some(wm) = self.meta.watermark.current() {
            // Ratings past the retention horizon can no longer affect any window or any
            // exclusion (month caps and intervals are far shorter than the horizon).
            let cutoff = wm.plus_ms(-retention::horizon_ms(&self.cfg));
            h.entries.retain(|e| e.time >= cutoff);
        }
        h.insert(ServiceEntry {
            time: ev.event_time,
            event_id: ev.event_id.clone(),
            flagged: !s.flags.is_empty(),
            handler: s.handler,
            phase: s.phase,
            satisfied: s.level.is_satisfied(),
        });
        self.buckets.replace(ov, &self.sums, shop, &before, &h.contribution(self.cfg.satisfaction))?;
        ov.put(&key, &h);
        Ok(())
    }

    /// Commit-time work: advances the watermark (to the largest event time when
    /// `end_of_input`), fires the timers it passed, re-evaluates every shop that changed
    /// or whose windows moved, emits the changed snapshots into `out`, and saves the
    /// engine's bookkeeping.
    pub fn flush(
        &mut self,
        ov: &mut Overlay<'_>,
        end_of_input: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        self.flush_with(ov, end_of_input, Snapshots::Refresh, out)
    }

    /// [`Engine::flush`], with snapshots refreshed or deferred as `snapshots` says. Deferred
    /// shops are marked in the state, so a later refresh — after a restart too — emits
    /// them; a shop's last snapshot still ends equal to its state (SPEC §6 allows
    /// coalescing).
    pub fn flush_with(
        &mut self,
        ov: &mut Overlay<'_>,
        end_of_input: bool,
        snapshots: Snapshots,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let wm = if end_of_input {
            self.meta.watermark.finish()
        } else {
            self.meta.watermark.advance(self.cfg.out_of_orderness_ms)
        };
        if let Some(wm) = wm {
            self.sums.watermark_day(wm.day());
            self.fire_timers(ov, wm, out)?;
        }
        if let Some((lo, hi)) = self.buckets.write_back(ov, &mut self.sums) {
            self.meta.data_days = Some(match self.meta.data_days {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        if let Some(wm) = wm {
            self.mark_shops_with_moved_days(ov, wm.day())?;
            self.flushed_at = Some(wm);
        }
        match wm {
            Some(wm) if snapshots == Snapshots::Refresh => self.refresh_snapshots(ov, wm, out)?,
            _ => {
                // In any order: the overlay sorts what it writes.
                for (shop, marked) in self.dirty.iter_mut().filter(|(_, marked)| !**marked) {
                    ov.put(&Key::PendingSnapshot { shop }, &());
                    *marked = true;
                }
            }
        }
        ov.put(&Key::Meta(MetaKey::Watermark), &self.meta);
        Ok(())
    }

    /// Re-evaluates every dirty shop at `wm` and emits the changed snapshots (and the alert
    /// changes they bring) into `out`.
    fn refresh_snapshots(
        &mut self,
        ov: &mut Overlay<'_>,
        wm: Timestamp,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let mut dirty: Vec<(String, bool)> = std::mem::take(&mut self.dirty).into_iter().collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (shop, marked) in dirty {
            if marked {
                ov.delete(&Key::PendingSnapshot { shop: &shop });
            }
            let Some(s) = snapshot::refresh(ov, &mut self.sums, &shop, wm, &self.cfg.windows)? else {
                continue;
            };
            self.meta.counters.snapshots += 1;
            let mut changes = Vec::new();
            if !self.cfg.alerts.is_empty() {
                let key = Key::AlertState { shop: &shop };
                let mut state: AlertState = ov.get(&key)?.unwrap_or_default();
                changes = alerts::evaluate(&self.cfg.alerts, &s, &mut state);
                if !changes.is_empty() {
                    ov.put(&key, &state);
                }
            }
            out.push(Output::Snapshot(s));
            self.meta.counters.alerts += changes.len() as u64;
            out.extend(changes.into_iter().map(Output::Alert));
        }
        Ok(())
    }

    /// Sets an event-time timer.
    fn set_timer(&mut self, ov: &mut Overlay<'_>, at: Timestamp, kind: TimerKind, shop: &str, id: &str) {
        ov.put(&Key::Timer { at, kind, shop, id }, &());
        // Unknown stays unknown: stored timers may lie before `at`.
        self.timers_from = self.timers_from.map(|from| from.min(at));
    }

    /// Fires every timer whose time the watermark has passed (`at < wm`), in time order.
    /// Cost is proportional to the timers due, not to those pending. Each batch resumes
    /// after the last timer fired: firing only ever adds timers at or after `wm` (a
    /// buyer's next group decision), so none due can appear behind that point.
    fn fire_timers(
        &mut self,
        ov: &mut Overlay<'_>,
        wm: Timestamp,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let prefix = keys::timer_prefix();
        let mut resume = self.timers_from.map(keys::timer_seek_key).unwrap_or_default();
        // Once this returns, every timer before `wm` has fired, except any that firing sets
        // there (set_timer lowers the bound again).
        self.timers_from = Some(wm);
        loop {
            let due: Vec<keys::TimerRef> = ov
                .scan(&prefix, &resume, 1024)?
                .into_iter()
                .filter_map(|(k, _)| keys::parse_timer_key(&k))
                .take_while(|t| t.at < wm)
                .collect();
            let Some(last) = due.last() else { return Ok(()) };
            resume = Key::Timer { at: last.at, kind: last.kind, shop: &last.shop, id: &last.id }.encode();
            resume.push(0);
            for t in due {
                ov.delete_scanned(&Key::Timer { at: t.at, kind: t.kind, shop: &t.shop, id: &t.id });
                self.meta.counters.timers_fired += 1;
                match t.kind {
                    TimerKind::ShipDeadline => self.ship_deadline_passed(ov, &t.shop, &t.id, t.at)?,
                    TimerKind::PromiseDeadline => self.promise_passed(ov, &t.shop, &t.id, t.at, out)?,
                    TimerKind::GroupDecision => self.decide_groups(ov, &t.shop, &t.id, wm, out)?,
                }
            }
        }
    }

    fn ship_deadline_passed(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        order: &str,
        at: Timestamp,
    ) -> Result<(), StateError> {
        let key = Key::Order { shop, order };
        let mut o: OrderFacts = ov.get(&key)?.unwrap_or_default();
        let current = o.paid.as_ref().map(|p| p.value.ship_deadline);
        if current != Some(at) || o.deadline_passed {
            return Ok(());
        }
        let timers = derived::without(derived::order_timers(&o), (at, TimerKind::ShipDeadline));
        let before = o.contribution();
        o.deadline_passed = true;
        self.buckets.replace(ov, &self.sums, shop, &before, &o.contribution())?;
        self.put_order(ov, shop, order, timers, &o);
        self.mark_dirty(shop);
        Ok(())
    }

    /// When the watermark's day moves from the last flush's day to `new_day`, days enter
    /// the windows (the days after the old one) and leave them (for a window of `n` days,
    /// the days up to `new_day - n`): every shop with data on such a day is re-evaluated.
    fn mark_shops_with_moved_days(&mut self, ov: &mut Overlay<'_>, new_day: Day) -> Result<(), StateError> {
        let Some(old) = self.flushed_at.map(Timestamp::day) else { return Ok(()) };
        let Some((lo, hi)) = self.meta.data_days else { return Ok(()) };
        if new_day <= old {
            return Ok(());
        }
        let mut days = BTreeSet::new();
        let mut add_range = |from: i32, to: i32| {
            for d in from.max(lo.0)..=to.min(hi.0) {
                days.insert(Day(d));
            }
        };
        add_range(old.0 + 1, new_day.0);
        for n in snapshot::window_lengths(&self.cfg.windows, self.cfg.dsr_days) {
            add_range(old.0 - n as i32 + 1, new_day.0 - n as i32);
        }
        for day in days {
            for (k, _) in ov.scan(&keys::day_shop_prefix(day), &[], usize::MAX)? {
                if let Some(shop) = keys::shop_of_day_shop_key(&k) {
                    self.mark_dirty(shop);
                }
            }
        }
        Ok(())
    }
}
