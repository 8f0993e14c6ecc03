//! Graceful shutdown on SIGTERM / SIGINT, shared by file mode and the Kafka runtime.
//!
//! The first signal sets a stop flag ([`Shutdown::flag`]); the pipeline checks it after
//! every record, finishes the batch in flight, commits it and returns, and the process
//! exits 0. If that takes longer than `pipeline.shutdown_timeout`, or a second signal
//! arrives, the process exits at once with [`FORCED_EXIT_CODE`] without committing more —
//! which is safe, because every commit is atomic (a forced exit is just a crash, and the
//! next start resumes from the last commit).

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Exit status of a forced stop (second signal or shutdown timeout).
pub const FORCED_EXIT_CODE: i32 = 2;

/// Installing the signal handlers failed.
#[derive(Debug, Error)]
#[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
pub struct ShutdownError(#[from] std::io::Error);

/// A stop request: set by a signal (or by [`Shutdown::request`]), read by the pipeline.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A stop flag no signal sets (tests, library callers).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Installs SIGTERM/SIGINT handlers: the first signal requests a stop, a second one
    /// exits with [`FORCED_EXIT_CODE`] immediately, and a stop that is not done `timeout`
    /// after the first signal exits the same way.
    pub fn install(timeout: Duration) -> Result<Shutdown, ShutdownError> {
        let s = Shutdown::new();
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit checks the flag before the second
            // handler sets it, so only a signal arriving with the flag already set exits.
            signal_hook::flag::register_conditional_shutdown(sig, FORCED_EXIT_CODE, s.flag.clone())?;
            signal_hook::flag::register(sig, s.flag.clone())?;
        }
        let watched = s.clone();
        std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
            while !watched.is_requested() {
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::info!(timeout = ?timeout, "stop requested: finishing the batch in flight and committing");
            std::thread::sleep(timeout);
            eprintln!(
                "shopscore: did not stop within pipeline.shutdown_timeout ({}); exiting without committing more",
                humantime::format_duration(timeout)
            );
            // `_exit`: no destructors racing the pipeline thread; the last commit stands.
            signal_hook::low_level::exit(FORCED_EXIT_CODE);
        })?;
        Ok(s)
    }

    /// The shared flag (true once a stop is requested), for loops that poll it.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Requests a stop, as the first signal does.
    pub fn request(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_seen_through_every_clone_and_the_flag() {
        let s = Shutdown::new();
        let flag = s.flag();
        let other = s.clone();
        assert!(!other.is_requested());
        s.request();
        assert!(other.is_requested());
        assert!(flag.load(Ordering::Relaxed));
    }
}
