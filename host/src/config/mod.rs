//! The configuration file: read into raw serde structs that reject unknown
//! keys, then checked into typed values, so a typo is an error that names
//! the file, the line and the key rather than a silent default.
//!
//! Configuration is plain data: policy is built from it (`policy.rs`),
//! the sandbox is sized by it, and `keyward serve` reads its own
//! `[server]` table from the same file.
//!
//! ```toml
//! [secrets]
//! namespace = "acme/prod/"
//! cache_ttl_ms = 300000
//!
//! [secrets.backend]
//! kind = "file"               # the embedded backend
//! path = "secrets.json"       # relative to this file
//!
//! [connectors.orders-db]
//! component = "connectors/postgres.wasm"
//! allow = ["db", "host"]      # names relative to the namespace
//! [connectors.orders-db.config]
//! host = "{{ secrets.host }}"
//! password = "{{ secrets['db']['password'] }}"
//! ```

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::limits::{ConnectorLimits, ExecutionMode, SandboxConfig};
use crate::store::AWS_PARTITION;
pub use crate::store::StoreIdentity;
pub use crate::store::aws::AwsSettings;
pub use crate::store::file::FileSettings;
use keyward_policy::name::{BackendIdentity, Namespace};
use keyward_policy::policy::Allowlist;
use keyward_template::Template;
use keyward_template::egress::Egress;

/// Default time a fetched secret is served from the cache (5 minutes).
const DEFAULT_CACHE_TTL_MS: u64 = 300_000;
/// Default bound on cached secret versions.
const DEFAULT_CACHE_MAX_ENTRIES: u64 = 10_000;
/// Default longest time past the TTL a value is served while the backend fails.
const DEFAULT_MAX_STALE_MS: u64 = 3_600_000;
/// Default shortest interval between two invalidations of one secret by one connector.
const DEFAULT_INVALIDATE_INTERVAL_MS: u64 = 10_000;
/// Default upstream fetches per second per connector.
const DEFAULT_CONNECTOR_FETCH_RATE: f64 = 50.0;
/// Default burst of upstream fetches per connector.
const DEFAULT_CONNECTOR_FETCH_BURST: u32 = 100;
/// Default bound on one backend operation, retries included.
const DEFAULT_OPERATION_TIMEOUT_MS: u64 = 10_000;
/// Default bound on one attempt of a backend operation.
const DEFAULT_ATTEMPT_TIMEOUT_MS: u64 = 3_000;
/// Default attempts per backend operation (the SDK's standard retry mode).
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

mod tenants;

pub use tenants::{
    DEFAULT_MAX_TENANTS, DEFAULT_TENANT, MAX_TENANT_ID_CHARS, TenantConfig, TenantFileError,
    valid_tenant_id,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    secrets: RawSecrets,
    #[serde(default)]
    audit: RawAudit,
    /// `keyward serve`'s own table: the service reads and checks it (the
    /// library has no HTTP settings).
    #[serde(default, rename = "server")]
    _server: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    connectors: BTreeMap<String, RawConnector>,
    #[serde(default)]
    tenants: BTreeMap<String, tenants::RawTenant>,
    tenants_dir: Option<PathBuf>,
    max_tenants: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    backend: RawBackend,
    #[serde(default)]
    namespace: String,
    cache_ttl_ms: Option<u64>,
    cache_max_entries: Option<u64>,
    max_stale_ms: Option<u64>,
    refresh_ahead_ms: Option<u64>,
    invalidate_interval_ms: Option<u64>,
    connector_fetch_rate: Option<f64>,
    connector_fetch_burst: Option<u32>,
}

/// `[secrets.backend]`: a `kind` and that kind's settings. Read flat (not
/// as a serde-tagged enum) so that every error keeps its line and column.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [secrets.backend] table with kind = \"file\" or \"aws\""
)]
struct RawBackend {
    kind: String,
    path: Option<PathBuf>,
    region: Option<String>,
    account_id: Option<String>,
    partition: Option<String>,
    endpoint_url: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    operation_timeout_ms: Option<u64>,
    attempt_timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    mode: Option<String>,
    warm_instances: Option<usize>,
    pooled_instances: Option<u32>,
    compile_cache: Option<PathBuf>,
    render_timeout_ms: Option<u64>,
    render_wall_timeout_ms: Option<u64>,
    max_host_calls: Option<usize>,
    max_component_mb: Option<u64>,
    max_memory_mb: Option<u64>,
    max_references: Option<usize>,
    max_log_lines: Option<usize>,
    max_log_bytes: Option<usize>,
    max_outputs: Option<usize>,
    max_output_kb: Option<usize>,
    max_secret_kb: Option<usize>,
    max_error_bytes: Option<usize>,
    render_plans: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: Option<PathBuf>,
    tracing: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    component: PathBuf,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    public: Vec<String>,
    #[serde(default)]
    reveal: Vec<String>,
    egress: Option<Vec<String>>,
    egress_fields: Option<bool>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    max_memory_mb: Option<u64>,
    warm_instances: Option<usize>,
}

/// Where secrets come from: `[secrets.backend]`, each kind with its own
/// settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A local JSON file (see [`crate::store::file`]).
    File(FileSettings),
    /// AWS Secrets Manager.
    Aws(AwsSettings),
}

impl Backend {
    /// What the configuration says of where the backend is; the host
    /// fills the gaps with what the backend finds out itself.
    pub fn configured_identity(&self) -> &StoreIdentity {
        match self {
            Backend::File(settings) => &settings.identity,
            Backend::Aws(settings) => &settings.identity,
        }
    }
}

/// The `[secrets]` table, checked.
#[derive(Clone, Debug)]
pub struct SecretsConfig {
    /// The backend.
    pub backend: Backend,
    /// Prefix of every relative name.
    pub namespace: Namespace,
    /// How long a fetched version is served from the cache.
    pub cache_ttl: Duration,
    /// Bound on cached versions.
    pub cache_max_entries: NonZeroU64,
    /// How long past the TTL a value may be served while the backend fails.
    pub max_stale: Duration,
    /// Refresh a hot secret this long before it expires (none: off).
    pub refresh_ahead: Option<Duration>,
    /// Shortest interval between invalidations of one secret by one connector.
    pub invalidate_interval: Duration,
    /// Upstream fetches per second each connector may cause.
    pub connector_fetch_rate: f64,
    /// Upstream fetches a connector may make in a burst.
    pub connector_fetch_burst: u32,
}

impl SecretsConfig {
    /// Where ARNs in references must point: what the configuration names,
    /// else what the backend `discovered` itself, the partition `aws` when
    /// neither says.
    pub fn identity(&self, discovered: &StoreIdentity) -> BackendIdentity {
        let configured = self.backend.configured_identity();
        let either = |mine: &Option<String>, found: &Option<String>| mine.clone().or(found.clone());
        BackendIdentity {
            partition: either(&configured.partition, &discovered.partition)
                .unwrap_or_else(|| AWS_PARTITION.into()),
            region: either(&configured.region, &discovered.region),
            account_id: either(&configured.account_id, &discovered.account_id),
        }
    }
}

/// One `[connectors.ID]` table, checked.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    /// The connector's id (its table name).
    pub id: String,
    /// The component file.
    pub component: PathBuf,
    /// What it may read.
    pub allow: Allowlist,
    /// Secrets it may read in plain text (the operator marks them public:
    /// outputs built only from them are not sensitive).
    pub public: Allowlist,
    /// Secrets it may `reveal` (compute over in plain text).
    pub reveal: Allowlist,
    /// The operator's explicit destinations (`egress`), if set: they
    /// replace the pins derived from its destination fields unless
    /// `egress_fields = true`.
    pub egress: Option<Arc<Egress>>,
    /// Field templates, by field name.
    pub fields: BTreeMap<String, String>,
    /// This connector's own sandbox bounds, where they differ.
    pub limits: ConnectorLimits,
}

/// The `[audit]` table, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// A JSON-lines file records are appended to.
    pub file: Option<PathBuf>,
    /// Whether records also go to `tracing` (target `keyward::audit`).
    pub to_tracing: bool,
}

/// The whole configuration, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// Backend, namespace and cache.
    pub secrets: SecretsConfig,
    /// Where audit records go.
    pub audit: AuditConfig,
    /// What one render may consume.
    pub sandbox: SandboxConfig,
    /// The start-up settings as written, to tell a reload what it may
    /// not change.
    startup: Startup,
    /// Connectors by id.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// The other tenants by id (`[tenants.ID]` tables and the files of
    /// `tenants_dir`); the top-level tables are [`DEFAULT_TENANT`]'s.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The directory of tenant files, if one is named.
    pub tenants_dir: Option<PathBuf>,
    /// Tenant files that did not load (the others did), each with why.
    pub tenant_errors: Vec<TenantFileError>,
}

/// The keys of `[secrets]` a running host takes on reload; the rest of it
/// takes effect only at start-up.
pub const LIVE_SECRETS_KEYS: [&str; 4] = [
    "namespace",
    "invalidate_interval_ms",
    "connector_fetch_rate",
    "connector_fetch_burst",
];

/// The start-up tables of a configuration as written, flattened to their
/// dotted keys in the file's order: `[secrets]` without
/// [`LIVE_SECRETS_KEYS`], `[audit]`, `[sandbox]`.
#[derive(Clone, Default, PartialEq)]
struct Startup(Vec<(String, toml::Value)>);

/// The keys only: a value could be anything the operator wrote.
impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.0.iter().map(|(key, _)| key))
            .finish()
    }
}

impl Startup {
    fn of(text: &str) -> Result<Self, String> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        if let Some(toml::Value::Table(secrets)) = table.get_mut("secrets") {
            for key in LIVE_SECRETS_KEYS {
                secrets.remove(key);
            }
        }
        let mut keys = Vec::new();
        for name in ["secrets", "audit", "sandbox"] {
            if let Some(value) = table.remove(name) {
                flatten(name.to_string(), value, &mut keys);
            }
        }
        Ok(Self(keys))
    }

    /// The keys set differently (or set in one and not the other), by
    /// table, in the order the files have them.
    fn differences(&self, new: &Startup) -> Vec<String> {
        let value = |of: &Startup, key: &str| {
            of.0.iter()
                .find(|(k, _)| k == key)
                .map(|(_, value)| value.clone())
        };
        let mut keys: Vec<&String> = Vec::new();
        for table in ["secrets.", "audit.", "sandbox."] {
            for (key, _) in self.0.iter().chain(&new.0) {
                if key.starts_with(table) && !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let mut changed: Vec<String> = keys
            .into_iter()
            .filter(|key| value(self, key) != value(new, key))
            .cloned()
            .collect();
        // Another kind of backend: its settings are all another's.
        if changed.iter().any(|key| key == "secrets.backend.kind") {
            changed.retain(|key| {
                key == "secrets.backend.kind" || !key.starts_with("secrets.backend.")
            });
        }
        changed
    }
}

fn flatten(key: String, value: toml::Value, into: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            for (name, value) in table {
                flatten(format!("{key}.{name}"), value, into);
            }
        }
        value => into.push((key, value)),
    }
}

/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A configuration problem, with the file and, where known, line and column.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    file: String,
    message: String,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths inside it are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::operator_file::read_regular_text(
            path,
            MAX_CONFIG_BYTES,
            "the configuration file",
            None,
        )
        .map_err(|message| ConfigError {
            file: path.display().to_string(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError {
            file: path.display().to_string(),
            message,
        })
    }

    /// [`Config::load`], and from the same text the tables the program
    /// that embeds keyward owns (`keyward serve`'s `[server]`), read into
    /// its own type `T`: one read of the file, errors named alike.
    pub fn load_with<T: serde::de::DeserializeOwned>(
        path: &Path,
    ) -> Result<(Self, T), ConfigError> {
        let failed = |message| ConfigError {
            file: path.display().to_string(),
            message,
        };
        let text = crate::operator_file::read_regular_text(
            path,
            MAX_CONFIG_BYTES,
            "the configuration file",
            None,
        )
        .map_err(failed)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Self::parse(&text, base).map_err(failed)?;
        let own = toml::from_str(&text).map_err(|e| failed(describe_toml_error(&text, &e)))?;
        Ok((config, own))
    }

    /// Checks configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        let secrets = check_secrets(raw.secrets, base, DEFAULT_SESSION_NAME)?;
        let sandbox = check_sandbox(raw.sandbox, base)?;
        let connectors = check_connectors(raw.connectors, base, &sandbox, "")?;
        let max_tenants = match raw.max_tenants {
            Some(0) => return Err("max_tenants: must be at least 1".into()),
            Some(n) => n,
            None => tenants::DEFAULT_MAX_TENANTS,
        };
        let mut tenants = tenants::check_tables(raw.tenants, base, &sandbox)?;
        if tenants.len() > max_tenants {
            return Err(format!(
                "tenants: {} [tenants.*] tables, more than max_tenants ({max_tenants})",
                tenants.len()
            ));
        }
        let tenants_dir = raw.tenants_dir.map(|dir| base.join(dir));
        let mut tenant_errors = Vec::new();
        if let Some(dir) = &tenants_dir {
            let directory = tenants::read_directory(dir, &sandbox, &tenants, max_tenants)?;
            tenants.extend(directory.tenants);
            tenant_errors = directory.errors;
        }
        let audit = AuditConfig {
            file: raw.audit.file.map(|f| base.join(f)),
            to_tracing: raw.audit.tracing.unwrap_or(true),
        };
        Ok(Self {
            secrets,
            audit,
            sandbox,
            connectors,
            tenants,
            tenants_dir,
            tenant_errors,
            startup: Startup::of(text)?,
        })
    }

    /// The settings that take effect only at start-up and differ in `new`,
    /// by their key in the file: all of `[secrets]` but its live keys
    /// ([`LIVE_SECRETS_KEYS`]), `[audit]` and `[sandbox]`. Everything else
    /// (the namespace, connectors, allowlists, fields, components, rate
    /// limits, the invalidate interval) can be swapped into a running host.
    /// A key written out with the value it has by default is no change.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<String> {
        fn checked(c: &Config) -> impl PartialEq + '_ {
            let s = &c.secrets;
            (
                (&s.backend, s.cache_ttl, s.cache_max_entries),
                (s.max_stale, s.refresh_ahead),
                (&c.audit, &c.sandbox),
            )
        }
        if checked(self) == checked(new) {
            return Vec::new();
        }
        let changed = self.startup.differences(&new.startup);
        if changed.is_empty() {
            // Same text, another meaning (a path relative to a moved file).
            return vec!["secrets".into(), "audit".into(), "sandbox".into()];
        }
        changed
    }

    /// Checks `text` as the file of tenant `id` in `tenants_dir` (paths in
    /// it relative to that directory), before it is written there.
    pub fn check_tenant_file(&self, id: &str, text: &str) -> Result<TenantConfig, String> {
        let dir = self
            .tenants_dir
            .as_deref()
            .ok_or("the configuration names no tenants_dir to keep tenant files in")?;
        tenants::check_text(dir, id, text, &self.sandbox)
    }

    /// The connector with this id, or an error listing the ids there are.
    pub fn connector(&self, id: &str) -> Result<&ConnectorConfig, String> {
        self.connectors.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.connectors.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("unknown connector `{id}`: the configuration defines none")
            } else {
                format!("unknown connector `{id}`; configured: {}", known.join(", "))
            }
        })
    }
}

/// `[connectors.*]` tables (of the default tenant, or under `scope`, a
/// tenant's `tenants.ID.`), checked against the sandbox's bounds; paths
/// are resolved against `base`.
fn check_connectors(
    raw: BTreeMap<String, RawConnector>,
    base: &Path,
    sandbox: &SandboxConfig,
    scope: &str,
) -> Result<BTreeMap<String, ConnectorConfig>, String> {
    let mut connectors = BTreeMap::new();
    for (id, raw) in raw {
        let rules = |list: &[String], key: &str| {
            Allowlist::parse(list).map_err(|e| format!("{scope}connectors.{id}.{key}: {e}"))
        };
        let (allow, public, reveal) = (
            rules(&raw.allow, "allow")?,
            rules(&raw.public, "public")?,
            rules(&raw.reveal, "reveal")?,
        );
        for (field, template) in &raw.config {
            Template::parse(template).map_err(|e| {
                format!(
                    "{scope}connectors.{id}.config.{field}, column {}: {}",
                    e.column, e.message
                )
            })?;
        }
        let egress = match (&raw.egress, raw.egress_fields) {
            (None, Some(_)) => {
                return Err(format!(
                    "{scope}connectors.{id}.egress_fields: only means something beside `egress`"
                ));
            }
            (None, None) => None,
            (Some(entries), keep_fields) => Some(Arc::new(
                Egress::parse(entries, keep_fields.unwrap_or(false))
                    .map_err(|e| format!("{scope}connectors.{id}.egress: {e}"))?,
            )),
        };
        let max_memory_bytes = match raw.max_memory_mb {
            None => None,
            Some(mb) => Some(
                mb.checked_mul(1 << 20)
                    .and_then(|bytes| usize::try_from(bytes).ok())
                    .filter(|bytes| (1..=sandbox.max_memory_bytes).contains(bytes))
                    .ok_or_else(|| {
                        format!(
                            "{scope}connectors.{id}.max_memory_mb: {mb} is not from 1 to \
                             sandbox.max_memory_mb ({}); a connector's limit may only \
                             lower the sandbox's",
                            sandbox.max_memory_bytes >> 20
                        )
                    })?,
            ),
        };
        let limits = ConnectorLimits {
            max_memory_bytes,
            warm_instances: raw.warm_instances,
        };
        connectors.insert(
            id.clone(),
            ConnectorConfig {
                id,
                component: base.join(raw.component),
                allow,
                public,
                reveal,
                egress,
                fields: raw.config,
                limits,
            },
        );
    }
    Ok(connectors)
}

fn check_secrets(
    raw: RawSecrets,
    base: &Path,
    session_name: &str,
) -> Result<SecretsConfig, String> {
    let backend = check_backend(raw.backend, base, session_name)?;
    let namespace =
        Namespace::new(&raw.namespace).map_err(|e| format!("secrets.namespace: {e}"))?;
    let cache_ttl = Duration::from_millis(raw.cache_ttl_ms.unwrap_or(DEFAULT_CACHE_TTL_MS));
    let cache_max_entries =
        NonZeroU64::new(raw.cache_max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES))
            .ok_or("secrets.cache_max_entries: must be at least 1")?;
    let refresh_ahead = raw
        .refresh_ahead_ms
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    if refresh_ahead.is_some_and(|r| r >= cache_ttl) {
        return Err("secrets.refresh_ahead_ms: must be shorter than cache_ttl_ms".into());
    }
    Ok(SecretsConfig {
        backend,
        namespace,
        cache_ttl,
        cache_max_entries,
        max_stale: Duration::from_millis(raw.max_stale_ms.unwrap_or(DEFAULT_MAX_STALE_MS)),
        refresh_ahead,
        connector_fetch_rate: match raw
            .connector_fetch_rate
            .unwrap_or(DEFAULT_CONNECTOR_FETCH_RATE)
        {
            rate if rate.is_finite() && rate >= 0.0 => rate,
            _ => return Err(
                "secrets.connector_fetch_rate: must be a number of fetches per second, 0 or more"
                    .into(),
            ),
        },
        connector_fetch_burst: match raw
            .connector_fetch_burst
            .unwrap_or(DEFAULT_CONNECTOR_FETCH_BURST)
        {
            0 => return Err("secrets.connector_fetch_burst: must be at least 1".into()),
            burst => burst,
        },
        invalidate_interval: Duration::from_millis(
            raw.invalidate_interval_ms
                .unwrap_or(DEFAULT_INVALIDATE_INTERVAL_MS),
        ),
    })
}

/// `[secrets.backend]`: the kind, then only the settings that kind has.
fn check_backend(raw: RawBackend, base: &Path, session_name: &str) -> Result<Backend, String> {
    if let Some(account) = &raw.account_id
        && (account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("secrets.backend.account_id: an AWS account id is 12 digits".into());
    }
    if raw.partition.as_deref() == Some("") {
        return Err("secrets.backend.partition: must not be empty (`aws`, `aws-cn`, ...)".into());
    }
    let aws_only = [
        ("endpoint_url", raw.endpoint_url.is_some()),
        ("role_arn", raw.role_arn.is_some()),
        ("external_id", raw.external_id.is_some()),
        ("operation_timeout_ms", raw.operation_timeout_ms.is_some()),
        ("attempt_timeout_ms", raw.attempt_timeout_ms.is_some()),
        ("max_attempts", raw.max_attempts.is_some()),
    ];
    let identity = StoreIdentity {
        region: raw.region,
        account_id: raw.account_id,
        partition: raw.partition,
    };
    match raw.kind.as_str() {
        "file" => {
            if let Some((key, _)) = aws_only.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "secrets.backend.{key}: a setting of kind = \"aws\", not \"file\""
                ));
            }
            let path = raw
                .path
                .ok_or("secrets.backend.path: required for kind = \"file\"")?;
            Ok(Backend::File(FileSettings {
                path: base.join(path),
                identity,
            }))
        }
        "aws" => {
            if raw.path.is_some() {
                return Err(
                    "secrets.backend.path: a setting of kind = \"file\", not \"aws\"".into(),
                );
            }
            if raw.external_id.is_some() && raw.role_arn.is_none() {
                return Err(
                    "secrets.backend.external_id: only means something beside `role_arn`".into(),
                );
            }
            if raw
                .external_id
                .as_deref()
                .is_some_and(|id| !valid_external_id(id))
            {
                return Err(
                    "secrets.backend.external_id: 2 to 1224 characters of letters, \
                     digits and +=,.@:/-"
                        .into(),
                );
            }
            let max_attempts = raw.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
            if max_attempts == 0 {
                return Err("secrets.backend.max_attempts: must be at least 1".into());
            }
            Ok(Backend::Aws(AwsSettings {
                identity,
                endpoint_url: raw.endpoint_url,
                role_arn: raw.role_arn,
                external_id: raw.external_id,
                session_name: session_name.to_string(),
                operation_timeout: positive_ms(
                    raw.operation_timeout_ms,
                    DEFAULT_OPERATION_TIMEOUT_MS,
                    "operation_timeout_ms",
                )?,
                attempt_timeout: positive_ms(
                    raw.attempt_timeout_ms,
                    DEFAULT_ATTEMPT_TIMEOUT_MS,
                    "attempt_timeout_ms",
                )?,
                max_attempts,
            }))
        }
        other => Err(format!(
            "secrets.backend.kind: unknown backend `{other}` (expected \"file\" or \"aws\")"
        )),
    }
}

fn check_sandbox(raw: RawSandbox, base: &Path) -> Result<SandboxConfig, String> {
    let defaults = SandboxConfig::default();
    let positive = |value: Option<usize>, default: usize, key: &str| match value {
        Some(0) => Err(format!("sandbox.{key}: must be at least 1")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let within = |value: Option<usize>,
                  default: usize,
                  range: std::ops::RangeInclusive<usize>,
                  key: &str| match value {
        Some(v) if !range.contains(&v) => Err(format!(
            "sandbox.{key}: must be from {} to {}",
            range.start(),
            range.end()
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let max_memory_mb = raw
        .max_memory_mb
        .unwrap_or((defaults.max_memory_bytes >> 20) as u64);
    if !(1..=4096).contains(&max_memory_mb) {
        return Err("sandbox.max_memory_mb: must be from 1 to 4096".into());
    }
    let max_component_mb = raw
        .max_component_mb
        .unwrap_or(defaults.max_component_bytes >> 20);
    if !(1..=4096).contains(&max_component_mb) {
        return Err("sandbox.max_component_mb: must be from 1 to 4096".into());
    }
    let render_timeout = Duration::from_millis(match raw.render_timeout_ms {
        Some(0) => return Err("sandbox.render_timeout_ms: must be at least 1".into()),
        Some(ms) => ms,
        None => defaults.render_timeout.as_millis() as u64,
    });
    let render_wall_timeout = match raw.render_wall_timeout_ms {
        Some(ms) if Duration::from_millis(ms) < render_timeout => {
            return Err(
                "sandbox.render_wall_timeout_ms: must be at least render_timeout_ms".into(),
            );
        }
        Some(ms) => Duration::from_millis(ms),
        None => defaults.render_wall_timeout.max(render_timeout),
    };
    Ok(SandboxConfig {
        render_timeout,
        render_wall_timeout,
        max_host_calls: positive(
            raw.max_host_calls,
            defaults.max_host_calls,
            "max_host_calls",
        )?,
        max_component_bytes: max_component_mb << 20,
        max_memory_bytes: usize::try_from(max_memory_mb << 20)
            .map_err(|_| "sandbox.max_memory_mb: too large")?,
        memory_limit_setting: defaults.memory_limit_setting.clone(),
        max_references: positive(
            raw.max_references,
            defaults.max_references,
            "max_references",
        )?,
        max_log_lines: positive(raw.max_log_lines, defaults.max_log_lines, "max_log_lines")?,
        max_log_bytes: within(
            raw.max_log_bytes,
            defaults.max_log_bytes,
            64..=1 << 20,
            "max_log_bytes",
        )?,
        max_outputs: within(
            raw.max_outputs,
            defaults.max_outputs,
            1..=4096,
            "max_outputs",
        )?,
        max_output_bytes: within(
            raw.max_output_kb,
            defaults.max_output_bytes >> 10,
            1..=256 << 10,
            "max_output_kb",
        )? << 10,
        max_secret_bytes: within(
            raw.max_secret_kb,
            defaults.max_secret_bytes >> 10,
            1..=16 << 10,
            "max_secret_kb",
        )? << 10,
        max_error_bytes: within(
            raw.max_error_bytes,
            defaults.max_error_bytes,
            64..=1 << 20,
            "max_error_bytes",
        )?,
        mode: match raw.mode.as_deref() {
            None | Some("fresh") => ExecutionMode::Fresh,
            Some("warm") => ExecutionMode::Warm,
            Some(other) => {
                return Err(format!(
                    "sandbox.mode: unknown mode `{other}` (expected \"fresh\" or \"warm\")"
                ));
            }
        },
        warm_instances: raw.warm_instances.unwrap_or(defaults.warm_instances),
        render_plans: within(
            raw.render_plans,
            defaults.render_plans,
            0..=1 << 16,
            "render_plans",
        )?,
        pooled_instances: match raw.pooled_instances {
            Some(0) => return Err("sandbox.pooled_instances: must be at least 1".into()),
            other => other,
        },
        compile_cache: raw.compile_cache.map(|dir| base.join(dir)),
    })
}

fn positive_ms(value: Option<u64>, default: u64, key: &str) -> Result<Duration, String> {
    match value.unwrap_or(default) {
        0 => Err(format!("secrets.backend.{key}: must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

/// The session name the default backend's assumed role gets.
const DEFAULT_SESSION_NAME: &str = "keyward";

/// What STS takes as an external id: 2 to 1224 of `[\w+=,.@:/-]`.
fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// `line L, column C: message`, without quoting the offending line (it
/// might hold a literal credential).
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = redact_serde_message(e.message().trim_end());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// serde's "invalid type: string \"...\", expected ..." quotes the input;
/// keep only what was expected.
fn redact_serde_message(message: &str) -> String {
    if message.starts_with("invalid") {
        if let Some((_, expected)) = message.split_once(", expected ") {
            return format!("invalid value, expected {expected}");
        }
        return "invalid value".to_string();
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[secrets]
namespace = "acme/prod"
cache_ttl_ms = 1000

[secrets.backend]
kind = "file"
path = "secrets.json"

[connectors.orders-db]
component = "postgres.wasm"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
"#;

    #[test]
    fn good_config_is_typed() {
        let c = Config::parse(GOOD, Path::new("/etc/kw")).unwrap();
        assert_eq!(c.secrets.namespace.as_str(), "acme/prod/");
        assert_eq!(c.secrets.cache_ttl, Duration::from_secs(1));
        assert_eq!(
            c.secrets.backend,
            Backend::File(FileSettings {
                path: "/etc/kw/secrets.json".into(),
                identity: StoreIdentity::default(),
            })
        );
        let conn = c.connector("orders-db").unwrap();
        assert_eq!(conn.component, Path::new("/etc/kw/postgres.wasm"));
        assert_eq!(conn.fields["host"], "{{ secrets.host }}");
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let e =
            Config::parse(&GOOD.replace("cache_ttl_ms", "cache_ttl"), Path::new(".")).unwrap_err();
        assert!(
            e.starts_with("line 4, column 1: unknown field `cache_ttl`"),
            "{e}"
        );
        let e = Config::parse(
            &GOOD.replace("path = ", "region = \"us-east-1\"\nfile = "),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            e.starts_with("line 9, column 1: unknown field `file`"),
            "{e}"
        );
        let e = Config::parse(&GOOD.replace("allow =", "allowed ="), Path::new(".")).unwrap_err();
        assert!(e.contains("unknown field `allowed`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::parse(&GOOD.replace("\"file\"", "\"vault\""), Path::new(".")).unwrap_err();
        assert!(
            e.contains("secrets.backend.kind: unknown backend `vault`"),
            "{e}"
        );
        let e = Config::parse(
            &GOOD.replace(
                "path = \"secrets.json\"",
                "path = \"secrets.json\"\nendpoint_url = \"http://x\"",
            ),
            Path::new("."),
        )
        .expect_err("aws-only key");
        assert!(
            e.contains("secrets.backend.endpoint_url: a setting of kind = \"aws\", not \"file\""),
            "{e}"
        );
        let old_style = "[secrets]\nbackend = \"file\"\npath = \"secrets.json\"\n";
        assert_eq!(
            Config::parse(old_style, Path::new(".")).unwrap_err(),
            "line 2, column 11: invalid value, expected a [secrets.backend] table with \
             kind = \"file\" or \"aws\""
        );
        let e = Config::parse(&GOOD.replace("\"db\", ", "\"a//b\", "), Path::new(".")).unwrap_err();
        assert!(e.contains("connectors.orders-db.allow"), "{e}");
        let e = Config::parse(
            &GOOD.replace("\"{{ secrets.host }}\"", "5432"),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e, "line 14, column 8: invalid value, expected a string");
        let e = Config::parse(&GOOD.replace("1000", "\"canary-ttl\""), Path::new(".")).unwrap_err();
        assert!(e.contains("line 4") && !e.contains("canary"), "{e}");
    }

    #[test]
    fn render_bounds_are_checked() {
        let with = |sandbox: &str| {
            Config::parse(&format!("{GOOD}\n[sandbox]\n{sandbox}\n"), Path::new("."))
        };
        let c = with("render_timeout_ms = 50\nmax_host_calls = 7\nmax_component_mb = 2").unwrap();
        assert_eq!(c.sandbox.render_wall_timeout, Duration::from_secs(30));
        assert_eq!(c.sandbox.max_host_calls, 7);
        assert_eq!(c.sandbox.max_component_bytes, 2 << 20);
        for (bad, expected) in [
            (
                "render_timeout_ms = 500\nrender_wall_timeout_ms = 100",
                "sandbox.render_wall_timeout_ms: must be at least render_timeout_ms",
            ),
            (
                "max_host_calls = 0",
                "sandbox.max_host_calls: must be at least 1",
            ),
            (
                "max_component_mb = 0",
                "sandbox.max_component_mb: must be from 1 to 4096",
            ),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains(expected), "{bad}: {e}");
        }
    }

    #[test]
    fn toml_errors_do_not_quote_lines() {
        let text = GOOD.replace(
            "host = \"{{ secrets.host }}\"",
            "password = \"canary-1\" oops",
        );
        let e = Config::parse(&text, Path::new(".")).unwrap_err();
        assert!(!e.contains("canary"), "{e}");
    }

    #[test]
    fn templates_and_rules_are_checked_at_load() {
        let bad = GOOD.replace("{{ secrets.host }}", "x {{ secrets.host | upper }}");
        assert_eq!(
            Config::parse(&bad, Path::new(".")).unwrap_err(),
            "connectors.orders-db.config.host, column 21: unknown filter `upper` \
             (expected urlencode, json or base64)"
        );
        let bad_rule = GOOD.replace("allow = [", "reveal = [\"a/**x\"]\nallow = [");
        assert!(
            Config::parse(&bad_rule, Path::new("."))
                .unwrap_err()
                .starts_with("connectors.orders-db.reveal: rule `a/**x`"),
        );
    }

    #[test]
    fn egress_entries_are_checked_naming_the_connector_and_the_entry() {
        let good = GOOD.replace(
            "allow = [",
            "egress = [\"https://jira.example.com/rest/\", \"db.internal:5432\"]\nallow = [",
        );
        let c = Config::parse(&good, Path::new(".")).unwrap();
        assert!(c.connectors["orders-db"].egress.is_some());
        let bad = GOOD.replace("allow = [", "egress = [\"https://a\\\\b/\"]\nallow = [");
        assert_eq!(
            Config::parse(&bad, Path::new(".")).unwrap_err(),
            "connectors.orders-db.egress: entry 0 (`https://a\\b/`): its text holds a backslash"
        );
        let alone = GOOD.replace("allow = [", "egress_fields = true\nallow = [");
        assert!(
            Config::parse(&alone, Path::new("."))
                .unwrap_err()
                .starts_with("connectors.orders-db.egress_fields: only means something beside")
        );
    }

    #[test]
    fn restart_only_changes_are_named_and_live_ones_are_not() {
        let old = Config::parse(GOOD, Path::new(".")).unwrap();
        let live = GOOD
            .replace(
                "namespace = \"acme/prod\"",
                "namespace = \"acme/dev\"\nconnector_fetch_rate = 3",
            )
            .replace("allow = [\"db\", \"host\"]", "allow = [\"db\"]");
        let new = Config::parse(&live, Path::new(".")).unwrap();
        assert!(old.restart_only_changes(&new).is_empty());
        let restart = GOOD.replace(
            "cache_ttl_ms = 1000",
            "cache_ttl_ms = 2000\nrefresh_ahead_ms = 100\n\n[sandbox]\nmax_memory_mb = 32",
        );
        let new = Config::parse(&restart, Path::new(".")).unwrap();
        assert_eq!(
            old.restart_only_changes(&new),
            [
                "secrets.cache_ttl_ms",
                "secrets.refresh_ahead_ms",
                "sandbox.max_memory_mb"
            ]
        );
        let moved = GOOD.replace(
            "path = \"secrets.json\"",
            "path = \"other.json\"\npartition = \"aws-cn\"",
        );
        let new = Config::parse(&moved, Path::new(".")).unwrap();
        assert_eq!(
            old.restart_only_changes(&new),
            ["secrets.backend.path", "secrets.backend.partition"]
        );
        let aws = GOOD.replace("kind = \"file\"\npath = \"secrets.json\"", "kind = \"aws\"");
        let new = Config::parse(&aws, Path::new(".")).unwrap();
        assert_eq!(old.restart_only_changes(&new), ["secrets.backend.kind"]);
    }

    #[test]
    fn the_identity_is_the_configurations_then_the_backends_then_the_default_partition() {
        let discovered = StoreIdentity {
            region: Some("cn-north-1".into()),
            account_id: Some("210987654321".into()),
            partition: Some("aws-cn".into()),
        };
        let aws = |settings: &str| {
            let text = GOOD.replace(
                "kind = \"file\"\npath = \"secrets.json\"",
                &format!("kind = \"aws\"\n{settings}"),
            );
            Config::parse(&text, Path::new(".")).unwrap().secrets
        };
        assert_eq!(
            aws("").identity(&discovered),
            BackendIdentity {
                partition: "aws-cn".into(),
                region: Some("cn-north-1".into()),
                account_id: Some("210987654321".into()),
            },
            "all from the backend (the region from the SDK's chain, the rest from STS)"
        );
        assert_eq!(
            aws("region = \"us-east-1\"\naccount_id = \"123456789012\"\npartition = \"aws\"")
                .identity(&discovered),
            BackendIdentity {
                partition: "aws".into(),
                region: Some("us-east-1".into()),
                account_id: Some("123456789012".into()),
            },
            "what the configuration names wins"
        );
        assert_eq!(
            aws("").identity(&StoreIdentity::default()),
            BackendIdentity {
                partition: "aws".into(),
                region: None,
                account_id: None,
            },
            "nothing known: partition aws, no region or account (ARNs refused)"
        );
        let e = Config::parse(
            &GOOD.replace("kind = \"file\"", "kind = \"aws\""),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "secrets.backend.path: a setting of kind = \"file\", not \"aws\""
        );
    }

    #[test]
    fn unknown_connector_lists_known_ones() {
        let c = Config::parse(GOOD, Path::new(".")).unwrap();
        assert_eq!(
            c.connector("x").unwrap_err(),
            "unknown connector `x`; configured: orders-db"
        );
    }
}
