//! The host as an embedding platform uses it: configuration in, rendered
//! connections out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::audit::AuditLog;
use crate::cache::{CacheStats, SecretCache};
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, DEFAULT_TENANT, FileSettings, TenantConfig};
use crate::contract::{ConnectorInfo, Rendered};
pub use crate::error::Error;
use crate::policy::{RefusedReference, SecretRequest};
use crate::resolve::{ConnectorSecrets, Invalidation, ResolveError};
use crate::sandbox::limits::SandboxConfig;
use crate::sandbox::{PlanCounts, RecordedWasiReads, RenderPaths, Sandbox};
use crate::store::SecretStore;
use crate::store::aws::AwsStore;
use crate::store::file::FileStore;
use crate::tenant::{Runtime, Tenant};
use crate::value::SecretValue;

/// See [`Keyward::stats`].
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// The cache's hits, misses and stale serves.
    pub cache: CacheStats,
    /// Calls that reached the backend: (operation, outcome, count); a
    /// batch counts one per secret in it.
    pub upstream: Vec<(&'static str, &'static str, u64)>,
    /// Policy decisions by kind (`allowed`, `denied`, `rate_limited`, ...).
    pub decisions: Vec<(&'static str, u64)>,
    /// Renders by the path they ran on (synchronous, rerun, async).
    pub render_paths: RenderPaths,
    /// Renders by how render plans served them (hit, recorded, skipped).
    pub render_plans: PlanCounts,
    /// What recording renders read of WASI's clocks and random.
    pub recorded_wasi_reads: RecordedWasiReads,
}

/// The tenants other than the default, by id.
type Tenants = Arc<BTreeMap<String, Arc<Tenant>>>;

/// A keyward host: one runtime (engine, compile cache, instance pool,
/// audit log) and its tenants, each with its own backend, cache and
/// connectors. The default tenant is the configuration's top-level
/// `[secrets]` and `[connectors.*]`; the methods that name no tenant are
/// its.
#[derive(Debug)]
pub struct Keyward {
    runtime: Arc<Runtime>,
    default: Arc<Tenant>,
    tenants: RwLock<Tenants>,
    /// The configuration it started with: what a reload may not change.
    started_with: Config,
}

/// Opens a tenant's file backend.
fn open_file_store(tenant: &str, settings: &FileSettings) -> Result<FileStore, Error> {
    FileStore::open(&settings.path).map_err(|e| Error::Backend(format!("tenant `{tenant}`: {e}")))
}

/// Opens the backend a tenant's configuration names.
async fn open_store(tenant: &str, backend: &Backend) -> Result<Arc<dyn SecretStore>, Error> {
    Ok(match backend {
        Backend::File(settings) => Arc::new(open_file_store(tenant, settings)?),
        Backend::Aws(settings) => {
            let mut store = AwsStore::connect(settings).await;
            if settings.identity.account_id.is_none()
                && let Err(e) = store.discover_account().await
            {
                // ARN references are refused (as without an account)
                // until the configuration names `account_id`.
                tracing::warn!(
                    "tenant `{tenant}`: {e}; set `account_id` under its backend to check ARN \
                     references"
                );
            }
            Arc::new(store)
        }
    })
}

impl Keyward {
    /// Opens every tenant's backend and sets up the sandbox. Components are
    /// compiled on first use (or all at once with [`Keyward::preload`]).
    pub async fn new(config: Config) -> Result<Self, Error> {
        let store = open_store(DEFAULT_TENANT, &config.secrets.backend).await?;
        let keyward = Self::default_only(config, store, Arc::new(SystemClock))?;
        let tenants = keyward.open_tenants(&keyward.started_with.tenants).await?;
        *keyward.tenants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tenants);
        Ok(keyward)
    }

    /// Like [`Keyward::new`] with the default tenant's backend of the
    /// caller's choosing.
    pub fn with_store(config: Config, store: Arc<dyn SecretStore>) -> Result<Self, Error> {
        Self::with_store_and_clock(config, store, Arc::new(SystemClock))
    }

    /// Like [`Keyward::with_store`], with cache freshness and rate limits
    /// read from `clock` (tests move a [`crate::clock::ManualClock`]).
    /// Other tenants' backends must be files here: an AWS backend is opened
    /// by [`Keyward::new`].
    pub fn with_store_and_clock(
        config: Config,
        store: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let keyward = Self::default_only(config, store, clock)?;
        let mut tenants = BTreeMap::new();
        for (id, tenant) in &keyward.started_with.tenants {
            let Backend::File(settings) = &tenant.secrets.backend else {
                return Err(Error::Backend(format!(
                    "tenant `{id}`: an AWS backend is opened by Keyward::new, not with_store"
                )));
            };
            let store = open_file_store(id, settings)?;
            tenants.insert(
                id.clone(),
                Arc::new(keyward.tenant_over(tenant, Arc::new(store))),
            );
        }
        *keyward.tenants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tenants);
        Ok(keyward)
    }

    /// The runtime and the default tenant over `store`; no other tenant yet.
    fn default_only(
        config: Config,
        store: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let audit = AuditLog::open(config.audit.file.as_deref(), config.audit.to_tracing).map_err(
            |source| Error::Audit {
                file: config.audit.file.clone().unwrap_or_default(),
                source,
            },
        )?;
        let runtime = Arc::new(Runtime {
            sandbox: Sandbox::new(config.sandbox.clone())?,
            audit: Arc::new(audit),
            clock,
            limits: config.sandbox.clone(),
        });
        // Components load on first use (or `preload`), not here.
        let default = Arc::new(Tenant::open(
            DEFAULT_TENANT,
            runtime.clone(),
            &config.secrets,
            &config.connectors,
            store,
        ));
        Ok(Self {
            runtime,
            default,
            tenants: RwLock::default(),
            started_with: config,
        })
    }

    /// A tenant of this runtime over `store`.
    fn tenant_over(&self, config: &TenantConfig, store: Arc<dyn SecretStore>) -> Tenant {
        Tenant::open(
            &config.id,
            self.runtime.clone(),
            &config.secrets,
            &config.connectors,
            store,
        )
    }

    /// Opens the tenants `configs` names, reusing those already open whose
    /// backend and cache settings are unchanged (their caches stay warm;
    /// their connectors are swapped in once loaded).
    async fn open_tenants(
        &self,
        configs: &BTreeMap<String, TenantConfig>,
    ) -> Result<BTreeMap<String, Arc<Tenant>>, Error> {
        let current = self.current_tenants();
        let mut tenants = BTreeMap::new();
        for (id, config) in configs {
            let tenant = match current.get(id) {
                Some(open) if open.takes(&config.secrets) => {
                    open.update(&config.secrets, &config.connectors).await?;
                    open.clone()
                }
                _ => {
                    let store = open_store(id, &config.secrets.backend).await?;
                    Arc::new(self.tenant_over(config, store))
                }
            };
            tenants.insert(id.clone(), tenant);
        }
        Ok(tenants)
    }

    fn current_tenants(&self) -> Tenants {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in the connectors and policies of `config` (namespace,
    /// connectors, allowlists, fields, components, rate limits, the
    /// invalidate interval) without a restart, and its tenants: a new one
    /// is opened, a removed one dropped (renders under way on it finish),
    /// one whose backend or cache settings changed opened anew, and every
    /// other keeps its cache warm. Renders under way finish under the
    /// policy they started with. A configuration that changes a setting
    /// of the default tenant or the runtime that takes effect only at
    /// start-up (backend, cache, identity, audit, sandbox) is refused
    /// whole, naming each such setting.
    ///
    /// The new configuration is applied only once every connector it names
    /// has loaded and compiled: a component that is missing, not a regular
    /// file or not a connector leaves the running configuration serving,
    /// and the error names the connector and why.
    pub async fn update_policy(&self, config: &Config) -> Result<(), Error> {
        let changed = self.started_with.restart_only_changes(config);
        if !changed.is_empty() {
            return Err(Error::RestartRequired(changed));
        }
        let tenants = self.open_tenants(&config.tenants).await?;
        self.default
            .update(&config.secrets, &config.connectors)
            .await?;
        *self.tenants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tenants);
        Ok(())
    }

    /// The tenant with this id (`default` is the top-level tables'), or the
    /// error that lists the ids there are.
    pub fn tenant(&self, id: &str) -> Result<Arc<Tenant>, Error> {
        if id == DEFAULT_TENANT {
            return Ok(self.default.clone());
        }
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        tenants.get(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = std::iter::once(DEFAULT_TENANT)
                .chain(tenants.keys().map(String::as_str))
                .collect();
            Error::UnknownTenant(format!(
                "unknown tenant `{id}`; configured: {}",
                known.join(", ")
            ))
        })
    }

    /// The tenant ids, `default` first.
    pub fn tenant_ids(&self) -> Vec<String> {
        std::iter::once(DEFAULT_TENANT.to_string())
            .chain(self.current_tenants().keys().cloned())
            .collect()
    }

    /// The default tenant.
    pub fn default_tenant(&self) -> &Arc<Tenant> {
        &self.default
    }

    /// What the host has done since it started, for metrics: the default
    /// tenant's cache hits, misses and stale serves and calls that reached
    /// its backend, and the runtime's policy decisions and renders. Never
    /// a name or a value.
    pub fn stats(&self) -> Stats {
        let sandbox = &self.runtime.sandbox;
        Stats {
            cache: self.default.cache_stats(),
            upstream: self.default.upstream(),
            decisions: self.runtime.audit.decisions(),
            render_paths: sandbox.render_paths(),
            render_plans: sandbox.plan_counts(),
            recorded_wasi_reads: sandbox.recorded_wasi_reads(),
        }
    }

    /// The default tenant's secret cache (for operators' invalidation).
    pub fn cache(&self) -> &SecretCache {
        self.default.cache()
    }

    /// The sandbox connectors run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.runtime.sandbox
    }

    /// Compiles every configured connector of every tenant now.
    pub async fn preload(&self) -> Result<(), Error> {
        self.default.preload().await?;
        for tenant in self.current_tenants().values() {
            tenant.preload().await?;
        }
        Ok(())
    }

    /// Ok if the default tenant has a connector with this id, else the
    /// error that lists the ids there are.
    pub fn require_connector(&self, id: &str) -> Result<(), Error> {
        self.default.require_connector(id)
    }

    /// The default tenant's connector ids.
    pub fn connector_ids(&self) -> Vec<String> {
        self.default.connector_ids()
    }

    /// See [`Tenant::prewarm`].
    pub async fn prewarm(&self, id: &str, count: usize) -> Result<usize, Error> {
        self.default.prewarm(id, count).await
    }

    /// See [`Tenant::connector_secrets`].
    pub fn connector_secrets(&self, id: &str) -> Result<Arc<ConnectorSecrets>, Error> {
        self.default.connector_secrets(id)
    }

    pub(crate) fn connector_limits(&self, id: &str) -> Result<Arc<SandboxConfig>, Error> {
        self.default.connector_limits(id)
    }

    pub(crate) fn sandbox_limits(&self) -> &SandboxConfig {
        &self.runtime.limits
    }

    pub(crate) fn component_path(&self, id: &str) -> Result<PathBuf, Error> {
        self.default.component_path(id)
    }

    pub(crate) fn configured_fields(&self, id: &str) -> Result<Arc<[(String, String)]>, Error> {
        self.default.configured_fields(id)
    }

    /// See [`Tenant::describe`].
    pub async fn describe(&self, id: &str) -> Result<ConnectorInfo, Error> {
        self.default.describe(id).await
    }

    /// See [`Tenant::render`].
    pub async fn render(&self, id: &str) -> Result<Rendered, Error> {
        self.default.render(id).await
    }

    /// See [`Tenant::render_fields`].
    pub async fn render_fields(
        &self,
        id: &str,
        fields: &[(String, String)],
    ) -> Result<Rendered, Error> {
        self.default.render_fields(id, fields).await
    }

    /// See [`Tenant::resolve`].
    pub async fn resolve(
        &self,
        id: &str,
        requests: &[SecretRequest],
    ) -> Result<Vec<Result<SecretValue, ResolveError>>, Error> {
        self.default.resolve(id, requests).await
    }

    /// See [`Tenant::invalidate`].
    pub async fn invalidate(
        &self,
        id: &str,
        request: &SecretRequest,
    ) -> Result<Invalidation, Error> {
        self.default.invalidate(id, request).await
    }

    /// See [`Tenant::check_backend`].
    pub async fn check_backend(&self) -> Result<usize, Error> {
        self.default.check_backend().await
    }

    /// See [`Tenant::refused_references`].
    pub fn refused_references(&self, id: &str) -> Vec<RefusedReference> {
        self.default.refused_references(id)
    }

    /// See [`Tenant::references`].
    pub async fn references(&self, id: &str) -> Result<Vec<String>, Error> {
        self.default.references(id).await
    }

    /// See [`Tenant::allowed_references`].
    pub async fn allowed_references(&self, id: &str) -> Result<Vec<SecretRequest>, Error> {
        self.default.allowed_references(id).await
    }
}
