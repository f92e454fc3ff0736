//! A connector's allowlist: which secrets, keys and versions it may read.
//!
//! Rules are written relative to the namespace:
//!
//! | rule                      | allows                                              |
//! |---------------------------|-----------------------------------------------------|
//! | `db`                      | the secret `db`                                     |
//! | `team/*`                  | `team/a`, not `team/a/b` (`*` stays in one segment) |
//! | `team/**`                 | everything below `team/`                            |
//! | `db#password`             | only the JSON key `password` of `db`                |
//! | `db@AWSPENDING,AWSCURRENT`| only those staging labels                           |
//! | `db@version-id`           | explicit version ids                                |
//!
//! Without `@`, a rule allows every staging label except `AWSPENDING` and no
//! explicit version ids: reading an unreleased or pinned version must be
//! granted. Nothing is allowed by default.

use std::fmt;

use crate::name::{CanonicalRef, VersionSelector, validate_name};

/// The staging label of a rotation in progress.
const AWSPENDING: &str = "AWSPENDING";
/// The `@` token that grants explicit version ids.
const VERSION_ID_GRANT: &str = "version-id";

/// One parsed allowlist rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    text: String,
    pattern: Vec<String>,
    key: Option<String>,
    stages: Option<Vec<String>>,
    version_ids: bool,
}

impl Rule {
    /// Parses `PATTERN[#KEY][@STAGE,...]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (rest, grants) = match text.split_once('@') {
            Some((rest, grants)) => (rest, Some(grants)),
            None => (text, None),
        };
        let (pattern, key) = match rest.split_once('#') {
            Some((pattern, "")) => {
                return Err(format!("rule `{text}`: empty key after `#` ({pattern})"));
            }
            Some((pattern, key)) => (pattern, Some(key.to_string())),
            None => (rest, None),
        };
        let literal = pattern.replace("**", "x").replace('*', "x");
        validate_name(&literal).map_err(|e| format!("rule `{text}`: {e}"))?;
        let segments: Vec<String> = pattern.split('/').map(str::to_string).collect();
        if segments.iter().any(|s| s.contains("**") && s != "**") {
            return Err(format!("rule `{text}`: `**` must be a whole segment"));
        }
        let (mut stages, mut version_ids) = (None, false);
        if let Some(grants) = grants {
            let mut list = Vec::new();
            for grant in grants.split(',') {
                if grant == VERSION_ID_GRANT {
                    version_ids = true;
                } else {
                    VersionSelector::from_parts(Some(grant), None)
                        .map_err(|e| format!("rule `{text}`: {e}"))?;
                    list.push(grant.to_string());
                }
            }
            stages = Some(list);
        }
        Ok(Self {
            text: text.to_string(),
            pattern: segments,
            key,
            stages,
            version_ids,
        })
    }

    /// Whether the rule's pattern matches a relative name (ignoring key and stage).
    pub fn matches_name(&self, relative: &str) -> bool {
        let name: Vec<&str> = relative.split('/').collect();
        glob_segments(&self.pattern, &name)
    }

    fn check(&self, reference: &CanonicalRef, relative: &str) -> Result<(), Denial> {
        if !self.matches_name(relative) {
            return Err(Denial::NoRule);
        }
        if let Some(key) = &self.key
            && reference.path.first() != Some(key)
        {
            return Err(Denial::Rule {
                rule: self.text.clone(),
                why: format!("only key `{key}` is allowed"),
            });
        }
        let allowed = match (&reference.version, &self.stages) {
            (VersionSelector::Id(_), _) => self.version_ids,
            (VersionSelector::Stage(stage), Some(stages)) => stages.contains(stage),
            (VersionSelector::Stage(stage), None) => stage != AWSPENDING,
        };
        if allowed {
            Ok(())
        } else {
            Err(Denial::Rule {
                rule: self.text.clone(),
                why: format!("{} is not granted", reference.version),
            })
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matches name segments against pattern segments with `*` and `**`.
fn glob_segments(pattern: &[String], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=name.len()).any(|skip| glob_segments(rest, &name[skip..])) && !name.is_empty()
        }
        Some((first, rest)) => match name.split_first() {
            Some((segment, name_rest)) => {
                glob_one(first, segment) && glob_segments(rest, name_rest)
            }
            None => false,
        },
    }
}

/// Matches one segment against a pattern in which `*` is any run of characters.
fn glob_one(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part) && rest.len() >= part.len();
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Why a reference was denied (for the audit record, never for the guest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The name lies outside the host's namespace.
    OutsideNamespace,
    /// No rule names this secret.
    NoRule,
    /// A rule names the secret but not this key or version.
    Rule {
        /// The rule as written.
        rule: String,
        /// What it does not grant.
        why: String,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::OutsideNamespace => f.write_str("outside the namespace"),
            Denial::NoRule => f.write_str("no allow rule matches"),
            Denial::Rule { rule, why } => write!(f, "rule `{rule}`: {why}"),
        }
    }
}

/// A connector's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    /// Parses every rule; the error names the rule.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, String> {
        Ok(Self {
            rules: rules
                .iter()
                .map(|r| Rule::parse(r.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Allowed: the rule that allowed it. Denied: the most specific reason.
    pub fn check(&self, reference: &CanonicalRef) -> Result<&Rule, Denial> {
        let Some(relative) = reference.relative.as_deref() else {
            return Err(Denial::OutsideNamespace);
        };
        let mut denial = Denial::NoRule;
        for rule in &self.rules {
            match rule.check(reference, relative) {
                Ok(()) => return Ok(rule),
                Err(d @ Denial::Rule { .. }) => denial = d,
                Err(_) => {}
            }
        }
        Err(denial)
    }

    /// Whether any rule names this relative name at all.
    pub fn names(&self, relative: &str) -> bool {
        self.rules.iter().any(|r| r.matches_name(relative))
    }

    /// The JSON keys reads of `relative` are limited to (`db#password`
    /// rules); empty when a rule grants the whole secret or none names it.
    pub fn keys(&self, relative: &str) -> Vec<&str> {
        let mut keys = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches_name(relative)) {
            match &rule.key {
                None => return Vec::new(),
                Some(key) if !keys.contains(&key.as_str()) => keys.push(key.as_str()),
                Some(_) => {}
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{BackendIdentity, Namespace, canonicalize};

    fn reference(name: &str, path: &[&str], stage: Option<&str>, id: Option<&str>) -> CanonicalRef {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        canonicalize(
            name,
            &path,
            stage,
            id,
            &Namespace::new("ns/").unwrap(),
            &BackendIdentity::default(),
        )
        .unwrap()
    }

    fn allows(
        rules: &[&str],
        name: &str,
        path: &[&str],
        stage: Option<&str>,
        id: Option<&str>,
    ) -> bool {
        Allowlist::parse(rules)
            .unwrap()
            .check(&reference(name, path, stage, id))
            .is_ok()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "db", &[], None, None));
    }

    #[test]
    fn exact_and_globs() {
        assert!(allows(&["db"], "db", &["password"], None, None));
        assert!(!allows(&["db"], "db2", &[], None, None));
        assert!(allows(&["team/*"], "team/a", &[], None, None));
        assert!(
            !allows(&["team/*"], "team/a/b", &[], None, None),
            "`*` must not cross `/`"
        );
        assert!(!allows(&["team/*"], "team", &[], None, None));
        assert!(allows(&["team/**"], "team/a/b", &[], None, None));
        assert!(!allows(&["team/**"], "team", &[], None, None));
        assert!(allows(&["**"], "anything/at/all", &[], None, None));
        assert!(allows(&["db_*_ro"], "db_orders_ro", &[], None, None));
        assert!(!allows(&["db_*_ro"], "db_orders_rw", &[], None, None));
        assert!(allows(&["a/**/c"], "a/x/y/c", &[], None, None));
        assert!(allows(&["a/**/c"], "a/c", &[], None, None));
    }

    #[test]
    fn key_restriction() {
        assert!(allows(&["db#user"], "db", &["user"], None, None));
        assert!(!allows(&["db#user"], "db", &["password"], None, None));
        assert!(
            !allows(&["db#user"], "db", &[], None, None),
            "the whole secret is more than one key"
        );
    }

    #[test]
    fn keys_lists_what_key_rules_limit_a_secret_to() {
        let list =
            Allowlist::parse(&["db#user", "db#password", "db#user", "api", "api#x"]).unwrap();
        assert_eq!(list.keys("db"), ["user", "password"]);
        assert!(list.keys("api").is_empty(), "a whole-secret rule wins");
        assert!(list.keys("other").is_empty());
    }

    #[test]
    fn stage_restriction() {
        assert!(allows(&["db"], "db", &[], Some("AWSPREVIOUS"), None));
        assert!(!allows(&["db"], "db", &[], Some("AWSPENDING"), None));
        assert!(!allows(&["db"], "db", &[], None, Some("v1")));
        assert!(allows(
            &["db@AWSPENDING"],
            "db",
            &[],
            Some("AWSPENDING"),
            None
        ));
        assert!(!allows(&["db@AWSPENDING"], "db", &[], None, None));
        assert!(allows(&["db@version-id"], "db", &[], None, Some("v1")));
    }

    #[test]
    fn denial_names_the_deciding_rule() {
        let list = Allowlist::parse(&["db#user"]).unwrap();
        let denial = list
            .check(&reference("db", &["password"], None, None))
            .unwrap_err();
        assert_eq!(
            denial.to_string(),
            "rule `db#user`: only key `user` is allowed"
        );
    }

    #[test]
    fn bad_rules_are_errors() {
        for bad in ["", "a//b", "../x", "db#", "a**b/c", "db@", "db@bad stage"] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
