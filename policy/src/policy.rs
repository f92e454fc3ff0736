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

    /// Whether the rule grants the `AWSPENDING` stage by name.
    pub fn grants_pending(&self) -> bool {
        self.stages
            .as_ref()
            .is_some_and(|stages| stages.iter().any(|s| s == AWSPENDING))
    }

    /// Whether a version this rule let through by its id may be served,
    /// given the staging labels the backend says it carries: the version
    /// under rotation (`AWSPENDING`) only if the rule grants that stage, so
    /// an id is never a way around a stage restriction.
    pub fn may_serve_version<S: AsRef<str>>(&self, served_stages: &[S]) -> bool {
        self.grants_pending() || !served_stages.iter().any(|s| s.as_ref() == AWSPENDING)
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
///
/// `**` stands for zero or more whole segments, but only where at least one
/// segment is left (`team/**` does not match `team`; `a/**/c` matches
/// `a/c`). Decided by dynamic programming over (pattern, name) suffixes, so
/// the cost is `O(pattern × name)` segment comparisons whatever the number of
/// `**`: a backtracking matcher is exponential in them.
fn glob_segments(pattern: &[String], name: &[&str]) -> bool {
    let n = name.len();
    // `next[j]`: the pattern after the current one matches `name[j..]`.
    let mut next: Vec<bool> = (0..=n).map(|j| j == n).collect();
    let mut here = vec![false; n + 1];
    for segment in pattern.iter().rev() {
        if segment == "**" {
            // here[j] = j < n && any(next[k] for k in j..=n)
            let mut any_after = next[n];
            here[n] = false;
            for j in (0..n).rev() {
                any_after |= next[j];
                here[j] = any_after;
            }
        } else {
            here[n] = false;
            for j in 0..n {
                here[j] = next[j + 1] && glob_one(segment, name[j]);
            }
        }
        std::mem::swap(&mut next, &mut here);
    }
    next[0]
}

/// Matches one segment against a pattern in which `*` is any run of
/// characters: the first piece is a prefix, the last a suffix, and each
/// piece between is found leftmost (greedy leftmost is exact for `*`-only
/// globs), so the cost is linear in the segment.
fn glob_one(pattern: &str, text: &str) -> bool {
    #[cfg(test)]
    tests::SEGMENT_COMPARISONS.with(|c| c.set(c.get() + 1));
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

    /// Whether no rule is listed (the list allows nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
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
    use std::cell::Cell;

    use super::*;
    use crate::name::{BackendIdentity, Namespace, canonicalize};

    thread_local! {
        /// Calls of `glob_one` on this thread: the matcher's cost.
        pub(super) static SEGMENT_COMPARISONS: Cell<u64> = const { Cell::new(0) };
    }

    /// The obvious backtracking matcher: the specification the linear one
    /// is checked against.
    fn reference_glob(pattern: &[String], name: &[&str]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((first, rest)) if first == "**" => {
                !name.is_empty() && (0..=name.len()).any(|skip| reference_glob(rest, &name[skip..]))
            }
            Some((first, rest)) => match name.split_first() {
                Some((segment, name_rest)) => {
                    reference_segment(first, segment) && reference_glob(rest, name_rest)
                }
                None => false,
            },
        }
    }

    /// `*` as any run of characters, by trying every split.
    fn reference_segment(pattern: &str, text: &str) -> bool {
        match pattern.find('*') {
            None => pattern == text,
            Some(star) => {
                let (head, tail) = (&pattern[..star], &pattern[star + 1..]);
                text.starts_with(head)
                    && (head.len()..=text.len()).any(|cut| {
                        text.is_char_boundary(cut) && reference_segment(tail, &text[cut..])
                    })
            }
        }
    }

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    #[test]
    fn the_linear_matcher_agrees_with_the_backtracking_specification() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let pattern_segments = ["**", "*", "a", "b", "a*", "*b", "a*b", "*a*", "ab", "*a*b*"];
        let name_segments = ["a", "b", "ab", "ba", "aab", "abab", "c", "abc"];
        let mut matched = 0;
        for _ in 0..20_000 {
            let pattern: Vec<String> = (0..1 + rng.below(5))
                .map(|_| rng.pick(&pattern_segments).to_string())
                .collect();
            let name: Vec<&str> = (0..1 + rng.below(6))
                .map(|_| rng.pick(&name_segments))
                .collect();
            let expected = reference_glob(&pattern, &name);
            assert_eq!(
                glob_segments(&pattern, &name),
                expected,
                "pattern {pattern:?}, name {name:?}"
            );
            matched += usize::from(expected);
        }
        assert!(matched > 1_000, "the cases exercise matches too: {matched}");
    }

    #[test]
    fn many_double_stars_against_a_deep_name_cost_pattern_times_name_comparisons() {
        // Four `**` against 300 segments: a backtracking matcher makes
        // billions of comparisons here (14.5 s per reference was measured).
        let rule = Rule::parse("**/s/**/s/**/s/**/never").unwrap();
        let name = vec!["s"; 300].join("/");
        SEGMENT_COMPARISONS.with(|c| c.set(0));
        assert!(!rule.matches_name(&name));
        let comparisons = SEGMENT_COMPARISONS.with(Cell::get);
        let bound = (rule.pattern.len() * 300) as u64;
        assert!(
            comparisons <= bound,
            "{comparisons} segment comparisons; at most {bound} expected"
        );
    }

    #[test]
    fn several_stars_in_one_segment() {
        assert!(allows(&["a*b*c"], "aXbYc", &[], None, None));
        assert!(allows(&["a*b*c"], "abc", &[], None, None));
        assert!(allows(&["*-*-prod"], "team-db-prod", &[], None, None));
        assert!(
            !allows(&["a*b*c"], "aXcYb", &[], None, None),
            "order matters"
        );
        assert!(
            !allows(&["a*b*c"], "aXbYcZ", &[], None, None),
            "suffix anchored"
        );
        assert!(
            !allows(&["a*b*c"], "XaYbc", &[], None, None),
            "prefix anchored"
        );
        assert!(
            !allows(&["*ab*ab"], "ab", &[], None, None),
            "pieces do not overlap"
        );
        assert!(allows(&["*ab*ab"], "abab", &[], None, None));
    }

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
    fn names_tells_whether_any_rule_names_a_secret() {
        let list = Allowlist::parse(&["db#user", "team/*@AWSCURRENT"]).unwrap();
        assert!(list.names("db"));
        assert!(list.names("team/a"));
        assert!(!list.names("team/a/b"));
        assert!(!list.names("other"));
        assert_eq!(list.rules[1].to_string(), "team/*@AWSCURRENT");
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
    fn a_version_id_grant_does_not_reach_the_pending_version() {
        let by_id = Rule::parse("db@version-id").unwrap();
        assert!(by_id.may_serve_version(&["AWSCURRENT"]));
        assert!(by_id.may_serve_version(&["AWSPREVIOUS", "custom"]));
        assert!(
            by_id.may_serve_version::<&str>(&[]),
            "a version with no stage"
        );
        assert!(!by_id.may_serve_version(&["AWSPENDING"]));
        assert!(!by_id.may_serve_version(&["custom", "AWSPENDING"]));
        let plain = Rule::parse("db").unwrap();
        assert!(!plain.may_serve_version(&["AWSPENDING"]));
        let pending = Rule::parse("db@version-id,AWSPENDING").unwrap();
        assert!(pending.grants_pending());
        assert!(pending.may_serve_version(&["AWSPENDING"]));
        assert!(
            !Rule::parse("db@AWSCURRENT,version-id")
                .unwrap()
                .grants_pending()
        );
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
