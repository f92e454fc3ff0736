//! The host as an embedding platform uses it: configuration in, rendered
//! connections out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::OnceCell;

use crate::audit::AuditLog;
use crate::cache::{CachePolicy, CacheStats, SecretCache};
use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, ConfigError, ConnectorConfig, SecretsConfig};
use crate::contract::{ConnectorInfo, Rendered, RunError};
use crate::policy::{ConnectorPolicy, RefusedReference, SecretRequest};
use crate::ratelimit::TokenBucket;
use crate::resolve::{ConnectorSecrets, Invalidation, ResolveError};
use crate::sandbox::limits::SandboxConfig;
use crate::sandbox::{
    LoadError, LoadedConnector, PlanCounts, RecordedWasiReads, RenderPaths, Sandbox, SandboxError,
};
use crate::store::aws::AwsStore;
use crate::store::file::FileStore;
use crate::store::metered::{Metered, UpstreamCounts};
use crate::store::{SecretStore, StoreIdentity};
use crate::value::SecretValue;

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

/// One configured connector: its configuration, its secrets view under the
/// current policy, and its lazily compiled component (shared across policy
/// swaps while the component path stays the same).
#[derive(Debug)]
struct Slot {
    config: ConnectorConfig,
    /// The configured fields as a render takes them, built once per swap
    /// (a render of the configured fields copies nothing).
    fields: Arc<[(String, String)]>,
    secrets: Arc<ConnectorSecrets>,
    loaded: Arc<OnceCell<Arc<LoadedConnector>>>,
}

type Slots = Arc<BTreeMap<String, Arc<Slot>>>;

/// A connector's configured fields, in name order.
fn configured_fields(config: &ConnectorConfig) -> Arc<[(String, String)]> {
    config
        .fields
        .iter()
        .map(|(name, template)| (name.clone(), template.clone()))
        .collect()
}

/// A keyward host: one sandbox, one cache, the configured connectors.
#[derive(Debug)]
pub struct Keyward {
    sandbox: Sandbox,
    cache: SecretCache,
    audit: Arc<AuditLog>,
    /// The configuration it started with: what a reload may not change.
    started_with: Config,
    /// Where the backend found itself to be.
    discovered: StoreIdentity,
    /// The calls that reached the backend.
    upstream: UpstreamCounts,
    clock: Arc<dyn Clock>,
    slots: RwLock<Slots>,
    /// The `[secrets]` of the configuration swapped in last.
    live: RwLock<SecretsConfig>,
}

impl Keyward {
    /// Opens the backend and sets up the sandbox. Components are compiled on
    /// first use (or all at once with [`Keyward::preload`]).
    pub async fn new(config: Config) -> Result<Self, Error> {
        let store: Arc<dyn SecretStore> = match &config.secrets.backend {
            Backend::File(settings) => Arc::new(
                FileStore::open(&settings.path).map_err(|e| Error::Backend(e.to_string()))?,
            ),
            Backend::Aws(settings) => {
                let mut store = AwsStore::connect(settings).await;
                if settings.identity.account_id.is_none()
                    && let Err(e) = store.discover_account().await
                {
                    // ARN references are refused (as without an account)
                    // until the configuration names `account_id`.
                    tracing::warn!(
                        "{e}; set `account_id` under [secrets.backend] to check ARN references"
                    );
                }
                Arc::new(store)
            }
        };
        Self::with_store(config, store)
    }

    /// Like [`Keyward::new`] with a backend of the caller's choosing.
    pub fn with_store(config: Config, store: Arc<dyn SecretStore>) -> Result<Self, Error> {
        Self::with_store_and_clock(config, store, Arc::new(SystemClock))
    }

    /// Like [`Keyward::with_store`], with cache freshness and rate limits
    /// read from `clock` (tests move a [`crate::clock::ManualClock`]).
    pub fn with_store_and_clock(
        config: Config,
        store: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        let secrets = config.secrets.clone();
        let discovered = store.identity();
        let metered = Metered::new(store);
        let upstream = metered.counts();
        let cache = SecretCache::with_clock(
            Arc::new(metered),
            CachePolicy {
                ttl: secrets.cache_ttl,
                max_stale: secrets.max_stale,
                refresh_ahead: secrets.refresh_ahead,
                max_entries: secrets.cache_max_entries.get(),
            },
            clock.clone(),
        );
        let audit = AuditLog::open(config.audit.file.as_deref(), config.audit.to_tracing).map_err(
            |source| Error::Audit {
                file: config.audit.file.clone().unwrap_or_default(),
                source,
            },
        )?;
        let keyward = Self {
            sandbox: Sandbox::new(config.sandbox.clone())?,
            cache,
            audit: Arc::new(audit),
            started_with: config.clone(),
            discovered,
            upstream,
            clock,
            slots: RwLock::default(),
            live: RwLock::new(secrets),
        };
        // Components load on first use (or `preload`), not here.
        let (slots, secrets) = keyward.new_slots(&config);
        *keyward.slots.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(slots);
        *keyward.live.write().unwrap_or_else(|p| p.into_inner()) = secrets;
        Ok(keyward)
    }

    /// Swaps in the connectors and policies of `config` (namespace,
    /// connectors, allowlists, fields, components, rate limits, the
    /// invalidate interval) without a restart. Renders under way finish
    /// under the policy they started with. A configuration that changes a
    /// setting that takes effect only at start-up (backend, cache, identity,
    /// audit, sandbox) is refused whole, naming each such setting.
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
        let (slots, secrets) = self.new_slots(config);
        for (id, slot) in slots.iter() {
            self.load_slot(id, slot).await?;
        }
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(slots);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = secrets;
        Ok(())
    }

    /// The slots `config` describes, reusing the current ones' loaded
    /// components and cached state where they are unchanged, and the
    /// live settings that go with them.
    fn new_slots(&self, config: &Config) -> (BTreeMap<String, Arc<Slot>>, SecretsConfig) {
        let secrets = config.secrets.clone();
        let identity = secrets.identity(&self.discovered);
        let previous = self.live.read().unwrap_or_else(|p| p.into_inner()).clone();
        // A changed rate limit takes effect with a new bucket per connector;
        // an unchanged one keeps each connector's tokens.
        let same_rate = previous.connector_fetch_rate == secrets.connector_fetch_rate
            && previous.connector_fetch_burst == secrets.connector_fetch_burst;
        let bucket = || {
            Arc::new(TokenBucket::with_clock(
                secrets.connector_fetch_rate,
                secrets.connector_fetch_burst,
                self.clock.clone(),
            ))
        };
        let current = self.current();
        let slots: BTreeMap<String, Arc<Slot>> = config
            .connectors
            .iter()
            .map(|(id, c)| {
                let policy = Arc::new(ConnectorPolicy::of(c, &secrets.namespace, &identity));
                for refused in policy.refused_references(c) {
                    tracing::warn!("{refused}");
                }
                let fields = configured_fields(c);
                let slot = match current.get(id) {
                    Some(old) => {
                        let secrets = Arc::new(old.secrets.with_policy(
                            policy,
                            (!same_rate).then(bucket),
                            secrets.invalidate_interval,
                        ));
                        let loaded = if old.config.component == c.component
                            && old.config.limits == c.limits
                        {
                            // Idle instances that revealed what the new
                            // policy no longer grants are dropped now.
                            if let Some(loaded) = old.loaded.get() {
                                loaded.discard_revoked(&secrets);
                            }
                            old.loaded.clone()
                        } else {
                            Arc::default()
                        };
                        Slot {
                            config: c.clone(),
                            fields,
                            secrets,
                            loaded,
                        }
                    }
                    None => Slot {
                        config: c.clone(),
                        fields,
                        secrets: Arc::new(ConnectorSecrets::new(
                            id,
                            policy,
                            self.cache.clone(),
                            self.audit.clone(),
                            bucket(),
                            secrets.invalidate_interval,
                        )),
                        loaded: Arc::default(),
                    },
                };
                (id.clone(), Arc::new(slot))
            })
            .collect();
        (slots, secrets)
    }

    fn current(&self) -> Slots {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the host has done since it started, for metrics: cache hits,
    /// misses and stale serves, calls that reached the backend by operation
    /// and outcome, and policy decisions by kind. Never a name or a value.
    pub fn stats(&self) -> Stats {
        Stats {
            cache: self.cache.stats(),
            upstream: self.upstream.snapshot(),
            decisions: self.audit.decisions(),
            render_paths: self.sandbox.render_paths(),
            render_plans: self.sandbox.plan_counts(),
            recorded_wasi_reads: self.sandbox.recorded_wasi_reads(),
        }
    }

    /// The shared secret cache (for operators' invalidation).
    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    /// The sandbox connectors run in.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Compiles every configured connector now.
    pub async fn preload(&self) -> Result<(), Error> {
        for id in self.connector_ids() {
            self.loaded(&id).await?;
        }
        Ok(())
    }

    /// Ok if a connector with this id is configured, else the error that
    /// lists the ids there are.
    pub fn require_connector(&self, id: &str) -> Result<(), Error> {
        self.slot(id).map(drop)
    }

    /// The configured connector ids.
    pub fn connector_ids(&self) -> Vec<String> {
        self.current().keys().cloned().collect()
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, Error> {
        // The lookup happens under the read lock, so a render clones one
        // `Arc` (the slot), not the whole map's.
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = slots.keys().map(String::as_str).collect();
            Error::UnknownConnector(if known.is_empty() {
                format!("unknown connector `{id}`: the configuration defines none")
            } else {
                format!("unknown connector `{id}`; configured: {}", known.join(", "))
            })
        })
    }

    async fn loaded(&self, id: &str) -> Result<(Arc<Slot>, Arc<LoadedConnector>), Error> {
        let slot = self.slot(id)?;
        let loaded = self.load_slot(id, &slot).await?;
        Ok((slot, loaded))
    }

    /// The slot's connector, loaded and compiled on first use (on a
    /// blocking thread: compiling takes a while).
    async fn load_slot(&self, id: &str, slot: &Slot) -> Result<Arc<LoadedConnector>, Error> {
        let loaded = slot
            .loaded
            .get_or_try_init(|| async {
                let path = slot.config.component.clone();
                let limits = slot.config.limits.clone();
                let connector = id.to_string();
                let sandbox = self.sandbox.clone();
                tokio::task::spawn_blocking(move || {
                    sandbox
                        .load_limited(&path, &connector, &limits)
                        .map(Arc::new)
                })
                .await
                .unwrap_or_else(|e| Err(LoadError::File(format!("loading stopped: {e}"))))
                .map_err(|error| Error::Load {
                    connector: id.to_string(),
                    path: slot.config.component.clone(),
                    error,
                })
            })
            .await?
            .clone();
        Ok(loaded)
    }

    /// Instantiates up to `count` idle instances of a connector now (warm
    /// mode; capped by `warm_instances`). Returns how many are idle.
    pub async fn prewarm(&self, id: &str, count: usize) -> Result<usize, Error> {
        let (_, loaded) = self.loaded(id).await?;
        loaded.prewarm(count).await.map_err(|error| Error::Run {
            connector: id.to_string(),
            error,
        })
    }

    /// A connector's secrets view under the current policy: what an
    /// embedder that runs the component in its own store hands
    /// [`crate::KeywardCtx::begin_render`].
    pub fn connector_secrets(&self, id: &str) -> Result<Arc<ConnectorSecrets>, Error> {
        Ok(self.slot(id)?.secrets.clone())
    }

    /// A connector's sandbox bounds: the sandbox's, with its own where
    /// it sets them.
    pub(crate) fn connector_limits(&self, id: &str) -> Result<Arc<SandboxConfig>, Error> {
        let slot = self.slot(id)?;
        Ok(Arc::new(
            self.started_with
                .sandbox
                .for_connector(id, &slot.config.limits),
        ))
    }

    /// The sandbox's bounds.
    pub(crate) fn sandbox_limits(&self) -> &SandboxConfig {
        &self.started_with.sandbox
    }

    /// A connector's component file.
    pub(crate) fn component_path(&self, id: &str) -> Result<PathBuf, Error> {
        Ok(self.slot(id)?.config.component.clone())
    }

    /// A connector's configured fields.
    pub(crate) fn configured_fields(&self, id: &str) -> Result<Arc<[(String, String)]>, Error> {
        Ok(self.slot(id)?.fields.clone())
    }

    /// A connector's declaration (its `describe`, called once and kept).
    pub async fn describe(&self, id: &str) -> Result<ConnectorInfo, Error> {
        let (_, loaded) = self.loaded(id).await?;
        loaded.describe().await.map_err(|error| Error::Run {
            connector: id.to_string(),
            error,
        })
    }

    /// Renders a connector with the fields from its configuration.
    pub async fn render(&self, id: &str) -> Result<Rendered, Error> {
        let fields = self.slot(id)?.fields.clone();
        self.render_fields(id, &fields).await
    }

    /// Renders a connector with the given (field, template) pairs.
    pub async fn render_fields(
        &self,
        id: &str,
        fields: &[(String, String)],
    ) -> Result<Rendered, Error> {
        let (slot, loaded) = self.loaded(id).await?;
        let values = loaded
            .render(slot.secrets.clone(), fields)
            .await
            .map_err(|error| Error::Run {
                connector: id.to_string(),
                error,
            })?;
        Ok(Rendered {
            connector: id.to_string(),
            values,
        })
    }

    /// Resolves references as the connector would, under its policy (for
    /// `keyward check` and for platforms that resolve without a component).
    pub async fn resolve(
        &self,
        id: &str,
        requests: &[SecretRequest],
    ) -> Result<Vec<Result<SecretValue, ResolveError>>, Error> {
        Ok(self.slot(id)?.secrets.get_many(requests).await)
    }

    /// Drops the cached copy of a secret after the platform saw the
    /// connector's credentials rejected; rate-limited per connector and secret.
    pub async fn invalidate(
        &self,
        id: &str,
        request: &SecretRequest,
    ) -> Result<Invalidation, Error> {
        Ok(self.slot(id)?.secrets.invalidate(request).await)
    }

    /// Lists the namespace in the backend: proves credentials, region,
    /// endpoint and namespace work. Returns how many secrets it holds.
    ///
    /// The listing is the cache's, shared with the connectors' (one
    /// upstream listing per TTL), so checking often does not drive calls
    /// to the backend.
    pub async fn check_backend(&self) -> Result<usize, Error> {
        let namespace = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .namespace
            .clone();
        let mut waited = std::time::Duration::ZERO;
        self.cache
            .list(
                namespace.as_str(),
                &crate::ratelimit::Unlimited,
                &mut waited,
            )
            .await
            .map(|names| names.len())
            .map_err(|e| Error::Backend(e.to_string()))
    }

    /// References in the connector's configured templates that its
    /// current policy refuses.
    pub fn refused_references(&self, id: &str) -> Vec<RefusedReference> {
        self.slot(id).map_or_else(
            |_| Vec::new(),
            |slot| slot.secrets.policy().refused_references(&slot.config),
        )
    }

    /// The secret names this connector may use that exist in the backend.
    pub async fn references(&self, id: &str) -> Result<Vec<String>, Error> {
        self.slot(id)?
            .secrets
            .list()
            .await
            .map_err(|e| Error::Backend(e.to_string()))
    }

    /// [`Keyward::references`] as references the connector may resolve:
    /// a secret its allowlist limits to keys comes once per key.
    pub async fn allowed_references(&self, id: &str) -> Result<Vec<SecretRequest>, Error> {
        self.slot(id)?
            .secrets
            .allowed_references()
            .await
            .map_err(|e| Error::Backend(e.to_string()))
    }
}
