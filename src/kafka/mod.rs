//! Kafka mode (SPEC §6, §7): the same rules as file mode, fed from Kafka topics, with state
//! that follows its shard between instances and outputs that reach their topics exactly once.
//!
//! # Shape
//!
//! Shops are split into `kafka.shards` **shards** by murmur2 of `shop_id` (Kafka's default
//! partitioner, so inputs keyed by shop land on the same numbers). A shard is the unit of
//! state, of ownership and of commit: it has its own RocksDB directory, its own engine, its own
//! input positions and one partition of the compacted **changelog** topic, which holds every
//! state change and is where a shard's state comes from when it moves.
//!
//! The consumer group is joined on the changelog topic: the partitions the group assigns to an
//! instance are the shards it owns. Each instance reads every input partition (or, with
//! `kafka.co_partitioned`, only the partitions numbered like its shards), decodes each record
//! once, and hands it to the shard that owns the shop; every other owned shard only moves its
//! watermark clock for that partition, so each shard's watermark is the one a single instance
//! would have. Hence the outputs do not depend on how many instances run.
//!
//! | module | holds |
//! |---|---|
//! | [`client`] | every librdkafka setting, built in one place per role |
//! | [`murmur`] | Kafka's murmur2 partitioner: shop → shard |
//! | [`topics`] | startup checks of the input topics, creation of outputs and the changelog |
//! | [`records`] | output records → Kafka records (topic, key, payload, headers) |
//! | [`changelog`] | changelog record format and restoring a shard's store from it |
//! | [`producer`] | a shard's producer: delivery tracking, transactions, back-pressure |
//! | [`outbox`] | without transactions (or with `kafka.transactional_outbox`): the last commit's outputs, re-sent only where missing |
//! | [`retry`] | a running shard's broker requests, retried while the broker is briefly out of reach |
//! | [`crash`] | a test hook: abort at a chosen step of the commit protocol |
//! | `mock_retention` | tests only: a mock-cluster partition whose head retention deleted |
//! | [`reader`] | the input consumer: positions, end-of-partition and idle detection |
//! | [`shard`] | one shard: store, engine, positions, and its commit protocol |
//! | [`worker`] | a shard on its own thread: applies batches, commits when told, reports |
//! | [`runtime`] | the loop: group membership, shard moves, reading and dispatch, commit cadence, stop |
//! | [`replay`] | `shopscore replay`: a time range of the inputs into fresh state, chosen outputs |
//! | [`sink`] | a replay's topic output, which never re-sends a compensation already there |
//! | [`scan`] | reading a whole topic once, committed records only (a replay's compensation check, `diff`) |
//! | [`scan_end`] | when an outbox scan has read every partition through: the broker's reported ends, and tansu's misleading ones |
//! | [`output_set`] | output topics read back as the file lines they stand for, for `shopscore diff` |
//!
//! The commit protocol is described in [`shard`] and in the README.

pub mod changelog;
pub mod client;
pub mod crash;
#[cfg(test)]
mod mock_retention;
pub mod murmur;
pub mod outbox;
pub mod output_set;
pub mod producer;
pub mod reader;
pub mod records;
pub mod replay;
pub mod retry;
pub mod runtime;
pub mod scan;
pub mod scan_end;
pub mod shard;
pub mod sink;
pub mod topics;
pub mod worker;

use crate::state::StateError;
use rdkafka::error::KafkaError as RdError;
use thiserror::Error;

/// Errors that stop Kafka mode (bad input never does: it becomes a dead letter).
#[derive(Debug, Error)]
pub enum KafkaError {
    #[error("Kafka client error while {context}: {source}")]
    Client { context: String, source: RdError },
    #[error("topic check failed: {0}")]
    Topics(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("shard {shard}: {why}")]
    Shard { shard: u32, why: String },
    /// Another error, raised by the worker of `shard` (so the operator knows which one).
    #[error("shard {shard}: {source}")]
    InShard { shard: u32, source: Box<KafkaError> },
}

impl KafkaError {
    /// This error as raised by the worker of `shard`: named after it unless it already is.
    pub fn in_shard(self, shard: u32) -> KafkaError {
        match self {
            e @ (KafkaError::Shard { .. } | KafkaError::InShard { .. }) => e,
            e => KafkaError::InShard { shard, source: Box::new(e) },
        }
    }
}

/// Adds what was being done to an rdkafka error.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, KafkaError>;
}

impl<T> Context<T> for Result<T, RdError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, KafkaError> {
        self.map_err(|source| KafkaError::Client { context: what(), source })
    }
}
