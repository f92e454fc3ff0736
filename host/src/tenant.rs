//! A tenant: one customer's backend (its own AWS account, role and
//! region, or a file), namespace, cache and connectors, run in the
//! process's one [`Runtime`] (engine, compile cache, instance pool, audit
//! log). Isolation comes from ownership: a tenant's cache, single-flight
//! table, rate limits and listings are its own, never keyed into a shared
//! one, so no name can collide with another tenant's and a failing backend
//! slows only its own tenant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::OnceCell;

use crate::audit::AuditLog;
use crate::cache::{CachePolicy, CacheStats, SecretCache};
use crate::clock::Clock;
use crate::config::{ConnectorConfig, SecretsConfig};
use crate::contract::{ConnectorInfo, Rendered};
use crate::error::Error;
use crate::policy::{ConnectorPolicy, RefusedReference, SecretRequest};
use crate::ratelimit::TokenBucket;
use crate::resolve::{ConnectorSecrets, Invalidation, ResolveError};
use crate::sandbox::limits::SandboxConfig;
use crate::sandbox::{LoadError, LoadedConnector, Sandbox};
use crate::store::metered::{Metered, UpstreamCounts};
use crate::store::{SecretStore, StoreIdentity};
use crate::value::SecretValue;

/// What every tenant of a process shares: one engine, epoch thread,
/// compile cache and instance pool (a component many tenants use is
/// compiled once), one audit log, one clock and the sandbox's bounds.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) sandbox: Sandbox,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: SandboxConfig,
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

/// One tenant: its backend, cache and connectors.
#[derive(Debug)]
pub struct Tenant {
    id: String,
    runtime: Arc<Runtime>,
    cache: SecretCache,
    /// The `[secrets]` it was opened with: a change to what only opening
    /// takes (backend, cache) opens the tenant anew.
    opened_with: SecretsConfig,
    /// Where the backend found itself to be.
    discovered: StoreIdentity,
    /// The calls that reached the backend.
    upstream: UpstreamCounts,
    slots: RwLock<Slots>,
    /// The `[secrets]` swapped in last.
    live: RwLock<SecretsConfig>,
}

impl Tenant {
    /// Opens a tenant over `store`, its connectors loaded on first use.
    pub(crate) fn open(
        id: &str,
        runtime: Arc<Runtime>,
        secrets: &SecretsConfig,
        connectors: &BTreeMap<String, ConnectorConfig>,
        store: Arc<dyn SecretStore>,
    ) -> Self {
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
            runtime.clock.clone(),
        );
        let tenant = Self {
            id: id.to_string(),
            runtime,
            cache,
            opened_with: secrets.clone(),
            discovered,
            upstream,
            slots: RwLock::default(),
            live: RwLock::new(secrets.clone()),
        };
        let (slots, live) = tenant.new_slots(secrets, connectors);
        *tenant.slots.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(slots);
        *tenant.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        tenant
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `secrets` can be swapped into this tenant (only its live
    /// keys differ), or the tenant must be opened anew.
    pub(crate) fn takes(&self, secrets: &SecretsConfig) -> bool {
        let s = &self.opened_with;
        (
            &s.backend,
            s.cache_ttl,
            s.cache_max_entries,
            s.max_stale,
            s.refresh_ahead,
        ) == (
            &secrets.backend,
            secrets.cache_ttl,
            secrets.cache_max_entries,
            secrets.max_stale,
            secrets.refresh_ahead,
        )
    }

    /// Swaps in connectors and policies once every connector has loaded
    /// (see [`crate::Keyward::update_policy`]).
    pub(crate) async fn update(
        &self,
        secrets: &SecretsConfig,
        connectors: &BTreeMap<String, ConnectorConfig>,
    ) -> Result<(), Error> {
        let (slots, live) = self.new_slots(secrets, connectors);
        for (id, slot) in slots.iter() {
            self.load_slot(id, slot).await?;
        }
        *self.slots.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(slots);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
        Ok(())
    }

    /// Its cache's hits, misses and stale serves.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Its calls that reached the backend: (operation, outcome, count).
    pub fn upstream(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.upstream.snapshot()
    }

    /// Its secret cache (for operators' invalidation).
    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    /// The slots `config` describes, reusing the current ones' loaded
    /// components and cached state where they are unchanged, and the
    /// live settings that go with them.
    fn new_slots(
        &self,
        secrets: &SecretsConfig,
        connectors: &BTreeMap<String, ConnectorConfig>,
    ) -> (BTreeMap<String, Arc<Slot>>, SecretsConfig) {
        let secrets = secrets.clone();
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
                self.runtime.clock.clone(),
            ))
        };
        let current = self.current();
        let slots: BTreeMap<String, Arc<Slot>> = connectors
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
                            &self.id,
                            id,
                            policy,
                            self.cache.clone(),
                            self.runtime.audit.clone(),
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
                let sandbox = self.runtime.sandbox.clone();
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
            self.runtime.limits.for_connector(id, &slot.config.limits),
        ))
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

    /// [`Tenant::references`] as references the connector may resolve:
    /// a secret its allowlist limits to keys comes once per key.
    pub async fn allowed_references(&self, id: &str) -> Result<Vec<SecretRequest>, Error> {
        self.slot(id)?
            .secrets
            .allowed_references()
            .await
            .map_err(|e| Error::Backend(e.to_string()))
    }
}
