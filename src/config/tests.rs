//! Unit tests of configuration loading: layering, typed values and error messages. Each test
//! runs in a `figment::Jail` (a temporary current directory and an isolated environment).

// `Jail` closures must return `figment::Result`, whose error type is large.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;

use super::*;

/// Runs `f` in a jail with no environment variables.
fn jailed(f: impl FnOnce(&mut Jail) -> figment::Result<()>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        f(jail)
    });
}

fn load_err(file: Option<&str>) -> ConfigError {
    load(file.map(Path::new)).expect_err("configuration should be rejected")
}

#[test]
fn defaults_load_without_file_or_env() {
    jailed(|_| {
        let cfg = load(None).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.time.out_of_orderness_ms(), 5 * 60 * 1000);
        assert_eq!(cfg.time.allowed_lateness_ms(), 24 * 3600 * 1000);
        assert_eq!(cfg.time.idle_timeout_ms(), 60 * 1000);
        assert_eq!(cfg.windows.days, vec![1, 7, 30]);
        assert_eq!(cfg.windows.dsr_days, 180);
        assert_eq!(cfg.orders.default_ship_window_ms(), 48 * 3600 * 1000);
        assert_eq!(cfg.satisfaction.max_per_buyer, 3);
        assert_eq!(cfg.satisfaction.min_interval_ms(), 10 * 60 * 1000);
        assert_eq!(cfg.compensation.rule_version, "2024-01");
        assert_eq!(cfg.compensation.late_rate_percent, 30);
        assert_eq!(cfg.compensation.late_min_fen, 500);
        assert_eq!(cfg.compensation.group_cap_fen, 50_000);
        assert_eq!(cfg.compensation.group_span_ms(), 24 * 3600 * 1000);
        assert_eq!(cfg.compensation.promise_breach_fen, 1_000);
        assert_eq!(cfg.file.output, Path::new("out"));
        assert_eq!(cfg.file.data_dir, Path::new("data"));
        assert_eq!(cfg.pipeline.commit_every_events, 50_000);
        assert_eq!(cfg.pipeline.commit_interval, Duration::from_secs(1));
        // `[state]`'s defaults are those the stores and engines use when built without a
        // configuration (tests, FileRun::new): one value, stated twice.
        let s = &cfg.state;
        assert_eq!(
            crate::state::rocks::MemoryLimits::from_mib(s.block_cache_mib, s.memtables_mib),
            crate::state::rocks::MemoryLimits::default()
        );
        let sums = crate::rules::rolling::SumsLimits::default();
        assert_eq!((s.window_sums_shops, s.window_sums_buckets), (sums.shops as u64, sums.buckets as u64));
        assert!(!cfg.kafka_mode());
        assert_eq!(cfg.kafka.group, "shopscore");
        assert!(cfg.kafka.transactional);
        assert_eq!(cfg.kafka.topics.metrics, "shop-metrics");
        assert_eq!(cfg.kafka.topics.alerts, "shop-alerts");
        assert_eq!(cfg.kafka.topics.dead_letters, "dead-letters");
        assert_eq!(cfg.kafka.encoding.service, Encoding::Json);
        assert_eq!(cfg.kafka.encoding.metrics, Encoding::Json);
        assert_eq!(cfg.kafka.encoding.compensations, Encoding::Json);
        assert_eq!(cfg.kafka.encoding.alerts, Encoding::Json);
        assert!(cfg.alerts.is_empty());
        assert_eq!(cfg.http.addr.to_string(), "127.0.0.1:9464");
        assert_eq!(cfg.log.format, LogFormat::Auto);
        assert_eq!(cfg.log.level, "info");
        Ok(())
    });
}

#[test]
fn default_file_is_used_when_present_in_current_directory() {
    jailed(|jail| {
        jail.create_dir("config")?;
        jail.create_file(DEFAULT_CONFIG_FILE, "[time]\nout_of_orderness = \"10m\"\n")?;
        let cfg = load(None).unwrap();
        assert_eq!(cfg.time.out_of_orderness_ms(), 600_000);
        assert_eq!(cfg.time.allowed_lateness_ms(), 86_400_000);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults() {
    jailed(|jail| {
        jail.create_file(
            "custom.toml",
            r#"
            [time]
            allowed_lateness = "2d"
            [windows]
            days = [1, 14]
            [compensation]
            late_rate_percent = 25
            [kafka]
            brokers = "k1:9092,k2:9092"
            [kafka.encoding]
            refunds = "protobuf"
            compensations = "protobuf"
            [kafka.client]
            "security.protocol" = "SASL_SSL"
            linger_ms = 5
            [[alerts]]
            name = "refunds-high"
            metric = "refund_rate"
            window = "14d"
            op = ">"
            threshold = 0.05
            [[alerts]]
            name = "not-eligible"
            metric = "campaign_eligible"
            op = "=="
            threshold = false
            [log]
            format = "json"
            level = "shopscore=debug,warn"
            "#,
        )?;
        let cfg = load(Some(Path::new("custom.toml"))).unwrap();
        assert_eq!(cfg.time.allowed_lateness_ms(), 2 * 86_400_000);
        assert_eq!(cfg.time.out_of_orderness_ms(), 300_000, "untouched key keeps default");
        assert_eq!(cfg.windows.days, vec![1, 14]);
        assert_eq!(cfg.compensation.late_rate_percent, 25);
        assert!(cfg.kafka_mode());
        assert_eq!(cfg.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(cfg.kafka.encoding.refunds, Encoding::Protobuf);
        assert_eq!(cfg.kafka.encoding.orders, Encoding::Json);
        assert_eq!(cfg.kafka.encoding.compensations, Encoding::Protobuf);
        assert_eq!(cfg.kafka.encoding.metrics, Encoding::Json);
        assert_eq!(cfg.kafka.client.len(), 2);
        assert_eq!(cfg.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(cfg.kafka.client["linger.ms"], "5");
        assert_eq!(cfg.alerts.len(), 2);
        let high = &cfg.alerts[0];
        assert_eq!(high.name, "refunds-high");
        assert_eq!(high.metric, AlertMetric::RefundRate);
        assert_eq!(high.window, Some(WindowDays(14)));
        assert_eq!(high.op, AlertOp::Gt);
        assert_eq!(high.threshold, 0.05);
        assert!(high.holds(Some(0.06)));
        assert!(!high.holds(Some(0.05)));
        assert!(!high.holds(None));
        let eligible = &cfg.alerts[1];
        assert_eq!(eligible.metric, AlertMetric::CampaignEligible);
        assert_eq!(eligible.window, None);
        assert_eq!(eligible.threshold, 0.0);
        assert!(eligible.holds(Some(0.0)));
        assert_eq!(cfg.log.format, LogFormat::Json);
        Ok(())
    });
}

#[test]
fn env_overrides_file() {
    jailed(|jail| {
        jail.create_file(
            "c.toml",
            "[time]\nout_of_orderness = \"10m\"\n[kafka.client]\n\"security.protocol\" = \"SSL\"\n",
        )?;
        jail.set_env("SHOPSCORE__TIME__OUT_OF_ORDERNESS", "20m");
        jail.set_env("SHOPSCORE__WINDOWS__DAYS", "[1, 30]");
        jail.set_env("SHOPSCORE__COMPENSATION__RULE_VERSION", "2025");
        jail.set_env("SHOPSCORE__KAFKA__BROKERS", "localhost:9092");
        jail.set_env("SHOPSCORE__KAFKA__TRANSACTIONAL", "false");
        jail.set_env("SHOPSCORE__KAFKA__TOPICS__ORDERS", "orders-v2");
        jail.set_env("SHOPSCORE__KAFKA__CLIENT__SECURITY_PROTOCOL", "SASL_SSL");
        jail.set_env("SHOPSCORE__KAFKA__CLIENT__SASL__PASSWORD", "secret");
        jail.set_env("SHOPSCORE__HTTP__ADDR", "0.0.0.0:9000");
        jail.set_env("SHOPSCORE__FILE__INPUTS", "[a.jsonl, in/b.jsonl]");
        let cfg = load(Some(Path::new("c.toml"))).unwrap();
        assert_eq!(cfg.file.inputs, vec![PathBuf::from("a.jsonl"), PathBuf::from("in/b.jsonl")]);
        assert_eq!(cfg.time.out_of_orderness_ms(), 20 * 60_000);
        assert_eq!(cfg.windows.days, vec![1, 30]);
        assert_eq!(cfg.compensation.rule_version, "2025");
        assert_eq!(cfg.kafka.brokers, "localhost:9092");
        assert!(!cfg.kafka.transactional);
        assert_eq!(cfg.kafka.topics.orders, "orders-v2");
        assert_eq!(cfg.kafka.topics.refunds, "refunds");
        assert_eq!(cfg.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(cfg.kafka.client["sasl.password"], "secret");
        assert_eq!(cfg.kafka.client.len(), 2);
        assert_eq!(cfg.http.addr.to_string(), "0.0.0.0:9000");
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_names_key_and_valid_keys() {
    jailed(|jail| {
        jail.create_file("c.toml", "[time]\nfoo = \"1m\"\n")?;
        let err = load_err(Some("c.toml"));
        assert_eq!(err.key(), Some("time.foo"));
        assert_eq!(
            err.to_string(),
            "unknown key `time.foo` in c.toml: remove it or check the spelling; valid keys in \
             [time]: out_of_orderness, allowed_lateness, idle_timeout"
        );
        Ok(())
    });
}

#[test]
fn unknown_section_and_nested_keys_in_file() {
    jailed(|jail| {
        jail.create_file("a.toml", "[tiem]\nout_of_orderness = \"1m\"\n")?;
        let msg = load_err(Some("a.toml")).to_string();
        assert!(msg.starts_with("unknown key `tiem` in a.toml"), "{msg}");
        assert!(msg.contains("time, windows, orders"), "{msg}");

        jail.create_file("b.toml", "[kafka.topics]\nmetric = \"m\"\n")?;
        let msg = load_err(Some("b.toml")).to_string();
        assert!(msg.contains("`kafka.topics.metric`"), "{msg}");
        assert!(msg.contains("valid keys in [kafka.topics]: orders,"), "{msg}");

        jail.create_file(
            "c.toml",
            "[[alerts]]\nname = \"x\"\nmetric = \"refund_rate\"\nwindow = \"7d\"\nop = \">\"\n\
             threshold = 1\nthreshhold = 2\n",
        )?;
        let msg = load_err(Some("c.toml")).to_string();
        assert!(msg.contains("`alerts[0].threshhold`"), "{msg}");
        assert!(msg.contains("valid keys in [[alerts]]: name, metric, window, op, threshold"));
        Ok(())
    });
}

#[test]
fn output_encodings_by_env_and_no_dead_letter_encoding() {
    jailed(|jail| {
        jail.set_env("SHOPSCORE__KAFKA__ENCODING__METRICS", "protobuf");
        jail.set_env("SHOPSCORE__KAFKA__ENCODING__ALERTS", "protobuf");
        let cfg = load(None).unwrap();
        assert_eq!(cfg.kafka.encoding.metrics, Encoding::Protobuf);
        assert_eq!(cfg.kafka.encoding.alerts, Encoding::Protobuf);
        assert_eq!(cfg.kafka.encoding.compensations, Encoding::Json);

        jail.set_env("SHOPSCORE__KAFKA__ENCODING__COMPENSATIONS", "proto");
        let msg = load_err(None).to_string();
        assert_eq!(
            msg,
            "bad value for `kafka.encoding.compensations` from environment variable \
             SHOPSCORE__KAFKA__ENCODING__COMPENSATIONS: \"proto\" is not a valid value; use one of \
             \"json\", \"protobuf\""
        );

        jail.clear_env();
        jail.create_file("c.toml", "[kafka.encoding]\ndead_letters = \"protobuf\"\n")?;
        let err = load_err(Some("c.toml"));
        assert_eq!(err.key(), Some("kafka.encoding.dead_letters"));
        assert_eq!(
            err.to_string(),
            "unknown key `kafka.encoding.dead_letters` in c.toml: remove it: dead letters carry the \
             original record bytes untouched, so no encoding applies to them; valid keys in \
             [kafka.encoding]: orders, logistics, refunds, service, metrics, compensations, alerts"
        );
        Ok(())
    });
}

#[test]
fn unknown_key_in_env_names_variable() {
    jailed(|jail| {
        jail.set_env("SHOPSCORE__TIME__FOO", "1m");
        let err = load_err(None);
        assert_eq!(
            err,
            ConfigError::UnknownKey {
                key: "time.foo".to_owned(),
                origin: Origin::Env("SHOPSCORE__TIME__FOO".to_owned()),
                fix: "unset it or check the spelling; valid keys in [time]: out_of_orderness, \
                      allowed_lateness, idle_timeout"
                    .to_owned(),
            }
        );
        assert!(err
            .to_string()
            .starts_with("unknown key `time.foo` from environment variable SHOPSCORE__TIME__FOO"));

        jail.clear_env();
        jail.set_env("SHOPSCORE__KAFKA__BROKERS", "");
        assert!(!load(None).unwrap().kafka_mode(), "an empty variable means file mode");
        Ok(())
    });
}

#[test]
fn bad_duration_names_key_in_file_and_env() {
    jailed(|jail| {
        jail.create_file("c.toml", "[time]\nout_of_orderness = \"5 parsecs\"\n")?;
        let err = load_err(Some("c.toml"));
        assert_eq!(err.key(), Some("time.out_of_orderness"));
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "bad value for `time.out_of_orderness` in c.toml: \"5 parsecs\" is not a duration"
            ),
            "{msg}"
        );
        assert!(msg.contains("parsecs"), "{msg}");
        assert!(msg.contains("like \"5m\", \"48h\" or \"1d\""), "{msg}");

        jail.set_env("SHOPSCORE__ORDERS__DEFAULT_SHIP_WINDOW", "5 parsecs");
        let msg = load_err(None).to_string();
        assert!(
            msg.starts_with(
                "bad value for `orders.default_ship_window` from environment variable \
                 SHOPSCORE__ORDERS__DEFAULT_SHIP_WINDOW: \"5 parsecs\" is not a duration"
            ),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn number_where_duration_expected() {
    jailed(|jail| {
        jail.create_file("c.toml", "[satisfaction]\nmin_interval = 600\n")?;
        let msg = load_err(Some("c.toml")).to_string();
        assert!(msg.contains("`satisfaction.min_interval`"), "{msg}");
        assert!(msg.contains("600"), "{msg}");
        assert!(msg.contains("write a duration as a string"), "{msg}");
        Ok(())
    });
}

#[test]
fn invalid_windows_are_rejected() {
    jailed(|jail| {
        jail.create_file("c.toml", "[windows]\ndays = []\n")?;
        assert_eq!(
            load_err(Some("c.toml")).to_string(),
            "`windows.days` must list 1 to 8 distinct day counts between 1 and 366, got [] \
             (set in c.toml)"
        );
        for bad in ["[7, 7]", "[0, 7]", "[1, 400]", "[1, 2, 3, 4, 5, 6, 7, 8, 9]"] {
            jail.create_file("c.toml", &format!("[windows]\ndays = {bad}\n"))?;
            let err = load_err(Some("c.toml"));
            assert_eq!(err.key(), Some("windows.days"), "{bad}");
        }
        jail.create_file("c.toml", "[windows]\ndays = [-1]\n")?;
        assert_eq!(load_err(Some("c.toml")).key(), Some("windows.days[0]"));

        jail.create_file("c.toml", "")?;
        jail.set_env("SHOPSCORE__WINDOWS__DSR_DAYS", 0);
        assert_eq!(
            load_err(Some("c.toml")).to_string(),
            "`windows.dsr_days` must be a day count between 1 and 366, got 0 (set by \
             environment variable SHOPSCORE__WINDOWS__DSR_DAYS)"
        );
        Ok(())
    });
}

#[test]
fn missing_config_file_names_path() {
    jailed(|_| {
        let err = load_err(Some("nowhere/shopscore.toml"));
        assert_eq!(err, ConfigError::FileNotFound { path: "nowhere/shopscore.toml".into() });
        let msg = err.to_string();
        assert!(
            msg.starts_with("config file nowhere/shopscore.toml (given with --config) does not exist"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn toml_syntax_error_names_file() {
    jailed(|jail| {
        jail.create_file("c.toml", "[time\n")?;
        match load_err(Some("c.toml")) {
            ConfigError::Syntax { file, message } => {
                assert_eq!(file, Path::new("c.toml"));
                assert!(message.contains("line 1"), "{message}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn enum_values_list_the_choices() {
    jailed(|jail| {
        jail.create_file("c.toml", "[kafka.encoding]\norders = \"xml\"\n")?;
        assert_eq!(
            load_err(Some("c.toml")).to_string(),
            "bad value for `kafka.encoding.orders` in c.toml: \"xml\" is not a valid value; use \
             one of \"json\", \"protobuf\""
        );
        jail.create_file(
            "c.toml",
            "[[alerts]]\nname = \"x\"\nmetric = \"refund_ratio\"\nwindow = \"7d\"\nop = \">\"\n\
             threshold = 1\n",
        )?;
        let msg = load_err(Some("c.toml")).to_string();
        assert!(msg.contains("`alerts[0].metric`"), "{msg}");
        assert!(msg.contains("\"refund_rate\", \"dispute_refund_rate\""), "{msg}");
        assert!(msg.contains("\"campaign_eligible\""), "{msg}");
        Ok(())
    });
}

fn alert(fields: &str) -> String {
    format!("[[alerts]]\nname = \"r\"\n{fields}\n")
}

#[test]
fn alert_rules_are_validated() {
    jailed(|jail| {
        let cases = [
            (
                "metric = \"refund_rate\"\nwindow = \"14d\"\nop = \">\"\nthreshold = 0.1",
                "`alerts[0].window` must be one of `windows.days` (1d, 7d, 30d), got \"14d\"",
            ),
            (
                "metric = \"refund_rate\"\nop = \">\"\nthreshold = 0.1",
                "`alerts[0].window` is required for metric `refund_rate`",
            ),
            (
                "metric = \"dsr_service\"\nwindow = \"30d\"\nop = \"<\"\nthreshold = 4.6",
                "`alerts[0].window` must be left out for metric `dsr_service`",
            ),
            (
                "metric = \"campaign_eligible\"\nop = \">\"\nthreshold = 0",
                "`alerts[0].op` campaign_eligible is true or false",
            ),
            (
                "metric = \"refund_rate\"\nwindow = \"30\"\nop = \">\"\nthreshold = 0.1",
                "bad value for `alerts[0].window` in c.toml",
            ),
            (
                "metric = \"refund_rate\"\nwindow = \"7d\"\nop = \"=>\"\nthreshold = 0.1",
                "use one of \">\", \">=\", \"<\", \"<=\", \"==\"",
            ),
            (
                "metric = \"refund_rate\"\nwindow = \"7d\"\nop = \">\"",
                "missing key `alerts[0].threshold` in c.toml",
            ),
        ];
        for (fields, expected) in cases {
            jail.create_file("c.toml", &alert(fields))?;
            let msg = load_err(Some("c.toml")).to_string();
            assert!(msg.contains(expected), "{fields}\n→ {msg}");
        }
        let twice = format!(
            "{}{}",
            alert("metric = \"dsr_service\"\nop = \"<\"\nthreshold = 4.6"),
            alert("metric = \"dsr_logistics\"\nop = \"<\"\nthreshold = 4.6"),
        );
        jail.create_file("c.toml", &twice)?;
        let msg = load_err(Some("c.toml")).to_string();
        assert!(msg.starts_with("`alerts[1].name` \"r\" is used by an earlier rule"), "{msg}");
        Ok(())
    });
}

#[test]
fn value_ranges_are_validated() {
    jailed(|jail| {
        let cases = [
            ("[compensation]\nlate_rate_percent = 101", "compensation.late_rate_percent"),
            ("[compensation]\ngroup_cap_fen = -1", "compensation.group_cap_fen"),
            ("[compensation]\nrule_version = \"\"", "compensation.rule_version"),
            ("[compensation]\ngroup_span = \"0s\"", "compensation.group_span"),
            ("[satisfaction]\nmax_per_buyer = 0", "satisfaction.max_per_buyer"),
            ("[time]\nidle_timeout = \"0s\"", "time.idle_timeout"),
            ("[time]\nallowed_lateness = \"400d\"", "time.allowed_lateness"),
            ("[pipeline]\ncommit_every_events = 0", "pipeline.commit_every_events"),
            ("[state]\nblock_cache_mib = 0", "state.block_cache_mib"),
            ("[state]\nmemtables_mib = 0", "state.memtables_mib"),
            ("[state]\nwindow_sums_buckets = 100000001", "state.window_sums_buckets"),
            ("[kafka.topics]\nalerts = \"orders\"", "kafka.topics.alerts"),
            ("[kafka.topics]\norders = \"my topic\"", "kafka.topics.orders"),
            ("[kafka]\ngroup = \"\"", "kafka.group"),
            ("[kafka.client]\n\"group.id\" = \"g\"", "kafka.client.group.id"),
            ("[log]\nlevel = \"infoo\"", "log.level"),
            ("[http]\naddr = \"localhost\"", "http.addr"),
            ("[file]\noutput = \"\"", "file.output"),
        ];
        for (toml, key) in cases {
            jail.create_file("c.toml", toml)?;
            let err = load_err(Some("c.toml"));
            assert_eq!(err.key(), Some(key), "{toml}\n→ {err}");
        }
        jail.create_file("c.toml", "[kafka.topics]\nalerts = \"orders\"")?;
        assert_eq!(
            load_err(Some("c.toml")).to_string(),
            "`kafka.topics.alerts` must differ from `kafka.topics.orders`: both are \"orders\"; \
             give each input and output its own topic (set in c.toml)"
        );
        Ok(())
    });
}

#[test]
fn alert_ops_compare() {
    assert!(AlertOp::Ge.apply(0.5, 0.5));
    assert!(!AlertOp::Gt.apply(0.5, 0.5));
    assert!(AlertOp::Lt.apply(4.5, 4.6));
    assert!(AlertOp::Le.apply(4.6, 4.6));
    assert!(AlertOp::Eq.apply(0.0, 0.0));
    assert_eq!(AlertMetric::ALL.len(), 13);
    let windowed = AlertMetric::ALL.iter().filter(|m| m.is_windowed()).count();
    assert_eq!(windowed, 9);
}

#[test]
fn client_settings_librdkafka_rejects_stop_startup_and_name_the_setting() {
    jailed(|jail| {
        jail.set_env("SHOPSCORE__KAFKA__CLIENT__FETCH_MAX_BYTEZ", "1");
        let err = load_err(None).to_string();
        assert!(
            err.starts_with("`kafka.client.fetch.max.bytez` is not accepted by librdkafka: ")
                && err.contains("No such configuration property")
                && err.ends_with("(set by environment variable SHOPSCORE__KAFKA__CLIENT__FETCH_MAX_BYTEZ)"),
            "{err}"
        );
        Ok(())
    });
    jailed(|jail| {
        jail.create_file("c.toml", "[kafka.client]\n\"fetch.max.bytes\" = \"abc\"\n")?;
        let err = load_err(Some("c.toml")).to_string();
        assert!(
            err.starts_with("`kafka.client.fetch.max.bytes` is not accepted by librdkafka: ")
                && err.contains("Invalid value")
                && err.ends_with("(set in c.toml)"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn reserved_client_setting_from_env_names_variable() {
    jailed(|jail| {
        jail.set_env("SHOPSCORE__KAFKA__CLIENT__GROUP_ID", "other");
        assert_eq!(
            load_err(None).to_string(),
            "`kafka.client.group.id` cannot be set here: set `kafka.group` instead (set by \
             environment variable SHOPSCORE__KAFKA__CLIENT__GROUP_ID)"
        );
        Ok(())
    });
}
