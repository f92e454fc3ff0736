//! What the host does after the guest returns is bounded like what the
//! guest does: the number of outputs, their bytes in all (decided from the
//! compositions' shape, so no caller learns a secret's length from it), the
//! bytes lifted per call, render errors and log lines (cut before they are
//! escaped), and the time all of it takes, which counts against the
//! render's deadline. A hostile connector built from source tries each;
//! every attack ends with an error naming its setting, quickly, and the
//! next connector renders.

use std::time::{Duration, Instant};

use keyward_host::{Config, Error, Keyward};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[sandbox]
render_timeout_ms = 100
render_wall_timeout_ms = 5000

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["**"]

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["**"]
"#;

/// A bound on how long an attack may take in this (debug) build: a small
/// multiple of the 100 ms deadline, far below what each attack cost
/// before it was bounded (7 s to 35 s).
const QUICKLY: Duration = Duration::from_secs(2);

fn scratch_with(settings: &str) -> Scratch {
    Scratch::new(
        &CONFIG.replace(
            "render_wall_timeout_ms = 5000",
            &format!("render_wall_timeout_ms = 5000\n{settings}"),
        ),
        &json!({
            "acme/prod/key": CANARY,
            "acme/prod/short": "ab",
            "acme/prod/long": "L".repeat(3000),
            "acme/prod/host": "db.internal",
        }),
    )
}

async fn keyward(s: &Scratch) -> Keyward {
    Keyward::new(Config::load(&s.config()).expect("config"))
        .await
        .expect("keyward")
}

/// Renders the hostile connector in `mode` with `secret` and the other
/// fields given; the outcome, and how long it took.
async fn attack(
    k: &Keyward,
    mode: &str,
    secret: &str,
    more: &[(&str, String)],
) -> (Result<usize, Error>, Duration) {
    let mut fields = vec![
        ("mode".to_string(), mode.to_string()),
        ("secret".to_string(), format!("{{{{ secrets.{secret} }}}}")),
    ];
    fields.extend(more.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let started = Instant::now();
    let rendered = k.render_fields("hostile", &fields).await;
    (rendered.map(|r| r.values.len()), started.elapsed())
}

/// The attack failed quickly with an error naming `setting`, bounded and
/// without the canary, and the echo connector still renders.
async fn refused(k: &Keyward, outcome: (Result<usize, Error>, Duration), setting: &str) -> String {
    let (result, took) = outcome;
    let message = result.expect_err("the attack must be refused").to_string();
    assert!(message.contains(setting), "{message}");
    assert!(!message.contains(CANARY), "{message}");
    assert!(message.len() < 10_000, "{} bytes of error", message.len());
    assert!(took < QUICKLY, "the attack took {took:?}");
    let fields = [("a".to_string(), "{{ secrets.host }}".to_string())];
    let echoed = k
        .render_fields("echo", &fields)
        .await
        .expect("echo renders");
    assert_eq!(echoed.get("a"), Some("db.internal"));
    message
}

#[tokio::test]
async fn a_render_returns_at_most_max_outputs() {
    let s = scratch_with("");
    let k = keyward(&s).await;
    let count = |n: usize| [("count", n.to_string())];
    let (fits, _) = attack(&k, "many-outputs", "key", &count(64)).await;
    assert_eq!(fits.expect("64 outputs are allowed"), 64);
    let message = refused(
        &k,
        attack(&k, "many-outputs", "key", &count(5000)).await,
        "sandbox.max_outputs",
    )
    .await;
    assert!(
        message.contains("returned 5000 outputs; at most 64"),
        "{message}"
    );
}

#[tokio::test]
async fn amplifying_compositions_are_refused_from_their_shape_before_they_are_built() {
    let s = scratch_with("");
    let k = keyward(&s).await;
    // 64 outputs, each the secret doubled 5 times: each sealed piece counts
    // as 64 KiB, so one output could be 2 MiB and two reach the 4 MiB of
    // the whole render. The second is refused before anything is built.
    let more = [("count", "64".to_string()), ("size", "5".to_string())];
    let message = refused(
        &k,
        attack(&k, "amplify", "key", &more).await,
        "sandbox.max_output_kb",
    )
    .await;
    assert!(message.contains("output `out-1`"), "{message}");
    assert!(message.contains("sandbox.max_secret_kb"), "{message}");
    // Twelve doublings of one output (4,096 copies of the secret, 256 MiB
    // as counted): refused at once, not evaluated.
    let more = [("count", "1".to_string()), ("size", "12".to_string())];
    refused(
        &k,
        attack(&k, "amplify", "key", &more).await,
        "sandbox.max_output_kb",
    )
    .await;
}

#[tokio::test]
async fn the_size_bound_tells_no_caller_a_secret_length() {
    // A caller who may set fields bisects the padding beside a secret to
    // find where the size error starts. Whatever the secret, it starts at
    // the same padding, with the same words.
    let s = scratch_with("max_output_kb = 128\nmax_secret_kb = 8");
    let k = keyward(&s).await;
    let limit = 128 << 10;
    let mut thresholds = Vec::new();
    for secret in ["short", "key", "long"] {
        let (mut low, mut high) = (0usize, limit + 1);
        let mut errors = Vec::new();
        while low + 1 < high {
            let middle = (low + high) / 2;
            let more = [("size", middle.to_string())];
            match attack(&k, "padded", secret, &more).await.0 {
                Ok(_) => low = middle,
                Err(e) => {
                    errors.push(e.to_string());
                    high = middle;
                }
            }
        }
        errors.dedup();
        assert_eq!(errors.len(), 1, "{errors:?}");
        thresholds.push((low, errors.pop()));
    }
    assert!(
        thresholds.windows(2).all(|w| w[0] == w[1]),
        "{thresholds:?}"
    );
    // The padding and the output's name fill the bound, the secret counted
    // at the 8 KiB of sandbox.max_secret_kb.
    assert_eq!(thresholds[0].0, limit - (8 << 10) - "padded".len());
}

#[tokio::test]
async fn a_secret_longer_than_max_secret_kb_is_refused_at_expansion() {
    let s = scratch_with("max_secret_kb = 2");
    let k = keyward(&s).await;
    let message = refused(
        &k,
        attack(&k, "ok", "long", &[]).await,
        "sandbox.max_secret_kb",
    )
    .await;
    assert!(message.contains("secret"), "{message}");
    let (fits, _) = attack(&k, "ok", "key", &[]).await;
    fits.expect("a short secret renders");
}

#[tokio::test]
async fn lifting_is_bounded_by_the_hostcall_fuel() {
    // Twelve outputs of 1 MiB each: 12 MiB of guest memory, more than the
    // 8 MiB one call may make the host allocate (twice max_output_kb).
    let s = scratch_with("");
    let k = keyward(&s).await;
    let more = [("count", "12".to_string()), ("size", (1 << 20).to_string())];
    let message = refused(&k, attack(&k, "lift", "key", &more).await, "max_output_kb").await;
    assert!(message.contains("more than 8388608 bytes"), "{message}");
}

#[tokio::test]
async fn a_huge_render_error_is_cut_before_it_is_escaped() {
    // 3 MiB of ESC in the field and in the message (6 MiB lifted, within
    // the fuel): escaped whole, that was 18 MiB of error each; cut first,
    // it is a few KiB.
    let s = scratch_with("");
    let k = keyward(&s).await;
    let more = [("size", (3 << 20).to_string())];
    let (result, took) = attack(&k, "huge-error", "key", &more).await;
    let message = result.expect_err("the render fails").to_string();
    assert!(message.contains("\\u{1b}"), "escaped");
    assert!(!message.contains('\u{1b}'), "never raw");
    assert!(
        message.contains("(cut; 3145728 bytes)"),
        "cut, with its length"
    );
    assert!(
        message.len() < 2 * 4096 + 200,
        "{} bytes of error",
        message.len()
    );
    assert!(took < QUICKLY, "{took:?}");
}

#[tokio::test]
async fn a_huge_log_line_is_cut_before_it_is_escaped() {
    keyward_tests::captured_logs();
    let s = scratch_with("max_log_bytes = 1024");
    let k = keyward(&s).await;
    let more = [("size", (6 << 20).to_string())];
    let (result, took) = attack(&k, "huge-log", "key", &more).await;
    result.expect("the render succeeds; its line is cut");
    assert!(took < QUICKLY, "{took:?}");
    let logs = keyward_tests::logs_text();
    let line = logs
        .lines()
        .find(|line| line.contains("(cut; 6291456 bytes)"))
        .expect("the cut line is logged");
    assert!(line.len() < 1024 + 400, "{} bytes", line.len());
    assert!(!logs.contains('\u{1b}'));
}

#[tokio::test]
async fn bounds_are_settings_checked_at_load() {
    for (setting, message) in [
        (
            "max_outputs = 0",
            "sandbox.max_outputs: must be from 1 to 4096",
        ),
        (
            "max_output_kb = 0",
            "sandbox.max_output_kb: must be from 1 to 262144",
        ),
        (
            "max_secret_kb = 99999",
            "sandbox.max_secret_kb: must be from 1 to 16384",
        ),
        (
            "max_error_bytes = 1",
            "sandbox.max_error_bytes: must be from 64 to 1048576",
        ),
        (
            "max_log_bytes = 1",
            "sandbox.max_log_bytes: must be from 64 to 1048576",
        ),
    ] {
        let s = scratch_with(setting);
        let error = Config::load(&s.config()).expect_err(setting);
        assert!(error.to_string().contains(message), "{error}");
    }
}
