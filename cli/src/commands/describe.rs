//! `keyward describe`: the fields a component takes, as JSON.

use std::path::PathBuf;

use anyhow::Context;
use keyward_host::Sandbox;
use keyward_host::escape::json_for_terminal;
use keyward_host::limits::SandboxConfig;

/// The arguments of `keyward describe`.
#[derive(clap::Args)]
pub struct Args {
    /// The component file (`.wasm`).
    component: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let component = &args.component;
    let sandbox = Sandbox::new(SandboxConfig::default()).map_err(anyhow::Error::msg)?;
    let loaded = sandbox
        .load(component)
        .map_err(anyhow::Error::msg)
        .with_context(|| component.display().to_string())?;
    let info = loaded
        .describe()
        .await
        .with_context(|| component.display().to_string())?;
    Ok(json_for_terminal(&serde_json::to_string_pretty(&info)?).into_owned())
}
