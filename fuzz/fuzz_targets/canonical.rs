//! The reference canonicalizer and the allowlist on arbitrary references:
//! never panic, and whatever is accepted is a valid name inside the rules
//! (no `.`/`..`/empty segment but a leading `/`, at most 512 bytes, namespace prefix kept).
#![no_main]

use keyward_policy::name::{BackendIdentity, MAX_NAME_BYTES, Namespace, SecretName, canonicalize};
use keyward_policy::policy::{Allowlist, Rule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, Vec<String>, Option<String>, Option<String>)| {
    let (name, path, stage, id) = input;
    let namespace = Namespace::new("acme/prod/").expect("namespace");
    let backend = BackendIdentity {
        partition: "aws".into(),
        region: Some("us-east-1".into()),
        account_id: Some("123456789012".into()),
    };
    let _ = Rule::parse(&name);
    let Ok(canonical) = canonicalize(&name, &path, stage.as_deref(), id.as_deref(), &namespace, &backend) else {
        return;
    };
    let mut readings = vec![canonical.clone()];
    readings.extend(canonical.alternate.as_deref().cloned());
    for reading in readings {
        let full = reading.name.as_str();
        assert!(SecretName::new(full).is_ok());
        assert!(full.len() <= MAX_NAME_BYTES);
        // One leading `/` is allowed (path-style names); no other empty segment.
        let body = full.strip_prefix('/').unwrap_or(full);
        assert!(!body.split('/').any(|s| s.is_empty() || s == "." || s == ".."));
        if let Some(relative) = &reading.relative {
            assert_eq!(namespace.qualify(relative), full);
        }
        let rules = Allowlist::parse(&["db#user", "team/*", "**/x@AWSPENDING,version-id"]).expect("rules");
        let _ = rules.check(&reading);
    }
});
