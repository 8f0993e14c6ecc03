//! Event-time instants and the Asia/Shanghai calendar.
//!
//! Every time in shopscore is an instant in epoch milliseconds ([`Timestamp`]). Calendar
//! notions (day, natural month) use Asia/Shanghai, a fixed UTC+8 with no DST, so no
//! time-zone database is needed. Parsing follows SPEC §2/§9: RFC 3339 with `T`, an offset
//! or `Z` and an optional fraction, or integer epoch milliseconds; valid instants lie in
//! [2000-01-01T00:00:00+08:00, 2100-01-01T00:00:00+08:00).

use chrono::{DateTime, Datelike, FixedOffset, TimeZone};
use std::fmt;

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Asia/Shanghai offset from UTC in milliseconds.
pub const SHANGHAI_OFFSET_MS: i64 = 8 * HOUR_MS;

/// First valid instant: 2000-01-01T00:00:00+08:00.
pub const MIN_VALID: Timestamp = Timestamp(946_656_000_000);
/// First instant past the valid range: 2100-01-01T00:00:00+08:00.
pub const MAX_VALID_EXCLUSIVE: Timestamp = Timestamp(4_102_416_000_000);

/// An instant in epoch milliseconds (UTC).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(pub i64);

/// A whole Asia/Shanghai calendar day, counted from 1970-01-01 (Shanghai).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Day(pub i32);

/// Why a time value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 time with `T` and an offset or `Z`")]
    Syntax,
    #[error("outside the valid range [2000-01-01T00:00:00+08:00, 2100-01-01T00:00:00+08:00)")]
    OutOfRange,
}

fn shanghai() -> FixedOffset {
    FixedOffset::east_opt((SHANGHAI_OFFSET_MS / 1000) as i32).expect("valid offset")
}

impl Timestamp {
    /// Parses an RFC 3339 string (`T` separator, `Z` or `±hh:mm` offset, optional
    /// fraction, truncated to whole milliseconds) and checks the valid range.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimeError> {
        let b = s.as_bytes();
        // chrono also accepts a space or lowercase `t` as separator; SPEC §9 wants `T`.
        if b.len() < 20 || b[10] != b'T' || b[b.len() - 1] == b'z' {
            return Err(TimeError::Syntax);
        }
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| TimeError::Syntax)?;
        Timestamp(dt.timestamp_millis()).checked()
    }

    /// Accepts integer epoch milliseconds, checking the valid range.
    pub fn from_epoch_ms(ms: i64) -> Result<Timestamp, TimeError> {
        Timestamp(ms).checked()
    }

    fn checked(self) -> Result<Timestamp, TimeError> {
        if self < MIN_VALID || self >= MAX_VALID_EXCLUSIVE {
            Err(TimeError::OutOfRange)
        } else {
            Ok(self)
        }
    }

    /// The Asia/Shanghai calendar day holding this instant.
    pub fn day(self) -> Day {
        Day((self.0 + SHANGHAI_OFFSET_MS).div_euclid(DAY_MS) as i32)
    }

    /// The Asia/Shanghai natural month as `year * 12 + (month - 1)`.
    pub fn month(self) -> i32 {
        let dt = shanghai().timestamp_millis_opt(self.0).single().expect("in range");
        dt.year() * 12 + dt.month0() as i32
    }

    /// Adds milliseconds, saturating.
    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// RFC 3339 in Asia/Shanghai, e.g. `2024-05-31T18:00:00+08:00`; milliseconds are
    /// printed only when non-zero.
    ///
    /// Written digit by digit (every output record carries one or more times; chrono's
    /// `format` interprets its pattern on every call, ~3 600 instructions against ~400);
    /// `tests::rfc3339_matches_chrono` checks it against chrono's formatting.
    pub fn to_rfc3339(self) -> String {
        let local = self.0 + SHANGHAI_OFFSET_MS;
        let (days, ms_of_day) = (local.div_euclid(DAY_MS), local.rem_euclid(DAY_MS));
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            // Outside four-digit years (never a valid event time): chrono's signed years.
            let dt = shanghai().timestamp_millis_opt(self.0).single().expect("in range");
            let pattern =
                if ms_of_day % 1000 == 0 { "%Y-%m-%dT%H:%M:%S%:z" } else { "%Y-%m-%dT%H:%M:%S%.3f%:z" };
            return dt.format(pattern).to_string();
        }
        let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
        let mut b = *b"0000-00-00T00:00:00.000+08:00";
        digits(&mut b[0..4], y);
        digits(&mut b[5..7], m);
        digits(&mut b[8..10], d);
        digits(&mut b[11..13], secs / 3600);
        digits(&mut b[14..16], secs / 60 % 60);
        digits(&mut b[17..19], secs % 60);
        let n = if ms == 0 {
            b.copy_within(23.., 19);
            25
        } else {
            digits(&mut b[20..23], ms);
            29
        };
        String::from_utf8(b[..n].to_vec()).expect("ASCII digits and separators")
    }
}

/// Writes `v` (non-negative) as exactly `out.len()` decimal digits.
fn digits(out: &mut [u8], mut v: i64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Day {
    /// The first instant of this day.
    pub fn start(self) -> Timestamp {
        Timestamp(self.0 as i64 * DAY_MS - SHANGHAI_OFFSET_MS)
    }
}

impl serde::Serialize for TimeError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written formatter against chrono's, over the valid range and beyond it,
    /// with and without milliseconds.
    #[test]
    fn rfc3339_matches_chrono() {
        let chrono_text = |t: Timestamp| {
            let dt = shanghai().timestamp_millis_opt(t.0).single().unwrap();
            let pattern =
                if t.0.rem_euclid(1000) == 0 { "%Y-%m-%dT%H:%M:%S%:z" } else { "%Y-%m-%dT%H:%M:%S%.3f%:z" };
            dt.format(pattern).to_string()
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut times =
            vec![MIN_VALID.0, MAX_VALID_EXCLUSIVE.0 - 1, 0, -1, -DAY_MS, 951_782_400_000, 4_107_542_400_123];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 1900 to 2200, a third of them on whole seconds.
            let t = -2_208_988_800_000 + (x % 9_467_280_000_000) as i64;
            times.push(if x.is_multiple_of(3) { t - t.rem_euclid(1000) } else { t });
        }
        for t in times {
            assert_eq!(Timestamp(t).to_rfc3339(), chrono_text(Timestamp(t)), "{t}");
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let a = Timestamp::parse_rfc3339("2024-05-31T18:00:00+08:00").unwrap();
        let b = Timestamp::parse_rfc3339("2024-05-31T10:00:00Z").unwrap();
        let c = Timestamp::parse_rfc3339("2024-05-31T10:00:00.123456Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(c.0 - b.0, 123);
        assert_eq!(a.to_rfc3339(), "2024-05-31T18:00:00+08:00");
        assert_eq!(c.to_rfc3339(), "2024-05-31T18:00:00.123+08:00");
    }

    #[test]
    fn rejects_non_rfc3339() {
        for s in [
            "2024-05-31 18:00:00+08:00",
            "2024-05-31t18:00:00+08:00",
            "2024-05-31T18:00:00",
            "2024-05-31",
            "1717149600000",
            "2024-02-30T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(s), Err(TimeError::Syntax), "{s}");
        }
    }

    #[test]
    fn range_is_shanghai_2000_to_2100() {
        assert!(Timestamp::parse_rfc3339("2000-01-01T00:00:00+08:00").is_ok());
        assert_eq!(Timestamp::parse_rfc3339("1999-12-31T23:59:59.999+08:00"), Err(TimeError::OutOfRange));
        assert!(Timestamp::parse_rfc3339("2099-12-31T23:59:59.999+08:00").is_ok());
        assert_eq!(Timestamp::parse_rfc3339("2100-01-01T00:00:00+08:00"), Err(TimeError::OutOfRange));
        assert_eq!(Timestamp::from_epoch_ms(0), Err(TimeError::OutOfRange));
    }

    #[test]
    fn days_and_months_are_shanghai() {
        let late = Timestamp::parse_rfc3339("2024-05-31T23:59:59+08:00").unwrap();
        let next = Timestamp::parse_rfc3339("2024-05-31T16:00:00Z").unwrap();
        assert_eq!(next.day().0, late.day().0 + 1);
        assert_eq!(next.day().start(), next);
        assert_eq!(late.month() + 1, next.month());
    }
}
