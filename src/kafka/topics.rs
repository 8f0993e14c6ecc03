//! Startup checks of the topics (SPEC §6, §10): the input topics must exist (and agree with
//! the shard count when `kafka.co_partitioned`), the outputs and the changelog are created when
//! missing, and a changelog whose partition count differs from `kafka.shards` stops startup.
//! Every error names the topic, the config key and what to change.

use super::client::Clients;
use super::{Context, KafkaError};
use crate::config::{Encoding, KafkaConfig};
use crate::domain::decode::{decode_json, decode_proto, DecodeError, DecodeOptions};
use crate::domain::event::Stream;
use crate::domain::Event;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use std::time::{Duration, Instant};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One input topic as found on the brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputTopic {
    pub name: String,
    pub stream: Stream,
    pub encoding: Encoding,
    pub partitions: u32,
}

impl InputTopic {
    /// Decodes one of this topic's records in the topic's encoding.
    pub fn decode(&self, raw: &[u8], opts: &DecodeOptions) -> Result<Event, DecodeError> {
        match self.encoding {
            Encoding::Json => decode_json(raw, Some(self.stream), opts),
            Encoding::Protobuf => decode_proto(self.stream, raw, opts),
        }
    }
}

/// The output topics by role, and how their records are encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputTopics {
    pub metrics: String,
    pub compensations: String,
    pub alerts: String,
    pub dead_letters: String,
    pub encoding: OutputEncodings,
}

/// The encoding of each output topic (`kafka.encoding.{metrics,compensations,alerts}`). Dead
/// letters have none: they carry the original record bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputEncodings {
    pub metrics: Encoding,
    pub compensations: Encoding,
    pub alerts: Encoding,
}

impl OutputTopics {
    pub fn from_config(cfg: &KafkaConfig) -> OutputTopics {
        let (t, e) = (&cfg.topics, &cfg.encoding);
        OutputTopics {
            metrics: t.metrics.clone(),
            compensations: t.compensations.clone(),
            alerts: t.alerts.clone(),
            dead_letters: t.dead_letters.clone(),
            encoding: OutputEncodings {
                metrics: e.metrics,
                compensations: e.compensations,
                alerts: e.alerts,
            },
        }
    }

    /// The same topics with `prefix` in front of each name (a replay's outputs), encoded alike.
    pub fn prefixed(&self, prefix: &str) -> OutputTopics {
        OutputTopics {
            metrics: format!("{prefix}{}", self.metrics),
            compensations: format!("{prefix}{}", self.compensations),
            alerts: format!("{prefix}{}", self.alerts),
            dead_letters: format!("{prefix}{}", self.dead_letters),
            encoding: self.encoding,
        }
    }

    /// Short names (`m`, `c`, `a`, `d`), every output in `encoding`: for unit tests.
    #[cfg(test)]
    pub(crate) fn uniform(encoding: Encoding) -> OutputTopics {
        OutputTopics {
            metrics: "m".into(),
            compensations: "c".into(),
            alerts: "a".into(),
            dead_letters: "d".into(),
            encoding: OutputEncodings { metrics: encoding, compensations: encoding, alerts: encoding },
        }
    }

    /// `(topic, config key, compacted)` for each output.
    pub fn all(&self) -> [(&str, &'static str, bool); 4] {
        [
            (&self.metrics, "kafka.topics.metrics", true),
            (&self.compensations, "kafka.topics.compensations", false),
            (&self.alerts, "kafka.topics.alerts", false),
            (&self.dead_letters, "kafka.topics.dead_letters", false),
        ]
    }
}

/// Everything the runtime needs to know about the topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// In the order orders, logistics, refunds, service; the index is the topic's number in
    /// watermark partition ids ([`Layout::clock_id`]).
    pub inputs: Vec<InputTopic>,
    pub outputs: OutputTopics,
    pub changelog: String,
    pub shards: u32,
    pub co_partitioned: bool,
}

impl Layout {
    /// The watermark clock id of an input partition (input topic index, partition).
    pub fn clock_id(topic_index: usize, partition: i32) -> i32 {
        ((topic_index as i32) << 20) | partition
    }

    /// The input partitions shard `shard` reads: all of them, or with co-partitioned inputs
    /// the ones numbered like the shard.
    pub fn shard_inputs(&self, shard: u32) -> Vec<(usize, i32)> {
        let mut out = Vec::new();
        for (i, t) in self.inputs.iter().enumerate() {
            for p in 0..t.partitions as i32 {
                if !self.co_partitioned || p as u32 == shard {
                    out.push((i, p));
                }
            }
        }
        out
    }
}

fn input_topics(cfg: &KafkaConfig) -> [(&str, &'static str, Stream, Encoding); 4] {
    let (t, e) = (&cfg.topics, &cfg.encoding);
    [
        (&t.orders, "kafka.topics.orders", Stream::Orders, e.orders),
        (&t.logistics, "kafka.topics.logistics", Stream::Logistics, e.logistics),
        (&t.refunds, "kafka.topics.refunds", Stream::Refunds, e.refunds),
        (&t.service, "kafka.topics.service", Stream::Service, e.service),
    ]
}

/// Partition count of `topic`, or None when it does not exist.
pub fn partition_count<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Option<u32>, KafkaError> {
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .context(|| format!("reading metadata of topic {topic:?}"))?;
    Ok(partitions_in(&md, topic))
}

/// [`partition_count`] for a running shard: a broker out of reach is waited for
/// ([`super::retry`]).
pub fn partition_count_retried<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Option<u32>, KafkaError> {
    let md = super::retry::retried(
        || format!("reading metadata of topic {topic:?}"),
        || consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT),
    )?;
    Ok(partitions_in(&md, topic))
}

/// The partition count of `topic` in `md`, or None when it does not exist there.
fn partitions_in(md: &rdkafka::metadata::Metadata, topic: &str) -> Option<u32> {
    md.topics().iter().find(|t| t.name() == topic).and_then(|t| {
        if t.error().is_some() || t.partitions().is_empty() {
            None
        } else {
            Some(t.partitions().len() as u32)
        }
    })
}

/// Checks the inputs and makes sure the outputs and the changelog exist.
pub fn prepare(clients: &Clients, cfg: &KafkaConfig, outputs: &OutputTopics) -> Result<Layout, KafkaError> {
    let consumer: BaseConsumer = clients.admin().create().context(|| "creating a metadata client".into())?;
    let inputs = check_inputs(&consumer, cfg)?;
    let changelog = cfg.changelog_topic();
    let mut wanted = missing_outputs(&consumer, cfg, outputs)?;
    match partition_count(&consumer, &changelog)? {
        None => wanted.push((changelog.clone(), cfg.shards, true)),
        Some(p) if p != cfg.shards => {
            return Err(KafkaError::Topics(format!(
                "the changelog topic {changelog:?} of group {:?} has {p} partitions but kafka.shards = {}: \
                 the shard count is fixed for the life of a group; set kafka.shards = {p}, or start a new \
                 group (kafka.group) to re-shard",
                cfg.group, cfg.shards
            )))
        }
        Some(_) => {}
    }
    create_and_wait(clients, &consumer, cfg.replication_factor, &wanted)?;
    Ok(Layout {
        inputs,
        outputs: outputs.clone(),
        changelog,
        shards: cfg.shards,
        co_partitioned: cfg.co_partitioned,
    })
}

/// An error reading metadata that means the brokers could not be reached (the first thing
/// Kafka mode and `replay` ask them) becomes one that names the setting and what to check;
/// librdkafka's own words ("Broker transport failure") do not say which setting is wrong.
fn unreachable(e: KafkaError, cfg: &KafkaConfig) -> KafkaError {
    let code = match &e {
        KafkaError::Client { source, .. } => source.rdkafka_error_code(),
        _ => None,
    };
    match code {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::Resolve,
        ) => KafkaError::Topics(format!(
            "cannot reach the Kafka brokers {:?} within {METADATA_TIMEOUT:?} ({e}). Check kafka.brokers \
             (--brokers, SHOPSCORE__KAFKA__BROKERS) and that the brokers are up; with TLS or SASL, the \
             security settings in [kafka.client]",
            cfg.brokers
        )),
        _ => e,
    }
}

/// The input topics of the configuration as found on the brokers; a missing one (or, with
/// `kafka.co_partitioned`, one whose partition count is not `kafka.shards`) is an error that
/// names the config key and the fix.
pub fn check_inputs(consumer: &BaseConsumer, cfg: &KafkaConfig) -> Result<Vec<InputTopic>, KafkaError> {
    let mut inputs = Vec::new();
    for (name, key, stream, encoding) in input_topics(cfg) {
        let count = partition_count(consumer, name).map_err(|e| {
            // librdkafka's own log lines (why a connection failed: refused, a TLS handshake
            // or SASL error) wait on the client's queue until it is polled; this client is
            // otherwise never polled.
            let _ = consumer.poll(Duration::from_millis(100));
            unreachable(e, cfg)
        })?;
        let Some(partitions) = count else {
            return Err(KafkaError::Topics(format!(
                "input topic {name:?} ({key}) does not exist on {}: create it, or set {key} to the \
                 topic that carries the {} events",
                cfg.brokers,
                stream.as_str()
            )));
        };
        if cfg.co_partitioned && partitions != cfg.shards {
            return Err(KafkaError::Topics(format!(
                "kafka.co_partitioned is on but input topic {name:?} ({key}) has {partitions} partitions \
                 and kafka.shards = {}: co-partitioned inputs need exactly one partition per shard; set \
                 kafka.co_partitioned = false, or kafka.shards = {partitions} with a new kafka.group",
                cfg.shards
            )));
        }
        inputs.push(InputTopic { name: name.to_owned(), stream, encoding, partitions });
    }
    Ok(inputs)
}

/// The output topics that do not exist yet, as `(name, partitions, compacted)`.
fn missing_outputs(
    consumer: &BaseConsumer,
    cfg: &KafkaConfig,
    outputs: &OutputTopics,
) -> Result<Vec<(String, u32, bool)>, KafkaError> {
    let mut wanted = Vec::new();
    for (topic, _, compacted) in outputs.all() {
        if partition_count(consumer, topic)?.is_none() {
            wanted.push((topic.to_owned(), cfg.shards, compacted));
        }
    }
    Ok(wanted)
}

/// Creates the output topics that are missing (a replay's): `kafka.shards` partitions, the
/// snapshot topic compacted.
pub fn ensure_outputs(
    clients: &Clients,
    cfg: &KafkaConfig,
    outputs: &OutputTopics,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer = clients.admin().create().context(|| "creating a metadata client".into())?;
    let wanted = missing_outputs(&consumer, cfg, outputs)?;
    create_and_wait(clients, &consumer, cfg.replication_factor, &wanted)
}

fn create_and_wait(
    clients: &Clients,
    consumer: &BaseConsumer,
    replication: i32,
    wanted: &[(String, u32, bool)],
) -> Result<(), KafkaError> {
    create(clients, replication, wanted)?;
    for (topic, _, _) in wanted {
        wait_for(consumer, topic)?;
    }
    Ok(())
}

/// Creates topics `(name, partitions, compacted)`; one that already exists is fine (another
/// instance may have won the race).
pub fn create(clients: &Clients, replication: i32, topics: &[(String, u32, bool)]) -> Result<(), KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        clients.admin().create().context(|| "creating an admin client".into())?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let t = NewTopic::new(name, *partitions as i32, TopicReplication::Fixed(replication));
            if *compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::Topics(format!("cannot start the admin runtime: {e}")))?;
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = rt.block_on(admin.create_topics(new.iter(), &opts)).context(|| "creating topics".into())?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::Topics(format!(
                    "cannot create topic {name:?}: {code}; create it yourself (see the README's Kafka \
                     section for partitions and cleanup.policy), or fix the broker permissions"
                )))
            }
        }
    }
    Ok(())
}

fn wait_for(consumer: &BaseConsumer, topic: &str) -> Result<(), KafkaError> {
    let start = Instant::now();
    while start.elapsed() < METADATA_TIMEOUT {
        if partition_count(consumer, topic)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(KafkaError::Topics(format!("topic {topic:?} was created but does not show in the metadata")))
}
