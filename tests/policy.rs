//! Policy that cannot be bypassed, through a real compiled connector: the
//! attack corpus (every case denied or invalid, no upstream request, an
//! audit record, nothing revealed), the canary across every error path, a
//! policy swapped in without a restart, the per-connector upstream rate
//! limit, and cache isolation between connectors.

use std::sync::Arc;

use keyward_host::SecretRequest;
use keyward_host::store::file::FileStore;
use keyward_host::{Config, Error, Keyward};
use keyward_test_support::{CANARY, Scratch};
use keyward_tests::Counting;
use serde_json::json;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"
connector_fetch_rate = 0
connector_fetch_burst = 1000

[secrets.backend]
kind = "file"
path = "secrets.json"
region = "us-east-1"
account_id = "123456789012"

[audit]
file = "audit.jsonl"
tracing = false

[connectors.victim]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db#user", "team/*", "api"]

[connectors.reader]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db", "canary", "api@AWSCURRENT,AWSPENDING,version-id"]

[connectors.limited]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["team/**"]
"#;

fn secrets() -> serde_json::Value {
    json!({
        "acme/prod/db": { "json": { "user": "app", "password": CANARY } },
        "acme/prod/canary": CANARY,
        "acme/prod/team/a": "a",
        "acme/prod/team/b": "b",
        "acme/prod/team/c": "c",
        "acme/prod/team/a/b": CANARY,
        "acme/prod/forbidden": CANARY,
        "acme/prod/forbidden-AbCdEf": CANARY,
        "acme/other/x": CANARY,
        "other/x": CANARY,
        "acme/prod/api": { "versions": [
            { "id": "v1", "stages": ["AWSCURRENT"], "text": "current" },
            { "id": "v2", "stages": ["AWSPENDING"], "text": CANARY }
        ] },
    })
}

struct Host {
    scratch: Scratch,
    store: Arc<Counting>,
    keyward: Keyward,
}

impl Host {
    fn new(config: &str) -> Self {
        let scratch = Scratch::new(config, &secrets());
        let store = Arc::new(Counting::new(
            FileStore::open(scratch.path().join("secrets.json")).expect("store"),
        ));
        let keyward = Keyward::with_store(
            Config::load(&scratch.config()).expect("config"),
            store.clone(),
        )
        .expect("keyward");
        Self {
            scratch,
            store,
            keyward,
        }
    }

    fn fetches(&self) -> usize {
        self.store.fetches()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.scratch.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit JSON"))
            .collect()
    }

    async fn render(&self, connector: &str, field: &str, value: &str) -> Result<String, Error> {
        let fields = [(field.to_string(), value.to_string())];
        let rendered = self.keyward.render_fields(connector, &fields).await?;
        Ok(rendered.get(field).unwrap_or_default().to_string())
    }
}

/// A reference as it reaches the host's resolver, with nothing checked:
/// connectors cannot send one any more (the host expands their templates),
/// but the platform's `resolve` can, and both go through one policy path.
fn raw(name: &str, path: &[&str], stage: &str, id: &str) -> SecretRequest {
    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
    SecretRequest {
        name: name.into(),
        path: path.iter().map(|k| k.to_string()).collect(),
        version_stage: optional(stage),
        version_id: optional(id),
    }
}

#[tokio::test]
async fn attack_corpus_is_denied_or_invalid_with_no_upstream_request_and_an_audit_record() {
    let host = Host::new(CONFIG);
    let long = "a".repeat(600);
    let raw_cases: Vec<(SecretRequest, &str)> = vec![
        (raw("../other/x", &[], "", ""), "invalid"),
        (raw("a/../b", &[], "", ""), "invalid"),
        (raw("%2e%2e/x", &[], "", ""), "invalid"),
        (raw("a%2Fb", &[], "", ""), "invalid"),
        (raw("./a", &[], "", ""), "invalid"),
        (raw("a//b", &[], "", ""), "invalid"),
        (raw("/a", &[], "", ""), "invalid"),
        (raw("team/", &[], "", ""), "invalid"),
        (raw("", &[], "", ""), "invalid"),
        (raw(" ", &[], "", ""), "invalid"),
        (raw("db ", &["user"], "", ""), "invalid"),
        (raw("db\0", &["user"], "", ""), "invalid"),
        (raw("db\u{7}", &["user"], "", ""), "invalid"),
        (raw("db\n", &["user"], "", ""), "invalid"),
        (raw(&long, &[], "", ""), "invalid"),
        (raw("db", &["user"], "AWSCURRENT", "v1"), "invalid"),
        (raw("db", &["", "user"], "", ""), "invalid"),
        (
            raw(&format!("{ARN}acme/prod/db:user"), &[], "", ""),
            "invalid",
        ),
        (
            raw(
                &format!(
                    "{}acme/prod/db",
                    ARN.replace("123456789012", "999999999999")
                ),
                &["user"],
                "",
                "",
            ),
            "invalid",
        ),
        (
            raw(
                &format!("{}acme/prod/db", ARN.replace("us-east-1", "eu-west-1")),
                &["user"],
                "",
                "",
            ),
            "invalid",
        ),
        (
            raw(
                &format!("{}acme/prod/db", ARN.replace("arn:aws:", "arn:aws-cn:")),
                &["user"],
                "",
                "",
            ),
            "invalid",
        ),
        (
            raw(
                "arn:aws:ssm:us-east-1:123456789012:parameter:acme/prod/db",
                &[],
                "",
                "",
            ),
            "invalid",
        ),
        (
            raw("arn:aws:secretsmanager:us-east-1:123456789012", &[], "", ""),
            "invalid",
        ),
        // Denied: outside the namespace, not granted, or escalations.
        (raw("forbidden", &[], "", ""), "denied"),
        (raw("DB", &["user"], "", ""), "denied"),
        (raw("team/a/b", &[], "", ""), "denied"),
        (raw("db", &["password"], "", ""), "denied"),
        (raw("db", &[], "", ""), "denied"),
        (raw("api", &[], "AWSPENDING", ""), "denied"),
        (raw("api", &[], "", "v2"), "denied"),
        (raw(&format!("{ARN}acme/other/x"), &[], "", ""), "denied"),
        (raw(&format!("{ARN}other/x"), &[], "", ""), "denied"),
        (
            raw(&format!("{ARN}acme/prod/forbidden-AbCdEf"), &[], "", ""),
            "denied",
        ),
        (
            raw(&format!("{ARN}acme/prod/db-AbCdEf"), &["password"], "", ""),
            "denied",
        ),
        (
            raw(&format!("{ARN}acme/prod/team/a/b-AbCdEf"), &[], "", ""),
            "denied",
        ),
    ];
    for (case, expected) in &raw_cases {
        let before = host.audit().len();
        let message = host
            .keyward
            .resolve("victim", std::slice::from_ref(case))
            .await
            .expect("resolve")
            .remove(0)
            .expect_err("refused")
            .to_string();
        assert!(
            !message.contains(CANARY),
            "{case:?} revealed the canary: {message}"
        );
        match *expected {
            "invalid" => assert!(
                message.contains("invalid secret reference"),
                "{case:?}: {message}"
            ),
            _ => assert!(
                message.contains("was not found or is not allowed"),
                "{case:?}: {message}"
            ),
        }
        let audit = host.audit();
        assert_eq!(audit.len(), before + 1, "{case:?} wrote no audit record");
        assert_eq!(
            audit[before]["decision"], *expected,
            "{case:?}: {}",
            audit[before]
        );
        assert_eq!(audit[before]["connector"], "victim");
    }

    // The same attacks in the three template syntaxes, through the SDK.
    let templates = [
        "{{ secrets['../other/x'] }}",
        "{{ secrets['a/../b'] }}",
        "{{ secrets['%2e%2e/x'] }}",
        "{{ secrets['team/a/b'] }}",
        "{{ secrets.db }}",
        "{{ secrets.db.password }}",
        "{{ secrets['db']['password'] }}",
        "{{ secrets.forbidden }}",
        &format!("{{{{workato:sm:password:{ARN}acme/prod/db-AbCdEf}}}}"),
        &format!(
            "{{{{workato:sm:user:{}acme/prod/db-AbCdEf}}}}",
            ARN.replace("123456789012", "999999999999")
        ),
        &format!("{{{{workato:sm:x:{ARN}acme/other/x-AbCdEf}}}}"),
        &format!("{{{{ {ARN}acme/prod/db:password:: }}}}"),
        &format!("{{{{ {ARN}acme/prod/api::AWSPENDING: }}}}"),
        &format!("{{{{ {ARN}acme/prod/api:::v2 }}}}"),
        &format!(
            "{{{{ {}acme/prod/db:user:: }}}}",
            ARN.replace("us-east-1", "eu-west-1")
        ),
        &format!("{{{{ {ARN}../prod/db:user:: }}}}"),
    ];
    for template in templates {
        let message = host
            .render("victim", "a", template)
            .await
            .expect_err(template)
            .to_string();
        assert!(!message.contains(CANARY), "{template}: {message}");
        assert!(
            message.contains("was not found or is not allowed")
                || message.contains("invalid secret reference"),
            "{template}: {message}"
        );
    }
    assert_eq!(host.fetches(), 0, "no attack reached the backend");

    // The allowed reads still work.
    assert_eq!(
        host.render("victim", "a", "{{ secrets.db.user }}")
            .await
            .expect("allowed"),
        "app"
    );
    assert_eq!(
        host.render("victim", "a", "{{ secrets['team/a'] }}")
            .await
            .expect("allowed"),
        "a"
    );
}

#[tokio::test]
async fn the_canary_appears_nowhere_but_the_one_revealed_render() {
    keyward_tests::captured_logs();
    let config = CONFIG.replace("tracing = false", "tracing = true");
    let host = Host::new(&config);
    let mut errors = Vec::new();
    for (field, template) in [
        ("a", "{{ secrets.canary | nope }}"),
        ("a", "{{ secrets.canary.key }}"),
        ("a", "{{ secrets.db.nope }}"),
        ("a", "{{ secrets.db.password.deeper }}"),
        ("a", "{{ secrets.forbidden }}"),
        ("panic", "{{ secrets.canary }}"),
        ("panic", "{{ secrets.db.password }}"),
        ("log", "{{ secrets.canary }} {{ secrets.nope }}"),
    ] {
        errors.push(
            host.render("reader", field, template)
                .await
                .expect_err(template)
                .to_string(),
        );
    }
    // A connector that logs the canary and then traps.
    let fields = [
        (
            "log".to_string(),
            "leaking {{ secrets.canary }}".to_string(),
        ),
        ("panic".to_string(), "{{ secrets.canary }}".to_string()),
    ];
    errors.push(
        host.keyward
            .render_fields("reader", &fields)
            .await
            .expect_err("trap")
            .to_string(),
    );
    assert!(errors[5].contains("the connector failed"), "{}", errors[5]);

    // The one place it belongs: a revealed render.
    let fields = [("secret".to_string(), "{{ secrets.canary }}".to_string())];
    let rendered = host
        .keyward
        .render_fields("reader", &fields)
        .await
        .expect("render");
    assert_eq!(rendered.get("secret"), Some(CANARY));
    let masked = rendered.to_json(false);
    let debug = format!("{rendered:?}");

    let logs = keyward_tests::logs_text();
    let audit = std::fs::read_to_string(host.scratch.path().join("audit.jsonl")).expect("audit");
    for (what, text) in [
        ("errors", errors.join("\n")),
        ("logs", logs.clone()),
        ("audit", audit),
        ("json", masked),
        ("debug", debug),
    ] {
        assert!(
            !text.contains(CANARY),
            "the canary leaked into {what}: {text}"
        );
    }
    assert!(
        logs.contains("echo says: [\"leaking \", <sealed>]"),
        "the guest's log line was written, the secret sealed: {logs}"
    );
}

#[tokio::test]
async fn a_new_policy_applies_without_a_restart() {
    let host = Host::new(CONFIG);
    let password = SecretRequest::key("db", &["password"]);
    let read = |request: SecretRequest| {
        let keyward = &host.keyward;
        async move {
            keyward
                .resolve("victim", &[request])
                .await
                .expect("connector")
                .remove(0)
        }
    };
    assert!(read(password.clone()).await.is_err());
    // Allowed now (and the decision kept for the next reads)...
    for _ in 0..2 {
        assert!(read(SecretRequest::name("team/a")).await.is_ok());
    }

    let widened = CONFIG
        .replace(
            r#"allow = ["db#user", "team/*", "api"]"#,
            r#"allow = ["db"]"#,
        )
        .replace("{ECHO}", keyward_test_support::artifacts::ECHO);
    std::fs::write(host.scratch.config(), &widened).expect("write");
    let config = Config::load(&host.scratch.config()).expect("config");
    host.keyward.update_policy(&config).await.expect("swap");
    assert!(
        read(password).await.is_ok(),
        "the new rule applies to the next read"
    );
    assert!(
        read(SecretRequest::name("team/a")).await.is_err(),
        "a removed rule no longer allows"
    );
    assert_eq!(
        host.render("victim", "a", "{{ secrets.db.password }}")
            .await
            .expect("render"),
        CANARY
    );

    let backend_change = widened.replace(r#"path = "secrets.json""#, r#"path = "other.json""#);
    std::fs::write(host.scratch.path().join("other.json"), "{}").expect("write");
    std::fs::write(host.scratch.config(), backend_change).expect("write");
    let config = Config::load(&host.scratch.config()).expect("config");
    let e = host
        .keyward
        .update_policy(&config)
        .await
        .expect_err("backend change");
    assert_eq!(
        e.to_string(),
        "these settings take effect only at start-up and differ in the new configuration: \
         secrets.backend.path; the running configuration is unchanged"
    );
}

/// Writes `config` anew and swaps it into a running host.
async fn swap_in(scratch: &Scratch, keyward: &Keyward, config: &str) -> Result<(), Error> {
    std::fs::write(
        scratch.config(),
        config.replace("{ECHO}", keyward_test_support::artifacts::ECHO),
    )
    .expect("write");
    keyward
        .update_policy(&Config::load(&scratch.config()).expect("config"))
        .await
}

async fn swap(host: &Host, config: &str) -> Result<(), Error> {
    swap_in(&host.scratch, &host.keyward, config).await
}

#[tokio::test]
async fn after_a_swap_check_and_list_use_the_new_namespace() {
    let host = Host::new(CONFIG);
    let before = host.keyward.check_backend().await.expect("backend");
    assert_eq!(
        host.keyward.references("limited").await.expect("list"),
        ["team/a", "team/a/b", "team/b", "team/c"]
    );
    swap(
        &host,
        &CONFIG.replace(r#"namespace = "acme/prod/""#, r#"namespace = "acme/""#),
    )
    .await
    .expect("a namespace is live");
    let after = host.keyward.check_backend().await.expect("backend");
    assert!(
        after > before,
        "the backend check lists the new namespace: {before} then {after}"
    );
    assert_eq!(
        host.keyward.references("limited").await.expect("list"),
        Vec::<String>::new()
    );
    assert!(
        host.keyward
            .check()
            .await
            .to_string()
            .contains(&format!("backend: ok ({after} secrets"))
    );
}

#[tokio::test]
async fn a_region_the_backend_found_still_serves_arns_after_a_swap() {
    // No `region` in the file: the backend reports where it is, as the
    // AWS backend does with a region from the environment.
    let config = CONFIG.replace("region = \"us-east-1\"\n", "");
    let scratch = Scratch::new(&config, &secrets());
    let store = Counting::in_region(
        FileStore::open(scratch.path().join("secrets.json")).expect("store"),
        "us-east-1",
    );
    let keyward = Keyward::with_store(
        Config::load(&scratch.config()).expect("config"),
        Arc::new(store),
    )
    .expect("keyward");
    let arn = format!("{{{{ {ARN}acme/prod/db:user:: }}}}");
    let render = || async {
        let fields = [("a".to_string(), arn.clone())];
        keyward
            .render_fields("victim", &fields)
            .await
            .map(|r| r.get("a").map(str::to_string))
    };
    assert_eq!(render().await.expect("before").as_deref(), Some("app"));
    let narrowed = config.replace(
        r#"allow = ["db#user", "team/*", "api"]"#,
        r#"allow = ["db#user"]"#,
    );
    swap_in(&scratch, &keyward, &narrowed).await.expect("swap");
    assert_eq!(
        render().await.expect("after the swap").as_deref(),
        Some("app"),
        "the region the backend found is not lost in the swap"
    );
}

#[tokio::test]
async fn rate_limits_and_the_invalidate_interval_take_effect_and_refresh_ahead_is_refused() {
    let host = Host::new(CONFIG);
    let tight = CONFIG
        .replace("connector_fetch_burst = 1000", "connector_fetch_burst = 1")
        .replace(
            "connector_fetch_rate = 0",
            "connector_fetch_rate = 0\ninvalidate_interval_ms = 3600000",
        );
    swap(&host, &tight).await.expect("rate limits are live");
    let read = |name: &'static str| {
        let keyward = &host.keyward;
        async move {
            keyward
                .resolve("reader", &[SecretRequest::name(name)])
                .await
                .expect("connector")
                .remove(0)
        }
    };
    assert!(
        read("canary").await.is_ok(),
        "one upstream fetch in the new burst"
    );
    let second = read("api").await.expect_err("the new burst of 1 is spent");
    assert!(second.to_string().contains("rate"), "{second}");
    let db = SecretRequest::name("db");
    use keyward_host::Invalidation;
    assert_eq!(
        host.keyward
            .invalidate("reader", &db)
            .await
            .expect("connector"),
        Invalidation::Done
    );
    assert_eq!(
        host.keyward
            .invalidate("reader", &db)
            .await
            .expect("connector"),
        Invalidation::RateLimited,
        "the new interval applies"
    );
    let e = swap(
        &host,
        &tight.replace(
            "connector_fetch_rate = 0",
            "connector_fetch_rate = 0\nrefresh_ahead_ms = 100",
        ),
    )
    .await
    .expect_err("refresh-ahead needs a restart");
    assert!(e.to_string().contains("secrets.refresh_ahead_ms"), "{e}");
}

#[tokio::test]
async fn every_read_is_decided_and_audited_even_when_the_decision_is_kept() {
    let host = Host::new(CONFIG);
    for _ in 0..3 {
        assert_eq!(
            host.render("victim", "a", "{{ secrets.db.user }}")
                .await
                .expect("allowed"),
            "app"
        );
        host.render("victim", "a", "{{ secrets.db.password }}")
            .await
            .expect_err("denied");
    }
    let decisions: Vec<String> = host
        .audit()
        .iter()
        .map(|r| r["decision"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        decisions,
        [
            "allowed", "denied", "allowed", "denied", "allowed", "denied"
        ]
    );
}

#[tokio::test]
async fn the_upstream_rate_limit_bounds_a_connectors_fetches() {
    let host =
        Host::new(&CONFIG.replace("connector_fetch_burst = 1000", "connector_fetch_burst = 2"));
    let reads = ["team/a", "team/b", "team/c"].map(SecretRequest::name);
    let results = host
        .keyward
        .resolve("limited", &reads)
        .await
        .expect("connector");
    assert!(results[0].is_ok() && results[1].is_ok());
    let e = results[2]
        .as_ref()
        .expect_err("third fetch refused")
        .to_string();
    assert!(e.contains("upstream fetch rate limit"), "{e}");
    assert_eq!(host.fetches(), 2);
    // Cached reads cost nothing; another connector has its own budget.
    let again = host
        .keyward
        .resolve("limited", &reads[..2])
        .await
        .expect("connector");
    assert!(again.iter().all(Result::is_ok));
    let other = host
        .keyward
        .resolve("reader", &[SecretRequest::name("canary")])
        .await
        .expect("connector");
    assert!(other[0].is_ok());
    assert_eq!(host.fetches(), 3);
}

#[tokio::test]
async fn a_cached_secret_is_never_served_to_a_connector_not_allowed_to_read_it() {
    let host = Host::new(CONFIG);
    assert_eq!(
        host.render("reader", "a", "{{ secrets.db.password }}")
            .await
            .expect("reader"),
        CANARY
    );
    assert_eq!(host.fetches(), 1);
    let e = host
        .render("victim", "a", "{{ secrets.db.password }}")
        .await
        .expect_err("victim")
        .to_string();
    assert!(e.contains("was not found or is not allowed"), "{e}");
    assert_eq!(
        host.render("victim", "a", "{{ secrets.db.user }}")
            .await
            .expect("victim's own key"),
        "app"
    );
    assert_eq!(
        host.fetches(),
        1,
        "the victim's allowed read was a cache hit"
    );
}
