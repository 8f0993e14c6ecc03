//! [`ConfigError`]: every configuration problem names the key (dotted, plus the environment
//! variable when the value came from one) and says how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
use figment::{Figment, Metadata};

use super::{DEFAULT_CONFIG_FILE, ENV_PREFIX};

/// A configuration that cannot be used, with a message fit for an operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `--config FILE` names a file that does not exist.
    #[error(
        "config file {} (given with --config) does not exist: check the path, or leave out \
         --config to use {DEFAULT_CONFIG_FILE} when present, else the built-in defaults",
        path.display()
    )]
    FileNotFound { path: PathBuf },

    /// The file is not valid TOML (or cannot be read).
    #[error("cannot read config file {}: {message}\nfix the TOML at the position shown", file.display())]
    Syntax { file: PathBuf, message: String },

    /// A key no section knows.
    #[error("unknown key `{key}` {origin}: {fix}")]
    UnknownKey { key: String, origin: Origin, fix: String },

    /// A required key (of an `[[alerts]]` rule) is absent.
    #[error("missing key `{key}` {origin}: {fix}")]
    MissingKey { key: String, origin: Origin, fix: String },

    /// A value of the wrong type or form.
    #[error("bad value for `{key}` {origin}: {problem}; {fix}")]
    BadValue { key: String, origin: Origin, problem: String, fix: String },

    /// A well-formed value out of range ([`super::Config::validate`]); `problem` says what is
    /// allowed.
    #[error("`{key}` {problem}{}", origin.as_ref().map(|o| format!(" ({})", o.set_by())).unwrap_or_default())]
    Invalid { key: String, problem: String, origin: Option<Origin> },
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// The environment variable's full name, e.g. `SHOPSCORE__TIME__FOO`.
    Env(String),
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "in {}", p.display()),
            Origin::Env(var) => write!(f, "from environment variable {var}"),
            Origin::Defaults => f.write_str("in the built-in defaults"),
        }
    }
}

impl Origin {
    fn set_by(&self) -> String {
        match self {
            Origin::File(p) => format!("set in {}", p.display()),
            Origin::Env(var) => format!("set by environment variable {var}"),
            Origin::Defaults => "the built-in default".to_owned(),
        }
    }

    fn from_metadata(md: Option<&Metadata>, path: &[String]) -> Origin {
        let Some(md) = md else {
            return Origin::Defaults;
        };
        if let Some(file) = md.source.as_ref().and_then(|s| s.file_path()) {
            Origin::File(file.to_path_buf())
        } else if md.name.contains("environment") {
            Origin::Env(env_var_name(path))
        } else {
            Origin::Defaults
        }
    }
}

/// `["time", "foo"]` → `SHOPSCORE__TIME__FOO`.
fn env_var_name(path: &[String]) -> String {
    let parts: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", parts.join("__"))
}

/// `["alerts", "0", "op"]` → `alerts[0].op`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !out.is_empty() && seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Introduces the list of valid keys of the table holding `path`'s last key.
fn valid_keys_in(parent: &[String]) -> String {
    match parent {
        [] => "valid sections".to_owned(),
        [first, idx] if idx.parse::<usize>().is_ok() => format!("valid keys in [[{first}]]"),
        _ => format!("valid keys in [{}]", parent.join(".")),
    }
}

fn one_of(expected: &[&str]) -> String {
    expected.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ")
}

/// A readable name for serde's `expected` text.
fn expected_form(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list like [1, 7, 30]".to_owned(),
        other => other.to_owned(),
    }
}

/// Extra advice for keys whose values have a particular form.
fn key_fix(key: &str) -> Option<&'static str> {
    if key == "http.addr" {
        Some("write an ip:port like \"127.0.0.1:9464\" or \"0.0.0.0:9464\" (not a host name)")
    } else if key.ends_with(".window") {
        Some("write a window in whole days like \"30d\", one of `windows.days`")
    } else if key == "alerts" {
        Some("write alert rules as [[alerts]] tables (see config/shopscore.toml)")
    } else if key.starts_with("kafka.client") {
        Some("write librdkafka settings as strings, e.g. \"security.protocol\" = \"SASL_SSL\"")
    } else {
        None
    }
}

/// Not a key: the dead-letter topic has no encoding (SPEC §6: the original bytes).
const DEAD_LETTER_ENCODING: &str = "kafka.encoding.dead_letters";

const DURATION_FIX: &str =
    "write a duration as a string like \"5m\", \"48h\" or \"1d\" (units: ms, s, m, h, d, w)";

impl ConfigError {
    /// Translates figment's first error into an operator message.
    pub(crate) fn from_figment(err: figment::Error) -> ConfigError {
        let err = err.into_iter().next().expect("a figment error holds one error");
        let path = err.path.clone();
        let origin = Origin::from_metadata(err.metadata.as_ref(), &path);
        let key = dotted(&path);
        let verb = if matches!(origin, Origin::Env(_)) { "unset" } else { "remove" };
        match err.kind {
            Kind::UnknownField(_, expected) => {
                let parent = &path[..path.len().saturating_sub(1)];
                let advice = if key == DEAD_LETTER_ENCODING {
                    "dead letters carry the original record bytes untouched, so no encoding applies to \
                     them"
                } else {
                    "check the spelling"
                };
                ConfigError::UnknownKey {
                    fix: format!(
                        "{verb} it{} {advice}; {}: {}",
                        if key == DEAD_LETTER_ENCODING { ":" } else { " or" },
                        valid_keys_in(parent),
                        expected.join(", ")
                    ),
                    key,
                    origin,
                }
            }
            Kind::MissingField(name) => {
                let mut full = path.clone();
                full.push(name.to_string());
                ConfigError::MissingKey {
                    key: dotted(&full),
                    origin,
                    fix: "add it (see config/shopscore.toml for an example)".to_owned(),
                }
            }
            Kind::UnknownVariant(value, expected) => ConfigError::BadValue {
                problem: format!("\"{value}\" is not a valid value"),
                fix: format!("use one of {}", one_of(expected)),
                key,
                origin,
            },
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected)
                if expected == "a duration" =>
            {
                let problem = match &actual {
                    Actual::Str(s) => match humantime::parse_duration(s) {
                        Err(e) => format!("\"{s}\" is not a duration ({e})"),
                        Ok(_) => format!("\"{s}\" is not a duration"),
                    },
                    other => format!("{other} is not a duration"),
                };
                ConfigError::BadValue { key, origin, problem, fix: DURATION_FIX.to_owned() }
            }
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                ConfigError::BadValue {
                    problem: format!("found {actual}"),
                    fix: key_fix(&key)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("write {}", expected_form(&expected))),
                    key,
                    origin,
                }
            }
            Kind::Message(message) if path.is_empty() => match origin {
                Origin::File(file) => ConfigError::Syntax { file, message },
                origin => ConfigError::BadValue {
                    key: "(top level)".to_owned(),
                    origin,
                    problem: message,
                    fix: "check the configuration sources".to_owned(),
                },
            },
            other => ConfigError::BadValue {
                problem: other.to_string(),
                fix: key_fix(&key).unwrap_or("see config/shopscore.toml for the expected form").to_owned(),
                key,
                origin,
            },
        }
    }

    /// A range error found by validation, before its origin is known.
    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.into(), problem: problem.into(), origin: None }
    }

    /// Fills in where an `Invalid` value was set (file or environment variable); `file` is the
    /// TOML layer, if any.
    pub(crate) fn with_origin_from(self, figment: &Figment, file: Option<&Path>) -> ConfigError {
        match self {
            ConfigError::Invalid { key, problem, origin: None } => {
                let origin = match key.strip_prefix("kafka.client.") {
                    Some(setting) => locate_client(setting, file),
                    None => locate(figment, &key),
                };
                ConfigError::Invalid { key, problem, origin }
            }
            other => other,
        }
    }

    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::FileNotFound { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

/// The origin of the value at dotted `key` (`alerts[0].window` looks at `alerts`), trying
/// shorter prefixes for keys that are not figment paths (normalized `kafka.client` keys).
fn locate(figment: &Figment, key: &str) -> Option<Origin> {
    let base = key.split('[').next().unwrap_or(key);
    let segments: Vec<String> = base.split('.').map(str::to_owned).collect();
    (1..=segments.len()).rev().find_map(|n| {
        let md = figment.find_metadata(&segments[..n].join("."))?;
        match Origin::from_metadata(Some(md), &segments[..n]) {
            Origin::Defaults => None,
            origin => Some(origin),
        }
    })
}

/// The origin of librdkafka setting `setting` (normalized): the environment variable that sets
/// it, in any of its spellings, else the file.
fn locate_client(setting: &str, file: Option<&Path>) -> Option<Origin> {
    let prefix = format!("{ENV_PREFIX}KAFKA__CLIENT__");
    let from_env = std::env::vars_os().find_map(|(name, _)| {
        let name = name.to_str()?;
        let rest = name
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(&prefix))
            .and_then(|_| name.get(prefix.len()..))?;
        let normalized = rest.to_ascii_lowercase().replace('_', ".").replace("..", ".");
        (normalized == setting).then(|| Origin::Env(name.to_owned()))
    });
    from_env.or_else(|| file.map(|f| Origin::File(f.to_path_buf())))
}
