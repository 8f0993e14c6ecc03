//! `shopscore gen`: sample events as JSON lines.

use super::args::GenArgs;
use anyhow::{Context, Result};
use shopscore::domain::Timestamp;
use shopscore::gen::{generate, generate_file, GenOptions};

fn gen_options(a: &GenArgs) -> Result<GenOptions> {
    let start =
        Timestamp::parse_rfc3339(&a.start).map_err(|e| anyhow::anyhow!("--start {:?}: {e}", a.start))?;
    Ok(GenOptions {
        seed: a.seed,
        events: a.events,
        shops: a.shops,
        days: a.days,
        start,
        malformed_per_mille: a.malformed_per_mille,
        duplicate_per_mille: a.duplicate_per_mille,
        restated_per_mille: a.restated_per_mille,
        ..GenOptions::default()
    })
}

/// `shopscore gen`: writes the sample events to a file or to standard output (`-`).
pub fn cmd_gen(args: GenArgs) -> Result<()> {
    let opts = gen_options(&args)?;
    let summary = if args.out.as_os_str() == "-" {
        generate(&opts, &mut std::io::stdout().lock())?
    } else {
        generate_file(&opts, &args.out).with_context(|| format!("writing {}", args.out.display()))?
    };
    eprintln!(
        "shopscore: wrote {} lines ({} valid events, {} duplicates, {} malformed) to {}",
        summary.lines,
        summary.valid,
        summary.duplicates,
        summary.malformed,
        args.out.display()
    );
    Ok(())
}
