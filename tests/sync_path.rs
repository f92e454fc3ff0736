//! The synchronous render path: a render whose connector calls nothing
//! that may wait runs without a fiber; one that reaches such an import
//! (`list`, `invalidate`, any WASI call) ends that attempt and runs again on
//! the async path, from the same expanded fields, with its log lines and
//! reveal audits written once. The CPU deadline traps a synchronous guest.

use keyward_host::RenderPaths;
use keyward_host::{Config, Keyward};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[sandbox]
mode = "{MODE}"
render_timeout_ms = 100

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test", "db.internal"]
allow = ["**"]

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test", "db.internal"]
allow = ["**"]
"#;

async fn keyward(mode: &str) -> (Scratch, Keyward) {
    let s = Scratch::new(
        &CONFIG.replace("{MODE}", mode),
        &json!({ "acme/prod/key": CANARY, "acme/prod/host": "db.internal" }),
    );
    let k = Keyward::new(Config::load(&s.config()).expect("config"))
        .await
        .expect("keyward");
    (s, k)
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn paths(k: &Keyward) -> RenderPaths {
    k.stats().render_paths
}

#[tokio::test]
async fn a_render_that_calls_nothing_that_waits_runs_synchronously() {
    for mode in ["warm", "fresh"] {
        let (_s, k) = keyward(mode).await;
        let render = fields(&[
            ("a", "postgresql://{{ secrets.host }}/orders"),
            ("secret", "{{ secrets.key }}"),
            ("log", "hello from the sync path"),
        ]);
        for _ in 0..3 {
            let rendered = k.render_fields("echo", &render).await.expect("render");
            assert_eq!(rendered.get("a"), Some("postgresql://db.internal/orders"));
            assert_eq!(rendered.get("secret"), Some(CANARY));
        }
        assert_eq!(
            paths(&k),
            RenderPaths {
                sync: 3,
                rerun: 0,
                async_only: 0
            },
            "{mode}"
        );
    }
}

#[tokio::test]
async fn an_import_that_may_wait_reruns_the_render_async_and_logs_once() {
    keyward_tests::captured_logs();
    for mode in ["warm", "fresh"] {
        let (_s, k) = keyward(mode).await;
        let marker = format!("logged-once-{mode}");
        // The connector logs, then lists: the synchronous attempt ends at
        // `list`, after its log line, which must not be written twice.
        let render = fields(&[
            ("a", "{{ secrets.host }}"),
            ("log", &marker),
            ("list", "yes"),
        ]);
        let rendered = k.render_fields("echo", &render).await.expect("render");
        assert_eq!(rendered.get("a"), Some("db.internal"));
        assert_eq!(rendered.get("list"), Some("host,key"));
        assert_eq!(keyward_tests::logs_text().matches(&marker).count(), 1);
        assert_eq!(
            paths(&k),
            RenderPaths {
                sync: 0,
                rerun: 1,
                async_only: 0
            },
            "{mode}"
        );
        // For a while, the connector's renders go straight to the async path.
        let plain = fields(&[("a", "{{ secrets.host }}")]);
        k.render_fields("echo", &plain).await.expect("render");
        assert_eq!(paths(&k).async_only, 1, "{mode}");
    }
}

#[tokio::test]
async fn wasi_calls_rerun_async_and_are_answered_as_before() {
    let (_s, k) = keyward("warm").await;
    let render = fields(&[("mode", "fs"), ("secret", "{{ secrets.key }}")]);
    let denied = k
        .render_fields("hostile", &render)
        .await
        .expect("the hostile render is answered");
    let result = denied.get("result").unwrap_or_default();
    assert!(!result.contains("root:"), "{result}");
    assert_eq!(paths(&k).rerun, 1);
}

#[tokio::test]
async fn the_cpu_deadline_traps_a_synchronous_guest() {
    let (_s, k) = keyward("warm").await;
    let render = fields(&[("mode", "loop"), ("secret", "{{ secrets.key }}")]);
    let error = k
        .render_fields("hostile", &render)
        .await
        .expect_err("a runaway loop is stopped")
        .to_string();
    assert!(
        error.contains("ran longer than its 100 ms CPU deadline"),
        "{error}"
    );
    assert_eq!(
        paths(&k),
        RenderPaths {
            sync: 1,
            rerun: 0,
            async_only: 0
        }
    );
    let ok = fields(&[("mode", "ok"), ("secret", "{{ secrets.key }}")]);
    let rendered = k.render_fields("hostile", &ok).await.expect("next render");
    assert_eq!(rendered.get("result"), Some("fine"));
    assert_eq!(paths(&k).sync, 2);
}
