//! Tenants: one keyward for many customers, each with its own backend,
//! namespace, cache and connectors. Two tenants with a secret of the same
//! name read their own values; a tenant removed or changed by a reload
//! leaves every other tenant's cache warm; a bad tenant file stops only
//! itself.

use std::path::Path;
use std::sync::Arc;

use keyward_host::{Config, Error, Keyward};
use keyward_test_support::Scratch;
use serde_json::json;

const CONFIG: &str = r#"
tenants_dir = "tenants"

[audit]
file = "audit.jsonl"
tracing = false

[secrets]
namespace = "platform/"
cache_ttl_ms = 600000
[secrets.backend]
kind = "file"
path = "secrets.json"

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db"]
"#;

/// A tenant file: its own backend file, the same namespace and connector
/// as every other tenant's.
fn tenant_file(secrets_file: &str) -> String {
    format!(
        r#"
namespace = "app/"
cache_ttl_ms = 600000
[backend]
kind = "file"
path = "{secrets_file}"

[connectors.echo]
component = "{}"
egress = ["echo.test"]
allow = ["db"]
"#,
        keyward_test_support::artifacts::ECHO
    )
}

/// A scratch directory with the default tenant's secrets and tenants `a`
/// and `b`, each with `app/db` in its own backend.
fn scratch() -> Scratch {
    let scratch = Scratch::new(CONFIG, &json!({ "platform/db": "default-db" }));
    let tenants = scratch.path().join("tenants");
    std::fs::create_dir(&tenants).expect("tenants dir");
    for id in ["a", "b"] {
        write(
            &tenants.join(format!("{id}-secrets.json")),
            &json!({ "app/db": format!("{id}-db") }).to_string(),
        );
        write(
            &tenants.join(format!("{id}.toml")),
            &tenant_file(&format!("{id}-secrets.json")),
        );
    }
    scratch
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

async fn keyward(scratch: &Scratch) -> Keyward {
    let config = Config::load(&scratch.config()).expect("config");
    assert!(
        config.tenant_errors.is_empty(),
        "{:?}",
        config.tenant_errors
    );
    Keyward::new(config).await.expect("keyward")
}

async fn db(k: &Keyward, tenant: &str) -> Result<String, Error> {
    let fields = [("a".to_string(), "{{ secrets.db }}".to_string())];
    let rendered = k.tenant(tenant)?.render_fields("echo", &fields).await?;
    Ok(rendered.get("a").expect("output a").to_string())
}

/// Calls that reached a tenant's backend.
fn upstream(k: &Keyward, tenant: &str) -> u64 {
    k.tenant(tenant)
        .expect("tenant")
        .upstream()
        .iter()
        .map(|(_, _, n)| n)
        .sum()
}

#[tokio::test]
async fn two_tenants_with_a_secret_of_the_same_name_read_their_own() {
    let s = scratch();
    let k = keyward(&s).await;
    assert_eq!(k.tenant_ids(), ["default", "a", "b"]);
    assert_eq!(db(&k, "a").await.unwrap(), "a-db");
    assert_eq!(db(&k, "b").await.unwrap(), "b-db");
    assert_eq!(db(&k, "default").await.unwrap(), "default-db");
    // The routes without a tenant are the default tenant's.
    let fields = [("a".to_string(), "{{ secrets.db }}".to_string())];
    let rendered = k.render_fields("echo", &fields).await.unwrap();
    assert_eq!(rendered.get("a"), Some("default-db"));
    let e = db(&k, "c").await.unwrap_err().to_string();
    assert_eq!(e, "unknown tenant `c`; configured: default, a, b");
    // One compiled component for the three tenants' connectors.
    assert_eq!(k.sandbox().compiled_components(), 1);
    // Each read is audited under its tenant's configured id.
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit file");
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let canonical_by_tenant: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["decision"] == "allowed")
        .map(|r| {
            (
                r["tenant"].as_str().unwrap(),
                r["canonical"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        canonical_by_tenant,
        [
            ("a", "app/db"),
            ("b", "app/db"),
            ("default", "platform/db"),
            ("default", "platform/db")
        ]
    );
}

#[tokio::test]
async fn removing_or_changing_a_tenant_leaves_the_others_caches_warm() {
    let s = scratch();
    let k = keyward(&s).await;
    db(&k, "a").await.unwrap();
    db(&k, "b").await.unwrap();
    let a = k.tenant("a").unwrap();
    let a_calls = upstream(&k, "a");
    // b removed, a new tenant c, and a's value changed behind its cache.
    let tenants = s.path().join("tenants");
    std::fs::remove_file(tenants.join("b.toml")).unwrap();
    write(
        &tenants.join("c-secrets.json"),
        &json!({ "app/db": "c-db" }).to_string(),
    );
    write(&tenants.join("c.toml"), &tenant_file("c-secrets.json"));
    write(
        &tenants.join("a-secrets.json"),
        &json!({ "app/db": "a-rotated" }).to_string(),
    );
    k.update_policy(&Config::load(&s.config()).unwrap())
        .await
        .unwrap();
    assert_eq!(k.tenant_ids(), ["default", "a", "c"]);
    assert!(matches!(db(&k, "b").await, Err(Error::UnknownTenant(_))));
    assert_eq!(db(&k, "c").await.unwrap(), "c-db");
    // a is the same tenant, its cache warm: the old value, no upstream call.
    assert!(Arc::ptr_eq(&a, &k.tenant("a").unwrap()));
    assert_eq!(db(&k, "a").await.unwrap(), "a-db");
    assert_eq!(upstream(&k, "a"), a_calls);
    // A tenant whose backend changed is opened anew, with a cache of its own.
    write(
        &tenants.join("a2-secrets.json"),
        &json!({ "app/db": "a-moved" }).to_string(),
    );
    write(&tenants.join("a.toml"), &tenant_file("a2-secrets.json"));
    k.update_policy(&Config::load(&s.config()).unwrap())
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &k.tenant("a").unwrap()));
    assert_eq!(db(&k, "a").await.unwrap(), "a-moved");
    assert_eq!(db(&k, "c").await.unwrap(), "c-db");
}

#[tokio::test]
async fn a_bad_tenant_file_stops_only_itself() {
    let s = scratch();
    write(
        &s.path().join("tenants/broken.toml"),
        "namespace = \"x/\"\n[backend\n",
    );
    let config = Config::load(&s.config()).expect("the configuration loads");
    let errors: Vec<String> = config
        .tenant_errors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("broken.toml: line 2, column"),
        "{}",
        errors[0]
    );
    let k = Keyward::new(config).await.expect("keyward");
    assert_eq!(k.tenant_ids(), ["default", "a", "b"]);
    assert_eq!(db(&k, "a").await.unwrap(), "a-db");
}
