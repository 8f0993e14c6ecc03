//! `tracing` setup: logs go to stderr (stdout stays free for command output), human-readable
//! on a terminal and JSON lines otherwise (or always with `log.format = "json"`). The filter is
//! `RUST_LOG` when set and valid, else `log.level`.
//!
//! [`metrics`] holds the Prometheus metrics and [`progress`] the progress reporting of long
//! runs; both are passed explicitly to whoever updates them (no global state). [`memory`]
//! samples where the process's memory goes.

pub mod memory;
pub mod metrics;
pub mod progress;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Calling it again (tests, several commands in one process)
/// keeps the first subscriber and does nothing.
pub fn init(cfg: &LogConfig) {
    let (filter, rust_log_error) = filter(cfg);
    let json = use_json(cfg.format, std::io::stderr().is_terminal());
    let installed = if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .flatten_event(true)
            .try_init()
            .is_ok()
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init().is_ok()
    };
    if let (true, Some(err)) = (installed, rust_log_error) {
        tracing::warn!(
            error = %err,
            level = %cfg.level,
            "RUST_LOG is not a valid filter; using log.level instead"
        );
    }
}

/// JSON unless the format is `human`, or `auto` on a terminal.
fn use_json(format: LogFormat, stderr_is_terminal: bool) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !stderr_is_terminal,
    }
}

/// `RUST_LOG` wins when set; an invalid one falls back to `log.level` (and is reported).
fn filter(cfg: &LogConfig) -> (EnvFilter, Option<String>) {
    let from_config = || EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(f) => (f, None),
            Err(e) => (from_config(), Some(format!("{value:?}: {e}"))),
        },
        _ => (from_config(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_choice() {
        assert!(use_json(LogFormat::Json, true));
        assert!(!use_json(LogFormat::Human, false));
        assert!(use_json(LogFormat::Auto, false));
        assert!(!use_json(LogFormat::Auto, true));
    }

    #[test]
    fn init_twice_does_not_panic() {
        // "off" keeps the other tests of this binary quiet on stderr.
        let quiet = LogConfig { format: LogFormat::Json, level: "off".to_owned() };
        init(&quiet);
        init(&LogConfig { format: LogFormat::Human, level: "debug".to_owned() });
        tracing::info!("not shown: the first subscriber stays");
    }
}
