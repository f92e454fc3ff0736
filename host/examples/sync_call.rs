//! What one `render` export call costs on an async store (wasmtime runs it
//! on a fiber) against a sync store, with the echo connector and one plain
//! field: the saving a synchronous render path could buy at most.
//!
//! ```sh
//! CARGO_TARGET_DIR=target/connectors cargo build --target wasm32-wasip2 \
//!     --profile connector -p echo-connector
//! cargo run --release -p keyward-host --example sync_call -- \
//!     target/connectors/wasm32-wasip2/connector/echo_connector.wasm
//! ```
//!
//! On the 2-core bench machine: 1.06 µs async, 0.90 µs sync (three runs).
//! The host's real synchronous path is `src/sandbox/sync_path.rs`: it links
//! no WASI at all (wasmtime-wasi's sync bindings block on `in_tokio`, which
//! panics on a tokio worker thread), and reruns a render async instead.
use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod asyncb {
    wasmtime::component::bindgen!({
        world: "connector", path: "../wit",
        imports: { default: async | trappable }, exports: { default: async },
    });
}
mod syncb {
    wasmtime::component::bindgen!({
        world: "connector", path: "../wit",
        imports: { default: trappable },
        with: { "keyward:connector/types": super::asyncb::keyward::connector::types },
    });
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}
impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
impl asyncb::keyward::connector::secrets::Host for State {
    async fn reveal(&mut self, _: u64) -> wasmtime::Result<Result<String, String>> {
        Ok(Err("no".into()))
    }
    async fn invalidate(&mut self, _: String) -> wasmtime::Result<bool> {
        Ok(false)
    }
    async fn list(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(vec![])
    }
}
impl asyncb::keyward::connector::log::Host for State {
    async fn log(
        &mut self,
        _: asyncb::keyward::connector::log::Level,
        _: String,
    ) -> wasmtime::Result<()> {
        Ok(())
    }
}
impl asyncb::keyward::connector::types::Host for State {}
impl syncb::keyward::connector::secrets::Host for State {
    fn reveal(&mut self, _: u64) -> wasmtime::Result<Result<String, String>> {
        Ok(Err("no".into()))
    }
    fn invalidate(&mut self, _: String) -> wasmtime::Result<bool> {
        Ok(false)
    }
    fn list(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(vec![])
    }
}
impl syncb::keyward::connector::log::Host for State {
    fn log(&mut self, _: syncb::keyward::connector::log::Level, _: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn state() -> State {
    State {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
    }
}

fn main() -> wasmtime::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("path to echo_connector.wasm");
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, &path)?;
    let fields = vec![asyncb::keyward::connector::types::Field {
        name: "a".into(),
        value: vec![asyncb::keyward::connector::types::Text::Plain(
            "postgresql://x".into(),
        )],
    }];
    const N: u32 = 200_000;

    // async store, on a current-thread runtime
    let mut alinker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut alinker)?;
    asyncb::Connector::add_to_linker::<_, HasSelf<_>>(&mut alinker, |s| s)?;
    let apre = asyncb::ConnectorPre::new(alinker.instantiate_pre(&component)?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut store = Store::new(&engine, state());
        store.set_epoch_deadline(u64::MAX / 2);
        let inst = apre.instantiate_async(&mut store).await?;
        for _ in 0..10_000 {
            inst.call_render(&mut store, &fields).await?.ok();
        }
        let t = Instant::now();
        for _ in 0..N {
            inst.call_render(&mut store, &fields).await?.ok();
        }
        println!(
            "async store, call_render: {:.3} µs",
            t.elapsed().as_secs_f64() * 1e6 / N as f64
        );
        wasmtime::Result::<()>::Ok(())
    })?;

    // sync store, no runtime
    let mut slinker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut slinker)?;
    syncb::Connector::add_to_linker::<_, HasSelf<_>>(&mut slinker, |s| s)?;
    let spre = syncb::ConnectorPre::new(slinker.instantiate_pre(&component)?)?;
    let mut store = Store::new(&engine, state());
    store.set_epoch_deadline(u64::MAX / 2);
    let inst = spre.instantiate(&mut store)?;
    for _ in 0..10_000 {
        inst.call_render(&mut store, &fields)?.ok();
    }
    let t = Instant::now();
    for _ in 0..N {
        inst.call_render(&mut store, &fields)?.ok();
    }
    println!(
        "sync store, call_render: {:.3} µs",
        t.elapsed().as_secs_f64() * 1e6 / N as f64
    );
    Ok(())
}
