//! Connectors written in TypeScript (componentize-js and `sdk/typescript`),
//! held to the same contract as Rust ones.
//!
//! The MariaDB example, proven for real: its password in the local Secrets
//! Manager, a real MariaDB server (Debian's), a user whose password is
//! URL-hostile; the rendered `mysql://` URL authenticates with mysql2 (the
//! Node client) and runs `SELECT 1`. A hostile TypeScript connector meets
//! the same bounds as the Rust one (`keyward_tests::hostile`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use keyward_tests::URL_HOSTILE_PASSWORD as PASSWORD;
use keyward_tests::URL_HOSTILE_PASSWORD_ENCODED as ENCODED;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"

[connectors.orders]
component = "{MARIADB_TS}"
allow = ["mariadb"]
[connectors.orders.config]
host = "127.0.0.1"
port = "{PORT}"
user = "{{ secrets.mariadb.user }}"
password = "{{ secrets.mariadb.password }}"
database = "orders"
"#;

/// A MariaDB server in a temporary directory on a free loopback port,
/// stopped on drop.
struct MariaDb {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl MariaDb {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let installed = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db (scripts/test.sh installs Debian's mariadb-server)");
        assert!(
            installed.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--skip-log-bin"])
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let server = Self { child, dir, port };
        let started = Instant::now();
        while server.sql("SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mariadbd did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Runs SQL as root over the server's socket.
    fn sql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new("mariadb")
            .args(["--no-defaults", "-uroot"])
            .arg(format!(
                "--socket={}",
                self.dir.path().join("sock").display()
            ))
            .args(["-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mariadb-typescript")
}

/// `SELECT 1` over `url` with mysql2 (the example's test dependency).
fn mysql2_select_one(url: &str) -> Result<String, String> {
    let output = Command::new("node")
        .current_dir(example_dir())
        .args([
            "-e",
            "const m = require('mysql2/promise');
             (async () => {
               const c = await m.createConnection(process.env.URL);
               const [rows] = await c.query('SELECT 1 AS one');
               console.log(JSON.stringify(rows));
               await c.end();
             })().catch((e) => { console.error(e.message); process.exit(1); });",
        ])
        .env("URL", url)
        .output()
        .expect("node");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_typescript_mariadb_connector_renders_a_url_that_authenticates() {
    let db = MariaDb::start();
    let password = PASSWORD.replace('\'', "''");
    db.sql(&format!(
        "CREATE DATABASE orders; \
         CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{}'; \
         GRANT ALL ON orders.* TO 'app'@'127.0.0.1';",
        password.replace('\\', "\\\\")
    ))
    .expect("create the user");
    let config = CONFIG.replace("{PORT}", &db.port.to_string());
    let secret = json!({ "user": "app", "password": PASSWORD });
    let (_moto, _scratch, keyward) =
        keyward_tests::keyward_with_one_secret("acme/prod/mariadb", &secret, &config).await;

    let rendered = keyward.render("orders").await.expect("render");
    let url = rendered.get("url").expect("url");
    assert_eq!(
        url,
        format!("mysql://app:{ENCODED}@127.0.0.1:{}/orders", db.port)
    );
    assert!(rendered.values[0].sensitive);
    assert_eq!(mysql2_select_one(url).as_deref(), Ok(r#"[{"one":1}]"#));
    let wrong = url.replace("%C3%AF@", "x@");
    let refused = mysql2_select_one(&wrong).expect_err("a wrong password is refused");
    assert!(refused.contains("Access denied"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_typescript_connector_is_contained() {
    // No network mode: StarlingMonkey keeps a `fetch` that has no
    // `wasi:http` import behind it (the build leaves it out; the host
    // refuses a component that imports it).
    keyward_tests::hostile::is_contained("{HOSTILE_TS}", &[]).await;
}

#[tokio::test]
async fn no_channel_of_a_typescript_connector_carries_a_sealed_secret_out() {
    keyward_tests::hostile::no_channel_carries_a_sealed_secret_out("{HOSTILE_TS}").await;
}
