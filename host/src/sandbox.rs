//! The wasmtime side: compiling connector components and running them with
//! nothing but the `secrets` and `log` imports and a capability-less WASI.
//!
//! Each distinct component (by content hash) is compiled once into an
//! `InstancePre`-backed `ConnectorPre`, however many connector ids use it;
//! every render instantiates it in a fresh `Store`, so no state (and no
//! secret) survives from one render to the next.
//!
//! What a render may cost is bounded here: the CPU deadline counts guest
//! code and the host's work in its calls (not time waiting on the backend),
//! a wall-clock deadline counts everything, host calls per render are
//! capped, and a host call traps — never panics — when a bound is passed.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use zeroize::Zeroizing;

use crate::escape::escape_untrusted;
use crate::limits::{EpochTicker, ExecutionMode, SandboxConfig};
use crate::resolve::{ConnectorSecrets, RenderBudget, ResolveError, SecretRequest};
use crate::value::SecretValue;

mod bindings {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit",
        // Host calls return `wasmtime::Result`: a call past a render's
        // bounds traps the guest instead of answering it.
        imports: { default: async | trappable },
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
/// secrets view, the values handed to the guest (to mask its logs), and
/// what the render has used of its bounds.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    secrets: Option<Arc<ConnectorSecrets>>,
    connector: Arc<str>,
    delivered: Vec<Zeroizing<String>>,
    limits: Arc<SandboxConfig>,
    limiter: GuestLimiter,
    started: Instant,
    budget: RenderBudget,
    host_calls: usize,
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

/// The store's memory and table limits, remembering whether a memory was
/// refused growth, so that the trap that follows is reported as what it is.
struct GuestLimiter {
    limits: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.limits.memory_growing(current, desired, maximum);
        if !matches!(grown, Ok(true)) {
            self.memory_refused = true;
        }
        grown
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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
            // A refused growth traps at once rather than leaving the guest
            // to abort on a failed allocation somewhere later.
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            secrets,
            connector,
            delivered: Vec::new(),
            limits,
            limiter: GuestLimiter {
                limits: store_limits,
                memory_refused: false,
            },
            started: Instant::now(),
            budget: RenderBudget::for_render(),
            host_calls: 0,
            log_lines: 0,
        }
    }

    /// Readies a warm instance's state for the next render.
    fn begin_render(&mut self, connector: Arc<str>, secrets: Arc<ConnectorSecrets>) {
        self.connector = connector;
        self.secrets = Some(secrets);
        self.delivered.clear();
        self.started = Instant::now();
        self.budget = RenderBudget::for_render();
        self.host_calls = 0;
        self.log_lines = 0;
    }

    /// Ends a render, trapped or not: writes the audit summary of what was
    /// counted rather than written.
    fn finish_render(&mut self) {
        if let Some(secrets) = &self.secrets {
            secrets.finish_render(&self.budget);
        }
        self.budget = RenderBudget::for_render();
    }

    /// Forgets the render's secrets view and the values it delivered.
    fn end_render(&mut self) {
        self.secrets = None;
        self.delivered.clear();
    }

    fn wall_deadline(&self) -> Instant {
        self.started + self.limits.render_wall_timeout
    }

    /// Why the render must stop now, if it must: past the CPU deadline
    /// (everything since it started except waiting on the backend), or
    /// past the wall-clock one. One clock read.
    fn over_deadline(&self) -> Option<String> {
        let limits = &self.limits;
        let elapsed = self.started.elapsed();
        if elapsed.saturating_sub(self.budget.upstream_wait) > limits.render_timeout {
            Some(format!(
                "the connector ran longer than its {} ms CPU deadline",
                limits.render_timeout.as_millis()
            ))
        } else if elapsed > limits.render_wall_timeout {
            Some(wall_deadline_passed(limits.render_wall_timeout))
        } else {
            None
        }
    }

    /// Counts a host call and traps past the render's bounds.
    fn enter_host_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            wasmtime::bail!(
                "the connector made more than {} host calls in one render",
                self.limits.max_host_calls
            );
        }
        if let Some(why) = self.over_deadline() {
            wasmtime::bail!("{why}");
        }
        Ok(())
    }

    /// Awaits host work that may wait on the backend, within the render's
    /// wall-clock deadline.
    async fn within_wall_deadline<T>(
        deadline: Instant,
        limit: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> wasmtime::Result<T> {
        // Most host calls are cache hits, ready at the first poll: they
        // need no timer.
        let mut work = std::pin::pin!(work);
        if let std::task::Poll::Ready(done) = futures::poll!(work.as_mut()) {
            return Ok(done);
        }
        tokio::time::timeout_at(deadline.into(), work)
            .await
            .map_err(|_| wasmtime::Error::msg(wall_deadline_passed(limit)))
    }

    async fn resolve(
        &mut self,
        requests: Vec<SecretRequest>,
    ) -> wasmtime::Result<Vec<Result<wit_secrets::SecretValue, wit_secrets::SecretError>>> {
        self.enter_host_call()?;
        if requests.len() > self.limits.max_references {
            let detail = format!(
                "{} references in one call; at most {} are allowed",
                requests.len(),
                self.limits.max_references
            );
            return Ok(requests
                .iter()
                .map(|r| {
                    Err(to_wit_error(ResolveError::Invalid {
                        reference: r.to_string(),
                        detail: detail.clone(),
                    }))
                })
                .collect());
        }
        let results = match self.secrets.clone() {
            Some(secrets) => {
                let (deadline, limit) = (self.wall_deadline(), self.limits.render_wall_timeout);
                Self::within_wall_deadline(
                    deadline,
                    limit,
                    secrets.resolve(&requests, &mut self.budget),
                )
                .await?
            }
            None => requests
                .iter()
                .map(|r| {
                    Err(ResolveError::NotFound {
                        reference: r.to_string(),
                    })
                })
                .collect(),
        };
        Ok(results
            .into_iter()
            .map(|result| match result {
                Ok(value) => Ok(self.deliver(value)),
                Err(e) => Err(to_wit_error(e)),
            })
            .collect())
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

    /// A guest's text for a log or error line: delivered values masked,
    /// control characters escaped.
    fn sanitize(&self, text: &str) -> String {
        escape_untrusted(&self.mask(text)).into_owned()
    }
}

/// Why a render past its wall-clock deadline was stopped.
fn wall_deadline_passed(limit: Duration) -> String {
    format!(
        "the render took longer than its {} ms wall-clock deadline",
        limit.as_millis()
    )
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
    ) -> wasmtime::Result<Result<wit_secrets::SecretValue, wit_secrets::SecretError>> {
        let mut results = self.resolve(vec![from_wit_ref(reference)]).await?;
        Ok(results
            .pop()
            .unwrap_or_else(|| Err(wit_secrets::SecretError::NotFound(String::new()))))
    }

    async fn get_many(
        &mut self,
        references: Vec<wit_secrets::SecretRef>,
    ) -> wasmtime::Result<Vec<Result<wit_secrets::SecretValue, wit_secrets::SecretError>>> {
        self.resolve(references.into_iter().map(from_wit_ref).collect())
            .await
    }

    async fn invalidate(&mut self, reference: wit_secrets::SecretRef) -> wasmtime::Result<bool> {
        self.enter_host_call()?;
        let Some(secrets) = self.secrets.clone() else {
            return Ok(false);
        };
        let request = from_wit_ref(reference);
        let (deadline, limit) = (self.wall_deadline(), self.limits.render_wall_timeout);
        let done = Self::within_wall_deadline(
            deadline,
            limit,
            secrets.invalidate_within(&request, &mut self.budget),
        )
        .await?;
        Ok(done.answer_for_guest())
    }

    async fn list(&mut self) -> wasmtime::Result<Vec<String>> {
        self.enter_host_call()?;
        let Some(secrets) = self.secrets.clone() else {
            return Ok(Vec::new());
        };
        let (deadline, limit) = (self.wall_deadline(), self.limits.render_wall_timeout);
        let listed =
            Self::within_wall_deadline(deadline, limit, secrets.list_within(&mut self.budget))
                .await?;
        Ok(listed.unwrap_or_else(|e| {
            tracing::warn!(connector = %self.connector, "listing secrets failed: {e}");
            Vec::new()
        }))
    }
}

impl wit_log::Host for HostState {
    async fn log(&mut self, level: wit_log::Level, message: String) -> wasmtime::Result<()> {
        self.enter_host_call()?;
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
            return Ok(());
        }
        let mut message = self.sanitize(&message);
        if message.len() > self.limits.max_log_bytes {
            let length = message.len();
            let mut cut = self.limits.max_log_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(&format!("… (cut; {length} bytes)"));
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
        Ok(())
    }
}

impl wit_types::Host for HostState {}

/// One compiled component, shared by every connector id that loads the
/// same bytes.
struct Compiled {
    pre: ConnectorPre<HostState>,
}

/// Compiled components by content hash, held as long as a connector uses them.
type CompiledByHash = Mutex<HashMap<[u8; 32], Weak<Compiled>>>;

/// The idle warm instances of every loaded connector, so that an
/// instantiation that finds the instance pool full can take their slots.
#[derive(Default)]
struct IdleInstances {
    pools: Mutex<Vec<Weak<Mutex<Vec<Warm>>>>>,
}

impl IdleInstances {
    fn register(&self, pool: &Arc<Mutex<Vec<Warm>>>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Drops every idle warm instance; returns how many there were.
    fn reclaim(&self) -> usize {
        let pools: Vec<Arc<Mutex<Vec<Warm>>>> = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut reclaimed = 0;
        for pool in pools {
            // Taken out under the lock, dropped (slots freed) after it.
            let idle = std::mem::take(&mut *pool.lock().unwrap_or_else(|p| p.into_inner()));
            reclaimed += idle.len();
        }
        reclaimed
    }
}

/// A wasmtime engine and a linker with the keyward imports.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: Arc<SandboxConfig>,
    compiled: Arc<CompiledByHash>,
    idle: Arc<IdleInstances>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

/// A connector ready to instantiate: a shared compiled component and this
/// connector's own idle warm instances (never shared between connector
/// ids: a warm instance's memory is its connector's).
#[derive(Clone)]
pub struct LoadedConnector {
    engine: Engine,
    compiled: Arc<Compiled>,
    warm: Arc<Mutex<Vec<Warm>>>,
    idle: Arc<IdleInstances>,
    limits: Arc<SandboxConfig>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for LoadedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConnector").finish_non_exhaustive()
    }
}

impl Sandbox {
    /// An engine configured for connectors: epoch interruption for the
    /// deadlines, the default 512 KiB wasm stack (deep recursion traps).
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
            compiled: Arc::default(),
            idle: Arc::default(),
            _ticker: Arc::new(ticker),
        })
    }

    /// Reads a component file (a regular file within the size limit) and
    /// loads it.
    pub fn load(&self, path: &Path) -> Result<LoadedConnector, String> {
        let bytes = read_component(path, self.limits.max_component_bytes)?;
        self.load_bytes(&bytes)
    }

    /// Checks that bytes are a keyward connector and loads them, compiling
    /// only if no loaded connector has the same bytes.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<LoadedConnector, String> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        // Held while compiling, so that ids sharing a component that load
        // at once compile it once.
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let shared = match compiled.get(&hash).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(self.compile(bytes)?);
                compiled.retain(|_, c| c.strong_count() > 0);
                compiled.insert(hash, Arc::downgrade(&shared));
                shared
            }
        };
        drop(compiled);
        let warm = Arc::default();
        self.idle.register(&warm);
        Ok(LoadedConnector {
            engine: self.engine.clone(),
            compiled: shared,
            warm,
            idle: self.idle.clone(),
            limits: self.limits.clone(),
            _ticker: self._ticker.clone(),
        })
    }

    fn compile(&self, bytes: &[u8]) -> Result<Compiled, String> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("not a WebAssembly component: {}", first_line(&e)))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("not a keyward connector (imports do not match): {e:#}"))?;
        let pre = ConnectorPre::new(instance_pre)
            .map_err(|e| format!("not a keyward connector (exports do not match): {e:#}"))?;
        Ok(Compiled { pre })
    }

    /// How many distinct components are compiled and in use.
    pub fn compiled_components(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| c.strong_count() > 0)
            .count()
    }
}

/// A component file's bytes: only a regular file (a device such as
/// `/dev/zero` would be read forever, a FIFO would block the host), at most
/// `max_bytes` of it.
fn read_component(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;

    let too_large = |size: u64| {
        format!(
            "the component is {size} bytes; at most {max_bytes} are allowed \
             (sandbox.max_component_mb)"
        )
    };
    let not_regular = |metadata: &std::fs::Metadata| {
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            "a directory"
        } else {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                "a FIFO"
            } else if file_type.is_char_device() || file_type.is_block_device() {
                "a device"
            } else if file_type.is_socket() {
                "a socket"
            } else {
                "not a regular file"
            }
        };
        format!("the component must be a regular file; this is {kind}")
    };
    let unreadable = |e: std::io::Error| format!("cannot read the component: {e}");
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(not_regular(&metadata));
    }
    if metadata.len() > max_bytes {
        return Err(too_large(metadata.len()));
    }
    // Non-blocking, so that a FIFO swapped in after the check above cannot
    // block the open; the opened file is checked again.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(not_regular(&metadata));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl LoadedConnector {
    /// A fresh store: memory and table limits, and the deadlines checked
    /// on every epoch tick.
    fn store(
        &self,
        connector: Arc<str>,
        secrets: Option<Arc<ConnectorSecrets>>,
    ) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(connector, secrets, self.limits.clone()),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| match context.data().over_deadline() {
            Some(why) => Err(wasmtime::Error::msg(why)),
            None => Ok(UpdateDeadline::Continue(1)),
        });
        store
    }

    /// A new instance in a new store. If the instance pool is full, idle
    /// warm instances (of any connector) are dropped to free their slots
    /// and it is tried once more.
    async fn instantiate(
        &self,
        connector: Arc<str>,
        secrets: Option<Arc<ConnectorSecrets>>,
    ) -> Result<(Store<HostState>, Connector), RunError> {
        let mut store = self.store(connector.clone(), secrets.clone());
        match self.compiled.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok((store, instance)),
            Err(e) if e.is::<PoolConcurrencyLimitError>() && self.idle.reclaim() > 0 => {
                drop(store);
                let mut store = self.store(connector, secrets);
                let instance = self
                    .compiled
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(trap)?;
                Ok((store, instance))
            }
            Err(e) => Err(trap(e)),
        }
    }

    /// Calls the connector's `describe`.
    pub async fn describe(&self) -> Result<ConnectorInfo, RunError> {
        let (mut store, instance) = self.instantiate("describe".into(), None).await?;
        let info = instance
            .call_describe(&mut store)
            .await
            .map_err(|e| run_error(&store, e))?;
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

    /// Renders in a fresh instance (or an idle warm one) with the
    /// connector's secrets view.
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
            None => self.instantiate(connector, Some(secrets)).await?,
        };
        let fields: Vec<wit_types::FieldValue> = fields
            .iter()
            .map(|(name, template)| wit_types::FieldValue {
                name: name.clone(),
                template: template.clone(),
            })
            .collect();
        let called = instance.call_render(&mut store, &fields).await;
        store.data_mut().finish_render();
        // On a trap the store is dropped here: a trapped instance is never reused.
        let result = called.map_err(|e| run_error(&store, e))?;
        let state = store.data();
        let outcome = match result {
            Ok(values) => values
                .into_iter()
                .map(|v| {
                    if escape_untrusted(&v.name) != v.name.as_str() {
                        return Err(RunError::Render(RenderError {
                            field: None,
                            column: None,
                            message: format!(
                                "output name `{}` contains a control character",
                                state.sanitize(&v.name)
                            ),
                        }));
                    }
                    Ok(RenderedValue {
                        name: v.name,
                        value: Zeroizing::new(v.value),
                        sensitive: v.sensitive,
                    })
                })
                .collect(),
            Err(e) => Err(RunError::Render(RenderError {
                // A connector could echo a value into its error, or write
                // a fake host line: mask and escape both parts.
                field: e.field.map(|field| state.sanitize(&field)),
                column: e.column,
                message: state.sanitize(&e.message),
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
            let (store, instance) = self.instantiate("prewarm".into(), None).await?;
            self.put_warm(Warm { store, instance });
        }
        Ok(self.warm.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// Idle warm instances kept for this connector.
    pub fn idle_instances(&self) -> usize {
        self.warm.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// An instance kept between renders in warm mode.
struct Warm {
    store: Store<HostState>,
    instance: Connector,
}

/// A trap, reported as the bound it hit where the store knows it.
fn run_error(store: &Store<HostState>, e: wasmtime::Error) -> RunError {
    let state = store.data();
    if state.limiter.memory_refused {
        return RunError::Trap(format!(
            "the connector exceeded its memory limit of {} MiB (sandbox.max_memory_mb)",
            state.limits.max_memory_bytes >> 20
        ));
    }
    trap(e)
}

/// The cause of a trap in one line: the deadline, a stack overflow, an
/// `unreachable` (a guest panic or failed allocation), without the guest
/// backtrace that wasmtime puts first.
fn trap(e: wasmtime::Error) -> RunError {
    let cause = e.root_cause().to_string();
    let line = cause.lines().next().unwrap_or("unknown trap");
    RunError::Trap(escape_untrusted(line).into_owned())
}
