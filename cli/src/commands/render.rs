//! `keyward render`: a configured connector's outputs as JSON.

use std::path::PathBuf;

use keyward_host::escape::json_for_terminal;
use keyward_host::{Config, Keyward};

/// The arguments of `keyward render`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// The tenant (`default`: the configuration's top-level tables).
    #[arg(long, default_value = keyward_host::DEFAULT_TENANT)]
    tenant: String,
    /// The connector id (`[connectors.ID]` in the configuration).
    connector: String,
    /// Print sensitive values instead of `****`.
    #[arg(long)]
    reveal: bool,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let keyward = Keyward::new(Config::load(&args.config)?).await?;
    let tenant = keyward.tenant(&args.tenant)?;
    let json = tenant.render(&args.connector).await?.to_json(args.reveal);
    Ok(json_for_terminal(&json).into_owned())
}
