//! The host library end to end: real compiled connectors, the file backend,
//! namespace and allowlist, every reference syntax.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use keyward_host::store::file::FileStore;
use keyward_host::{Config, Error, Keyward, Rendered};
use keyward_test_support::{CANARY, Scratch};
use keyward_tests::Counting;
use serde_json::json;

const ARN_PREFIX: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

fn secrets() -> serde_json::Value {
    json!({
        "acme/prod/host": "db.internal",
        "acme/prod/db": { "json": { "user": "app", "password": "p@ss:w/rd#%?&\"é", "port": 5432,
                                    "nested": { "deep": CANARY } } },
        "acme/prod/plain": CANARY,
        "acme/prod/cert": { "binary_base64": "AP8QYQ==" },
        "acme/prod/api": { "versions": [
            { "id": "v1", "stages": ["AWSPREVIOUS"], "text": "old-token" },
            { "id": "v2", "stages": ["AWSCURRENT"], "text": "new-token" },
            { "id": "v3", "stages": ["AWSPENDING"], "text": "pending-token" }
        ] },
        "acme/prod/team/a": "team-a",
        "acme/prod/team/a/b": "team-ab",
        "acme/prod/forbidden": CANARY,
        "acme/dev/db": CANARY,
    })
}

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = 300000

[secrets.backend]
kind = "file"
path = "secrets.json"
region = "us-east-1"
account_id = "123456789012"

[audit]
file = "audit.jsonl"

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets['db']['password'] }}"
sslmode = "disable"

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db", "host", "plain", "cert", "api@AWSCURRENT,AWSPREVIOUS,version-id", "team/*"]

[connectors.narrow]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db#user"]

[connectors.broken]
component = "{NOT_A_CONNECTOR}"
"#;

async fn keyward(scratch: &Scratch) -> Keyward {
    Keyward::new(Config::load(&scratch.config()).expect("config"))
        .await
        .expect("keyward")
}

fn scratch() -> Scratch {
    Scratch::new(CONFIG, &secrets())
}

async fn echo(k: &Keyward, connector: &str, fields: &[(&str, &str)]) -> Result<Rendered, Error> {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    k.render_fields(connector, &fields).await
}

async fn echo_a(k: &Keyward, template: &str) -> Result<String, Error> {
    Ok(echo(k, "echo", &[("a", template)])
        .await?
        .get("a")
        .expect("output a")
        .to_string())
}

fn error_text(result: Result<impl std::fmt::Debug, Error>) -> String {
    let text = result.expect_err("expected an error").to_string();
    assert!(
        !text.contains(CANARY),
        "an error revealed the canary: {text}"
    );
    text
}

#[tokio::test]
async fn postgres_dsn_round_trips_a_hostile_password() {
    let s = scratch();
    let rendered = keyward(&s).await.render("orders-db").await.expect("render");
    let dsn = rendered.get("dsn").expect("dsn");
    assert_eq!(
        dsn,
        "postgresql://app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@db.internal:5432/orders?sslmode=disable"
    );
    let parsed = tokio_postgres::Config::from_str(dsn).expect("tokio-postgres parses the DSN");
    assert_eq!(parsed.get_password(), Some("p@ss:w/rd#%?&\"é".as_bytes()));
    assert_eq!(parsed.get_user(), Some("app"));
    assert_eq!(parsed.get_dbname(), Some("orders"));
    assert!(rendered.to_json(false).contains("\"dsn\": \"****\""));
    assert!(rendered.to_json(true).contains("p%40ss"));
    assert!(
        !format!("{rendered:?}").contains("p%40ss"),
        "Debug must mask sensitive values"
    );
}

#[tokio::test]
async fn retool_forms_resolve_under_the_namespace() {
    let s = scratch();
    let k = keyward(&s).await;
    assert_eq!(
        echo_a(&k, "{{ secrets.host }}").await.unwrap(),
        "db.internal"
    );
    assert_eq!(
        echo_a(&k, "{{secrets.db.user}}:{{ secrets['db'][\"port\"] }}")
            .await
            .unwrap(),
        "app:5432"
    );
    assert_eq!(
        echo_a(&k, "{{ secrets['team/a'] }}").await.unwrap(),
        "team-a"
    );
    assert_eq!(
        echo_a(&k, "{{ secrets.db.password | urlencode }}")
            .await
            .unwrap(),
        "p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9"
    );
    assert_eq!(
        echo_a(&k, "{{ secrets.db.password | json }}")
            .await
            .unwrap(),
        "\"p@ss:w/rd#%?&\\\"é\""
    );
    assert_eq!(
        echo_a(&k, "{{ secrets.db.user | base64 }}").await.unwrap(),
        "YXBw"
    );
    assert_eq!(
        echo_a(&k, "{{ '{{' }} secrets.host }}").await.unwrap(),
        "{{ secrets.host }}"
    );
}

#[tokio::test]
async fn workato_and_ecs_forms_resolve_by_arn() {
    let s = scratch();
    let k = keyward(&s).await;
    let workato = format!("{{{{workato:sm:user:{ARN_PREFIX}acme/prod/db-AbCdEf}}}}");
    assert_eq!(echo_a(&k, &workato).await.unwrap(), "app");
    let ecs = format!("{{{{ {ARN_PREFIX}acme/prod/db:user:: }}}}");
    assert_eq!(echo_a(&k, &ecs).await.unwrap(), "app");
    let previous = format!("{{{{ {ARN_PREFIX}acme/prod/api::AWSPREVIOUS: }}}}");
    assert_eq!(echo_a(&k, &previous).await.unwrap(), "old-token");
    let bare = format!("{ARN_PREFIX}acme/prod/db:password::");
    let rendered = echo(&k, "echo", &[("arn", &bare)]).await.unwrap();
    assert_eq!(rendered.get("arn"), Some("p@ss:w/rd#%?&\"é"));
}

#[tokio::test]
async fn arns_of_another_account_or_region_are_invalid() {
    let s = scratch();
    let k = keyward(&s).await;
    let other = "{{ arn:aws:secretsmanager:us-east-1:999999999999:secret:acme/prod/db:user:: }}";
    let text = error_text(echo_a(&k, other).await);
    assert!(
        text.contains("field `a`, column 1") && text.contains("account"),
        "{text}"
    );
    let region = "{{ arn:aws:secretsmanager:eu-west-1:123456789012:secret:acme/prod/db }}";
    assert!(error_text(echo_a(&k, region).await).contains("region"));
}

#[tokio::test]
async fn a_denied_reference_looks_exactly_like_a_missing_one() {
    let s = scratch();
    let k = keyward(&s).await;
    let denied = error_text(echo_a(&k, "x {{ secrets.forbidden }}").await);
    let missing = error_text(echo_a(&k, "x {{ secrets.nonexistent }}").await);
    assert_eq!(
        denied,
        "connector `echo`: field `a`, column 3: secret `forbidden` was not found or is not allowed"
    );
    assert_eq!(missing.replace("nonexistent", "forbidden"), denied);
    // An ARN outside the namespace is denied the same way.
    let outside = format!("{{{{ {ARN_PREFIX}acme/dev/db }}}}");
    assert!(error_text(echo_a(&k, &outside).await).contains("not found or is not allowed"));
    // `*` does not cross `/`.
    assert!(error_text(echo_a(&k, "{{ secrets['team/a/b'] }}").await).contains("not allowed"));
}

#[tokio::test]
async fn key_restricted_rule_allows_only_that_key() {
    let s = scratch();
    let k = keyward(&s).await;
    assert_eq!(
        echo(&k, "narrow", &[("a", "{{ secrets.db.user }}")])
            .await
            .unwrap()
            .get("a"),
        Some("app")
    );
    for escalation in ["{{ secrets.db.password }}", "{{ secrets.db }}"] {
        assert!(error_text(echo(&k, "narrow", &[("a", escalation)]).await).contains("not allowed"));
    }
}

#[tokio::test]
async fn missing_keys_and_non_json_name_the_key_never_the_value() {
    let s = scratch();
    let k = keyward(&s).await;
    let text = error_text(echo_a(&k, "{{ secrets.db.nested.missing }}").await);
    assert!(
        text.contains("has no key `missing` (inside `nested`)"),
        "{text}"
    );
    let text = error_text(echo_a(&k, "{{ secrets.plain.key }}").await);
    assert!(text.contains("is not a JSON object"), "{text}");
    let text = error_text(echo_a(&k, "{{ secrets.cert.key }}").await);
    assert!(text.contains("is not a JSON object"), "{text}");
}

#[tokio::test]
async fn binary_secrets_render_base64_unless_filtered() {
    let s = scratch();
    let k = keyward(&s).await;
    assert_eq!(echo_a(&k, "{{ secrets.cert }}").await.unwrap(), "AP8QYQ==");
    assert_eq!(
        echo_a(&k, "{{ secrets.cert | urlencode }}").await.unwrap(),
        "%00%FF%10a"
    );
}

#[tokio::test]
async fn stages_and_version_ids_need_grants() {
    let s = scratch();
    let k = keyward(&s).await;
    let by_id = format!("{{{{ {ARN_PREFIX}acme/prod/api:::v1 }}}}");
    assert_eq!(echo_a(&k, &by_id).await.unwrap(), "old-token");
    assert_eq!(echo_a(&k, "{{ secrets.api }}").await.unwrap(), "new-token");
    let pending = format!("{{{{ {ARN_PREFIX}acme/prod/api::AWSPENDING: }}}}");
    assert!(error_text(echo_a(&k, &pending).await).contains("not found or is not allowed"));
    // `db` has no version-id grant.
    let pinned = format!("{{{{ {ARN_PREFIX}acme/prod/db:::v1 }}}}");
    assert!(error_text(echo_a(&k, &pinned).await).contains("not allowed"));
}

#[tokio::test]
async fn a_version_id_grant_does_not_reach_the_pending_version() {
    let s = scratch();
    let k = keyward(&s).await;
    // v3 carries AWSPENDING, which echo's rule does not grant.
    let pending_by_id = format!("{{{{ {ARN_PREFIX}acme/prod/api:::v3 }}}}");
    let e = error_text(echo_a(&k, &pending_by_id).await);
    assert!(e.contains("was not found or is not allowed"), "{e}");
    assert!(!e.contains("pending-token"), "{e}");
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit.contains("version v3 carries AWSPENDING, which the rule does not grant"),
        "{audit}"
    );
    // A rule that grants AWSPENDING reaches it by id too.
    let granted = CONFIG.replace(
        "api@AWSCURRENT,AWSPREVIOUS,version-id",
        "api@AWSCURRENT,AWSPENDING,version-id",
    );
    let s = Scratch::new(&granted, &secrets());
    let k = keyward(&s).await;
    assert_eq!(echo_a(&k, &pending_by_id).await.unwrap(), "pending-token");
}

#[tokio::test]
async fn path_style_names_with_a_leading_slash_are_referenceable() {
    let config = CONFIG
        .replace("namespace = \"acme/prod/\"", "namespace = \"/app/\"")
        .replace(
            "allow = [\"db\", \"host\", \"plain\"",
            "allow = [\"db\", \"host\", \"x/**\", \"plain\"",
        );
    let s = Scratch::new(
        &config,
        &json!({ "/app/db": "slash-db", "/app/x/y": "slash-xy", "/other/db": CANARY }),
    );
    let k = keyward(&s).await;
    assert_eq!(echo_a(&k, "{{ secrets.db }}").await.unwrap(), "slash-db");
    assert_eq!(
        echo_a(&k, "{{ secrets['x/y'] }}").await.unwrap(),
        "slash-xy"
    );
    let by_arn = format!("{{{{ {ARN_PREFIX}/app/db-AbC123 }}}}");
    assert_eq!(echo_a(&k, &by_arn).await.unwrap(), "slash-db");
    for outside in [
        format!("{{{{ {ARN_PREFIX}/other/db }}}}"),
        "{{ secrets['/app/db'] }}".to_string(),
        "{{ secrets['../other/db'] }}".to_string(),
    ] {
        let e = error_text(echo_a(&k, &outside).await);
        assert!(
            !e.contains(CANARY) && !e.contains("slash-db"),
            "{outside}: {e}"
        );
    }
    // Without a namespace, the bracket form names it whole.
    let none = CONFIG.replace("namespace = \"acme/prod/\"\n", "").replace(
        "allow = [\"db\", \"host\", \"plain\"",
        "allow = [\"/app/db\", \"plain\"",
    );
    let s = Scratch::new(&none, &json!({ "/app/db": "slash-db" }));
    let k = keyward(&s).await;
    assert_eq!(
        echo_a(&k, "{{ secrets['/app/db'] }}").await.unwrap(),
        "slash-db"
    );
}

#[tokio::test]
async fn parse_errors_name_the_field_and_column() {
    let s = scratch();
    let k = keyward(&s).await;
    let text = error_text(
        echo(
            &k,
            "echo",
            &[("b", "ok"), ("c", "pw={{ secrets.db.password | upper }}")],
        )
        .await,
    );
    assert_eq!(
        text,
        "connector `echo`: field `c`, column 29: unknown filter `upper` (expected urlencode, json or base64)"
    );
    let text = error_text(echo(&k, "echo", &[("nope", "x")]).await);
    assert!(text.contains("field `nope`: unknown field"), "{text}");
}

#[tokio::test]
async fn list_shows_only_allowed_names() {
    let s = scratch();
    let k = keyward(&s).await;
    let rendered = echo(&k, "echo", &[("list", "yes")]).await.unwrap();
    assert_eq!(rendered.get("list"), Some("api,cert,db,host,plain,team/a"));
    assert_eq!(k.references("narrow").await.unwrap(), ["db"]);
}

#[tokio::test]
async fn a_component_that_is_not_a_connector_is_refused() {
    let s = scratch();
    let k = keyward(&s).await;
    let text = error_text(k.render("broken").await);
    assert!(
        text.contains("connector `broken`") && text.contains("not a keyward connector"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_connector_lists_the_configured_ones() {
    let s = scratch();
    let k = keyward(&s).await;
    let text = error_text(k.render("nope").await);
    assert_eq!(
        text,
        "unknown connector `nope`; configured: broken, echo, narrow, orders-db"
    );
}

#[tokio::test]
async fn each_secret_version_is_fetched_once_and_then_cached() {
    let s = scratch();
    let store = Arc::new(Counting::new(
        FileStore::open(s.path().join("secrets.json")).unwrap(),
    ));
    let k = Keyward::with_store(Config::load(&s.config()).unwrap(), store.clone()).unwrap();
    let fields = [
        ("a", "{{ secrets.db.user }}{{ secrets.db.password }}"),
        ("b", "{{ secrets.db.user }}"),
        ("c", "{{ secrets.host }}"),
    ];
    echo(&k, "echo", &fields).await.unwrap();
    assert_eq!(store.fetches(), 2, "db and host, once each");
    echo(&k, "echo", &fields).await.unwrap();
    assert_eq!(store.fetches(), 2, "second render is served from the cache");
    // Many references to a few secrets (past the few a render compares
    // one by one): still one read of each secret, and every value right.
    let many = [
        "{{ secrets.db.user }}",
        "{{ secrets.db.password }}",
        "{{ secrets.db.port }}",
        "{{ secrets.db.nested.deep }}",
        "{{ secrets.host }}",
        "{{ secrets['team/a'] }}",
        "{{ secrets.plain }}",
        "{{ secrets.api }}",
        "{{ secrets['api'] }}",
        "{{ secrets.cert | base64 }}",
        "{{ secrets.db.user }}",
        "{{ secrets['team/a'] }}",
    ]
    .join(",");
    let rendered = echo_a(&k, &many).await.unwrap();
    assert_eq!(
        rendered,
        format!(
            "app,p@ss:w/rd#%?&\"é,5432,{CANARY},db.internal,team-a,{CANARY},new-token,\
             new-token,AP8QYQ==,app,team-a"
        )
    );
    assert_eq!(
        store.fetches(),
        6,
        "db and host cached; team/a, plain, api, cert once"
    );
    // Denied and invalid references never reach the store.
    let _ = echo_a(&k, "{{ secrets.forbidden }}").await;
    let _ = echo_a(&k, "{{ secrets['../x'] }}").await;
    assert_eq!(store.fetches(), 6);
}

#[tokio::test]
async fn file_rotation_is_seen_after_the_ttl() {
    let s = Scratch::new(
        &CONFIG.replace("cache_ttl_ms = 300000", "cache_ttl_ms = 50"),
        &secrets(),
    );
    let k = keyward(&s).await;
    assert_eq!(
        echo_a(&k, "{{ secrets.host }}").await.unwrap(),
        "db.internal"
    );
    let mut rotated = secrets();
    rotated["acme/prod/host"] = json!("db2.internal");
    // Make sure the modification time moves even on coarse clocks.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.write_secrets(&rotated);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        echo_a(&k, "{{ secrets.host }}").await.unwrap(),
        "db2.internal"
    );
}

/// Collects everything written through `tracing`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn guest_logs_are_masked_and_audit_records_hold_no_values() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let s = scratch();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let k = keyward(&s).await;
            let rendered = echo(
                &k,
                "echo",
                &[
                    ("secret", "{{ secrets.plain }}"),
                    ("log", "leak {{ secrets.plain }}!"),
                ],
            )
            .await
            .unwrap();
            assert_eq!(rendered.get("secret"), Some(CANARY));
            let _ = echo_a(&k, "{{ secrets.forbidden }}").await;
            let _ = echo_a(&k, "{{ secrets.db.nested.nope }}").await;
        });
    });
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        output.contains(r#"echo says: ["leak ", <sealed>, "!"]"#),
        "the connector sees the literal parts and a sealed piece: {output}"
    );
    assert!(
        !output.contains(CANARY),
        "the canary leaked into logs: {output}"
    );

    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        3,
        "the same reference in two fields is resolved once: {audit}"
    );
    assert_eq!(records[0]["decision"], "allowed");
    assert_eq!(records[0]["detail"], "plain");
    assert_eq!(records[0]["canonical"], "acme/prod/plain");
    assert_eq!(records[0]["cache"], "miss");
    assert_eq!(records[0]["version_id"], "v1");
    assert_eq!(records[1]["decision"], "denied");
    assert_eq!(records[1]["detail"], "no allow rule matches");
    assert_eq!(records[1]["canonical"], "acme/prod/forbidden");
    assert_eq!(records[2]["decision"], "missing_key");
    assert_eq!(records[2]["path"], json!(["nested", "nope"]));
    assert!(
        records
            .iter()
            .all(|r| r["connector"] == "echo"
                && r["time"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    assert!(
        !audit.contains(CANARY),
        "the canary leaked into the audit log: {audit}"
    );
}
