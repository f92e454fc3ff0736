//! Render plans: a connector's render runs once per configuration, and
//! every render after it is host work only. Each test compares a host with
//! plans (the default) against one with `render_plans = 0`, where every
//! render runs the connector: the outputs must be the same, byte for byte,
//! across rotations, revoked grants, stale serves and reloads; and a
//! connector whose answer is not a function of its configuration (it logs,
//! lists, reveals, reads the clock or random, keeps a global, computes on
//! its handles' numbers) is either not planned or answers the same.

use keyward_host::{Config, Error, Keyward, PlanCounts, Rendered};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = 50
max_stale_ms = 600000

[secrets.backend]
kind = "file"
path = "secrets.json"

[sandbox]
render_timeout_ms = 2000
{SANDBOX}

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["**"]

[connectors.revealing]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["**"]
reveal = ["key"]

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["**"]

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
port = "5432"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets['db']['password'] }}"
sslmode = "disable"

[connectors.files]
component = "{S3}"
allow = ["s3-uploader"]
[connectors.files.config]
bucket = "keyward-reports"
region = "us-east-1"
endpoint = "https://s3.us-east-1.amazonaws.com"
access_key_id = "{{ secrets['s3-uploader'].access_key_id }}"
secret_access_key = "{{ secrets['s3-uploader'].secret_access_key }}"
default_acl = "bucket-owner-full-control"

[connectors.jira]
component = "{HTTP_API}"
allow = ["jira"]
[connectors.jira.config]
base_url = "https://jira.example.com/rest/"
user = "automation@example.com"
token = "{{ secrets.jira }}"

[connectors.cache]
component = "{REDIS_PY}"
allow = ["redis"]
[connectors.cache.config]
host = "127.0.0.1"
port = "6379"
username = "{{ secrets.redis.username }}"
password = "{{ secrets.redis.password }}"

[connectors.orders]
component = "{MARIADB_TS}"
allow = ["mariadb"]
[connectors.orders.config]
host = "127.0.0.1"
port = "3306"
user = "{{ secrets.mariadb.user }}"
password = "{{ secrets.mariadb.password }}"
database = "orders"
"#;

/// Every example connector, in every language, rendering its configured
/// fields.
const EXAMPLES: [&str; 5] = ["orders-db", "files", "jira", "cache", "orders"];

fn secrets(password: &str) -> serde_json::Value {
    json!({
        "acme/prod/key": CANARY,
        "acme/prod/host": "db.internal",
        "acme/prod/db": { "json": { "user": "orders_app", "password": password } },
        "acme/prod/s3-uploader": { "json": {
            "access_key_id": "AKIAEXAMPLE",
            "secret_access_key": format!("s3/{password}"),
        } },
        "acme/prod/jira": format!("jira-{password}"),
        "acme/prod/redis": { "json": { "username": "app", "password": password } },
        "acme/prod/mariadb": { "json": { "user": "orders", "password": password } },
    })
}

/// A URL- and JSON-hostile password with the canary in it.
fn password(n: u32) -> String {
    format!("{CANARY}-{n}-p@ss:w/rd#%?&\"é")
}

/// A host with `[sandbox]` `settings` over `scratch`'s secrets.
async fn host_with(settings: &str) -> (Scratch, Keyward) {
    keyward_tests::captured_logs();
    let scratch = Scratch::new(
        &CONFIG.replace("{SANDBOX}", settings),
        &secrets(&password(1)),
    );
    let keyward = keyward(&scratch).await;
    (scratch, keyward)
}

async fn keyward(scratch: &Scratch) -> Keyward {
    Keyward::new(Config::load(&scratch.config()).expect("config"))
        .await
        .expect("keyward")
}

/// A host with plans, and one where every render runs the connector.
async fn planned_and_unplanned() -> ((Scratch, Keyward), (Scratch, Keyward)) {
    (host_with("").await, host_with("render_plans = 0").await)
}

/// Everything a render gives a platform, values included, comparable.
fn shape(rendered: &Rendered) -> Vec<String> {
    rendered
        .values
        .iter()
        .map(|v| {
            format!(
                "{} {:?} {} {:?} {:?}",
                v.name,
                v.value.as_bytes(),
                v.sensitive,
                v.kind,
                v.destination
            )
        })
        .collect()
}

fn plans(k: &Keyward) -> PlanCounts {
    k.stats().render_plans
}

async fn hostile(k: &Keyward, connector: &str, mode: &str) -> Result<Rendered, Error> {
    let fields = [
        ("mode".to_string(), mode.to_string()),
        ("secret".to_string(), "{{ secrets.key }}".to_string()),
    ];
    k.render_fields(connector, &fields).await
}

async fn result(k: &Keyward, mode: &str) -> String {
    let rendered = hostile(k, "hostile", mode).await.expect("render");
    rendered.get("result").expect("a result").to_string()
}

/// Rotates every secret to `password(n)` and waits out the cache TTL.
async fn rotate(scratch: &Scratch, n: u32) {
    // The modification time moves even on coarse clocks.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    scratch.write_secrets(&secrets(&password(n)));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_connector_gives_its_own_outputs_planned_across_a_rotation() {
    let ((ps, planned), (us, unplanned)) = planned_and_unplanned().await;
    let mut first_round = Vec::new();
    for round in 1..=2 {
        for (i, id) in EXAMPLES.into_iter().enumerate() {
            let expected = shape(&unplanned.render(id).await.expect(id));
            if round == 1 {
                first_round.push(expected.clone());
            } else {
                assert_ne!(expected, first_round[i], "{id}: the rotation is rendered");
            }
            for _ in 0..3 {
                let got = shape(&planned.render(id).await.expect(id));
                assert_eq!(got, expected, "{id}, round {round}");
            }
        }
        if round == 1 {
            rotate(&ps, 2).await;
            rotate(&us, 2).await;
        }
    }
    let n = EXAMPLES.len() as u64;
    // One recording per connector; the rotation changed values, not what
    // the connectors saw, so the second round was all plan hits.
    assert_eq!(
        plans(&planned),
        PlanCounts {
            hit: 6 * n - n,
            recorded: n,
            skipped: 0
        }
    );
    assert_eq!(
        plans(&unplanned),
        PlanCounts {
            hit: 0,
            recorded: 0,
            skipped: 2 * n
        }
    );
}

/// Rewrites `s`'s configuration from `template` (its placeholders filled
/// in) and swaps it into `k`.
async fn reload(s: &Scratch, k: &Keyward, template: &str) {
    let filled = Scratch::new(&template.replace("{SANDBOX}", ""), &json!({}));
    std::fs::copy(filled.config(), s.config()).expect("write config");
    k.update_policy(&Config::load(&s.config()).expect("config"))
        .await
        .expect("reload");
}

#[tokio::test]
async fn a_revoked_grant_refuses_the_next_planned_render_and_a_restored_one_hits_again() {
    let (s, k) = host_with("").await;
    let before = shape(&k.render("orders-db").await.expect("render"));
    k.render("orders-db").await.expect("render");
    let revoked = CONFIG.replace(r#"allow = ["db", "host"]"#, r#"allow = ["host"]"#);
    reload(&s, &k, &revoked).await;
    let refused = k
        .render("orders-db")
        .await
        .expect_err("the grant is revoked");
    assert!(
        refused.to_string().contains("orders-db") && refused.to_string().contains("db"),
        "the error names the connector and the secret: {refused}"
    );
    assert!(!refused.to_string().contains(CANARY));
    assert_eq!(
        plans(&k).hit,
        1,
        "a refused render is not served by its plan"
    );
    reload(&s, &k, CONFIG).await;
    assert_eq!(shape(&k.render("orders-db").await.expect("render")), before);
    assert_eq!(
        plans(&k),
        PlanCounts {
            hit: 2,
            recorded: 1,
            skipped: 0
        },
        "the same component and limits keep their plans"
    );
}

#[tokio::test]
async fn a_changed_egress_refuses_the_next_planned_render_and_a_restored_one_passes() {
    // The host field plain: the pins are the fields' own, kept with them,
    // and the plan's last egress verdicts are kept by the pins' identity.
    let plain = CONFIG.replace(r#"host = "{{ secrets.host }}""#, r#"host = "db.internal""#);
    let s = Scratch::new(&plain.replace("{SANDBOX}", ""), &secrets(&password(1)));
    let k = keyward(&s).await;
    let before = shape(&k.render("orders-db").await.expect("render"));
    assert_eq!(shape(&k.render("orders-db").await.expect("render")), before);
    let elsewhere = plain.replace(
        "[connectors.orders-db]\n",
        "[connectors.orders-db]\negress = [\"elsewhere.example:5432\"]\n",
    );
    assert_ne!(elsewhere, plain);
    reload(&s, &k, &elsewhere).await;
    let refused = k
        .render("orders-db")
        .await
        .expect_err("the DSN's host is no longer a pin");
    assert!(
        matches!(
            &refused,
            Error::Run {
                error: keyward_host::RunError::Egress(_),
                ..
            }
        ),
        "{refused}"
    );
    assert!(!refused.to_string().contains(CANARY));
    reload(&s, &k, &plain).await;
    assert_eq!(shape(&k.render("orders-db").await.expect("render")), before);
    assert_eq!(
        plans(&k),
        PlanCounts {
            hit: 3,
            recorded: 1,
            skipped: 0
        },
        "every render after the first was served by the plan, refused or not"
    );
}

#[tokio::test]
async fn a_stale_value_is_served_through_a_plan_when_the_backend_fails() {
    let (s, k) = host_with("").await;
    let fresh = shape(&k.render("orders-db").await.expect("render"));
    k.render("orders-db").await.expect("render");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    std::fs::write(s.path().join("secrets.json"), "{ not json").expect("break the backend");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stale = shape(&k.render("orders-db").await.expect("a stale serve"));
    assert_eq!(stale, fresh);
    assert!(k.stats().cache.stale_served > 0, "{:?}", k.stats().cache);
    assert_eq!(plans(&k).recorded, 1);
    assert_eq!(plans(&k).hit, 2);
}

#[tokio::test]
async fn a_reload_that_changes_the_component_or_limits_drops_the_plans() {
    let (s, k) = host_with("").await;
    assert_eq!(result(&k, "ok").await, "fine");
    assert_eq!(result(&k, "ok").await, "fine");
    assert_eq!(plans(&k).recorded, 1);
    // The Python hostile connector answers `ok` the same way; it runs.
    let python = CONFIG.replacen("{HOSTILE}", "{HOSTILE_PY}", 1);
    reload(&s, &k, &python).await;
    assert_eq!(result(&k, "ok").await, "fine");
    assert_eq!(plans(&k).recorded, 2, "a new component records again");
    assert_eq!(result(&k, "ok").await, "fine");
    assert_eq!(plans(&k).hit, 2);
    // Its own limits changed: recorded again.
    let limited = python.replacen(
        "[connectors.hostile]\n",
        "[connectors.hostile]\nmax_memory_mb = 32\n",
        1,
    );
    assert_ne!(limited, python);
    reload(&s, &k, &limited).await;
    assert_eq!(result(&k, "ok").await, "fine");
    assert_eq!(plans(&k).recorded, 3, "new limits record again");
    assert_eq!(plans(&k).hit, 2);
}

#[tokio::test]
async fn a_connector_that_logs_has_its_lines_written_on_every_planned_render() {
    let (_s, k) = host_with("").await;
    let before = keyward_tests::logs_text()
        .matches("hostile logs one line per render")
        .count();
    for _ in 0..3 {
        assert_eq!(result(&k, "log").await, "logged");
    }
    let after = keyward_tests::logs_text()
        .matches("hostile logs one line per render")
        .count();
    assert_eq!(
        after - before,
        3,
        "one line per render, replayed from the plan"
    );
    assert_eq!(plans(&k).recorded, 1);
    assert_eq!(plans(&k).hit, 2);
}

#[tokio::test]
async fn a_connector_that_lists_invalidates_or_reveals_is_not_planned() {
    let ((_ps, planned), (_us, unplanned)) = planned_and_unplanned().await;
    // Each render runs the connector: `invalidate` answers `true` on the
    // first and is then held back by `invalidate_interval_ms`, on both.
    for mode in ["list", "invalidate-probe"] {
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            expected.push(shape(
                &hostile(&unplanned, "hostile", mode).await.expect(mode),
            ));
            got.push(shape(
                &hostile(&planned, "hostile", mode).await.expect(mode),
            ));
        }
        assert_eq!(got, expected, "{mode}");
    }
    // A connector granted reveal is never planned: what it revealed could
    // live in its instance.
    for _ in 0..3 {
        let rendered = hostile(&planned, "revealing", "stash")
            .await
            .expect("stash");
        assert_eq!(rendered.get("result"), Some("stashed"));
    }
    assert_eq!(
        plans(&planned),
        PlanCounts {
            hit: 0,
            recorded: 0,
            skipped: 9
        },
        "each ran the connector"
    );
}

/// The wall clock a recording render reads: 2025-01-01T00:00:00Z, in ns.
const RECORDING_WALL_CLOCK: &str = "wall 1735689600000000000 ";

#[tokio::test]
async fn clocks_and_random_are_a_function_of_the_configuration_when_planned() {
    let ((_ps, planned), (_us, unplanned)) = planned_and_unplanned().await;
    let (_os, other) = host_with("").await;
    for mode in ["clock", "random-bytes"] {
        let first = result(&planned, mode).await;
        assert_eq!(result(&planned, mode).await, first, "{mode}: a plan hit");
        assert_eq!(
            result(&other, mode).await,
            first,
            "{mode}: another host records the same"
        );
        // Unplanned, the connector sees the real clocks and random.
        assert_ne!(
            result(&unplanned, mode).await,
            result(&unplanned, mode).await,
            "{mode}"
        );
    }
    assert!(
        result(&planned, "clock")
            .await
            .starts_with(RECORDING_WALL_CLOCK)
    );
    assert!(
        !result(&unplanned, "clock")
            .await
            .starts_with(RECORDING_WALL_CLOCK)
    );
    // Another configuration: another seed.
    let fields = [
        ("mode".to_string(), "random-bytes".to_string()),
        ("needle".to_string(), "another configuration".to_string()),
    ];
    let rendered = planned
        .render_fields("hostile", &fields)
        .await
        .expect("render");
    assert_ne!(
        rendered.get("result"),
        Some(result(&planned, "random-bytes").await.as_str())
    );
    let reads = planned.stats().recorded_wasi_reads;
    assert!(
        reads.wall_clock >= 1 && reads.monotonic_clock >= 2,
        "{reads:?}"
    );
    assert!(reads.random_bytes >= 32, "{reads:?}");
}

#[tokio::test]
async fn state_in_a_global_is_gone_for_a_planned_connector_even_in_warm_mode() {
    let (_ps, planned) = host_with("mode = \"warm\"").await;
    let (_us, unplanned) = host_with("mode = \"warm\"\nrender_plans = 0").await;
    for _ in 0..3 {
        assert_eq!(
            result(&planned, "global-count").await,
            "render 1 of this instance"
        );
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(result(&unplanned, "global-count").await);
    }
    assert_eq!(
        seen,
        [
            "render 1 of this instance",
            "render 2 of this instance",
            "render 3 of this instance"
        ],
        "without plans, a warm instance keeps its global"
    );
}

#[tokio::test]
async fn handle_numbers_are_the_same_planned_and_unplanned_and_a_rotation_reaches_them() {
    let ((ps, planned), (us, unplanned)) = planned_and_unplanned().await;
    let expected = shape(
        &hostile(&unplanned, "hostile", "handle-number")
            .await
            .expect("render"),
    );
    for _ in 0..3 {
        let got = shape(
            &hostile(&planned, "hostile", "handle-number")
                .await
                .expect("render"),
        );
        assert_eq!(got, expected);
    }
    let rendered = hostile(&planned, "hostile", "handle-number")
        .await
        .expect("render");
    assert_eq!(rendered.get("secret"), Some(CANARY));
    let mut rotated = secrets(&password(1));
    rotated["acme/prod/key"] = json!("rotated-key");
    for s in [&ps, &us] {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        s.write_secrets(&rotated);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let rendered = hostile(&planned, "hostile", "handle-number")
        .await
        .expect("render");
    assert_eq!(rendered.get("secret"), Some("rotated-key"));
    let expected = shape(
        &hostile(&unplanned, "hostile", "handle-number")
            .await
            .expect("render"),
    );
    assert_eq!(shape(&rendered), expected);
    assert_eq!(plans(&planned).recorded, 1);
}

#[tokio::test]
async fn a_connector_that_opted_out_runs_every_time_with_real_clocks() {
    let (_s, k) = host_with("").await;
    let fields = [
        ("a".to_string(), "{{ secrets.host }}".to_string()),
        ("clock".to_string(), "yes".to_string()),
    ];
    let mut clocks = Vec::new();
    for _ in 0..3 {
        let rendered = k.render_fields("echo", &fields).await.expect("render");
        assert_eq!(rendered.get("a"), Some("db.internal"));
        let nanos: u128 = rendered
            .get("clock")
            .expect("clock")
            .parse()
            .expect("nanos");
        clocks.push(nanos);
    }
    // After 2026-01-01: the real wall clock, not a recording's.
    assert!(
        clocks.iter().all(|&c| c > 1_767_225_600_000_000_000),
        "{clocks:?}"
    );
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
    assert_eq!(
        plans(&k),
        PlanCounts {
            hit: 0,
            recorded: 0,
            skipped: 3
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_typescript_renders_are_planned_and_their_wasi_reads_shown() {
    for id in ["cache", "orders"] {
        let (_s, k) = host_with("").await;
        k.render(id).await.expect(id);
        let reads = k.stats().recorded_wasi_reads;
        // What the language runtime asked WASI for while recording (at
        // the SDKs' pinned runtimes): Python (componentize-py) 9,984
        // random bytes as its instance starts (hash seed and `random`),
        // TypeScript (componentize-js) 8 monotonic clock reads. Both were
        // deterministic, so both renders are planned.
        eprintln!("{id}: {reads:?}");
        assert_ne!(reads, Default::default(), "{id}: its runtime reads WASI");
        k.render(id).await.expect(id);
        assert_eq!(
            plans(&k),
            PlanCounts {
                hit: 1,
                recorded: 1,
                skipped: 0
            },
            "{id}"
        );
    }
}
