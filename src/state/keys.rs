//! Typed state keys and their byte layout.
//!
//! Every key starts with a one-byte tag naming its family; variable-length strings are
//! length-prefixed so that any byte may appear in an id; days are big-endian with the sign
//! bit flipped so that key order is day order. Per-shop families put the shop first, so a
//! shop's entries are contiguous (and a future partition-by-shop changelog can scan them).

use crate::domain::{Day, Timestamp};

/// A state key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// Process-wide bookkeeping.
    Meta(MetaKey<'a>),
    /// An `event_id` already applied (dedup, SPEC §9).
    Seen(&'a str),
    /// Per-order facts of one shop.
    Order { shop: &'a str, order: &'a str },
    /// Per-refund facts of one shop.
    Refund { shop: &'a str, refund: &'a str },
    /// One shop's counters for one Asia/Shanghai day.
    DayBucket { shop: &'a str, day: Day },
    /// The last snapshot emitted for a shop (values and version).
    Snapshot { shop: &'a str },
    /// Index: `shop` has data on `day` (drives re-evaluation when days enter or leave windows).
    DayShop { day: Day, shop: &'a str },
    /// One buyer's valid DSR ratings of a shop for one month of trade success.
    DsrGroup { shop: &'a str, buyer: &'a str, month: i32 },
    /// One buyer's service ratings of a shop.
    ServiceHistory { shop: &'a str, buyer: &'a str },
    /// An event-time timer: fires when the watermark passes `at`.
    Timer { at: Timestamp, kind: TimerKind, shop: &'a str, id: &'a str },
    /// Alert rule states of a shop.
    AlertState { shop: &'a str },
    /// One buyer's orders at a shop awaiting a late-shipment group decision.
    BuyerOrders { shop: &'a str, buyer: &'a str },
    /// A shop whose values changed after its last snapshot, while snapshots were deferred
    /// (no watermark yet, or Kafka mode's `kafka.snapshot_interval`): it is re-evaluated at
    /// the next refresh, also after a restart or by a shard's next owner.
    PendingSnapshot { shop: &'a str },
}

/// What an event-time timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// An order's ship deadline (`id` = order).
    ShipDeadline = 0,
    /// An order's promised delivery time (`id` = order).
    PromiseDeadline = 1,
    /// A compensation group's decision time (`id` = buyer).
    GroupDecision = 2,
}

impl TimerKind {
    fn from_u8(b: u8) -> Option<TimerKind> {
        match b {
            0 => Some(TimerKind::ShipDeadline),
            1 => Some(TimerKind::PromiseDeadline),
            2 => Some(TimerKind::GroupDecision),
            _ => None,
        }
    }
}

/// A decoded timer key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerRef {
    pub at: Timestamp,
    pub kind: TimerKind,
    pub shop: String,
    pub id: String,
}

/// Bookkeeping keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// The state format version ([`super::codec::FORMAT_VERSION`]).
    FormatVersion,
    /// Watermark tracker state.
    Watermark,
    /// Pipeline counters (late events, duplicates, dead letters…).
    Counters,
    /// The sink's commit checkpoint.
    SinkCheckpoint,
    /// Committed read position of one input file (by canonical path).
    FilePosition(&'a str),
    /// Kafka mode: the shard's input positions and commit sequence number.
    KafkaProgress,
    /// Kafka mode without transactions: the head of the last commit's outputs, until
    /// delivered (the records are in [`MetaKey::OutboxChunk`]s).
    Outbox,
    /// One chunk of the outbox's records (chunks keep each changelog record small).
    OutboxChunk(u32),
    /// Kafka mode: the changelog offset this local store has applied up to. Local only:
    /// never written to the changelog itself.
    ChangelogOffset,
    /// Kafka mode: one seen pack in the changelog (commit `seq`, chunk `chunk`), whose
    /// latest event time is `max_time`; the value is its number of entries. Keys sort by
    /// that time, so the packs past the retention horizon are a prefix of them.
    SeenPack { max_time: Timestamp, seq: u64, chunk: u32 },
}

const TAG_META: u8 = 0x00;
const TAG_SEEN: u8 = 0x01;
const TAG_ORDER: u8 = 0x02;
const TAG_REFUND: u8 = 0x03;
const TAG_DAY_BUCKET: u8 = 0x04;
const TAG_SNAPSHOT: u8 = 0x05;
const TAG_DAY_SHOP: u8 = 0x06;
const TAG_DSR_GROUP: u8 = 0x07;
const TAG_SERVICE: u8 = 0x08;
const TAG_TIMER: u8 = 0x09;
const TAG_ALERT: u8 = 0x0a;
const TAG_BUYER_ORDERS: u8 = 0x0b;
const TAG_PENDING_SNAPSHOT: u8 = 0x0c;

/// The tag bytes after [`TAG_META`] of [`MetaKey::SeenPack`] keys.
const SEEN_PACK_INDEX: &[u8] = &[9];

/// Prefix of every [`MetaKey::SeenPack`] key.
pub fn seen_pack_index_prefix() -> Vec<u8> {
    let mut out = vec![TAG_META];
    out.extend_from_slice(SEEN_PACK_INDEX);
    out
}

/// `(max_time, seq, chunk)` of a [`MetaKey::SeenPack`] key.
pub fn seen_pack_of_index_key(key: &[u8]) -> Option<(Timestamp, u64, u32)> {
    let rest = key.strip_prefix(seen_pack_index_prefix().as_slice())?;
    let max_time = read_time(rest)?;
    let seq = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    let chunk = u32::from_be_bytes(rest.get(16..20)?.try_into().ok()?);
    Some((max_time, seq, chunk))
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_day(out: &mut Vec<u8>, day: Day) {
    out.extend_from_slice(&((day.0 as u32) ^ 0x8000_0000).to_be_bytes());
}

fn push_time(out: &mut Vec<u8>, t: Timestamp) {
    out.extend_from_slice(&((t.0 as u64) ^ (1 << 63)).to_be_bytes());
}

fn read_time(b: &[u8]) -> Option<Timestamp> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(Timestamp((u64::from_be_bytes(arr) ^ (1 << 63)) as i64))
}

fn read_day(b: &[u8]) -> Option<Day> {
    let arr: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(Day((u32::from_be_bytes(arr) ^ 0x8000_0000) as i32))
}

fn read_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(4..4 + len)?).ok()?;
    Some((s, &b[4 + len..]))
}

impl Key<'_> {
    /// The key's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode_into(&mut out);
        out
    }

    /// Appends the key's bytes to `out` (lets callers reuse one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Key::Meta(m) => {
                out.push(TAG_META);
                match m {
                    MetaKey::FormatVersion => out.push(0),
                    MetaKey::Watermark => out.push(1),
                    MetaKey::Counters => out.push(2),
                    MetaKey::SinkCheckpoint => out.push(3),
                    MetaKey::FilePosition(p) => {
                        out.push(4);
                        push_str(out, p);
                    }
                    MetaKey::KafkaProgress => out.push(5),
                    MetaKey::Outbox => out.push(6),
                    MetaKey::ChangelogOffset => out.push(7),
                    MetaKey::OutboxChunk(i) => {
                        out.push(8);
                        out.extend_from_slice(&i.to_be_bytes());
                    }
                    MetaKey::SeenPack { max_time, seq, chunk } => {
                        out.extend_from_slice(SEEN_PACK_INDEX);
                        push_time(out, *max_time);
                        out.extend_from_slice(&seq.to_be_bytes());
                        out.extend_from_slice(&chunk.to_be_bytes());
                    }
                }
            }
            Key::Seen(id) => {
                out.push(TAG_SEEN);
                out.extend_from_slice(id.as_bytes());
            }
            Key::Order { shop, order } => {
                out.push(TAG_ORDER);
                push_str(out, shop);
                push_str(out, order);
            }
            Key::Refund { shop, refund } => {
                out.push(TAG_REFUND);
                push_str(out, shop);
                push_str(out, refund);
            }
            Key::DayBucket { shop, day } => {
                out.push(TAG_DAY_BUCKET);
                push_str(out, shop);
                push_day(out, *day);
            }
            Key::Snapshot { shop } => {
                out.push(TAG_SNAPSHOT);
                push_str(out, shop);
            }
            Key::DayShop { day, shop } => {
                out.push(TAG_DAY_SHOP);
                push_day(out, *day);
                push_str(out, shop);
            }
            Key::DsrGroup { shop, buyer, month } => {
                out.push(TAG_DSR_GROUP);
                push_str(out, shop);
                push_str(out, buyer);
                out.extend_from_slice(&month.to_be_bytes());
            }
            Key::ServiceHistory { shop, buyer } => {
                out.push(TAG_SERVICE);
                push_str(out, shop);
                push_str(out, buyer);
            }
            Key::Timer { at, kind, shop, id } => {
                out.push(TAG_TIMER);
                push_time(out, *at);
                out.push(*kind as u8);
                push_str(out, shop);
                push_str(out, id);
            }
            Key::AlertState { shop } => {
                out.push(TAG_ALERT);
                push_str(out, shop);
            }
            Key::BuyerOrders { shop, buyer } => {
                out.push(TAG_BUYER_ORDERS);
                push_str(out, shop);
                push_str(out, buyer);
            }
            Key::PendingSnapshot { shop } => {
                out.push(TAG_PENDING_SNAPSHOT);
                push_str(out, shop);
            }
        }
    }
}

/// The family of a raw key (its first byte), for code that must treat families alike
/// without decoding whole keys (retention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Meta,
    Seen,
    Order,
    Refund,
    DayBucket,
    Snapshot,
    DayShop,
    DsrGroup,
    ServiceHistory,
    Timer,
    AlertState,
    BuyerOrders,
    PendingSnapshot,
}

/// The family of a raw key.
pub fn family(key: &[u8]) -> Option<Family> {
    Some(match *key.first()? {
        TAG_META => Family::Meta,
        TAG_SEEN => Family::Seen,
        TAG_ORDER => Family::Order,
        TAG_REFUND => Family::Refund,
        TAG_DAY_BUCKET => Family::DayBucket,
        TAG_SNAPSHOT => Family::Snapshot,
        TAG_DAY_SHOP => Family::DayShop,
        TAG_DSR_GROUP => Family::DsrGroup,
        TAG_SERVICE => Family::ServiceHistory,
        TAG_TIMER => Family::Timer,
        TAG_ALERT => Family::AlertState,
        TAG_BUYER_ORDERS => Family::BuyerOrders,
        TAG_PENDING_SNAPSHOT => Family::PendingSnapshot,
        _ => return None,
    })
}

/// The first byte of every key of `family`.
pub fn family_tag(family: Family) -> u8 {
    match family {
        Family::Meta => TAG_META,
        Family::Seen => TAG_SEEN,
        Family::Order => TAG_ORDER,
        Family::Refund => TAG_REFUND,
        Family::DayBucket => TAG_DAY_BUCKET,
        Family::Snapshot => TAG_SNAPSHOT,
        Family::DayShop => TAG_DAY_SHOP,
        Family::DsrGroup => TAG_DSR_GROUP,
        Family::ServiceHistory => TAG_SERVICE,
        Family::Timer => TAG_TIMER,
        Family::AlertState => TAG_ALERT,
        Family::BuyerOrders => TAG_BUYER_ORDERS,
        Family::PendingSnapshot => TAG_PENDING_SNAPSHOT,
    }
}

/// The day of a day→shop index key.
pub fn day_of_day_shop_key(key: &[u8]) -> Option<Day> {
    if key.first() != Some(&TAG_DAY_SHOP) {
        return None;
    }
    read_day(key.get(1..)?)
}

/// Whether `key` belongs to a family that is only ever read by exact key, never by a
/// prefix scan. The [`super::overlay::Overlay`] keeps buffered writes of every other family
/// (and of unknown tags) in key order so that scans can merge them.
pub fn is_point_only(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(
            &TAG_META
                | &TAG_SEEN
                | &TAG_ORDER
                | &TAG_REFUND
                | &TAG_SNAPSHOT
                | &TAG_DSR_GROUP
                | &TAG_SERVICE
                | &TAG_ALERT
                | &TAG_BUYER_ORDERS
        )
    )
}

/// Prefix of all day buckets of one shop.
pub fn day_bucket_prefix(shop: &str) -> Vec<u8> {
    let mut out = vec![TAG_DAY_BUCKET];
    push_str(&mut out, shop);
    out
}

/// The day of a day-bucket key (None if the key is not one).
pub fn day_of_bucket_key(key: &[u8]) -> Option<Day> {
    if key.first() != Some(&TAG_DAY_BUCKET) {
        return None;
    }
    let (_, rest) = read_str(&key[1..])?;
    read_day(rest)
}

/// Prefix of the day→shop index for one day.
pub fn day_shop_prefix(day: Day) -> Vec<u8> {
    let mut out = vec![TAG_DAY_SHOP];
    push_day(&mut out, day);
    out
}

/// The shop of a day→shop index key.
pub fn shop_of_day_shop_key(key: &[u8]) -> Option<&str> {
    if key.first() != Some(&TAG_DAY_SHOP) {
        return None;
    }
    read_str(key.get(5..)?).map(|(s, _)| s)
}

/// Prefix of all timers (in firing order).
pub fn timer_prefix() -> Vec<u8> {
    vec![TAG_TIMER]
}

/// Where the timers due at `at` or later begin (a seek position under [`timer_prefix`]).
pub fn timer_seek_key(at: Timestamp) -> Vec<u8> {
    let mut out = timer_prefix();
    push_time(&mut out, at);
    out
}

/// Decodes a timer key.
pub fn parse_timer_key(key: &[u8]) -> Option<TimerRef> {
    if key.first() != Some(&TAG_TIMER) {
        return None;
    }
    let at = read_time(key.get(1..)?)?;
    let kind = TimerKind::from_u8(*key.get(9)?)?;
    let (shop, rest) = read_str(key.get(10..)?)?;
    let (id, _) = read_str(rest)?;
    Some(TimerRef { at, kind, shop: shop.to_owned(), id: id.to_owned() })
}

/// `(shop, order)` of an order-facts key.
pub fn order_of_key(key: &[u8]) -> Option<(&str, &str)> {
    two_strs_after_tag(key, TAG_ORDER)
}

/// `(shop, buyer)` of a buyer's pending-orders key.
pub fn buyer_orders_of_key(key: &[u8]) -> Option<(&str, &str)> {
    two_strs_after_tag(key, TAG_BUYER_ORDERS)
}

/// `(shop, day)` of a day-bucket key.
pub fn shop_day_of_bucket_key(key: &[u8]) -> Option<(&str, Day)> {
    if key.first() != Some(&TAG_DAY_BUCKET) {
        return None;
    }
    let (shop, rest) = read_str(&key[1..])?;
    Some((shop, read_day(rest)?))
}

/// The two strings after `tag` of a key of a family keyed by shop and one id.
fn two_strs_after_tag(key: &[u8], tag: u8) -> Option<(&str, &str)> {
    if key.first() != Some(&tag) {
        return None;
    }
    let (a, rest) = read_str(&key[1..])?;
    let (b, _) = read_str(rest)?;
    Some((a, b))
}

/// Prefix of all snapshot records.
pub fn snapshot_prefix() -> Vec<u8> {
    vec![TAG_SNAPSHOT]
}

/// Prefix of all pending-snapshot marks.
pub fn pending_snapshot_prefix() -> Vec<u8> {
    vec![TAG_PENDING_SNAPSHOT]
}

/// The shop of a pending-snapshot mark.
pub fn shop_of_pending_snapshot_key(key: &[u8]) -> Option<&str> {
    shop_after_tag(key, TAG_PENDING_SNAPSHOT)
}

/// The shop of a snapshot key.
pub fn shop_of_snapshot_key(key: &[u8]) -> Option<&str> {
    shop_after_tag(key, TAG_SNAPSHOT)
}

/// The shop of a key of a family keyed by shop alone (`tag`, then the shop).
fn shop_after_tag(key: &[u8], tag: u8) -> Option<&str> {
    if key.first() != Some(&tag) {
        return None;
    }
    read_str(&key[1..]).map(|(s, _)| s)
}

/// A printable description of a raw key, for error messages.
pub fn describe(key: &[u8]) -> String {
    let family = match key.first() {
        Some(&TAG_META) => "meta",
        Some(&TAG_SEEN) => "seen",
        Some(&TAG_ORDER) => "order",
        Some(&TAG_REFUND) => "refund",
        Some(&TAG_DAY_BUCKET) => "day-bucket",
        Some(&TAG_SNAPSHOT) => "snapshot",
        Some(&TAG_DAY_SHOP) => "day-shop",
        Some(&TAG_DSR_GROUP) => "dsr-group",
        Some(&TAG_SERVICE) => "service-history",
        Some(&TAG_TIMER) => "timer",
        Some(&TAG_ALERT) => "alert-state",
        Some(&TAG_BUYER_ORDERS) => "buyer-orders",
        Some(&TAG_PENDING_SNAPSHOT) => "pending-snapshot",
        _ => "unknown",
    };
    format!("{family}:{}", String::from_utf8_lossy(key.get(1..).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_pack_keys_sort_by_time_and_decode() {
        let k = |t: i64, seq: u64| {
            Key::Meta(MetaKey::SeenPack { max_time: Timestamp(t), seq, chunk: 2 }).encode()
        };
        assert!(k(-5, 9) < k(3, 1) && k(3, 1) < k(3, 2) && k(3, 2) < k(1_700_000_000_000, 0));
        assert!(k(3, 1).starts_with(&seen_pack_index_prefix()));
        assert_eq!(seen_pack_of_index_key(&k(3, 7)), Some((Timestamp(3), 7, 2)));
        assert_eq!(seen_pack_of_index_key(&Key::Meta(MetaKey::OutboxChunk(1)).encode()), None);
    }

    #[test]
    fn day_keys_sort_by_day_including_negative() {
        let a = Key::DayBucket { shop: "s", day: Day(-3) }.encode();
        let b = Key::DayBucket { shop: "s", day: Day(5) }.encode();
        let c = Key::DayBucket { shop: "s", day: Day(19_000) }.encode();
        assert!(a < b && b < c);
        assert_eq!(day_of_bucket_key(&c), Some(Day(19_000)));
        assert!(a.starts_with(&day_bucket_prefix("s")));
        assert!(!a.starts_with(&day_bucket_prefix("s2")));
    }

    #[test]
    fn timers_sort_by_time_and_round_trip() {
        let a =
            Key::Timer { at: Timestamp(-5), kind: TimerKind::GroupDecision, shop: "s", id: "b1" }.encode();
        let b = Key::Timer { at: Timestamp(7), kind: TimerKind::ShipDeadline, shop: "s", id: "o1" }.encode();
        assert!(a < b);
        let r = parse_timer_key(&a).unwrap();
        assert_eq!(
            (r.at, r.kind, r.shop.as_str(), r.id.as_str()),
            (Timestamp(-5), TimerKind::GroupDecision, "s", "b1")
        );
        assert!(b.starts_with(&timer_prefix()));
    }

    #[test]
    fn shops_with_shared_prefixes_do_not_collide() {
        let a = Key::Order { shop: "ab", order: "c" }.encode();
        let b = Key::Order { shop: "a", order: "bc" }.encode();
        assert_ne!(a, b);
        let k = Key::DayShop { day: Day(7), shop: "s\u{0}1" }.encode();
        assert_eq!(shop_of_day_shop_key(&k), Some("s\u{0}1"));
        assert!(k.starts_with(&day_shop_prefix(Day(7))));
    }

    #[test]
    fn shop_and_id_keys_decode() {
        let o = Key::Order { shop: "s\u{0}1", order: "o9" }.encode();
        assert_eq!(order_of_key(&o), Some(("s\u{0}1", "o9")));
        assert_eq!(buyer_orders_of_key(&o), None);
        let b = Key::BuyerOrders { shop: "s", buyer: "b1" }.encode();
        assert_eq!(buyer_orders_of_key(&b), Some(("s", "b1")));
        assert_eq!(order_of_key(&b), None);
        let d = Key::DayBucket { shop: "s", day: Day(-4) }.encode();
        assert_eq!(shop_day_of_bucket_key(&d), Some(("s", Day(-4))));
        assert_eq!(shop_day_of_bucket_key(&o), None);
    }
}
