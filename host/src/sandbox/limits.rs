//! How connectors run — what one render may consume, fresh or warm
//! instances, the compile cache — and the epoch ticker that enforces the
//! deadline.
//!
//! The CPU deadline counts everything a render costs the host except time
//! spent waiting on the backend (a slow Secrets Manager read is not the
//! connector's fault): guest code and the host's work in its calls alike.
//! The wall-clock deadline bounds the rest, waiting included.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// How often the engine's epoch advances: the deadline's resolution.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Per-render bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Time one render (or `describe`) may use, guest code and host calls
    /// included, waiting on the backend excepted.
    pub render_timeout: Duration,
    /// Wall-clock time one render may take, waiting on the backend included.
    pub render_wall_timeout: Duration,
    /// Host calls (`reveal`, `list`, `invalidate`, `log`) one render
    /// may make; one more traps.
    pub max_host_calls: usize,
    /// The largest component file loaded, in bytes.
    pub max_component_bytes: u64,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// The setting that gave `max_memory_bytes`, named when a connector
    /// passes it (`sandbox.max_memory_mb`, or a connector's own).
    pub memory_limit_setting: String,
    /// Distinct secret references the fields of one render may hold.
    pub max_references: usize,
    /// Log lines one render may write; the rest are dropped (and counted).
    pub max_log_lines: usize,
    /// Longest log line kept, in bytes; longer lines are cut before they
    /// are masked and escaped.
    pub max_log_bytes: usize,
    /// Outputs one render may return.
    pub max_outputs: usize,
    /// Bytes all the outputs of one render may take together, names
    /// included, with every sealed piece counted as `max_secret_bytes`
    /// (so whether a render fits never depends on a secret's length).
    /// Twice this is what one host call (or the render's return) may
    /// carry from the guest: wasmtime's hostcall fuel.
    pub max_output_bytes: usize,
    /// The longest secret value a render holds; a longer one is refused at
    /// expansion (Secrets Manager's own limit is 64 KiB).
    pub max_secret_bytes: usize,
    /// Longest render error (message and field each) kept, in bytes;
    /// longer ones are cut before they are masked and escaped.
    pub max_error_bytes: usize,
    /// Fresh instance per render, or warm instances reused between renders.
    pub mode: ExecutionMode,
    /// Idle warm instances kept per connector.
    pub warm_instances: usize,
    /// Render plans kept per connector (least recently used dropped
    /// first); 0 runs every connector on every render.
    pub render_plans: usize,
    /// With a number: wasmtime's pooling allocator with slots for that many
    /// live instances (memories, tables and fiber stacks reused, not mapped
    /// anew per render). Without: instances are allocated on demand.
    pub pooled_instances: Option<u32>,
    /// Where compiled components are cached (keyed by the component's hash
    /// and the engine's configuration), so a restart does not recompile.
    pub compile_cache: Option<PathBuf>,
}

/// A connector's own sandbox bounds (`[connectors.ID] max_memory_mb`,
/// `warm_instances`): an interpreted connector (Python, TypeScript) wants
/// more memory or fewer idle instances than a Rust one. A connector's
/// memory limit may lower the sandbox's, never raise it (the instance
/// pool's slots are sized by the sandbox's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectorLimits {
    /// Linear memory per instance, in bytes.
    pub max_memory_bytes: Option<usize>,
    /// Idle warm instances kept.
    pub warm_instances: Option<usize>,
}

impl SandboxConfig {
    /// These bounds with a connector's own in place where it sets them.
    pub fn for_connector(&self, connector: &str, own: &ConnectorLimits) -> SandboxConfig {
        let mut limits = self.clone();
        if let Some(bytes) = own.max_memory_bytes {
            limits.max_memory_bytes = bytes.min(limits.max_memory_bytes);
            limits.memory_limit_setting = format!("connectors.{connector}.max_memory_mb");
        }
        if let Some(count) = own.warm_instances {
            limits.warm_instances = count;
        }
        limits
    }
}

/// How renders get an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionMode {
    /// A new instance for every render: nothing survives between renders.
    #[default]
    Fresh,
    /// Instances are kept and reused (never after a trap): faster, but a
    /// connector's memory survives from one render to its next.
    Warm,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            render_timeout: Duration::from_millis(100),
            render_wall_timeout: Duration::from_secs(30),
            max_host_calls: 1000,
            max_component_bytes: 64 << 20,
            max_memory_bytes: 64 << 20,
            memory_limit_setting: "sandbox.max_memory_mb".into(),
            max_references: 256,
            max_log_lines: 100,
            max_log_bytes: 4096,
            max_outputs: 64,
            max_output_bytes: 4 << 20,
            max_secret_bytes: 64 << 10,
            max_error_bytes: 4096,
            mode: ExecutionMode::Fresh,
            warm_instances: 16,
            render_plans: 256,
            pooled_instances: None,
            compile_cache: None,
        }
    }
}

impl SandboxConfig {
    /// wasmtime's hostcall fuel: about the host bytes one call from the
    /// guest (or the render's return) may make the host allocate while
    /// lifting its arguments. Lifted structures take more room on the host
    /// than their text, hence the margin over `max_output_bytes`.
    pub fn hostcall_fuel(&self) -> usize {
        self.max_output_bytes.saturating_mul(2)
    }
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, thread_stop) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("keyward-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
