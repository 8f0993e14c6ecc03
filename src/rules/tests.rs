//! Unit tests of the rules on the in-memory store: no files, no RocksDB, no runtime.

use super::*;
use crate::domain::*;
use crate::output::{Output, Snapshot, SourcePos};
use crate::state::memory::MemStore;
use crate::state::overlay::Overlay;
use crate::state::{KvStore, WriteBatch};
use std::collections::BTreeMap;

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn paid(id: &str, shop: &str, order: &str, at: &str) -> Event {
    let time = t(at);
    Event {
        event_id: id.into(),
        shop_id: shop.into(),
        event_time: time,
        body: EventBody::OrderPaid(OrderPaid {
            order_id: order.into(),
            buyer_id: "b1".into(),
            amount_fen: 1000,
            ship_deadline: time.plus_ms(48 * 3_600_000),
            ship_deadline_given: false,
            fulfillment: Fulfillment::Merchant,
            delivery_promise: DeliveryPromise::None,
            promised_delivery_by: None,
        }),
    }
}

fn requested(id: &str, shop: &str, refund: &str, at: &str) -> Event {
    Event {
        event_id: id.into(),
        shop_id: shop.into(),
        event_time: t(at),
        body: EventBody::Refund(RefundUpdate {
            refund_id: refund.into(),
            order_id: "o1".into(),
            buyer_id: "b1".into(),
            stage: RefundStage::Requested {
                kind: RefundKind::RefundOnly,
                reason: RefundReason::Quality,
                amount_fen: 100,
            },
        }),
    }
}

/// One commit with a freshly loaded engine (as after a restart): applies `events`, flushes
/// (`end`: the input ended) with the given snapshot choice, writes the batch.
fn commit<'a>(
    store: &MemStore,
    events: impl IntoIterator<Item = (&'a Event, &'a SourcePos)>,
    end: bool,
    snapshots: engine::Snapshots,
    out: &mut Vec<Output>,
) {
    let mut engine = Engine::load(&mut Overlay::new(store), RulesConfig::default()).unwrap();
    commit_on(&mut engine, store, events, end, snapshots, out);
}

/// [`commit`] with an engine kept from earlier commits (as a running pipeline does).
fn commit_on<'a>(
    engine: &mut Engine,
    store: &MemStore,
    events: impl IntoIterator<Item = (&'a Event, &'a SourcePos)>,
    end: bool,
    snapshots: engine::Snapshots,
    out: &mut Vec<Output>,
) {
    let mut ov = Overlay::new(store);
    for (ev, source) in events {
        engine.apply(&mut ov, ev, 0, source).unwrap();
    }
    engine.flush_with(&mut ov, end, snapshots, out).unwrap();
    let mut wb = WriteBatch::new();
    ov.drain_into(&mut wb).unwrap();
    store.write(wb).unwrap();
}

/// Applies `batches` of events, committing (flushing) after each, and returns all outputs.
fn run(store: &MemStore, batches: &[Vec<Event>], end: bool) -> Vec<Output> {
    let mut out = Vec::new();
    let source = SourcePos::File { file: "t".into(), line: 1 };
    let n = batches.len();
    for (i, batch) in batches.iter().enumerate() {
        let events = batch.iter().map(|ev| (ev, &source));
        commit(store, events, end && i + 1 == n, engine::Snapshots::Refresh, &mut out);
    }
    out
}

fn snapshots(out: &[Output]) -> Vec<&Snapshot> {
    out.iter()
        .filter_map(|o| match o {
            Output::Snapshot(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn window(s: &Snapshot, days: u32) -> (i64, i64) {
    let c = s.window(days).unwrap();
    (c.paid_orders, c.refunds_requested)
}

#[test]
fn counts_paid_orders_and_refunds_per_window() {
    let store = MemStore::new();
    let out = run(
        &store,
        &[vec![
            paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00"),
            paid("e2", "s1", "o2", "2024-05-20T10:00:00+08:00"),
            paid("e3", "s1", "o3", "2024-05-31T10:00:00+08:00"),
            requested("e4", "s1", "r1", "2024-05-31T11:00:00+08:00"),
        ]],
        true,
    );
    let snaps = snapshots(&out);
    assert_eq!(snaps.len(), 1);
    let s = snaps[0];
    assert_eq!(s.as_of, t("2024-05-31T11:00:00+08:00"));
    assert_eq!(s.version, 1);
    assert_eq!(window(s, 1), (1, 1));
    assert_eq!(window(s, 7), (1, 1));
    assert_eq!(window(s, 30), (2, 1)); // 05-01 is 31 days back: outside
}

#[test]
fn duplicate_event_ids_and_duplicate_facts_count_once() {
    let store = MemStore::new();
    let out = run(
        &store,
        &[vec![
            paid("e1", "s1", "o1", "2024-05-02T10:00:00+08:00"),
            paid("e1", "s1", "o9", "2024-05-02T10:00:00+08:00"), // same event_id: ignored
            paid("e2", "s1", "o1", "2024-05-01T09:00:00+08:00"), // same order reported earlier
            paid("e3", "s1", "o2", "2024-05-02T12:00:00+08:00"),
        ]],
        true,
    );
    let s = *snapshots(&out).last().unwrap();
    // o1 counts once, on 05-01 (its earliest report); o2 on 05-02.
    assert_eq!(window(s, 1), (1, 0));
    assert_eq!(window(s, 7), (2, 0));
    let mut ov = Overlay::new(&store);
    let engine = Engine::load(&mut ov, RulesConfig::default()).unwrap();
    assert_eq!(engine.counters().duplicates, 1);
    assert_eq!(engine.counters().applied, 3);
}

#[test]
fn snapshot_only_when_values_change_and_when_days_leave_windows() {
    let store = MemStore::new();
    let first = run(&store, &[vec![paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00")]], false);
    assert_eq!(snapshots(&first).len(), 1);
    // Another shop's event on the same day: s1 unchanged, no new s1 snapshot.
    let second = run(&store, &[vec![paid("e2", "s2", "o2", "2024-05-01T11:00:00+08:00")]], false);
    assert_eq!(snapshots(&second).iter().map(|s| s.shop_id.as_str()).collect::<Vec<_>>(), vec!["s2"]);
    // The watermark moves to 05-02: o1 leaves s1's 1-day window (and s2's o2 too).
    let third = run(&store, &[vec![paid("e3", "s3", "o3", "2024-05-02T10:00:00+08:00")]], false);
    let s1 = snapshots(&third).into_iter().find(|s| s.shop_id == "s1").expect("s1 re-emitted");
    assert_eq!(s1.version, 2);
    assert_eq!(window(s1, 1), (0, 0));
    assert_eq!(window(s1, 7), (1, 0));
    // 30 days later o1 leaves every window.
    let fourth = run(&store, &[vec![paid("e4", "s3", "o4", "2024-06-01T10:00:00+08:00")]], false);
    let s1 = snapshots(&fourth).into_iter().find(|s| s.shop_id == "s1").expect("s1 re-emitted");
    assert_eq!(window(s1, 30), (0, 0));
}

#[test]
fn late_events_are_counted_and_applied() {
    let store = MemStore::new();
    run(&store, &[vec![paid("e1", "s1", "o1", "2024-05-10T10:00:00+08:00")]], false);
    let out = run(&store, &[vec![paid("e2", "s1", "o2", "2024-05-09T10:00:00+08:00")]], true);
    let s = *snapshots(&out).last().unwrap();
    assert_eq!(window(s, 7), (2, 0));
    let mut ov = Overlay::new(&store);
    let engine = Engine::load(&mut ov, RulesConfig::default()).unwrap();
    assert_eq!(engine.counters().late_events, 1);
    assert_eq!(engine.counters().beyond_allowed_lateness, 0);
}

#[test]
fn batching_does_not_change_final_snapshots() {
    let events = vec![
        paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00"),
        requested("e2", "s1", "r1", "2024-05-01T10:01:00+08:00"),
        paid("e3", "s2", "o2", "2024-05-01T10:02:00+08:00"),
        paid("e4", "s1", "o3", "2024-05-03T10:00:00+08:00"),
        requested("e5", "s1", "r2", "2024-05-04T10:00:00+08:00"),
        paid("e6", "s2", "o4", "2024-05-09T10:00:00+08:00"),
    ];
    let finals = |batches: Vec<Vec<Event>>| {
        let store = MemStore::new();
        let out = run(&store, &batches, true);
        let mut last = std::collections::BTreeMap::new();
        for s in snapshots(&out) {
            last.insert(s.shop_id.clone(), s.values.windows.clone());
        }
        last
    };
    let whole = finals(vec![events.clone()]);
    let single = finals(events.iter().map(|e| vec![e.clone()]).collect());
    assert_eq!(whole, single);
    // Final watermark 05-09: the 7-day window 05-03..05-09 holds o3 and r2, not o1/r1.
    assert_eq!(whole["s1"][0].paid_orders, 0);
    assert_eq!((whole["s1"][1].paid_orders, whole["s1"][1].refunds_requested), (1, 1));
    assert_eq!(whole["s1"][2].paid_orders, 2);
}

fn order_paid(id: &str, order: &str, buyer: &str, at: &str, amount_fen: i64, deadline_h: i64) -> Event {
    let mut e = paid(id, "s1", order, at);
    if let EventBody::OrderPaid(p) = &mut e.body {
        p.buyer_id = buyer.into();
        p.amount_fen = amount_fen;
        p.ship_deadline = e.event_time.plus_ms(deadline_h * 3_600_000);
        p.ship_deadline_given = true;
    }
    e
}

fn logistics(id: &str, order: &str, at: &str, status: LogisticsStatus) -> Event {
    Event {
        event_id: id.into(),
        shop_id: "s1".into(),
        event_time: t(at),
        body: EventBody::Logistics(LogisticsUpdate {
            order_id: order.into(),
            tracking_no: "t1".into(),
            carrier: "c".into(),
            status,
        }),
    }
}

fn compensations(out: &[Output]) -> Vec<&crate::output::Compensation> {
    out.iter()
        .filter_map(|o| match o {
            Output::Compensation(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn three_late_1000_yuan_orders_in_24h_share_the_500_yuan_cap() {
    let store = MemStore::new();
    let out = run(
        &store,
        &[vec![
            order_paid("e1", "o1", "b1", "2024-05-01T10:00:00+08:00", 100_000, 48),
            order_paid("e2", "o2", "b1", "2024-05-01T12:00:00+08:00", 100_000, 48),
            order_paid("e3", "o3", "b1", "2024-05-02T09:00:00+08:00", 100_000, 48),
            // Far later event moves the watermark past every deadline.
            paid("e9", "s9", "o9", "2024-05-10T00:00:00+08:00"),
        ]],
        false,
    );
    let cs = compensations(&out);
    let got: Vec<_> = cs.iter().map(|c| (c.order_id.as_str(), c.amount_fen, c.basis_fen)).collect();
    assert_eq!(got, [("o1", 30_000, 30_000), ("o2", 20_000, 30_000), ("o3", 0, 30_000)]);
    assert!(cs.iter().all(|c| c.group_id.as_deref() == Some("o1")));
    // decided_at = the later of the group end (05-02 10:00) and the last deadline (05-04 09:00).
    assert_eq!(cs[0].decided_at, t("2024-05-04T09:00:00+08:00"));
}

#[test]
fn shipped_on_time_owes_nothing_and_decisions_are_final() {
    let store = MemStore::new();
    let out = run(
        &store,
        &[
            vec![
                order_paid("e1", "o1", "b1", "2024-05-01T10:00:00+08:00", 10_000, 48),
                order_paid("e2", "o2", "b2", "2024-05-01T10:00:00+08:00", 10_000, 48),
                logistics("e3", "o1", "2024-05-02T10:00:00+08:00", LogisticsStatus::PickedUp),
                paid("e9", "s9", "o9", "2024-05-10T00:00:00+08:00"),
            ],
            // A pickup for o2 arriving behind the watermark does not retract its record.
            vec![logistics("e4", "o2", "2024-05-02T10:00:00+08:00", LogisticsStatus::PickedUp)],
        ],
        true,
    );
    let cs = compensations(&out);
    assert_eq!(cs.len(), 1);
    assert_eq!((cs[0].order_id.as_str(), cs[0].amount_fen), ("o2", 3_000));
}

/// Applies `(event, source)` pairs, one commit each, then ends the input; returns the outputs.
fn run_from(store: &MemStore, events: &[(Event, SourcePos)]) -> Vec<Output> {
    let mut out = Vec::new();
    for (i, (ev, source)) in events.iter().enumerate() {
        commit(store, [(ev, source)], i + 1 == events.len(), engine::Snapshots::Refresh, &mut out);
    }
    out
}

#[test]
fn lineage_names_the_smallest_kafka_copy_whatever_the_arrival_order() {
    // Facts keep topics by number, given in order of first sight; the lineage must carry
    // the names, and the duplicate rule must compare names, so both orders agree.
    let kafka = |topic: &str, partition, offset| SourcePos::Kafka { topic: topic.into(), partition, offset };
    let pay = paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00");
    let other = paid("e2", "s1", "o2", "2024-05-09T10:00:00+08:00"); // moves the watermark on
    let copies = [(pay.clone(), kafka("zz-orders", 0, 7)), (pay, kafka("aa-orders", 3, 2))];
    let mut lineages = Vec::new();
    for order in [[0, 1], [1, 0]] {
        let store = MemStore::new();
        let events: Vec<(Event, SourcePos)> = order
            .iter()
            .map(|&i| copies[i].clone())
            .chain([(other.clone(), kafka("zz-orders", 1, 40))])
            .collect();
        let out = run_from(&store, &events);
        let comp: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Compensation(c) if c.order_id == "o1" => Some(c.lineage.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(comp.len(), 1, "o1 shipped late once");
        lineages.push(comp[0].clone());
    }
    assert_eq!(lineages[0], lineages[1]);
    assert_eq!(lineages[0].len(), 1);
    assert_eq!((lineages[0][0].role, lineages[0][0].event_id.as_str()), ("paid", "e1"));
    assert_eq!(lineages[0][0].source, kafka("aa-orders", 3, 2));
}

/// Applies `batches`, one commit each with a fresh engine (as after a restart), flushing
/// with the given snapshot choice per commit; returns all outputs.
fn run_with(store: &MemStore, batches: &[(Vec<Event>, engine::Snapshots)]) -> Vec<Output> {
    let mut out = Vec::new();
    let source = SourcePos::File { file: "t".into(), line: 1 };
    for (batch, snapshots) in batches {
        commit(store, batch.iter().map(|ev| (ev, &source)), false, *snapshots, &mut out);
    }
    out
}

#[test]
fn deferred_snapshots_survive_a_restart_and_end_equal_to_refreshing_every_commit() {
    use engine::Snapshots::{Defer, Refresh};
    let batches = [
        vec![
            paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00"),
            paid("e2", "s2", "o2", "2024-05-01T11:00:00+08:00"),
        ],
        vec![requested("e3", "s1", "r1", "2024-05-02T10:00:00+08:00")],
        vec![paid("e4", "s3", "o4", "2024-05-03T10:00:00+08:00")],
    ];
    let every = MemStore::new();
    let reference = run_with(&every, &batches.iter().map(|b| (b.clone(), Refresh)).collect::<Vec<_>>());
    let last = |out: &[Output]| -> BTreeMap<String, snapshot::ShopValues> {
        snapshots(out).into_iter().map(|s| (s.shop_id.clone(), s.values.clone())).collect()
    };

    let store = MemStore::new();
    let plan: Vec<_> = batches.iter().cloned().zip([Defer, Defer, Refresh]).collect();
    let deferred = run_with(&store, &plan[..2]);
    assert!(snapshots(&deferred).is_empty(), "deferred flushes emit no snapshot");
    let marked: Vec<String> = store
        .scan(&crate::state::keys::pending_snapshot_prefix(), &[], usize::MAX)
        .unwrap()
        .iter()
        .filter_map(|(k, _)| crate::state::keys::shop_of_pending_snapshot_key(k).map(str::to_owned))
        .collect();
    assert_eq!(marked, ["s1", "s2"], "the changed shops are marked in the state");

    // The engine is loaded afresh for every commit: the marks carry the deferred shops over.
    let refreshed = run_with(&store, &plan[2..]);
    assert_eq!(snapshots(&refreshed).len(), 3);
    assert_eq!(last(&refreshed), last(&reference));
    assert!(store.scan(&crate::state::keys::pending_snapshot_prefix(), &[], usize::MAX).unwrap().is_empty());
    assert!(snapshots(&reference).len() > 3, "refreshing every commit emitted more snapshots");
}

/// Commits `batches` with one engine kept across them (as a running pipeline does, unlike
/// [`run`]'s reload per commit); returns all outputs.
fn run_kept(store: &MemStore, batches: &[Vec<Event>]) -> Vec<Output> {
    let source = SourcePos::File { file: "t".into(), line: 1 };
    let mut out = Vec::new();
    let mut engine = Engine::load(&mut Overlay::new(store), RulesConfig::default()).unwrap();
    for (i, batch) in batches.iter().enumerate() {
        let events = batch.iter().map(|ev| (ev, &source));
        commit_on(&mut engine, store, events, i + 1 == batches.len(), engine::Snapshots::Refresh, &mut out);
    }
    out
}

#[test]
fn a_timer_set_behind_the_last_firing_still_fires_in_a_running_engine() {
    // Commit 1 takes the watermark to 05-10 (firing every timer before it). Commit 2 brings a
    // late payment (within the allowed lateness) whose promised delivery, 05-09 12:00, is
    // already behind the watermark: its timer lies before the point where firing now starts.
    let mut late = paid("e2", "s1", "o2", "2024-05-09T10:00:00+08:00");
    if let EventBody::OrderPaid(p) = &mut late.body {
        p.delivery_promise = DeliveryPromise::SameDay;
        p.promised_delivery_by = Some(t("2024-05-09T12:00:00+08:00"));
    }
    let batches = vec![
        vec![paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00")],
        vec![paid("e3", "s2", "o3", "2024-05-10T10:00:00+08:00")],
        vec![late, paid("e4", "s2", "o4", "2024-05-10T11:00:00+08:00")],
    ];
    let breaches = |out: &[Output]| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Compensation(c)
                    if c.kind == crate::output::CompensationKind::DeliveryPromiseBreach =>
                {
                    Some(c.compensation_id())
                }
                _ => None,
            })
            .collect()
    };
    let kept = run_kept(&MemStore::new(), &batches);
    assert_eq!(breaches(&kept), vec!["o2:DELIVERY_PROMISE_BREACH".to_string()]);
    let reloaded = run(&MemStore::new(), &batches, true);
    assert_eq!(breaches(&kept), breaches(&reloaded));
}

/// Asserts that the store holds exactly the derived keys of its entries (`derived`).
fn assert_derived_keys_match(store: &MemStore) {
    let rows = store.scan(&[], &[], usize::MAX).unwrap();
    let (held, expected) = derived::held_and_expected(rows.iter().map(|(k, v)| (&k[..], &v[..]))).unwrap();
    assert_eq!(held, expected);
}

#[test]
fn an_earlier_payment_with_another_promise_moves_the_orders_timers() {
    let with_promise = |id: &str, at: &str, by: &str| {
        let mut ev = paid(id, "s1", "o1", at);
        if let EventBody::OrderPaid(p) = &mut ev.body {
            p.delivery_promise = DeliveryPromise::SameDay;
            p.promised_delivery_by = Some(t(by));
        }
        ev
    };
    let store = MemStore::new();
    let first = with_promise("e2", "2024-05-01T10:00:00+08:00", "2024-05-01T20:00:00+08:00");
    let mut out = run(&store, &[vec![first]], false);
    let timers =
        |store: &MemStore| store.scan(&crate::state::keys::timer_prefix(), &[], usize::MAX).unwrap().len();
    assert_eq!(timers(&store), 3, "ship deadline, promise, the buyer's group decision");
    assert_derived_keys_match(&store);
    // An earlier report of the payment wins (SPEC §9): its deadline, promise and group start
    // replace all three timers.
    let earlier = with_promise("e1", "2024-05-01T09:00:00+08:00", "2024-05-01T22:00:00+08:00");
    out.extend(run(&store, &[vec![earlier]], false));
    assert_eq!(timers(&store), 3);
    assert_derived_keys_match(&store);
    out.extend(run(&store, &[vec![paid("e3", "s1", "o9", "2024-05-05T10:00:00+08:00")]], true));
    assert_derived_keys_match(&store);
    let breaches: Vec<_> = compensations(&out)
        .into_iter()
        .filter(|c| c.kind == crate::output::CompensationKind::DeliveryPromiseBreach)
        .map(|c| (c.order_id.clone(), c.deadline))
        .collect();
    assert_eq!(breaches, vec![("o1".to_string(), t("2024-05-01T22:00:00+08:00"))]);
}

/// A copy of an applied event with the same event time, read from another partition, moves
/// that partition's clock, as the first copy moved its own; a reused id with another time
/// moves nothing. So the clocks, and the watermark, are the same whichever copy comes first.
#[test]
fn an_exact_duplicate_moves_its_partitions_clock_and_a_reused_id_does_not() {
    let first = paid("e1", "s1", "o1", "2024-05-01T10:00:00+08:00");
    let later = paid("e2", "s1", "o2", "2024-05-01T12:00:00+08:00");
    let reused = paid("e2", "s1", "o3", "2024-05-02T12:00:00+08:00");
    let source = SourcePos::File { file: "t".into(), line: 1 };
    let watermark_after = |events: &[(&Event, i32)]| {
        let store = MemStore::new();
        let mut ov = Overlay::new(&store);
        let mut engine = Engine::load(&mut ov, RulesConfig::default()).unwrap();
        engine.register_partition(0, "orders");
        engine.register_partition(1, "orders");
        for &(ev, partition) in events {
            engine.apply(&mut ov, ev, partition, &source).unwrap();
        }
        engine.flush_with(&mut ov, false, engine::Snapshots::Refresh, &mut Vec::new()).unwrap();
        (engine.watermark(), engine.counters().duplicates)
    };
    // Both events on both partitions, either partition first: both clocks at 12:00 (before,
    // the partition read second had no clock and held the watermark back).
    let expected = Some(t("2024-05-01T12:00:00+08:00").plus_ms(-5 * 60_000));
    assert_eq!(watermark_after(&[(&first, 0), (&later, 0), (&later, 1), (&first, 1)]), (expected, 2));
    assert_eq!(watermark_after(&[(&later, 1), (&first, 1), (&first, 0), (&later, 0)]), (expected, 2));
    assert_eq!(watermark_after(&[(&later, 0), (&later, 1)]), (expected, 1));
    // A reused id with another time is counted, and moves no clock: partition 1 has none yet.
    assert_eq!(watermark_after(&[(&later, 0), (&reused, 1)]), (None, 1));
}
