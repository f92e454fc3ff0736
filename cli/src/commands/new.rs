//! `keyward new connector`: a connector crate to start from.

use std::path::PathBuf;

use super::scaffold::{self, Lang};

/// What `keyward new` can create.
#[derive(clap::Subcommand)]
pub enum New {
    /// Write a connector project (with unit tests, a local keyward.toml
    /// and a connector.toml for `keyward build`) in Rust, Python or TypeScript.
    Connector {
        /// The connector's name: lowercase letters, digits, `-` and `_`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK to depend on (a keyward checkout's guest/ for Rust,
        /// sdk/typescript/ for TypeScript); by default the one this CLI was
        /// built from. A Python project gets its own copy of the SDK.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

pub fn run(new: New) -> anyhow::Result<String> {
    let New::Connector {
        name,
        lang,
        dir,
        sdk,
    } = new;
    let (dir, files) = scaffold::new_connector(&name, lang, &dir, sdk.as_deref())?;
    let mut report = vec![format!("created connector `{name}` in {}:", dir.display())];
    report.extend(files.iter().map(|file| format!("  {file}")));
    let test = match lang {
        Lang::Rust => "cargo test",
        Lang::Python => {
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt \
             && .venv/bin/python -m pytest"
        }
        Lang::Typescript => "npm install && npm test",
    };
    report.push(format!(
        "next: cd {} && {test} && keyward build && keyward render --config keyward.toml {name}",
        dir.display()
    ));
    Ok(report.join("\n"))
}
