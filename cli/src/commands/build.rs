//! `keyward build`: builds the connector project in a directory with the
//! command its `connector.toml` names (as `spin build` does), the same for
//! every language, and prints the path of the component it wrote.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, bail};

/// The manifest `keyward new connector` writes.
const MANIFEST: &str = "connector.toml";

/// The arguments of `keyward build`.
#[derive(clap::Args)]
pub struct Args {
    /// The connector project (the directory holding connector.toml).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// `[build]` of connector.toml.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    build: BuildSection,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    /// Run by `sh -c` in the project directory.
    command: String,
    /// The component it writes, relative to the project directory.
    output: PathBuf,
}

fn read_manifest(dir: &Path) -> anyhow::Result<BuildSection> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: keyward build runs in a connector project (one made by `keyward new connector`)",
            path.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
        .with_context(|| "expected [build] with command and output".to_string())?;
    Ok(manifest.build)
}

pub fn run(args: Args) -> anyhow::Result<String> {
    let build = read_manifest(&args.dir)?;
    let output = args.dir.join(&build.output);
    let started = SystemTime::now();
    // The build tool's own output goes to stderr: stdout is the path alone.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot pass stderr to the build command")?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&args.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .status()
        .with_context(|| format!("cannot run `{}`", build.command))?;
    if !status.success() {
        bail!("the build command `{}` failed ({status})", build.command);
    }
    let written = std::fs::metadata(&output)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "the build command succeeded but {} (connector.toml's build.output) is not there",
                output.display()
            )
        })?;
    if written < started {
        eprintln!(
            "keyward: note: {} was not rewritten (the build found it up to date)",
            output.display()
        );
    }
    let output = std::fs::canonicalize(&output)
        .with_context(|| format!("cannot resolve {}", output.display()))?;
    Ok(output.display().to_string())
}
