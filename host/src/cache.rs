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
//! - Listings are cached for the TTL too, one upstream listing at a time,
//!   and a listing that goes upstream costs the caller's budget like a fetch.
//! - Every read reports how long it waited on the backend, so a render's
//!   deadline can count all other host work against the connector.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::clock::{Clock, SystemClock};
use crate::name::SecretName;
use crate::ratelimit::{FetchBudget, RATE_LIMITED, Unlimited};
use crate::store::{FetchedSecret, SecretKey, SecretStore, StoreError};
use crate::value::ParsedSecret;

/// A cache key: one version of one secret; shared, so a render's keys are
/// built once per reference and cloned without copying the name.
pub type CacheKey = Arc<SecretKey>;

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
    /// The staging labels the version carried when it was fetched.
    pub stages: Vec<String>,
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
    fn new(fetched: FetchedSecret, fetched_at: Instant) -> Self {
        Self {
            version_id: fetched.version_id,
            stages: fetched.stages,
            secret: ParsedSecret::new(fetched.value),
            fetched_at,
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

/// A listing of the names under one prefix, as last fetched.
struct Listing {
    names: Arc<Vec<String>>,
    fetched_at: Instant,
}

/// Counters for operators and tests.
#[derive(Debug, Default)]
struct Counters {
    stale_served: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache has done since it started (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served fresh from the cache.
    pub hits: u64,
    /// Reads that went upstream (or joined a fetch under way).
    pub misses: u64,
    /// Reads served stale because the backend failed.
    pub stale_served: u64,
}

struct Inner {
    store: Arc<dyn SecretStore>,
    /// Keyed by a per-process seed (foldhash): names come from configured
    /// templates and guests' `invalidate` calls, so they are not trusted
    /// not to collide by design.
    entries: moka::future::Cache<CacheKey, Arc<CachedVersion>, foldhash::fast::RandomState>,
    in_flight: Mutex<HashMap<CacheKey, InFlight>>,
    /// Listings by prefix; the lock is held across the upstream call, so
    /// concurrent listings of one host share one.
    listings: tokio::sync::Mutex<HashMap<String, Listing>>,
    policy: CachePolicy,
    clock: Arc<dyn Clock>,
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
    /// A cache in front of `store`, on the real clock.
    pub fn new(store: Arc<dyn SecretStore>, policy: CachePolicy) -> Self {
        Self::with_clock(store, policy, Arc::new(SystemClock))
    }

    /// A cache in front of `store` whose freshness is read from `clock`.
    pub fn with_clock(
        store: Arc<dyn SecretStore>,
        policy: CachePolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // moka only bounds memory; freshness is decided here. An entry is
        // useless once it is too old even to be served stale.
        let entries = moka::future::Cache::builder()
            .max_capacity(policy.max_entries)
            .time_to_live(policy.ttl.saturating_add(policy.max_stale))
            .support_invalidation_closures()
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            inner: Arc::new(Inner {
                store,
                entries,
                in_flight: Mutex::new(HashMap::new()),
                listings: tokio::sync::Mutex::default(),
                policy,
                clock,
                counters: Counters::default(),
            }),
        }
    }

    /// The backend behind the cache.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.inner.store
    }

    /// The current instant on the cache's clock (which the rate limits of
    /// the same host read too).
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// How many reads were served stale because the backend failed.
    pub fn stale_served(&self) -> u64 {
        self.inner.counters.stale_served.load(Ordering::Relaxed)
    }

    /// Hits, misses and stale serves so far.
    pub fn stats(&self) -> CacheStats {
        let counters = &self.inner.counters;
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            stale_served: counters.stale_served.load(Ordering::Relaxed),
        }
    }

    /// One version of one secret, for the operator (no budget).
    pub async fn get(&self, key: SecretKey) -> CacheRead {
        let mut waited = Duration::ZERO;
        self.get_many(&[Arc::new(key)], &Unlimited, &mut waited)
            .await
            .pop()
            .unwrap_or(Err(StoreError::Unavailable("no result".into())))
    }

    /// Several keys at once, results in order; the misses are fetched
    /// together. A fetch the budget refuses fails like a transient error
    /// (so a cached value is served stale) without going upstream. Time
    /// spent waiting on the backend is added to `waited`.
    pub async fn get_many(
        &self,
        keys: &[CacheKey],
        budget: &dyn FetchBudget,
        waited: &mut Duration,
    ) -> Vec<CacheRead> {
        let policy = &self.inner.policy;
        let mut cached: Vec<Option<Arc<CachedVersion>>> = Vec::with_capacity(keys.len());
        let mut to_fetch: Vec<CacheKey> = Vec::new();
        let now = self.inner.clock.now();
        for key in keys {
            let entry = self.inner.entries.get(key).await;
            match &entry {
                Some(e) if now.saturating_duration_since(e.fetched_at) < policy.ttl => {
                    self.maybe_refresh_ahead(key, e, now, budget)
                }
                _ => to_fetch.push(key.clone()),
            }
            cached.push(entry);
        }
        let counters = &self.inner.counters;
        counters
            .hits
            .fetch_add((keys.len() - to_fetch.len()) as u64, Ordering::Relaxed);
        counters
            .misses
            .fetch_add(to_fetch.len() as u64, Ordering::Relaxed);
        let fetched: HashMap<CacheKey, FetchResult> = if to_fetch.is_empty() {
            HashMap::new()
        } else {
            // Only this await waits on the backend (or on a fetch of
            // another reader's); the clock is read only on a miss.
            let started = Instant::now();
            let results = futures::future::join_all(self.fetch(&to_fetch, budget)).await;
            *waited += started.elapsed();
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
        match (result, entry) {
            (Ok(fresh), _) => Ok((fresh, CacheStatus::Miss)),
            (Err(e), Some(stale)) if e.is_transient() && self.may_serve_stale(stale.fetched_at) => {
                self.inner
                    .counters
                    .stale_served
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(secret = %key.name, "serving a stale value: {e}");
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

    /// Whether something fetched at `fetched_at` may still stand in for a
    /// refresh that failed transiently: up to `max_stale` past its TTL.
    fn may_serve_stale(&self, fetched_at: Instant) -> bool {
        let policy = &self.inner.policy;
        self.inner.clock.now().saturating_duration_since(fetched_at) < policy.ttl + policy.max_stale
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
            let batch_keys: Vec<SecretKey> = new_keys.iter().map(|k| (**k).clone()).collect();
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
                            let version =
                                Arc::new(CachedVersion::new(fetched.clone(), inner.clock.now()));
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

    /// Starts a background refresh of a hit close to expiry, once, if the
    /// reader's budget allows one more upstream call.
    fn maybe_refresh_ahead(
        &self,
        key: &CacheKey,
        entry: &Arc<CachedVersion>,
        now: Instant,
        budget: &dyn FetchBudget,
    ) {
        let Some(ahead) = self.inner.policy.refresh_ahead else {
            return;
        };
        if now.saturating_duration_since(entry.fetched_at) + ahead < self.inner.policy.ttl
            || entry.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        let fetches = self.fetch(std::slice::from_ref(key), budget);
        let entry = entry.clone();
        let name = key.name.clone();
        runtime.spawn(async move {
            for fetch in fetches {
                if let Err(e) = fetch.await {
                    tracing::warn!(secret = %name, "refresh-ahead failed: {e}");
                    entry.refreshing.store(false, Ordering::Release);
                }
            }
        });
    }

    /// The names under `prefix`, from a listing at most one TTL old. A
    /// listing that goes upstream costs one unit of `budget`; refused, or
    /// failing transiently, a listing up to `max_stale` past its TTL is
    /// served instead. Time waiting on the backend is added to `waited`.
    pub async fn list(
        &self,
        prefix: &str,
        budget: &dyn FetchBudget,
        waited: &mut Duration,
    ) -> Result<Arc<Vec<String>>, StoreError> {
        let started = Instant::now();
        let mut listings = self.inner.listings.lock().await;
        *waited += started.elapsed();
        let now = self.inner.clock.now();
        let fresh =
            |l: &&Listing| now.saturating_duration_since(l.fetched_at) < self.inner.policy.ttl;
        if let Some(listing) = listings.get(prefix).filter(fresh) {
            return Ok(listing.names.clone());
        }
        let result = if budget.try_acquire() {
            let started = Instant::now();
            let result = self.inner.store.list(prefix).await;
            *waited += started.elapsed();
            result
        } else {
            Err(StoreError::Unavailable(RATE_LIMITED.into()))
        };
        match result {
            Ok(names) => {
                let names = Arc::new(names);
                listings.insert(
                    prefix.to_string(),
                    Listing {
                        names: names.clone(),
                        fetched_at: self.inner.clock.now(),
                    },
                );
                Ok(names)
            }
            Err(e) if e.is_transient() => match listings.get(prefix) {
                Some(stale) if self.may_serve_stale(stale.fetched_at) => Ok(stale.names.clone()),
                _ => Err(e),
            },
            Err(e) => {
                listings.remove(prefix);
                Err(e)
            }
        }
    }

    /// Forgets every listing, so the next one goes upstream.
    pub async fn invalidate_listings(&self) {
        self.inner.listings.lock().await.clear();
    }

    /// Drops every cached version of `name`, so the next read fetches.
    pub async fn invalidate(&self, name: &SecretName) {
        let name = name.clone();
        if let Err(e) = self
            .inner
            .entries
            .invalidate_entries_if(move |key, _| key.name == name)
        {
            // Only possible if the cache was built without closure support.
            tracing::error!("cannot invalidate: {e}");
            self.inner.entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cache's semantics on a manual clock, with a store that is told
    //! what to answer: no real time, no real backend (the moto tests in
    //! `tests/aws.rs` cover the real one).

    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::clock::ManualClock;
    use crate::ratelimit::{FetchBudget, TokenBucket};
    use crate::store::{BoxFuture, FetchedSecret};

    /// A store that serves `value` (version `v<fetches>`) or fails as told.
    #[derive(Debug, Default)]
    struct Scripted {
        fetches: AtomicUsize,
        failing: Mutex<Option<StoreError>>,
    }

    impl Scripted {
        fn fail_with(&self, error: Option<StoreError>) {
            *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = error;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl SecretStore for Scripted {
        fn fetch<'a>(
            &'a self,
            _: &'a SecretKey,
        ) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
            Box::pin(async move {
                let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(e) = self
                    .failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                {
                    return Err(e);
                }
                Ok(FetchedSecret {
                    version_id: format!("v{n}"),
                    stages: vec!["AWSCURRENT".into()],
                    value: crate::value::SecretValue::Text(format!("value-{n}").into()),
                })
            })
        }

        fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    const TTL: Duration = Duration::from_secs(60);
    const MAX_STALE: Duration = Duration::from_secs(600);

    fn cache(refresh_ahead: Option<Duration>) -> (SecretCache, Arc<Scripted>, Arc<ManualClock>) {
        let store = Arc::new(Scripted::default());
        let clock = Arc::new(ManualClock::new());
        let cache = SecretCache::with_clock(
            store.clone(),
            CachePolicy {
                ttl: TTL,
                max_stale: MAX_STALE,
                refresh_ahead,
                max_entries: 100,
            },
            clock.clone(),
        );
        (cache, store, clock)
    }

    fn key() -> SecretKey {
        SecretKey::current(SecretName::new("acme/db").expect("name"))
    }

    async fn read(cache: &SecretCache) -> Result<(String, CacheStatus), StoreError> {
        cache
            .get(key())
            .await
            .map(|(version, status)| (version.version_id.clone(), status))
    }

    #[tokio::test]
    async fn a_version_is_served_for_the_ttl_then_fetched_again() {
        let (cache, store, clock) = cache(None);
        assert_eq!(
            read(&cache).await.unwrap(),
            ("v1".into(), CacheStatus::Miss)
        );
        clock.advance(TTL - Duration::from_millis(1));
        assert_eq!(read(&cache).await.unwrap(), ("v1".into(), CacheStatus::Hit));
        assert_eq!(store.fetches(), 1, "within the TTL nothing goes upstream");
        clock.advance(Duration::from_millis(1));
        assert_eq!(
            read(&cache).await.unwrap(),
            ("v2".into(), CacheStatus::Miss)
        );
        assert_eq!(store.fetches(), 2);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 2));
    }

    #[tokio::test]
    async fn a_failing_backend_is_answered_stale_until_max_stale_then_with_its_error() {
        let (cache, store, clock) = cache(None);
        read(&cache).await.unwrap();
        store.fail_with(Some(StoreError::Unavailable("down".into())));
        clock.advance(TTL + MAX_STALE - Duration::from_millis(1));
        assert_eq!(
            read(&cache).await.unwrap(),
            ("v1".into(), CacheStatus::Stale)
        );
        assert_eq!(cache.stale_served(), 1);
        clock.advance(Duration::from_millis(1));
        assert!(matches!(
            read(&cache).await,
            Err(StoreError::Unavailable(_))
        ));
        // A definite answer is never papered over with a stale copy.
        let (cache, store, clock) = self::cache(None);
        read(&cache).await.unwrap();
        store.fail_with(Some(StoreError::NotFound));
        clock.advance(TTL);
        assert!(matches!(read(&cache).await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn a_hot_secret_is_refreshed_ahead_of_its_expiry_without_a_miss() {
        let (cache, store, clock) = cache(Some(Duration::from_secs(10)));
        read(&cache).await.unwrap();
        clock.advance(TTL - Duration::from_secs(11));
        assert_eq!(read(&cache).await.unwrap().1, CacheStatus::Hit);
        assert_eq!(store.fetches(), 1, "not yet in the refresh window");
        clock.advance(Duration::from_secs(2));
        assert_eq!(read(&cache).await.unwrap(), ("v1".into(), CacheStatus::Hit));
        for _ in 0..1000 {
            if store.fetches() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(store.fetches(), 2, "one refresh in the background");
        // Past the old version's TTL the refreshed one is served, fresh.
        clock.advance(Duration::from_secs(9));
        assert_eq!(read(&cache).await.unwrap(), ("v2".into(), CacheStatus::Hit));
    }

    #[tokio::test]
    async fn a_spent_fetch_budget_serves_the_cached_copy_stale_without_an_upstream_call() {
        let (cache, store, clock) = cache(None);
        read(&cache).await.unwrap();
        // A connector's upstream allowance, spent.
        let bucket = TokenBucket::with_clock(0.0, 1, clock.clone());
        assert!(bucket.try_acquire());
        clock.advance(TTL);
        let mut waited = Duration::ZERO;
        let got = cache
            .get_many(&[Arc::new(key())], &bucket, &mut waited)
            .await
            .pop()
            .expect("one result");
        let (version, status) = got.expect("served stale");
        assert_eq!(
            (version.version_id.as_str(), status),
            ("v1", CacheStatus::Stale)
        );
        assert_eq!(
            store.fetches(),
            1,
            "the budget kept the call from the backend"
        );
    }
}
