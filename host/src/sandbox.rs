//! The wasmtime side: compiling connector components and running them with
//! nothing but the `secrets` and `log` imports and a capability-less WASI.
//!
//! Each connector is compiled once into an [`InstancePre`]-backed
//! [`ConnectorPre`]; every render instantiates it in a fresh `Store`, so no
//! state (and no secret) survives from one render to the next.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use zeroize::Zeroizing;

use crate::limits::{EpochTicker, ExecutionMode, GuestClock, SandboxConfig};
use crate::resolve::{ConnectorSecrets, Invalidation, ResolveError, SecretRequest};
use crate::value::SecretValue;

mod bindings {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::keyward::connector::{log as wit_log, secrets as wit_secrets, types as wit_types};
use bindings::{Connector, ConnectorPre};

/// The mask written in place of a secret value.
pub const MASK: &str = "****";

/// The most random bytes a guest gets in one WASI call; more traps.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Bytes of each pooled memory and table slot that stay mapped between
/// instances and are reset in place (see `Sandbox::new`).
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// A connector's declaration, as its `describe` returned it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorInfo {
    /// Machine name.
    pub name: String,
    /// The connector's version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// Fields it takes.
    pub fields: Vec<FieldSpec>,
}

/// One field a connector takes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldSpec {
    /// Field name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Must be configured.
    pub required: bool,
    /// Masked in outputs.
    pub sensitive: bool,
    /// Used when not configured.
    pub default: Option<String>,
    /// May be a bare Secrets Manager ARN.
    pub secret_reference: bool,
}

/// One rendered output.
#[derive(Clone)]
pub struct RenderedValue {
    /// Output name.
    pub name: String,
    /// The text; zeroed on drop.
    pub value: Zeroizing<String>,
    /// Masked unless revealed.
    pub sensitive: bool,
}

impl fmt::Debug for RenderedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &str = if self.sensitive { MASK } else { &self.value };
        f.debug_struct("RenderedValue")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

/// A render error as the connector reported it: the field and column of
/// the author's template, and a message that holds no secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_render_error(field, column, message))]
pub struct RenderError {
    /// The field at fault.
    pub field: Option<String>,
    /// 1-based character column in the field's template.
    pub column: Option<u32>,
    /// What was wrong.
    pub message: String,
}

fn describe_render_error(field: &Option<String>, column: &Option<u32>, message: &str) -> String {
    match (field, column) {
        (Some(field), Some(column)) => format!("field `{field}`, column {column}: {message}"),
        (Some(field), None) => format!("field `{field}`: {message}"),
        _ => message.to_string(),
    }
}

/// Why running a connector failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The connector rejected its input.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The guest trapped or the host could not run it.
    #[error("the connector failed: {0}")]
    Trap(String),
}

/// Per-render store state: WASI with no capabilities, the connector's
/// secrets view, and the values handed to the guest (to mask its logs).
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    secrets: Option<Arc<ConnectorSecrets>>,
    connector: Arc<str>,
    delivered: Vec<Zeroizing<String>>,
    limits: Arc<SandboxConfig>,
    store_limits: StoreLimits,
    clock: GuestClock,
    log_lines: usize,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    fn new(
        connector: Arc<str>,
        secrets: Option<Arc<ConnectorSecrets>>,
        limits: Arc<SandboxConfig>,
    ) -> Self {
        // No preopens, no environment, no network, no inherited stdio.
        let wasi = WasiCtxBuilder::new()
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            // wasmtime-wasi builds the buffer on the host before copying
            // it in: keep that small (its default is 64 MiB).
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .table_elements(100_000)
            .instances(64)
            .tables(64)
            .memories(16)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            secrets,
            connector,
            delivered: Vec::new(),
            limits,
            store_limits,
            clock: GuestClock::new(),
            log_lines: 0,
        }
    }

    /// Readies a warm instance's state for the next render.
    fn begin_render(&mut self, connector: Arc<str>, secrets: Arc<ConnectorSecrets>) {
        self.connector = connector;
        self.secrets = Some(secrets);
        self.delivered.clear();
        self.clock = GuestClock::new();
        self.log_lines = 0;
    }

    /// Forgets the render's secrets view and the values it delivered.
    fn end_render(&mut self) {
        self.secrets = None;
        self.delivered.clear();
    }

    async fn resolve(
        &mut self,
        requests: Vec<SecretRequest>,
    ) -> Vec<Result<wit_secrets::SecretValue, wit_secrets::SecretError>> {
        if requests.len() > self.limits.max_references {
            let detail = format!(
                "{} references in one call; at most {} are allowed",
                requests.len(),
                self.limits.max_references
            );
            return requests
                .iter()
                .map(|r| {
                    Err(to_wit_error(ResolveError::Invalid {
                        reference: r.to_string(),
                        detail: detail.clone(),
                    }))
                })
                .collect();
        }
        self.clock.enter_host();
        let results = match &self.secrets {
            Some(secrets) => secrets.get_many(&requests).await,
            None => requests
                .iter()
                .map(|r| {
                    Err(ResolveError::NotFound {
                        reference: r.to_string(),
                    })
                })
                .collect(),
        };
        self.clock.leave_host();
        results
            .into_iter()
            .map(|result| match result {
                Ok(value) => Ok(self.deliver(value)),
                Err(e) => Err(to_wit_error(e)),
            })
            .collect()
    }

    /// Copies a value into the guest's representation, remembering it so
    /// that the guest's log lines can be masked.
    fn deliver(&mut self, value: SecretValue) -> wit_secrets::SecretValue {
        match value {
            SecretValue::Text(text) => {
                let copy = wit_secrets::SecretValue::Text(text.to_string());
                self.delivered.push(text);
                copy
            }
            SecretValue::Bytes(bytes) => {
                use base64::Engine as _;
                self.delivered.push(Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(&*bytes),
                ));
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    self.delivered.push(Zeroizing::new(text.to_string()));
                }
                wit_secrets::SecretValue::Bytes(bytes.to_vec())
            }
        }
    }

    /// The message with every delivered value replaced by [`MASK`],
    /// longest first so that a value containing another is masked whole.
    fn mask(&self, message: &str) -> String {
        let mut values: Vec<&str> = self
            .delivered
            .iter()
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = message.to_string();
        for value in values {
            if out.contains(value) {
                out = out.replace(value, MASK);
            }
        }
        out
    }
}

/// The one conversion from domain errors to the WIT variant.
fn to_wit_error(error: ResolveError) -> wit_secrets::SecretError {
    use wit_secrets::{ErrorDetail, SecretError as W};
    match error {
        ResolveError::NotFound { reference } => W::NotFound(reference),
        ResolveError::Invalid { reference, detail } => {
            W::InvalidReference(ErrorDetail { reference, detail })
        }
        ResolveError::NotJson { reference } => W::NotJson(reference),
        ResolveError::MissingKey { reference, key } => W::MissingKey(ErrorDetail {
            reference,
            detail: key,
        }),
        ResolveError::Unavailable { reference, detail } => {
            W::Unavailable(ErrorDetail { reference, detail })
        }
    }
}

fn from_wit_ref(r: wit_secrets::SecretRef) -> SecretRequest {
    SecretRequest {
        name: r.name,
        path: r.path,
        version_stage: r.version_stage,
        version_id: r.version_id,
    }
}

impl wit_secrets::Host for HostState {
    async fn get(
        &mut self,
        reference: wit_secrets::SecretRef,
    ) -> Result<wit_secrets::SecretValue, wit_secrets::SecretError> {
        let mut results = self.resolve(vec![from_wit_ref(reference)]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(wit_secrets::SecretError::NotFound(String::new())))
    }

    async fn get_many(
        &mut self,
        references: Vec<wit_secrets::SecretRef>,
    ) -> Vec<Result<wit_secrets::SecretValue, wit_secrets::SecretError>> {
        self.resolve(references.into_iter().map(from_wit_ref).collect())
            .await
    }

    async fn invalidate(&mut self, reference: wit_secrets::SecretRef) -> bool {
        self.clock.enter_host();
        let done = match &self.secrets {
            Some(secrets) => {
                secrets.invalidate(&from_wit_ref(reference)).await == Invalidation::Done
            }
            None => false,
        };
        self.clock.leave_host();
        done
    }

    async fn list(&mut self) -> Vec<String> {
        self.clock.enter_host();
        let names = match &self.secrets {
            Some(secrets) => secrets.list().await.unwrap_or_else(|e| {
                tracing::warn!(connector = %self.connector, "listing secrets failed: {e}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        self.clock.leave_host();
        names
    }
}

impl wit_log::Host for HostState {
    async fn log(&mut self, level: wit_log::Level, message: String) {
        self.log_lines += 1;
        let connector = &*self.connector;
        if self.log_lines > self.limits.max_log_lines {
            if self.log_lines == self.limits.max_log_lines + 1 {
                tracing::warn!(
                    target: "keyward::guest",
                    connector,
                    "log limit of {} lines per render reached; further lines are dropped",
                    self.limits.max_log_lines
                );
            }
            return;
        }
        let mut message = self.mask(&message);
        if message.len() > self.limits.max_log_bytes {
            let mut cut = self.limits.max_log_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (cut)");
        }
        match level {
            wit_log::Level::Trace => {
                tracing::trace!(target: "keyward::guest", connector, "{message}")
            }
            wit_log::Level::Debug => {
                tracing::debug!(target: "keyward::guest", connector, "{message}")
            }
            wit_log::Level::Info => {
                tracing::info!(target: "keyward::guest", connector, "{message}")
            }
            wit_log::Level::Warn => {
                tracing::warn!(target: "keyward::guest", connector, "{message}")
            }
            wit_log::Level::Error => {
                tracing::error!(target: "keyward::guest", connector, "{message}")
            }
        }
    }
}

impl wit_types::Host for HostState {}

/// A wasmtime engine and a linker with the keyward imports.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: Arc<SandboxConfig>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

/// A compiled connector, ready to instantiate.
#[derive(Clone)]
pub struct LoadedConnector {
    engine: Engine,
    pre: ConnectorPre<HostState>,
    warm: Arc<Mutex<Vec<Warm>>>,
    limits: Arc<SandboxConfig>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for LoadedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConnector").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// An engine configured for connectors: epoch interruption for the CPU
    /// deadline, the default 512 KiB wasm stack (deep recursion traps).
    pub fn new(limits: SandboxConfig) -> Result<Self, String> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // For profiling: `perf report` can then name JIT-compiled guest code.
        if std::env::var_os("KEYWARD_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(slots) = limits.pooled_instances {
            // A connector built by wasm32-wasip2 Rust instantiates a few
            // core modules; leave room for them.
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(4))
                .total_memories(slots.saturating_mul(2))
                .total_tables(slots.saturating_mul(4))
                .total_stacks(slots)
                .max_memory_size(limits.max_memory_bytes)
                // A render dirties a few dozen pages of a slot. Resetting
                // just those (found with Linux's PAGEMAP_SCAN, where the
                // kernel has it) keeps them mapped for the next instance,
                // instead of an madvise and a page fault per page; it
                // halved the fresh-instance render in `benches/`.
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(KEEP_RESIDENT_BYTES);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        if let Some(dir) = &limits.compile_cache {
            // wasmtime wants an absolute directory.
            let dir = std::path::absolute(dir)
                .map_err(|e| format!("compile cache {}: {e}", dir.display()))?;
            let mut cache = CacheConfig::new();
            cache.with_directory(&dir);
            let cache =
                Cache::new(cache).map_err(|e| format!("compile cache {}: {e:#}", dir.display()))?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e:#}"))?;
        let ticker = EpochTicker::start(&engine)
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e:#}"))?;
        Connector::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| format!("cannot link keyward imports: {e:#}"))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits: Arc::new(limits),
            _ticker: Arc::new(ticker),
        })
    }

    /// Compiles a component file and checks that it is a keyward connector.
    pub fn load(&self, path: &Path) -> Result<LoadedConnector, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read the component: {e}"))?;
        self.load_bytes(&bytes)
    }

    /// Compiles component bytes and checks that they are a keyward connector.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<LoadedConnector, String> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("not a WebAssembly component: {}", first_line(&e)))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("not a keyward connector (imports do not match): {e:#}"))?;
        let pre = ConnectorPre::new(instance_pre)
            .map_err(|e| format!("not a keyward connector (exports do not match): {e:#}"))?;
        Ok(LoadedConnector {
            engine: self.engine.clone(),
            pre,
            warm: Arc::default(),
            limits: self.limits.clone(),
            _ticker: self._ticker.clone(),
        })
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl LoadedConnector {
    /// A fresh store: memory and table limits, and the CPU deadline
    /// checked on every epoch tick against the guest's own time.
    fn store(
        &self,
        connector: Arc<str>,
        secrets: Option<Arc<ConnectorSecrets>>,
    ) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(connector, secrets, self.limits.clone()),
        );
        store.limiter(|state| &mut state.store_limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            let state = context.data();
            let timeout = state.limits.render_timeout;
            if state.clock.guest_time() > timeout {
                Err(wasmtime::Error::msg(format!(
                    "the connector ran longer than its {} ms CPU deadline",
                    timeout.as_millis()
                )))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// Calls the connector's `describe`.
    pub async fn describe(&self) -> Result<ConnectorInfo, RunError> {
        let mut store = self.store("describe".into(), None);
        let instance = self.pre.instantiate_async(&mut store).await.map_err(trap)?;
        let info = instance.call_describe(&mut store).await.map_err(trap)?;
        Ok(ConnectorInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            fields: info
                .fields
                .into_iter()
                .map(|f| FieldSpec {
                    name: f.name,
                    description: f.description,
                    required: f.required,
                    sensitive: f.sensitive,
                    default: f.default_value,
                    secret_reference: f.secret_reference,
                })
                .collect(),
        })
    }

    /// Renders in a fresh instance with the connector's secrets view.
    pub async fn render(
        &self,
        secrets: Arc<ConnectorSecrets>,
        fields: &[(String, String)],
    ) -> Result<Vec<RenderedValue>, RunError> {
        let connector = secrets.connector_id();
        let (mut store, instance) = match self.take_warm() {
            Some(warm) => {
                let mut store = warm.store;
                store.data_mut().begin_render(connector, secrets);
                store.set_epoch_deadline(1);
                (store, warm.instance)
            }
            None => {
                let mut store = self.store(connector, Some(secrets));
                let instance = self.pre.instantiate_async(&mut store).await.map_err(trap)?;
                (store, instance)
            }
        };
        let fields: Vec<wit_types::FieldValue> = fields
            .iter()
            .map(|(name, template)| wit_types::FieldValue {
                name: name.clone(),
                template: template.clone(),
            })
            .collect();
        // On a trap the store is dropped here: a trapped instance is never reused.
        let result = instance
            .call_render(&mut store, &fields)
            .await
            .map_err(trap)?;
        let outcome = match result {
            Ok(values) => Ok(values
                .into_iter()
                .map(|v| RenderedValue {
                    name: v.name,
                    value: Zeroizing::new(v.value),
                    sensitive: v.sensitive,
                })
                .collect()),
            Err(e) => Err(RunError::Render(RenderError {
                field: e.field,
                column: e.column,
                // A connector could echo a value into its error: mask it.
                message: store.data().mask(&e.message),
            })),
        };
        if self.limits.mode == ExecutionMode::Warm {
            store.data_mut().end_render();
            self.put_warm(Warm { store, instance });
        }
        outcome
    }

    fn take_warm(&self) -> Option<Warm> {
        self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_warm(&self, warm: Warm) {
        let mut pool = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.limits.warm_instances {
            pool.push(warm);
        }
    }

    /// Instantiates up to `count` idle instances now (warm mode), so the
    /// first renders do not pay for instantiation. Returns how many are idle.
    pub async fn prewarm(&self, count: usize) -> Result<usize, RunError> {
        let count = count.min(self.limits.warm_instances);
        while self.warm.lock().unwrap_or_else(|p| p.into_inner()).len() < count {
            let mut store = self.store("prewarm".into(), None);
            let instance = self.pre.instantiate_async(&mut store).await.map_err(trap)?;
            self.put_warm(Warm { store, instance });
        }
        Ok(self.warm.lock().unwrap_or_else(|p| p.into_inner()).len())
    }
}

/// An instance kept between renders in warm mode.
struct Warm {
    store: Store<HostState>,
    instance: Connector,
}

/// The cause of a trap in one line: the deadline, a stack overflow, an
/// `unreachable` (a guest panic or failed allocation), without the guest
/// backtrace that wasmtime puts first.
fn trap(e: wasmtime::Error) -> RunError {
    let cause = e.root_cause().to_string();
    RunError::Trap(cause.lines().next().unwrap_or("unknown trap").to_string())
}
