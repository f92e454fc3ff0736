//! What can go wrong in the host, each naming where: one type for every
//! layer above the sandbox, so that a tenant and the host answer alike.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::contract::RunError;
use crate::sandbox::{LoadError, SandboxError};

/// Everything that can go wrong, each naming where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secrets backend could not be opened, listed or read.
    #[error("secrets backend: {0}")]
    Backend(String),
    /// The audit log could not be opened: nothing runs unaudited.
    #[error("cannot open the audit log {}: {source}", file.display())]
    Audit {
        /// The file (`[audit] file`).
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// wasmtime could not be set up.
    #[error(transparent)]
    Engine(#[from] SandboxError),
    /// No connector with this id.
    #[error("{0}")]
    UnknownConnector(String),
    /// No tenant with this id.
    #[error("{0}")]
    UnknownTenant(String),
    /// A component could not be loaded.
    #[error("connector `{connector}`: {}: {error}", path.display())]
    Load {
        /// Connector id.
        connector: String,
        /// Component file.
        path: PathBuf,
        /// What failed.
        error: LoadError,
    },
    /// A reload changed settings that take effect only at start-up; the
    /// running configuration is unchanged.
    #[error(
        "these settings take effect only at start-up and differ in the new configuration: {}; \
         the running configuration is unchanged",
        .0.join(", ")
    )]
    RestartRequired(Vec<String>),
    /// No room for the work now (a service's concurrency limit); try
    /// again later.
    #[error("{0}")]
    Busy(String),
    /// The connector could not render.
    #[error("connector `{connector}`: {error}")]
    Run {
        /// Connector id.
        connector: String,
        /// What failed (part of this error's message, not a separate cause).
        error: RunError,
    },
}
