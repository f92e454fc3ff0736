//! The `keyward` command. Each subcommand is one file in `commands/`; the
//! logic they share with other embedders lives in the `keyward-host`
//! library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod commands;
mod server;

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
    Render(commands::render::Args),
    /// List the secret references a connector may use, ready to paste.
    Refs(commands::refs::Args),
    /// Test the configuration: backend credentials, region, endpoint and
    /// namespace, then per connector which allowed secrets resolve and
    /// whether it renders. Exits non-zero if anything fails.
    Check(commands::check::Args),
    /// Print the last audit records (from `[audit] file`).
    Audit(commands::audit::Args),
    /// Print the fields a connector component takes.
    Describe(commands::describe::Args),
    /// Precompile every configured connector into `[sandbox] compile_cache`,
    /// so that hosts sharing the cache start without compiling.
    Compile(commands::compile::Args),
    /// Start something new from a template.
    #[command(subcommand)]
    New(commands::new::New),
    /// Build the connector project here (or --dir) with the command its
    /// connector.toml names; print the path of the component it wrote.
    Build(commands::build::Args),
    /// Run keyward as a local HTTP service (see the README's `keyward serve`).
    Serve(commands::serve::Args),
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
            if !output.is_empty() {
                println!("{output}");
            }
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

/// Runs a subcommand; its output goes to stdout, its error to stderr.
async fn run(command: Command) -> anyhow::Result<String> {
    match command {
        Command::Render(args) => commands::render::run(args).await,
        Command::Refs(args) => commands::refs::run(args).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Audit(args) => commands::audit::run(args),
        Command::Describe(args) => commands::describe::run(args).await,
        Command::Compile(args) => commands::compile::run(args).await,
        Command::New(new) => commands::new::run(new),
        Command::Build(args) => commands::build::run(args),
        Command::Serve(args) => commands::serve::run(args).await,
    }
}
