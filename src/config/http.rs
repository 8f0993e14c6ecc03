//! `http.enabled`: whether the operations HTTP endpoint is served.
//!
//! `"auto"` serves it in Kafka mode (a long-running service that Kubernetes probes) and not
//! in file mode (a batch job; parallel runs would fight over one port); `true`/`false`
//! decide explicitly. `run --http-addr ADDR` turns it on for one run.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::serde_util;

/// `http.enabled`: `"auto"`, `true` or `false` (the strings `"true"`/`"false"` work too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpEnabled {
    /// On in Kafka mode, off in file mode.
    #[default]
    Auto,
    On,
    Off,
}

impl HttpEnabled {
    /// Whether to serve, given the mode the process runs in.
    pub fn serves(self, kafka_mode: bool) -> bool {
        match self {
            HttpEnabled::Auto => kafka_mode,
            HttpEnabled::On => true,
            HttpEnabled::Off => false,
        }
    }
}

impl fmt::Display for HttpEnabled {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            HttpEnabled::Auto => "auto",
            HttpEnabled::On => "true",
            HttpEnabled::Off => "false",
        })
    }
}

impl Serialize for HttpEnabled {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HttpEnabled::Auto => s.serialize_str("auto"),
            HttpEnabled::On => s.serialize_bool(true),
            HttpEnabled::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for HttpEnabled {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = serde_util::lenient_string(d)?;
        match text.as_str() {
            "auto" => Ok(HttpEnabled::Auto),
            "true" => Ok(HttpEnabled::On),
            "false" => Ok(HttpEnabled::Off),
            other => Err(de::Error::invalid_value(de::Unexpected::Str(other), &"\"auto\", true or false")),
        }
    }
}
