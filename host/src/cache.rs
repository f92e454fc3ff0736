//! The secret cache: moka for storage, a single-flight table for fetches.
//!
//! - A version is fresh for the TTL; after that the next read refreshes it.
//! - Concurrent misses for one key share one upstream fetch (single-flight),
//!   and the misses of one read are fetched together, so a backend with a
//!   batch API serves them in one call.
//! - Stale-if-error: when a refresh fails transiently (throttling, 5xx,
//!   timeout) a value already cached is served for up to `max_stale` past
//!   its TTL; on not-found, access denied or deletion it is dropped, so a
//!   revoked permission takes effect within one TTL.
//! - Refresh-ahead (optional): a hit within `refresh_ahead` of expiry starts
//!   a background refresh, so a hot secret never makes a reader wait.
//! - Errors are never cached: a secret created after a miss is seen at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::name::{SecretName, VersionSelector};
use crate::store::{FetchedSecret, SecretStore, StoreError};
use crate::value::ParsedSecret;

/// A cache key: one version selector of one secret.
/// A secret version; shared, so a render's keys are built once per
/// reference and cloned without copying the name.
pub type CacheKey = Arc<(SecretName, VersionSelector)>;

/// Freshness and size settings.
#[derive(Clone, Debug)]
pub struct CachePolicy {
    /// How long a fetched version is served without asking the backend.
    pub ttl: Duration,
    /// How long past the TTL a value may be served while the backend fails.
    pub max_stale: Duration,
    /// Start a background refresh this long before expiry (`None`: off).
    pub refresh_ahead: Option<Duration>,
    /// Bound on cached versions.
    pub max_entries: u64,
}

/// One cached version of a secret.
pub struct CachedVersion {
    /// The version id the store served.
    pub version_id: String,
    /// The value, with its JSON parsed on first use.
    pub secret: ParsedSecret,
    fetched_at: Instant,
    refreshing: AtomicBool,
}

impl fmt::Debug for CachedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedVersion")
            .field("version_id", &self.version_id)
            .field("age", &self.fetched_at.elapsed())
            .finish_non_exhaustive()
    }
}

impl CachedVersion {
    fn new(fetched: FetchedSecret) -> Self {
        Self {
            version_id: fetched.version_id,
            secret: ParsedSecret::new(fetched.value),
            fetched_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        }
    }
}

/// How a read was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// From the cache, fresh.
    Hit,
    /// Fetched from the store (or joined a fetch already under way).
    Miss,
    /// From the cache past its TTL, because the refresh failed transiently.
    Stale,
}

/// The result of one key's read.
pub type CacheRead = Result<(Arc<CachedVersion>, CacheStatus), StoreError>;

type FetchResult = Result<Arc<CachedVersion>, StoreError>;
type InFlight = Shared<BoxFuture<'static, FetchResult>>;

/// Permission to go upstream for one fetch (a per-connector rate limit).
pub trait FetchBudget: Send + Sync {
    /// Whether one more upstream fetch may start now.
    fn try_acquire(&self) -> bool;
}

/// The message of a fetch refused by a [`FetchBudget`].
pub const RATE_LIMITED: &str = "this connector's upstream fetch rate limit is exhausted";

/// Counters for operators and tests.
#[derive(Debug, Default)]
struct Counters {
    stale_served: AtomicU64,
}

struct Inner {
    store: Arc<dyn SecretStore>,
    entries: moka::future::Cache<CacheKey, Arc<CachedVersion>>,
    in_flight: Mutex<HashMap<CacheKey, InFlight>>,
    policy: CachePolicy,
    counters: Counters,
}

/// A cache of secret versions shared by all connectors of a host. Policy is
/// checked before the cache is consulted, so sharing entries across
/// connectors never serves a secret to a connector not allowed to read it.
#[derive(Clone)]
pub struct SecretCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("store", &self.inner.store)
            .field("entries", &self.inner.entries.entry_count())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl SecretCache {
    /// A cache in front of `store`.
    pub fn new(store: Arc<dyn SecretStore>, policy: CachePolicy) -> Self {
        // moka only bounds memory; freshness is decided here. An entry is
        // useless once it is too old even to be served stale.
        let entries = moka::future::Cache::builder()
            .max_capacity(policy.max_entries)
            .time_to_live(policy.ttl.saturating_add(policy.max_stale))
            .support_invalidation_closures()
            .build();
        Self {
            inner: Arc::new(Inner {
                store,
                entries,
                in_flight: Mutex::new(HashMap::new()),
                policy,
                counters: Counters::default(),
            }),
        }
    }

    /// The backend behind the cache.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.inner.store
    }

    /// How many reads were served stale because the backend failed.
    pub fn stale_served(&self) -> u64 {
        self.inner.counters.stale_served.load(Ordering::Relaxed)
    }

    /// One version of one secret.
    pub async fn get(&self, name: &SecretName, version: &VersionSelector) -> CacheRead {
        let key = Arc::new((name.clone(), version.clone()));
        self.get_many(std::slice::from_ref(&key), &crate::ratelimit::Unlimited)
            .await
            .pop()
            .unwrap_or(Err(StoreError::Unavailable("no result".into())))
    }

    /// Several keys at once, results in order; the misses are fetched
    /// together. A fetch the budget refuses fails like a transient error
    /// (so a cached value is served stale) without going upstream.
    pub async fn get_many(&self, keys: &[CacheKey], budget: &dyn FetchBudget) -> Vec<CacheRead> {
        let policy = &self.inner.policy;
        let mut cached: Vec<Option<Arc<CachedVersion>>> = Vec::with_capacity(keys.len());
        let mut to_fetch: Vec<CacheKey> = Vec::new();
        let now = Instant::now();
        for key in keys {
            let entry = self.inner.entries.get(key).await;
            match &entry {
                Some(e) if now.saturating_duration_since(e.fetched_at) < policy.ttl => {
                    self.maybe_refresh_ahead(key, e)
                }
                _ => to_fetch.push(key.clone()),
            }
            cached.push(entry);
        }
        let fetched: HashMap<CacheKey, FetchResult> = if to_fetch.is_empty() {
            HashMap::new()
        } else {
            let results = futures::future::join_all(self.fetch(&to_fetch, budget)).await;
            to_fetch.into_iter().zip(results).collect()
        };

        let mut out = Vec::with_capacity(keys.len());
        for (key, entry) in keys.iter().zip(cached) {
            let fetched = if fetched.is_empty() {
                None
            } else {
                fetched.get(key).cloned()
            };
            let Some(result) = fetched else {
                // Fresh in the cache.
                out.push(match entry {
                    Some(e) => Ok((e, CacheStatus::Hit)),
                    None => Err(StoreError::Unavailable("no result".into())),
                });
                continue;
            };
            out.push(self.settle(key, entry, result).await);
        }
        out
    }

    /// Decides what a read returns after a fetch.
    async fn settle(
        &self,
        key: &CacheKey,
        entry: Option<Arc<CachedVersion>>,
        result: FetchResult,
    ) -> CacheRead {
        let policy = &self.inner.policy;
        match (result, entry) {
            (Ok(fresh), _) => Ok((fresh, CacheStatus::Miss)),
            (Err(e), Some(stale))
                if e.is_transient()
                    && stale.fetched_at.elapsed() < policy.ttl + policy.max_stale =>
            {
                self.inner
                    .counters
                    .stale_served
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(secret = %key.0, "serving a stale value: {e}");
                Ok((stale, CacheStatus::Stale))
            }
            (Err(e), _) => {
                if !e.is_transient() {
                    self.inner.entries.invalidate(key).await;
                }
                Err(e)
            }
        }
    }

    /// Joins fetches under way and starts one (batched) fetch for the rest,
    /// as far as the budget allows: joining a fetch costs nothing, starting
    /// one costs a token.
    fn fetch(&self, keys: &[CacheKey], budget: &dyn FetchBudget) -> Vec<InFlight> {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (new_keys, refused): (Vec<CacheKey>, Vec<CacheKey>) = keys
            .iter()
            .filter(|k| !in_flight.contains_key(*k))
            .cloned()
            .partition(|_| budget.try_acquire());
        if !new_keys.is_empty() {
            let store = self.inner.store.clone();
            let batch_keys: Vec<(SecretName, VersionSelector)> =
                new_keys.iter().map(|k| (**k).clone()).collect();
            let batch = async move { Arc::new(store.fetch_many(&batch_keys).await) }
                .boxed()
                .shared();
            for (index, key) in new_keys.into_iter().enumerate() {
                let batch = batch.clone();
                let inner = self.inner.clone();
                let owned_key = key.clone();
                let one = async move {
                    let results = batch.await;
                    let result = match results.get(index) {
                        Some(Ok(fetched)) => {
                            let version = Arc::new(CachedVersion::new(fetched.clone()));
                            inner
                                .entries
                                .insert(owned_key.clone(), version.clone())
                                .await;
                            Ok(version)
                        }
                        Some(Err(e)) => Err(e.clone()),
                        None => Err(StoreError::Unavailable(
                            "the backend returned too few results".into(),
                        )),
                    };
                    inner
                        .in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&owned_key);
                    result
                }
                .boxed()
                .shared();
                in_flight.insert(key, one);
            }
        }
        let rate_limited: InFlight =
            futures::future::ready(Err(StoreError::Unavailable(RATE_LIMITED.into())))
                .boxed()
                .shared();
        keys.iter()
            .map(|k| match in_flight.get(k) {
                Some(fetch) if !refused.contains(k) => fetch.clone(),
                _ => rate_limited.clone(),
            })
            .collect()
    }

    /// Starts a background refresh of a hit close to expiry, once.
    fn maybe_refresh_ahead(&self, key: &CacheKey, entry: &Arc<CachedVersion>) {
        let Some(ahead) = self.inner.policy.refresh_ahead else {
            return;
        };
        if entry.fetched_at.elapsed() + ahead < self.inner.policy.ttl
            || entry.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        let fetches = self.fetch(std::slice::from_ref(key), &crate::ratelimit::Unlimited);
        let entry = entry.clone();
        let name = key.0.clone();
        runtime.spawn(async move {
            for fetch in fetches {
                if let Err(e) = fetch.await {
                    tracing::warn!(secret = %name, "refresh-ahead failed: {e}");
                    entry.refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    /// Drops every cached version of `name`, so the next read fetches.
    pub async fn invalidate(&self, name: &SecretName) {
        let name = name.clone();
        if let Err(e) = self
            .inner
            .entries
            .invalidate_entries_if(move |key, _| key.0 == name)
        {
            // Only possible if the cache was built without closure support.
            tracing::error!("cannot invalidate: {e}");
            self.inner.entries.invalidate_all();
        }
    }
}
