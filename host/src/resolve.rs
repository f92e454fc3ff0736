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

use crate::audit::{AuditLog, AuditRecord, Decision};
use crate::cache::{CacheKey, CacheRead, SecretCache};
use crate::name::{BackendIdentity, CanonicalRef, Namespace, SecretName, canonicalize};
use crate::policy::Allowlist;
use crate::ratelimit::TokenBucket;
use crate::store::StoreError;
use crate::value::{PathError, SecretValue};

/// Longest reference text quoted in an error or audit record.
const MAX_QUOTED_REFERENCE: usize = 200;

/// A reference as the guest sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

    /// The bytes of text it holds.
    fn len_bytes(&self) -> usize {
        self.name.len()
            + self.path.iter().map(String::len).sum::<usize>()
            + self.version_stage.as_ref().map_or(0, String::len)
            + self.version_id.as_ref().map_or(0, String::len)
    }
}

/// `name["key"] (stage S)`, bounded and with control characters escaped.
impl fmt::Display for SecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each part is cut before it is escaped, so a huge name from a
        // hostile guest costs no more than a short one.
        let bounded = |s: &str| -> String {
            let cut: String = s.chars().take(MAX_QUOTED_REFERENCE).collect();
            let mut escaped = cut.escape_debug().to_string();
            if cut.len() < s.len() {
                escaped.push('…');
            }
            escaped
        };
        let mut text = bounded(&self.name);
        for key in self.path.iter().take(8) {
            text.push_str(&format!("[\"{}\"]", bounded(key)));
        }
        if self.path.len() > 8 {
            text.push_str("[…]");
        }
        if let Some(stage) = &self.version_stage {
            text.push_str(&format!(" (stage {})", bounded(stage)));
        }
        if let Some(id) = &self.version_id {
            text.push_str(&format!(" (version {})", bounded(id)));
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

/// A connector's policy: what it may read, under which namespace.
#[derive(Clone, Debug)]
pub struct ConnectorPolicy {
    /// Its allowlist.
    pub allow: Allowlist,
    /// The host's namespace.
    pub namespace: Namespace,
    /// Where ARNs must point.
    pub identity: BackendIdentity,
}

/// What one connector may read, and how: its policy bound to the host's
/// cache, audit log and the connector's upstream rate limit. Cheap to
/// clone; a render holds one clone for its whole duration, so a policy
/// swapped in meanwhile applies from the next render on.
#[derive(Clone, Debug)]
pub struct ConnectorSecrets {
    connector: Arc<str>,
    policy: Arc<ConnectorPolicy>,
    cache: SecretCache,
    audit: Arc<AuditLog>,
    fetch_limit: Arc<TokenBucket>,
    invalidate_interval: Duration,
    last_invalidated: Arc<Mutex<HashMap<SecretName, Instant>>>,
    decisions: Arc<Mutex<HashMap<SecretRequest, Allowed>>>,
}

/// One policy reading of a reference that the allowlist allows.
#[derive(Debug)]
struct Reading {
    canonical: CanonicalRef,
    /// Its cache key, built once.
    key: CacheKey,
    /// The rule that allows it.
    rule: String,
}

/// The readings a reference may resolve to, in order of preference (see
/// [`CanonicalRef::alternate`]).
type Allowed = Arc<Vec<Reading>>;

/// Allowed decisions kept per connector (they depend only on the request
/// and the policy, which a `ConnectorSecrets` never changes). Bounded, and
/// only short requests are kept, so a guest cannot grow it at will.
const MAX_KEPT_DECISIONS: usize = 1024;
const MAX_KEPT_REQUEST_BYTES: usize = 1024;

impl ConnectorSecrets {
    /// Binds a connector's policy to the host's cache and audit log.
    pub fn new(
        connector: &str,
        policy: Arc<ConnectorPolicy>,
        cache: SecretCache,
        audit: Arc<AuditLog>,
        fetch_limit: Arc<TokenBucket>,
        invalidate_interval: Duration,
    ) -> Self {
        Self {
            connector: connector.into(),
            policy,
            cache,
            audit,
            fetch_limit,
            invalidate_interval,
            last_invalidated: Arc::default(),
            decisions: Arc::default(),
        }
    }

    /// The same connector under another policy; the rate limit and the
    /// invalidation history carry over.
    pub fn with_policy(&self, policy: Arc<ConnectorPolicy>) -> Self {
        Self {
            policy,
            decisions: Arc::default(),
            ..self.clone()
        }
    }

    /// The connector's id.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The connector's id, shared (no copy per render).
    pub fn connector_id(&self) -> Arc<str> {
        self.connector.clone()
    }

    fn record(&self, request: &SecretRequest, decision: Decision) -> AuditRecord {
        if !self.audit.is_active() {
            // Nothing will be written: skip the strings and the clock.
            return AuditRecord::unwritten(decision);
        }
        let mut record = AuditRecord::new(&self.connector, request.to_string(), decision);
        record.path = request.path.clone();
        record.version = request
            .version_stage
            .as_ref()
            .map(|s| format!("stage {s}"))
            .or_else(|| request.version_id.as_ref().map(|v| format!("version {v}")));
        record
    }

    /// Resolves references of one render. Each distinct secret version is
    /// fetched once, so two references to one secret see one version.
    pub async fn get_many(
        &self,
        requests: &[SecretRequest],
    ) -> Vec<Result<SecretValue, ResolveError>> {
        // Latency is only for the audit record; reading the clock is not free.
        let started = self.audit.is_active().then(Instant::now);
        // Decisions already taken, under one lock for the whole render.
        let kept: Vec<Option<Allowed>> = {
            let decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            requests.iter().map(|r| decisions.get(r).cloned()).collect()
        };
        let checked: Vec<Result<Allowed, ResolveError>> = requests
            .iter()
            .zip(kept)
            .map(|(request, kept)| kept.map_or_else(|| self.check(request), Ok))
            .collect();

        // Round 1: each reference's first allowed reading.
        let first: Vec<Option<&Reading>> = checked
            .iter()
            .map(|c| c.as_ref().ok().and_then(|a| a.first()))
            .collect();
        let mut reads = self.read(first.iter().flatten().copied()).await;
        // Round 2: a literal reading of an ARN, where the full-ARN one does not exist.
        let use_literal: Vec<bool> = checked
            .iter()
            .zip(&first)
            .map(|(allowed, first)| {
                let missing = first
                    .is_some_and(|r| matches!(reads.get(&r.key), Some(Err(StoreError::NotFound))));
                missing && allowed.as_ref().is_ok_and(|a| a.len() > 1)
            })
            .collect();
        if use_literal.contains(&true) {
            let literals = checked
                .iter()
                .zip(&use_literal)
                .filter(|(_, literal)| **literal)
                .filter_map(|(allowed, _)| allowed.as_ref().ok().and_then(|a| a.get(1)));
            let more = self.read(literals).await;
            reads.extend(more);
        }
        let latency_us =
            started.map(|at| u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));

        requests
            .iter()
            .zip(checked)
            .zip(use_literal)
            .map(|((request, allowed), literal)| {
                let allowed = allowed?;
                let Reading {
                    canonical,
                    key,
                    rule,
                } = allowed
                    .get(usize::from(literal))
                    .ok_or_else(|| ResolveError::NotFound {
                        reference: request.to_string(),
                    })?;
                let mut record = self.record(request, Decision::NotFound);
                if self.audit.is_active() {
                    record.canonical = Some(canonical.name.to_string());
                    record.latency_us = latency_us;
                }
                let result = match reads.get(key) {
                    Some(read) => self.outcome(request, canonical, rule, read, &mut record),
                    None => Err(ResolveError::Unavailable {
                        reference: request.to_string(),
                        detail: "no result".into(),
                    }),
                };
                self.audit.write(&record);
                result
            })
            .collect()
    }

    /// Reads distinct keys through the cache, within the connector's
    /// upstream rate limit.
    async fn read<'a>(&self, readings: impl Iterator<Item = &'a Reading>) -> Reads {
        let mut keys: Vec<CacheKey> = Vec::new();
        for reading in readings {
            if !keys.contains(&reading.key) {
                keys.push(reading.key.clone());
            }
        }
        let reads = self.cache.get_many(&keys, &*self.fetch_limit).await;
        Reads(keys.into_iter().zip(reads).collect())
    }

    /// The value (or error) one reference gets from one cache read, and
    /// its audit decision.
    fn outcome(
        &self,
        request: &SecretRequest,
        canonical: &CanonicalRef,
        rule: &str,
        read: &CacheRead,
        record: &mut AuditRecord,
    ) -> Result<SecretValue, ResolveError> {
        // Only errors quote the reference; a hit builds no strings.
        let (version, status) = match read {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                record.decision = Decision::NotFound;
                return Err(ResolveError::NotFound {
                    reference: request.to_string(),
                });
            }
            Err(StoreError::AccessDenied(detail)) => {
                record.decision = Decision::Denied(format!("backend: {detail}"));
                return Err(ResolveError::NotFound {
                    reference: request.to_string(),
                });
            }
            Err(StoreError::Gone(detail) | StoreError::Unavailable(detail)) => {
                record.decision = Decision::Unavailable(detail.clone());
                return Err(ResolveError::Unavailable {
                    reference: request.to_string(),
                    detail: detail.clone(),
                });
            }
        };
        if self.audit.is_active() {
            record.cache = Some(*status);
            record.version_id = Some(version.version_id.clone());
            record.decision = Decision::Allowed(rule.to_string());
        }
        match version.secret.select(&canonical.path) {
            Ok(value) => Ok(value),
            Err(PathError::NotJson) => {
                record.decision = Decision::NotJson;
                Err(ResolveError::NotJson {
                    reference: request.to_string(),
                })
            }
            Err(PathError::MissingKey { key, parent }) => {
                let key = describe_key(&key, &parent);
                record.decision = Decision::MissingKey(key.clone());
                Err(ResolveError::MissingKey {
                    reference: request.to_string(),
                    key,
                })
            }
        }
    }

    /// Canonicalizes and checks policy on every reading, returning the
    /// allowed ones with their rules; a refusal is audited here.
    fn check(&self, request: &SecretRequest) -> Result<Allowed, ResolveError> {
        let kept = |decisions: &Mutex<HashMap<SecretRequest, Allowed>>| {
            decisions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(request)
                .cloned()
        };
        if let Some(allowed) = kept(&self.decisions) {
            return Ok(allowed);
        }
        let allowed: Allowed = Arc::new(self.decide(request)?);
        if request.len_bytes() <= MAX_KEPT_REQUEST_BYTES {
            let mut decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            if decisions.len() >= MAX_KEPT_DECISIONS {
                decisions.clear();
            }
            decisions.insert(request.clone(), allowed.clone());
        }
        Ok(allowed)
    }

    /// Canonicalizes and checks policy on every reading; a refusal is
    /// audited here.
    fn decide(&self, request: &SecretRequest) -> Result<Vec<Reading>, ResolveError> {
        let policy = &self.policy;
        let canonical = match canonicalize(
            &request.name,
            &request.path,
            request.version_stage.as_deref(),
            request.version_id.as_deref(),
            &policy.namespace,
            &policy.identity,
        ) {
            Ok(canonical) => canonical,
            Err(detail) => {
                self.audit
                    .write(&self.record(request, Decision::Invalid(detail.clone())));
                return Err(ResolveError::Invalid {
                    reference: request.to_string(),
                    detail,
                });
            }
        };
        let mut readings = vec![canonical];
        if let Some(literal) = readings[0].alternate.take() {
            readings.push(*literal);
        }
        let mut allowed = Vec::new();
        let mut denial = None;
        for reading in readings {
            match policy.allow.check(&reading) {
                Ok(rule) => allowed.push(Reading {
                    key: key(&reading),
                    rule: rule.to_string(),
                    canonical: reading,
                }),
                Err(d) => {
                    denial.get_or_insert((reading.name.to_string(), d));
                }
            }
        }
        match (allowed.is_empty(), denial) {
            (true, Some((name, denial))) => {
                let mut record = self.record(request, Decision::Denied(denial.to_string()));
                record.canonical = Some(name);
                self.audit.write(&record);
                Err(ResolveError::NotFound {
                    reference: request.to_string(),
                })
            }
            _ => Ok(allowed),
        }
    }

    /// Names (relative to the namespace) this connector may use and that
    /// exist in the backend.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        let namespace = &self.policy.namespace;
        let names = self.cache.store().list(namespace.as_str()).await?;
        Ok(names
            .iter()
            .filter_map(|full| namespace.relative(full))
            .filter(|relative| self.policy.allow.names(relative))
            .map(str::to_string)
            .collect())
    }

    /// One reference per secret this connector may use (per key where its
    /// allowlist limits the secret to keys), for `keyward refs` and `check`.
    pub async fn allowed_references(&self) -> Result<Vec<SecretRequest>, StoreError> {
        let mut requests = Vec::new();
        for name in self.list().await? {
            let keys = self.policy.allow.keys(&name);
            if keys.is_empty() {
                requests.push(SecretRequest::name(&name));
            } else {
                requests.extend(keys.iter().map(|key| SecretRequest::key(&name, &[key])));
            }
        }
        Ok(requests)
    }

    /// Drops the cached versions of a secret this connector may read, after
    /// its credentials were rejected. At most one invalidation per secret
    /// per `invalidate_interval`, so a connector cannot turn the cache off.
    pub async fn invalidate(&self, request: &SecretRequest) -> Invalidation {
        let Ok(allowed) = self.check(request) else {
            return Invalidation::NotAllowed;
        };
        let mut names: Vec<&SecretName> = allowed.iter().map(|r| &r.canonical.name).collect();
        names.dedup();
        let now = Instant::now();
        {
            let mut last = self
                .last_invalidated
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if names.iter().any(|n| {
                last.get(*n)
                    .is_some_and(|at| now.duration_since(*at) < self.invalidate_interval)
            }) {
                self.audit
                    .write(&self.record(request, Decision::RateLimited));
                return Invalidation::RateLimited;
            }
            for name in &names {
                last.insert((*name).clone(), now);
            }
        }
        for name in names {
            let mut record = self.record(request, Decision::Invalidated);
            record.canonical = Some(name.to_string());
            self.audit.write(&record);
            self.cache.invalidate(name).await;
        }
        Invalidation::Done
    }
}

fn key(canonical: &CanonicalRef) -> CacheKey {
    Arc::new((canonical.name.clone(), canonical.version.clone()))
}

/// The cache reads of one render by key. A render reads a handful of
/// secrets: a list searched without building or hashing keys is cheaper
/// than a map.
struct Reads(Vec<(CacheKey, CacheRead)>);

impl Reads {
    fn get(&self, key: &CacheKey) -> Option<&CacheRead> {
        self.0
            .iter()
            .find(|(k, _)| Arc::ptr_eq(k, key) || k == key)
            .map(|(_, read)| read)
    }

    fn extend(&mut self, more: Reads) {
        self.0.extend(more.0);
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
