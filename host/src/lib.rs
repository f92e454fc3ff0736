//! # keyward-host: run third-party connectors with secrets, safely
//!
//! keyward runs each connector as a sandboxed WebAssembly component. A
//! connector renders its connection from configured field templates that
//! reference secrets. The host expands the templates under policy (the
//! namespace, the connector's allowlist, values from a cache in front of
//! the backend, every read audited) into **sealed text** the connector can
//! compose but not read, and evaluates the connector's outputs after it
//! returns: an output holding secret material is sensitive. Only an
//! operator's `reveal` grant gives a connector plaintext.
//!
//! ```no_run
//! # async fn run() -> Result<(), keyward_host::Error> {
//! use keyward_host::{Config, Keyward};
//!
//! let config = Config::load("keyward.toml".as_ref())?;
//! let keyward = Keyward::new(config).await?;
//! let rendered = keyward.render("orders-db").await?;
//! println!("{}", rendered.to_json(false)); // sensitive values masked
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod cache;
pub mod check;
pub mod clock;
pub mod config;
pub mod escape;
pub mod limits;
pub mod operator_file;
pub mod ratelimit;
pub mod resolve;
pub mod sandbox;
pub mod sealed;
pub mod store;
pub mod value;

mod keyward;

pub use keyward_policy::{name, policy};
pub use keyward_template as template;

pub use config::Config;
pub use keyward::{Error, Keyward, Rendered, Stats};
pub use sandbox::{ConnectorInfo, FieldSpec, RenderError, RenderedValue, Sandbox};
