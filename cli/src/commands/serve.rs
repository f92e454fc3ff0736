//! `keyward serve`: the secrets sidecar (see `server/`).

use std::path::PathBuf;

/// The arguments of `keyward serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file; its `[server]` section says where
    /// to listen and where the tokens are.
    #[arg(long, short)]
    config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    crate::server::serve(&args.config).await?;
    Ok(String::new())
}
