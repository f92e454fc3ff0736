//! The seam between keyward and wherever secrets live.
//!
//! A [`SecretStore`] fetches one version of one secret by canonical name and
//! lists names under a prefix. It knows nothing of templates, namespaces or
//! allowlists: those are applied before a store is asked anything.

pub mod aws;
pub mod file;
pub mod metered;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::name::{SecretName, VersionSelector};
use crate::value::SecretValue;

/// A boxed future, so that stores can be used as `dyn SecretStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a store is asked for: one version of one secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKey {
    /// The canonical name (policy was decided on it).
    pub name: SecretName,
    /// The complete ARN the reference wrote, if it wrote one: a store that
    /// knows ARNs fetches by it, so that only the secret it named is read.
    pub arn: Option<Arc<str>>,
    /// Which version.
    pub version: VersionSelector,
}

impl SecretKey {
    /// The current version of a secret, by name.
    pub fn current(name: SecretName) -> Self {
        Self::new(name, VersionSelector::Stage(crate::name::AWSCURRENT.into()))
    }

    /// A version of a secret, by name.
    pub fn new(name: SecretName, version: VersionSelector) -> Self {
        Self {
            name,
            arn: None,
            version,
        }
    }
}

/// One version of a secret, as fetched.
#[derive(Clone)]
pub struct FetchedSecret {
    /// The version id the store served.
    pub version_id: String,
    /// The staging labels that version carries.
    pub stages: Vec<String>,
    /// The value.
    pub value: SecretValue,
}

impl fmt::Debug for FetchedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedSecret")
            .field("version_id", &self.version_id)
            .field("stages", &self.stages)
            .field("value", &self.value)
            .finish()
    }
}

/// Why a fetch failed. Messages never hold values.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// No such secret, or no such version or stage.
    #[error("not found")]
    NotFound,
    /// The backend refused access.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The secret exists but cannot be served, and retrying will not help
    /// (it is scheduled for deletion).
    #[error("{0}")]
    Gone(String),
    /// The backend failed or could not be reached; a retry may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether a cached value may be served in place of this failure.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A backend that holds secrets.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// Fetches one version of one secret.
    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>>;

    /// Fetches several versions, results in the order of `keys`. Backends
    /// with a batch API override this; the default fetches one at a time.
    fn fetch_many<'a>(
        &'a self,
        keys: &'a [SecretKey],
    ) -> BoxFuture<'a, Vec<Result<FetchedSecret, StoreError>>> {
        Box::pin(
            async move { futures::future::join_all(keys.iter().map(|key| self.fetch(key))).await },
        )
    }

    /// Lists the names that start with `prefix`, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Where this backend is, as far as it found out itself (the AWS
    /// backend's region from the SDK's default chain, say): the host fills
    /// in what the configuration leaves open, and never writes it back.
    fn identity(&self) -> StoreIdentity {
        StoreIdentity::default()
    }
}

/// The commercial AWS partition: what ARNs name unless a backend or the
/// configuration says otherwise.
pub const AWS_PARTITION: &str = "aws";

/// What a backend knows of where it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreIdentity {
    /// Its region.
    pub region: Option<String>,
    /// Its account id.
    pub account_id: Option<String>,
    /// Its partition (`aws`, `aws-cn`, ...).
    pub partition: Option<String>,
}
