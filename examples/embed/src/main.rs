//! Embedding keyward in a platform: load the configuration once, keep the
//! `Keyward` for the life of the process, render connections on demand.
//!
//! ```text
//! scripts/quickstart.sh   # builds the postgres connector first
//! cargo run -p embed-example -- examples/quickstart/keyward.toml orders-db
//! ```

use std::process::ExitCode;

use keyward_host::{Config, Keyward};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(connector)) = (args.next(), args.next()) else {
        eprintln!("usage: embed-example CONFIG.toml CONNECTOR_ID");
        return ExitCode::from(2);
    };
    match render(&config, &connector).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed-example: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn render(config: &str, connector: &str) -> Result<(), keyward_host::Error> {
    let keyward = Keyward::new(Config::load(config.as_ref())?).await?;
    // Compile every connector up front, so a bad component fails at start-up.
    keyward.preload().await?;
    let rendered = keyward.render(connector).await?;
    for value in &rendered.values {
        // A platform would hand `value.value` to its driver; here only the
        // non-sensitive outputs are printed.
        if !value.sensitive {
            println!("{} = {}", value.name, value.value.as_str());
        } else {
            println!("{} = (sensitive, {} bytes)", value.name, value.value.len());
        }
    }
    Ok(())
}
