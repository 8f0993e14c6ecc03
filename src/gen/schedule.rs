//! Puts generated events into output order: event-time order, then shuffled by at most
//! `max_disorder_ms`, in bounded memory.
//!
//! Stories schedule their future events into a min-heap by event time. Each event leaving
//! that heap gets an emission key `event_time + U[0, max_disorder]` and waits in a second
//! heap ordered by key; it is written once no event still to come can have a smaller key.
//! Lines are therefore in key order, and a later line's event time is at most
//! `max_disorder_ms` before an earlier line's.

use crate::domain::event::Event;
use rand::rngs::SmallRng;
use rand::Rng;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An event with its ordering key; ties broken by insertion order (determinism).
struct Keyed {
    key: i64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// The two heaps; see the module docs.
pub(super) struct Schedule {
    max_disorder_ms: i64,
    pending: BinaryHeap<Reverse<Keyed>>,
    ready: BinaryHeap<Reverse<Keyed>>,
    seq: u64,
}

impl Schedule {
    pub(super) fn new(max_disorder_ms: i64) -> Schedule {
        Schedule {
            max_disorder_ms: max_disorder_ms.max(0),
            pending: BinaryHeap::new(),
            ready: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules an event (at its event time).
    pub(super) fn push(&mut self, ev: Event) {
        self.seq += 1;
        self.pending.push(Reverse(Keyed { key: ev.event_time.0, seq: self.seq, ev }));
    }

    /// No event is waiting in either heap.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty()
    }

    /// The next event to write, provided every event scheduled from now on has an event
    /// time ≥ `limit`; `None` when nothing more can be written before `limit`.
    pub(super) fn next_before(&mut self, limit: i64, rng: &mut SmallRng) -> Option<Event> {
        loop {
            let next_time = self.pending.peek().map(|Reverse(k)| k.key);
            // Every event not yet in `ready` will get a key ≥ this bound.
            let bound = next_time.map_or(limit, |t| t.min(limit));
            match self.ready.peek() {
                Some(Reverse(k)) if k.key <= bound => return self.ready.pop().map(|r| r.0.ev),
                _ => {}
            }
            match next_time {
                Some(t) if t < limit => {
                    let Reverse(mut k) = self.pending.pop()?;
                    k.key += rng.random_range(0..=self.max_disorder_ms);
                    self.ready.push(Reverse(k));
                }
                _ => return None,
            }
        }
    }
}
