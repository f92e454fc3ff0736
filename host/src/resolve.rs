//! Resolving a connector's secret references under policy.
//!
//! Each reference is canonicalized, checked against the connector's
//! allowlist, served from the cache (no upstream request for a denied or
//! invalid one), narrowed to its JSON path, and audited. A denied reference
//! and a missing one give the guest the same error; the audit record says
//! which.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cache::{CacheKey, CacheRead, CacheStatus, SecretCache};
use crate::name::{BackendIdentity, CanonicalRef, Namespace, SecretName, canonicalize};
use crate::policy::Allowlist;
use crate::store::StoreError;
use crate::value::{PathError, SecretValue};

/// Longest reference text quoted in an error or audit record.
const MAX_QUOTED_REFERENCE: usize = 200;

/// A reference as the guest sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRequest {
    /// Relative name or ARN, as written.
    pub name: String,
    /// JSON keys, outermost first.
    pub path: Vec<String>,
    /// Optional staging label.
    pub version_stage: Option<String>,
    /// Optional version id.
    pub version_id: Option<String>,
}

impl SecretRequest {
    /// A reference to a whole secret at its current version.
    pub fn name(name: &str) -> Self {
        Self {
            name: name.into(),
            path: Vec::new(),
            version_stage: None,
            version_id: None,
        }
    }

    /// A reference to a JSON key path in a secret.
    pub fn key(name: &str, path: &[&str]) -> Self {
        Self {
            path: path.iter().map(|s| s.to_string()).collect(),
            ..Self::name(name)
        }
    }
}

/// `name["key"] (stage S)`, bounded and with control characters escaped.
impl fmt::Display for SecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.name.escape_debug().to_string();
        for key in &self.path {
            text.push_str(&format!("[{key:?}]"));
        }
        if let Some(stage) = &self.version_stage {
            text.push_str(&format!(" (stage {})", stage.escape_debug()));
        }
        if let Some(id) = &self.version_id {
            text.push_str(&format!(" (version {})", id.escape_debug()));
        }
        if text.chars().count() > MAX_QUOTED_REFERENCE {
            text = text.chars().take(MAX_QUOTED_REFERENCE).collect::<String>() + "…";
        }
        f.write_str(&text)
    }
}

/// Why one reference did not resolve, as the guest will see it. Never holds
/// a value; `reference` is the display form of the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Missing, or denied: deliberately the same.
    #[error("secret `{reference}` was not found or is not allowed")]
    NotFound {
        /// The reference.
        reference: String,
    },
    /// Malformed reference.
    #[error("invalid secret reference `{reference}`: {detail}")]
    Invalid {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A path into a value that is not a JSON object.
    #[error("secret `{reference}` is not a JSON object")]
    NotJson {
        /// The reference.
        reference: String,
    },
    /// A key of the path is missing.
    #[error("secret `{reference}` has no key {key}")]
    MissingKey {
        /// The reference.
        reference: String,
        /// The key, described with its parents.
        key: String,
    },
    /// The backend failed.
    #[error("secret `{reference}` is unavailable: {detail}")]
    Unavailable {
        /// The reference.
        reference: String,
        /// What failed.
        detail: String,
    },
}

/// The decision recorded for one reference.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "detail")]
enum Decision {
    Allowed(String),
    Denied(String),
    NotFound,
    Invalid(String),
    NotJson,
    MissingKey(String),
    Unavailable(String),
}

/// One audit record; written through `tracing` with target `keyward::audit`.
#[derive(Debug, Serialize)]
struct AuditRecord<'a> {
    connector: &'a str,
    reference: String,
    canonical: Option<&'a str>,
    version_id: Option<&'a str>,
    #[serde(flatten)]
    decision: Decision,
    cache: Option<CacheStatus>,
    latency_us: Option<u128>,
}

impl AuditRecord<'_> {
    fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(json) => tracing::info!(target: "keyward::audit", "{json}"),
            Err(e) => {
                tracing::error!(target: "keyward::audit", "cannot serialize an audit record: {e}")
            }
        }
    }
}

/// What one connector may read, and how: its policy bound to the host's
/// cache. Cheap to clone; shared by every instance of the connector.
#[derive(Clone, Debug)]
pub struct ConnectorSecrets {
    connector: Arc<str>,
    allow: Allowlist,
    namespace: Namespace,
    identity: BackendIdentity,
    cache: SecretCache,
    invalidate_interval: Duration,
    last_invalidated: Arc<Mutex<HashMap<SecretName, Instant>>>,
}

impl ConnectorSecrets {
    /// Binds a connector's allowlist to the host's namespace and cache.
    pub fn new(
        connector: &str,
        allow: Allowlist,
        namespace: Namespace,
        identity: BackendIdentity,
        cache: SecretCache,
        invalidate_interval: Duration,
    ) -> Self {
        Self {
            connector: connector.into(),
            allow,
            namespace,
            identity,
            cache,
            invalidate_interval,
            last_invalidated: Arc::default(),
        }
    }

    /// The connector's id.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Resolves references of one render. Each distinct secret version is
    /// fetched once, so two references to one secret see one version.
    pub async fn get_many(
        &self,
        requests: &[SecretRequest],
    ) -> Vec<Result<SecretValue, ResolveError>> {
        let started = Instant::now();
        let checked: Vec<Result<(CanonicalRef, String), ResolveError>> =
            requests.iter().map(|r| self.check(r)).collect();

        let mut keys: Vec<CacheKey> = Vec::new();
        for (canonical, _) in checked.iter().flatten() {
            let key = (canonical.name.clone(), canonical.version.clone());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let reads = self.cache.get_many(&keys).await;
        let fetched: HashMap<CacheKey, CacheRead> = keys.into_iter().zip(reads).collect();
        let latency_us = Some(started.elapsed().as_micros());

        requests
            .iter()
            .zip(checked)
            .map(|(request, canonical)| {
                let (canonical, rule) = canonical?;
                let reference = request.to_string();
                let mut record = AuditRecord {
                    connector: &self.connector,
                    reference: reference.clone(),
                    canonical: Some(canonical.name.as_str()),
                    version_id: None,
                    decision: Decision::NotFound,
                    cache: None,
                    latency_us,
                };
                let result = match &fetched[&(canonical.name.clone(), canonical.version.clone())] {
                    Ok((version, status)) => {
                        record.cache = Some(*status);
                        record.version_id = Some(&version.version_id);
                        match version.secret.select(&canonical.path) {
                            Ok(value) => {
                                record.decision = Decision::Allowed(rule);
                                Ok(value)
                            }
                            Err(PathError::NotJson) => {
                                record.decision = Decision::NotJson;
                                Err(ResolveError::NotJson { reference })
                            }
                            Err(PathError::MissingKey { key, parent }) => {
                                let key = describe_key(&key, &parent);
                                record.decision = Decision::MissingKey(key.clone());
                                Err(ResolveError::MissingKey { reference, key })
                            }
                        }
                    }
                    Err(StoreError::NotFound) => {
                        record.decision = Decision::NotFound;
                        Err(ResolveError::NotFound { reference })
                    }
                    Err(StoreError::AccessDenied(detail)) => {
                        record.decision = Decision::Denied(format!("backend: {detail}"));
                        Err(ResolveError::NotFound { reference })
                    }
                    Err(StoreError::Gone(detail)) => {
                        record.decision = Decision::Unavailable(detail.clone());
                        Err(ResolveError::Unavailable {
                            reference,
                            detail: detail.clone(),
                        })
                    }
                    Err(StoreError::Unavailable(detail)) => {
                        record.decision = Decision::Unavailable(detail.clone());
                        Err(ResolveError::Unavailable {
                            reference,
                            detail: detail.clone(),
                        })
                    }
                };
                record.emit();
                result
            })
            .collect()
    }

    /// Canonicalizes and checks policy, returning the allowing rule; a
    /// failure is audited here.
    fn check(&self, request: &SecretRequest) -> Result<(CanonicalRef, String), ResolveError> {
        let reference = request.to_string();
        let denied = |decision: Decision, canonical: Option<&str>| {
            AuditRecord {
                connector: &self.connector,
                reference: reference.clone(),
                canonical,
                version_id: None,
                decision,
                cache: None,
                latency_us: None,
            }
            .emit();
        };
        let canonical = match canonicalize(
            &request.name,
            &request.path,
            request.version_stage.as_deref(),
            request.version_id.as_deref(),
            &self.namespace,
            &self.identity,
        ) {
            Ok(canonical) => canonical,
            Err(detail) => {
                denied(Decision::Invalid(detail.clone()), None);
                return Err(ResolveError::Invalid {
                    reference: reference.clone(),
                    detail,
                });
            }
        };
        match self.allow.check(&canonical) {
            Ok(rule) => {
                let rule = rule.to_string();
                Ok((canonical, rule))
            }
            Err(denial) => {
                denied(
                    Decision::Denied(denial.to_string()),
                    Some(canonical.name.as_str()),
                );
                Err(ResolveError::NotFound { reference })
            }
        }
    }

    /// Names (relative to the namespace) this connector may use and that
    /// exist in the backend.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        let names = self.cache.store().list(self.namespace.as_str()).await?;
        Ok(names
            .iter()
            .filter_map(|full| self.namespace.relative(full))
            .filter(|relative| self.allow.names(relative))
            .map(str::to_string)
            .collect())
    }

    /// Drops the cached versions of a secret this connector may read, after
    /// its credentials were rejected. Returns whether anything was allowed.
    /// At most one invalidation per secret per `invalidate_interval`, so a
    /// connector cannot turn the cache off.
    pub async fn invalidate(&self, request: &SecretRequest) -> Invalidation {
        let Ok((canonical, _)) = self.check(request) else {
            return Invalidation::NotAllowed;
        };
        {
            let mut last = self
                .last_invalidated
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match last.get(&canonical.name) {
                Some(at) if now.duration_since(*at) < self.invalidate_interval => {
                    return Invalidation::RateLimited;
                }
                _ => {
                    last.insert(canonical.name.clone(), now);
                }
            }
        }
        tracing::info!(target: "keyward::audit", connector = %self.connector, secret = %canonical.name, "invalidated");
        self.cache.invalidate(&canonical.name).await;
        Invalidation::Done
    }
}

/// What a connector's invalidation request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// The cached versions were dropped.
    Done,
    /// The same secret was invalidated too recently; nothing was dropped.
    RateLimited,
    /// The reference is invalid or not allowed; nothing was dropped.
    NotAllowed,
}

/// `` `password` `` or `` `password` (inside `db`.`creds`) ``.
fn describe_key(key: &str, parent: &[String]) -> String {
    let key = key.escape_debug();
    if parent.is_empty() {
        format!("`{key}`")
    } else {
        let parent: Vec<String> = parent
            .iter()
            .map(|p| format!("`{}`", p.escape_debug()))
            .collect();
        format!("`{key}` (inside {})", parent.join("."))
    }
}
