//! The `keyward` command: render, list references, describe components.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keyward_host::escape::json_for_terminal;
use keyward_host::limits::SandboxConfig;
use keyward_host::resolve::SecretRequest;
use keyward_host::{Config, Keyward, Sandbox};
use tracing_subscriber::EnvFilter;

mod scaffold;

/// Run keyward connectors: render connections from secret templates under policy.
#[derive(Parser)]
#[command(name = "keyward", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a configured connector and print its outputs as JSON
    /// (sensitive values masked unless --reveal).
    Render {
        /// The keyward configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The connector id (`[connectors.ID]` in the configuration).
        connector: String,
        /// Print sensitive values instead of `****`.
        #[arg(long)]
        reveal: bool,
    },
    /// List the secret references a connector may use, ready to paste.
    Refs {
        /// The keyward configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The connector id.
        connector: String,
    },
    /// Test the configuration: backend credentials, region, endpoint and
    /// namespace, then per connector which allowed secrets resolve and
    /// whether it renders. Exits non-zero if anything fails.
    Check {
        /// The keyward configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the last audit records (from `[audit] file`).
    Audit {
        /// The keyward configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// How many records.
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
    },
    /// Print the fields a connector component takes.
    Describe {
        /// The component file (`.wasm`).
        component: PathBuf,
    },
    /// Start something new from a template.
    #[command(subcommand)]
    New(New),
}

#[derive(Subcommand)]
enum New {
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

fn main() -> ExitCode {
    // A panic's payload could be formatted from anything, a dependency's
    // internals included: print only where it happened.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(|| "unknown".to_string(), |l| l.to_string());
        eprintln!("keyward: error: internal error (a bug) at {location}; the message is withheld");
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// One line on stderr, non-zero exit.
fn fail(error: anyhow::Error) -> ExitCode {
    let message = format!("{error:#}").replace('\n', " ");
    eprintln!("keyward: error: {message}");
    ExitCode::FAILURE
}

async fn run(command: Command) -> anyhow::Result<String> {
    match command {
        Command::Render {
            config,
            connector,
            reveal,
        } => {
            let keyward = Keyward::new(Config::load(&config)?).await?;
            let json = keyward.render(&connector).await?.to_json(reveal);
            Ok(json_for_terminal(&json).into_owned())
        }
        Command::Refs { config, connector } => {
            let keyward = Keyward::new(Config::load(&config)?).await?;
            let references = keyward.allowed_references(&connector).await?;
            Ok(references
                .iter()
                .map(paste_form)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::Check { config } => check(&config).await,
        Command::Audit { config, lines } => {
            let config = Config::load(&config)?;
            let file = config
                .audit
                .file
                .context("the configuration has no [audit] file; records go to the log only")?;
            let records = keyward_host::audit::tail(&file, lines)
                .with_context(|| file.display().to_string())?;
            Ok(records.join("\n"))
        }
        Command::Describe { component } => {
            let sandbox = Sandbox::new(SandboxConfig::default()).map_err(anyhow::Error::msg)?;
            let loaded = sandbox
                .load(&component)
                .map_err(anyhow::Error::msg)
                .with_context(|| component.display().to_string())?;
            let info = loaded
                .describe()
                .await
                .with_context(|| component.display().to_string())?;
            Ok(json_for_terminal(&serde_json::to_string_pretty(&info)?).into_owned())
        }
        Command::New(New::Connector { name, dir, sdk }) => {
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
    }
}

/// The report of `keyward check`; an error if any line failed.
async fn check(config: &std::path::Path) -> anyhow::Result<String> {
    let config = Config::load(config)?;
    let refused = config.refused_references();
    let keyward = Keyward::new(config).await?;
    let mut report = Vec::new();
    let mut failures = 0;
    match keyward.check_backend().await {
        Ok(count) => report.push(format!("backend: ok ({count} secrets in the namespace)")),
        Err(e) => anyhow::bail!("{e}"),
    }
    let ids = keyward.connector_ids();
    for id in ids {
        report.push(format!("connector {id}:"));
        for refused in refused.iter().filter(|r| r.connector == id) {
            failures += 1;
            report.push(format!(
                "  field `{}`, column {}: FAILED: {}",
                refused.field, refused.column, refused.why
            ));
        }
        let requests = keyward.allowed_references(&id).await?;
        if requests.is_empty() {
            report.push("  no allowed secret exists in the backend".into());
        }
        for (request, result) in requests.iter().zip(keyward.resolve(&id, &requests).await?) {
            match result {
                Ok(_) => report.push(format!("  {}  ok", paste_form(request))),
                Err(e) => {
                    failures += 1;
                    report.push(format!("  {}  FAILED: {e}", paste_form(request)));
                }
            }
        }
        match keyward.render(&id).await {
            Ok(_) => report.push("  render: ok".into()),
            Err(e) => {
                failures += 1;
                report.push(format!("  render: FAILED: {e}"));
            }
        }
    }
    let report = report.join("\n");
    if failures > 0 {
        println!("{report}");
        anyhow::bail!("{failures} check(s) failed");
    }
    Ok(report)
}

/// `{{ secrets.db.password }}` where every part allows the dotted form,
/// else `{{ secrets['a/b']['key'] }}`.
fn paste_form(request: &SecretRequest) -> String {
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let parts = std::iter::once(&request.name).chain(&request.path);
    if parts.clone().all(|p| plain(p)) {
        let dotted: Vec<&str> = parts.map(String::as_str).collect();
        format!("{{{{ secrets.{} }}}}", dotted.join("."))
    } else {
        let quoted: String = parts
            .map(|p| {
                if p.contains('\'') {
                    format!("[\"{p}\"]")
                } else {
                    format!("['{p}']")
                }
            })
            .collect();
        format!("{{{{ secrets{quoted} }}}}")
    }
}
