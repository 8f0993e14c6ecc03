//! Progress of long runs and replays: a progress bar when stderr is a terminal, periodic
//! `tracing` lines otherwise (logs collected by a platform), and a summary at the end.
//!
//! Callers count *work* in whatever unit they know the total of (file mode: input bytes;
//! a Kafka replay: records up to the end offsets) and *records* separately, and give the
//! position of every source (file, or topic/partition). [`Progress::due`] is a cheap check
//! so a hot loop builds the positions only when something will be shown.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Where one source stands: a file (byte offset, file length) or a Kafka partition
/// (`topic/partition`, next offset, end offset).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    pub source: String,
    pub offset: u64,
    /// The end of the source when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

/// Reports progress every `every` (and redraws a terminal bar more often).
pub struct Progress {
    total: Option<u64>,
    every: Duration,
    started: Instant,
    last_shown: Instant,
    bar: Option<ProgressBar>,
    done: u64,
    records: u64,
}

/// How often a terminal bar is redrawn.
const BAR_TICK: Duration = Duration::from_millis(200);

impl Progress {
    /// Progress towards `total` work units (None: unknown), shown every `every`; a bar when
    /// stderr is a terminal.
    pub fn new(total: Option<u64>, every: Duration) -> Progress {
        Self::with_terminal(total, every, std::io::stderr().is_terminal())
    }

    /// Like [`Progress::new`] with the terminal decision made by the caller (tests).
    pub fn with_terminal(total: Option<u64>, every: Duration, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar
        });
        let now = Instant::now();
        Progress { total, every, started: now, last_shown: now, bar, done: 0, records: 0 }
    }

    /// True when the next [`Progress::update`] would show something.
    pub fn due(&self) -> bool {
        let period = if self.bar.is_some() { BAR_TICK.min(self.every) } else { self.every };
        self.last_shown.elapsed() >= period
    }

    /// Records progress: `done` work units out of the total, `records` read so far, and
    /// where every source stands. Shows it when due.
    pub fn update(&mut self, done: u64, records: u64, positions: &[Position]) {
        self.done = done;
        self.records = records;
        if !self.due() {
            return;
        }
        self.last_shown = Instant::now();
        let rate = self.rate();
        let eta = self.eta();
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{records} records, {rate:.0}/s"));
                bar.tick();
            }
            None => tracing::info!(
                records,
                records_per_s = rate as u64,
                done_percent = self.percent(),
                eta_s = eta.map(|d| d.as_secs()),
                positions = %describe(positions),
                "progress"
            ),
        }
    }

    /// Changes the total (a source's end learned late: a replay raises a partition's end to
    /// the first fetch answer's high watermark).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Ends the report with a summary line (and clears a terminal bar).
    pub fn finish(&mut self) -> Summary {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let s =
            Summary { records: self.records, elapsed: self.started.elapsed(), records_per_s: self.rate() };
        tracing::info!(
            records = s.records,
            elapsed_s = format!("{:.2}", s.elapsed.as_secs_f64()),
            records_per_s = s.records_per_s as u64,
            "progress: finished"
        );
        s
    }

    /// Records per second since the start.
    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        }
    }

    fn percent(&self) -> Option<u64> {
        self.total.filter(|t| *t > 0).map(|t| self.done.min(t) * 100 / t)
    }

    /// Remaining time at the average speed so far, when the total is known.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        if self.done == 0 {
            return None;
        }
        let left = total.saturating_sub(self.done) as f64;
        Some(Duration::from_secs_f64(self.started.elapsed().as_secs_f64() * left / self.done as f64))
    }
}

/// What a run did, as shown at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub records: u64,
    pub elapsed: Duration,
    pub records_per_s: f64,
}

/// `a.jsonl@1024/4096 b.jsonl@0/10` — every source's position (and end when known).
pub fn describe(positions: &[Position]) -> String {
    let mut out = String::new();
    for (i, p) in positions.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{}@{}", p.source, p.offset);
        if let Some(end) = p.end {
            let _ = write!(out, "/{end}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_only_after_the_interval_and_eta_from_the_rate() {
        let mut p = Progress::with_terminal(Some(1000), Duration::from_millis(50), false);
        assert!(!p.due());
        assert_eq!(p.eta(), None, "nothing done yet");
        std::thread::sleep(Duration::from_millis(60));
        assert!(p.due());
        p.update(500, 10, &[]);
        assert!(!p.due(), "just shown");
        // Half done after ~60 ms: about as long again.
        let eta = p.eta().unwrap();
        assert!(eta >= Duration::from_millis(50) && eta < Duration::from_secs(5), "{eta:?}");
        assert_eq!(p.percent(), Some(50));
        p.update(1000, 20, &[]);
        assert_eq!(p.eta(), Some(Duration::ZERO));
        let s = p.finish();
        assert_eq!(s.records, 20);
        assert!(s.records_per_s > 0.0);
    }

    #[test]
    fn a_raised_total_lowers_the_percent_done() {
        let mut p = Progress::with_terminal(Some(100), Duration::ZERO, false);
        p.update(50, 50, &[]);
        assert_eq!(p.percent(), Some(50));
        p.set_total(200);
        assert_eq!(p.percent(), Some(25));
        p.update(200, 200, &[]);
        assert_eq!(p.percent(), Some(100));
    }

    #[test]
    fn unknown_total_has_no_eta_or_percent() {
        let mut p = Progress::with_terminal(None, Duration::ZERO, false);
        p.update(5, 5, &[]);
        assert_eq!(p.eta(), None);
        assert_eq!(p.percent(), None);
    }

    #[test]
    fn positions_are_described_per_source() {
        let ps = [
            Position { source: "a.jsonl".into(), offset: 1024, end: Some(4096) },
            Position { source: "orders/3".into(), offset: 7, end: None },
        ];
        assert_eq!(describe(&ps), "a.jsonl@1024/4096 orders/3@7");
    }
}
