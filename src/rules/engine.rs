//! The rule engine: applies events to state and, at commit time, advances the watermark
//! and emits the snapshots whose values changed.
//!
//! The engine keeps only per-commit bookkeeping in memory (which shops changed, the
//! watermark and counters, which are saved into the same overlay as the state they
//! describe). Everything else lives in the [`Overlay`], so a crash between commits loses
//! nothing the next run cannot recompute from the last committed input position.

use super::facts::{keep_earliest, Fact, OrderFacts, RefundFacts};
use super::metrics::DayCounters;
use super::snapshot;
use super::watermark::Watermark;
use crate::domain::{Day, Event, EventBody, RefundStage, Timestamp};
use crate::output::Output;
use crate::state::keys::{self, Key, MetaKey};
use crate::state::overlay::Overlay;
use crate::state::StateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The parameters the rules need (built from the typed configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Window lengths in days, in output order.
    pub windows: Vec<u32>,
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            windows: vec![1, 7, 30],
            out_of_orderness_ms: 5 * 60_000,
            allowed_lateness_ms: 86_400_000,
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
}

/// The rules over one partition set's state.
pub struct Engine {
    cfg: RulesConfig,
    meta: EngineMeta,
    /// Watermark as of the last flush (snapshots were made at it).
    flushed_at: Option<Timestamp>,
    dirty: BTreeSet<String>,
}

impl Engine {
    /// Loads the engine's saved bookkeeping.
    pub fn load(ov: &mut Overlay<'_>, cfg: RulesConfig) -> Result<Engine, StateError> {
        let meta: EngineMeta = ov.get(&Key::Meta(MetaKey::Watermark))?.unwrap_or_default();
        let flushed_at = meta.watermark.current();
        Ok(Engine {
            cfg,
            meta,
            flushed_at,
            dirty: BTreeSet::new(),
        })
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

    /// Applies one valid event read from `partition`.
    pub fn apply(
        &mut self,
        ov: &mut Overlay<'_>,
        ev: &Event,
        partition: i32,
    ) -> Result<ApplyOutcome, StateError> {
        let seen = Key::Seen(&ev.event_id);
        if ov.contains(&seen)? {
            self.meta.counters.duplicates += 1;
            return Ok(ApplyOutcome::Duplicate);
        }
        ov.put(&seen, &ev.event_time);
        let late = self
            .meta
            .watermark
            .current()
            .is_some_and(|wm| ev.event_time < wm);
        if late {
            self.meta.counters.late_events += 1;
            let limit = self
                .meta
                .watermark
                .current()
                .map(|wm| wm.plus_ms(-self.cfg.allowed_lateness_ms));
            if limit.is_some_and(|l| ev.event_time < l) {
                self.meta.counters.beyond_allowed_lateness += 1;
            }
        }
        self.meta.watermark.observe(partition, ev.event_time);
        self.meta.counters.applied += 1;

        let shop = ev.shop_id.as_str();
        match &ev.body {
            EventBody::OrderPaid(p) => {
                let key = Key::Order {
                    shop,
                    order: &p.order_id,
                };
                let mut facts: OrderFacts = ov.get(&key)?.unwrap_or_default();
                if let Some(old) =
                    keep_earliest(&mut facts.paid, Fact::new(ev.event_time, &ev.event_id))
                {
                    self.move_count(
                        ov,
                        shop,
                        old.map(|f| f.time.day()),
                        ev.event_time.day(),
                        |c| &mut c.paid_orders,
                    )?;
                    ov.put(&key, &facts);
                }
            }
            EventBody::Refund(r) => {
                if let RefundStage::Requested { .. } = r.stage {
                    let key = Key::Refund {
                        shop,
                        refund: &r.refund_id,
                    };
                    let mut facts: RefundFacts = ov.get(&key)?.unwrap_or_default();
                    if let Some(old) =
                        keep_earliest(&mut facts.requested, Fact::new(ev.event_time, &ev.event_id))
                    {
                        self.move_count(
                            ov,
                            shop,
                            old.map(|f| f.time.day()),
                            ev.event_time.day(),
                            |c| &mut c.refunds_requested,
                        )?;
                        ov.put(&key, &facts);
                    }
                }
            }
            // The remaining facts feed metrics of later milestones; the shop still gets a
            // snapshot (SPEC §9: every shop with a valid event has one).
            _ => {}
        }
        if !self.dirty.contains(shop) {
            self.dirty.insert(shop.to_owned());
        }
        Ok(ApplyOutcome::Applied { late })
    }

    /// Moves one count of `field` from day `from` (None: new fact) to day `to`.
    fn move_count(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        from: Option<Day>,
        to: Day,
        field: fn(&mut DayCounters) -> &mut i64,
    ) -> Result<(), StateError> {
        if let Some(from) = from {
            self.bump(ov, shop, from, field, -1)?;
        }
        self.bump(ov, shop, to, field, 1)
    }

    fn bump(
        &mut self,
        ov: &mut Overlay<'_>,
        shop: &str,
        day: Day,
        field: fn(&mut DayCounters) -> &mut i64,
        delta: i64,
    ) -> Result<(), StateError> {
        let key = Key::DayBucket { shop, day };
        let mut c: DayCounters = ov.get(&key)?.unwrap_or_default();
        *field(&mut c) += delta;
        if c.is_zero() {
            ov.delete(&key);
        } else {
            ov.put(&key, &c);
        }
        ov.put(&Key::DayShop { day, shop }, &());
        self.meta.data_days = Some(match self.meta.data_days {
            None => (day, day),
            Some((lo, hi)) => (lo.min(day), hi.max(day)),
        });
        Ok(())
    }

    /// Commit-time work: advances the watermark (to the largest event time when
    /// `end_of_input`), re-evaluates every shop that changed or whose windows moved, emits
    /// the changed snapshots into `out`, and saves the engine's bookkeeping.
    pub fn flush(
        &mut self,
        ov: &mut Overlay<'_>,
        end_of_input: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), StateError> {
        let wm = if end_of_input {
            self.meta.watermark.finish()
        } else {
            self.meta.watermark.advance(self.cfg.out_of_orderness_ms)
        };
        if let Some(wm) = wm {
            self.mark_shops_with_moved_days(ov, wm.day())?;
            for shop in std::mem::take(&mut self.dirty) {
                if let Some(s) = snapshot::refresh(ov, &shop, wm, &self.cfg.windows)? {
                    self.meta.counters.snapshots += 1;
                    out.push(Output::Snapshot(s));
                }
            }
            self.flushed_at = Some(wm);
        }
        ov.put(&Key::Meta(MetaKey::Watermark), &self.meta);
        Ok(())
    }

    /// When the watermark's day moves from the last flush's day to `new_day`, days enter
    /// the windows (the days after the old one) and leave them (for a window of `n` days,
    /// the days up to `new_day - n`): every shop with data on such a day is re-evaluated.
    fn mark_shops_with_moved_days(
        &mut self,
        ov: &mut Overlay<'_>,
        new_day: Day,
    ) -> Result<(), StateError> {
        let Some(old) = self.flushed_at.map(Timestamp::day) else {
            return Ok(());
        };
        let Some((lo, hi)) = self.meta.data_days else {
            return Ok(());
        };
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
        for &n in &self.cfg.windows {
            add_range(old.0 - n as i32 + 1, new_day.0 - n as i32);
        }
        for day in days {
            for (k, _) in ov.scan(&keys::day_shop_prefix(day), &[], usize::MAX)? {
                if let Some(shop) = keys::shop_of_day_shop_key(&k) {
                    if !self.dirty.contains(shop) {
                        self.dirty.insert(shop.to_owned());
                    }
                }
            }
        }
        Ok(())
    }
}
