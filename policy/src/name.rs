//! Canonical secret names: the one form that policy checks and stores fetch.
//!
//! Every reference a guest sends is reduced to a [`SecretName`] (the full
//! name, namespace included) before anything else sees it, so the name the
//! allowlist approves is exactly the name that is fetched.

use std::fmt;

/// The longest secret name Secrets Manager accepts, in bytes.
pub const MAX_NAME_BYTES: usize = 512;
/// The longest staging label Secrets Manager accepts.
const MAX_STAGE_BYTES: usize = 256;
/// The longest version id accepted (Secrets Manager's are 32–64 characters).
const MAX_VERSION_ID_BYTES: usize = 64;

/// A validated, full secret name (namespace included).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// Validates a full name.
    pub fn new(name: &str) -> Result<Self, String> {
        validate_name(name)?;
        Ok(Self(name.to_string()))
    }

    /// The name as Secrets Manager knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({})", self.0)
    }
}

/// Letters, digits and `/_+=.@-`: the characters Secrets Manager allows.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}

/// Checks a name (relative or full) and says exactly what is wrong.
///
/// Secrets Manager allows path-style names that begin with `/` (`/app/db`),
/// so one leading `/` is accepted; every other empty segment (`a//b`, a
/// trailing `/`, `//a`), `.` and `..` are not.
pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "the name contains {}; only letters, digits and /_+=.@- are allowed",
            describe_char(c)
        ));
    }
    let body = name.strip_prefix('/').unwrap_or(name);
    for segment in body.split('/') {
        match segment {
            "" => {
                return Err(
                    "the name has an empty `/` segment (a trailing, doubled or lone `/`)".into(),
                );
            }
            "." | ".." => return Err(format!("the name has a `{segment}` segment")),
            _ => {}
        }
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("the character U+{:04X}", u32::from(c))
    } else {
        format!("`{c}`")
    }
}

/// Which version of a secret: a staging label or an exact id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// A staging label; `AWSCURRENT` when the reference names none.
    Stage(String),
    /// An exact version id.
    Id(String),
}

/// The default staging label.
pub const AWSCURRENT: &str = "AWSCURRENT";

impl VersionSelector {
    /// Builds a selector from a reference's optional fields.
    pub fn from_parts(stage: Option<&str>, id: Option<&str>) -> Result<Self, String> {
        match (stage, id) {
            (Some(_), Some(_)) => {
                Err("a version stage and a version id are exclusive; give one".into())
            }
            (None, Some(id)) => {
                if id.is_empty()
                    || id.len() > MAX_VERSION_ID_BYTES
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(format!(
                        "a version id is 1 to {MAX_VERSION_ID_BYTES} letters, digits, `-` or `_`"
                    ));
                }
                Ok(Self::Id(id.to_string()))
            }
            (Some(stage), None) => {
                if stage.is_empty()
                    || stage.len() > MAX_STAGE_BYTES
                    || !stage
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_+=.@-".contains(c))
                {
                    return Err(format!(
                        "a version stage is 1 to {MAX_STAGE_BYTES} letters, digits or _+=.@-"
                    ));
                }
                Ok(Self::Stage(stage.to_string()))
            }
            (None, None) => Ok(Self::Stage(AWSCURRENT.to_string())),
        }
    }
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage(stage) => write!(f, "stage {stage}"),
            Self::Id(id) => write!(f, "version {id}"),
        }
    }
}

/// The namespace every relative name is read under, such as `retool/prod/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    /// `retool/prod` and `retool/prod/` are the same namespace; empty means none.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() {
            return Ok(Self::default());
        }
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        validate_name(trimmed).map_err(|e| format!("namespace `{prefix}`: {e}"))?;
        Ok(Self(format!("{trimmed}/")))
    }

    /// The prefix, ending in `/`, or empty.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full name of a relative one.
    pub fn qualify(&self, relative: &str) -> String {
        format!("{}{relative}", self.0)
    }

    /// The name relative to this namespace, if it lies inside it.
    pub fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(&self.0).filter(|rest| !rest.is_empty())
    }
}

/// Where ARNs must point: the backend's partition, region and account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendIdentity {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The backend's region, if known.
    pub region: Option<String>,
    /// The backend's account id, if known.
    pub account_id: Option<String>,
}

/// A reference reduced to what is checked and fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalRef {
    /// Full name, namespace included.
    pub name: SecretName,
    /// The same name relative to the namespace; `None` if outside it.
    pub relative: Option<String>,
    /// JSON keys into the value.
    pub path: Vec<String>,
    /// Which version.
    pub version: VersionSelector,
    /// For a complete ARN (its name ends in `-` and six letters or digits):
    /// the ARN itself, which the backend is asked for, so that the secret
    /// it named and no other is read (after a secret is deleted and
    /// recreated under the same name, an old ARN finds nothing, as in ECS).
    /// Policy is decided on `name`.
    pub arn: Option<String>,
    /// For an ARN whose name ends in `-` and six letters or digits: the
    /// name read literally (a partial ARN of a secret whose own name ends
    /// so), tried when the full-ARN reading `name` does not exist. Policy
    /// is checked on each reading separately.
    pub alternate: Option<Box<CanonicalRef>>,
}

/// Reduces a reference to canonical form, or says why it is invalid.
pub fn canonicalize(
    name: &str,
    path: &[String],
    stage: Option<&str>,
    version_id: Option<&str>,
    namespace: &Namespace,
    backend: &BackendIdentity,
) -> Result<CanonicalRef, String> {
    let version = VersionSelector::from_parts(stage, version_id)?;
    if path.iter().any(String::is_empty) {
        return Err("a JSON key in the path is empty".into());
    }
    let reading = |full: &str| -> Result<CanonicalRef, String> {
        Ok(CanonicalRef {
            name: SecretName::new(full)?,
            relative: namespace.relative(full).map(str::to_string),
            path: path.to_vec(),
            version: version.clone(),
            arn: None,
            alternate: None,
        })
    };
    if !name.starts_with("arn:") {
        validate_name(name)?;
        return reading(&namespace.qualify(name));
    }
    let resource = resource_from_arn(name, backend)?;
    match strip_random_suffix(resource) {
        Some(base) => Ok(CanonicalRef {
            arn: Some(name.to_string()),
            alternate: Some(Box::new(reading(resource)?)),
            ..reading(base)?
        }),
        None => reading(resource),
    }
}

/// The longest ARN accepted (IAM's limit for any ARN).
const MAX_ARN_BYTES: usize = 2048;
/// The most characters of one ARN field quoted in an error.
const MAX_QUOTED_FIELD: usize = 64;

/// Text a guest wrote, for an error message or an audit record: control
/// characters escaped (so it cannot forge a log line) and cut at
/// `max_chars` characters with its true length noted. The one quoting rule
/// for guest text, here and in the host.
pub fn quote_untrusted(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    out
}

/// A field of a guest's ARN, quoted.
fn quoted(field: &str) -> String {
    quote_untrusted(field, MAX_QUOTED_FIELD)
}

/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:RESOURCE` to RESOURCE,
/// after checking that it points at this backend.
fn resource_from_arn<'a>(arn: &'a str, backend: &BackendIdentity) -> Result<&'a str, String> {
    if arn.len() > MAX_ARN_BYTES {
        return Err(format!(
            "the ARN is {} bytes long; at most {MAX_ARN_BYTES} are allowed",
            arn.len()
        ));
    }
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let [_, partition, service, region, account, kind, resource] = parts[..] else {
        return Err("expected arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME".into());
    };
    if service != "secretsmanager" {
        return Err(format!(
            "the ARN's service is `{}`, not `secretsmanager`",
            quoted(service)
        ));
    }
    if kind != "secret" {
        return Err(format!(
            "the ARN's resource type is `{}`, not `secret`",
            quoted(kind)
        ));
    }
    if resource.contains(':') {
        return Err(
            "the ARN has fields after the secret name; pass JSON keys and versions separately"
                .into(),
        );
    }
    if partition != backend.partition {
        return Err(format!(
            "the ARN's partition `{}` is not this host's `{}`",
            quoted(partition),
            backend.partition
        ));
    }
    match &backend.region {
        Some(expected) if expected == region => {}
        Some(expected) => {
            return Err(format!(
                "the ARN's region `{}` is not this host's `{expected}`",
                quoted(region)
            ));
        }
        None => return Err("this host has no region configured, so ARNs cannot be checked".into()),
    }
    match &backend.account_id {
        Some(expected) if expected == account => {}
        Some(_) => {
            return Err(format!(
                "the ARN's account `{}` is not this host's account",
                quoted(account)
            ));
        }
        None => {
            return Err("this host has no account id configured, so ARNs cannot be checked".into());
        }
    }
    Ok(resource)
}

/// A full ARN ends the name with `-` and six random letters or digits;
/// the name without them, if `resource` ends so.
fn strip_random_suffix(resource: &str) -> Option<&str> {
    let cut = resource.len().checked_sub(7)?;
    let suffix = resource.get(cut + 1..)?;
    let dash = resource.as_bytes().get(cut) == Some(&b'-');
    (cut > 0 && dash && suffix.chars().all(|c| c.is_ascii_alphanumeric())).then(|| &resource[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> BackendIdentity {
        BackendIdentity {
            partition: "aws".into(),
            region: Some("us-east-1".into()),
            account_id: Some("123456789012".into()),
        }
    }

    fn canon(name: &str) -> Result<CanonicalRef, String> {
        canonicalize(
            name,
            &[],
            None,
            None,
            &Namespace::new("acme/prod").unwrap(),
            &backend(),
        )
    }

    #[test]
    fn relative_names_are_qualified() {
        let c = canon("db").unwrap();
        assert_eq!(c.name.as_str(), "acme/prod/db");
        assert_eq!(c.relative.as_deref(), Some("db"));
        assert_eq!(c.version, VersionSelector::Stage("AWSCURRENT".into()));
    }

    #[test]
    fn full_arns_reduce_to_names() {
        let c = canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db-AbC123")
            .unwrap();
        assert_eq!(c.name.as_str(), "acme/prod/db");
        let partial =
            canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db").unwrap();
        assert_eq!(partial.name.as_str(), "acme/prod/db");
        let outside =
            canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:other/db-AbC123").unwrap();
        assert_eq!(outside.relative, None);
    }

    #[test]
    fn a_name_ending_like_a_suffix_keeps_its_literal_reading() {
        let c = canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db-backup")
            .unwrap();
        assert_eq!(c.name.as_str(), "acme/prod/db");
        let literal = c.alternate.expect("literal reading");
        assert_eq!(literal.name.as_str(), "acme/prod/db-backup");
        assert_eq!(literal.relative.as_deref(), Some("db-backup"));
        // A relative name is never read as an ARN.
        assert_eq!(
            canon("db-backup").unwrap().name.as_str(),
            "acme/prod/db-backup"
        );
    }

    #[test]
    fn foreign_arns_are_invalid() {
        assert!(
            canon("arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme/prod/db")
                .unwrap_err()
                .contains("region")
        );
        assert!(
            canon("arn:aws:secretsmanager:us-east-1:999999999999:secret:acme/prod/db")
                .unwrap_err()
                .contains("account")
        );
        assert!(
            canon("arn:aws-cn:secretsmanager:us-east-1:123456789012:secret:acme/prod/db")
                .unwrap_err()
                .contains("partition")
        );
        assert!(canon("arn:aws:ssm:us-east-1:123456789012:parameter:x").is_err());
    }

    #[test]
    fn traversal_and_bad_characters_are_invalid() {
        for bad in [
            "../other/x",
            "a/../b",
            "./a",
            "a//b",
            "//a",
            "/",
            "a/",
            "",
            " a",
            "a\0b",
            "%2e%2e/x",
            "a%2Fb",
            "a\nb",
        ] {
            assert!(canon(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(canon(&"a".repeat(600)).unwrap_err().contains("600 bytes"));
    }

    #[test]
    fn path_style_names_beginning_with_a_slash_are_referenceable() {
        let none = Namespace::default();
        let read = |name: &str, namespace: &Namespace| {
            canonicalize(name, &[], None, None, namespace, &backend())
        };
        let c = read("/app/db", &none).unwrap();
        assert_eq!(c.name.as_str(), "/app/db");
        assert_eq!(c.relative.as_deref(), Some("/app/db"));
        let arn = read(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:/app/db-AbC123",
            &none,
        )
        .unwrap();
        assert_eq!(arn.name.as_str(), "/app/db");
        let slashed = Namespace::new("/app").unwrap();
        assert_eq!(slashed.as_str(), "/app/");
        let c = read("db", &slashed).unwrap();
        assert_eq!(c.name.as_str(), "/app/db");
        assert_eq!(c.relative.as_deref(), Some("db"));
        // Under a namespace, a leading `/` makes an empty inner segment.
        assert!(read("/db", &slashed).is_err());
        for bad in [
            "//app/db",
            "/",
            "/app//db",
            "/app/db/",
            "/./db",
            "/../db",
            "/app/../db",
        ] {
            assert!(read(bad, &none).is_err(), "{bad:?} should be invalid");
        }
        assert!(Namespace::new("/").is_err());
        assert!(Namespace::new("//app").is_err());
    }

    #[test]
    fn a_complete_arn_is_fetched_as_written_and_decided_on_its_name() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db-AbC123";
        let c = canon(arn).unwrap();
        assert_eq!(c.arn.as_deref(), Some(arn));
        assert_eq!(c.name.as_str(), "acme/prod/db");
        let literal = c.alternate.expect("the literal reading");
        assert_eq!(literal.arn, None, "the literal reading is read by name");
        assert_eq!(
            canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db")
                .unwrap()
                .arn,
            None,
            "a partial ARN is read by name"
        );
        assert_eq!(canon("db").unwrap().arn, None);
    }

    #[test]
    fn the_random_suffix_is_a_dash_and_exactly_six_letters_or_digits() {
        let arn = |name: &str| {
            canon(&format!(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/{name}"
            ))
            .unwrap()
        };
        assert_eq!(arn("db-AbC123").name.as_str(), "acme/prod/db");
        assert_eq!(arn("db-abcdef").name.as_str(), "acme/prod/db");
        // Six alphanumerics without the dash are part of the name.
        let plain = arn("dbxAbC123");
        assert_eq!(plain.name.as_str(), "acme/prod/dbxAbC123");
        assert!(plain.alternate.is_none() && plain.arn.is_none());
        // Five or seven characters after the dash: no suffix.
        assert_eq!(arn("db-AbC12").name.as_str(), "acme/prod/db-AbC12");
        assert_eq!(arn("db-AbC1234").name.as_str(), "acme/prod/db-AbC1234");
        // A non-alphanumeric character among the six: no suffix.
        assert_eq!(arn("db-AbC_23").name.as_str(), "acme/prod/db-AbC_23");
        assert_eq!(arn("db-AbC.23").name.as_str(), "acme/prod/db-AbC.23");
        // A name that is nothing but a suffix keeps it.
        let bare = canonicalize(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:-AbC123",
            &[],
            None,
            None,
            &Namespace::default(),
            &backend(),
        )
        .unwrap();
        assert_eq!(bare.name.as_str(), "-AbC123");
    }

    #[test]
    fn service_and_resource_type_are_checked_each_on_its_own() {
        let e = canon("arn:aws:ssm:us-east-1:123456789012:secret:acme/prod/db").unwrap_err();
        assert!(e.contains("service is `ssm`"), "{e}");
        let e = canon("arn:aws:secretsmanager:us-east-1:123456789012:parameter:acme/prod/db")
            .unwrap_err();
        assert!(e.contains("resource type is `parameter`"), "{e}");
        let e = canon("arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db:k")
            .unwrap_err();
        assert!(e.contains("fields after the secret name"), "{e}");
        assert!(canon("arn:aws:secretsmanager:us-east-1").is_err());
    }

    #[test]
    fn arn_errors_escape_control_characters_and_stay_short() {
        let e =
            canon("arn:aws:secrets\u{1b}[31mmanager:us-east-1:123456789012:secret:x").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e:?}");
        assert!(e.contains("\\u{1b}"), "{e:?}");
        let e = canon(&format!(
            "arn:aws:secretsmanager:{}:123456789012:secret:x",
            "r".repeat(1000)
        ))
        .unwrap_err();
        assert!(e.len() < 200, "{} bytes: {e}", e.len());
        let e = canon(&format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
            "x".repeat(3000)
        ))
        .unwrap_err();
        assert!(e.contains("3053 bytes long; at most 2048"), "{e}");
        let e =
            canon("arn:aws:secretsmanager:us\nfake:123456789012:secret:acme/prod/db").unwrap_err();
        assert!(!e.contains('\n'), "{e:?}");
    }

    #[test]
    fn names_selectors_and_bad_characters_display_as_written() {
        let name = SecretName::new("acme/prod/db").unwrap();
        assert_eq!(name.to_string(), "acme/prod/db");
        assert_eq!(format!("{name:?}"), "SecretName(acme/prod/db)");
        assert_eq!(
            VersionSelector::Stage("AWSPREVIOUS".into()).to_string(),
            "stage AWSPREVIOUS"
        );
        assert_eq!(VersionSelector::Id("v1".into()).to_string(), "version v1");
        let e = validate_name("a\u{7}b").unwrap_err();
        assert!(e.contains("the character U+0007"), "{e}");
        let e = validate_name("a b").unwrap_err();
        assert!(e.contains("the character U+0020"), "{e}");
        let e = validate_name("a%b").unwrap_err();
        assert!(e.contains("contains `%`"), "{e}");
    }

    #[test]
    fn an_arn_of_exactly_2048_bytes_is_judged_by_its_name() {
        let prefix = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";
        let at_limit = format!("{prefix}{}", "n".repeat(2048 - prefix.len()));
        assert_eq!(at_limit.len(), 2048);
        let e = canon(&at_limit).unwrap_err();
        assert!(e.contains("the name is") && !e.contains("ARN is"), "{e}");
    }

    #[test]
    fn names_are_limited_to_512_bytes() {
        let ns = Namespace::default();
        let at_limit = "n".repeat(MAX_NAME_BYTES);
        assert!(canonicalize(&at_limit, &[], None, None, &ns, &backend()).is_ok());
        let over = "n".repeat(MAX_NAME_BYTES + 1);
        let e = canonicalize(&over, &[], None, None, &ns, &backend()).unwrap_err();
        assert!(e.contains("513 bytes long; at most 512"), "{e}");
    }

    #[test]
    fn stages_are_1_to_256_of_the_allowed_characters() {
        let stage = |s: &str| VersionSelector::from_parts(Some(s), None);
        assert!(stage(&"S".repeat(256)).is_ok());
        assert!(stage(&"S".repeat(257)).is_err());
        assert!(stage("").is_err());
        assert!(stage("a_b+c=d.e@f-g").is_ok());
        for bad in ["a b", "a/b", "a:b", "a\u{1b}", "é"] {
            assert!(stage(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_ids_are_1_to_64_letters_digits_dashes_or_underscores() {
        let id = |s: &str| VersionSelector::from_parts(None, Some(s));
        assert_eq!(
            id("a1-B2_c3").unwrap(),
            VersionSelector::Id("a1-B2_c3".into())
        );
        assert!(id(&"v".repeat(64)).is_ok());
        let e = id(&"v".repeat(65)).unwrap_err();
        assert!(e.contains("1 to 64"), "{e}");
        assert!(id("").is_err());
        for bad in ["a b", "a.b", "a/b", "a:b", "a@b", "a\u{0}", "ü"] {
            assert!(id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stage_and_id_are_exclusive() {
        let ns = Namespace::default();
        assert!(canonicalize("db", &[], Some("AWSCURRENT"), Some("v1"), &ns, &backend()).is_err());
        let c = canonicalize("db", &[], None, Some("v1"), &ns, &backend()).unwrap();
        assert_eq!(c.version, VersionSelector::Id("v1".into()));
    }
}
