//! The `keyward` command as a process: outputs, exit codes, and that no
//! error path prints a secret value.

use std::process::{Command, Output};

use keyward_test_support::{CANARY, Scratch, artifacts};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
backend = "file"
path = "secrets.json"
namespace = "acme/prod"

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host", "team/**"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets.db.password }}"

[connectors.denied]
component = "{POSTGRES}"
allow = ["host"]
[connectors.denied.config]
host = "{{ secrets.host }}"
database = "orders"
user = "{{ secrets.db.user }}"

[connectors.bad-template]
component = "{POSTGRES}"
allow = ["db"]
[connectors.bad-template.config]
host = "h"
database = "d"
user = "u"
password = "{{ secrets.db.password | upper }}"

[connectors.missing-key]
component = "{POSTGRES}"
allow = ["db"]
[connectors.missing-key.config]
host = "h"
database = "d"
user = "{{ secrets.db.username }}"

[connectors.not-a-connector]
component = "{NOT_A_CONNECTOR}"
"#;

fn scratch() -> Scratch {
    Scratch::new(
        CONFIG,
        &json!({
            "acme/prod/host": "db.internal",
            "acme/prod/db": { "json": { "user": "app", "password": CANARY } },
            "acme/prod/team/api-key": "k",
            "acme/prod/team/x/y": "k",
            "acme/dev/db": CANARY,
        }),
    )
}

fn keyward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .output()
        .expect("run keyward")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with exactly one line on stderr, naming `expected`, and no canary.
fn assert_clean_failure(o: &Output, expected: &str) {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("keyward: error: "), "{err}");
    assert!(err.contains(expected), "`{expected}` not in: {err}");
    assert!(
        !err.contains(CANARY) && !stdout(o).contains(CANARY),
        "canary leaked: {err}"
    );
}

#[test]
fn render_masks_sensitive_values_unless_revealed() {
    let s = scratch();
    let config = s.config();
    let config = config.to_str().unwrap();
    let masked = keyward(&["render", "--config", config, "orders-db"]);
    assert!(masked.status.success(), "{}", stderr(&masked));
    let json: serde_json::Value = serde_json::from_str(&stdout(&masked)).unwrap();
    assert_eq!(json["dsn"], "****");
    assert_eq!(json["host"], "db.internal");
    assert!(!stdout(&masked).contains(CANARY));

    let revealed = keyward(&["render", "--config", config, "orders-db", "--reveal"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&revealed)).unwrap();
    let dsn = json["dsn"].as_str().unwrap();
    assert!(
        dsn.starts_with("postgresql://app:canary-7f3e9a1c-never-print-me@db.internal:5432/orders"),
        "{dsn}"
    );
}

#[test]
fn refs_lists_allowed_names_ready_to_paste() {
    let s = scratch();
    let out = keyward(&[
        "refs",
        "--config",
        s.config().to_str().unwrap(),
        "orders-db",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{{ secrets.db }}\n{{ secrets.host }}\n{{ secrets['team/api-key'] }}\n{{ secrets['team/x/y'] }}\n"
    );
}

#[test]
fn describe_prints_the_fields() {
    let out = keyward(&["describe", artifacts::POSTGRES]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["name"], "postgres");
    let fields: Vec<&str> = info["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["host", "port", "database", "user", "password", "sslmode"]
    );
    assert_eq!(info["fields"][4]["sensitive"], true);
}

#[test]
fn bad_input_gets_one_clear_line_and_a_nonzero_exit() {
    let s = scratch();
    let config = s.config();
    let config = config.to_str().unwrap();
    assert_clean_failure(
        &keyward(&["render", "--config", "/nonexistent/k.toml", "x"]),
        "/nonexistent/k.toml: cannot read",
    );
    assert_clean_failure(
        &keyward(&["render", "--config", config, "nope"]),
        "unknown connector `nope`; configured: ",
    );
    assert_clean_failure(
        &keyward(&["render", "--config", config, "denied"]),
        "connector `denied`: field `user`, column 1: secret `db[\"user\"]` was not found or is not allowed",
    );
    assert_clean_failure(
        &keyward(&["render", "--config", config, "bad-template"]),
        "field `password`, column 26: unknown filter `upper`",
    );
    assert_clean_failure(
        &keyward(&["render", "--config", config, "missing-key"]),
        "secret `db[\"username\"]` has no key `username`",
    );
    assert_clean_failure(
        &keyward(&["render", "--config", config, "not-a-connector"]),
        "not a keyward connector",
    );
    assert_clean_failure(
        &keyward(&["describe", artifacts::NOT_A_CONNECTOR]),
        "not a keyward connector",
    );
    assert_clean_failure(
        &keyward(&["describe", config]),
        "not a WebAssembly component",
    );

    std::fs::write(
        s.path().join("keyward.toml"),
        format!("[secrets]\nbackend = \"file\"\npath = \"secrets.json\"\npasword = \"{CANARY}\"\n"),
    )
    .unwrap();
    assert_clean_failure(
        &keyward(&["render", "--config", config, "x"]),
        "line 4, column 1: unknown field `pasword`",
    );
    std::fs::write(
        s.path().join("secrets.json"),
        format!("{{\"acme/prod/db\": \"{CANARY}\""),
    )
    .unwrap();
    std::fs::write(
        s.path().join("keyward.toml"),
        CONFIG.replace("{POSTGRES}", artifacts::POSTGRES),
    )
    .unwrap();
    assert_clean_failure(
        &keyward(&["render", "--config", config, "orders-db"]),
        "secrets.json: not a JSON object",
    );
}
