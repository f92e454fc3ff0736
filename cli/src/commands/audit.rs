//! `keyward audit`: the last records of the audit file.

use std::path::PathBuf;

use anyhow::Context;
use keyward_host::Config;

/// The arguments of `keyward audit`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// How many records.
    #[arg(long, short = 'n', default_value_t = 20)]
    lines: usize,
}

pub fn run(args: Args) -> anyhow::Result<String> {
    let config = Config::load(&args.config)?;
    let file = config
        .audit
        .file
        .context("the configuration has no [audit] file; records go to the log only")?;
    let records =
        keyward_host::audit_tail(&file, args.lines).with_context(|| file.display().to_string())?;
    Ok(records.join("\n"))
}
