//! The `keyward` command as a process: outputs, exit codes, and that no
//! error path prints a secret value.

use std::process::{Command, Output};

use keyward_test_support::{CANARY, EGRESS_ATTACKS, Scratch, artifacts};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod"

[secrets.backend]
kind = "file"
path = "secrets.json"

[audit]
file = "audit.jsonl"
tracing = false

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host", "team/**"]
public = ["host"]
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

[connectors.missing-key]
component = "{POSTGRES}"
allow = ["db"]
[connectors.missing-key.config]
host = "h"
database = "d"
user = "{{ secrets.db.username }}"

[connectors.not-a-connector]
component = "{NOT_A_CONNECTOR}"

[connectors.keys-only]
component = "{POSTGRES}"
allow = ["db#user", "db#password", "team/api-key"]
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
    // Past the one error line, only the load-time report of references a
    // connector's policy refuses (the `denied` connector's) may appear.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains(" WARN ") || !l.contains("is not allowed"))
        .collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    let err = lines[0];
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

    let audit = keyward(&["audit", "--config", config, "-n", "2"]);
    assert!(audit.status.success(), "{}", stderr(&audit));
    let lines: Vec<serde_json::Value> = stdout(&audit)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|r| r["decision"] == "allowed" && r["connector"] == "orders-db")
    );
    assert!(!stdout(&audit).contains(CANARY));
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
fn refs_names_the_keys_a_key_rule_limits_a_secret_to() {
    let s = scratch();
    let out = keyward(&[
        "refs",
        "--config",
        s.config().to_str().unwrap(),
        "keys-only",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{{ secrets.db.user }}\n{{ secrets.db.password }}\n{{ secrets['team/api-key'] }}\n"
    );
}

#[test]
fn new_connector_writes_a_crate_and_refuses_bad_names_and_existing_directories() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().to_str().expect("utf-8 path");
    let out = keyward(&["new", "connector", "acme-api", "--dir", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created connector `acme-api`"));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "keyward.toml",
        "secrets.json",
        ".gitignore",
    ] {
        assert!(
            parent.path().join("acme-api").join(file).is_file(),
            "{file}"
        );
    }
    assert_clean_failure(
        &keyward(&["new", "connector", "acme-api", "--dir", dir]),
        "exists already",
    );
    assert_clean_failure(
        &keyward(&["new", "connector", "Acme API", "--dir", dir]),
        "connector name `Acme API`: must start with a lowercase letter",
    );
    assert_clean_failure(
        &keyward(&["new", "connector", "other", "--dir", dir, "--sdk", dir]),
        "pass --sdk",
    );
    assert!(!parent.path().join("other").exists());
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
    let bad_template = s.path().join("bad-template.toml");
    std::fs::write(
        &bad_template,
        std::fs::read_to_string(s.config()).unwrap().replace(
            "password = \"{{ secrets.db.password }}\"",
            "password = \"{{ secrets.db.password | upper }}\"",
        ),
    )
    .unwrap();
    assert_clean_failure(
        &keyward(&[
            "render",
            "--config",
            bad_template.to_str().unwrap(),
            "orders-db",
        ]),
        "bad-template.toml: connectors.orders-db.config.password, column 26: unknown filter `upper` (expected urlencode, json or base64)",
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
        format!(
            "[secrets.backend]\nkind = \"file\"\npath = \"secrets.json\"\npasword = \"{CANARY}\"\n"
        ),
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
        "secrets.json: not valid JSON: EOF while parsing",
    );
}

/// The AWS backend from the command line: credentials from the environment,
/// a local Secrets Manager server as the endpoint.
mod aws {
    use super::*;
    use keyward_test_support::Moto;

    fn aws_config(moto: &Moto) -> String {
        format!(
            r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{}"

[connectors.orders-db]
component = "{}"
allow = ["db", "host"]
public = ["host"]
[connectors.orders-db.config]
host = "{{{{ secrets.host }}}}"
database = "orders"
user = "{{{{ secrets.db.user }}}}"
password = "{{{{ secrets['db']['password'] }}}}"

[connectors.broken]
component = "{}"
allow = ["host"]
[connectors.broken.config]
host = "{{{{ secrets.host }}}}"
database = "orders"
user = "{{{{ secrets.db.user }}}}"
"#,
            moto.url(),
            artifacts::POSTGRES,
            artifacts::POSTGRES
        )
    }

    fn keyward_with_env(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run keyward")
    }

    async fn seed(moto: &Moto) {
        let db = json!({"user": "app", "password": CANARY}).to_string();
        moto.seed(&[("acme/prod/host", "db.internal"), ("acme/prod/db", &db)])
            .await;
    }

    #[tokio::test]
    async fn check_and_render_against_secrets_manager() {
        let moto = Moto::start();
        seed(&moto).await;
        let s = Scratch::new(&aws_config(&moto), &json!({}));
        let config = s.config();
        let config = config.to_str().unwrap();

        let rendered = keyward_with_env(&["render", "--config", config, "orders-db"]);
        assert!(rendered.status.success(), "{}", stderr(&rendered));
        let json: serde_json::Value = serde_json::from_str(&stdout(&rendered)).unwrap();
        assert_eq!(json["host"], "db.internal");
        assert_eq!(json["dsn"], "****");

        let check = keyward_with_env(&["check", "--config", config]);
        let out = stdout(&check);
        assert!(
            !check.status.success(),
            "the broken connector must fail the check"
        );
        assert!(
            out.contains("backend: ok (2 secrets in the namespace)"),
            "{out}"
        );
        assert!(out.contains("connector orders-db:\n  {{ secrets.db }}  ok\n  {{ secrets.host }}  ok\n  render: ok"), "{out}");
        assert!(out.contains("connector broken:\n  field `user`, column 1: FAILED: `db[\"user\"]` (acme/prod/db) is not allowed: no allow rule matches\n  {{ secrets.host }}  ok\n  render: FAILED: connector `broken`: field `user`"), "{out}");
        assert!(
            stderr(&check).contains("keyward: error: 2 check(s) failed"),
            "{}",
            stderr(&check)
        );
        assert!(!out.contains(CANARY) && !stderr(&check).contains(CANARY));
    }

    #[test]
    fn check_reports_an_unreachable_backend_in_one_line() {
        let moto = Moto::start();
        let s = Scratch::new(&aws_config(&moto).replace("max_attempts", "x"), &json!({}));
        let config = s.config();
        drop(moto);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "kind = \"aws\"",
            "kind = \"aws\"\nmax_attempts = 1\nattempt_timeout_ms = 500\noperation_timeout_ms = 1000",
        );
        std::fs::write(&config, text).unwrap();
        let check = keyward_with_env(&["check", "--config", config.to_str().unwrap()]);
        assert_clean_failure(
            &check,
            "secrets backend: backend unavailable: cannot connect to Secrets Manager",
        );
    }
}

#[test]
fn hostile_output_never_reaches_the_terminal() {
    let config = format!(
        "[secrets.backend]\nkind = \"file\"\npath = \"secrets.json\"\n\n\
         [connectors.printer]\ncomponent = \"{}\"\nallow = [\"key\"]\n\
         [connectors.printer.config]\nmode = \"stdout\"\nsecret = \"{{{{ secrets.key }}}}\"\n\n\
         [connectors.snoop]\ncomponent = \"{}\"\n[connectors.snoop.config]\nmode = \"env\"\n",
        artifacts::HOSTILE,
        artifacts::HOSTILE
    );
    let s = Scratch::new(&config, &json!({ "key": CANARY }));
    let config = s.config();
    let config = config.to_str().unwrap();
    let printed = keyward(&["render", "--config", config, "printer"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert!(!stdout(&printed).contains(CANARY) && !stderr(&printed).contains(CANARY));
    let snooped = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["render", "--config", config, "snoop"])
        .env("AWS_SECRET_ACCESS_KEY", CANARY)
        .output()
        .expect("run keyward");
    assert!(
        stdout(&snooped).contains("\"result\": \"vars=0 aws=None\""),
        "{}",
        stdout(&snooped)
    );
}

#[test]
fn a_connector_cannot_forge_lines_or_escapes_on_the_terminal() {
    let config = format!(
        "[secrets.backend]\nkind = \"file\"\npath = \"secrets.json\"\n\n\
         [connectors.forger]\ncomponent = \"{}\"\nallow = [\"key\"]\n\
         [connectors.forger.config]\nmode = \"forge\"\n",
        artifacts::HOSTILE
    );
    let s = Scratch::new(&config, &json!({ "key": CANARY }));
    let config = s.config();
    let config = config.to_str().unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["render", "--config", config, "forger"])
        .env("KEYWARD_LOG", "info")
        .output()
        .expect("run keyward");
    let err = stderr(&rendered);
    assert!(!rendered.status.success());
    for raw in ['\r', '\u{1b}', '\u{7}', '\u{9b}'] {
        assert!(!err.contains(raw), "raw {raw:?} on the terminal: {err:?}");
    }
    assert_eq!(
        err.lines().count(),
        2,
        "the guest's log line and the error line, nothing forged: {err}"
    );
    assert!(
        err.lines()
            .all(|l| !l.starts_with("2026-01-01") && !l.starts_with("  ")),
        "{err}"
    );
    let checked = keyward(&["check", "--config", config]);
    let out = stdout(&checked);
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("{{ secrets.db }}")),
        "no forged check line: {out}"
    );
}

#[test]
fn compile_fills_the_compile_cache_for_every_connector() {
    let s = Scratch::new(
        &CONFIG
            .replace("[audit]", "[sandbox]\ncompile_cache = \"cache\"\n\n[audit]")
            .replace(
                "[connectors.not-a-connector]\ncomponent = \"{NOT_A_CONNECTOR}\"\n",
                "",
            ),
        &json!({}),
    );
    let config = s.config();
    let config = config.to_str().unwrap();
    let compiled = keyward(&["compile", "--config", config]);
    assert!(compiled.status.success(), "{}", stderr(&compiled));
    let out = stdout(&compiled);
    assert!(
        out.contains("orders-db: ") && out.contains("compiled into "),
        "{out}"
    );
    let files = std::fs::read_dir(s.path().join("cache")).map_or(0, |d| d.count());
    assert!(files > 0, "the cache holds the compiled component");

    let plain = Scratch::new(CONFIG, &json!({}));
    assert_clean_failure(
        &keyward(&["compile", "--config", plain.config().to_str().unwrap()]),
        "[sandbox] compile_cache is not set",
    );
}

/// A hostile connector that sends the secret elsewhere is refused by
/// `keyward render`, for every attack, with one line naming the output and
/// the part, and the canary nowhere; the audit file records each refusal.
#[test]
fn render_refuses_every_secret_sent_to_another_destination() {
    let mut config = String::from(
        r#"
[secrets]
namespace = "acme/prod"

[secrets.backend]
kind = "file"
path = "secrets.json"

[audit]
file = "audit.jsonl"
tracing = false
"#,
    );
    for (attack, _, _) in EGRESS_ATTACKS {
        config.push_str(&format!(
            r#"
[connectors.{attack}]
component = "{{HOSTILE}}"
allow = ["db"]
[connectors.{attack}.config]
mode = "egress"
attack = "{attack}"
secret = "{{{{ secrets.db.password }}}}"
host = "db.internal.example"
port = "5432"
database = "orders"
base_url = "https://jira.example.com/rest/"
attacker = "attacker.example"
"#
        ));
    }
    let scratch = Scratch::new(
        &config,
        &json!({ "acme/prod/db": { "json": { "password": CANARY } } }),
    );
    let path = scratch.config();
    let path = path.to_str().expect("path");
    for (attack, output, part) in EGRESS_ATTACKS {
        let o = keyward(&["render", "--config", path, attack]);
        assert_clean_failure(&o, &format!("connector `{attack}`: output `{output}`: "));
        assert!(stderr(&o).contains(part), "{attack}: {}", stderr(&o));
        assert!(!stderr(&o).contains(CANARY) && !stdout(&o).contains(CANARY));
    }
    let o = keyward(&["render", "--config", path, "dsn-host"]);
    assert_clean_failure(
        &o,
        "its host matches none of the connector's destination pins (from fields `host`, \
         `port`, `database`, `base_url`)",
    );
    let audit = std::fs::read_to_string(scratch.path().join("audit.jsonl")).expect("audit");
    let refused = audit.matches("\"decision\":\"egress_refused\"").count();
    assert_eq!(refused, EGRESS_ATTACKS.len() + 1, "{audit}");
    assert!(!audit.contains(CANARY));
}

/// What the host does after the guest returns is bounded in the CLI too:
/// a render error of megabytes of ESC bytes is one short escaped line, and
/// thousands of outputs or an amplifying composition are one error naming
/// its setting, with nothing on stdout.
#[test]
fn render_bounds_what_a_connector_returns() {
    let mut config = String::from(
        r#"
[secrets]
namespace = "acme/prod"

[secrets.backend]
kind = "file"
path = "secrets.json"
"#,
    );
    for (id, mode, count, size, _) in BOUNDS_ATTACKS {
        config.push_str(&format!(
            r#"
[connectors.{id}]
component = "{{HOSTILE}}"
egress = ["echo.test"]
allow = ["db"]
[connectors.{id}.config]
mode = "{mode}"
secret = "{{{{ secrets.db.password }}}}"
count = "{count}"
size = "{size}"
"#
        ));
    }
    let scratch = Scratch::new(
        &config,
        &json!({ "acme/prod/db": { "json": { "password": CANARY } } }),
    );
    let path = scratch.config();
    let path = path.to_str().expect("path");
    for (id, _, _, _, expected) in BOUNDS_ATTACKS {
        let o = keyward(&["render", "--config", path, id]);
        assert_clean_failure(&o, expected);
        assert!(
            o.stdout.is_empty(),
            "{id}: {} bytes on stdout",
            o.stdout.len()
        );
        assert!(
            o.stderr.len() < 10_000,
            "{id}: {} bytes on stderr",
            o.stderr.len()
        );
        assert!(!stderr(&o).contains(CANARY) && !stderr(&o).contains('\u{1b}'));
    }
}

/// (connector id, hostile mode, count, size, what the one error line says)
const BOUNDS_ATTACKS: [(&str, &str, usize, usize, &str); 4] = [
    ("many", "many-outputs", 5000, 0, "sandbox.max_outputs"),
    ("amplify", "amplify", 64, 5, "sandbox.max_output_kb"),
    ("lift", "lift", 12, 1 << 20, "twice sandbox.max_output_kb"),
    ("error", "huge-error", 0, 3 << 20, "(cut; 3145728 bytes)"),
];

#[test]
fn render_refs_check_and_audit_take_a_tenant() {
    let s = scratch();
    let tenants = s.path().join("tenants");
    std::fs::create_dir(&tenants).unwrap();
    std::fs::write(
        tenants.join("acme.json"),
        json!({ "app/db": "acme-db" }).to_string(),
    )
    .unwrap();
    std::fs::write(
        tenants.join("acme.toml"),
        format!(
            "namespace = \"app/\"\n[backend]\nkind = \"file\"\npath = \"acme.json\"\n\
             [connectors.echo]\ncomponent = \"{}\"\negress = [\"echo.test\"]\nallow = [\"db\"]\n\
             [connectors.echo.config]\na = \"{{{{ secrets.db }}}}\"\n",
            artifacts::ECHO
        ),
    )
    .unwrap();
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(s.config(), format!("tenants_dir = \"tenants\"\n{config}")).unwrap();
    let path = s.config();
    let config = path.to_str().unwrap();
    let out = keyward(&[
        "render", "--config", config, "--tenant", "acme", "--reveal", "echo",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rendered["a"], "acme-db", "{rendered}");
    let out = keyward(&["refs", "--config", config, "--tenant", "acme", "echo"]);
    assert_eq!(stdout(&out).trim(), "{{ secrets.db }}", "{}", stderr(&out));
    let out = keyward(&["check", "--config", config, "--tenant", "acme"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("connector echo:"), "{}", stdout(&out));
    // The default tenant's connector is not acme's.
    let out = keyward(&[
        "render",
        "--config",
        config,
        "--tenant",
        "acme",
        "orders-db",
    ]);
    assert_clean_failure(&out, "unknown connector `orders-db`; configured: echo");
    let out = keyward(&["render", "--config", config, "--tenant", "nope", "echo"]);
    assert_clean_failure(&out, "unknown tenant `nope`; configured: default, acme");
    // The default tenant renders too; the audit file holds both, by tenant.
    assert!(
        keyward(&["render", "--config", config, "orders-db"])
            .status
            .success()
    );
    let out = keyward(&["audit", "--config", config, "--tenant", "acme", "-n", "100"]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!lines.is_empty(), "{}", stderr(&out));
    assert!(lines.iter().all(|r| r["tenant"] == "acme"), "{lines:?}");
}
