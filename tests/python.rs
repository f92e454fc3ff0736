//! Connectors written in Python (componentize-py and `sdk/python`), held
//! to the same contract as Rust ones.
//!
//! The Redis example, proven for real: its password in the local Secrets
//! Manager, a real Redis server (Debian's), an ACL user whose password is
//! URL-hostile; the rendered `redis://` URL authenticates with redis-py.
//!
//! A hostile Python connector meets the same bounds as the Rust one: the
//! CPU deadline, the memory limit, the log limit, no filesystem,
//! environment or network, and no channel that carries a sealed secret out.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyward_host::{Config, Keyward};
use keyward_test_support::{CANARY, Moto, Scratch, sdk_builder};
use serde_json::json;

const PASSWORD: &str = "p@ss:w/rd#%?&\"é ünï";

const REDIS_CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"

[connectors.cache]
component = "{REDIS_PY}"
allow = ["redis"]
[connectors.cache.config]
host = "127.0.0.1"
port = "{PORT}"
username = "{{ secrets.redis.username }}"
password = "{{ secrets.redis.password }}"
"#;

/// A Redis server on a free loopback port, stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs Debian's redis-server)");
        let redis = Self { child, port };
        let started = Instant::now();
        while redis.cli(&["PING"]).trim() != "PONG" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    /// Runs redis-cli against the server as the default user.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PING over `url` with redis-py, the Python client (in the test venv).
fn redis_py_ping(url: &str) -> Result<String, String> {
    let python = std::env::var("KEYWARD_TEST_PYTHON")
        .expect("KEYWARD_TEST_PYTHON (scripts/test.sh sets it to the venv's python)");
    let output = Command::new(python)
        .args([
            "-c",
            "import os, redis; print(redis.from_url(os.environ['URL']).ping())",
        ])
        .env("URL", url)
        .output()
        .expect("python");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_python_redis_connector_renders_a_url_that_authenticates() {
    let redis = Redis::start();
    let set = redis.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "+@all",
    ]);
    assert_eq!(set.trim(), "OK");
    let moto = Moto::start();
    let admin =
        aws_sdk_secretsmanager::Client::from_conf(sdk_builder().endpoint_url(moto.url()).build());
    admin
        .create_secret()
        .name("acme/prod/redis")
        .secret_string(json!({ "username": "app", "password": PASSWORD }).to_string())
        .send()
        .await
        .expect("create secret");
    let config = REDIS_CONFIG
        .replace("{MOTO}", &moto.url())
        .replace("{PORT}", &redis.port.to_string());
    let (_scratch, keyward) = keyward_tests::keyward_on_aws(&config);

    let rendered = keyward.render("cache").await.expect("render");
    let url = rendered.get("url").expect("url");
    assert_eq!(
        url,
        format!(
            "redis://app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9%20%C3%BCn%C3%AF@127.0.0.1:{}/0",
            redis.port
        )
    );
    assert!(rendered.values[0].sensitive);
    assert_eq!(redis_py_ping(url).as_deref(), Ok("True"));
    // The same URL with a wrong password is refused: the password matters.
    let wrong = url.replace("%C3%AF@", "x@");
    let refused = redis_py_ping(&wrong).expect_err("a wrong password is refused");
    assert!(
        refused.contains("WRONGPASS") || refused.contains("invalid"),
        "{refused}"
    );
}

const HOSTILE_CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[audit]
file = "audit.jsonl"

[sandbox]
render_timeout_ms = 1000
max_memory_mb = 64

[connectors.sealed]
component = "{HOSTILE_PY}"
allow = ["key"]

[connectors.revealing]
component = "{HOSTILE_PY}"
allow = ["key"]
reveal = ["key"]
"#;

async fn hostile_host() -> (Scratch, Keyward) {
    keyward_tests::captured_logs();
    let scratch = Scratch::new(HOSTILE_CONFIG, &json!({ "acme/prod/key": CANARY }));
    let keyward = Keyward::new(Config::load(&scratch.config()).expect("config"))
        .await
        .expect("keyward");
    (scratch, keyward)
}

async fn attack(
    k: &Keyward,
    connector: &str,
    mode: &str,
) -> Result<keyward_host::Rendered, keyward_host::Error> {
    let fields = [
        ("mode".to_string(), mode.to_string()),
        ("secret".to_string(), "{{ secrets.key }}".to_string()),
    ];
    k.render_fields(connector, &fields).await
}

fn contained(result: Result<keyward_host::Rendered, keyward_host::Error>, expected: &str) {
    let message = result.expect_err("the attack must fail").to_string();
    assert!(message.contains(expected), "{message}");
    assert!(!message.contains(CANARY), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_connector_is_contained() {
    let (_s, k) = hostile_host().await;
    let ok = attack(&k, "sealed", "ok")
        .await
        .expect("a plain render works");
    assert_eq!(ok.get("result"), Some("fine"));

    let started = Instant::now();
    contained(attack(&k, "sealed", "loop").await, "CPU deadline");
    assert!(started.elapsed() < Duration::from_secs(10));
    contained(
        attack(&k, "sealed", "memory").await,
        "memory limit of 64 MiB",
    );

    let flood = attack(&k, "sealed", "log-flood").await;
    contained(flood, "host calls in one render");

    for (mode, denied) in [("fs", "denied: "), ("network", "denied: ")] {
        let rendered = attack(&k, "sealed", mode).await.expect(mode);
        let result = rendered.get("result").unwrap_or_default();
        assert!(result.starts_with(denied), "{mode}: {result}");
    }
    let env = attack(&k, "sealed", "env").await.expect("env");
    assert_eq!(
        env.get("result"),
        Some(""),
        "no environment variable is visible"
    );

    // After all of that, the connector still renders.
    let ok = attack(&k, "sealed", "ok").await.expect("still serving");
    assert_eq!(ok.get("result"), Some("fine"));
}

#[tokio::test]
async fn no_channel_of_a_python_connector_carries_a_sealed_secret_out() {
    let (s, k) = hostile_host().await;
    for mode in ["stdout", "exfiltrate"] {
        let rendered = attack(&k, "sealed", mode).await.expect(mode);
        for value in &rendered.values {
            assert!(!value.name.contains(CANARY), "an output name holds it");
            if value.value.contains(CANARY) {
                assert!(value.sensitive, "{} holds the secret unmasked", value.name);
            }
        }
        assert!(!format!("{rendered:?}").contains(CANARY));
    }
    let refused = attack(&k, "sealed", "exfiltrate").await.expect("render");
    assert!(
        refused
            .get("reveal")
            .unwrap_or_default()
            .contains("not granted")
    );

    // A connector granted reveal: every output is sensitive, and the value
    // is masked in its logs.
    let revealing = attack(&k, "revealing", "exfiltrate").await.expect("render");
    assert_eq!(revealing.get("revealed"), Some(CANARY));
    assert!(revealing.values.iter().all(|v| v.sensitive));

    let logs = keyward_tests::logs_text();
    assert!(
        logs.contains("sealed <sealed>"),
        "the connector's log line is there"
    );
    assert!(!logs.contains(CANARY), "the canary reached the log");
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit");
    assert!(!audit.contains(CANARY));
    assert!(audit.contains("revealed"));
}
