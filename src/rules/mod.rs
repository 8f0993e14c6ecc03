//! The pure rules: everything shopscore computes, as synchronous code over events and
//! state that returns output records. No I/O, no clocks, no async: the pipeline feeds
//! events in ([`engine::Engine::apply`]) and asks for outputs at commit time
//! ([`engine::Engine::flush`]), like vector's `record(event)` / `flush(now)`.

pub mod alerts;
pub mod buckets;
pub mod compensation;
pub mod derived;
pub mod dsr;
pub mod engine;
pub mod facts;
pub mod metrics;
pub mod origins;
pub mod retention;
pub mod rolling;
pub mod satisfaction;
pub mod snapshot;
pub mod watermark;

pub use engine::{ApplyOutcome, Counters, Engine, RulesConfig};

#[cfg(test)]
mod tests;
