//! Comparing two output sets (`shopscore diff A B`): what changed between a run and a
//! replay, or before and after a rule change.
//!
//! The comparison is pure: an [`OutputSet`] is built from output JSON lines (of a file-mode
//! output directory, or of output topics read back by [`crate::kafka::output_set`]) and
//! [`diff`] compares two of them by meaning, not bytes:
//!
//! - **snapshots**: the last snapshot (highest `version`) of each shop, on its values —
//!   `as_of` and `version` depend on batch boundaries and are ignored;
//! - **compensations**: by `compensation_id`, every field;
//! - **alerts**: the final state of each (shop, rule), plus the record counts;
//! - **dead letters**: by `source`, with their `reason_code`.

use crate::output::OutputKind;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Reading an output set failed.
#[derive(Debug, Error)]
pub enum DiffError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{origin} line {line}: {why}")]
    BadLine { origin: String, line: usize, why: String },
    #[error("{} is not a directory of shopscore outputs", path.display())]
    NotADirectory { path: PathBuf },
}

/// What one output set holds, reduced to what [`diff`] compares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputSet {
    /// shop → (version, values without `shop_id`/`as_of`/`version`).
    snapshots: BTreeMap<String, (u64, Value)>,
    /// compensation_id → record.
    compensations: BTreeMap<String, Value>,
    /// (shop, rule) → last state.
    alert_states: BTreeMap<(String, String), String>,
    /// Alert records per state (`RAISED`, `CLEARED`).
    alert_counts: BTreeMap<String, u64>,
    /// source (as JSON text) → reason_code.
    dead_letters: BTreeMap<String, String>,
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("no `{name}` field"))
}

fn text(v: &Value, name: &str) -> Result<String, String> {
    field(v, name)?.as_str().map(str::to_owned).ok_or_else(|| format!("`{name}` is not a string"))
}

impl OutputSet {
    pub fn new() -> OutputSet {
        OutputSet::default()
    }

    /// Adds one output line of `kind` (blank lines are skipped).
    pub fn add(&mut self, kind: OutputKind, line: &str) -> Result<(), String> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let mut v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        match kind {
            OutputKind::Snapshot => {
                let shop = text(&v, "shop_id")?;
                let version =
                    field(&v, "version")?.as_u64().ok_or_else(|| "`version` is not a number".to_owned())?;
                if let Value::Object(m) = &mut v {
                    for k in ["shop_id", "as_of", "version"] {
                        m.remove(k);
                    }
                }
                if self.snapshots.get(&shop).is_none_or(|(old, _)| version >= *old) {
                    self.snapshots.insert(shop, (version, v));
                }
            }
            OutputKind::Compensation => {
                self.compensations.insert(text(&v, "compensation_id")?, v);
            }
            OutputKind::Alert => {
                let state = text(&v, "state")?;
                *self.alert_counts.entry(state.clone()).or_default() += 1;
                self.alert_states.insert((text(&v, "shop_id")?, text(&v, "rule")?), state);
            }
            OutputKind::DeadLetter => {
                let source = field(&v, "source")?.to_string();
                self.dead_letters.insert(source, text(&v, "reason_code")?);
            }
        }
        Ok(())
    }

    /// Adds every line of `lines` (output records of `kind`); `origin` names them in errors.
    pub fn extend<I, S>(&mut self, kind: OutputKind, origin: &str, lines: I) -> Result<(), DiffError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for (i, line) in lines.into_iter().enumerate() {
            self.add(kind, line.as_ref()).map_err(|why| DiffError::BadLine {
                origin: origin.to_owned(),
                line: i + 1,
                why,
            })?;
        }
        Ok(())
    }

    /// Reads a file-mode output directory (`snapshots.jsonl`, …; a missing file is empty).
    pub fn read_dir(dir: &Path) -> Result<OutputSet, DiffError> {
        if !dir.is_dir() {
            return Err(DiffError::NotADirectory { path: dir.to_path_buf() });
        }
        let mut set = OutputSet::new();
        for kind in OutputKind::ALL {
            let path = dir.join(kind.file_name());
            let content = match std::fs::read_to_string(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(DiffError::Io { path, source }),
            };
            set.extend(kind, &path.display().to_string(), content.lines())?;
        }
        Ok(set)
    }
}

/// One value that differs: `path` names it (`refund_rate[30d]`, `dsr.service.score`,
/// `amount_fen`); a missing value is `null`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub path: String,
    pub old: Value,
    pub new: Value,
}

/// Keys present on one side only, and keys whose values differ.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    pub count_a: usize,
    pub count_b: usize,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub changed: Vec<(String, Vec<Change>)>,
}

impl Section {
    pub fn is_empty(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.changed.is_empty()
    }
}

/// The differences between output sets A and B.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    /// By shop, on the last snapshot's values.
    pub snapshots: Section,
    /// By `compensation_id`.
    pub compensations: Section,
    /// By `shop_id` + rule, on the final state (the change's path is `state`).
    pub alerts: Section,
    pub alert_counts_a: BTreeMap<String, u64>,
    pub alert_counts_b: BTreeMap<String, u64>,
    /// By source, on the reason code.
    pub dead_letters: Section,
}

impl Diff {
    /// True when A and B are equivalent.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
            && self.compensations.is_empty()
            && self.alerts.is_empty()
            && self.alert_counts_a == self.alert_counts_b
            && self.dead_letters.is_empty()
    }
}

/// Flattens `v` into leaf paths: objects nest with `.`, a snapshot's `windows.30d.x` is
/// written `x[30d]`, arrays are leaves.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => flatten_object(prefix, m, out),
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

fn flatten_object(prefix: &str, m: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
    for (k, v) in m {
        if prefix.is_empty() && k == "windows" {
            if let Value::Object(windows) = v {
                for (window, w) in windows {
                    let mut inner = BTreeMap::new();
                    flatten("", w, &mut inner);
                    for (path, leaf) in inner {
                        out.insert(format!("{path}[{window}]"), leaf);
                    }
                }
                continue;
            }
        }
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        flatten(&path, v, out);
    }
}

fn changes(a: &Value, b: &Value) -> Vec<Change> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let paths: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (old, new) =
                (fa.get(p).cloned().unwrap_or(Value::Null), fb.get(p).cloned().unwrap_or(Value::Null));
            (old != new).then(|| Change { path: p.clone(), old, new })
        })
        .collect()
}

fn section<K: Ord + Clone, V>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
    compare: impl Fn(&V, &V) -> Vec<Change>,
) -> Section {
    let mut s = Section { count_a: a.len(), count_b: b.len(), ..Section::default() };
    for (k, va) in a {
        match b.get(k) {
            None => s.only_in_a.push(name(k)),
            Some(vb) => {
                let c = compare(va, vb);
                if !c.is_empty() {
                    s.changed.push((name(k), c));
                }
            }
        }
    }
    s.only_in_b = b.keys().filter(|k| !a.contains_key(k)).map(&name).collect();
    s
}

/// `x`'s final alert states, without those `CLEARED` where `y` never had the alert: a rule
/// raised and cleared again is in the same final state as one never raised. Whether a rule
/// toggled in between depends on where commits cut the input (a live run and its replay cut
/// it differently); the record counts still show it.
fn cleared_as_never_raised(x: &OutputSet, y: &OutputSet) -> BTreeMap<(String, String), String> {
    x.alert_states
        .iter()
        .filter(|(k, state)| *state != "CLEARED" || y.alert_states.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Compares output set A with B.
pub fn diff(a: &OutputSet, b: &OutputSet) -> Diff {
    let same_or = |path: &str, x: &String, y: &String| {
        if x == y {
            Vec::new()
        } else {
            vec![Change { path: path.to_owned(), old: Value::from(x.as_str()), new: Value::from(y.as_str()) }]
        }
    };
    Diff {
        snapshots: section(&a.snapshots, &b.snapshots, String::clone, |x, y| changes(&x.1, &y.1)),
        compensations: section(&a.compensations, &b.compensations, String::clone, changes),
        alerts: {
            let (a_states, b_states) = (cleared_as_never_raised(a, b), cleared_as_never_raised(b, a));
            section(
                &a_states,
                &b_states,
                |(shop, rule)| format!("{shop} {rule}"),
                |x, y| same_or("state", x, y),
            )
        },
        alert_counts_a: a.alert_counts.clone(),
        alert_counts_b: b.alert_counts.clone(),
        dead_letters: section(&a.dead_letters, &b.dead_letters, String::clone, |x, y| {
            same_or("reason_code", x, y)
        }),
    }
}

/// At most this many entries are listed per kind of difference.
const LIST_LIMIT: usize = 20;

fn list(f: &mut fmt::Formatter<'_>, label: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = items.iter().take(LIST_LIMIT).map(String::as_str).collect();
    let more = items.len().saturating_sub(LIST_LIMIT);
    let tail = if more > 0 { format!(" … and {more} more") } else { String::new() };
    writeln!(f, "  {label}: {}{tail}", shown.join(", "))
}

fn section_text(f: &mut fmt::Formatter<'_>, title: &str, unit: &str, s: &Section) -> fmt::Result {
    writeln!(
        f,
        "{title}: {} in A, {} in B; {} changed, {} only in A, {} only in B",
        s.count_a,
        s.count_b,
        s.changed.len(),
        s.only_in_a.len(),
        s.only_in_b.len()
    )?;
    for (key, cs) in s.changed.iter().take(LIST_LIMIT) {
        let parts: Vec<String> = cs.iter().map(|c| format!("{} {} → {}", c.path, c.old, c.new)).collect();
        writeln!(f, "  {unit} {key}: {}", parts.join("; "))?;
    }
    if s.changed.len() > LIST_LIMIT {
        writeln!(f, "  … and {} more changed", s.changed.len() - LIST_LIMIT)?;
    }
    list(f, "only in A", &s.only_in_a)?;
    list(f, "only in B", &s.only_in_b)
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        section_text(f, "snapshots (last per shop, values)", "shop", &self.snapshots)?;
        section_text(f, "compensations (by compensation_id)", "compensation", &self.compensations)?;
        section_text(f, "alerts (final state per shop and rule)", "alert", &self.alerts)?;
        if self.alert_counts_a != self.alert_counts_b {
            writeln!(f, "  alert records: A {:?}, B {:?}", self.alert_counts_a, self.alert_counts_b)?;
        }
        section_text(f, "dead letters (by source)", "dead letter", &self.dead_letters)?;
        if self.is_empty() {
            writeln!(f, "equal")
        } else {
            writeln!(f, "different")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP_A: &str = r#"{"shop_id":"s1","as_of":"2024-05-01T00:00:00+08:00","version":1,"windows":{"30d":{"paid_orders":1,"refund_rate":null}},"dsr":{"service":{"score":null}},"campaign":{"eligible":true,"failed":[]}}"#;
    const SNAP_A2: &str = r#"{"shop_id":"s1","as_of":"2024-05-02T00:00:00+08:00","version":2,"windows":{"30d":{"paid_orders":2,"refund_rate":0.5}},"dsr":{"service":{"score":null}},"campaign":{"eligible":true,"failed":[]}}"#;
    const SNAP_B2: &str = r#"{"shop_id":"s1","as_of":"2024-05-09T00:00:00+08:00","version":7,"windows":{"30d":{"paid_orders":2,"refund_rate":0.5}},"dsr":{"service":{"score":null}},"campaign":{"eligible":true,"failed":[]}}"#;
    const COMP: &str = r#"{"compensation_id":"o1:LATE_SHIPMENT","amount_fen":500,"lineage":{"events":[]}}"#;

    fn set(lines: &[(OutputKind, &str)]) -> OutputSet {
        let mut s = OutputSet::new();
        for (k, l) in lines {
            s.add(*k, l).unwrap();
        }
        s
    }

    #[test]
    fn equal_values_with_other_versions_and_as_of_are_equal() {
        let a = set(&[
            (OutputKind::Snapshot, SNAP_A),
            (OutputKind::Snapshot, SNAP_A2),
            (OutputKind::Compensation, COMP),
        ]);
        let b = set(&[(OutputKind::Snapshot, SNAP_B2), (OutputKind::Compensation, COMP)]);
        let d = diff(&a, &b);
        assert!(d.is_empty(), "{d}");
        assert!(d.to_string().ends_with("equal\n"));
    }

    #[test]
    fn moved_values_name_metric_window_and_old_new() {
        let a = set(&[(OutputKind::Snapshot, SNAP_A)]);
        let b = set(&[(OutputKind::Snapshot, SNAP_B2)]);
        let d = diff(&a, &b);
        assert_eq!(d.snapshots.changed.len(), 1);
        let (shop, cs) = &d.snapshots.changed[0];
        assert_eq!(shop, "s1");
        let paths: Vec<&str> = cs.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["paid_orders[30d]", "refund_rate[30d]"]);
        assert_eq!(cs[1].old, Value::Null);
        assert_eq!(cs[1].new, serde_json::json!(0.5));
        let text = d.to_string();
        assert!(text.contains("shop s1: paid_orders[30d] 1 → 2; refund_rate[30d] null → 0.5"), "{text}");
        assert!(text.ends_with("different\n"));
    }

    #[test]
    fn compensations_alerts_and_dead_letters_by_identity() {
        let comp2 = COMP.replace("500", "900");
        let a = set(&[
            (OutputKind::Compensation, COMP),
            (OutputKind::Compensation, r#"{"compensation_id":"o2:LATE_SHIPMENT"}"#),
            (OutputKind::Alert, r#"{"shop_id":"s1","rule":"r","state":"RAISED"}"#),
            (OutputKind::DeadLetter, r#"{"reason_code":"malformed_json","source":{"file":"f","line":1}}"#),
        ]);
        let b = set(&[
            (OutputKind::Compensation, &comp2),
            (OutputKind::Compensation, r#"{"compensation_id":"o3:DELIVERY_PROMISE_BREACH"}"#),
            (OutputKind::Alert, r#"{"shop_id":"s1","rule":"r","state":"RAISED"}"#),
            (OutputKind::Alert, r#"{"shop_id":"s1","rule":"r","state":"CLEARED"}"#),
            (OutputKind::DeadLetter, r#"{"reason_code":"missing_field","source":{"file":"f","line":1}}"#),
            (OutputKind::DeadLetter, r#"{"reason_code":"ill_typed","source":{"file":"f","line":9}}"#),
        ]);
        let d = diff(&a, &b);
        assert_eq!(d.compensations.only_in_a, ["o2:LATE_SHIPMENT"]);
        assert_eq!(d.compensations.only_in_b, ["o3:DELIVERY_PROMISE_BREACH"]);
        assert_eq!(d.compensations.changed[0].0, "o1:LATE_SHIPMENT");
        assert_eq!(d.compensations.changed[0].1[0].path, "amount_fen");
        assert_eq!(d.alerts.changed[0].0, "s1 r");
        assert_eq!(d.alerts.changed[0].1[0].new, "CLEARED");
        assert_eq!(d.dead_letters.changed.len(), 1);
        assert_eq!(d.dead_letters.only_in_b.len(), 1);
        let text = d.to_string();
        assert!(text.contains("compensation o1:LATE_SHIPMENT: amount_fen 500 → 900"), "{text}");
        assert!(text.contains("only in A: o2:LATE_SHIPMENT"), "{text}");
        assert!(text.contains("alert s1 r: state \"RAISED\" → \"CLEARED\""), "{text}");
    }

    /// A rule raised and cleared on one side and never raised on the other ends in the same
    /// state (where commits cut the input decides whether it toggled); the record counts still
    /// differ, so the verdict does too. Raised on one side only is a difference.
    #[test]
    fn a_cleared_alert_is_in_the_state_of_one_never_raised() {
        let raised = |shop: &str| format!(r#"{{"shop_id":"{shop}","rule":"r","state":"RAISED"}}"#);
        let cleared = |shop: &str| format!(r#"{{"shop_id":"{shop}","rule":"r","state":"CLEARED"}}"#);
        let a = set(&[
            (OutputKind::Alert, &raised("s1")),
            (OutputKind::Alert, &cleared("s1")),
            (OutputKind::Alert, &raised("s2")),
        ]);
        let b = set(&[]);
        let d = diff(&a, &b);
        assert!(d.alerts.changed.is_empty(), "{d}");
        assert_eq!(d.alerts.only_in_a, ["s2 r"]);
        assert!(d.alerts.only_in_b.is_empty());
        let d = diff(&b, &a);
        assert_eq!(d.alerts.only_in_b, ["s2 r"]);
        assert!(d.alerts.only_in_a.is_empty() && d.alerts.changed.is_empty(), "{d}");
        assert_ne!(d.alert_counts_a, d.alert_counts_b);
    }

    #[test]
    fn bad_lines_are_reported_with_their_origin() {
        let mut s = OutputSet::new();
        let err = s.extend(OutputKind::Compensation, "x.jsonl", ["", "{"]).unwrap_err();
        assert!(err.to_string().starts_with("x.jsonl line 2: not JSON"), "{err}");
        let err = s.extend(OutputKind::Snapshot, "y", [r#"{"version":1}"#]).unwrap_err();
        assert!(err.to_string().contains("no `shop_id` field"), "{err}");
    }
}
