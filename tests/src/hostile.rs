//! The suite every hostile connector in an interpreted language (Python,
//! TypeScript) must pass, as the Rust one does in `tests/sandbox.rs` and
//! `tests/exfiltration.rs`: the CPU deadline, the memory limit, the cap on
//! host calls, no filesystem, environment or network, and no channel that
//! carries a sealed secret out. Each such connector takes a `mode` field
//! (the attack) and a `secret` field.

use std::time::{Duration, Instant};

use keyward_host::{Config, Keyward};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;

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
component = "{COMPONENT}"
egress = ["echo.test"]
allow = ["key"]

[connectors.revealing]
component = "{COMPONENT}"
egress = ["echo.test"]
allow = ["key"]
reveal = ["key"]
"#;

async fn hostile_host(component: &str) -> (Scratch, Keyward) {
    crate::captured_logs();
    let config = HOSTILE_CONFIG.replace("{COMPONENT}", component);
    let scratch = Scratch::new(&config, &json!({ "acme/prod/key": CANARY }));
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

/// Runs every containment attack of a hostile connector (modes `ok`,
/// `loop`, `memory`, `log-flood`, `env`, and `denied`: each mode's result
/// must start with its text). `component` is a placeholder such as
/// `{HOSTILE_PY}`.
pub async fn is_contained(component: &str, denied: &[(&str, &str)]) {
    let (_s, k) = hostile_host(component).await;
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

    for &(mode, denied) in denied {
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

/// Runs the `stdout` and `exfiltrate` modes sealed and revealing: the
/// canary is in no output name, no unmasked output, no log, no audit record.
pub async fn no_channel_carries_a_sealed_secret_out(component: &str) {
    let (s, k) = hostile_host(component).await;
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

    let logs = crate::logs_text();
    assert!(
        logs.contains("sealed <sealed>"),
        "the connector's log line is there"
    );
    assert!(!logs.contains(CANARY), "the canary reached the log");
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit");
    assert!(!audit.contains(CANARY));
    assert!(audit.contains("revealed"));
}
