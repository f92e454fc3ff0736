//! The secret cache: moka in front of a [`SecretStore`].
//!
//! Entries are keyed by canonical name and version selector. Concurrent
//! misses for one key are coalesced by moka into a single upstream fetch;
//! errors are not cached, so a secret created after a miss is seen at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::name::{SecretName, VersionSelector};
use crate::store::{SecretStore, StoreError};
use crate::value::ParsedSecret;

/// One cached version of a secret.
#[derive(Debug)]
pub struct CachedVersion {
    /// The version id the store served.
    pub version_id: String,
    /// The value, with its JSON parsed on first use.
    pub secret: ParsedSecret,
}

/// Whether a read was served from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Fetched from the store (or joined a fetch already under way).
    Miss,
}

type Key = (SecretName, VersionSelector);

/// A cache of secret versions shared by all connectors of a host. Policy is
/// checked before the cache is consulted, so sharing entries across
/// connectors never serves a secret to a connector not allowed to read it.
#[derive(Clone)]
pub struct SecretCache {
    store: Arc<dyn SecretStore>,
    entries: Cache<Key, Arc<CachedVersion>>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("store", &self.store)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl SecretCache {
    /// A cache serving entries for `ttl`, holding at most `max_entries`.
    pub fn new(store: Arc<dyn SecretStore>, ttl: Duration, max_entries: u64) -> Self {
        Self {
            store,
            entries: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_entries)
                .build(),
        }
    }

    /// The backend behind the cache.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    /// One version of a secret, from the cache or the store.
    pub async fn get(
        &self,
        name: &SecretName,
        version: &VersionSelector,
    ) -> Result<(Arc<CachedVersion>, CacheStatus), StoreError> {
        let key = (name.clone(), version.clone());
        let entry = self
            .entries
            .entry(key)
            .or_try_insert_with(async {
                let fetched = self.store.fetch(name, version).await?;
                Ok::<_, StoreError>(Arc::new(CachedVersion {
                    version_id: fetched.version_id,
                    secret: ParsedSecret::new(fetched.value),
                }))
            })
            .await
            .map_err(|e| (*e).clone())?;
        let status = if entry.is_fresh() {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        Ok((entry.into_value(), status))
    }

    /// Drops every cached version of `name`, so the next read fetches.
    pub async fn invalidate(&self, name: &SecretName) {
        let name = name.clone();
        // moka's predicate invalidation needs a builder flag; a scan of the
        // keys is enough for the sizes a host caches.
        for (key, _) in self.entries.iter() {
            if key.0 == name {
                self.entries.invalidate(&*key).await;
            }
        }
    }
}
