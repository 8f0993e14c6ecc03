//! Where input records come from. File mode reads JSON-lines files ([`mod@file`]); the Kafka
//! source arrives with the Kafka runtime.

pub mod file;
