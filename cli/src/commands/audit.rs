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
    /// Only the records of this tenant.
    #[arg(long)]
    tenant: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<String> {
    let config = Config::load(&args.config)?;
    let file = config
        .audit
        .file
        .context("the configuration has no [audit] file; records go to the log only")?;
    let Some(tenant) = &args.tenant else {
        let records = keyward_host::audit_tail(&file, args.lines)
            .with_context(|| file.display().to_string())?;
        return Ok(records.join("\n"));
    };
    let records =
        keyward_host::audit_tail(&file, usize::MAX).with_context(|| file.display().to_string())?;
    let of_tenant: Vec<&String> = records
        .iter()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|record| record["tenant"] == tenant.as_str())
        })
        .collect();
    let from = of_tenant.len().saturating_sub(args.lines);
    Ok(of_tenant[from..]
        .iter()
        .map(|line| line.as_str())
        .collect::<Vec<_>>()
        .join("\n"))
}
