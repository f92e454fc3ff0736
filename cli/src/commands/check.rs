//! `keyward check`: the library's check report; non-zero if anything failed.

use std::path::PathBuf;

use keyward_host::{Config, Keyward};

/// The arguments of `keyward check`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// The tenant (`default`: the configuration's top-level tables).
    #[arg(long, default_value = keyward_host::DEFAULT_TENANT)]
    tenant: String,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let keyward = Keyward::new(Config::load(&args.config)?).await?;
    let report = keyward.tenant(&args.tenant)?.check().await;
    if let Err(e) = &report.backend {
        anyhow::bail!("{e}");
    }
    let failures = report.failures();
    if failures > 0 {
        println!("{report}");
        anyhow::bail!("{failures} check(s) failed");
    }
    Ok(report.to_string())
}
