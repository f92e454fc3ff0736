//! `keyward serve` with tenants, as a real process over its real socket:
//! tenant routes render each tenant's own secrets; the tenant API adds,
//! replaces and removes a tenant's file atomically and reloads, leaving
//! the other tenants' caches warm; a tenant file the API is given is
//! checked before it is written; a bad file written by hand stops only
//! itself.

use keyward_test_support::{CANARY, Scratch, artifacts};
use serde_json::{Value, json};

mod common;

use common::{CONFIG, MASKED, Server, TOKEN, secrets};

/// A tenant's file: its own secrets file, namespace `app/`, the echo
/// connector reading `db`.
fn tenant_file(secrets_file: &str) -> String {
    format!(
        "namespace = \"app/\"\n[backend]\nkind = \"file\"\npath = \"{secrets_file}\"\n\
         [connectors.echo]\ncomponent = \"{}\"\negress = [\"echo.test\"]\nallow = [\"db\"]\n",
        artifacts::ECHO
    )
}

fn start() -> Server {
    let config = format!("tenants_dir = \"tenants\"\n{}", CONFIG.replace("{SERVER}", ""));
    let scratch = Scratch::new(&config, &secrets());
    let tenants = scratch.path().join("tenants");
    std::fs::create_dir(&tenants).expect("tenants dir");
    for id in ["a", "b"] {
        let secrets = json!({ "app/db": format!("{id}-db") }).to_string();
        std::fs::write(tenants.join(format!("{id}.json")), secrets).expect("secrets");
        std::fs::write(tenants.join(format!("{id}.toml")), tenant_file(&format!("{id}.json")))
            .expect("tenant file");
    }
    Server::start_with(scratch)
}

/// Renders `{{ secrets.db }}` through `tenant`'s echo connector.
async fn db(server: &Server, tenant: &str) -> (u16, Value) {
    let body = json!({ "fields": { "a": "{{ secrets.db }}" }, "reveal": true }).to_string();
    server
        .call("POST", &format!("/v1/tenants/{tenant}/connectors/echo/render"), Some(TOKEN), &[], body)
        .await
}

fn value(answer: &Value) -> &str {
    answer["outputs"][0]["value"].as_str().unwrap_or_default()
}

/// A tenant's value changed in its file behind its cache (TTL: the
/// default, minutes) is seen only by a cache opened anew: while a render
/// answers the old value, that tenant's cache stayed warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_api_adds_replaces_and_removes_tenants_and_leaves_the_others_warm() {
    let server = start();
    let (status, answer) = server.call("GET", "/v1/tenants", Some(MASKED), &[], "").await;
    assert_eq!((status, answer), (200, json!({ "tenants": ["default", "a", "b"] })));
    let (status, a) = db(&server, "a").await;
    assert_eq!((status, value(&a)), (200, "a-db"), "{a}");
    let (status, b) = db(&server, "b").await;
    assert_eq!((status, value(&b)), (200, "b-db"));
    // a's value changes behind its warm cache.
    let tenants = server.scratch.path().join("tenants");
    std::fs::write(tenants.join("a.json"), json!({ "app/db": "a-rotated" }).to_string()).unwrap();

    // Add c through the API; a bad file is refused before it is written.
    std::fs::write(tenants.join("c.json"), json!({ "app/db": "c-db" }).to_string()).unwrap();
    let bad = tenant_file("c.json").replace("kind = \"file\"", "kind = \"ftp\"");
    let (status, refused) = server.call("PUT", "/v1/tenants/c", Some(TOKEN), &[], bad).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_tenant")), "{refused}");
    assert!(!tenants.join("c.toml").exists(), "a refused file is not written");
    let (status, _) = server
        .call("PUT", "/v1/tenants/c", Some(MASKED), &[], tenant_file("c.json"))
        .await;
    assert_eq!(status, 403, "the masked token manages no tenants");
    let (status, added) = server
        .call("PUT", "/v1/tenants/c", Some(TOKEN), &[], tenant_file("c.json"))
        .await;
    assert_eq!((status, added), (200, json!({ "tenant": "c", "outcome": "created" })));
    assert_eq!(std::fs::read_to_string(tenants.join("c.toml")).unwrap(), tenant_file("c.json"));
    let (_, c) = db(&server, "c").await;
    assert_eq!(value(&c), "c-db");

    // Remove b: gone, and a's cache still warm (its old value).
    let (status, removed) = server.call("DELETE", "/v1/tenants/b", Some(TOKEN), &[], "").await;
    assert_eq!((status, removed), (200, json!({ "tenant": "b", "outcome": "removed" })));
    assert!(!tenants.join("b.toml").exists());
    let (status, gone) = db(&server, "b").await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("unknown_tenant")), "{gone}");
    let (_, a) = db(&server, "a").await;
    assert_eq!(value(&a), "a-db", "a's cache stayed warm through two reloads");

    // The routes without a tenant are the default tenant's.
    let body = json!({ "fields": { "a": "{{ secrets.db.user }}" }, "reveal": true }).to_string();
    let (status, default) = server
        .call("POST", "/v1/connectors/echo/render", Some(TOKEN), &[], body)
        .await;
    assert_eq!((status, value(&default)), (200, "app"));

    // A bad file written by hand stops only itself; the reload says so.
    std::fs::write(tenants.join("broken.toml"), "namespace = \"x/\"\n[backend\n").unwrap();
    let (status, reloaded) = server.call("POST", "/v1/reload", Some(TOKEN), &[], "").await;
    assert_eq!(status, 200, "{reloaded}");
    let errors = reloaded["tenant_errors"].as_array().expect("tenant errors");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].as_str().unwrap().contains("broken.toml: line 2, column"), "{errors:?}");
    let (_, c) = db(&server, "c").await;
    assert_eq!(value(&c), "c-db");
    assert!(!server.stderr().contains(CANARY));
}
