//! The message types generated from `proto/shopscore/v1/*.proto` (package `shopscore.v1`, by
//! `build.rs`): the input events (decoded in [`crate::domain::decode`]) and the outputs
//! (encoded in [`crate::output::proto`]).
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/shopscore.v1.rs"));
