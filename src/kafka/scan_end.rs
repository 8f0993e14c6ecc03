//! When an outbox scan may stop reading (outbox recovery, [`super::outbox::missing`]).
//!
//! The scan reads each output partition from the offset recorded before the commit's records
//! were sent, looking for those records. A record it has not read by the time it stops is sent
//! again, so stopping early sends money twice: the scan must not stop before it has read every
//! record the broker acknowledged before the scan began. Such a record lies below the high
//! watermark of every fetch answer the scan gets, so a partition whose next offset has reached
//! that watermark is read through. Until session 28 the scan stopped after 1.5 s without a
//! record instead, and a broker slower than that to answer made every record look missing.
//!
//! A position below the end a fetch answer reported is never taken for read through, however
//! long it stays there: records the broker acknowledged are still to come (a slow broker, or an
//! answer its size limit cut). Until session 29 a partition quiet for 5 s below its end counted
//! as read through, for tansu 0.6 (below), so a broker slower than that per answer would have
//! made delivered records look missing, and sent them again. A scan that never reaches an end
//! fails the shard after the outbox's stall limit instead, which sends nothing twice.
//!
//! tansu 0.6's answers call for two allowances:
//! - a fetch returns only batches that start at or after the fetch offset, and the recorded
//!   start comes from its `ListOffsets`, which names the last batch's first offset + 1 (seen
//!   in session 28: start 7, the partition's records 0–7, its last batch from 6, the fetch
//!   answers' watermark 8). A scan from there would get nothing until a later batch is
//!   written, so the outbox scan reads from one offset before the recorded start
//!   ([`scan_from`]): that batch's first offset on tansu, the record before the start on Kafka.
//!   Records before the start are read and ignored;
//! - earlier sessions took its reported ends for the first offset of a partition's last batch
//!   (not seen in session 28), which a position could reach before reading that batch: an end
//!   reached counts only once the position is past it, or the end moved during the scan (so
//!   that batch is not the last), or the partition stayed quiet for [`AT_END_QUIET`] after its
//!   first answer and its last record.
//!
//! The rules are pure over the positions and ends observed; [`positions`] and [`fetched_end`]
//! observe them from librdkafka (the replay uses both too, to find its partitions' ends).

use super::{Context, KafkaError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a partition whose position equals its reported end must stay quiet (no record,
/// no first answer) before that end is believed, unless the end moved during the scan.
pub const AT_END_QUIET: Duration = Duration::from_millis(1500);

/// Where a scan of a partition starts for a recorded start offset: one offset before it, so
/// that a start inside tansu 0.6's last batch (its `ListOffsets` answer) still gets that batch
/// (see the module documentation). Should retention have deleted the log below the recorded
/// start, the offset is out of range and the scanner's `auto.offset.reset = earliest` reads
/// from the log start, which is then the recorded start itself.
pub fn scan_from(start: i64) -> i64 {
    (start - 1).max(0)
}

/// One scanned partition's progress.
#[derive(Debug)]
struct Partition {
    /// The next offset to read.
    next: i64,
    /// The first end a fetch answer reported, and when it was seen.
    first: Option<(i64, Instant)>,
    /// The last end reported.
    end: Option<i64>,
    /// When the last record of this partition was read.
    last_record: Option<Instant>,
}

impl Partition {
    /// `topic/partition next->end` (`end` is `none` before an answer), for the logs.
    fn describe(&self, topic: &str, partition: i32) -> String {
        let end = self.end.map_or_else(|| "none".to_owned(), |e| e.to_string());
        format!("{topic}/{partition} {}->{end}", self.next)
    }

    fn read_through(&self, now: Instant) -> bool {
        let (Some((first, answered)), Some(end)) = (self.first, self.end) else {
            return false; // no answer yet: a slow broker is not an empty partition
        };
        let quiet = now.saturating_duration_since(self.last_record.map_or(answered, |r| r.max(answered)));
        match self.next.cmp(&end) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => end > first || quiet >= AT_END_QUIET,
            // Records below the end are still to come, however long they take.
            std::cmp::Ordering::Less => false,
        }
    }
}

/// Every scanned partition's progress: records read and ends observed.
#[derive(Debug)]
pub struct ScanEnd {
    partitions: BTreeMap<(String, i32), Partition>,
}

impl ScanEnd {
    /// A scan of `starts`: `(topic, partition, first offset to read)`.
    pub fn new(starts: &[(String, i32, i64)]) -> Self {
        let partitions = starts
            .iter()
            .map(|(t, p, start)| {
                ((t.clone(), *p), Partition { next: *start, first: None, end: None, last_record: None })
            })
            .collect();
        ScanEnd { partitions }
    }

    /// A record at `offset` of the partition was read at `now`.
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.next = p.next.max(offset + 1);
            p.last_record = Some(now);
        }
    }

    /// The consumer's position in a partition is `next`: past records the application never
    /// sees (transaction markers), which would otherwise leave the scan below the end.
    pub fn position(&mut self, topic: &str, partition: i32, next: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            p.next = p.next.max(next);
        }
    }

    /// Takes each partition's latest reported end from `end_of` (`None`: no answer yet).
    pub fn observe(&mut self, mut end_of: impl FnMut(&str, i32) -> Option<i64>, now: Instant) {
        for ((topic, p), part) in &mut self.partitions {
            if let Some(end) = end_of(topic, *p) {
                part.first.get_or_insert((end, now));
                part.end = Some(end);
            }
        }
    }

    /// Whether every partition is read through (see the module's rules).
    pub fn ended(&self, now: Instant) -> bool {
        self.partitions.values().all(|p| p.read_through(now))
    }

    /// The partitions not yet read through, each as `topic/partition next->end` (`end` is
    /// `none` before an answer): what a scan's progress report names.
    pub fn waiting(&self, now: Instant) -> String {
        let waiting = self.partitions.iter().filter(|(_, part)| !part.read_through(now));
        waiting.map(|((topic, p), part)| part.describe(topic, *p)).collect::<Vec<_>>().join(", ")
    }
}

/// `(topic, partition, next offset)` of every assigned partition `consumer` has a position
/// in: past the last record the application was given, and past records it is never given
/// (transaction markers).
pub fn positions(consumer: &BaseConsumer) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let tpl = consumer.position().context(|| "reading the consumer's positions".into())?;
    Ok(tpl
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => Some((e.topic().to_owned(), e.partition(), next)),
            _ => None,
        })
        .collect())
}

/// The high watermark of the last fetch answer `consumer` got for the partition (librdkafka's
/// `rd_kafka_get_watermark_offsets`, which rust-rdkafka does not wrap): no request, and `None`
/// before the first answer.
pub fn fetched_end(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle is this live consumer's own; the topic is a NUL-terminated string
    // that outlives the call, and the two out-pointers are to locals. librdkafka reads the
    // partition's fields under its lock.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (RDKafkaErrorCode::from(code) == RDKafkaErrorCode::NoError && high >= 0).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(start: i64) -> (ScanEnd, Instant) {
        (ScanEnd::new(&[("out".to_owned(), 0, start)]), Instant::now())
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// The bug of session 27: with no answer yet, however long, the partition is not read.
    #[test]
    fn no_answer_is_never_an_end() {
        let (s, t0) = scan(10);
        assert!(!s.ended(at(t0, 600_000)));
        assert_eq!(s.waiting(at(t0, 600_000)), "out/0 10->none");
    }

    /// Kafka: an answer whose end the scan has reached ends it once the end moved during the
    /// scan, or after the quiet time; one it has not reached, only after the longer quiet time.
    #[test]
    fn an_end_reached_ends_after_the_quiet_time_or_when_it_moved() {
        let (mut s, t0) = scan(10);
        s.observe(|_, _| Some(12), t0);
        s.record("out", 0, 10, at(t0, 10));
        s.record("out", 0, 11, at(t0, 20));
        assert!(!s.ended(at(t0, 1_000)), "at the first end seen, not yet quiet");
        assert!(s.ended(at(t0, 20 + 1_500)), "quiet for AT_END_QUIET");

        let (mut s, t0) = scan(10);
        s.observe(|_, _| Some(12), t0);
        s.record("out", 0, 11, at(t0, 10));
        s.observe(|_, _| Some(14), at(t0, 20));
        assert!(!s.ended(at(t0, 30)), "the end moved, but is not reached");
        s.record("out", 0, 13, at(t0, 40));
        assert!(s.ended(at(t0, 41)), "an end that moved and was reached is believed at once");
    }

    /// tansu: a position past the reported end (the first offset of the last batch) ends at
    /// once.
    #[test]
    fn tansu_ends_past_the_reported_end() {
        let (mut s, t0) = scan(6);
        s.observe(|_, _| Some(6), t0);
        s.record("out", 0, 7, at(t0, 5));
        assert!(s.ended(at(t0, 5)));
    }

    /// A position below the reported end never ends, however long the partition stays quiet:
    /// the records between are still to come (a broker slower than any quiet time, or an
    /// answer its size limit cut). Until session 29 this ended after 5 s.
    #[test]
    fn a_position_below_the_end_never_ends() {
        let (mut s, t0) = scan(7);
        s.observe(|_, _| Some(8), at(t0, 100));
        assert!(!s.ended(at(t0, 600_000)));
        assert_eq!(s.waiting(at(t0, 600_000)), "out/0 7->8");
        s.record("out", 0, 6, at(t0, 700_000)); // the record before the start (scan_from)
        assert!(!s.ended(at(t0, 800_000)));
        s.record("out", 0, 7, at(t0, 900_000));
        assert!(s.ended(at(t0, 900_000 + 1_500)));
    }

    #[test]
    fn a_scan_starts_one_offset_before_its_start() {
        assert_eq!(scan_from(7), 6);
        assert_eq!(scan_from(1), 0);
        assert_eq!(scan_from(0), 0);
    }

    /// A partition whose last record is a transaction marker: the consumer's position, not the
    /// records read, reaches the end.
    #[test]
    fn a_position_past_a_marker_reaches_the_end() {
        let (mut s, t0) = scan(3);
        s.observe(|_, _| Some(6), t0);
        s.record("out", 0, 4, at(t0, 10));
        assert!(!s.ended(at(t0, 20)));
        s.position("out", 0, 6);
        s.observe(|_, _| Some(6), at(t0, 30));
        assert!(!s.ended(at(t0, 30)), "the first end seen, reached: the quiet time still applies");
        assert!(s.ended(at(t0, 10 + 1_500)));
    }

    /// Every partition must be read through; records of one do not end another.
    #[test]
    fn every_partition_must_be_read_through() {
        let t0 = Instant::now();
        let mut s = ScanEnd::new(&[("a".to_owned(), 0, 0), ("b".to_owned(), 1, 5)]);
        s.observe(|t, _| (t == "a").then_some(1), t0);
        s.record("a", 0, 0, t0);
        s.record("b", 1, 9, t0); // a record the broker sent before its first answer was seen
        assert!(!s.ended(at(t0, 10_000)));
        assert_eq!(s.waiting(at(t0, 10_000)), "b/1 10->none");
        s.observe(|t, _| Some(if t == "a" { 1 } else { 10 }), at(t0, 10_000));
        assert!(s.ended(at(t0, 11_500)));
    }
}
