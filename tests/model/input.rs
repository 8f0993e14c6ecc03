//! The model's view of the input: decoded events in stream order, first copy of each
//! `event_id` kept (SPEC §9), and the final watermark of a bounded file run (SPEC §8: the
//! largest event time seen). Lines that fail to decode are skipped (tested elsewhere).

use shopscore::domain::decode::{decode_json, DecodeOptions};
use shopscore::domain::event::Event;
use shopscore::domain::Timestamp;
use std::collections::HashSet;

/// The events the model computes from.
pub struct Input {
    /// Unique valid events, in stream order, with their 1-based line number.
    pub events: Vec<(u64, Event)>,
    /// The final watermark: the largest event time among `events`.
    pub watermark: Timestamp,
}

/// Decodes `lines` (one JSON event each, without terminators) the way file mode reads them.
pub fn read(lines: &[Vec<u8>]) -> Input {
    let opts = DecodeOptions::default();
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // A UTF-8 byte-order mark at the start of a file is skipped (SPEC §9).
        let line = if i == 0 { line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line) } else { line };
        let Ok(ev) = decode_json(line, None, &opts) else { continue };
        if seen.insert(ev.event_id.clone()) {
            events.push((i as u64 + 1, ev));
        }
    }
    let watermark = events.iter().map(|(_, e)| e.event_time).max().unwrap_or_default();
    Input { events, watermark }
}

/// The largest step backwards in event time between a line and the latest event time
/// before it (0 when the input is in event-time order). Within the 5-minute bound, no
/// event is late and the batch model must equal the streaming result.
pub fn max_disorder_ms(input: &Input) -> i64 {
    let mut max_seen = i64::MIN;
    let mut worst = 0;
    for (_, ev) in &input.events {
        worst = worst.max(max_seen.saturating_sub(ev.event_time.0));
        max_seen = max_seen.max(ev.event_time.0);
    }
    worst
}
