//! `shopscore diff A B`: compares two output sets, each a file-mode output directory or a set
//! of output topics (`topics:PREFIX`).

use super::args::DiffArgs;
use anyhow::{bail, Result};
use shopscore::config::Config;
use shopscore::diff::{diff, OutputSet};
use shopscore::kafka::client::Clients;
use shopscore::kafka::output_set::read_output_topics;
use shopscore::kafka::topics::OutputTopics;
use std::path::Path;

/// Reads one side: `topics:PREFIX` from the broker, anything else as a directory.
fn read_side(cfg: &Config, brokers: Option<&str>, side: &str) -> Result<OutputSet> {
    let Some(prefix) = side.strip_prefix("topics:") else {
        return Ok(OutputSet::read_dir(Path::new(side))?);
    };
    let brokers = brokers.unwrap_or(&cfg.kafka.brokers);
    if brokers.trim().is_empty() {
        bail!("{side:?} names Kafka topics: give --brokers HOST:PORT or set kafka.brokers");
    }
    let mut kafka = cfg.kafka.clone();
    kafka.brokers = brokers.to_owned();
    let topics = OutputTopics::from_config(&kafka).prefixed(prefix);
    Ok(read_output_topics(&Clients::new(&kafka), &topics)?)
}

/// `shopscore diff A B`: prints the differences; exits 1 when there are any, 2 on error.
pub fn cmd_diff(cfg: &Config, args: DiffArgs) -> Result<()> {
    let read = |side: &str| read_side(cfg, args.brokers.as_deref(), side);
    let (a, b) = match (read(&args.a), read(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shopscore: error: {e:#}");
            std::process::exit(2);
        }
    };
    let d = diff(&a, &b);
    println!("A = {}\nB = {}", args.a, args.b);
    print!("{d}");
    if !d.is_empty() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
