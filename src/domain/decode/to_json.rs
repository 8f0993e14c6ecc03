//! [`Event`] → one line of JSON (the form `shopscore gen` writes and tests round-trip).
//!
//! Written by hand (no intermediate `Value`) because the generator writes millions of
//! lines; times are RFC 3339 in Asia/Shanghai (+08:00).

use super::emit::{for_each_field, Out};
use crate::domain::event::Event;
use std::fmt::Write;

/// Encodes `ev` as a single-line JSON object, without a trailing newline.
pub(crate) fn encode(ev: &Event) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    let mut first = true;
    for_each_field(ev, |field, value| {
        if !first {
            out.push(',');
        }
        first = false;
        push_str(&mut out, field.name());
        out.push(':');
        match value {
            Out::Str(s) => push_str(&mut out, s),
            Out::Int(i) => {
                let _ = write!(out, "{i}"); // writing to a String cannot fail
            }
            Out::Time(t) => push_str(&mut out, &t.to_rfc3339()),
            Out::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Out::Flags(flags) => {
                out.push('[');
                for (i, flag) in flags.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_str(&mut out, flag.as_str());
                }
                out.push(']');
            }
        }
    });
    out.push('}');
    out
}

/// Appends `s` as a JSON string literal (quotes, backslashes and control characters
/// escaped; everything else, including non-ASCII, copied as is).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é店");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é店""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é店");
    }
}
