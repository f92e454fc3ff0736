//! `keyward refs`: the references a connector may use, ready to paste.

use std::path::PathBuf;

use keyward_host::{Config, Keyward};

/// The arguments of `keyward refs`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// The tenant (`default`: the configuration's top-level tables).
    #[arg(long, default_value = keyward_host::DEFAULT_TENANT)]
    tenant: String,
    /// The connector id.
    connector: String,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let keyward = Keyward::new(Config::load(&args.config)?).await?;
    let references = keyward
        .tenant(&args.tenant)?
        .allowed_references(&args.connector)
        .await?;
    Ok(references
        .iter()
        .map(|r| r.paste_form())
        .collect::<Vec<_>>()
        .join("\n"))
}
