//! # keyward-host: run third-party connectors with secrets, safely
//!
//! keyward runs each connector as a sandboxed WebAssembly component. A
//! connector renders its connection from configured field templates that
//! reference secrets. The host expands the templates under policy (the
//! namespace, the connector's allowlist, values from a cache in front of
//! the backend, every read audited) into **sealed text** the connector can
//! compose but not read, and evaluates the connector's outputs after it
//! returns: an output holding secret material is sensitive, and secret
//! material may go only to a destination the operator configured. Only an
//! operator's `reveal` grant gives a connector plaintext.
//!
//! Two ways in, both bounded by the same deadlines and limits:
//! [`Keyward`] runs connectors in its own sandbox; [`Embedder`] runs them
//! in a platform's own wasmtime engine, linker and stores.
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
//!
//! `docs/architecture.md` shows which module owns which concept.
#![deny(missing_docs)]

mod audit;
mod cache;
mod check;
mod clock;
mod config;
mod contract;
mod embed;
mod error;
pub mod escape;
mod keyward;
pub mod operator_file;
mod policy;
mod ratelimit;
mod render;
mod resolve;
mod sandbox;
pub mod store;
mod tenant;
mod value;

pub use keyward_policy::name;
pub use keyward_template as template;

pub use audit::tail as audit_tail;
pub use cache::{CacheStats, SecretCache};
pub use check::{CheckReport, ConnectorCheck, ReferenceCheck};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AuditConfig, AwsSettings, Backend, Config, ConfigError, ConnectorConfig, DEFAULT_MAX_TENANTS,
    DEFAULT_TENANT, FileSettings, LIVE_SECRETS_KEYS, MAX_TENANT_ID_CHARS, SecretsConfig,
    TenantConfig, TenantFileError, valid_tenant_id,
};
pub use contract::{
    ConnectorInfo, DestinationInfo, DestinationPart, EgressRefused, FieldSpec, MASK, OutputKind,
    RenderError, Rendered, RenderedValue, RunError, Trap, TrapKind,
};
pub use embed::{EmbeddedConnector, Embedder, KeywardState};
pub use keyward::{Error, Keyward, Stats};
pub use policy::{ConnectorPolicy, RefusedReference, SecretRequest};
pub use render::single_reference;
pub use resolve::{ConnectorSecrets, Invalidation, ResolveError};
pub use sandbox::limits::{ConnectorLimits, ExecutionMode, SandboxConfig};
pub use sandbox::{
    KeywardCtx, LoadError, PlanCounts, RecordedWasiReads, RenderPaths, Sandbox, SandboxError,
};
pub use tenant::Tenant;
pub use value::SecretValue;
