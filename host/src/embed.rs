//! Running connectors in a platform's own wasmtime stores.
//!
//! A platform that already embeds wasmtime links keyward's imports into
//! its own `Linker<T>`, beside its own interfaces, with a [`KeywardCtx`] in
//! its own store state `T`. [`Embedder`] is the one way in, and it cannot
//! be used without the bounds the README promises: it makes the engine
//! (epoch interruption forced on, the deadlines' clock), and every
//! instantiation and render it does first arms the store with the CPU and
//! wall-clock deadlines, the memory and table limits and the hostcall fuel
//! of the connector's configuration. A ctx comes only from
//! [`Embedder::ctx`], with those limits; a connector handle only from
//! [`Embedder::instantiate`].
//!
//! A store keyward runs in is bounded as a whole while it does: its
//! limiter is keyward's, and during a render its epoch-deadline callback
//! is keyward's too (after one, the store's epoch deadline is left far in
//! the future).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use crate::contract::{ConnectorInfo, Rendered, RunError};
use crate::keyward::{Error, Keyward};
use crate::render::PreparedFields;
use crate::sandbox::bindings::{Connector, ConnectorPre};
use crate::sandbox::limits::EpochTicker;
use crate::sandbox::{
    KeywardCtx, KeywardView, LoadError, SandboxError, arm_store, classify, composed,
};

/// Store state that holds keyward's ctx, as `WasiView` is for WASI.
pub trait KeywardState: Send + 'static {
    /// The ctx [`Embedder::ctx`] made for this store.
    fn keyward(&mut self) -> &mut KeywardCtx;
}

/// Keyward in a platform's own engine and linker: see the module docs.
///
/// ```no_run
/// # async fn run() -> Result<(), keyward_host::Error> {
/// use std::sync::Arc;
/// use keyward_host::{Config, Embedder, Keyward, KeywardCtx, KeywardState};
/// use wasmtime::component::{Linker, ResourceTable};
/// use wasmtime::Store;
/// use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
///
/// struct Platform { wasi: WasiCtx, table: ResourceTable, keyward: KeywardCtx }
/// impl WasiView for Platform {
///     fn ctx(&mut self) -> WasiCtxView<'_> {
///         WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
///     }
/// }
/// impl KeywardState for Platform {
///     fn keyward(&mut self) -> &mut KeywardCtx { &mut self.keyward }
/// }
///
/// let keyward = Arc::new(Keyward::new(Config::load("keyward.toml".as_ref())?).await?);
/// let embedder = Embedder::new(keyward, wasmtime::Config::new())?;
/// let mut linker: Linker<Platform> = Linker::new(embedder.engine());
/// wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI");
/// Embedder::add_to_linker(&mut linker)?;
/// // ... the platform's own interfaces ...
/// let mut store = Store::new(embedder.engine(), Platform {
///     wasi: WasiCtx::builder().build(),
///     table: ResourceTable::new(),
///     keyward: embedder.ctx("orders-db")?,
/// });
/// let connector = embedder.instantiate(&mut store, &linker, "orders-db").await?;
/// let rendered = connector.render(&mut store).await?; // deadline, limits, egress
/// println!("{}", rendered.to_json(false));
/// # Ok(()) }
/// ```
pub struct Embedder {
    keyward: Arc<Keyward>,
    engine: Engine,
    /// Compiled components by file, for this engine.
    components: Mutex<HashMap<PathBuf, Component>>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

impl Embedder {
    /// An engine from the platform's configuration with what keyward needs
    /// forced on (the component model, epoch interruption), and the thread
    /// that ticks its epochs.
    pub fn new(keyward: Arc<Keyward>, mut config: wasmtime::Config) -> Result<Self, Error> {
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(&engine).map_err(SandboxError::EpochThread)?;
        Ok(Self {
            keyward,
            engine,
            components: Mutex::default(),
            _ticker: Arc::new(ticker),
        })
    }

    /// The engine: the platform's linkers and stores must use it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Adds keyward's imports (`secrets`, `log`, `types`) to a platform's
    /// linker; WASI, and the platform's own interfaces, are its own.
    pub fn add_to_linker<T: KeywardState>(linker: &mut Linker<T>) -> Result<(), Error> {
        crate::sandbox::add_to_linker(linker, |state: &mut T| KeywardView::new(state.keyward()))
            .map_err(|e| {
                Error::Engine(SandboxError::Link {
                    what: "keyward's imports",
                    message: format!("{e:#}"),
                })
            })
    }

    /// A ctx for a store that will run `connector`, with its limits.
    pub fn ctx(&self, connector: &str) -> Result<KeywardCtx, Error> {
        let limits = self.keyward.connector_limits(connector)?;
        Ok(KeywardCtx::new(connector.into(), limits))
    }

    /// Instantiates a configured connector in the platform's store (armed
    /// first), checking that the component is a keyward connector.
    pub async fn instantiate<T: KeywardState>(
        &self,
        store: &mut Store<T>,
        linker: &Linker<T>,
        connector: &str,
    ) -> Result<EmbeddedConnector, Error> {
        let path = self.keyward.component_path(connector)?;
        let load = |error: LoadError| Error::Load {
            connector: connector.to_string(),
            path: path.clone(),
            error,
        };
        if !Engine::same(store.engine(), &self.engine)
            || !Engine::same(linker.engine(), &self.engine)
        {
            return Err(load(LoadError::File(
                "the store and the linker must use the embedder's engine".into(),
            )));
        }
        let component = self.component(&path).map_err(load)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load(LoadError::Imports(format!("{e:#}"))))?;
        let pre = ConnectorPre::new(pre).map_err(|e| load(LoadError::Exports(format!("{e:#}"))))?;
        arm_store(store, T::keyward);
        store.data_mut().keyward().restart_clock();
        let instance = pre.instantiate_async(&mut *store).await;
        disarm(store);
        let instance =
            instance.map_err(|e| run_error(connector, &e, store.data_mut().keyward()))?;
        Ok(EmbeddedConnector {
            id: connector.to_string(),
            keyward: self.keyward.clone(),
            instance,
            info: OnceCell::new(),
        })
    }

    /// The file's component, compiled for this engine once.
    fn component(&self, path: &PathBuf) -> Result<Component, LoadError> {
        let mut compiled = self.components.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(component) = compiled.get(path) {
            return Ok(component.clone());
        }
        let bytes = crate::operator_file::read_regular(
            path,
            self.keyward.sandbox_limits().max_component_bytes,
            "the component",
            Some("sandbox.max_component_mb"),
        )
        .map_err(LoadError::File)?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| LoadError::NotAComponent(crate::sandbox::one_line(&e)))?;
        compiled.insert(path.clone(), component.clone());
        Ok(component)
    }
}

/// A connector instantiated in a platform's store by
/// [`Embedder::instantiate`]; call it with that store only.
pub struct EmbeddedConnector {
    id: String,
    keyward: Arc<Keyward>,
    instance: Connector,
    info: OnceCell<Arc<ConnectorInfo>>,
}

impl fmt::Debug for EmbeddedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedConnector")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl EmbeddedConnector {
    /// Renders with the fields from the connector's configuration.
    pub async fn render<T: KeywardState>(&self, store: &mut Store<T>) -> Result<Rendered, Error> {
        let fields = self.keyward.configured_fields(&self.id)?;
        self.render_fields(store, &fields).await
    }

    /// Renders with the given (field, template) pairs, exactly as
    /// [`Keyward::render_fields`] does: expanded under the connector's
    /// policy into sealed text, the connector called, its outputs
    /// evaluated and checked against its destinations, all within its
    /// deadline and limits.
    pub async fn render_fields<T: KeywardState>(
        &self,
        store: &mut Store<T>,
        fields: &[(String, String)],
    ) -> Result<Rendered, Error> {
        let secrets = self.keyward.connector_secrets(&self.id)?;
        let info = self.describe(store).await?;
        let prepared =
            Arc::new(PreparedFields::new(&info, fields).map_err(|e| self.failed(e.into()))?);
        arm_store(store, T::keyward);
        store.data_mut().keyward().begin_render(secrets);
        let expanded = store.data_mut().keyward().expand(prepared).await;
        let outcome = match expanded {
            Err(e) => Err(RunError::Trap(classify(&e, store.data_mut().keyward()))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(given)) => {
                let called = self.instance.call_render(&mut *store, &given).await;
                drop(given);
                let ctx = store.data_mut().keyward();
                match called {
                    Err(e) => Err(RunError::Trap(classify(&e, ctx))),
                    Ok(Ok(outputs)) => ctx.outputs(&composed(outputs)),
                    Ok(Err(e)) => Err(RunError::Render(ctx.render_error(e))),
                }
            }
        };
        let ctx = store.data_mut().keyward();
        ctx.finish_render();
        ctx.end_render();
        disarm(store);
        Ok(Rendered {
            connector: self.id.clone(),
            values: outcome.map_err(|e| self.failed(e))?,
        })
    }

    /// The connector's declaration, asked once (within its deadline).
    pub async fn describe<T: KeywardState>(
        &self,
        store: &mut Store<T>,
    ) -> Result<Arc<ConnectorInfo>, Error> {
        if let Some(info) = self.info.get() {
            return Ok(info.clone());
        }
        arm_store(store, T::keyward);
        store.data_mut().keyward().restart_clock();
        let described = self.instance.call_describe(&mut *store).await;
        disarm(store);
        let info = described.map_err(|e| run_error(&self.id, &e, store.data_mut().keyward()))?;
        let info = Arc::new(crate::sandbox::connector_info(info));
        Ok(self.info.get_or_init(|| async { info }).await.clone())
    }

    fn failed(&self, error: RunError) -> Error {
        Error::Run {
            connector: self.id.clone(),
            error,
        }
    }
}

/// After keyward's work, the store's own calls are not keyward's to stop.
fn disarm<T>(store: &mut Store<T>) {
    store.set_epoch_deadline(u64::MAX / 2);
}

fn run_error(connector: &str, e: &wasmtime::Error, ctx: &KeywardCtx) -> Error {
    Error::Run {
        connector: connector.to_string(),
        error: RunError::Trap(classify(e, ctx)),
    }
}
