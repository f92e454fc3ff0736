//! What the tests of `keyward serve` share: a configuration, its secrets
//! and tokens, and the real process over its real socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use keyward_test_support::{CANARY, Scratch};
use serde_json::{Value, json};

pub const TOKEN: &str = "value-token-0123456789";
pub const MASKED: &str = "masked-token-0123456789";

pub const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[server]
socket = "keyward.sock"
listen = "127.0.0.1:0"
{SERVER}

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host"]
public = ["host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets.db.password }}"

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db"]
"#;

pub fn secrets() -> Value {
    json!({
        "acme/prod/host": "db.internal",
        "acme/prod/db": { "json": { "user": "app", "password": CANARY } },
        "acme/prod/forbidden": CANARY,
    })
}

/// A running `keyward serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub scratch: Scratch,
    pub tcp: String,
}

impl Server {
    pub fn start(server_settings: &str) -> Self {
        Self::start_with(Scratch::new(
            &CONFIG.replace("{SERVER}", server_settings),
            &secrets(),
        ))
    }

    /// Serves the configuration in `scratch`, with test AWS credentials in
    /// the environment (for a moto backend).
    pub fn start_with(scratch: Scratch) -> Self {
        Self::start_wrapped(scratch, &[])
    }

    /// [`Server::start_with`], run under `wrapper` (a command and its
    /// arguments, such as `prlimit --nofile=128`) if one is given. Its
    /// stderr is kept in `serve.stderr` in the scratch directory.
    pub fn start_wrapped(scratch: Scratch, wrapper: &[&str]) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_keyward"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_keyward")),
        };
        let stderr = std::fs::File::create(scratch.path().join("serve.stderr")).expect("stderr");
        let mut child = command
            .args(["serve", "--config"])
            .arg(scratch.config())
            .env("KEYWARD_TOKEN", TOKEN)
            .env("KEYWARD_MASKED_TOKEN", MASKED)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start keyward serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut tcp = String::new();
        for line in lines.by_ref() {
            let line = line.expect("line");
            if let Some(address) = line.split(' ').find_map(|w| w.strip_prefix("tcp:")) {
                tcp = address.to_string();
            }
            if line == "keyward serve: ready" {
                break;
            }
        }
        // Keep reading stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            scratch,
            tcp,
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("serve.stderr")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.scratch.path().join("keyward.sock")
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// One request over the Unix socket: status and body (JSON if it parses).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        let stream = tokio::net::UnixStream::connect(self.socket())
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "keyward");
        if let Some(token) = token {
            request = request.header("x-keyward-token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(request.body(Full::new(body.into())).expect("request"))
            .await
            .expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
