//! `shopscore diff A B`: compares two file-mode output directories.

use super::args::DiffArgs;
use anyhow::Result;
use shopscore::diff::{diff, OutputSet};
use std::path::PathBuf;

/// `shopscore diff A B`: prints the differences; exits 1 when there are any, 2 on error.
pub fn cmd_diff(args: DiffArgs) -> Result<()> {
    let read = |dir: &PathBuf| OutputSet::read_dir(dir);
    let (a, b) = match (read(&args.a), read(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shopscore: error: {e}");
            std::process::exit(2);
        }
    };
    let d = diff(&a, &b);
    println!("A = {}\nB = {}", args.a.display(), args.b.display());
    print!("{d}");
    if !d.is_empty() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
