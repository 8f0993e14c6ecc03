//! From the typed configuration to the library's run descriptions: the rules' parameters,
//! a file-mode run and a Kafka-mode run. Flags then override what they name.

use shopscore::config::Config;
use shopscore::domain::decode::DecodeOptions;
use shopscore::kafka::runtime::KafkaRun;
use shopscore::kafka::topics::OutputTopics;
use shopscore::pipeline::FileRun;
use shopscore::rules::compensation::CompensationRules;
use shopscore::rules::rolling::SumsLimits;
use shopscore::rules::satisfaction::SatisfactionRules;
use shopscore::rules::RulesConfig;
use shopscore::state::rocks::MemoryLimits;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The rules' parameters from the configuration.
fn rules_config(cfg: &Config) -> RulesConfig {
    let c = &cfg.compensation;
    RulesConfig {
        windows: cfg.windows.days.clone(),
        dsr_days: cfg.windows.dsr_days,
        out_of_orderness_ms: cfg.time.out_of_orderness_ms(),
        allowed_lateness_ms: cfg.time.allowed_lateness_ms(),
        satisfaction: SatisfactionRules {
            max_per_buyer: cfg.satisfaction.max_per_buyer,
            min_interval_ms: cfg.satisfaction.min_interval_ms(),
        },
        compensation: CompensationRules {
            rule_version: c.rule_version.clone(),
            late_rate_percent: c.late_rate_percent,
            late_min_fen: c.late_min_fen,
            group_cap_fen: c.group_cap_fen,
            group_span_ms: c.group_span_ms(),
            promise_breach_fen: c.promise_breach_fen,
        },
        alerts: cfg.alerts.clone(),
        sums: SumsLimits {
            shops: usize::try_from(cfg.state.window_sums_shops).unwrap_or(usize::MAX),
            buckets: usize::try_from(cfg.state.window_sums_buckets).unwrap_or(usize::MAX),
        },
    }
}

/// File mode as configured (flags override inputs, output and data directory afterwards).
pub fn file_run(cfg: &Config) -> FileRun {
    FileRun {
        inputs: cfg.file.inputs.clone(),
        output: cfg.file.output.clone(),
        data_dir: cfg.file.data_dir.clone(),
        rules: rules_config(cfg),
        decode: DecodeOptions { default_ship_window_ms: cfg.orders.default_ship_window_ms() },
        commit_every_records: cfg.pipeline.commit_every_events,
        commit_interval: cfg.pipeline.commit_interval,
        progress_every: Some(Duration::from_secs(10)),
        memory: memory_limits(cfg),
        ..FileRun::new(Vec::new(), PathBuf::new(), PathBuf::new())
    }
}

/// Kafka mode as configured, on `brokers`, with the group and data directory flags applied.
pub fn kafka_run(
    cfg: &Config,
    brokers: String,
    group: Option<String>,
    data_dir: Option<PathBuf>,
) -> KafkaRun {
    let mut kafka = cfg.kafka.clone();
    kafka.brokers = brokers;
    if let Some(g) = group {
        kafka.group = g;
    }
    KafkaRun {
        outputs: OutputTopics::from_config(&kafka),
        kafka,
        rules: rules_config(cfg),
        decode: DecodeOptions { default_ship_window_ms: cfg.orders.default_ship_window_ms() },
        data_dir: data_dir.unwrap_or_else(|| cfg.file.data_dir.clone()),
        commit_interval: cfg.pipeline.commit_interval,
        commit_every_records: cfg.pipeline.commit_every_events,
        idle_timeout: Duration::from_millis(cfg.time.idle_timeout_ms() as u64),
        exit_when_idle: false,
        stop: Arc::new(AtomicBool::new(false)),
        progress_every: Some(Duration::from_secs(10)),
        live: None,
        metrics: None,
        memory: memory_limits(cfg),
    }
}

/// The state stores' memory as configured (`[state]`).
fn memory_limits(cfg: &Config) -> MemoryLimits {
    MemoryLimits::from_mib(cfg.state.block_cache_mib, cfg.state.memtables_mib)
}
