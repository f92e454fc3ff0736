//! The AWS Secrets Manager backend and the cache, against a real Secrets
//! Manager API server on loopback (moto), through a proxy that counts every
//! upstream call and injects the faults moto cannot produce.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::primitives::Blob;
use keyward_host::ManualClock;
use keyward_host::SecretValue;
use keyward_host::{Config, Error, Keyward, Rendered};
use keyward_host::{Invalidation, ResolveError, SecretRequest};
use keyward_test_support::{
    CANARY, FAULT_MESSAGE_CANARY, Fault, FaultProxy, Moto, Scratch, sdk_builder,
};

const ACCOUNT: &str = "123456789012";

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = {TTL}

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{PROXY}"
attempt_timeout_ms = 500
operation_timeout_ms = 1500
max_attempts = {ATTEMPTS}

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets['db']['password'] }}"
sslmode = "require"

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db", "host", "cert", "plain", "api@AWSCURRENT,AWSPREVIOUS,AWSPENDING,version-id", "team/**"]

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["missing/**", "key"]
"#;

/// A moto server, a counting proxy in front of it, an admin client that
/// talks to moto directly (so only keyward's calls are counted), and a
/// keyward host on the AWS backend.
struct Aws {
    _moto: Moto,
    proxy: FaultProxy,
    admin: Client,
    _scratch: Scratch,
    keyward: Keyward,
    /// The clock the host's cache and rate limits read.
    clock: Arc<ManualClock>,
}

impl Aws {
    async fn start(ttl_ms: u64, attempts: u32) -> Self {
        Self::start_with(CONFIG, ttl_ms, attempts).await
    }

    async fn start_with(config: &str, ttl_ms: u64, attempts: u32) -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.address()).await;
        let admin = Client::from_conf(sdk_builder().endpoint_url(moto.url()).build());
        let config = config
            .replace("{PROXY}", &proxy.url())
            .replace("{TTL}", &ttl_ms.to_string())
            .replace("{ATTEMPTS}", &attempts.to_string());
        let clock = Arc::new(ManualClock::new());
        let (scratch, keyward) = keyward_tests::keyward_on_aws_with_clock(&config, clock.clone());
        Self {
            _moto: moto,
            proxy,
            admin,
            _scratch: scratch,
            keyward,
            clock,
        }
    }

    /// Creates a text secret and returns its ARN.
    async fn create(&self, name: &str, value: &str) -> String {
        let out = self
            .admin
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret");
        out.arn().expect("arn").to_string()
    }

    /// Rotates as a rotation Lambda does: the new version as AWSPENDING, then
    /// AWSCURRENT moved onto it (and AWSPENDING taken off).
    async fn rotate(&self, name: &str, value: &str, token: &str) {
        let described = self
            .admin
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .expect("describe");
        let current = described
            .version_ids_to_stages()
            .and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(id, _)| id.clone())
            })
            .expect("current version id");
        let admin = &self.admin;
        admin
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .client_request_token(token)
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("put pending");
        admin
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .move_to_version_id(token)
            .remove_from_version_id(current)
            .send()
            .await
            .expect("promote");
        admin
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage("AWSPENDING")
            .remove_from_version_id(token)
            .send()
            .await
            .expect("finish");
        let now = admin
            .get_secret_value()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .expect("read");
        assert_eq!(now.secret_string(), Some(value), "the server rotated");
    }

    async fn quickstart_secrets(&self) {
        self.create("acme/prod/host", "db.internal.example").await;
        self.create(
            "acme/prod/db",
            r#"{"user":"orders_app","password":"p@ss:w/rd#%?&\"é"}"#,
        )
        .await;
    }

    async fn read(&self, reference: SecretRequest) -> Result<SecretValue, ResolveError> {
        let mut results = self
            .keyward
            .resolve("echo", &[reference])
            .await
            .expect("connector");
        results.pop().expect("one result")
    }

    async fn echo(&self, template: &str) -> Result<String, Error> {
        let fields = [("a".to_string(), template.to_string())];
        let rendered: Rendered = self.keyward.render_fields("echo", &fields).await?;
        Ok(rendered.get("a").expect("output a").to_string())
    }
}

fn text(value: Result<SecretValue, ResolveError>) -> String {
    match value {
        Ok(SecretValue::Text(t)) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn no_leak(message: &str) {
    assert!(
        !message.contains(CANARY) && !message.contains(FAULT_MESSAGE_CANARY),
        "leaked: {message}"
    );
}

#[tokio::test]
async fn quickstart_renders_against_secrets_manager_exactly_as_against_the_file_backend() {
    let aws = Aws::start(300_000, 3).await;
    aws.quickstart_secrets().await;
    let from_aws = aws
        .keyward
        .render("orders-db")
        .await
        .expect("render from AWS");

    let file = Scratch::new(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/quickstart/keyward.toml"
        ))
        .expect("quickstart config")
        .replace(
            "connectors/postgres.wasm",
            keyward_test_support::artifacts::POSTGRES,
        ),
        &serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/quickstart/secrets.json"
            ))
            .expect("quickstart secrets"),
        )
        .expect("json"),
    );
    let keyward = Keyward::new(Config::load(&file.config()).expect("config"))
        .await
        .expect("keyward");
    let from_file = keyward.render("orders-db").await.expect("render from file");
    assert_eq!(from_aws.to_json(true), from_file.to_json(true));
    assert_eq!(
        from_aws.get("dsn"),
        Some(
            "postgresql://orders_app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@db.internal.example:5432/orders?sslmode=require"
        )
    );
    // Two uncached secrets in one render: one batch call, no single reads.
    assert_eq!(aws.proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(aws.proxy.count("GetSecretValue"), 0);
    aws.keyward
        .render("orders-db")
        .await
        .expect("second render");
    assert_eq!(
        aws.proxy.total(),
        1,
        "the second render is served from the cache"
    );
}

#[tokio::test]
async fn reads_by_name_and_arn_with_json_keys_and_binary() {
    let aws = Aws::start(300_000, 3).await;
    let arn = aws
        .create(
            "acme/prod/db",
            r#"{"user":"app","port":5432,"creds":{"token":"t0k"}}"#,
        )
        .await;
    aws.admin
        .create_secret()
        .name("acme/prod/cert")
        .secret_binary(Blob::new(vec![0u8, 255, 16, b'a']))
        .send()
        .await
        .expect("binary secret");
    assert!(arn.starts_with(&format!(
        "arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:acme/prod/db-"
    )));

    assert_eq!(
        text(aws.read(SecretRequest::key("db", &["user"])).await),
        "app"
    );
    assert_eq!(
        text(aws.read(SecretRequest::key(&arn, &["port"])).await),
        "5432"
    );
    assert_eq!(
        text(
            aws.read(SecretRequest::key(&arn, &["creds", "token"]))
                .await
        ),
        "t0k"
    );
    assert_eq!(
        aws.echo(&format!("{{{{workato:sm:user:{arn}}}}}"))
            .await
            .expect("workato"),
        "app"
    );
    assert_eq!(
        aws.echo("{{ secrets.cert }}").await.expect("binary"),
        "AP8QYQ=="
    );
    match aws.read(SecretRequest::name("cert")).await {
        Ok(SecretValue::Bytes(bytes)) => assert_eq!(&bytes[..], &[0u8, 255, 16, b'a']),
        other => panic!("expected bytes, got {other:?}"),
    }
    let e = aws
        .echo("{{ secrets.cert.key }}")
        .await
        .expect_err("path into binary");
    assert!(e.to_string().contains("is not a JSON object"), "{e}");
    let e = aws
        .echo("{{ secrets.db.nope }}")
        .await
        .expect_err("missing key");
    assert!(e.to_string().contains("has no key `nope`"), "{e}");
    let e = aws
        .echo("{{ secrets.nonexistent }}")
        .await
        .expect_err("missing secret");
    assert!(
        e.to_string().contains("was not found or is not allowed"),
        "{e}"
    );
}

#[tokio::test]
async fn stages_and_version_ids() {
    let aws = Aws::start(300_000, 3).await;
    aws.create("acme/prod/api", "v1-token").await;
    aws.admin
        .put_secret_value()
        .secret_id("acme/prod/api")
        .secret_string("v2-token")
        .client_request_token("00000000-0000-0000-0000-000000000002")
        .send()
        .await
        .expect("put v2");
    aws.admin
        .put_secret_value()
        .secret_id("acme/prod/api")
        .secret_string("v3-token")
        .client_request_token("00000000-0000-0000-0000-000000000003")
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put pending v3");

    let stage = |s: &str| SecretRequest {
        version_stage: Some(s.into()),
        ..SecretRequest::name("api")
    };
    assert_eq!(text(aws.read(SecretRequest::name("api")).await), "v2-token");
    assert_eq!(text(aws.read(stage("AWSCURRENT")).await), "v2-token");
    assert_eq!(text(aws.read(stage("AWSPREVIOUS")).await), "v1-token");
    assert_eq!(text(aws.read(stage("AWSPENDING")).await), "v3-token");
    let by_id = SecretRequest {
        version_id: Some("00000000-0000-0000-0000-000000000003".into()),
        ..SecretRequest::name("api")
    };
    assert_eq!(text(aws.read(by_id).await), "v3-token");
    let ecs = format!(
        "{{{{ arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:acme/prod/api::AWSPREVIOUS: }}}}"
    );
    assert_eq!(aws.echo(&ecs).await.expect("ECS form"), "v1-token");
}

#[tokio::test]
async fn rotation_is_picked_up_after_the_ttl_and_at_once_after_invalidate() {
    let aws = Aws::start(400, 3).await;
    aws.create("acme/prod/db", r#"{"password":"old"}"#).await;
    assert_eq!(
        aws.echo("{{ secrets.db.password }}").await.expect("read"),
        "old"
    );

    aws.rotate(
        "acme/prod/db",
        r#"{"password":"new"}"#,
        "11111111-1111-1111-1111-111111111111",
    )
    .await;
    assert_eq!(
        aws.echo("{{ secrets.db.password }}").await.expect("cached"),
        "old",
        "within the TTL"
    );
    aws.clock.advance(Duration::from_millis(400));
    assert_eq!(
        aws.echo("{{ secrets.db.password }}")
            .await
            .expect("refreshed"),
        "new",
        "after the TTL"
    );

    // Rotate again, then invalidate: the next read is fresh at once.
    aws.rotate(
        "acme/prod/db",
        r#"{"password":"newer"}"#,
        "22222222-2222-2222-2222-222222222222",
    )
    .await;
    let db = SecretRequest::key("db", &["password"]);
    assert_eq!(
        aws.keyward
            .invalidate("echo", &db)
            .await
            .expect("connector"),
        Invalidation::Done
    );
    assert_eq!(
        aws.echo("{{ secrets.db.password }}").await.expect("read"),
        "newer"
    );
    assert_eq!(
        aws.keyward
            .invalidate("echo", &db)
            .await
            .expect("connector"),
        Invalidation::RateLimited,
        "a second invalidation within the interval is refused"
    );
    assert_eq!(
        aws.keyward
            .invalidate("echo", &SecretRequest::name("forbidden"))
            .await
            .expect("connector"),
        Invalidation::NotAllowed,
        "the platform is told; the connector would not be"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_cold_reads_make_one_upstream_call() {
    let aws = Aws::start(300_000, 3).await;
    aws.create("acme/prod/db", "hot").await;
    let reads = (0..200).map(|_| aws.read(SecretRequest::name("db")));
    let results = futures::future::join_all(reads).await;
    assert!(results.into_iter().all(|r| text(r) == "hot"));
    assert_eq!(aws.proxy.count("GetSecretValue"), 1);
    assert_eq!(aws.proxy.total(), 1);
}

#[tokio::test]
async fn many_uncached_secrets_are_batched_twenty_per_call() {
    let aws = Aws::start(300_000, 3).await;
    let mut requests = Vec::new();
    for i in 0..45 {
        aws.create(&format!("acme/prod/team/s{i:02}"), &format!("value-{i}"))
            .await;
        requests.push(SecretRequest::name(&format!("team/s{i:02}")));
    }
    requests.push(SecretRequest {
        version_stage: Some("AWSPREVIOUS".into()),
        ..SecretRequest::name("team/s00")
    });
    let results = aws
        .keyward
        .resolve("echo", &requests)
        .await
        .expect("connector");
    for (i, result) in results.iter().take(45).enumerate() {
        assert_eq!(text(result.clone()), format!("value-{i}"));
    }
    // s00 has no AWSPREVIOUS version yet.
    assert!(matches!(results[45], Err(ResolveError::NotFound { .. })));
    assert_eq!(
        aws.proxy.count("BatchGetSecretValue"),
        3,
        "45 current versions: 20 + 20 + 5"
    );
    assert_eq!(
        aws.proxy.count("GetSecretValue"),
        1,
        "a stage the batch API cannot select"
    );
}

#[tokio::test]
async fn list_filters_by_namespace_then_allowlist_case_sensitively() {
    let aws = Aws::start(300_000, 3).await;
    for name in [
        "acme/prod/db",
        "acme/prod/host",
        "acme/prod/forbidden",
        "acme/prod/team/x/y",
        "acme/dev/db",
        "ACME/prod/db",
    ] {
        aws.create(name, "v").await;
    }
    let names = aws.keyward.references("echo").await.expect("list");
    assert_eq!(names, ["db", "host", "team/x/y"]);
    assert!(aws.proxy.count("ListSecrets") >= 1);
    assert_eq!(aws.proxy.count("GetSecretValue"), 0);
}

#[tokio::test]
async fn deleted_secrets_are_unavailable_and_dropped_from_the_cache() {
    let aws = Aws::start(100, 1).await;
    aws.create("acme/prod/db", CANARY).await;
    assert_eq!(aws.echo("{{ secrets.db }}").await.expect("read"), CANARY);
    aws.admin
        .delete_secret()
        .secret_id("acme/prod/db")
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("delete");
    aws.clock.advance(Duration::from_millis(150));
    let e = aws
        .echo("{{ secrets.db }}")
        .await
        .expect_err("deleted")
        .to_string();
    no_leak(&e);
    assert!(
        e.contains("is unavailable: the secret is scheduled for deletion"),
        "{e}"
    );
    assert_eq!(
        aws.keyward.cache().stale_served(),
        0,
        "a deleted secret is never served stale"
    );
    aws.admin
        .restore_secret()
        .secret_id("acme/prod/db")
        .send()
        .await
        .expect("restore");
    assert_eq!(
        aws.echo("{{ secrets.db }}").await.expect("restored"),
        CANARY
    );
}

#[tokio::test]
async fn transient_faults_serve_the_stale_value_and_are_recorded() {
    let aws = Aws::start(100, 1).await;
    aws.create("acme/prod/db", "cached-value").await;
    assert_eq!(
        aws.echo("{{ secrets.db }}").await.expect("warm"),
        "cached-value"
    );
    aws.clock.advance(Duration::from_millis(150));
    for (n, fault) in [Fault::Throttle, Fault::ServerError, Fault::Hang]
        .into_iter()
        .enumerate()
    {
        aws.proxy.set_fault(Some(fault));
        assert_eq!(
            aws.echo("{{ secrets.db }}").await.expect("stale"),
            "cached-value",
            "{fault:?}"
        );
        assert_eq!(aws.keyward.cache().stale_served(), n as u64 + 1);
    }
    aws.proxy.set_fault(None);
    assert_eq!(
        aws.echo("{{ secrets.db }}").await.expect("recovered"),
        "cached-value"
    );
    assert_eq!(aws.keyward.cache().stale_served(), 3);
}

#[tokio::test]
async fn transient_faults_without_a_cached_value_are_unavailable_with_clear_messages() {
    let aws = Aws::start(300_000, 1).await;
    aws.create("acme/prod/db", CANARY).await;
    for (fault, expected) in [
        (Fault::Throttle, "throttled by Secrets Manager"),
        (Fault::ServerError, "Secrets Manager internal error"),
        (Fault::Hang, "Secrets Manager did not answer in time"),
    ] {
        aws.proxy.set_fault(Some(fault));
        let e = aws
            .echo("{{ secrets.db }}")
            .await
            .expect_err("fault")
            .to_string();
        no_leak(&e);
        assert!(
            e.contains(&format!("secret `db` is unavailable: {expected}")),
            "{fault:?}: {e}"
        );
    }
}

#[tokio::test]
async fn standard_retries_ride_out_one_throttle() {
    let aws = Aws::start(300_000, 3).await;
    aws.create("acme/prod/db", "v").await;
    aws.proxy.fail_next(1, Fault::Throttle);
    assert_eq!(aws.echo("{{ secrets.db }}").await.expect("retried"), "v");
    assert_eq!(
        aws.proxy.count("GetSecretValue"),
        2,
        "one throttled attempt, one retry"
    );
}

#[tokio::test]
async fn access_denied_looks_like_not_found_and_revokes_the_cached_value() {
    let aws = Aws::start(100, 1).await;
    aws.create("acme/prod/db", CANARY).await;
    assert_eq!(aws.echo("{{ secrets.db }}").await.expect("warm"), CANARY);
    aws.clock.advance(Duration::from_millis(150));
    aws.proxy.set_fault(Some(Fault::AccessDenied));
    let e = aws
        .echo("{{ secrets.db }}")
        .await
        .expect_err("denied")
        .to_string();
    no_leak(&e);
    assert!(
        e.contains("secret `db` was not found or is not allowed"),
        "{e}"
    );
    // The entry is gone: even a transient failure now has nothing to serve.
    aws.proxy.set_fault(Some(Fault::Throttle));
    let e = aws
        .echo("{{ secrets.db }}")
        .await
        .expect_err("nothing cached")
        .to_string();
    assert!(e.contains("throttled"), "{e}");
    assert_eq!(aws.keyward.cache().stale_served(), 0);
}

#[tokio::test]
async fn denied_and_invalid_references_make_no_upstream_request() {
    let aws = Aws::start(300_000, 3).await;
    aws.create("acme/prod/forbidden", CANARY).await;
    for template in [
        "{{ secrets.forbidden }}",
        "{{ secrets['../acme/prod/db'] }}",
        "{{ arn:aws:secretsmanager:us-east-1:999999999999:secret:acme/prod/db }}",
    ] {
        no_leak(&aws.echo(template).await.expect_err("refused").to_string());
    }
    assert_eq!(aws.proxy.total(), 0);
}

#[tokio::test]
async fn refresh_ahead_refreshes_a_hot_secret_in_the_background() {
    let aws = Aws::start_with(
        &CONFIG.replace("{TTL}", "400\nrefresh_ahead_ms = 300"),
        400,
        1,
    )
    .await;
    aws.create("acme/prod/db", "v1").await;
    assert_eq!(text(aws.read(SecretRequest::name("db")).await), "v1");
    aws.admin
        .put_secret_value()
        .secret_id("acme/prod/db")
        .secret_string("v2")
        .send()
        .await
        .expect("put");
    // Within the refresh-ahead window (past 100 ms of the 400 ms TTL):
    // served from the cache, and a background refresh starts.
    aws.clock.advance(Duration::from_millis(150));
    assert_eq!(text(aws.read(SecretRequest::name("db")).await), "v1");
    // Wait for the refresh to land (reads meanwhile are cache hits that
    // start nothing new), not for a guessed time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if text(aws.read(SecretRequest::name("db")).await) == "v2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the background refresh never landed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        aws.proxy.count("GetSecretValue"),
        2,
        "one cold read, one background refresh"
    );
}

#[tokio::test]
async fn a_complete_arn_reads_only_the_secret_it_names() {
    let aws = Aws::start(300_000, 1).await;
    let old_arn = aws.create("acme/prod/db", "first-life").await;
    let ecs = |arn: &str| format!("{{{{ {arn} }}}}");
    assert_eq!(
        aws.echo(&ecs(&old_arn)).await.expect("by ARN"),
        "first-life"
    );
    aws.admin
        .delete_secret()
        .secret_id("acme/prod/db")
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete");
    let new_arn = aws.create("acme/prod/db", "second-life").await;
    assert_ne!(old_arn, new_arn, "a new secret gets a new suffix");
    aws.keyward
        .invalidate("echo", &SecretRequest::name("db"))
        .await
        .expect("connector");
    let e = aws
        .echo(&ecs(&old_arn))
        .await
        .expect_err("the old ARN names a deleted secret")
        .to_string();
    assert!(e.contains("was not found or is not allowed"), "{e}");
    assert_eq!(
        aws.echo(&ecs(&new_arn)).await.expect("new ARN"),
        "second-life"
    );
    assert_eq!(
        aws.echo("{{ secrets.db }}").await.expect("by name"),
        "second-life"
    );
}

#[tokio::test]
async fn path_style_names_resolve_by_arn_and_bracket_form() {
    let aws = Aws::start_with(
        &CONFIG
            .replace("namespace = \"acme/prod/\"", "namespace = \"/app/\"")
            .replace(
                "allow = [\"db\", \"host\", \"cert\"",
                "allow = [\"db\", \"x/y\", \"host\", \"cert\"",
            ),
        300_000,
        1,
    )
    .await;
    let arn = aws.create("/app/db", "slash-db").await;
    aws.create("/app/x/y", "slash-xy").await;
    assert_eq!(
        aws.echo("{{ secrets.db }}").await.expect("dotted"),
        "slash-db"
    );
    assert_eq!(
        aws.echo("{{ secrets['x/y'] }}").await.expect("bracket"),
        "slash-xy"
    );
    assert_eq!(
        aws.echo(&format!("{{{{ {arn} }}}}")).await.expect("ARN"),
        "slash-db"
    );
}

#[tokio::test]
async fn no_connector_exceeds_its_rate_limit_of_upstream_calls() {
    let aws = Aws::start_with(
        &CONFIG
            .replace(
                "cache_ttl_ms = {TTL}",
                "cache_ttl_ms = {TTL}\nconnector_fetch_rate = 0\nconnector_fetch_burst = 5",
            )
            .replace(
                "max_attempts = {ATTEMPTS}",
                "max_attempts = {ATTEMPTS}\n\n[sandbox]\nrender_timeout_ms = 300\nmax_host_calls = 100000000",
            ),
        300_000,
        1,
    )
    .await;
    aws.create("acme/prod/key", CANARY).await;
    for i in 0..30 {
        aws.create(&format!("acme/prod/missing/other-{i}"), "v")
            .await;
    }
    for mode in ["list-loop", "missing-loop", "list-loop", "missing-loop"] {
        let fields = [
            ("mode".to_string(), mode.to_string()),
            ("secret".to_string(), "{{ secrets.key }}".to_string()),
        ];
        let e = aws
            .keyward
            .render_fields("hostile", &fields)
            .await
            .expect_err("the loop ends at the deadline")
            .to_string();
        assert!(e.contains("CPU deadline"), "{mode}: {e}");
    }
    let reads = aws.proxy.count("GetSecretValue") + aws.proxy.count("BatchGetSecretValue");
    let lists = aws.proxy.count("ListSecrets");
    assert!(
        reads + lists <= 5,
        "a burst of 5 upstream calls and no refill: {reads} reads, {lists} listings"
    );
    // A connector reads only through its configured fields now (one read
    // here, served from the cache after); `missing-loop` invalidates
    // names, which reads nothing upstream.
    assert!(reads >= 1 && lists == 1, "{reads} reads, {lists} listings");
}

#[tokio::test]
async fn without_account_id_the_account_comes_from_sts() {
    // A new user's configuration: an AWS backend, no account_id. The host
    // asks STS whose credentials these are, so that Workato and ECS ARN
    // references resolve instead of being refused.
    let moto = Moto::start();
    let admin = Client::from_conf(sdk_builder().endpoint_url(moto.url()).build());
    admin
        .create_secret()
        .name("acme/prod/api")
        .secret_string(r#"{"token":"t0k3n"}"#)
        .send()
        .await
        .expect("create");
    let config = format!(
        r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
endpoint_url = "{}"

[connectors.echo]
component = "{{ECHO}}"
egress = ["echo.test"]
allow = ["api"]
"#,
        moto.url()
    );
    let scratch = Scratch::new(&config, &serde_json::json!({}));
    let config = Config::load(&scratch.config()).expect("config");
    assert_eq!(
        config
            .secrets
            .backend
            .configured_identity()
            .account_id
            .clone(),
        None
    );
    let keyward_host::Backend::Aws(settings) = &config.secrets.backend else {
        panic!("aws backend")
    };
    let mut store = keyward_host::store::aws::AwsStore::from_sdk_config(
        &keyward_test_support::sdk_config(),
        None,
        settings,
    );
    store.discover_account().await.expect("STS answers");
    let found = keyward_host::store::SecretStore::identity(&store);
    assert_eq!(found.account_id.as_deref(), Some(ACCOUNT), "from STS");
    assert_eq!(found.partition.as_deref(), Some("aws"), "from STS's ARN");
    assert_eq!(found.region.as_deref(), Some("us-east-1"));
    let keyward = Keyward::with_store(config, Arc::new(store)).expect("keyward");
    let arn = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:acme/prod/api");
    for template in [
        format!("{{{{workato:sm:token:{arn}}}}}"),
        format!("{{{{ {arn}:token:: }}}}"),
    ] {
        let fields = [("a".to_string(), template.clone())];
        let rendered = keyward
            .render_fields("echo", &fields)
            .await
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        assert_eq!(rendered.get("a"), Some("t0k3n"), "{template}");
    }
    let other = format!("{{{{ {}:token:: }}}}", arn.replace(ACCOUNT, "999999999999"));
    let fields = [("a".to_string(), other)];
    let e = keyward
        .render_fields("echo", &fields)
        .await
        .expect_err("another account");
    assert!(e.to_string().contains("account"), "{e}");
}
