//! A connector's policy: what it may read, reveal and treat as public,
//! under the host's namespace and the backend's identity, and where its
//! secrets may go. Built from the configuration's plain data; evaluated by
//! [`crate::resolve`] on every read and by the operator's checks.

use std::fmt;
use std::sync::Arc;

use keyward_policy::name::{
    BackendIdentity, CanonicalRef, Namespace, canonicalize, quote_untrusted,
};
use keyward_policy::policy::Allowlist;
use keyward_template::egress::Egress;
use keyward_template::{Reference, Template};

use crate::config::ConnectorConfig;

/// Longest piece of guest-supplied text (a name, key, stage or version id)
/// quoted in an error or audit record; longer text is cut and its length
/// noted, so a multi-megabyte reference costs no more than a short one.
const MAX_QUOTED: usize = 128;
/// Most JSON keys of one reference quoted.
const MAX_QUOTED_KEYS: usize = 8;

/// Guest text for an error or audit record: control characters escaped,
/// cut at [`MAX_QUOTED`] characters with its true length noted.
pub fn bounded(text: &str) -> String {
    quote_untrusted(text, MAX_QUOTED)
}

/// A reference's JSON keys for an audit record, each [`bounded`], at most
/// [`MAX_QUOTED_KEYS`] of them.
pub(crate) fn bounded_keys(path: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = path
        .iter()
        .take(MAX_QUOTED_KEYS)
        .map(|k| bounded(k))
        .collect();
    if path.len() > MAX_QUOTED_KEYS {
        keys.push(format!("… ({} keys)", path.len()));
    }
    keys
}

/// A reference to one secret: the grammar's [`Reference`], whether a
/// template or a guest wrote it (they are the same four fields).
pub type SecretRequest = Reference;

/// The bytes of text a request holds.
pub(crate) fn request_len(request: &SecretRequest) -> usize {
    request.name.len()
        + request.path.iter().map(String::len).sum::<usize>()
        + request.version_stage.as_ref().map_or(0, String::len)
        + request.version_id.as_ref().map_or(0, String::len)
}

/// A request for an error or audit record: `name["key"] (stage S)`, each
/// part [`bounded`] (cut before it is escaped, so a huge name from a
/// hostile guest costs no more than a short one).
pub struct Quoted<'a>(pub &'a SecretRequest);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.0;
        f.write_str(&bounded(&request.name))?;
        for key in bounded_keys(&request.path) {
            write!(f, "[\"{key}\"]")?;
        }
        if let Some(stage) = &request.version_stage {
            write!(f, " (stage {})", bounded(stage))?;
        }
        if let Some(id) = &request.version_id {
            write!(f, " (version {})", bounded(id))?;
        }
        Ok(())
    }
}

/// A connector's policy: what it may read, under which namespace.
#[derive(Clone, Debug)]
pub struct ConnectorPolicy {
    /// Its allowlist.
    pub allow: Allowlist,
    /// Secrets the operator marks public: the connector may read them in
    /// plain text, and outputs built only from them are not sensitive.
    pub public: Allowlist,
    /// Secrets the connector may `reveal` (compute over in plain text).
    pub reveal: Allowlist,
    /// The operator's explicit destinations, if set.
    pub egress: Option<Arc<Egress>>,
    /// The host's namespace.
    pub namespace: Namespace,
    /// Where ARNs must point.
    pub identity: BackendIdentity,
}

/// What the operator grants a connector over one secret beyond composing
/// it into sealed text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// The secret is public: the connector may read it in plain text.
    pub public: bool,
    /// The connector may reveal it.
    pub reveal: bool,
}

impl ConnectorPolicy {
    /// A request's canonical reading under this namespace and identity.
    pub(crate) fn canonical(&self, request: &SecretRequest) -> Result<CanonicalRef, String> {
        canonicalize(
            &request.name,
            &request.path,
            request.version_stage.as_deref(),
            request.version_id.as_deref(),
            &self.namespace,
            &self.identity,
        )
    }

    /// What this policy grants over an allowed reading.
    pub(crate) fn grants(&self, reading: &CanonicalRef) -> Grants {
        Grants {
            public: self.public.check(reading).is_ok(),
            reveal: self.reveal.check(reading).is_ok(),
        }
    }

    /// Whether the operator trusts the connector to reveal anything. Such a
    /// connector's renders are never planned: what it revealed may live in
    /// its warm instance's state, and its answers need not be a function of
    /// its configuration.
    pub fn grants_any_reveal(&self) -> bool {
        !self.reveal.is_empty()
    }

    /// Whether the connector may reveal what `request` names: allowed,
    /// and granted reveal, on every reading. Audits nothing.
    pub fn may_reveal(&self, request: &SecretRequest) -> bool {
        let Ok(mut canonical) = self.canonical(request) else {
            return false;
        };
        let alternate = canonical.alternate.take();
        std::iter::once(canonical)
            .chain(alternate.map(|a| *a))
            .all(|reading| self.allow.check(&reading).is_ok() && self.grants(&reading).reveal)
    }

    /// Why a template's reference would be refused, if it would: malformed,
    /// or not allowed. For the operator (at load and by `keyward check`);
    /// the connector still cannot tell denied from missing.
    pub fn refusal(&self, request: &SecretRequest) -> Option<String> {
        let canonical = match self.canonical(request) {
            Ok(canonical) => canonical,
            Err(detail) => {
                return Some(format!("invalid reference `{}`: {detail}", Quoted(request)));
            }
        };
        let alternate = canonical.alternate.as_deref();
        match self.allow.check(&canonical) {
            Ok(_) => None,
            Err(_) if alternate.is_some_and(|a| self.allow.check(a).is_ok()) => None,
            Err(denial) => Some(format!(
                "`{}` ({}) is not allowed: {denial}",
                Quoted(request),
                canonical.name
            )),
        }
    }
}

impl ConnectorPolicy {
    /// A connector's policy under the host's namespace and the backend's
    /// identity.
    pub fn of(
        connector: &ConnectorConfig,
        namespace: &Namespace,
        identity: &BackendIdentity,
    ) -> Self {
        Self {
            allow: connector.allow.clone(),
            public: connector.public.clone(),
            reveal: connector.reveal.clone(),
            egress: connector.egress.clone(),
            namespace: namespace.clone(),
            identity: identity.clone(),
        }
    }

    /// References in a connector's configured templates that this policy
    /// refuses (malformed, or not allowed), one each, naming connector,
    /// field and column.
    pub fn refused_references(&self, connector: &ConnectorConfig) -> Vec<RefusedReference> {
        let mut refused = Vec::new();
        for (field, template) in &connector.fields {
            let Ok(template) = Template::parse(template) else {
                continue;
            };
            for placeholder in template.placeholders() {
                if let Some(why) = self.refusal(&placeholder.reference) {
                    refused.push(RefusedReference {
                        connector: connector.id.clone(),
                        field: field.clone(),
                        column: placeholder.column,
                        why,
                    });
                }
            }
        }
        refused
    }
}

/// A reference in a configured template that the connector's policy refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedReference {
    /// The connector id.
    pub connector: String,
    /// The field whose template holds it.
    pub field: String,
    /// 1-based character column of its placeholder.
    pub column: u32,
    /// Why it is refused.
    pub why: String,
}

impl fmt::Display for RefusedReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connectors.{}.config.{}, column {}: {}",
            self.connector, self.field, self.column, self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const GOOD: &str = r#"
[secrets]
namespace = "acme/prod"

[secrets.backend]
kind = "file"
path = "secrets.json"

[connectors.orders-db]
component = "postgres.wasm"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
"#;

    fn refused(c: &Config) -> Vec<RefusedReference> {
        let identity = c.secrets.identity(&Default::default());
        c.connectors
            .values()
            .flat_map(|connector| {
                ConnectorPolicy::of(connector, &c.secrets.namespace, &identity)
                    .refused_references(connector)
            })
            .collect()
    }

    #[test]
    fn refused_references_name_connector_field_and_column() {
        let text = GOOD.replace(
            "host = \"{{ secrets.host }}\"",
            "host = \"{{ secrets.host }}\"\nuser = \"u={{ secrets.other.user }}\"\n\
             arn = \"{{ arn:aws:secretsmanager:us-east-1:123456789012:secret:x/../db }}\"",
        );
        let c = Config::parse(&text, Path::new(".")).unwrap();
        let lines: Vec<String> = refused(&c).iter().map(|r| r.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("connectors.orders-db.config.arn, column 1: invalid reference")
        );
        assert_eq!(
            lines[1],
            "connectors.orders-db.config.user, column 3: `other[\"user\"]` (acme/prod/other) \
             is not allowed: no allow rule matches"
        );
        let public = GOOD.replace(
            "allow = [",
            "public = [\"a/**\"]\nreveal = [\"k#x\"]\nallow = [",
        );
        let c = Config::parse(&public, Path::new(".")).unwrap();
        assert!(refused(&c).is_empty());
    }
}
