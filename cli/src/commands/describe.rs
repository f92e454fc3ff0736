//! `keyward describe`: the fields a component takes, as JSON.

use std::path::PathBuf;

use anyhow::Context;
use keyward_host::Sandbox;
use keyward_host::SandboxConfig;
use keyward_host::escape::json_for_terminal;

/// The arguments of `keyward describe`.
#[derive(clap::Args)]
pub struct Args {
    /// The component file (`.wasm`).
    component: PathBuf,
    /// Where compiled components are kept, so that describing a large
    /// component (Python's are about 18 MB) compiles it once.
    #[arg(long, default_value = ".keyward-cache")]
    compile_cache: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<String> {
    let component = &args.component;
    std::fs::create_dir_all(&args.compile_cache)
        .with_context(|| format!("compile cache {}", args.compile_cache.display()))?;
    let limits = SandboxConfig {
        compile_cache: Some(args.compile_cache.clone()),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(limits).map_err(anyhow::Error::msg)?;
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
