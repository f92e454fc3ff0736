//! A real Secrets Manager API server on loopback: moto in server mode.
//!
//! Each [`Moto`] is its own server (so tests run in parallel without
//! sharing state, and none needs a `/moto-api/reset`) on a free port chosen by the OS. The launcher watches its
//! parent and exits with it, so an aborted test run leaves no server behind;
//! dropping the handle stops it at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts moto's threaded server on 127.0.0.1, port 0, prints the port, and
/// exits when its parent (the test process) is gone.
const LAUNCHER: &str = r#"
import logging, os, sys, time
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
parent = os.getppid()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("PORT", server.get_host_and_port()[1], flush=True)
while os.getppid() == parent:
    time.sleep(0.2)
server.stop()
"#;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts a server; the Python interpreter is `$KEYWARD_TEST_PYTHON`
    /// (set by `scripts/test.sh` to the venv it installs moto into) or `python3`.
    pub fn start() -> Self {
        let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} to start moto: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read moto's port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("moto did not start (is `moto[server]` installed for {python}?): {line:?}")
            });
        Self { child, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// A Secrets Manager client of this server, with the test credentials.
    pub fn admin(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::from_conf(sdk_builder().endpoint_url(self.url()).build())
    }

    /// Creates each (name, text) secret; returns the client, for rotations.
    pub async fn seed(&self, secrets: &[(&str, &str)]) -> aws_sdk_secretsmanager::Client {
        let admin = self.admin();
        for (name, text) in secrets {
            admin
                .create_secret()
                .name(*name)
                .secret_string(*text)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create secret {name}: {e}"));
        }
        admin
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared SDK config for the local server (what `AwsStore` takes):
/// region `us-east-1`, static test credentials. The endpoint comes from
/// the keyward configuration's `endpoint_url`.
pub fn sdk_config() -> aws_config::SdkConfig {
    use aws_sdk_secretsmanager::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keyward-tests",
        )))
        .build()
}

/// An SDK config builder for the local server: region `us-east-1`, static
/// test credentials (moto checks none). Add `.endpoint_url(...)`.
pub fn sdk_builder() -> aws_sdk_secretsmanager::config::Builder {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_secretsmanager::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "keyward-tests",
        ))
}
