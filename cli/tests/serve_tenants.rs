//! `keyward serve` with tenants, as a real process over its real socket:
//! tenant routes render each tenant's own secrets; the tenant API adds,
//! replaces and removes a tenant's file atomically and reloads, leaving
//! the other tenants' caches warm; a tenant file the API is given is
//! checked before it is written; a bad file written by hand stops only
//! itself.

use keyward_test_support::{CANARY, Fault, FaultProxy, Moto, Scratch, artifacts};
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

/// A scratch directory whose configuration (with `server_settings` in its
/// `[server]` table) names `tenants_dir = "tenants"`, holding `files`.
fn scratch_with_tenants(server_settings: &str, files: &[(String, String)]) -> Scratch {
    let config = format!(
        "tenants_dir = \"tenants\"\n{}",
        CONFIG.replace("{SERVER}", server_settings)
    );
    let scratch = Scratch::new(&config, &secrets());
    let tenants = scratch.path().join("tenants");
    std::fs::create_dir(&tenants).expect("tenants dir");
    for (name, text) in files {
        std::fs::write(tenants.join(name), text).expect("tenant file");
    }
    scratch
}

/// Tenants `a` and `b`, each with `app/db` = `<id>-db` in its own file.
fn file_tenants() -> Vec<(String, String)> {
    ["a", "b"]
        .iter()
        .flat_map(|id| {
            [
                (
                    format!("{id}.json"),
                    json!({ "app/db": format!("{id}-db") }).to_string(),
                ),
                (format!("{id}.toml"), tenant_file(&format!("{id}.json"))),
            ]
        })
        .collect()
}

fn start() -> Server {
    Server::start_with(scratch_with_tenants("", &file_tenants()))
}

/// Renders `{{ secrets.db }}` through `tenant`'s echo connector.
async fn db(server: &Server, tenant: &str) -> (u16, Value) {
    let body = json!({ "fields": { "a": "{{ secrets.db }}" }, "reveal": true }).to_string();
    server
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/connectors/echo/render"),
            Some(TOKEN),
            &[],
            body,
        )
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
    let (status, answer) = server
        .call("GET", "/v1/tenants", Some(MASKED), &[], "")
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({ "tenants": ["default", "a", "b"] }))
    );
    let (status, a) = db(&server, "a").await;
    assert_eq!((status, value(&a)), (200, "a-db"), "{a}");
    let (status, b) = db(&server, "b").await;
    assert_eq!((status, value(&b)), (200, "b-db"));
    // a's value changes behind its warm cache.
    let tenants = server.scratch.path().join("tenants");
    std::fs::write(
        tenants.join("a.json"),
        json!({ "app/db": "a-rotated" }).to_string(),
    )
    .unwrap();

    // Add c through the API; a bad file is refused before it is written.
    std::fs::write(
        tenants.join("c.json"),
        json!({ "app/db": "c-db" }).to_string(),
    )
    .unwrap();
    let bad = tenant_file("c.json").replace("kind = \"file\"", "kind = \"ftp\"");
    let (status, refused) = server
        .call("PUT", "/v1/tenants/c", Some(TOKEN), &[], bad)
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("bad_tenant")),
        "{refused}"
    );
    assert!(
        !tenants.join("c.toml").exists(),
        "a refused file is not written"
    );
    let (status, _) = server
        .call(
            "PUT",
            "/v1/tenants/c",
            Some(MASKED),
            &[],
            tenant_file("c.json"),
        )
        .await;
    assert_eq!(status, 403, "the masked token manages no tenants");
    let (status, added) = server
        .call(
            "PUT",
            "/v1/tenants/c",
            Some(TOKEN),
            &[],
            tenant_file("c.json"),
        )
        .await;
    assert_eq!(
        (status, added),
        (200, json!({ "tenant": "c", "outcome": "created" }))
    );
    assert_eq!(
        std::fs::read_to_string(tenants.join("c.toml")).unwrap(),
        tenant_file("c.json")
    );
    let (_, c) = db(&server, "c").await;
    assert_eq!(value(&c), "c-db");

    // Remove b: gone, and a's cache still warm (its old value).
    let (status, removed) = server
        .call("DELETE", "/v1/tenants/b", Some(TOKEN), &[], "")
        .await;
    assert_eq!(
        (status, removed),
        (200, json!({ "tenant": "b", "outcome": "removed" }))
    );
    assert!(!tenants.join("b.toml").exists());
    let (status, gone) = db(&server, "b").await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (404, Some("unknown_tenant")),
        "{gone}"
    );
    let (_, a) = db(&server, "a").await;
    assert_eq!(
        value(&a),
        "a-db",
        "a's cache stayed warm through two reloads"
    );

    // The routes without a tenant are the default tenant's.
    let body = json!({ "fields": { "a": "{{ secrets.db.user }}" }, "reveal": true }).to_string();
    let (status, default) = server
        .call("POST", "/v1/connectors/echo/render", Some(TOKEN), &[], body)
        .await;
    assert_eq!((status, value(&default)), (200, "app"));

    // A bad file written by hand stops only itself; the reload says so.
    std::fs::write(
        tenants.join("broken.toml"),
        "namespace = \"x/\"\n[backend\n",
    )
    .unwrap();
    let (status, reloaded) = server
        .call("POST", "/v1/reload", Some(TOKEN), &[], "")
        .await;
    assert_eq!(status, 200, "{reloaded}");
    let errors = reloaded["tenant_errors"].as_array().expect("tenant errors");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("broken.toml: line 2, column"),
        "{errors:?}"
    );
    let (_, c) = db(&server, "c").await;
    assert_eq!(value(&c), "c-db");
    assert!(!server.stderr().contains(CANARY));
}

/// Creates `app/db` = `<account>-db` in each account, through that
/// account's role (moto maps an assumed role's credentials to its account).
fn seed_accounts(moto: &Moto, accounts: &[&str]) {
    let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, boto3
url = sys.argv[1]
sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
for account in sys.argv[2:]:
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/keyward-reader",
                        RoleSessionName="seed")["Credentials"]
    boto3.client("secretsmanager", endpoint_url=url, region_name="us-east-1",
                 aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                 aws_session_token=c["SessionToken"]).create_secret(
        Name="app/db", SecretString=f"{account}-db")
"#;
    let status = std::process::Command::new(python)
        .args(["-c", script, &moto.url()])
        .args(accounts)
        .status()
        .expect("run the seeding script");
    assert!(status.success(), "seeding moto failed");
}

/// A tenant on AWS through its own role in `account`, at `endpoint`.
fn aws_tenant(account: &str, endpoint: &str) -> String {
    format!(
        "namespace = \"app/\"\n[backend]\nkind = \"aws\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"{endpoint}\"\n\
         role_arn = \"arn:aws:iam::{account}:role/keyward-reader\"\n\
         external_id = \"keyward-tests-{account}\"\n\
         [connectors.echo]\ncomponent = \"{}\"\negress = [\"echo.test\"]\nallow = [\"db\"]\n",
        artifacts::ECHO
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_reads_its_own_account_through_its_role_and_a_refused_role_stops_only_it() {
    let moto = Moto::start();
    seed_accounts(&moto, &["111111111111", "222222222222"]);
    // b's STS and Secrets Manager calls go through a proxy that refuses
    // them, as STS refuses a role whose trust policy does not match.
    let proxy = FaultProxy::start(&moto.address()).await;
    proxy.set_fault(Some(Fault::AccessDenied));
    let scratch = scratch_with_tenants(
        "",
        &[
            ("a.toml".into(), aws_tenant("111111111111", &moto.url())),
            ("b.toml".into(), aws_tenant("222222222222", &proxy.url())),
        ],
    );
    let server = Server::start_with(scratch);

    let (status, a) = db(&server, "a").await;
    assert_eq!((status, value(&a)), (200, "111111111111-db"), "{a}");
    let (status, refused) = db(&server, "b").await;
    assert!(status >= 400, "{status} {refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("testing") && !message.contains(CANARY),
        "{message}"
    );
    // The render answers as for a missing secret (a refusal tells a
    // caller nothing more); the tenant's check names the role.
    assert_eq!(refused["error"]["code"], "render_error", "{refused}");
    let (status, check) = server
        .call("GET", "/v1/tenants/b/check", Some(TOKEN), &[], "")
        .await;
    assert_eq!(status, 503, "{check}");
    let backend = check["backend"]["error"].as_str().unwrap_or_default();
    assert!(
        backend.contains("arn:aws:iam::222222222222:role/keyward-reader could not be assumed"),
        "{check}"
    );
    // a and the default tenant serve on while b's role is refused.
    let (status, a) = db(&server, "a").await;
    assert_eq!((status, value(&a)), (200, "111111111111-db"));
    let body = json!({ "fields": { "a": "{{ secrets.db.user }}" }, "reveal": true }).to_string();
    let (status, default) = server
        .call("POST", "/v1/connectors/echo/render", Some(TOKEN), &[], body)
        .await;
    assert_eq!((status, value(&default)), (200, "app"));
    // The role is granted again: b reads its own account's value.
    proxy.set_fault(None);
    let (status, b) = db(&server, "b").await;
    assert_eq!((status, value(&b)), (200, "222222222222-db"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limited_to_a_tenant_reaches_only_it() {
    const A_TOKEN: &str = "tenant-a-token-0123456789";
    let server_settings = "[[server.tenant_tokens]]\ntenants = [\"a\"]\ntoken_file = \"a.token\"\n";
    let scratch = scratch_with_tenants(server_settings, &file_tenants());
    let token_file = scratch.path().join("a.token");
    std::fs::write(&token_file, A_TOKEN).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tenants = scratch.path().join("tenants");
    let server = Server::start_with(scratch);
    let call = |method: &'static str, path: String, body: String| {
        let server = &server;
        async move { server.call(method, &path, Some(A_TOKEN), &[], body).await }
    };
    let render = json!({ "fields": { "a": "{{ secrets.db }}" }, "reveal": true }).to_string();
    let (status, listed) = call("GET", "/v1/tenants".into(), String::new()).await;
    assert_eq!((status, listed), (200, json!({ "tenants": ["a"] })));
    let (status, a) = call(
        "POST",
        "/v1/tenants/a/connectors/echo/render".into(),
        render.clone(),
    )
    .await;
    assert_eq!((status, value(&a)), (200, "a-db"), "{a}");
    // Another tenant, and one that does not exist, answer alike, naming
    // only what the token may reach.
    for other in ["b", "zzz"] {
        let (status, refused) = call(
            "POST",
            format!("/v1/tenants/{other}/connectors/echo/render"),
            render.clone(),
        )
        .await;
        assert_eq!(status, 404, "{refused}");
        assert_eq!(
            refused["error"]["message"],
            format!("unknown tenant `{other}`; configured: a")
        );
    }
    let (status, refused) = call("POST", "/v1/connectors/echo/render".into(), render.clone()).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("unknown_tenant"))
    );
    for (method, path) in [
        ("GET", "/metrics"),
        ("POST", "/v1/reload"),
        ("DELETE", "/v1/tenants/b"),
    ] {
        let (status, refused) = call(method, path.into(), String::new()).await;
        assert_eq!(status, 403, "{method} {path}: {refused}");
    }
    assert!(tenants.join("b.toml").exists());
    // The service's own tokens still reach every tenant.
    let (status, b) = server
        .call(
            "POST",
            "/v1/tenants/b/connectors/echo/render",
            Some(TOKEN),
            &[],
            render,
        )
        .await;
    assert_eq!((status, value(&b)), (200, "b-db"));
}
