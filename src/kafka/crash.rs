//! A test hook that crashes the process at one chosen step of the commit protocol, so a test
//! can prove that a crash exactly there neither loses nor repeats an output — random kills hit
//! a narrow window only now and then.
//!
//! Off unless the environment variable [`CRASH_ENV`] is set to `N` (the Kafka tests set it;
//! it is not a configuration key). The process then aborts — SIGABRT, no cleanup, like
//! kill -9 — right after the changelog marker of the `N`-th commit that has outputs is
//! acknowledged, before any of that commit's outputs is sent. It first prints one line to
//! stderr naming the shard, the commit and its output count.

use std::sync::atomic::{AtomicU64, Ordering};

/// `N`: abort after the `N`-th acknowledged marker of a commit with outputs.
pub const CRASH_ENV: &str = "SHOPSCORE_TEST_CRASH_AFTER_MARKERS";

/// The line printed before aborting (followed by ` shard=S commit=N outputs=K`).
pub const CRASH_LINE: &str = "test crash hook: aborting after the changelog marker";

#[derive(Debug)]
pub struct CrashHook {
    after: u64,
    seen: AtomicU64,
}

impl CrashHook {
    /// The hook [`CRASH_ENV`] asks for, if any (a value that is not a positive integer is
    /// ignored with a warning: this is a test hook, not configuration).
    pub fn from_env() -> Option<CrashHook> {
        let value = std::env::var(CRASH_ENV).ok()?;
        match value.trim().parse::<u64>() {
            Ok(after) if after > 0 => {
                tracing::warn!(after, "{CRASH_ENV} is set: the process will abort mid-commit");
                Some(CrashHook { after, seen: AtomicU64::new(0) })
            }
            _ => {
                tracing::warn!(value, "{CRASH_ENV} is not a positive integer; ignored");
                None
            }
        }
    }

    /// Called once the marker of commit `seq` of `shard` is acknowledged and before its
    /// `outputs` are sent; aborts the process at the chosen commit.
    pub fn marker_acked(&self, shard: u32, seq: u64, outputs: usize) {
        if outputs == 0 {
            return;
        }
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            eprintln!("{CRASH_LINE} shard={shard} commit={seq} outputs={outputs}");
            std::process::abort();
        }
    }
}
