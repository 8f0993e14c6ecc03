//! Keeping secrets out of logs: `Debug` of the configuration masks every `[kafka.client]`
//! value whose key names a secret (`sasl.password`, `ssl.key.password`,
//! `sasl.oauthbearer.client.secret`, `ssl.key.pem`…), so `tracing::debug!(?config)` and
//! error reports never print credentials. Serialization (used to layer the defaults) is
//! untouched.

use std::collections::BTreeMap;
use std::fmt;

use super::KafkaConfig;

/// Shown instead of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Whether a librdkafka setting holds a secret: its name mentions a password, secret,
/// token, credential or private key material.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential", "jaas", "key.pem", "keystore", "private"]
        .iter()
        .any(|word| k.contains(word))
        || k == "ssl.key"
}

/// The client settings with secret values replaced by [`REDACTED`].
pub fn redacted_client(client: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    client.iter().map(|(k, v)| (k.as_str(), if is_secret_key(k) { REDACTED } else { v.as_str() })).collect()
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("transactional", &self.transactional)
            .field("transactional_outbox", &self.transactional_outbox)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("shards", &self.shards)
            .field("co_partitioned", &self.co_partitioned)
            .field("replication_factor", &self.replication_factor)
            .field("client", &redacted_client(&self.client))
            .field("topics", &self.topics)
            .field("encoding", &self.encoding)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let mut cfg = Config::default();
        for (k, v) in [
            ("sasl.password", "hunter2-sasl"),
            ("ssl.key.password", "hunter2-ssl"),
            ("sasl.oauthbearer.client.secret", "hunter2-oauth"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----hunter2"),
            ("sasl.username", "alice"),
            ("security.protocol", "SASL_SSL"),
        ] {
            cfg.kafka.client.insert(k.to_owned(), v.to_owned());
        }
        for text in [format!("{cfg:?}"), format!("{cfg:#?}"), format!("{:?}", cfg.kafka)] {
            assert!(!text.contains("hunter2"), "secret leaked: {text}");
            assert!(text.contains("sasl.password") && text.contains(REDACTED), "{text}");
            assert!(text.contains("alice") && text.contains("SASL_SSL"), "non-secrets stay visible: {text}");
        }
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in
            ["sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret"]
        {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["security.protocol", "sasl.mechanisms", "sasl.username", "ssl.ca.location"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
