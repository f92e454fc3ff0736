//! The wasmtime side: the engine and its instance pool, compiling
//! connector components, and running them with nothing but keyward's
//! imports ([`interface`]) and a capability-less WASI.
//!
//! Each distinct component (by content hash) is compiled once into an
//! `InstancePre`-backed `ConnectorPre`, however many connector ids use it.
//! A render runs in a fresh store, or in fast mode's warm instance, which
//! never holds a secret value: the host expands the fields into sealed text
//! before the connector runs and evaluates its outputs after. The guest is
//! called synchronously where it can be ([`sync_path`]), on a fiber where
//! it calls an import that may wait.

mod deterministic;
mod interface;
pub mod limits;
mod plan;
mod sync_path;
mod verdicts;

pub use deterministic::RecordedWasiReads;
use interface::{Expansion, from_wit_part, not_plannable};
pub use interface::{KeywardCtx, KeywardView, add_to_linker};
pub(crate) use interface::{arm_store, bindings, classify, composed, one_line};
pub use plan::PlanCounts;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::{ConnectorInfo, FieldSpec, RenderedValue, RunError, Trap, TrapKind};
use crate::render::PreparedFields;
use crate::resolve::ConnectorSecrets;
use bindings::keyward::connector::types as wit_types;
use bindings::{Connector, ConnectorPre};
use deterministic::{WasiReads, make_deterministic};
use limits::{ConnectorLimits, EpochTicker, ExecutionMode, SandboxConfig};
use plan::{Known, Plan, PlanCounters, Plans, Recorded};

/// The most random bytes a guest gets in one WASI call; more traps.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Bytes of each pooled memory and table slot that stay mapped between
/// instances and are reset in place (see `Sandbox::new`).
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Core module instances one connector instance may hold in the pool. A
/// Rust connector has 3 or 4; a Python one (componentize-py) 14, a
/// JavaScript one (componentize-js) fewer. Unused entries cost only
/// address space.
const CORE_INSTANCES_PER_SLOT: u32 = 16;

/// Linear memories one connector instance may hold in the pool.
const MEMORIES_PER_SLOT: u32 = 2;

/// Tables one connector instance may hold in the pool.
const TABLES_PER_SLOT: u32 = 16;

/// Prepared fields by the (field, template) pairs they were prepared from.
type PreparedByFields =
    RwLock<HashMap<Vec<(String, String)>, Arc<Prepared>, foldhash::fast::RandomState>>;

/// A prepared field set and what render plans know of it.
#[derive(Debug)]
struct Prepared {
    fields: Arc<PreparedFields>,
    /// The plan of its key when every value is sealed (the key is then the
    /// prepared fields' alone), once a render found it: a render with every value
    /// sealed is served from it without building the connector's view of
    /// the fields or looking the key up. Weak: the plans' LRU decides how
    /// long a plan lives.
    sealed_plan: RwLock<Weak<Plan>>,
}

impl Prepared {
    fn sealed_plan(&self) -> Option<Arc<Plan>> {
        self.sealed_plan
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
    }

    fn link(&self, plan: &Arc<Plan>) {
        *self.sealed_plan.write().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(plan);
    }
}

/// Prepared field sets kept per connector (a platform renders the same
/// few again and again); past it, the cache starts over.
const MAX_PREPARED_FIELD_SETS: usize = 64;

/// Per-store state: WASI with no capabilities and keyward's ctx (which
/// holds the store's limits).
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    keyward: KeywardCtx,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A recording render's WASI: seeded from its plan's key, reads counted.
#[derive(Clone)]
struct Recording {
    seed: u64,
    reads: Arc<WasiReads>,
}

impl HostState {
    fn new(connector: Arc<str>, limits: Arc<SandboxConfig>, recording: Option<Recording>) -> Self {
        // No preopens, no environment, no arguments, no network, no
        // inherited stdio (output goes nowhere).
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            // wasmtime-wasi builds the buffer on the host before copying
            // it in: keep that small (its default is 64 MiB).
            .max_random_size(MAX_RANDOM_BYTES);
        if let Some(recording) = recording {
            make_deterministic(&mut wasi, recording.seed, recording.reads);
        }
        let wasi = wasi.build();
        Self {
            wasi,
            table: ResourceTable::new(),
            keyward: KeywardCtx::new(connector, limits),
        }
    }

    fn keyward(&mut self) -> &mut KeywardCtx {
        &mut self.keyward
    }
}

/// One compiled component, shared by every connector id that loads the
/// same bytes.
struct Compiled {
    /// Instances on the async path: every import, on a fiber.
    pre: ConnectorPre<HostState>,
    /// Instances on the synchronous path; `None` if the component's
    /// imports could not be given stubs (it then always runs async).
    sync_pre: Option<sync_path::bindings::ConnectorPre<HostState>>,
}

/// Renders by the way they ran, over every connector of a sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderPaths {
    /// Finished on the synchronous path.
    pub sync: u64,
    /// Began on the synchronous path, called an import that may wait, and
    /// ran again on the async path.
    pub rerun: u64,
    /// Ran on the async path from the start (a component that cannot take
    /// the synchronous path, or a connector that recently needed a rerun).
    pub async_only: u64,
}

#[derive(Debug, Default)]
struct RenderPathCounters {
    sync: AtomicU64,
    rerun: AtomicU64,
    async_only: AtomicU64,
}

impl RenderPathCounters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RenderPaths {
        RenderPaths {
            sync: self.sync.load(Ordering::Relaxed),
            rerun: self.rerun.load(Ordering::Relaxed),
            async_only: self.async_only.load(Ordering::Relaxed),
        }
    }
}

/// After a rerun, this many of the connector's renders go straight to the
/// async path before the synchronous one is tried again: a connector that
/// needs an async import on every render (one that prints, say) then pays
/// for a wasted attempt once in this many renders, not on each.
const ASYNC_TURNS_AFTER_RERUN: u32 = 100;

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
    sync_linker: Arc<Linker<HostState>>,
    paths: Arc<RenderPathCounters>,
    plan_counts: Arc<PlanCounters>,
    wasi_reads: Arc<WasiReads>,
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
    info: Arc<OnceCell<Arc<ConnectorInfo>>>,
    prepared: Arc<PreparedByFields>,
    warm: Arc<Mutex<Vec<Warm>>>,
    idle: Arc<IdleInstances>,
    limits: Arc<SandboxConfig>,
    paths: Arc<RenderPathCounters>,
    /// This connector's render plans (dropped with it on a reload that
    /// changes its component or limits).
    plans: Arc<Plans>,
    plan_counts: Arc<PlanCounters>,
    wasi_reads: Arc<WasiReads>,
    /// Renders left that go straight to the async path (after a rerun).
    async_turns: Arc<AtomicU32>,
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
    pub fn new(limits: SandboxConfig) -> Result<Self, SandboxError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // For profiling: `perf report` can then name JIT-compiled guest code.
        if std::env::var_os("KEYWARD_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(slots) = limits.pooled_instances {
            // A slot is one component instance; the core instances,
            // memories and tables inside it are pooled per slot too, sized
            // for the largest connectors there are (see the constants).
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_SLOT))
                .total_memories(slots.saturating_mul(MEMORIES_PER_SLOT))
                .total_tables(slots.saturating_mul(TABLES_PER_SLOT))
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
            let dir = std::path::absolute(dir).map_err(|e| SandboxError::CompileCache {
                dir: dir.clone(),
                message: e.to_string(),
            })?;
            let mut cache = CacheConfig::new();
            cache.with_directory(&dir);
            let cache = Cache::new(cache).map_err(|e| SandboxError::CompileCache {
                dir: dir.clone(),
                message: format!("{e:#}"),
            })?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(&engine).map_err(SandboxError::EpochThread)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(SandboxError::link("WASI"))?;
        add_to_linker(&mut linker, |state: &mut HostState| {
            KeywardView::new(&mut state.keyward)
        })
        .map_err(SandboxError::link("keyward's imports"))?;
        let sync_linker = sync_path::base_linker(&engine, |state: &mut HostState| {
            KeywardView::new(&mut state.keyward)
        })
        .map_err(SandboxError::link("keyward's imports"))?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            sync_linker: Arc::new(sync_linker),
            paths: Arc::default(),
            plan_counts: Arc::default(),
            wasi_reads: Arc::default(),
            limits: Arc::new(limits),
            compiled: Arc::default(),
            idle: Arc::default(),
            _ticker: Arc::new(ticker),
        })
    }

    /// Reads a component file (a regular file within the size limit) and
    /// loads it.
    pub fn load(&self, path: &Path) -> Result<LoadedConnector, LoadError> {
        let bytes = read_component(path, self.limits.max_component_bytes)?;
        self.load_bytes(&bytes)
    }

    /// [`Sandbox::load`] with a connector's own bounds in place of the
    /// sandbox's where it sets them.
    pub fn load_limited(
        &self,
        path: &Path,
        connector: &str,
        own: &ConnectorLimits,
    ) -> Result<LoadedConnector, LoadError> {
        let mut loaded = self.load(path)?;
        if *own != ConnectorLimits::default() {
            loaded.limits = Arc::new(self.limits.for_connector(connector, own));
        }
        Ok(loaded)
    }

    /// Checks that bytes are a keyward connector and loads them, compiling
    /// only if no loaded connector has the same bytes.
    pub fn load_bytes(&self, bytes: &[u8]) -> Result<LoadedConnector, LoadError> {
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
            info: Arc::default(),
            prepared: Arc::default(),
            warm,
            idle: self.idle.clone(),
            limits: self.limits.clone(),
            paths: self.paths.clone(),
            plans: Arc::new(Plans::new(self.limits.render_plans)),
            plan_counts: self.plan_counts.clone(),
            wasi_reads: self.wasi_reads.clone(),
            async_turns: Arc::default(),
            _ticker: self._ticker.clone(),
        })
    }

    fn compile(&self, bytes: &[u8]) -> Result<Compiled, LoadError> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::NotAComponent(first_line(&e)))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let pre =
            ConnectorPre::new(instance_pre).map_err(|e| LoadError::Exports(format!("{e:#}")))?;
        let sync_pre = sync_path::instance_pre(&self.sync_linker, &self.engine, &component)
            .inspect_err(|e| {
                tracing::debug!("the component will run on the async path only: {e:#}");
            })
            .ok();
        Ok(Compiled { pre, sync_pre })
    }

    /// How renders ran since the sandbox started.
    pub fn render_paths(&self) -> RenderPaths {
        self.paths.snapshot()
    }

    /// How render plans served renders since the sandbox started.
    pub fn plan_counts(&self) -> PlanCounts {
        self.plan_counts.snapshot()
    }

    /// What recording renders read of WASI's clocks and random since the
    /// sandbox started (what a connector's language runtime asks for).
    pub fn recorded_wasi_reads(&self) -> RecordedWasiReads {
        self.wasi_reads.snapshot()
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
fn read_component(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    crate::operator_file::read_regular(
        path,
        max_bytes,
        "the component",
        Some("sandbox.max_component_mb"),
    )
    .map_err(LoadError::File)
}

/// Why a sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The compile cache directory could not be used.
    #[error("compile cache {}: {message}", dir.display())]
    CompileCache {
        /// The directory (`sandbox.compile_cache`).
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// wasmtime refused the engine's configuration.
    #[error("cannot start wasmtime: {0}")]
    Engine(String),
    /// The thread that ticks the deadlines could not start.
    #[error("cannot start the epoch thread: {0}")]
    EpochThread(std::io::Error),
    /// Imports could not be added to a linker.
    #[error("cannot link {what}: {message}")]
    Link {
        /// WASI or keyward's imports.
        what: &'static str,
        /// Why.
        message: String,
    },
}

impl SandboxError {
    fn link(what: &'static str) -> impl FnOnce(wasmtime::Error) -> Self {
        move |e| SandboxError::Link {
            what,
            message: format!("{e:#}"),
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file: missing, not a regular file, or past
    /// `sandbox.max_component_mb`.
    #[error("{0}")]
    File(String),
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but its imports are not keyward's world.
    #[error("not a keyward connector (imports do not match): {0}")]
    Imports(String),
    /// A component, but its exports are not keyward's world.
    #[error("not a keyward connector (exports do not match): {0}")]
    Exports(String),
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
    fn store(&self, connector: Arc<str>, recording: Option<Recording>) -> Store<HostState> {
        let state = HostState::new(connector, self.limits.clone(), recording);
        let mut store = Store::new(&self.engine, state);
        arm_store(&mut store, HostState::keyward);
        store
    }

    /// A new instance in a new store, on the synchronous path if `sync`
    /// and the component can take it. If the instance pool is full, idle
    /// warm instances (of any connector) are dropped to free their slots
    /// and it is tried once more.
    async fn instantiate(
        &self,
        connector: Arc<str>,
        mut sync: bool,
        recording: Option<Recording>,
    ) -> Result<Warm, RunError> {
        let mut reclaimed = false;
        loop {
            let mut store = self.store(connector.clone(), recording.clone());
            let instance = match (&self.compiled.sync_pre, sync) {
                (Some(pre), true) => pre.instantiate(&mut store).map(Instance::Sync),
                _ => (self.compiled.pre.instantiate_async(&mut store).await).map(Instance::Async),
            };
            match instance {
                Ok(instance) => return Ok(Warm { store, instance }),
                Err(e)
                    if !reclaimed
                        && e.is::<PoolConcurrencyLimitError>()
                        && self.idle.reclaim() > 0 =>
                {
                    reclaimed = true;
                }
                // A start function that calls WASI: this one runs async.
                Err(e) if sync && sync_path::needs_async(&e) => sync = false,
                Err(e) => return Err(run_error(&store, e)),
            }
        }
    }

    /// The connector's declaration: its `describe`, called once in a fresh
    /// instance and kept.
    pub async fn describe(&self) -> Result<ConnectorInfo, RunError> {
        self.info().await.map(|info| (*info).clone())
    }

    async fn info(&self) -> Result<Arc<ConnectorInfo>, RunError> {
        self.info
            .get_or_try_init(|| async {
                let Warm {
                    mut store,
                    instance: Instance::Async(instance),
                } = self.instantiate("describe".into(), false, None).await?
                else {
                    return Err(RunError::Trap(Trap::new(
                        TrapKind::Host,
                        "describe needs an async instance",
                    )));
                };
                let info = instance
                    .call_describe(&mut store)
                    .await
                    .map_err(|e| run_error(&store, e))?;
                Ok(Arc::new(connector_info(info)))
            })
            .await
            .cloned()
    }

    /// The fields checked against the declaration and parsed, kept per
    /// field set.
    async fn prepare(&self, fields: &[(String, String)]) -> Result<Arc<Prepared>, RunError> {
        if let Some(prepared) = self
            .prepared
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(fields)
        {
            return Ok(prepared.clone());
        }
        let info = self.info().await?;
        let prepared = Arc::new(Prepared {
            fields: Arc::new(PreparedFields::new(&info, fields)?),
            sealed_plan: RwLock::new(Weak::new()),
        });
        let mut kept = self.prepared.write().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= MAX_PREPARED_FIELD_SETS {
            kept.clear();
        }
        kept.insert(fields.to_vec(), prepared.clone());
        Ok(prepared)
    }

    /// Renders under the connector's secrets view: the host expands the
    /// fields (policy, cache, sealing); then, if a plan is known for what
    /// the connector would see, the host evaluates it and the connector does
    /// not run; else the connector composes its outputs in a fresh instance
    /// (or an idle warm one) and the host evaluates them, recording the
    /// answer as a plan where it can.
    pub async fn render(
        &self,
        secrets: Arc<ConnectorSecrets>,
        fields: &[(String, String)],
    ) -> Result<Vec<RenderedValue>, RunError> {
        let prepared = self.prepare(fields).await?;
        let planned = self.plans.enabled()
            && !self.info().await?.run_every_render
            && !secrets.policy().grants_any_reveal();
        // The host's work first, in a ctx of no instance: a planned render
        // needs none.
        let mut ctx = KeywardCtx::rendering(secrets.clone(), self.limits.clone());
        let known = if planned {
            prepared.sealed_plan()
        } else {
            None
        };
        let expanded = match known {
            Some(plan) => ctx.expand_known(prepared.fields.clone(), plan).await,
            None => ctx
                .expand(prepared.fields.clone())
                .await
                .map(|fields| fields.map(Expansion::Fields)),
        };
        let expanded = match expanded {
            Ok(Ok(expanded)) => Ok(expanded),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(RunError::Trap(classify(&e, &ctx))),
        };
        let fields = match expanded {
            Ok(Expansion::Fields(fields)) => fields,
            Ok(Expansion::Sealed(plan)) => {
                self.plans.touch(&plan);
                return self.replay(ctx, &plan);
            }
            Err(e) => {
                ctx.finish_render();
                ctx.end_render();
                return Err(e);
            }
        };
        if !planned {
            self.plan_counts.skipped();
            return self.run_expanded(&secrets, ctx, fields, None).await;
        }
        let hash = self.plans.hash(&fields);
        match self.plans.get(hash, &fields) {
            Some(Known::Plan(plan)) => {
                if ctx.all_sealed() {
                    prepared.link(&plan);
                }
                drop(fields);
                self.replay(ctx, &plan)
            }
            Some(Known::RunsEveryTime) => {
                self.plan_counts.skipped();
                self.run_expanded(&secrets, ctx, fields, None).await
            }
            None => self.run_expanded(&secrets, ctx, fields, Some(hash)).await,
        }
    }

    /// Serves a render expanded in `ctx` from `plan`: its log lines written
    /// again, its outputs evaluated with this render's values (or its
    /// render error returned). The connector does not run.
    fn replay(&self, mut ctx: KeywardCtx, plan: &Plan) -> Result<Vec<RenderedValue>, RunError> {
        self.plan_counts.hit();
        ctx.write_replayed_lines(&plan.logs);
        let outcome = match &plan.recorded {
            Recorded::Outputs(outputs) => ctx.planned_outputs(outputs, &plan.verdicts),
            Recorded::Failed(e) => Err(RunError::Render(e.clone())),
        };
        ctx.finish_render();
        ctx.end_render();
        outcome
    }

    /// Runs the connector on a render expanded in `ctx` (which it takes
    /// over). With `record` (the key's hash), on a fresh instance with
    /// deterministic WASI, recording its answer as a plan; if the connector
    /// calls an import that rules a plan out, the render runs again
    /// unrecorded, and its key is remembered as one that runs every time.
    async fn run_expanded(
        &self,
        secrets: &Arc<ConnectorSecrets>,
        mut ctx: KeywardCtx,
        mut fields: Vec<wit_types::Field>,
        record: Option<u64>,
    ) -> Result<Vec<RenderedValue>, RunError> {
        let recording = record.map(|_| Recording {
            seed: plan::seed_of(&fields),
            reads: self.wasi_reads.clone(),
        });
        let sync = self.compiled.sync_pre.is_some() && !self.take_async_turn();
        let started = match &recording {
            Some(recording) => {
                self.instantiate(secrets.connector_id(), sync, Some(recording.clone()))
                    .await
            }
            None => self.start(secrets, sync).await,
        };
        let mut run = match started {
            Ok(run) => run,
            Err(e) => {
                ctx.finish_render();
                ctx.end_render();
                return Err(e);
            }
        };
        let to = &mut run.store.data_mut().keyward;
        ctx.hand_over_expanded(to, &mut fields);
        to.set_recording(recording.is_some());
        let mut called = self
            .call_render(secrets, &mut run, &fields, &recording)
            .await;
        let mut recorded = recording.is_some();
        if matches!(called, Err(CallFailed::NotPlannable)) {
            // What the connector did is not a function of its fields: it
            // runs as it always did, with the real clocks and random.
            recorded = false;
            if let Some(hash) = record {
                self.plans.insert(hash, &fields, Known::RunsEveryTime);
            }
            self.plan_counts.skipped();
            called = match self.start(secrets, sync).await {
                Ok(mut rerun) => {
                    let to = &mut rerun.store.data_mut().keyward;
                    run.store
                        .data_mut()
                        .keyward
                        .hand_over_expanded(to, &mut fields);
                    to.set_recording(false);
                    // The recording instance is dropped.
                    run = rerun;
                    self.call_render(secrets, &mut run, &fields, &None).await
                }
                Err(e) => Err(CallFailed::Run(e)),
            };
        }
        let ctx = &run.store.data().keyward;
        let outcome = match called {
            Ok((Ok(outputs), logs)) => {
                let outputs = composed(outputs);
                let evaluated = ctx.outputs(&outputs);
                if let (true, Some(hash)) = (recorded, record) {
                    self.keep_plan(hash, &fields, Recorded::Outputs(outputs), logs);
                }
                evaluated
            }
            Ok((Err(e), logs)) => {
                let e = ctx.render_error(e);
                if let (true, Some(hash)) = (recorded, record) {
                    self.keep_plan(hash, &fields, Recorded::Failed(e.clone()), logs);
                }
                Err(RunError::Render(e))
            }
            Err(CallFailed::Run(e)) => {
                if recorded {
                    // A trapped render is not planned; the next one tries again.
                    self.plan_counts.skipped();
                }
                Err(e)
            }
            Err(CallFailed::NotPlannable) => Err(RunError::Trap(Trap::new(
                TrapKind::Host,
                "an unrecorded render was refused an import as if recorded",
            ))),
        };
        drop(fields);
        let ctx = &mut run.store.data_mut().keyward;
        ctx.finish_render();
        ctx.end_render();
        // A trapped instance is never reused; nor is one that revealed
        // more values than it can keep masks for, nor a recording one
        // (planned renders never share an instance).
        let trapped = matches!(outcome, Err(RunError::Trap(_)));
        if self.limits.mode == ExecutionMode::Warm
            && !trapped
            && !recorded
            && !ctx.revealed().is_full()
        {
            self.put_warm(run);
        }
        outcome
    }

    fn keep_plan(
        &self,
        hash: u64,
        fields: &[wit_types::Field],
        recorded: Recorded,
        logs: Vec<(tracing::Level, String)>,
    ) {
        let plan = Arc::new(Plan::new(recorded, logs));
        self.plans.insert(hash, fields, Known::Plan(plan));
        self.plan_counts.recorded();
    }

    /// Calls `render` in `run`. A synchronous attempt that reaches an
    /// import that may wait ends there; the render is handed, as it was
    /// expanded, to an instance on the async path (a recording one if
    /// `recording`), which replaces `run`. Returns the connector's answer
    /// and the log lines it wrote.
    async fn call_render(
        &self,
        secrets: &ConnectorSecrets,
        run: &mut Warm,
        fields: &[wit_types::Field],
        recording: &Option<Recording>,
    ) -> Result<(RenderResult, Vec<(tracing::Level, String)>), CallFailed> {
        if let Instance::Sync(instance) = &run.instance {
            let store = &mut run.store;
            store.data_mut().keyward.hold_effects();
            let called = instance.call_render(&mut *store, fields);
            let ctx = &mut store.data_mut().keyward;
            match called {
                Err(e) if sync_path::needs_async(&e) => {
                    ctx.discard_effects();
                    RenderPathCounters::count(&self.paths.rerun);
                    self.async_turns
                        .store(ASYNC_TURNS_AFTER_RERUN, Ordering::Relaxed);
                    let rerun = match recording {
                        Some(recording) => {
                            self.instantiate(secrets.connector_id(), false, Some(recording.clone()))
                                .await
                        }
                        None => self.start(secrets, false).await,
                    };
                    let mut rerun = rerun.map_err(CallFailed::Run)?;
                    let from = &mut run.store.data_mut().keyward;
                    from.hand_over_render(&mut rerun.store.data_mut().keyward);
                    // The attempted instance trapped: it is dropped.
                    *run = rerun;
                }
                Err(e) if not_plannable(&e) => {
                    ctx.discard_effects();
                    return Err(CallFailed::NotPlannable);
                }
                called => {
                    let logs = ctx.release_effects();
                    RenderPathCounters::count(&self.paths.sync);
                    return match called {
                        Ok(answer) => Ok((answer, logs)),
                        Err(e) => Err(CallFailed::Run(run_error(store, e))),
                    };
                }
            }
        } else {
            RenderPathCounters::count(&self.paths.async_only);
        }
        if recording.is_some() {
            // Kept with the plan, or dropped if the render cannot be planned.
            run.store.data_mut().keyward.hold_effects();
        }
        let Instance::Async(instance) = &run.instance else {
            return Err(CallFailed::Run(RunError::Trap(Trap::new(
                TrapKind::Host,
                "a synchronous instance was handed a render to run again",
            ))));
        };
        let called = instance.call_render(&mut run.store, fields).await;
        let ctx = &mut run.store.data_mut().keyward;
        match called {
            Err(e) if not_plannable(&e) => {
                ctx.discard_effects();
                Err(CallFailed::NotPlannable)
            }
            Ok(answer) => Ok((answer, ctx.release_effects())),
            Err(e) => {
                ctx.release_effects();
                Err(CallFailed::Run(run_error(&run.store, e)))
            }
        }
    }

    /// Whether this render goes straight to the async path (a recent
    /// render of this connector needed a rerun); takes one such turn.
    fn take_async_turn(&self) -> bool {
        self.async_turns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |turns| {
                turns.checked_sub(1)
            })
            .is_ok()
    }

    /// An instance for a render on the given path: an idle warm one (its
    /// deadline reset), else a new one.
    async fn start(&self, secrets: &ConnectorSecrets, sync: bool) -> Result<Warm, RunError> {
        match self.take_warm(secrets, sync) {
            Some(mut warm) => {
                warm.store.set_epoch_deadline(1);
                Ok(warm)
            }
            None => self.instantiate(secrets.connector_id(), sync, None).await,
        }
    }

    /// An idle warm instance on the given path, unless it revealed a
    /// secret the current policy no longer lets it reveal (then it is
    /// dropped).
    fn take_warm(&self, secrets: &ConnectorSecrets, sync: bool) -> Option<Warm> {
        let mut pool = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = pool.iter().rposition(|warm| warm.is_sync() == sync) {
            let warm = pool.swap_remove(i);
            if warm
                .store
                .data()
                .keyward
                .revealed()
                .still_granted(secrets.policy())
            {
                return Some(warm);
            }
        }
        None
    }

    /// Drops the idle warm instances that revealed a secret `secrets`'
    /// policy no longer lets the connector reveal (after a policy swap).
    pub fn discard_revoked(&self, secrets: &ConnectorSecrets) -> usize {
        let mut pool = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        let before = pool.len();
        pool.retain(|warm| {
            warm.store
                .data()
                .keyward
                .revealed()
                .still_granted(secrets.policy())
        });
        before - pool.len()
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
        let sync = self.compiled.sync_pre.is_some();
        while self.warm.lock().unwrap_or_else(|p| p.into_inner()).len() < count {
            let warm = self.instantiate("prewarm".into(), sync, None).await?;
            self.put_warm(warm);
        }
        Ok(self.warm.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// Idle warm instances kept for this connector.
    pub fn idle_instances(&self) -> usize {
        self.warm.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// An instance and its store; kept between renders in warm mode.
struct Warm {
    store: Store<HostState>,
    instance: Instance,
}

impl Warm {
    fn is_sync(&self) -> bool {
        matches!(self.instance, Instance::Sync(_))
    }
}

/// A connector instance, on one of the two paths.
enum Instance {
    Sync(sync_path::bindings::Connector),
    Async(Connector),
}

/// What the `render` export returns.
type RenderResult = Result<Vec<wit_types::Output>, wit_types::RenderError>;

/// How a call of `render` ended without the connector's answer.
enum CallFailed {
    /// A recording render called an import that rules a plan out.
    NotPlannable,
    /// It failed (a trap, or no instance could be had).
    Run(RunError),
}

/// A connector's declaration as its `describe` returned it.
pub(crate) fn connector_info(info: wit_types::ConnectorInfo) -> ConnectorInfo {
    ConnectorInfo {
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
                destination: f.destination.map(from_wit_part),
            })
            .collect(),
        run_every_render: info.run_every_render,
    }
}

/// A trap, reported as the bound it hit where the store knows it.
fn run_error(store: &Store<HostState>, e: wasmtime::Error) -> RunError {
    RunError::Trap(classify(&e, &store.data().keyward))
}
