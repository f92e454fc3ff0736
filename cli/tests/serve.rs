//! `keyward serve` as a real process over its real socket: every endpoint
//! checked against `docs/openapi.json`; tokens, forwarding, bad input and
//! limits; reload by SIGHUP and by request; SIGTERM drains.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keyward_test_support::{CANARY, Scratch};
use serde_json::{Value, json};

mod common;

use common::{CONFIG, MASKED, Server, TOKEN, secrets};

/// The OpenAPI document, and a check of a response against it: the path
/// and method exist, the status is declared, and a JSON body matches the
/// declared schema (types, required and additional properties, enums).
struct OpenApi(Value);

impl OpenApi {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        Self(serde_json::from_str(&std::fs::read_to_string(path).expect("openapi")).expect("json"))
    }

    fn check(&self, method: &str, template: &str, status: u16, body: &Value) {
        let operation = &self.0["paths"][template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not in docs/openapi.json"
        );
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template}: status {status} is not declared"
        );
        let response = self.resolve(response);
        if let Some(schema) = response["content"]["application/json"]["schema"].as_object() {
            self.matches(
                &Value::Object(schema.clone()),
                body,
                &format!("{method} {template} {status}"),
            );
        }
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let mut node = &self.0;
                for part in reference.trim_start_matches("#/").split('/') {
                    node = &node[part];
                }
                node
            }
            None => value,
        }
    }

    fn matches(&self, schema: &Value, value: &Value, at: &str) {
        let schema = self.resolve(schema);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        match schema["type"].as_str() {
            Some("object") => {
                let object = value
                    .as_object()
                    .unwrap_or_else(|| panic!("{at}: not an object: {value}"));
                for key in schema["required"].as_array().into_iter().flatten() {
                    let key = key.as_str().unwrap_or_default();
                    assert!(
                        object.contains_key(key),
                        "{at}: `{key}` is missing: {value}"
                    );
                }
                for (key, item) in object {
                    match &schema["properties"][key] {
                        Value::Null if schema["additionalProperties"] == false => {
                            panic!("{at}: `{key}` is not declared")
                        }
                        Value::Null => {
                            if let Some(extra) = schema["additionalProperties"].as_object() {
                                self.matches(
                                    &Value::Object(extra.clone()),
                                    item,
                                    &format!("{at}.{key}"),
                                );
                            }
                        }
                        property => self.matches(property, item, &format!("{at}.{key}")),
                    }
                }
            }
            Some("array") => {
                for item in value
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: not an array"))
                {
                    self.matches(&schema["items"], item, &format!("{at}[]"));
                }
            }
            Some("string") => {
                let text = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: not a string: {value}"));
                if let Some(allowed) = schema["enum"].as_array() {
                    assert!(
                        allowed.iter().any(|a| a == text),
                        "{at}: `{text}` is not in the enum"
                    );
                }
            }
            Some("integer") => assert!(value.is_u64() || value.is_i64(), "{at}: not an integer"),
            Some("boolean") => assert!(value.is_boolean(), "{at}: not a boolean"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_the_openapi_document_says() {
    let server = Server::start("");
    let api = OpenApi::load();
    let t = Some(TOKEN);
    // (method, path, its OpenAPI template, token, body, expected status)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, String, u16);
    let cases: Vec<Case> = vec![
        ("GET", "/healthz", "/healthz", None, String::new(), 200),
        ("GET", "/readyz", "/readyz", None, String::new(), 200),
        (
            "GET",
            "/v1/connectors",
            "/v1/connectors",
            t,
            String::new(),
            200,
        ),
        (
            "GET",
            "/v1/connectors/echo",
            "/v1/connectors/{id}",
            t,
            String::new(),
            200,
        ),
        (
            "GET",
            "/v1/connectors/nope",
            "/v1/connectors/{id}",
            t,
            String::new(),
            404,
        ),
        (
            "POST",
            "/v1/connectors/orders-db/render",
            "/v1/connectors/{id}/render",
            t,
            String::new(),
            200,
        ),
        (
            "POST",
            "/v1/connectors/echo/render",
            "/v1/connectors/{id}/render",
            t,
            json!({"fields": {"a": "x", "secret": "{{ secrets.db.password }}"}}).to_string(),
            200,
        ),
        (
            "POST",
            "/v1/connectors/echo/render",
            "/v1/connectors/{id}/render",
            t,
            json!({"fields": {"a": "{{ secrets.forbidden }}"}}).to_string(),
            422,
        ),
        (
            "POST",
            "/v1/connectors/echo/render",
            "/v1/connectors/{id}/render",
            t,
            json!({"fields": {"nope": "x"}}).to_string(),
            422,
        ),
        (
            "POST",
            "/v1/connectors/nope/render",
            "/v1/connectors/{id}/render",
            t,
            String::new(),
            404,
        ),
        (
            "GET",
            "/v1/connectors/orders-db/references",
            "/v1/connectors/{id}/references",
            t,
            String::new(),
            200,
        ),
        (
            "POST",
            "/v1/connectors/orders-db/invalidate",
            "/v1/connectors/{id}/invalidate",
            t,
            json!({"reference": "{{ secrets.db }}"}).to_string(),
            200,
        ),
        (
            "POST",
            "/v1/connectors/orders-db/invalidate",
            "/v1/connectors/{id}/invalidate",
            t,
            json!({"reference": "{{ secrets.db }}"}).to_string(),
            429,
        ),
        (
            "POST",
            "/v1/cache/invalidate",
            "/v1/cache/invalidate",
            t,
            json!({"name": "acme/prod/db"}).to_string(),
            200,
        ),
        ("GET", "/v1/check", "/v1/check", t, String::new(), 200),
        ("POST", "/v1/reload", "/v1/reload", t, String::new(), 200),
    ];
    for (method, path, template, token, body, expected) in cases {
        let (status, value) = server.call(method, path, token, &[], body).await;
        assert_eq!(status, expected, "{method} {path}: {value}");
        api.check(method, template, status, &value);
        assert!(
            !value.to_string().contains(CANARY) || path.ends_with("/render"),
            "{method} {path} carried a value: {value}"
        );
    }
    let (status, rendered) = server
        .call("POST", "/v1/connectors/orders-db/render", t, &[], "")
        .await;
    assert_eq!(status, 200);
    let dsn = &rendered["outputs"][0];
    assert_eq!(dsn["name"], "dsn");
    assert_eq!(dsn["sensitive"], true);
    assert!(dsn["value"].as_str().unwrap_or_default().contains(CANARY));
    let (_, metrics) = server.call("GET", "/metrics", t, &[], "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains(
            "keyward_renders_total{tenant=\"default\",connector=\"orders-db\",outcome=\"ok\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        "keyward_renders_total{tenant=\"default\",connector=\"echo\",outcome=\"render_error\"} 2"
    ));
    assert!(
        metrics
            .contains("keyward_render_seconds_count{tenant=\"default\",connector=\"orders-db\"} 2")
    );
    for counted in [
        "keyward_cache_reads_total{result=\"hit\"}",
        "keyward_cache_reads_total{result=\"miss\"}",
        "keyward_upstream_calls_total{operation=\"fetch",
        "keyward_upstream_calls_total{operation=\"list\",outcome=\"ok\"}",
        "keyward_decisions_total{decision=\"denied\"}",
        "keyward_decisions_total{decision=\"rate_limited\"} 1",
        "keyward_render_paths_total{path=\"sync\"}",
    ] {
        assert!(metrics.contains(counted), "{counted} missing: {metrics}");
    }
    assert!(
        !metrics.contains(CANARY) && !metrics.contains("forbidden") && !metrics.contains("nope")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_forwarding_and_bad_input_are_refused_with_a_code() {
    let server = Server::start("max_body_kb = 1");
    let render = "/v1/connectors/orders-db/render";
    // (token, headers, body, expected status, expected code)
    type Case<'a> = (
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (None, vec![], vec![], 401, "bad_token"),
        (
            Some("wrong-token-0123456789"),
            vec![],
            vec![],
            401,
            "bad_token",
        ),
        (
            Some(TOKEN),
            vec![("x-forwarded-for", "10.0.0.1")],
            vec![],
            403,
            "forwarded_request",
        ),
        (
            Some(MASKED),
            vec![],
            br#"{"reveal": true}"#.to_vec(),
            403,
            "forbidden",
        ),
        (
            Some(TOKEN),
            vec![],
            b"{not json".to_vec(),
            400,
            "bad_request",
        ),
        (
            Some(TOKEN),
            vec![],
            br#"{"feilds": {}}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            Some(TOKEN),
            vec![],
            vec![b'{', 0xff, 0xfe, b'}'],
            400,
            "bad_request",
        ),
        (Some(TOKEN), vec![], vec![b' '; 4096], 413, "body_too_large"),
    ];
    for (token, headers, body, expected, code) in cases {
        let (status, value) = server.call("POST", render, token, &headers, body).await;
        assert_eq!(
            (status, value["error"]["code"].as_str()),
            (expected, Some(code)),
            "{value}"
        );
        assert!(!value.to_string().contains(CANARY));
    }
    // The masked-only token gets the render with sensitive values masked.
    let (status, value) = server.call("POST", render, Some(MASKED), &[], "").await;
    assert_eq!(status, 200);
    assert!(!value.to_string().contains(CANARY), "{value}");
    assert_eq!(value["outputs"][0]["value"], "****");
    assert_eq!(value["outputs"][1]["value"], "db.internal");
    // It may neither reload nor drop a cached secret, either way.
    let invalidate = json!({"reference": "{{ secrets.db }}"}).to_string();
    let cache = json!({"name": "acme/prod/db"}).to_string();
    for (path, body) in [
        ("/v1/reload", ""),
        ("/v1/connectors/orders-db/invalidate", invalidate.as_str()),
        ("/v1/cache/invalidate", cache.as_str()),
    ] {
        let (status, value) = server
            .call("POST", path, Some(MASKED), &[], body.to_string())
            .await;
        assert_eq!(
            (status, value["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
    let (status, _) = server
        .call("GET", "/v1/nothing", Some(TOKEN), &[], "")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_and_slow_clients_are_cut_off() {
    let server = Server::start("max_connections = 2\nrequest_timeout_ms = 500");
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&server.tcp).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Two connections that never showed a token do not lock a third out:
    // the oldest makes room (tests/serve_limits.rs has the rest).
    let mut third = std::net::TcpStream::connect(&server.tcp).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    // A client that never finishes its headers is cut off.
    let mut slow = std::net::TcpStream::connect(&server.tcp).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the slow client was cut off"
    );
    // And the service still answers.
    let (status, _) = server.call("GET", "/healthz", None, &[], "").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_a_good_configuration_and_sigterm_drains() {
    let server = Server::start("");
    let render = "/v1/connectors/orders-db/render";
    assert_eq!(
        server.call("POST", render, Some(TOKEN), &[], "").await.0,
        200
    );
    let config = server.scratch.config();
    let original = std::fs::read_to_string(&config).expect("config");
    // A narrower allowlist, by SIGHUP.
    std::fs::write(
        &config,
        original.replace(r#"allow = ["db", "host"]"#, r#"allow = ["host"]"#),
    )
    .expect("write");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, value) = server.call("POST", render, Some(TOKEN), &[], "").await;
        if status == 422 {
            assert_eq!(value["error"]["field"], "user");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not apply: {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file keeps the running configuration.
    std::fs::write(&config, "[secrets\n").expect("write");
    let (status, value) = server
        .call("POST", "/v1/reload", Some(TOKEN), &[], "")
        .await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (400, Some("bad_configuration")),
        "{value}"
    );
    // A start-up setting is refused by name.
    std::fs::write(
        &config,
        original.replace(
            "namespace = \"acme/prod/\"",
            "namespace = \"acme/prod/\"\ncache_ttl_ms = 5",
        ),
    )
    .expect("write");
    let (status, value) = server
        .call("POST", "/v1/reload", Some(TOKEN), &[], "")
        .await;
    assert_eq!(status, 409, "{value}");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secrets.cache_ttl_ms")
    );
    assert_eq!(
        server.call("POST", render, Some(TOKEN), &[], "").await.0,
        422,
        "still the narrower policy"
    );

    // SIGTERM with requests sent and in flight: each is answered, then
    // the process exits 0.
    std::fs::write(&config, &original).expect("write");
    server
        .call("POST", "/v1/reload", Some(TOKEN), &[], "")
        .await;
    let request = format!(
        "POST /v1/connectors/orders-db/render HTTP/1.1\r\nhost: keyward\r\n\
         x-keyward-token: {TOKEN}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        let mut stream = std::net::TcpStream::connect(&server.tcp).expect("connect");
        stream.write_all(request.as_bytes()).expect("send");
        in_flight.push(stream);
    }
    server.signal("TERM");
    for mut stream in in_flight {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let mut server = server;
    let status = server.child.wait().expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(!server.socket().exists(), "the socket file is removed");
}

/// The TypeScript and Python clients' examples, as a platform engineer
/// would run them, against a real `keyward serve` on the local Secrets
/// Manager and a real PostgreSQL: render and connect, connect again after
/// a rotation (invalidating keyward's cached copy), and read a clear error
/// for a denied secret. `scripts/test.sh` builds the TypeScript client and
/// installs pg8000 first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_and_python_clients_render_and_connect() {
    use keyward_test_support::{Moto, Postgres, sql_literal};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let node_example = root.join("clients/typescript/dist/example.js");
    assert!(
        node_example.exists(),
        "build the TypeScript client first (scripts/test.sh does: npm ci && npx tsc in clients/typescript)"
    );
    let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());

    let postgres = Postgres::start();
    let passwords = keyward_test_support::ROTATION_PASSWORDS;
    postgres.sql(&format!(
        "CREATE ROLE app LOGIN PASSWORD {}",
        sql_literal(passwords[0])
    ));
    postgres.sql("CREATE DATABASE orders OWNER app");
    let moto = Moto::start();
    let db = |password: &str| json!({ "user": "app", "password": password }).to_string();
    let admin = moto
        .seed(&[
            ("acme/prod/host", "127.0.0.1"),
            ("acme/prod/db", &db(passwords[0])),
        ])
        .await;

    let config = format!(
        r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = 300000
invalidate_interval_ms = 1

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{moto}"

[server]
socket = "keyward.sock"

[connectors.orders-db]
component = "{component}"
allow = ["db", "host"]
public = ["host"]
[connectors.orders-db.config]
host = "{{{{ secrets.host }}}}"
port = "{port}"
database = "orders"
user = "{{{{ secrets.db.user }}}}"
password = "{{{{ secrets.db.password }}}}"
sslmode = "disable"

[connectors.denied]
component = "{component}"
allow = ["host"]
[connectors.denied.config]
host = "{{{{ secrets.host }}}}"
database = "orders"
user = "{{{{ secrets.db.user }}}}"
"#,
        moto = moto.url(),
        component = keyward_test_support::artifacts::POSTGRES,
        port = postgres.port(),
    );
    let server = Server::start_with(Scratch::new(&config, &json!({})));
    let run = |program: &str, script: &Path, step: &str| -> Value {
        let output = Command::new(program)
            .arg(script)
            .arg(step)
            .current_dir(script.parent().expect("dir"))
            .env("KEYWARD_SOCKET", server.socket())
            .env("KEYWARD_TOKEN", TOKEN)
            .output()
            .expect("run the example");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{} {step}: {stdout} {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{step}: {stdout}"))
    };
    let clients = [
        ("node", node_example.clone(), passwords[1]),
        (
            python.as_str(),
            root.join("clients/python/example.py"),
            passwords[2],
        ),
    ];
    for (program, script, next_password) in clients {
        assert_eq!(
            run(program, &script, "connect"),
            json!({"step": "connect", "one": 1}),
            "{program}"
        );
        // Rotation: the role's password and the secret change together;
        // keyward still holds the old one (a five-minute TTL).
        postgres.sql(&format!(
            "ALTER ROLE app PASSWORD {}",
            sql_literal(next_password)
        ));
        admin
            .put_secret_value()
            .secret_id("acme/prod/db")
            .secret_string(db(next_password))
            .send()
            .await
            .expect("rotate");
        assert_eq!(
            run(program, &script, "rotated"),
            json!({"step": "rotated", "one": 1, "invalidated": true}),
            "{program}"
        );
        let denied = run(program, &script, "denied");
        assert_eq!(
            (
                denied["status"].as_u64(),
                denied["code"].as_str(),
                denied["field"].as_str()
            ),
            (Some(422), Some("render_error"), Some("user")),
            "{program}: {denied}"
        );
        assert!(
            denied["message"]
                .as_str()
                .unwrap_or_default()
                .contains("was not found or is not allowed")
        );
    }
}

/// Secrets in two namespaces whose values say which they came from.
fn two_namespaces() -> Value {
    json!({
        "acme/prod/db": { "json": { "user": "prod-user" } },
        "acme/prod/api": "prod-api",
        "acme/dev/db": { "json": { "user": "dev-user" } },
        "acme/dev/api": "dev-api",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_never_mix_policies() {
    let config = |namespace: &str| {
        format!(
            r#"
[secrets]
namespace = "{namespace}"

[secrets.backend]
kind = "file"
path = "secrets.json"

[server]
socket = "keyward.sock"

[connectors.echo]
component = "{}"
egress = ["echo.test"]
allow = ["db", "api"]
"#,
            keyward_test_support::artifacts::ECHO
        )
    };
    let server = Server::start_with(Scratch::new(&config("acme/prod/"), &two_namespaces()));
    let server = std::sync::Arc::new(server);
    let body =
        json!({"fields": {"a": "{{ secrets.db.user }}", "b": "{{ secrets.api }}"}}).to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (server, body, stop) = (server.clone(), body.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, value) = server
                    .call(
                        "POST",
                        "/v1/connectors/echo/render",
                        Some(TOKEN),
                        &[],
                        body.clone(),
                    )
                    .await;
                assert_eq!(status, 200, "a request failed during reloads: {value}");
                let outputs = &value["outputs"];
                let (a, b) = (outputs[0]["value"].as_str(), outputs[1]["value"].as_str());
                let namespace = match (a, b) {
                    (Some("prod-user"), Some("prod-api")) => "prod",
                    (Some("dev-user"), Some("dev-api")) => "dev",
                    other => panic!("a render mixed two policies: {other:?}"),
                };
                seen.push(namespace);
            }
            seen
        }));
    }
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let namespace = if round % 2 == 0 {
            "acme/dev/"
        } else {
            "acme/prod/"
        };
        std::fs::write(server.scratch.config(), config(namespace)).expect("write");
        if round % 2 == 0 {
            server.signal("HUP");
        } else {
            let (status, value) = server
                .call("POST", "/v1/reload", Some(TOKEN), &[], "")
                .await;
            assert_eq!(status, 200, "{value}");
        }
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = Vec::new();
    for task in load {
        seen.extend(task.await.expect("load task"));
    }
    assert!(seen.len() > 40, "the load ran: {} renders", seen.len());
    assert!(
        seen.contains(&"prod") && seen.contains(&"dev"),
        "both policies served"
    );
    let (_, metrics) = server.call("GET", "/metrics", Some(TOKEN), &[], "").await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("keyward_reloads_total{outcome=\"ok\"} 10")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_under_load_serve_stale_then_a_clear_error_then_recover() {
    use keyward_test_support::{Fault, FaultProxy, Moto};
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.address()).await;
    moto.seed(&[("acme/prod/db", r#"{"user":"app"}"#)]).await;
    let config = format!(
        r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = 200
max_stale_ms = 1500

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{}"
attempt_timeout_ms = 2000
operation_timeout_ms = 3000
max_attempts = 1

[server]
socket = "keyward.sock"

[connectors.echo]
component = "{}"
egress = ["echo.test"]
allow = ["db"]
"#,
        proxy.url(),
        keyward_test_support::artifacts::ECHO
    );
    let server = Server::start_with(Scratch::new(&config, &json!({})));
    let body = json!({"fields": {"a": "{{ secrets.db.user }}"}}).to_string();
    let render = || {
        server.call(
            "POST",
            "/v1/connectors/echo/render",
            Some(TOKEN),
            &[],
            body.clone(),
        )
    };
    let (status, first) = render().await;
    assert_eq!(status, 200, "{first}");
    // Each kind of failure: past the TTL the cached value is served
    // (within max_stale), then a clear `backend_unavailable` with the
    // field and column, then recovery.
    for fault in [Fault::ServerError, Fault::Throttle] {
        proxy.set_fault(Some(fault));
        let started = Instant::now();
        let mut stale_served = 0;
        let error = loop {
            let (status, value) = render().await;
            match status {
                200 => {
                    assert_eq!(value["outputs"][0]["value"], "app");
                    stale_served += 1;
                }
                503 => break value,
                other => panic!("unexpected {other}: {value}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never gave up on the cache"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            stale_served > 3,
            "cached values were served while the backend failed"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(1300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(error["error"]["code"], "backend_unavailable", "{error}");
        assert_eq!(error["error"]["field"], "a");
        assert!(
            !error
                .to_string()
                .contains(keyward_test_support::FAULT_MESSAGE_CANARY),
            "the backend's message text never reaches a caller"
        );
        proxy.set_fault(None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while render().await.0 != 200 {
            assert!(Instant::now() < deadline, "no recovery");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // moto itself gone: the same, and the service keeps running.
    drop(moto);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (status, value) = render().await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (503, Some("backend_unavailable")),
        "{value}"
    );
    let (status, _) = server.call("GET", "/healthz", None, &[], "").await;
    assert_eq!(status, 200, "the process is still serving");
}

/// A hostile connector that sends the secret elsewhere is refused by the
/// service: 422 `egress_refused` naming the output and the part, for the
/// full and the masked token alike, counted in `/metrics`, and the canary
/// in no answer; an honest render answers each output's kind and, for a
/// destination, where it goes.
#[tokio::test]
async fn renders_that_send_a_secret_elsewhere_are_refused_with_a_code() {
    let config = CONFIG.replace("{SERVER}", "").replace(
        "[connectors.echo]",
        r#"[connectors.hostile]
component = "{HOSTILE}"
allow = ["db"]
[connectors.hostile.config]
mode = "egress"
secret = "{{ secrets.db.password }}"
host = "db.internal.example"
port = "5432"
database = "orders"
base_url = "https://jira.example.com/rest/"
attacker = "attacker.example"

[connectors.echo]"#,
    );
    let server = Server::start_with(Scratch::new(&config, &secrets()));
    for (attack, output, part) in keyward_test_support::EGRESS_ATTACKS {
        for token in [TOKEN, MASKED] {
            let body = json!({ "fields": {
                "mode": "egress", "attack": attack, "secret": "{{ secrets.db.password }}",
                "host": "db.internal.example", "port": "5432", "database": "orders",
                "base_url": "https://jira.example.com/rest/", "attacker": "attacker.example",
            }});
            let (status, answer) = server
                .call(
                    "POST",
                    "/v1/connectors/hostile/render",
                    Some(token),
                    &[],
                    body.to_string(),
                )
                .await;
            assert_eq!(status, 422, "{attack}: {answer}");
            assert_eq!(answer["error"]["code"], "egress_refused", "{answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with(&format!("connector `hostile`: output `{output}`: ")),
                "{message}"
            );
            assert!(message.contains(part), "{message}");
            assert!(!answer.to_string().contains(CANARY), "{answer}");
        }
    }
    let (status, answer) = server
        .call(
            "POST",
            "/v1/connectors/orders-db/render",
            Some(MASKED),
            &[],
            "",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let dsn = &answer["outputs"][0];
    assert_eq!(dsn["kind"], "destination", "{answer}");
    assert_eq!(
        dsn["destination"],
        json!({ "scheme": "postgresql", "host": "db.internal", "port": 5432 })
    );
    assert_eq!(answer["outputs"][4]["kind"], "credential", "{answer}");
    let (_, metrics) = server.call("GET", "/metrics", Some(TOKEN), &[], "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains(&format!(
            "connector=\"hostile\",outcome=\"egress_refused\"}} {}",
            2 * keyward_test_support::EGRESS_ATTACKS.len()
        )),
        "{metrics}"
    );
}

/// Each way a connector can be stopped is answered by its kind, not by its
/// message: the deadline 504 `deadline`, the rest 500 `connector_failed`,
/// each with `trap` naming what stopped it, and the service serves on.
#[tokio::test]
async fn every_kind_of_trap_is_answered_by_its_kind() {
    let config = CONFIG
        .replace("{SERVER}", "")
        .replace(
            "[connectors.echo]",
            r#"[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["db"]

[connectors.echo]"#,
        )
        .replace(
            "[server]",
            "[sandbox]\nrender_timeout_ms = 200\nmax_memory_mb = 64\nmax_host_calls = 50\n\n[server]",
        );
    let server = Server::start_with(Scratch::new(&config, &secrets()));
    let cases = [
        ("loop", &[][..], 504, "deadline", "cpu_deadline"),
        ("memory", &[][..], 500, "connector_failed", "memory"),
        (
            "recursion",
            &[][..],
            500,
            "connector_failed",
            "stack_overflow",
        ),
        ("list-loop", &[][..], 500, "connector_failed", "host_calls"),
        (
            "lift",
            &[("count", "12"), ("size", "1048576")][..],
            500,
            "connector_failed",
            "hostcall_bytes",
        ),
        ("panic", &[][..], 500, "connector_failed", "guest"),
    ];
    for (mode, more, status, code, trap) in cases {
        let mut fields = json!({ "mode": mode, "secret": "{{ secrets.db.password }}" });
        for (name, value) in more {
            fields[name] = json!(value);
        }
        let (got, answer) = server
            .call(
                "POST",
                "/v1/connectors/hostile/render",
                Some(TOKEN),
                &[],
                json!({ "fields": fields }).to_string(),
            )
            .await;
        assert_eq!(got, status, "{mode}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{mode}: {answer}");
        assert_eq!(answer["error"]["trap"], trap, "{mode}: {answer}");
        assert!(!answer.to_string().contains(CANARY), "{answer}");
    }
    let (status, answer) = server
        .call(
            "POST",
            "/v1/connectors/orders-db/render",
            Some(TOKEN),
            &[],
            "",
        )
        .await;
    assert_eq!(status, 200, "the service serves on: {answer}");
}

/// An audit log that cannot be opened stops the service at start-up with
/// an error that says so: nothing runs unaudited, and it is not reported
/// as the secrets backend's failure.
#[tokio::test]
async fn an_audit_log_that_cannot_be_opened_is_named_as_such() {
    let config = CONFIG.replace("{SERVER}", "").replace(
        "[server]",
        "[audit]\nfile = \"no-such-directory/audit.log\"\n\n[server]",
    );
    let scratch = Scratch::new(&config, &secrets());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--config"])
        .arg(scratch.config())
        .env("KEYWARD_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("keyward serve ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the audit log"), "{stderr}");
    assert!(stderr.contains("no-such-directory/audit.log"), "{stderr}");
    assert!(!stderr.contains("secrets backend"), "{stderr}");
}
