//! Generator speed and memory at benchmark scale (1 M events, 10 000 shops, 200 days).
//! Ignored by default; run with
//! `cargo test --release --test gen_throughput -- --ignored --nocapture`.

use shopscore::gen::{generate, GenOptions};
use std::io::{self, Write};
use std::time::Instant;

/// Counts bytes and lines without keeping them.
struct Sink(u64, u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        self.1 += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kb() -> u64 {
    shopscore::bench::peak_rss_bytes().unwrap_or(0) / 1024
}

#[test]
#[ignore]
fn one_million_events() {
    let opts = GenOptions { events: 1_000_000, shops: 10_000, days: 200, ..GenOptions::default() };
    let mut sink = Sink(0, 0);
    let start = Instant::now();
    let summary = generate(&opts, &mut sink).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(summary.lines, 1_000_000);
    assert_eq!(sink.1, 1_000_000);
    println!(
        "gen: {summary:?} in {secs:.2}s = {:.0} lines/s, {} MB, peak RSS {} MB",
        summary.lines as f64 / secs,
        sink.0 / 1_000_000,
        peak_rss_kb() / 1024
    );
}
