//! A platform that already embeds wasmtime links keyward's imports into its
//! own `Linker<T>`, beside its own interfaces, with its own store state, and
//! renders through [`Embedder`]: expanded under keyward's policy, the
//! connector called, its outputs evaluated, within keyward's deadline and
//! limits whatever the platform's own engine configuration.

use std::sync::Arc;

use keyward_host::{
    Config, Embedder, Error, Keyward, KeywardCtx, KeywardState, RunError, TrapKind,
};
use keyward_test_support::{CANARY, Scratch};
use serde_json::json;
use wasmtime::Store;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The platform's own store state: its WASI, its own data, and keyward's ctx.
struct Platform {
    wasi: WasiCtx,
    table: ResourceTable,
    keyward: KeywardCtx,
    renders: u32,
}

impl WasiView for Platform {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl KeywardState for Platform {
    fn keyward(&mut self) -> &mut KeywardCtx {
        &mut self.keyward
    }
}

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[sandbox]
render_timeout_ms = 100

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db"]

[connectors.hostile]
component = "{HOSTILE}"
egress = ["echo.test"]
allow = ["db"]
"#;

/// The platform's engine (its own configuration: here wasmtime's defaults,
/// epoch interruption off), its linker with WASI, keyward and one
/// interface of its own.
async fn platform(scratch: &Scratch) -> (Embedder, Linker<Platform>) {
    let config = Config::load(&scratch.config()).expect("config");
    let keyward = Arc::new(Keyward::new(config).await.expect("keyward"));
    let embedder = Embedder::new(keyward, wasmtime::Config::new()).expect("embedder");
    let mut linker: Linker<Platform> = Linker::new(embedder.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    Embedder::add_to_linker(&mut linker).expect("keyward's imports");
    linker
        .instance("acme:platform/metrics@1.0.0")
        .expect("instance")
        .func_wrap(
            "renders",
            |store: wasmtime::StoreContextMut<'_, Platform>, (): ()| Ok((store.data().renders,)),
        )
        .expect("own function");
    (embedder, linker)
}

fn store(embedder: &Embedder, connector: &str) -> Store<Platform> {
    Store::new(
        embedder.engine(),
        Platform {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            keyward: embedder.ctx(connector).expect("ctx"),
            renders: 0,
        },
    )
}

fn hostile(mode: &str) -> [(String, String); 2] {
    [
        ("mode".to_string(), mode.to_string()),
        (
            "secret".to_string(),
            "{{ secrets.db.password }}".to_string(),
        ),
    ]
}

fn scratch() -> Scratch {
    Scratch::new(
        CONFIG,
        &json!({ "acme/prod/db": { "json": { "password": CANARY } } }),
    )
}

#[tokio::test]
async fn keyward_links_into_an_embedders_own_linker() {
    let scratch = scratch();
    let (embedder, linker) = platform(&scratch).await;
    let mut store = store(&embedder, "echo");
    let connector = embedder
        .instantiate(&mut store, &linker, "echo")
        .await
        .expect("instantiate");
    let fields = [
        ("a".to_string(), "plain".to_string()),
        (
            "secret".to_string(),
            "pw={{ secrets.db.password | urlencode }}".to_string(),
        ),
    ];
    let rendered = connector
        .render_fields(&mut store, &fields)
        .await
        .expect("rendered");
    store.data_mut().renders += 1;

    let shown: Vec<(&str, &str, bool)> = rendered
        .values
        .iter()
        .map(|o| (o.name.as_str(), o.value.as_str(), o.sensitive))
        .collect();
    assert_eq!(
        shown,
        [
            ("a", "plain", false),
            ("secret", &*format!("pw={CANARY}"), true)
        ]
    );
    assert_eq!(store.data().renders, 1);
    // The store is the platform's again: its own calls are not stopped by
    // a deadline that was the render's.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let again = connector
        .render_fields(&mut store, &fields)
        .await
        .expect("a second render in the same store");
    assert_eq!(again.values.len(), 2);
}

#[tokio::test]
async fn a_guest_that_loops_without_host_calls_is_stopped_in_the_embedders_store() {
    let scratch = scratch();
    let (embedder, linker) = platform(&scratch).await;
    let mut store = store(&embedder, "hostile");
    let connector = embedder
        .instantiate(&mut store, &linker, "hostile")
        .await
        .expect("instantiate");
    let fields = hostile("loop");
    let started = std::time::Instant::now();
    let e = connector
        .render_fields(&mut store, &fields)
        .await
        .expect_err("the loop must be stopped");
    match &e {
        Error::Run {
            error: RunError::Trap(trap),
            ..
        } => assert_eq!(trap.kind, TrapKind::CpuDeadline, "{e}"),
        other => panic!("not a deadline trap: {other}"),
    }
    assert!(e.to_string().contains("100 ms CPU deadline"), "{e}");
    // Stopped by the deadline, not run to some other end (a generous bound:
    // the point is that it ends at all).
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // The memory limit is the connector's too.
    let mut store = self::store(&embedder, "hostile");
    let connector = embedder
        .instantiate(&mut store, &linker, "hostile")
        .await
        .expect("instantiate");
    let fields = hostile("memory");
    let e = connector
        .render_fields(&mut store, &fields)
        .await
        .expect_err("the hoard must be stopped");
    assert!(
        matches!(&e, Error::Run { error, .. } if error.trap_kind() == Some(TrapKind::Memory)),
        "{e}"
    );
}

#[tokio::test]
async fn a_store_or_linker_of_another_engine_is_an_error_not_a_panic() {
    let scratch = scratch();
    let (embedder, _) = platform(&scratch).await;
    let other = wasmtime::Engine::default();
    let mut linker: Linker<Platform> = Linker::new(&other);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    Embedder::add_to_linker(&mut linker).expect("keyward's imports");
    let mut store = store(&embedder, "echo");
    let e = embedder
        .instantiate(&mut store, &linker, "echo")
        .await
        .expect_err("another engine's linker");
    assert!(e.to_string().contains("embedder's engine"), "{e}");
}
