//! Resolving a connector's secret references under policy.
//!
//! Each reference is canonicalized, checked against the connector's
//! allowlist, served from the cache (no upstream request for a denied or
//! invalid one), narrowed to its JSON path, and audited. A denied reference
//! and a missing one give the guest the same error; the audit record says
//! which.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::audit::{AuditLog, AuditRecord, Decision};
use crate::cache::{CacheKey, CacheRead, SecretCache};
use crate::name::{CanonicalRef, SecretName, VersionSelector};
use crate::policy::{
    ConnectorPolicy, Grants, Quoted, SecretRequest, bounded, bounded_keys, request_len,
};
use crate::ratelimit::TokenBucket;
use crate::store::{SecretKey, StoreError};
use crate::value::{PathError, SecretValue};
use keyward_policy::policy::Rule;

/// Refusals (denied, invalid, rate-limited) audited one by one per render;
/// past this they are counted in one summary record.
const MAX_REFUSALS_AUDITED: usize = 8;
/// Other records written one by one per render; past this, counted too.
const MAX_READS_AUDITED: usize = 512;
/// Invalidation times remembered per connector before old ones are pruned.
const MAX_REMEMBERED_INVALIDATIONS: usize = 4096;

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

/// What one render has used of its allowances: the audit records it may
/// still write one by one, the ones counted instead, and the time its host
/// calls spent waiting on the backend (which its deadline does not count).
#[derive(Debug, Default)]
pub struct RenderBudget {
    /// Time spent waiting on the backend, upstream calls and shared
    /// fetches included.
    pub upstream_wait: Duration,
    refusals_audited: usize,
    reads_audited: usize,
    /// Records not written one by one, by decision.
    summarised: BTreeMap<&'static str, u64>,
    unlimited: bool,
}

impl RenderBudget {
    /// The allowance of one render.
    pub fn for_render() -> Self {
        Self::default()
    }

    /// No bound on records: for the operator's and the platform's own calls.
    pub fn unlimited() -> Self {
        Self {
            unlimited: true,
            ..Self::default()
        }
    }

    /// Whether a record with this decision is written one by one; if not,
    /// it is counted for the summary.
    fn admit(&mut self, decision: &Decision) -> bool {
        if self.unlimited {
            return true;
        }
        let (used, limit) = if decision.is_refusal() {
            (&mut self.refusals_audited, MAX_REFUSALS_AUDITED)
        } else {
            (&mut self.reads_audited, MAX_READS_AUDITED)
        };
        if *used < limit {
            *used += 1;
            true
        } else {
            *self.summarised.entry(decision.kind()).or_default() += 1;
            false
        }
    }

    /// `denied 300, invalid 2`, if any record was counted instead of written.
    fn summary(&self) -> Option<String> {
        (!self.summarised.is_empty()).then(|| {
            self.summarised
                .iter()
                .map(|(kind, count)| format!("{kind} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// Why a reference was refused before any read.
#[derive(Debug)]
enum Refused {
    /// Valid, but no reading is allowed; the name of the first reading.
    Denied(SecretName),
    /// Malformed.
    Invalid(ResolveError),
}

/// What one connector may read, and how: its policy bound to the host's
/// cache, audit log and the connector's upstream rate limit. Cheap to
/// clone; a render holds one clone for its whole duration, so a policy
/// swapped in meanwhile applies from the next render on.
#[derive(Clone, Debug)]
pub struct ConnectorSecrets {
    /// The tenant it belongs to (its audit records name it).
    tenant: Arc<str>,
    connector: Arc<str>,
    policy: Arc<ConnectorPolicy>,
    cache: SecretCache,
    audit: Arc<AuditLog>,
    fetch_limit: Arc<TokenBucket>,
    invalidate_interval: Duration,
    last_invalidated: Arc<Mutex<HashMap<SecretName, Instant>>>,
    /// Read by every render, written on a new reference: a read lock.
    decisions: Arc<RwLock<HashMap<SecretRequest, Allowed, foldhash::fast::RandomState>>>,
}

/// One policy reading of a reference that the allowlist allows.
#[derive(Debug)]
struct Reading {
    canonical: CanonicalRef,
    /// Its cache key, built once.
    key: CacheKey,
    /// The rule that allows it.
    rule: Rule,
    /// What else the policy grants over it.
    grants: Grants,
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
    /// The connector's policy.
    pub fn policy(&self) -> &ConnectorPolicy {
        &self.policy
    }

    /// Records that the connector was given the plaintext of `request`,
    /// with the reveal rule that grants it.
    pub fn audit_reveal(&self, request: &SecretRequest, budget: &mut RenderBudget) {
        let policy = &self.policy;
        let canonical = policy.canonical(request);
        let rule = canonical
            .ok()
            .and_then(|c| policy.reveal.check(&c).ok().map(Rule::to_string))
            .unwrap_or_default();
        let mut record = self.record(request, Decision::Revealed(rule));
        record.canonical = None;
        self.write(budget, &record);
    }

    /// Records that a render was refused by the egress check (always
    /// written: one per render at most).
    pub fn audit_egress_refused(&self, output: &str, message: &str) {
        let record = AuditRecord::new(
            &self.tenant,
            &self.connector,
            format!("output `{}`", bounded(output)),
            Decision::EgressRefused(message.to_string()),
        );
        self.audit.count(&record.decision);
        if self.audit.is_active() {
            self.audit.write(&record);
        }
    }

    /// Binds a connector's policy to the host's cache and audit log.
    pub fn new(
        tenant: &str,
        connector: &str,
        policy: Arc<ConnectorPolicy>,
        cache: SecretCache,
        audit: Arc<AuditLog>,
        fetch_limit: Arc<TokenBucket>,
        invalidate_interval: Duration,
    ) -> Self {
        Self {
            tenant: tenant.into(),
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

    /// The same connector under another policy, with a new rate limit if
    /// it changed, and the invalidate interval given; the invalidation
    /// history carries over.
    pub fn with_policy(
        &self,
        policy: Arc<ConnectorPolicy>,
        fetch_limit: Option<Arc<TokenBucket>>,
        invalidate_interval: Duration,
    ) -> Self {
        Self {
            policy,
            decisions: Arc::default(),
            fetch_limit: fetch_limit.unwrap_or_else(|| self.fetch_limit.clone()),
            invalidate_interval,
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
        let mut record = AuditRecord::new(
            &self.tenant,
            &self.connector,
            Quoted(request).to_string(),
            decision,
        );
        record.path = bounded_keys(&request.path);
        record.version = request
            .version_stage
            .as_ref()
            .map(|s| format!("stage {}", bounded(s)))
            .or_else(|| {
                request
                    .version_id
                    .as_ref()
                    .map(|v| format!("version {}", bounded(v)))
            });
        record
    }

    /// Writes a record, or counts it if the render has written its share.
    fn write(&self, budget: &mut RenderBudget, record: &AuditRecord) {
        if self.admit(budget, &record.decision) {
            self.audit.write(record);
        }
    }

    /// Counts a decision and says whether its record is to be written
    /// (a sink is active and the render has not written its share).
    fn admit(&self, budget: &mut RenderBudget, decision: &Decision) -> bool {
        self.audit.count(decision);
        self.audit.is_active() && budget.admit(decision)
    }

    /// Ends a render: one record counting what was not written one by one.
    pub fn finish_render(&self, budget: &RenderBudget) {
        if let Some(summary) = budget.summary() {
            self.audit.write(&AuditRecord::new(
                &self.tenant,
                &self.connector,
                String::new(),
                Decision::Summarised(format!(
                    "more records than are written one by one in a render: {summary}"
                )),
            ));
        }
    }

    /// Resolves references for the platform or the operator (every
    /// record written). Each distinct secret version is fetched once, so
    /// two references to one secret see one version.
    pub async fn get_many(
        &self,
        requests: &[SecretRequest],
    ) -> Vec<Result<SecretValue, ResolveError>> {
        self.resolve(requests, &mut RenderBudget::unlimited()).await
    }

    /// Resolves references of one render, within its budget.
    pub async fn resolve(
        &self,
        requests: &[SecretRequest],
        budget: &mut RenderBudget,
    ) -> Vec<Result<SecretValue, ResolveError>> {
        self.resolve_with_grants(requests, budget)
            .await
            .into_iter()
            .map(|result| result.map(|(value, _)| value))
            .collect()
    }

    /// Resolves references of one render, within its budget, each value
    /// with what the policy grants over it.
    pub async fn resolve_with_grants(
        &self,
        requests: &[SecretRequest],
        budget: &mut RenderBudget,
    ) -> Vec<Result<(SecretValue, Grants), ResolveError>> {
        // Latency is only for the audit record; reading the clock is not free.
        let started = self.audit.is_active().then(Instant::now);
        // Decisions already taken, under one lock for the whole render.
        let kept: Vec<Option<Allowed>> = {
            let decisions = self.decisions.read().unwrap_or_else(|p| p.into_inner());
            requests.iter().map(|r| decisions.get(r).cloned()).collect()
        };
        let checked: Vec<Result<Allowed, ResolveError>> = requests
            .iter()
            .zip(kept)
            .map(|(request, kept)| match kept {
                Some(allowed) => Ok(allowed),
                None => self
                    .check(request, budget)
                    .map_err(|refused| match refused {
                        Refused::Denied(_) => ResolveError::NotFound {
                            reference: Quoted(request).to_string(),
                        },
                        Refused::Invalid(e) => e,
                    }),
            })
            .collect();

        // Round 1: each reference's first allowed reading.
        let first: Vec<Option<&Reading>> = checked
            .iter()
            .map(|c| c.as_ref().ok().and_then(|a| a.first()))
            .collect();
        let mut reads = self.read(first.iter().flatten().copied(), budget).await;
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
            let more = self.read(literals, budget).await;
            reads.extend(more);
        }
        let latency_us =
            started.map(|at| u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));

        // The render's read records, written together in one write.
        let mut batch = Vec::new();
        let resolved = requests
            .iter()
            .zip(checked)
            .zip(use_literal)
            .map(|((request, allowed), literal)| {
                let allowed = allowed?;
                let reading =
                    allowed
                        .get(usize::from(literal))
                        .ok_or_else(|| ResolveError::NotFound {
                            reference: Quoted(request).to_string(),
                        })?;
                let mut record = self.record(request, Decision::NotFound);
                if self.audit.is_active() {
                    record.canonical = Some(reading.canonical.name.to_string());
                    record.latency_us = latency_us;
                }
                let result = match reads.get(&reading.key) {
                    Some(read) => self
                        .outcome(request, reading, read, &mut record)
                        .map(|value| (value, reading.grants)),
                    None => Err(ResolveError::Unavailable {
                        reference: Quoted(request).to_string(),
                        detail: "no result".into(),
                    }),
                };
                if self.admit(budget, &record.decision) {
                    batch.push(record);
                }
                result
            })
            .collect();
        self.audit.write_all(&batch);
        resolved
    }

    /// Reads distinct keys through the cache, within the connector's
    /// upstream rate limit.
    async fn read<'a>(
        &self,
        readings: impl Iterator<Item = &'a Reading>,
        budget: &mut RenderBudget,
    ) -> Reads {
        let mut distinct: Vec<&'a CacheKey> = Vec::new();
        // Past a few keys, comparing each with every other costs more
        // than hashing them.
        let mut seen: HashSet<&'a CacheKey, foldhash::fast::RandomState> = HashSet::default();
        for reading in readings {
            let key = &reading.key;
            let new = if distinct.len() < LINEAR_DEDUP_KEYS {
                !distinct.contains(&key)
            } else {
                if seen.is_empty() {
                    seen.extend(distinct.iter().copied());
                }
                seen.insert(key)
            };
            if new {
                distinct.push(key);
            }
        }
        let keys: Vec<CacheKey> = distinct.into_iter().cloned().collect();
        let reads = self
            .cache
            .get_many(&keys, &*self.fetch_limit, &mut budget.upstream_wait)
            .await;
        Reads(keys.into_iter().zip(reads).collect())
    }

    /// The value (or error) one reference gets from one cache read, and
    /// its audit decision.
    fn outcome(
        &self,
        request: &SecretRequest,
        reading: &Reading,
        read: &CacheRead,
        record: &mut AuditRecord,
    ) -> Result<SecretValue, ResolveError> {
        // Only errors quote the reference; a hit builds no strings.
        let not_found = || ResolveError::NotFound {
            reference: Quoted(request).to_string(),
        };
        let (version, status) = match read {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                record.decision = Decision::NotFound;
                return Err(not_found());
            }
            Err(StoreError::AccessDenied(detail)) => {
                record.decision = Decision::Denied(format!("backend: {detail}"));
                return Err(not_found());
            }
            Err(StoreError::Gone(detail) | StoreError::Unavailable(detail)) => {
                record.decision = Decision::Unavailable(detail.clone());
                return Err(ResolveError::Unavailable {
                    reference: Quoted(request).to_string(),
                    detail: detail.clone(),
                });
            }
        };
        // A version reached by its id is the pending one only if the rule
        // grants AWSPENDING: an id is no way around a stage restriction.
        if matches!(reading.canonical.version, VersionSelector::Id(_))
            && !reading.rule.may_serve_version(&version.stages)
        {
            record.decision = Decision::Denied(format!(
                "rule `{}`: version {} carries AWSPENDING, which the rule does not grant",
                reading.rule,
                bounded(&version.version_id)
            ));
            return Err(not_found());
        }
        if self.audit.is_active() {
            record.cache = Some(*status);
            record.version_id = Some(version.version_id.clone());
            record.decision = Decision::Allowed(reading.rule.to_string());
        }
        match version.secret.select(&reading.canonical.path) {
            Ok(value) => Ok(value),
            Err(PathError::NotJson) => {
                record.decision = Decision::NotJson;
                Err(ResolveError::NotJson {
                    reference: Quoted(request).to_string(),
                })
            }
            Err(PathError::MissingKey { key, parent }) => {
                let key = describe_key(&key, &parent);
                record.decision = Decision::MissingKey(key.clone());
                Err(ResolveError::MissingKey {
                    reference: Quoted(request).to_string(),
                    key,
                })
            }
        }
    }

    /// The allowed readings of a request (a decision kept from an earlier
    /// render, or taken now); a refusal is audited here.
    fn check(
        &self,
        request: &SecretRequest,
        budget: &mut RenderBudget,
    ) -> Result<Allowed, Refused> {
        let kept = self
            .decisions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(request)
            .cloned();
        if let Some(allowed) = kept {
            return Ok(allowed);
        }
        let allowed: Allowed = Arc::new(self.decide(request, budget)?);
        if request_len(request) <= MAX_KEPT_REQUEST_BYTES {
            let mut decisions = self.decisions.write().unwrap_or_else(|p| p.into_inner());
            if decisions.len() >= MAX_KEPT_DECISIONS {
                decisions.clear();
            }
            decisions.insert(request.clone(), allowed.clone());
        }
        Ok(allowed)
    }

    /// Canonicalizes and checks policy on every reading; a refusal is
    /// audited here.
    fn decide(
        &self,
        request: &SecretRequest,
        budget: &mut RenderBudget,
    ) -> Result<Vec<Reading>, Refused> {
        let policy = &self.policy;
        let canonical = match policy.canonical(request) {
            Ok(canonical) => canonical,
            Err(detail) => {
                self.write(
                    budget,
                    &self.record(request, Decision::Invalid(detail.clone())),
                );
                return Err(Refused::Invalid(ResolveError::Invalid {
                    reference: Quoted(request).to_string(),
                    detail,
                }));
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
                    rule: rule.clone(),
                    grants: policy.grants(&reading),
                    canonical: reading,
                }),
                Err(d) => {
                    denial.get_or_insert((reading.name, d));
                }
            }
        }
        match (allowed.is_empty(), denial) {
            (true, Some((name, denial))) => {
                let mut record = self.record(request, Decision::Denied(denial.to_string()));
                record.canonical = Some(name.to_string());
                self.write(budget, &record);
                Err(Refused::Denied(name))
            }
            _ => Ok(allowed),
        }
    }

    /// Names (relative to the namespace) this connector may use and that
    /// exist in the backend.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.list_within(&mut RenderBudget::unlimited()).await
    }

    /// [`ConnectorSecrets::list`] within a render's budget. The listing is
    /// the cache's (one upstream listing per TTL, within the connector's
    /// rate limit), and the answer depends only on the allowed names that
    /// exist, so a connector learns nothing of names it may not read.
    pub async fn list_within(&self, budget: &mut RenderBudget) -> Result<Vec<String>, StoreError> {
        let namespace = &self.policy.namespace;
        let names = self
            .cache
            .list(
                namespace.as_str(),
                &*self.fetch_limit,
                &mut budget.upstream_wait,
            )
            .await?;
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
    /// its credentials were rejected (for the platform; every record written).
    pub async fn invalidate(&self, request: &SecretRequest) -> Invalidation {
        self.invalidate_within(request, &mut RenderBudget::unlimited())
            .await
    }

    /// [`ConnectorSecrets::invalidate`] within a render's budget. At most
    /// one invalidation per secret per `invalidate_interval`, so a connector
    /// cannot turn the cache off. A denied secret goes through the same
    /// steps, interval included, and drops nothing: a connector cannot tell
    /// it from an allowed one that does not exist.
    pub async fn invalidate_within(
        &self,
        request: &SecretRequest,
        budget: &mut RenderBudget,
    ) -> Invalidation {
        let (names, allowed): (Vec<SecretName>, bool) = match self.check(request, budget) {
            Ok(allowed) => {
                let mut names: Vec<SecretName> =
                    allowed.iter().map(|r| r.canonical.name.clone()).collect();
                names.dedup();
                (names, true)
            }
            Err(Refused::Denied(name)) => (vec![name], false),
            Err(Refused::Invalid(_)) => return Invalidation::Invalid,
        };
        let now = self.cache.now();
        {
            let mut last = self
                .last_invalidated
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if names.iter().any(|n| {
                last.get(n)
                    .is_some_and(|at| now.saturating_duration_since(*at) < self.invalidate_interval)
            }) {
                self.write(budget, &self.record(request, Decision::RateLimited));
                return Invalidation::RateLimited;
            }
            if last.len() >= MAX_REMEMBERED_INVALIDATIONS {
                let interval = self.invalidate_interval;
                last.retain(|_, at| now.saturating_duration_since(*at) < interval);
                if last.len() >= MAX_REMEMBERED_INVALIDATIONS {
                    // Bounded memory over a perfect interval: a connector
                    // that floods distinct names may invalidate one early,
                    // at the price of thousands of host calls.
                    last.clear();
                }
            }
            for name in &names {
                last.insert(name.clone(), now);
            }
        }
        if !allowed {
            // The denial was audited by `check`.
            return Invalidation::NotAllowed;
        }
        for name in names {
            let mut record = self.record(request, Decision::Invalidated);
            record.canonical = Some(name.to_string());
            self.write(budget, &record);
            self.cache.invalidate(&name).await;
        }
        Invalidation::Done
    }
}

fn key(canonical: &CanonicalRef) -> CacheKey {
    Arc::new(SecretKey {
        name: canonical.name.clone(),
        arn: canonical.arn.as_deref().map(Arc::from),
        version: canonical.version.clone(),
    })
}

/// Up to this many distinct keys, a render's reads are deduplicated by
/// comparing each key with the others; past it, by hashing.
const LINEAR_DEDUP_KEYS: usize = 8;

/// The cache reads of one render by key. A render reads a handful of
/// secrets: a list searched without building or hashing keys is cheaper
/// than a map.
struct Reads(Vec<(CacheKey, CacheRead)>);

impl Reads {
    fn get(&self, key: &CacheKey) -> Option<&CacheRead> {
        // A reading's key is most often the very one that was read: find
        // it by address before comparing names.
        self.0
            .iter()
            .find(|(k, _)| Arc::ptr_eq(k, key))
            .or_else(|| self.0.iter().find(|(k, _)| k == key))
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
    /// The secret is not allowed; nothing was dropped.
    NotAllowed,
    /// The reference is malformed; nothing was dropped.
    Invalid,
}

impl Invalidation {
    /// The guest's answer: whether it may expect a fresh read. A denied
    /// secret answers as an allowed one that does not exist would.
    pub fn answer_for_guest(self) -> bool {
        matches!(self, Invalidation::Done | Invalidation::NotAllowed)
    }
}

/// `` `password` `` or `` `password` (inside `db`.`creds`) ``, bounded.
fn describe_key(key: &str, parent: &[String]) -> String {
    let key = bounded(key);
    if parent.is_empty() {
        format!("`{key}`")
    } else {
        let parent: Vec<String> = bounded_keys(parent)
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        format!("`{key}` (inside {})", parent.join("."))
    }
}
