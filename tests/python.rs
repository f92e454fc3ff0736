//! Connectors written in Python (componentize-py and `sdk/python`), held
//! to the same contract as Rust ones.
//!
//! The Redis example, proven for real: its password in the local Secrets
//! Manager, a real Redis server (Debian's), an ACL user whose password is
//! URL-hostile; the rendered `redis://` URL authenticates with redis-py.
//!
//! A hostile Python connector meets the same bounds as the Rust one
//! (`keyward_tests::hostile`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use keyward_tests::URL_HOSTILE_PASSWORD as PASSWORD;
use keyward_tests::URL_HOSTILE_PASSWORD_ENCODED as ENCODED;

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
    let config = REDIS_CONFIG.replace("{PORT}", &redis.port.to_string());
    let secret = json!({ "username": "app", "password": PASSWORD });
    let (_moto, _scratch, keyward) =
        keyward_tests::keyward_with_one_secret("acme/prod/redis", &secret, &config).await;

    let rendered = keyward.render("cache").await.expect("render");
    let url = rendered.get("url").expect("url");
    assert_eq!(
        url,
        format!("redis://app:{ENCODED}@127.0.0.1:{}/0", redis.port)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_python_connector_is_contained() {
    keyward_tests::hostile::is_contained(
        "{HOSTILE_PY}",
        &[("fs", "denied: "), ("network", "denied: ")],
    )
    .await;
}

#[tokio::test]
async fn no_channel_of_a_python_connector_carries_a_sealed_secret_out() {
    keyward_tests::hostile::no_channel_carries_a_sealed_secret_out("{HOSTILE_PY}").await;
}
