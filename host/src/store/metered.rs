//! A store that counts the calls that reach the backend, by operation and
//! outcome (for metrics): what the cache's coalescing and batching save is
//! visible in these numbers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{BoxFuture, FetchedSecret, SecretKey, SecretStore, StoreError, StoreIdentity};

/// Counts by (operation, outcome).
type Counts = Mutex<BTreeMap<(&'static str, &'static str), u64>>;

/// Another store, its calls counted.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn SecretStore>,
    counts: Arc<Counts>,
}

impl Metered {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn SecretStore>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// A handle on the counts that outlives the store's owner.
    pub fn counts(&self) -> UpstreamCounts {
        UpstreamCounts(self.counts.clone())
    }
}

/// The upstream calls counted by a [`Metered`] store.
#[derive(Clone, Debug, Default)]
pub struct UpstreamCounts(Arc<Counts>);

impl UpstreamCounts {
    /// (operation, outcome, count), sorted.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((operation, outcome), n)| (*operation, *outcome, *n))
            .collect()
    }
}

fn outcome<T>(result: &Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StoreError::NotFound) => "not_found",
        Err(StoreError::AccessDenied(_)) => "access_denied",
        Err(StoreError::Gone(_)) => "gone",
        Err(StoreError::Unavailable(_)) => "unavailable",
    }
}

impl Metered {
    fn count(&self, operation: &'static str, outcome: &'static str, n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((operation, outcome))
            .or_default() += n;
    }
}

impl SecretStore for Metered {
    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        Box::pin(async move {
            let result = self.inner.fetch(key).await;
            self.count("fetch", outcome(&result), 1);
            result
        })
    }

    fn fetch_many<'a>(
        &'a self,
        keys: &'a [SecretKey],
    ) -> BoxFuture<'a, Vec<Result<FetchedSecret, StoreError>>> {
        Box::pin(async move {
            let results = self.inner.fetch_many(keys).await;
            for result in &results {
                self.count("fetch_many", outcome(result), 1);
            }
            results
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let result = self.inner.list(prefix).await;
            self.count("list", outcome(&result), 1);
            result
        })
    }

    fn identity(&self) -> StoreIdentity {
        self.inner.identity()
    }
}
