//! [`Config::validate`]: value ranges and cross-key checks after deserializing.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use humantime::format_duration;

use super::{AlertMetric, AlertOp, Config, ConfigError};

type Check = Result<(), ConfigError>;

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(24 * 3600);
const MAX_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);
const MAX_WINDOW_DAYS: u32 = 366;
const MAX_WINDOWS: usize = 8;

/// librdkafka settings shopscore sets itself: `(key, what to do instead)`.
const RESERVED_CLIENT_KEYS: [(&str, &str); 5] = [
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("group.id", "set `kafka.group` instead"),
    ("transactional.id", "shopscore derives it; remove it"),
    ("enable.auto.commit", "offsets commit with the outputs; remove it"),
    ("isolation.level", "shopscore reads read_committed; remove it"),
];

fn ensure(ok: bool, key: impl Into<String>, problem: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, problem()))
    }
}

/// `"366d"` for whole days (humantime would say `"1year 18h"`), else humantime's form.
fn show(d: Duration) -> String {
    if d >= DAY && d.as_nanos().is_multiple_of(DAY.as_nanos()) {
        format!("{}d", d.as_secs() / DAY.as_secs())
    } else {
        format_duration(d).to_string()
    }
}

fn duration_in(key: &str, d: Duration, min: Duration, max: Duration) -> Check {
    ensure(d >= min && d <= max, key, || {
        format!("must be a duration between {} and {}, got \"{}\"", show(min), show(max), show(d))
    })
}

fn non_empty_path(key: &str, p: &Path) -> Check {
    ensure(!p.as_os_str().is_empty(), key, || "must not be empty: give a directory path".to_owned())
}

fn topic_name(key: &str, name: &str) -> Check {
    let legal = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ensure(legal, key, || {
        format!("must be a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -), got \"{name}\"")
    })
}

impl Config {
    /// Checks value ranges and cross-key rules; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_time()?;
        self.validate_windows()?;
        self.validate_rules()?;
        self.validate_io()?;
        self.validate_kafka()?;
        self.validate_alerts()?;
        self.validate_log()
    }

    fn validate_time(&self) -> Check {
        let t = &self.time;
        duration_in("time.out_of_orderness", t.out_of_orderness, Duration::ZERO, MAX_SPAN)?;
        duration_in("time.allowed_lateness", t.allowed_lateness, Duration::ZERO, MAX_SPAN)?;
        duration_in("time.idle_timeout", t.idle_timeout, MS, MAX_SPAN)
    }

    fn validate_windows(&self) -> Check {
        let days = &self.windows.days;
        let distinct: HashSet<u32> = days.iter().copied().collect();
        ensure(
            (1..=MAX_WINDOWS).contains(&days.len())
                && distinct.len() == days.len()
                && days.iter().all(|d| (1..=MAX_WINDOW_DAYS).contains(d)),
            "windows.days",
            || {
                format!(
                    "must list 1 to {MAX_WINDOWS} distinct day counts between 1 and \
                     {MAX_WINDOW_DAYS}, got {days:?}"
                )
            },
        )?;
        let dsr = self.windows.dsr_days;
        ensure((1..=MAX_WINDOW_DAYS).contains(&dsr), "windows.dsr_days", || {
            format!("must be a day count between 1 and {MAX_WINDOW_DAYS}, got {dsr}")
        })
    }

    fn validate_rules(&self) -> Check {
        duration_in("orders.default_ship_window", self.orders.default_ship_window, MS, MAX_SPAN)?;
        let s = &self.satisfaction;
        ensure(s.max_per_buyer >= 1, "satisfaction.max_per_buyer", || {
            format!("must be at least 1, got {}", s.max_per_buyer)
        })?;
        duration_in("satisfaction.min_interval", s.min_interval, Duration::ZERO, MAX_SPAN)?;

        let c = &self.compensation;
        ensure(!c.rule_version.trim().is_empty(), "compensation.rule_version", || {
            "must not be empty: name the rule set, e.g. \"2024-01\"".to_owned()
        })?;
        ensure(c.late_rate_percent <= 100, "compensation.late_rate_percent", || {
            format!("must be between 0 and 100, got {}", c.late_rate_percent)
        })?;
        for (key, fen) in [
            ("compensation.late_min_fen", c.late_min_fen),
            ("compensation.group_cap_fen", c.group_cap_fen),
            ("compensation.promise_breach_fen", c.promise_breach_fen),
        ] {
            ensure(fen >= 0, key, || format!("must be an amount in fen, 0 or more, got {fen}"))?;
        }
        duration_in("compensation.group_span", c.group_span, MS, MAX_SPAN)
    }

    fn validate_io(&self) -> Check {
        non_empty_path("file.output", &self.file.output)?;
        non_empty_path("file.data_dir", &self.file.data_dir)?;
        for (i, input) in self.file.inputs.iter().enumerate() {
            ensure(!input.as_os_str().is_empty(), format!("file.inputs[{i}]"), || {
                "must not be empty: give a file path".to_owned()
            })?;
        }
        let p = &self.pipeline;
        ensure(p.commit_every_events >= 1, "pipeline.commit_every_events", || {
            format!("must be at least 1, got {}", p.commit_every_events)
        })?;
        duration_in("pipeline.commit_interval", p.commit_interval, MS, DAY)?;
        duration_in("pipeline.shutdown_timeout", p.shutdown_timeout, MS, DAY)?;
        let s = &self.state;
        ensure((1..=1 << 20).contains(&s.block_cache_mib), "state.block_cache_mib", || {
            format!("must be between 1 and 1048576 (MiB), got {}", s.block_cache_mib)
        })?;
        ensure((1..=1 << 20).contains(&s.memtables_mib), "state.memtables_mib", || {
            format!("must be between 1 and 1048576 (MiB), got {}", s.memtables_mib)
        })?;
        ensure(s.window_sums_shops <= 100_000_000, "state.window_sums_shops", || {
            format!("must be at most 100000000 (0 remembers none), got {}", s.window_sums_shops)
        })?;
        ensure(s.window_sums_buckets <= 100_000_000, "state.window_sums_buckets", || {
            format!("must be at most 100000000 (0 remembers none), got {}", s.window_sums_buckets)
        })
    }

    fn validate_kafka(&self) -> Check {
        let k = &self.kafka;
        ensure((1..=1024).contains(&k.shards), "kafka.shards", || {
            format!("must be between 1 and 1024, got {}", k.shards)
        })?;
        ensure(k.replication_factor == -1 || k.replication_factor >= 1, "kafka.replication_factor", || {
            format!("must be -1 (broker default) or at least 1, got {}", k.replication_factor)
        })?;
        ensure(!k.group.trim().is_empty(), "kafka.group", || {
            "must not be empty: name the consumer group, e.g. \"shopscore\"".to_owned()
        })?;
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (name, topic) in k.topics.all() {
            let key = format!("kafka.topics.{name}");
            topic_name(&key, topic)?;
            if let Some((other, _)) = seen.iter().find(|(_, t)| *t == topic) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "must differ from `kafka.topics.{other}`: both are \"{topic}\"; \
                         give each input and output its own topic"
                    ),
                ));
            }
            seen.push((name, topic));
        }
        for (reserved, fix) in RESERVED_CLIENT_KEYS {
            ensure(!k.client.contains_key(reserved), format!("kafka.client.{reserved}"), || {
                format!("cannot be set here: {fix}")
            })?;
        }
        // librdkafka checks names and values only when a client is created, after the topics
        // are checked and with its own words only: ask it now, setting by setting (no client
        // is created, no broker contacted).
        for (setting, value) in &k.client {
            let mut one = rdkafka::ClientConfig::new();
            one.set(setting, value);
            if let Err(rdkafka::error::KafkaError::ClientConfig(_, problem, ..)) = one.create_native_config()
            {
                return Err(ConfigError::invalid(
                    format!("kafka.client.{setting}"),
                    format!(
                        "is not accepted by librdkafka: {problem}; see the settings librdkafka \
                         knows and their values in its CONFIGURATION.md (keys are its dotted names)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_alerts(&self) -> Check {
        let mut names = HashSet::new();
        let windows: Vec<String> = self.windows.days.iter().map(|d| format!("{d}d")).collect();
        for (i, rule) in self.alerts.iter().enumerate() {
            let at = |field: &str| format!("alerts[{i}].{field}");
            ensure(!rule.name.trim().is_empty(), at("name"), || {
                "must not be empty: name the rule, e.g. \"high-refund-rate\"".to_owned()
            })?;
            ensure(names.insert(rule.name.as_str()), at("name"), || {
                format!("\"{}\" is used by an earlier rule: names must be unique", rule.name)
            })?;
            ensure(rule.threshold.is_finite(), at("threshold"), || {
                format!("must be a finite number, got {}", rule.threshold)
            })?;
            let metric = rule.metric.as_str();
            match (rule.metric.is_windowed(), rule.window) {
                (true, None) => {
                    return Err(ConfigError::invalid(
                        at("window"),
                        format!("is required for metric `{metric}`: add one of {}", windows.join(", ")),
                    ))
                }
                (true, Some(w)) => ensure(self.windows.days.contains(&w.0), at("window"), || {
                    format!("must be one of `windows.days` ({}), got \"{w}\"", windows.join(", "))
                })?,
                (false, Some(w)) => {
                    return Err(ConfigError::invalid(
                        at("window"),
                        format!(
                            "must be left out for metric `{metric}` (it has its own window: \
                             `windows.dsr_days` for DSR, 30 days for campaign_eligible), got \"{w}\""
                        ),
                    ))
                }
                (false, None) => {}
            }
            if rule.metric == AlertMetric::CampaignEligible {
                ensure(
                    rule.op == AlertOp::Eq && (rule.threshold == 0.0 || rule.threshold == 1.0),
                    at("op"),
                    || {
                        format!(
                            "campaign_eligible is true or false: write op = \"==\" and \
                             threshold = false (or true), got {} {}",
                            rule.op.as_str(),
                            rule.threshold
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    fn validate_log(&self) -> Check {
        let level = &self.log.level;
        let parsed = tracing_subscriber::EnvFilter::try_new(level);
        // A bare word is a target filter to EnvFilter, so `"infoo"` would silently log nothing.
        let bare_word = !level.contains(['=', ',', '[', ':']);
        let known_level = ["trace", "debug", "info", "warn", "error", "off"]
            .contains(&level.trim().to_ascii_lowercase().as_str());
        ensure(!level.trim().is_empty() && parsed.is_ok() && (!bare_word || known_level), "log.level", || {
            let why = parsed.err().map(|e| format!(" ({e})")).unwrap_or_default();
            format!(
                "must be a level (trace, debug, info, warn, error, off) or tracing \
                     filter directives like \"shopscore=debug,warn\", got \"{level}\"{why}"
            )
        })
    }
}
