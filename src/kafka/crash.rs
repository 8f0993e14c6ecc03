//! A test hook that crashes the process at a chosen step of the commit protocol, so a test can
//! prove that a crash exactly there neither loses nor repeats an output — random kills hit a
//! narrow window only now and then.
//!
//! Off unless the environment variable [`CRASH_ENV`] is set to `POINT:N` (the Kafka tests set
//! it; it is not a configuration key). The process then aborts — SIGABRT, no cleanup, like
//! kill -9 — when the `N`-th commit that has outputs reaches `POINT` ([`CrashPoint`]). It first
//! prints one line to stderr ([`CRASH_LINE`]) naming the point, the shard, the commit and its
//! output count.

use std::sync::atomic::{AtomicU64, Ordering};

/// `POINT:N`, e.g. `marker:3`.
pub const CRASH_ENV: &str = "SHOPSCORE_TEST_CRASH";

/// The start of the line printed before aborting (followed by
/// ` point=P shard=S commit=N outputs=K`).
pub const CRASH_LINE: &str = "test crash hook: aborting";

/// Where in a commit ([`super::shard`]'s protocol) the hook aborts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The changelog records and the marker are queued, none known to be delivered (with
    /// transactions and no outbox, the outputs too).
    Queued,
    /// The marker is acknowledged; no output is sent yet (not reached with transactions and
    /// no outbox, whose outputs are queued with the changelog).
    Marker,
    /// The local store is written; without transactions no output is sent yet, with them the
    /// transaction is committed.
    Stored,
    /// Without transactions: the outputs are sent and acknowledged, and the next commit has
    /// not deleted the outbox yet, so the next owner scans for records that are all there.
    /// (The commit waits for the acknowledgements only when the hook is set to this point.)
    Sent,
}

/// Every point, in commit order.
const POINTS: [CrashPoint; 4] =
    [CrashPoint::Queued, CrashPoint::Marker, CrashPoint::Stored, CrashPoint::Sent];

impl CrashPoint {
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::Queued => "queued",
            CrashPoint::Marker => "marker",
            CrashPoint::Stored => "stored",
            CrashPoint::Sent => "sent",
        }
    }

    /// The point named `s` ([`CrashPoint::name`]).
    pub fn parse(s: &str) -> Option<CrashPoint> {
        POINTS.into_iter().find(|p| p.name() == s)
    }
}

#[derive(Debug)]
pub struct CrashHook {
    point: CrashPoint,
    after: u64,
    seen: AtomicU64,
}

impl CrashHook {
    /// The hook [`CRASH_ENV`] asks for, if any (a malformed value is ignored with a warning:
    /// this is a test hook, not configuration).
    pub fn from_env() -> Option<CrashHook> {
        let value = std::env::var(CRASH_ENV).ok()?;
        let parsed = value.trim().split_once(':').and_then(|(point, n)| {
            Some((CrashPoint::parse(point)?, n.parse::<u64>().ok().filter(|&n| n > 0)?))
        });
        match parsed {
            Some((point, after)) => {
                tracing::warn!(
                    point = point.name(),
                    after,
                    "{CRASH_ENV} is set: the process will abort mid-commit"
                );
                Some(CrashHook { point, after, seen: AtomicU64::new(0) })
            }
            None => {
                tracing::warn!(
                    value,
                    "{CRASH_ENV} is not POINT:N (queued, marker or stored; N > 0); ignored"
                );
                None
            }
        }
    }

    /// The point this hook aborts at.
    pub fn point(&self) -> CrashPoint {
        self.point
    }

    /// Commit `seq` of `shard`, with `outputs` outputs, reached `point`: aborts the process if
    /// this is the chosen point and the chosen commit.
    pub fn reached(&self, point: CrashPoint, shard: u32, seq: u64, outputs: usize) {
        if point != self.point || outputs == 0 {
            return;
        }
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            eprintln!("{CRASH_LINE} point={} shard={shard} commit={seq} outputs={outputs}", point.name());
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_points_parse_by_name() {
        for p in POINTS {
            assert_eq!(CrashPoint::parse(p.name()), Some(p));
        }
        assert_eq!(CrashPoint::parse("Marker"), None);
    }

    #[test]
    fn the_hook_counts_only_its_point_and_commits_with_outputs() {
        // `after` is 3: two counted commits do not abort (a third would).
        let hook = CrashHook { point: CrashPoint::Marker, after: 3, seen: AtomicU64::new(0) };
        hook.reached(CrashPoint::Marker, 0, 1, 5);
        hook.reached(CrashPoint::Marker, 1, 1, 0);
        hook.reached(CrashPoint::Stored, 0, 1, 5);
        hook.reached(CrashPoint::Marker, 0, 2, 1);
        assert_eq!(hook.seen.load(Ordering::SeqCst), 2);
    }
}
