//! The binary's subcommands, one file each, and the wiring from configuration to runs.
//! Part of the `shopscore` binary only: everything they call lives in the library, and
//! `anyhow` (errors with context for the operator) is used only here.

pub mod args;
pub mod bench;
pub mod diff;
pub mod gen;
pub mod replay;
pub mod run;
pub mod wiring;
