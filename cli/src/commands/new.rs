//! `keyward new connector`: a connector crate to start from.

use std::path::PathBuf;

use super::scaffold;

/// What `keyward new` can create.
#[derive(clap::Subcommand)]
pub enum New {
    /// Write a connector crate (with unit tests and a local keyward.toml)
    /// that builds to a component with `cargo build --target wasm32-wasip2 --release`.
    Connector {
        /// The connector's name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// The directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The keyward-guest SDK to depend on (a keyward checkout's guest/
        /// directory); by default the one this CLI was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub fn run(new: New) -> anyhow::Result<String> {
    let New::Connector { name, dir, sdk } = new;
    let (dir, files) = scaffold::new_connector(&name, &dir, sdk.as_deref())?;
    let mut report = vec![format!("created connector `{name}` in {}:", dir.display())];
    report.extend(files.iter().map(|file| format!("  {file}")));
    report.push(format!(
        "next: cd {} && cargo test && cargo build --target wasm32-wasip2 --release \
         && keyward render --config keyward.toml {name}",
        dir.display()
    ));
    Ok(report.join("\n"))
}
