//! The exfiltration suite: a hostile connector, built from source, granted
//! one secret (a unique canary), tries every channel it controls to get the
//! value out — outputs it calls non-sensitive, in every encoding; output
//! names; a render error's field and message; log lines in any encoding;
//! the audit log (as a reference name, JSON key and stage); a warm
//! instance's stash for a later render; a revoked grant; `describe` after a
//! render. Without a reveal grant the canary appears nowhere but in the
//! sensitive outputs the host assembled. With one, the suite shows what
//! reveal allows and what the host still holds.

use keyward_host::template::encode::{base64, base64url, percent};
use keyward_host::{Config, Error, Keyward, Rendered};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"
region = "us-east-1"
account_id = "123456789012"

[audit]
file = "audit.jsonl"
tracing = true

[sandbox]
mode = "warm"
render_timeout_ms = 5000

[connectors.sealed]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["key", "db"]

[connectors.revealing]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["key", "db"]
reveal = ["key"]
"#;

/// The canary and every form of it a connector could write: what must
/// appear nowhere a connector controls.
fn forms() -> Vec<String> {
    let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        CANARY.to_string(),
        base64(CANARY.as_bytes()),
        base64url(CANARY.as_bytes()),
        percent(CANARY.as_bytes()),
        hex,
        CANARY.chars().rev().collect(),
        // A JSON sub-value of a granted secret, and its base64.
        base64(format!("\"{CANARY}\"").as_bytes()),
    ]
}

/// The forms the host masks in a revealing connector's text: the value
/// and the encodings the SDK offers.
fn masked_forms() -> Vec<String> {
    vec![
        CANARY.to_string(),
        base64(CANARY.as_bytes()),
        base64url(CANARY.as_bytes()),
    ]
}

fn assert_none_in(forms: &[String], what: &str, text: &str) {
    for form in forms {
        assert!(
            !text.contains(form.as_str()),
            "`{form}` leaked into {what}: {text}"
        );
    }
}

struct Suite {
    scratch: Scratch,
    keyward: Keyward,
}

impl Suite {
    async fn new() -> Self {
        keyward_tests::captured_logs();
        let scratch = Scratch::new(
            CONFIG,
            &json!({
                "acme/prod/key": format!("{}{CANARY}", "p".repeat(64)),
                "acme/prod/db": { "json": { "password": CANARY } },
            }),
        );
        let keyward = Keyward::new(Config::load(&scratch.config()).expect("config"))
            .await
            .expect("keyward");
        Self { scratch, keyward }
    }

    async fn render(&self, connector: &str, mode: &str, secret: &str) -> Result<Rendered, Error> {
        let fields = [
            ("mode".to_string(), mode.to_string()),
            ("secret".to_string(), secret.to_string()),
        ];
        self.keyward.render_fields(connector, &fields).await
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("audit.jsonl")).unwrap_or_default()
    }

    /// Every output a connector called non-sensitive, as `name=value`.
    fn plain_outputs(rendered: &Rendered) -> String {
        rendered
            .values
            .iter()
            .filter(|v| !v.sensitive)
            .map(|v| format!("{}={}\n", v.name, &*v.value))
            .collect()
    }
}

#[tokio::test]
async fn without_reveal_no_channel_carries_the_secret_out() {
    let suite = Suite::new().await;
    let mut seen = Vec::new();
    for secret in [
        "{{ secrets.key }}",
        "x-{{ secrets.db.password | base64 }}-y",
    ] {
        let rendered = suite
            .render("sealed", "exfiltrate", secret)
            .await
            .expect("render");
        // Outputs holding the secret are sensitive whatever the connector
        // said: the host assembled them, so they hold it, and are masked.
        for name in ["sealed", "sealed-encoded"] {
            let output = rendered.values.iter().find(|v| v.name == name).expect(name);
            assert!(output.sensitive, "{name} must be sensitive");
        }
        assert!(
            rendered
                .get("sealed")
                .is_some_and(|v| v.contains("-never-print-me") || v.starts_with("x-")),
            "the host assembled the real value"
        );
        assert!(
            rendered
                .get("reveal")
                .is_some_and(|m| m.contains("not granted"))
        );
        seen.push(("plain outputs", Suite::plain_outputs(&rendered)));
        seen.push((
            "output names",
            rendered.values.iter().map(|v| v.name.clone()).collect(),
        ));
        seen.push(("masked json", rendered.to_json(false)));
        seen.push(("debug", format!("{rendered:?}")));

        let error = suite
            .render("sealed", "exfiltrate-error", secret)
            .await
            .expect_err("the connector fails on purpose");
        seen.push(("error", error.to_string()));
        seen.push(("error debug", format!("{error:?}")));
    }
    let stdout = suite
        .render("sealed", "stdout", "{{ secrets.key }}")
        .await
        .expect("render");
    seen.push(("stdout mode", Suite::plain_outputs(&stdout)));

    // Warm mode: a handle kept from one render names nothing in the next.
    let stashed = suite
        .render("sealed", "stash", "{{ secrets.key }}")
        .await
        .expect("stash");
    assert_eq!(stashed.get("result"), Some("stashed"));
    let unstashed = suite.render("sealed", "unstash-handle", "").await;
    let error = unstashed
        .expect_err("a stale handle is refused")
        .to_string();
    assert!(error.contains("is not from this render"), "{error}");
    seen.push(("stale handle", error));

    let info = suite.keyward.describe("sealed").await.expect("describe");
    seen.push(("describe", format!("{info:?}")));
    // The log capture is shared by the tests of this file: this
    // connector's lines only.
    let logs: String = keyward_tests::logs_text()
        .lines()
        .filter(|l| !l.contains("revealing"))
        .collect::<Vec<_>>()
        .join("\n");
    seen.push(("logs", logs));
    seen.push(("audit", suite.audit()));
    for (what, text) in &seen {
        assert_none_in(&forms(), what, text);
    }
    assert!(keyward_tests::logs_text().contains("sealed <sealed>"));
}

#[tokio::test]
async fn reveal_is_granted_audited_and_held_in() {
    let suite = Suite::new().await;
    // Not granted for `db`: reveal refuses, as it does for a connector
    // without any grant.
    let refused = suite
        .render("revealing", "exfiltrate", "{{ secrets.db.password }}")
        .await
        .expect("render");
    assert!(
        refused
            .get("reveal")
            .is_some_and(|m| m.contains("not granted"))
    );

    let rendered = suite
        .render("revealing", "exfiltrate", "{{ secrets.key }}")
        .await
        .expect("render");
    // What reveal allows: the connector computed over the plaintext.
    assert!(
        rendered
            .get("revealed")
            .is_some_and(|v| v.ends_with(CANARY))
    );
    // What the host still holds: every output of the instance is
    // sensitive, so none of it reaches a masked output.
    assert!(rendered.values.iter().all(|v| v.sensitive), "{rendered:?}");
    assert_none_in(&forms(), "masked json", &rendered.to_json(false));

    // Logs and errors: the value and the SDK's encodings of it are masked
    // for the life of the instance; an encoding of the connector's own
    // making (hex, reversed) is not — reveal is trust.
    let logs = keyward_tests::logs_text();
    assert_none_in(&masked_forms(), "logs", &logs);
    assert!(
        logs.contains("leak 0: ****"),
        "the leak lines were written, masked"
    );
    let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        logs.contains(&hex),
        "an encoding the host does not know is not masked: reveal is trust"
    );
    let error = suite
        .render("revealing", "exfiltrate-error", "{{ secrets.key }}")
        .await
        .expect_err("fails on purpose")
        .to_string();
    assert_none_in(&masked_forms(), "error", &error);
    assert!(error.contains("****"), "{error}");
    let name = suite
        .render("revealing", "exfiltrate-name", "{{ secrets.key }}")
        .await
        .expect_err("an output name holding the value")
        .to_string();
    assert!(name.contains("the name holds a revealed value"), "{name}");
    assert_none_in(&masked_forms(), "output name error", &name);

    // The audit log: one `revealed` record, and no value sent back as a
    // reference name, key or stage.
    let audit = suite.audit();
    assert_none_in(&forms(), "audit", &audit);
    let reveals = audit
        .lines()
        .filter(|l| l.contains("\"decision\":\"revealed\""))
        .count();
    assert!(reveals >= 1, "{audit}");
    assert!(
        audit.contains("\"decision\":\"revealed\",\"detail\":\"key\""),
        "{audit}"
    );
}

#[tokio::test]
async fn a_warm_instance_that_revealed_is_dropped_when_the_grant_is_revoked() {
    let suite = Suite::new().await;
    let stashed = suite
        .render("revealing", "stash", "{{ secrets.key }}")
        .await
        .expect("stash");
    assert_eq!(stashed.get("result"), Some("stashed"));
    // Under the same grant, the same warm instance still holds what it
    // revealed, and everything it outputs is sensitive.
    let again = suite
        .render("revealing", "unstash", "")
        .await
        .expect("unstash");
    assert!(again.get("result").is_some_and(|v| v.ends_with(CANARY)));
    assert!(again.values.iter().all(|v| v.sensitive));
    suite
        .render("revealing", "stash", "{{ secrets.key }}")
        .await
        .expect("stash again");

    // The operator takes the grant away: the instance that saw the value
    // is dropped, and the next render starts from a fresh one.
    let revoked = std::fs::read_to_string(suite.scratch.config())
        .expect("config")
        .replace("reveal = [\"key\"]", "reveal = []");
    std::fs::write(suite.scratch.config(), revoked).expect("write");
    suite
        .keyward
        .update_policy(&Config::load(&suite.scratch.config()).expect("config"))
        .await
        .expect("swap");
    let after = suite
        .render("revealing", "unstash", "")
        .await
        .expect("unstash");
    assert_eq!(
        after.get("result"),
        Some(""),
        "a fresh instance has no stash"
    );
    assert_none_in(
        &forms(),
        "outputs after the revoke",
        &Suite::plain_outputs(&after),
    );
    let refused = suite
        .render("revealing", "exfiltrate", "{{ secrets.key }}")
        .await
        .expect("render");
    assert!(
        refused
            .get("reveal")
            .is_some_and(|m| m.contains("not granted"))
    );
}
