//! Figures per connector language: the same kind of connector (one URL
//! composed from a host, a user and a sealed password) in Rust
//! (`examples/postgres`), Python (`examples/redis-python`) and TypeScript
//! (`examples/mariadb-typescript`), measured the same way.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use keyward_host::SandboxConfig;
use keyward_host::{Config, Keyward, Sandbox};
use keyward_test_support::{Scratch, artifacts};

/// One language's connector: its component and the fields it is given.
struct Subject {
    language: &'static str,
    connector: &'static str,
    component: &'static str,
    fields: &'static str,
    /// Renders timed per median (interpreted guests are slower).
    renders: usize,
}

const SUBJECTS: &[Subject] = &[
    Subject {
        language: "Rust",
        connector: "examples/postgres",
        component: artifacts::POSTGRES,
        fields: r#"host = "db.internal"
port = "5432"
database = "orders"
user = "app"
password = "{{ secrets.password }}"
sslmode = "require""#,
        renders: 2000,
    },
    Subject {
        language: "Python",
        connector: "examples/redis-python",
        component: artifacts::REDIS_PY,
        fields: r#"host = "cache.internal"
username = "app"
password = "{{ secrets.password }}""#,
        renders: 300,
    },
    Subject {
        language: "TypeScript",
        connector: "examples/mariadb-typescript",
        component: artifacts::MARIADB_TS,
        fields: r#"host = "db.internal"
user = "app"
password = "{{ secrets.password }}"
database = "orders""#,
        renders: 300,
    },
];

/// Live instances held for the memory figure.
const LIVE: usize = 20;

/// The host's configuration: `ids` connector ids (`c`, then `c1`, ...) on
/// the subject's component, with its fields; `mode` is `planned` (render
/// plans on) or an execution mode with plans off, so the connector runs
/// on every render.
fn config(subject: &Subject, mode: &str, cache: &Path, ids: usize) -> String {
    let (mode, plans) = match mode {
        "planned" => ("fresh", ""),
        mode => (mode, "render_plans = 0"),
    };
    let mut connectors = String::new();
    for i in 0..ids {
        let id = if i == 0 {
            "c".to_string()
        } else {
            format!("c{i}")
        };
        connectors.push_str(&format!(
            "\n[connectors.{id}]\ncomponent = \"{}\"\nallow = [\"**\"]\n\n[connectors.{id}.config]\n{}\n",
            subject.component, subject.fields
        ));
    }
    format!(
        r#"
[secrets]
namespace = "bench/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[sandbox]
mode = "{mode}"
{plans}
warm_instances = 4
render_timeout_ms = 1000
compile_cache = "{}"
{connectors}"#,
        cache.display(),
    )
}

async fn host(subject: &Subject, mode: &str, cache: &Path, ids: usize) -> (Scratch, Keyward) {
    let scratch = Scratch::new(
        &config(subject, mode, cache, ids),
        &serde_json::json!({ "bench/password": "p@ss:w/rd#%?&\"é" }),
    );
    let keyward = Keyward::new(Config::load(&scratch.config()).expect("config"))
        .await
        .expect("keyward");
    (scratch, keyward)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

async fn render_median(keyward: &Keyward, renders: usize) -> Duration {
    let mut times = Vec::with_capacity(renders);
    for _ in 0..renders {
        let started = Instant::now();
        keyward.render("c").await.expect("render");
        times.push(started.elapsed());
    }
    median(times)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        ms(d)
    }
}

/// The table, with its header.
pub async fn table(resident_bytes: fn() -> u64) -> String {
    let mut out = String::from(
        "\n## Per connector language\n\n\
         | language | connector | component | compile | precompiled load | fresh-instance render (median) | warm render (median) | planned render (median) | resident memory per live instance |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for subject in SUBJECTS {
        let size = std::fs::metadata(subject.component).map_or(0, |m| m.len());
        // Compile: a sandbox with no cache loads (compiles) the component.
        let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
        let started = Instant::now();
        sandbox.load(Path::new(subject.component)).expect("load");
        let compile = started.elapsed();
        // Precompiled: the cache is filled once, then a new sandbox loads.
        let cache = tempfile::tempdir().expect("temp dir");
        let cached = SandboxConfig {
            compile_cache: Some(cache.path().to_path_buf()),
            ..SandboxConfig::default()
        };
        Sandbox::new(cached.clone())
            .expect("sandbox")
            .load(Path::new(subject.component))
            .expect("load");
        let sandbox = Sandbox::new(cached).expect("sandbox");
        let started = Instant::now();
        sandbox.load(Path::new(subject.component)).expect("load");
        let precompiled = started.elapsed();

        let (_fresh_scratch, fresh) = host(subject, "fresh", cache.path(), 1).await;
        fresh.render("c").await.expect("render");
        let fresh_median = render_median(&fresh, subject.renders / 4 + 10).await;
        let (_warm_scratch, warm) = host(subject, "warm", cache.path(), 1).await;
        warm.render("c").await.expect("render");
        let warm_median = render_median(&warm, subject.renders).await;
        let (_planned_scratch, planned) = host(subject, "planned", cache.path(), 1).await;
        planned.render("c").await.expect("render");
        let planned_median = render_median(&planned, subject.renders).await;

        // One warm instance per connector id, each after a render.
        let (_live_scratch, live) = host(subject, "warm", cache.path(), LIVE + 1).await;
        live.render("c").await.expect("render");
        let before = resident_bytes();
        for i in 1..=LIVE {
            live.render(&format!("c{i}")).await.expect("render");
        }
        let after = resident_bytes();
        let per_instance = after.saturating_sub(before) as f64 / LIVE as f64 / 1024.0 / 1024.0;

        let _ = writeln!(
            out,
            "| {} | `{}` | {:.1} MB | {} | {} | {} | {} | {} | {per_instance:.2} MiB |",
            subject.language,
            subject.connector,
            size as f64 / 1e6,
            ms(compile),
            ms(precompiled),
            us(fresh_median),
            us(warm_median),
            us(planned_median),
        );
    }
    out.push_str(
        &"\nTargets for Python and TypeScript: a planned render within 1.2× the Rust \
         connector's, a fresh-instance render under 5 ms. Fresh-instance and warm renders \
         run the connector every time (`render_plans = 0`); a planned render is host work \
         only after the configuration's first render. Compile and precompiled load are one-shot; renders are medians \
         of sequential renders on the file backend (every secret cached after the first); \
         memory is the growth of the process's resident set for {LIVE} more warm instances, \
         one per connector id, each idle after a render.\n"
            .replace("{LIVE}", &LIVE.to_string()),
    );
    out
}
