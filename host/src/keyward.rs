//! The host as an embedding platform uses it: configuration in, rendered
//! connections out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::cache::{CachePolicy, SecretCache};
use crate::config::{Backend, Config, ConfigError, ConnectorConfig};
use crate::name::Namespace;
use crate::resolve::{ConnectorSecrets, Invalidation, ResolveError, SecretRequest};
use crate::sandbox::{LoadedConnector, MASK, RenderedValue, RunError, Sandbox};
use crate::store::SecretStore;
use crate::store::aws::AwsStore;
use crate::store::file::FileStore;
use crate::value::SecretValue;

/// Everything that can go wrong, each naming where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secrets backend could not be opened.
    #[error("secrets backend: {0}")]
    Backend(String),
    /// wasmtime could not be set up.
    #[error("{0}")]
    Engine(String),
    /// No connector with this id.
    #[error("{0}")]
    UnknownConnector(String),
    /// A component could not be loaded.
    #[error("connector `{connector}`: {path}: {message}")]
    Load {
        /// Connector id.
        connector: String,
        /// Component file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The connector could not render.
    #[error("connector `{connector}`: {error}")]
    Run {
        /// Connector id.
        connector: String,
        /// What failed (part of this error's message, not a separate cause).
        error: RunError,
    },
}

/// A rendered connection.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The connector id.
    pub connector: String,
    /// Outputs in the connector's order.
    pub values: Vec<RenderedValue>,
}

impl Rendered {
    /// The value of one output.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }

    /// `{"name": "value", ...}`; sensitive values are `****` unless `reveal`.
    pub fn to_json(&self, reveal: bool) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|v| {
                let shown = if v.sensitive && !reveal {
                    MASK
                } else {
                    v.value.as_str()
                };
                (v.name.clone(), serde_json::Value::String(shown.to_string()))
            })
            .collect();
        serde_json::to_string_pretty(&map).unwrap_or_default()
    }
}

/// One configured connector: policy and its lazily compiled component.
#[derive(Debug)]
struct Slot {
    config: ConnectorConfig,
    secrets: ConnectorSecrets,
    loaded: OnceCell<LoadedConnector>,
}

/// A keyward host: one sandbox, one cache, the configured connectors.
#[derive(Debug)]
pub struct Keyward {
    sandbox: Sandbox,
    cache: SecretCache,
    namespace: Namespace,
    connectors: BTreeMap<String, Arc<Slot>>,
}

impl Keyward {
    /// Opens the backend and sets up the sandbox. Components are compiled on
    /// first use (or all at once with [`Keyward::preload`]).
    pub async fn new(mut config: Config) -> Result<Self, Error> {
        let store: Arc<dyn SecretStore> = match &config.secrets.backend {
            Backend::File { path } => {
                Arc::new(FileStore::open(path).map_err(|e| Error::Backend(e.to_string()))?)
            }
            Backend::Aws(settings) => {
                let store = AwsStore::connect(settings).await;
                if config.secrets.identity.region.is_none() {
                    config.secrets.identity.region = store.region().map(str::to_string);
                }
                Arc::new(store)
            }
        };
        Self::with_store(config, store)
    }

    /// Like [`Keyward::new`] with a backend of the caller's choosing.
    pub fn with_store(config: Config, store: Arc<dyn SecretStore>) -> Result<Self, Error> {
        let secrets = &config.secrets;
        let cache = SecretCache::new(
            store,
            CachePolicy {
                ttl: secrets.cache_ttl,
                max_stale: secrets.max_stale,
                refresh_ahead: secrets.refresh_ahead,
                max_entries: secrets.cache_max_entries.get(),
            },
        );
        let sandbox = Sandbox::new().map_err(Error::Engine)?;
        let connectors = config
            .connectors
            .iter()
            .map(|(id, c)| {
                let secrets = ConnectorSecrets::new(
                    id,
                    c.allow.clone(),
                    config.secrets.namespace.clone(),
                    config.secrets.identity.clone(),
                    cache.clone(),
                    config.secrets.invalidate_interval,
                );
                let slot = Slot {
                    config: c.clone(),
                    secrets,
                    loaded: OnceCell::new(),
                };
                (id.clone(), Arc::new(slot))
            })
            .collect();
        Ok(Self {
            sandbox,
            cache,
            namespace: config.secrets.namespace.clone(),
            connectors,
        })
    }

    /// The shared secret cache (for operators' invalidation).
    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    /// Compiles every configured connector now.
    pub async fn preload(&self) -> Result<(), Error> {
        for id in self.connectors.keys() {
            self.loaded(id).await?;
        }
        Ok(())
    }

    fn slot(&self, id: &str) -> Result<&Arc<Slot>, Error> {
        self.connectors.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.connectors.keys().map(String::as_str).collect();
            Error::UnknownConnector(if known.is_empty() {
                format!("unknown connector `{id}`: the configuration defines none")
            } else {
                format!("unknown connector `{id}`; configured: {}", known.join(", "))
            })
        })
    }

    async fn loaded(&self, id: &str) -> Result<(&Arc<Slot>, &LoadedConnector), Error> {
        let slot = self.slot(id)?;
        let loaded = slot
            .loaded
            .get_or_try_init(|| async {
                let path = slot.config.component.clone();
                let sandbox = self.sandbox.clone();
                tokio::task::spawn_blocking(move || sandbox.load(&path))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|message| Error::Load {
                        connector: id.to_string(),
                        path: slot.config.component.clone(),
                        message,
                    })
            })
            .await?;
        Ok((slot, loaded))
    }

    /// Renders a connector with the fields from its configuration.
    pub async fn render(&self, id: &str) -> Result<Rendered, Error> {
        let fields: Vec<(String, String)> =
            self.slot(id)?.config.fields.clone().into_iter().collect();
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
    pub async fn check_backend(&self) -> Result<usize, Error> {
        self.cache
            .store()
            .list(self.namespace.as_str())
            .await
            .map(|names| names.len())
            .map_err(|e| Error::Backend(e.to_string()))
    }

    /// The configured connector ids.
    pub fn connector_ids(&self) -> impl Iterator<Item = &str> {
        self.connectors.keys().map(String::as_str)
    }

    /// The secret names this connector may use that exist in the backend.
    pub async fn references(&self, id: &str) -> Result<Vec<String>, Error> {
        self.slot(id)?
            .secrets
            .list()
            .await
            .map_err(|e| Error::Backend(e.to_string()))
    }
}
