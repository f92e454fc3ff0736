//! `keyward compile`: every configured connector compiled into the
//! configuration's compile cache, as `wasmtime compile` does for one
//! module, so that hosts deployed with the cache load them in a few
//! milliseconds instead of compiling.

use std::path::PathBuf;
use std::time::Instant;

use keyward_host::{Config, Keyward};

/// The arguments of `keyward compile`.
#[derive(clap::Args)]
pub struct Args {
    /// The keyward configuration file; its `[sandbox] compile_cache` is
    /// where the compiled components go.
    #[arg(long, short)]
    config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let config = Config::load(&args.config)?;
    let Some(cache) = config.sandbox.compile_cache.clone() else {
        anyhow::bail!(
            "{}: [sandbox] compile_cache is not set; it names the directory the compiled \
             components go to",
            args.config.display()
        );
    };
    let components: Vec<(String, PathBuf)> = config
        .connectors
        .iter()
        .map(|(id, c)| (id.clone(), c.component.clone()))
        .collect();
    let keyward = Keyward::new(config).await?;
    let mut report = Vec::new();
    for (id, component) in components {
        let started = Instant::now();
        keyward.describe(&id).await?;
        report.push(format!(
            "{id}: {} ({} ms)",
            component.display(),
            started.elapsed().as_millis()
        ));
    }
    report.push(format!("compiled into {}", cache.display()));
    Ok(report.join("\n"))
}
