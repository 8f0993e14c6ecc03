//! The `shopscore` binary: the allocator, the command line's top level (SPEC §10) and the
//! dispatch to its subcommands in [`cli`] (one file each, plus the wiring from configuration
//! to runs). Everything they call lives in the library; `anyhow` is used only here, at the edge.

/// jemalloc instead of glibc's malloc: ~14 % more events/s in file and Kafka mode (shard
/// threads allocate and free small keys and values at a high rate; README → Benchmark).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (read at its first allocation; `_RJEM_MALLOC_CONF` overrides them):
/// freed pages go back to the kernel after about a second, by a background thread. With
/// jemalloc's defaults (ten seconds, and only on a later allocation) the Kafka-mode
/// benchmark's peak RSS was ~100 MiB above glibc's; with these, ~50 MiB. `tests/cli.rs` checks
/// that they are applied (under a wrong symbol name they would be silently ignored).
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use anyhow::Result;
use clap::{Parser, Subcommand};
use cli::args::{BenchArgs, DiffArgs, GenArgs, ReplayArgs, RunArgs};
use shopscore::config;
use std::path::PathBuf;

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "shopscore",
    version,
    about = "After-sales shop scores and late-shipment compensation, from event streams"
)]
struct Cli {
    /// Configuration file (default: config/shopscore.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline: on JSON-lines files (--input), or on Kafka (--brokers).
    Run(RunArgs),
    /// Replay historical Kafka topics into fresh state and chosen outputs.
    Replay(ReplayArgs),
    /// Write sample events (JSON lines).
    Gen(GenArgs),
    /// Measure end-to-end throughput and peak memory, in file mode or through Kafka.
    Bench(BenchArgs),
    /// Compare two output sets (directories or `topics:PREFIX`); exit 0 when equal, 1 when different, 2 on error.
    Diff(DiffArgs),
}

/// glibc's malloc, which RocksDB's and librdkafka's C and C++ code use (jemalloc above serves
/// Rust only), keeps up to eight arenas per core, each holding on to freed memory. Two are
/// enough for their allocation rate: a Kafka-mode run on the 1 000 000-event bench topics
/// peaked at 677–694 MB instead of 791–834 MB (three runs each, same time).
///
/// It also raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB),
/// after which RocksDB's memtable arena blocks (8 MiB) come from the heap, and a flushed
/// memtable's blocks stay in its free lists, scattered, instead of going back to the kernel. A
/// fixed 1 MiB threshold keeps every block that large mmapped, returned when freed: what the
/// resident set holds beyond its measured parts (`shopscore_memory_bytes`) fell from 249–289
/// to 145–197 MiB on the 1 000 000-event Kafka benchmark (session 19, README → Benchmark).
///
/// `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` in the environment still
/// win. Called before any thread starts.
fn tune_glibc_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tunables.contains("arena_max") {
            // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tunables.contains("mmap_threshold") {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        }
    }
}

fn main() {
    tune_glibc_malloc();
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shopscore: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main(cli: Cli) -> Result<()> {
    let cfg = config::load(cli.config.as_deref())?;
    shopscore::telemetry::init(&cfg.log);
    // Debug of the configuration masks secrets (`[kafka.client]` passwords and keys).
    tracing::debug!(config = ?cfg, "configuration loaded");
    match cli.command {
        Command::Run(args) => cli::run::cmd_run(&cfg, args),
        Command::Replay(args) => cli::replay::cmd_replay(&cfg, args),
        Command::Gen(args) => cli::gen::cmd_gen(args),
        Command::Bench(args) => cli::bench::cmd_bench(&cfg, args),
        Command::Diff(args) => cli::diff::cmd_diff(&cfg, args),
    }
}
