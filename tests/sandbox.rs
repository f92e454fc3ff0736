//! Hostile connectors, built from source, each contained: runaway CPU,
//! memory bombs, unbounded recursion, huge and numerous host-call
//! arguments, filesystem, environment and network access, log floods. The
//! host, other connectors and the next render keep working.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_host::store::file::FileStore;
use keyward_host::store::{BoxFuture, FetchedSecret, SecretKey, SecretStore, StoreError};
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
max_memory_mb = 64

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["**"]

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["**"]
"#;

fn scratch() -> Scratch {
    scratch_with("")
}

/// The usual secrets, with `settings` added to `[sandbox]`.
fn scratch_with(settings: &str) -> Scratch {
    Scratch::new(
        &CONFIG.replace(
            "max_memory_mb = 64",
            &format!("max_memory_mb = 64\n{settings}"),
        ),
        &json!({ "acme/prod/key": CANARY, "acme/prod/host": "db.internal" }),
    )
}

async fn keyward(s: &Scratch) -> Keyward {
    Keyward::new(Config::load(&s.config()).expect("config"))
        .await
        .expect("keyward")
}

async fn hostile(k: &Keyward, mode: &str) -> Result<String, Error> {
    let fields = [
        ("mode".to_string(), mode.to_string()),
        ("secret".to_string(), "{{ secrets.key }}".to_string()),
    ];
    let rendered = k.render_fields("hostile", &fields).await?;
    Ok(rendered.get("result").unwrap_or_default().to_string())
}

async fn echo_works(k: &Keyward) {
    let fields = [("a".to_string(), "{{ secrets.host }}".to_string())];
    let rendered = k
        .render_fields("echo", &fields)
        .await
        .expect("echo still renders");
    assert_eq!(rendered.get("a"), Some("db.internal"));
}

fn contained(result: Result<String, Error>, expected: &str) {
    let message = result
        .expect_err("the hostile render must fail")
        .to_string();
    assert!(message.contains(expected), "{message}");
    assert!(!message.contains(CANARY), "{message}");
    assert!(
        message.len() < 2_000,
        "error messages stay bounded: {} bytes",
        message.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_loop_hits_the_cpu_deadline_and_everything_else_keeps_serving() {
    let s = scratch();
    let k = keyward(&s).await;
    let started = Instant::now();
    let (looped, ()) = tokio::join!(hostile(&k, "loop"), echo_works(&k));
    contained(looped, "ran longer than its 100 ms CPU deadline");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
    echo_works(&k).await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let s = scratch();
    let k = keyward(&s).await;
    contained(
        hostile(&k, "memory").await,
        "the connector exceeded its memory limit of 64 MiB (sandbox.max_memory_mb)",
    );
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
    echo_works(&k).await;
}

#[tokio::test]
async fn a_connector_can_have_a_lower_memory_limit_and_fewer_warm_instances() {
    let s = Scratch::new(
        &CONFIG.replace(
            "[connectors.hostile]\ncomponent = \"{HOSTILE}\"",
            "[connectors.hostile]\ncomponent = \"{HOSTILE}\"\nmax_memory_mb = 16\nwarm_instances = 0",
        ),
        &json!({ "acme/prod/key": CANARY, "acme/prod/host": "db.internal" }),
    );
    let k = keyward(&s).await;
    contained(
        hostile(&k, "memory").await,
        "the connector exceeded its memory limit of 16 MiB (connectors.hostile.max_memory_mb)",
    );
    assert_eq!(hostile(&k, "ok").await.expect("next render"), "fine");
    echo_works(&k).await;
    assert_eq!(k.prewarm("hostile", 2).await.expect("prewarm"), 0);
    assert_eq!(k.prewarm("echo", 2).await.expect("prewarm"), 2);

    let too_much = CONFIG.replace(
        "[connectors.hostile]\ncomponent = \"{HOSTILE}\"",
        "[connectors.hostile]\ncomponent = \"{HOSTILE}\"\nmax_memory_mb = 128",
    );
    let error = Config::parse(&too_much, std::path::Path::new("."))
        .expect_err("more than the sandbox's")
        .to_string();
    assert_eq!(
        error,
        "connectors.hostile.max_memory_mb: 128 is not from 1 to sandbox.max_memory_mb (64); \
         a connector's limit may only lower the sandbox's"
    );
}

#[tokio::test]
async fn unbounded_recursion_traps_as_a_stack_overflow() {
    let s = scratch();
    let k = keyward(&s).await;
    contained(hostile(&k, "recursion").await, "call stack exhausted");
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
}

#[tokio::test]
async fn a_huge_reference_to_invalidate_is_refused_and_audited_bounded() {
    // Building and passing 4 MiB (half the hostcall fuel) takes the guest
    // milliseconds; on two busy cores (the CPU-loop tests run alongside)
    // that can pass the 100 ms deadline, which is not what this test is
    // about.
    let s = Scratch::new(
        &CONFIG
            .replace("render_timeout_ms = 100", "render_timeout_ms = 5000")
            .replace("max_memory_mb = 64", "max_memory_mb = 128")
            .replace(
                "[connectors.hostile]",
                "[audit]\nfile = \"audit.jsonl\"\ntracing = false\n\n[connectors.hostile]",
            ),
        &json!({ "acme/prod/key": CANARY, "acme/prod/host": "db.internal" }),
    );
    let k = keyward(&s).await;
    let huge = hostile(&k, "huge-name")
        .await
        .expect("the guest gets an answer");
    assert_eq!(huge, "false", "a malformed reference is not invalidated");
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit.len() < 4_000 && audit.contains("… (4194304 bytes)"),
        "the record quotes a bounded part of the name: {audit}"
    );
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
}

#[tokio::test]
async fn no_filesystem_environment_or_network() {
    let s = scratch();
    let k = keyward(&s).await;
    let fs = hostile(&k, "fs").await.expect("render");
    assert!(fs.starts_with("denied:"), "{fs}");
    assert_eq!(hostile(&k, "env").await.expect("render"), "vars=0 aws=None");

    // A listener that would accept: a refusal can only be the sandbox's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address").to_string();
    let fields = [
        ("mode".to_string(), "network".to_string()),
        ("address".to_string(), address),
    ];
    let rendered = k.render_fields("hostile", &fields).await.expect("render");
    let network = rendered.get("result").unwrap_or_default();
    assert!(
        network.starts_with("denied: PermissionDenied"),
        "the sandbox refuses sockets, not the network: {network}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "no connection reached the listener"
    );
}

#[tokio::test]
async fn a_huge_random_buffer_is_refused_before_the_host_allocates_it() {
    let s = scratch();
    let k = keyward(&s).await;
    // 4 GiB asked of wasi:random: the host refuses over 1 MiB and the
    // instance traps; the next render works.
    contained(hostile(&k, "random").await, "exceeds limit");
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
}

#[tokio::test]
async fn a_log_flood_is_cut_at_the_per_render_limit() {
    keyward_tests::captured_logs();
    let s = scratch();
    let k = keyward(&s).await;
    // 100,000 host calls: the deadline counts guest time only, so the
    // flood finishes (or hits the deadline) but never floods the log.
    let _ = hostile(&k, "log-flood").await;
    let text = keyward_tests::logs_text();
    let lines = text.matches("hostile log line").count();
    assert!(lines <= 100, "{lines} guest log lines were written");
    assert!(
        text.contains("log limit of 100 lines per render reached"),
        "{text}"
    );
}

#[tokio::test]
async fn guest_stdout_and_stderr_go_nowhere() {
    let s = scratch();
    let k = keyward(&s).await;
    assert_eq!(hostile(&k, "stdout").await.expect("render"), "printed");
    // The test harness captures this process's stdout/stderr; the CLI test
    // `hostile_output_never_reaches_the_terminal` checks the real streams.
}

/// A store whose every fetch takes 300 ms.
#[derive(Debug)]
struct Slow(FileStore);

impl SecretStore for Slow {
    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.fetch(key).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.0.list(prefix)
    }
}

#[tokio::test]
async fn time_waiting_on_the_backend_does_not_count_against_the_deadline() {
    let s = scratch();
    let store = Arc::new(Slow(
        FileStore::open(s.path().join("secrets.json")).expect("store"),
    ));
    let k =
        Keyward::with_store(Config::load(&s.config()).expect("config"), store).expect("keyward");
    assert_eq!(
        hostile(&k, "ok")
            .await
            .expect("a 300 ms fetch under a 100 ms deadline"),
        "fine"
    );
}

#[tokio::test]
async fn warm_instances_are_reused_but_never_after_a_trap() {
    let s = scratch_with("mode = \"warm\"\ncompile_cache = \"cache\"");
    let k = keyward(&s).await;
    let renders = |fields: [(&str, &str); 2]| fields.map(|(a, b)| (a.to_string(), b.to_string()));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let rendered = k
            .render_fields(
                "echo",
                &renders([("count", "x"), ("a", "{{ secrets.host }}")]),
            )
            .await
            .expect("warm render");
        assert_eq!(rendered.get("a"), Some("db.internal"));
        seen.push(rendered.get("count").unwrap_or_default().to_string());
    }
    assert_eq!(
        seen,
        ["1", "2", "3"],
        "one instance served all three renders"
    );

    contained(hostile(&k, "loop").await, "CPU deadline");
    assert_eq!(
        hostile(&k, "ok")
            .await
            .expect("a new instance after the trap"),
        "fine"
    );
    let files = std::fs::read_dir(s.path().join("cache"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(files > 0, "compiled components are cached on disk");
}

/// Renders with a long secret sealed in a field, then scans the
/// connector's whole linear memory for it — in the same render, and in the
/// next one — in `mode` with two pooled slots (so a fresh instance reuses
/// the first one's slot).
async fn scans_for_the_secret(mode: &str) -> [String; 2] {
    let config = CONFIG.replace(
        "render_timeout_ms = 100",
        &format!("render_timeout_ms = 5000\nmode = \"{mode}\"\npooled_instances = 2"),
    );
    // The canary sits past the first bytes of its value, which a freed
    // block's allocator bookkeeping may overwrite.
    let secret = format!("{}{CANARY}", "p".repeat(64));
    let s = Scratch::new(&config, &json!({ "acme/prod/key": secret }));
    let k = keyward(&s).await;
    let reversed: String = CANARY.chars().rev().collect();
    let scan = |with_secret: bool| {
        let mut fields = vec![
            ("mode".to_string(), "scan".to_string()),
            ("needle".to_string(), reversed.clone()),
        ];
        if with_secret {
            fields.push(("secret".to_string(), "x {{ secrets.key }} y".to_string()));
        }
        let k = &k;
        async move {
            let rendered = k.render_fields("hostile", &fields).await.expect("scan");
            rendered.get("result").unwrap_or_default().to_string()
        }
    };
    let during = scan(true).await;
    let after = scan(false).await;
    [during, after]
}

#[tokio::test]
async fn a_sealed_secret_is_nowhere_in_the_connectors_memory() {
    // Before sealing, a warm instance kept the value it was handed and
    // the same scan found it; now the connector is never handed it.
    for mode in ["warm", "fresh"] {
        assert_eq!(
            scans_for_the_secret(mode).await,
            ["clean", "clean"],
            "{mode}: during the render that holds it sealed, and after"
        );
    }
}

#[tokio::test]
async fn fresh_instances_share_nothing_between_renders() {
    let s = scratch();
    let k = keyward(&s).await;
    for _ in 0..2 {
        let fields = [("count".to_string(), "x".to_string())];
        let rendered = k.render_fields("echo", &fields).await.expect("render");
        assert_eq!(rendered.get("count"), Some("1"));
    }
}

/// A hostile loop of host calls under a 100 ms deadline (host calls not
/// capped, so the deadline is what stops it): it ends within a small
/// multiple of the deadline, and the next render works.
async fn host_call_loop_is_stopped_by_the_deadline(k: &Keyward, mode: &str) {
    let started = Instant::now();
    contained(
        hostile(k, mode).await,
        "ran longer than its 100 ms CPU deadline",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{mode} took {took:?}");
    assert_eq!(
        hostile(k, "ok").await.expect("the next render works"),
        "fine"
    );
}

fn uncapped_scratch(secrets: &serde_json::Value) -> Scratch {
    Scratch::new(
        &CONFIG
            .replace(
                "max_memory_mb = 64",
                "max_memory_mb = 64\nmax_host_calls = 100000000",
            )
            .replace(
                "[connectors.hostile]",
                "[audit]\nfile = \"audit.jsonl\"\ntracing = false\n\n[connectors.hostile]",
            )
            .replace(
                "allow = [\"**\"]\n\n[connectors.echo]",
                "allow = [\"key\", \"host\", \"missing/**\", \"many/**\"]\n\n[connectors.echo]",
            ),
        secrets,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_work_counts_against_the_deadline() {
    // A backend with many secrets, so that each listing is real work.
    let mut secrets = serde_json::Map::new();
    secrets.insert("acme/prod/key".into(), json!(CANARY));
    for i in 0..5_000 {
        secrets.insert(format!("acme/prod/many/{i:05}"), json!("v"));
    }
    let s = uncapped_scratch(&serde_json::Value::Object(secrets));
    let store = Arc::new(keyward_tests::Counting::new(
        FileStore::open(s.path().join("secrets.json")).expect("store"),
    ));
    let k = Keyward::with_store(Config::load(&s.config()).expect("config"), store.clone())
        .expect("keyward");
    let audit = s.path().join("audit.jsonl");
    for mode in ["list-loop", "huge-key-loop", "denied-loop", "missing-loop"] {
        let before = std::fs::metadata(&audit).map_or(0, |m| m.len());
        host_call_loop_is_stopped_by_the_deadline(&k, mode).await;
        let grew = std::fs::metadata(&audit).map_or(0, |m| m.len()) - before;
        // At most 8 refusals and 512 other records one by one, each a
        // few hundred bytes with guest text cut at 128 characters.
        assert!(
            grew < 160 * 1024,
            "{mode}: one render wrote {grew} bytes of audit records"
        );
        let text = std::fs::read_to_string(&audit).expect("audit");
        assert!(
            !text.contains(CANARY)
                && !text.contains(&"S".repeat(200))
                && !text.contains(&"k".repeat(200))
        );
    }
    assert_eq!(store.lists(), 1, "the listing is cached");
    let text = std::fs::read_to_string(&audit).expect("audit");
    assert!(
        text.contains("\"decision\":\"summarised\"")
            && text.contains("more records than are written one by one in a render: denied "),
        "denials past the first few are summarised: {}",
        &text[text.len().saturating_sub(2_000)..]
    );
    assert!(
        text.contains("… (4194304 bytes)"),
        "a huge stage or key is cut and its true length noted"
    );
}

#[tokio::test]
async fn host_calls_per_render_are_capped() {
    let s = scratch_with("max_host_calls = 50");
    let k = keyward(&s).await;
    contained(
        hostile(&k, "list-loop").await,
        "the connector made more than 50 host calls in one render",
    );
    assert_eq!(
        hostile(&k, "ok").await.expect("the next render works"),
        "fine"
    );
}

#[tokio::test]
async fn the_wall_clock_deadline_bounds_time_waiting_on_the_backend() {
    let s = scratch_with("render_wall_timeout_ms = 200");
    let store = Arc::new(Slow(
        FileStore::open(s.path().join("secrets.json")).expect("store"),
    ));
    let k =
        Keyward::with_store(Config::load(&s.config()).expect("config"), store).expect("keyward");
    contained(
        hostile(&k, "ok").await,
        "the render took longer than its 200 ms wall-clock deadline",
    );
}

#[tokio::test]
async fn invalidate_and_list_answer_the_same_for_denied_and_missing() {
    let s = uncapped_scratch(&json!({
        "acme/prod/key": CANARY,
        "acme/prod/forbidden/x": "exists but denied",
        "acme/prod/forbidden/y": "exists but denied",
    }));
    let k = keyward(&s).await;
    assert_eq!(
        hostile(&k, "invalidate-probe").await.expect("render"),
        "true true false false",
        "allowed-but-missing and denied: the same answers, rate limit included"
    );
    assert_eq!(
        hostile(&k, "list").await.expect("render"),
        "key",
        "only allowed names that exist"
    );
    let audit = std::fs::read_to_string(s.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit.contains("\"decision\":\"denied\"") && audit.contains("\"decision\":\"invalidated\""),
        "the audit log tells them apart: {audit}"
    );
}

#[tokio::test]
async fn nothing_a_connector_writes_forges_a_host_line() {
    keyward_tests::captured_logs();
    let s = scratch();
    let k = keyward(&s).await;
    let e = hostile(&k, "forge")
        .await
        .expect_err("render error")
        .to_string();
    for raw in ['\n', '\r', '\u{1b}', '\u{7}', '\u{9b}'] {
        assert!(!e.contains(raw), "raw {raw:?} in the error line: {e:?}");
    }
    assert!(e.contains("field `mode\\n  db  ok`"), "{e}");
    assert!(e.contains("fine\\nconnector x:"), "{e}");
    let logs = keyward_tests::logs_text();
    let line = logs
        .lines()
        .find(|l| l.contains("keyward::guest") && l.contains("ok\\n2026"))
        .unwrap_or_else(|| panic!("the guest's line, escaped: {logs}"));
    assert!(
        line.contains("\\u{1b}]52;c;") && line.contains("\\r") && line.contains("\\u{9b}"),
        "{line}"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000Z")),
        "no forged audit line"
    );
    for raw in ['\r', '\u{1b}', '\u{7}', '\u{9b}'] {
        assert!(!logs.contains(raw), "raw {raw:?} reached the log");
    }
    let e = hostile(&k, "forge-output")
        .await
        .expect_err("bad output name")
        .to_string();
    assert!(
        e.contains("output `result\\n\\u{1b}[31mfake`: the name contains a control character"),
        "{e}"
    );
}

#[tokio::test]
async fn components_are_regular_files_within_the_size_limit() {
    let s = scratch();
    let fifo = s.path().join("fifo.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let small = s.path().join("big.wasm");
    std::fs::write(&small, vec![0u8; 2 << 20]).expect("write");
    let config = CONFIG.replace(
        "max_memory_mb = 64",
        "max_memory_mb = 64\nmax_component_mb = 1",
    ) + "\n[connectors.zero]\ncomponent = \"/dev/zero\"\n\n[connectors.fifo]\ncomponent = \"fifo.wasm\"\n\n[connectors.big]\ncomponent = \"big.wasm\"\n\n[connectors.dir]\ncomponent = \".\"\n";
    std::fs::write(
        s.config(),
        config
            .replace("{HOSTILE}", keyward_test_support::artifacts::HOSTILE)
            .replace("{ECHO}", keyward_test_support::artifacts::ECHO),
    )
    .expect("config");
    let k = keyward(&s).await;
    for (id, expected) in [
        (
            "zero",
            "the component must be a regular file; this is a device",
        ),
        (
            "fifo",
            "the component must be a regular file; this is a FIFO",
        ),
        (
            "dir",
            "the component must be a regular file; this is a directory",
        ),
        (
            "big",
            "the component is 2097152 bytes; at most 1048576 are allowed (sandbox.max_component_mb)",
        ),
    ] {
        let e = tokio::time::timeout(Duration::from_secs(10), k.render(id))
            .await
            .expect("answers at once")
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains(&format!("connector `{id}`")) && e.contains(expected),
            "{e}"
        );
    }
    echo_works(&k).await;
}

#[tokio::test]
async fn connector_ids_sharing_a_component_share_one_compilation() {
    let mut config = CONFIG.to_string();
    for i in 0..200 {
        config.push_str(&format!(
            "\n[connectors.echo-{i}]\ncomponent = \"{{ECHO}}\"\negress = [\"echo.test\"]\nallow = [\"host\"]\n"
        ));
    }
    let s = Scratch::new(&config, &json!({ "acme/prod/host": "db.internal" }));
    let k = keyward(&s).await;
    k.preload().await.expect("preload");
    assert_eq!(
        k.sandbox().compiled_components(),
        2,
        "202 connector ids, 2 distinct components"
    );
    let fields = [("a".to_string(), "{{ secrets.host }}".to_string())];
    let rendered = k.render_fields("echo-199", &fields).await.expect("render");
    assert_eq!(rendered.get("a"), Some("db.internal"));
}

#[tokio::test]
async fn idle_warm_instances_give_their_pool_slots_to_another_connector() {
    let s = scratch_with("mode = \"warm\"\npooled_instances = 2\nwarm_instances = 4");
    let k = keyward(&s).await;
    assert_eq!(
        k.prewarm("hostile", 2).await.expect("prewarm"),
        2,
        "two idle instances hold both pool slots"
    );
    echo_works(&k).await;
    assert_eq!(
        hostile(&k, "ok")
            .await
            .expect("the first connector still renders"),
        "fine"
    );
}
