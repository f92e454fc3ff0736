//! A platform that already embeds wasmtime links keyward's imports into its
//! own `Linker<T>`, beside its own interfaces, with its own store state, and
//! drives a render itself: expand under keyward's policy, call the
//! connector, evaluate its outputs.

use std::sync::Arc;

use keyward_host::sandbox::bindings::Connector;
use keyward_host::sandbox::{KeywardCtx, KeywardView, add_to_linker};
use keyward_host::sealed::PreparedFields;
use keyward_host::{Config, Keyward};
use keyward_test_support::{CANARY, Scratch, artifacts};
use serde_json::json;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config as EngineConfig, Engine, Store};
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

#[tokio::test]
async fn keyward_links_into_an_embedders_own_linker() {
    let scratch = Scratch::new(
        r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[connectors.echo]
component = "{ECHO}"
egress = ["echo.test"]
allow = ["db"]
"#,
        &json!({ "acme/prod/db": { "json": { "password": CANARY } } }),
    );
    let config = Config::load(&scratch.config()).expect("config");
    let limits = Arc::new(config.sandbox.clone());
    let keyward = Keyward::new(config).await.expect("keyward");

    let mut engine_config = EngineConfig::new();
    engine_config.wasm_component_model(true);
    let engine = Engine::new(&engine_config).expect("engine");
    let mut linker: Linker<Platform> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    add_to_linker(&mut linker, |state: &mut Platform| {
        KeywardView::new(&mut state.keyward)
    })
    .expect("keyward's imports");
    // The platform's own interface, beside keyward's.
    linker
        .instance("acme:platform/metrics@1.0.0")
        .expect("instance")
        .func_wrap(
            "renders",
            |store: wasmtime::StoreContextMut<'_, Platform>, (): ()| Ok((store.data().renders,)),
        )
        .expect("own function");

    let component = Component::from_file(&engine, artifacts::ECHO).expect("component");
    let mut store = Store::new(
        &engine,
        Platform {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            keyward: KeywardCtx::new("echo".into(), limits),
            renders: 0,
        },
    );
    let connector = Connector::instantiate_async(&mut store, &component, &linker)
        .await
        .expect("instantiate");

    let info = keyward.describe("echo").await.expect("describe");
    let fields = [
        ("a".to_string(), "plain".to_string()),
        (
            "secret".to_string(),
            "pw={{ secrets.db.password | urlencode }}".to_string(),
        ),
    ];
    let prepared = Arc::new(PreparedFields::new(&info, &fields).expect("fields"));
    let ctx = &mut store.data_mut().keyward;
    ctx.begin_render(keyward.connector_secrets("echo").expect("secrets"));
    let given = ctx
        .expand(prepared)
        .await
        .expect("within the deadline")
        .expect("expanded");
    let returned = connector
        .call_render(&mut store, &given)
        .await
        .expect("no trap")
        .expect("rendered");
    store.data_mut().renders += 1;
    let outputs = store.data().keyward.outputs(returned).expect("evaluated");
    let ctx = &mut store.data_mut().keyward;
    ctx.finish_render();
    ctx.end_render();

    let shown: Vec<(&str, &str, bool)> = outputs
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
}
