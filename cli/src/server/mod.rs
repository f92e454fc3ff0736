//! `keyward serve`: keyward as a long-lived local HTTP service (HTTP/1.1
//! over a Unix socket and/or a loopback TCP port), so that a platform in
//! any language renders connectors from one warm cache.
//!
//! - [`auth`]: the two tokens and the forwarding guard;
//! - [`api`]: the `/v1` routes, JSON in and out, one error shape;
//! - [`metrics`]: `/metrics` in Prometheus text format.
//!
//! Limits: connections at once (more are answered 503 and closed), body
//! size, header size and header read time, a deadline per request, renders
//! per connector at once. SIGHUP (or `POST /v1/reload`) swaps in the
//! configuration file anew, keeping the old one if the new one is bad;
//! SIGTERM stops accepting, lets requests in flight finish, and exits 0.

pub mod admission;
pub mod api;
pub mod auth;
pub mod metrics;
pub mod settings;
pub mod tenants;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use keyward_host::Keyward;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use admission::{Admission, Full, WriteTimeout};
use api::{ApiError, Body, json_response};
use auth::Tokens;
use metrics::Metrics;
use settings::ServerSettings;

/// The largest request head (request line and headers), in bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long SIGTERM waits for requests in flight before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// After the listeners stop, how long connections just accepted get to
/// deliver their first request before idle connections are closed.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Connections that may wait for their first request head, per serving
/// slot: they are cheap (a descriptor and a head buffer), and a flood of
/// them must not reach the serving slots.
const PENDING_PER_SLOT: usize = 4;

/// File descriptors kept for everything but client connections (the
/// listeners, the backend's connections, the audit file, components).
const RESERVED_FDS: usize = 64;

/// How long the accept loop waits after its first failure (out of file
/// descriptors, say), doubling on each further one up to
/// [`MAX_ACCEPT_BACKOFF`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accept failures are logged at most once per this interval, with a count.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    keyward: Keyward,
    config_path: PathBuf,
    tokens: Tokens,
    settings: ServerSettings,
    /// `[server]` as the file had it at start-up: what a reload may not change.
    started_with: ServerSettings,
    metrics: Metrics,
    ready: AtomicBool,
    /// Render slots per tenant and connector.
    renders: Mutex<HashMap<String, HashMap<String, Arc<Semaphore>>>>,
    /// Held by the check under way.
    check_lock: tokio::sync::Mutex<()>,
    /// Held while the tenant API writes a tenant's file and reloads.
    tenant_lock: tokio::sync::Mutex<()>,
}

impl State {
    fn keyward(&self) -> &Keyward {
        &self.keyward
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A slot for one render of `id` (a configured connector: the map
    /// holds no id a caller made up), if it has one free.
    fn render_permit(&self, tenant: &str, id: &str) -> Option<OwnedSemaphorePermit> {
        let mut renders = self.renders.lock().unwrap_or_else(|p| p.into_inner());
        let of_tenant = match renders.get_mut(tenant) {
            Some(of_tenant) => of_tenant,
            None => renders.entry(tenant.to_string()).or_default(),
        };
        let semaphore = match of_tenant.get(id) {
            Some(semaphore) => semaphore.clone(),
            None => {
                let semaphore = Arc::new(Semaphore::new(self.settings.max_renders_per_connector));
                of_tenant.insert(id.to_string(), semaphore.clone());
                semaphore
            }
        };
        drop(renders);
        semaphore.try_acquire_owned().ok()
    }

    /// Reads the configuration file anew and swaps in its live part; a bad
    /// file, or one that changes a start-up setting, leaves the running
    /// configuration as it was.
    async fn reload(&self) -> Response<Body> {
        match self.reload_outcome().await {
            Ok(tenant_errors) => json_response(
                StatusCode::OK,
                &json!({ "reloaded": true, "tenant_errors": tenant_errors }),
            ),
            Err(e) => e.into_response(),
        }
    }

    /// [`State::reload`]'s work: on success, the tenant files that did not
    /// load (the others did), each as `path: why`.
    async fn reload_outcome(&self) -> Result<Vec<String>, ApiError> {
        // Read on a blocking thread: the file is the operator's, and
        // whatever it is, reading it must not stall the runtime's workers.
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || settings::load(&path)).await;
        let outcome = match loaded {
            Ok(Ok((_, server))) if server != self.started_with => Err(ApiError::new(
                StatusCode::CONFLICT,
                "restart_required",
                "these settings take effect only at start-up and differ in the new \
                 configuration: server; the running configuration is unchanged",
            )),
            Ok(Ok((config, _))) => (self.keyward.update_policy(&config).await)
                .map(|()| {
                    config
                        .tenant_errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<String>>()
                })
                .map_err(api::reload_refused),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_configuration",
                format!("{e:#}; the running configuration is unchanged"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("reading the configuration failed: {e}"),
            )),
        };
        match &outcome {
            Ok(tenant_errors) => {
                self.metrics.reload("ok");
                tracing::info!("configuration reloaded from {}", self.config_path.display());
                for error in tenant_errors {
                    tracing::warn!("tenant file not loaded (the others are): {error}");
                }
            }
            Err(e) => {
                self.metrics.reload("refused");
                tracing::warn!(
                    "reload refused, the running configuration is unchanged: {}",
                    e.message()
                );
            }
        }
        outcome
    }

    /// The configuration as the file says now (for the tenant API, which
    /// checks a tenant's file against it before writing it).
    async fn current_config(&self) -> Result<keyward_host::Config, ApiError> {
        let path = self.config_path.clone();
        match tokio::task::spawn_blocking(move || settings::load(&path)).await {
            Ok(Ok((config, _))) => Ok(config),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "bad_configuration",
                format!("{e:#}"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("reading the configuration failed: {e}"),
            )),
        }
    }
}

/// Runs the service until SIGTERM (or SIGINT); returns once requests in
/// flight have finished.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals first: a SIGTERM while connectors compile stops the service
    // cleanly (its socket removed) instead of killing it.
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (config, mut settings) = settings::load(config_path)?;
    let started_with = settings.clone();
    if settings.socket.is_none() && settings.listen.is_none() {
        anyhow::bail!(
            "{}: [server] names neither `socket` nor `listen`; give at least one",
            config_path.display()
        );
    }
    settings.max_connections = within_fd_limit(settings.max_connections);
    let tokens = Tokens::load(&settings).map_err(anyhow::Error::msg)?;
    let keyward = Keyward::new(config).await?;
    let state = Arc::new(State {
        keyward,
        config_path: config_path.to_path_buf(),
        tokens,
        settings: settings.clone(),
        started_with,
        metrics: Metrics::default(),
        ready: AtomicBool::new(false),
        renders: Mutex::default(),
        tenant_lock: tokio::sync::Mutex::default(),
        check_lock: tokio::sync::Mutex::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());
    let admission = Arc::new(Admissions {
        pending: Admission::new(settings.max_connections.saturating_mul(PENDING_PER_SLOT)),
        serving: Admission::new(settings.max_connections),
    });
    let mut listening = Vec::new();
    let mut accepting = Vec::new();
    // Removes the socket this process bound when serve returns, however
    // it returns (a start-up failure included), and only if it is still
    // ours: a newer keyward's socket at the same path is left alone.
    let mut _socket = None;
    if let Some(path) = &settings.socket {
        let (listener, guard) = bind_unix(path)?;
        _socket = Some(guard);
        listening.push(format!("unix:{}", path.display()));
        accepting.push(tokio::spawn(accept_loop(
            listener,
            state.clone(),
            graceful.clone(),
            admission.clone(),
            stopped.clone(),
        )));
    }
    if let Some(address) = settings.listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("server.listen {address}: {e}"))?;
        listening.push(format!("tcp:{}", listener.local_addr()?));
        accepting.push(tokio::spawn(accept_loop(
            listener,
            state.clone(),
            graceful.clone(),
            admission.clone(),
            stopped.clone(),
        )));
    }
    println!("keyward serve: listening on {}", listening.join(" "));
    // Every connector compiled (or loaded from the compile cache) before
    // the service says it is ready.
    tokio::select! {
        loaded = state.keyward.preload() => loaded?,
        _ = terminate.recv() => {
            println!("keyward serve: stopped before it was ready");
            return Ok(());
        }
        _ = interrupt.recv() => {
            println!("keyward serve: stopped before it was ready");
            return Ok(());
        }
    }
    state.ready.store(true, Ordering::Release);
    println!("keyward serve: ready");

    loop {
        tokio::select! {
            _ = hangup.recv() => { state.reload().await; }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping: no new connections; waiting for requests in flight");
    let _ = stop.send(true);
    for task in accepting {
        let _ = task.await;
    }
    tokio::time::sleep(DRAIN_GRACE).await;
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    drop(_socket);
    println!("keyward serve: stopped");
    Ok(())
}

/// `max_connections`, lowered (with a warning) to what the process's
/// file-descriptor limit leaves room for: past it, accepting fails.
fn within_fd_limit(max_connections: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return max_connections;
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(1);
    if max_connections > room {
        tracing::warn!(
            "server.max_connections = {max_connections} is more than the process's limit of \
             {limit} open files leaves room for; serving at most {room} connections (raise \
             LimitNOFILE or `ulimit -n`, or lower server.max_connections)"
        );
        return room;
    }
    max_connections
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The socket file this process created: removed on drop if it is still
/// the same file (same device and inode).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time: an inode number is reused at once
    /// when a file is deleted and another created, so the time tells a
    /// newer socket at the same inode from ours.
    identity: (u64, u64, i64, i64),
}

fn identity(metadata: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (
        metadata.dev(),
        metadata.ino(),
        metadata.ctime(),
        metadata.ctime_nsec(),
    )
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(metadata) = std::fs::symlink_metadata(&self.path)
            && identity(&metadata) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A Unix socket at `path`, mode 0600. A socket already there is taken
/// only if it is stale (nothing accepts on it); a live one, or any other
/// file, is an error.
fn bind_unix(path: &Path) -> anyhow::Result<(UnixListener, SocketFile)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let at = |e: std::io::Error| anyhow::anyhow!("server.socket {}: {e}", path.display());
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            anyhow::bail!(
                "server.socket {}: a file that is not a socket is there",
                path.display()
            );
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => anyhow::bail!(
                "server.socket {}: another process is serving on this socket; stop it or \
                 choose another path",
                path.display()
            ),
            // Nobody accepts: left by a process that is gone.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(at)?;
            }
            Err(e) => return Err(at(e)),
        }
    }
    let listener = UnixListener::bind(path).map_err(at)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(at)?;
    let metadata = std::fs::symlink_metadata(path).map_err(at)?;
    let guard = SocketFile {
        path: path.to_path_buf(),
        identity: identity(&metadata),
    };
    Ok((listener, guard))
}

/// A listener of either kind, as the accept loop takes it.
trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept_stream(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept_stream(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = self.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Accepts connections until the stop signal; then serves the ones the
/// kernel completed before it (rather than dropping them from the
/// backlog) and returns. A failing accept (no file descriptors left)
/// backs off instead of spinning, and is logged once per interval.
async fn accept_loop<L: Listener>(
    listener: L,
    state: Arc<State>,
    graceful: Arc<GracefulShutdown>,
    admission: Arc<Admissions>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = ACCEPT_BACKOFF;
    let mut failures = AcceptFailures::default();
    loop {
        tokio::select! {
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => {
                    backoff = ACCEPT_BACKOFF;
                    connection(stream, &state, &graceful, &admission);
                }
                Err(e) => {
                    failures.note(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            },
            _ = stopped.changed() => {
                while let Ok(Ok(stream)) =
                    tokio::time::timeout(Duration::from_millis(1), listener.accept_stream()).await
                {
                    connection(stream, &state, &graceful, &admission);
                }
                return;
            }
        }
    }
}

/// Accept failures since the last line logged about them.
#[derive(Debug, Default)]
struct AcceptFailures {
    logged_at: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    fn note(&mut self, error: &std::io::Error) {
        self.unlogged += 1;
        if self
            .logged_at
            .is_some_and(|at| at.elapsed() < ACCEPT_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            "accepting connections is failing: {error} ({} failures in the last {} s; \
             retrying with backoff)",
            self.unlogged,
            ACCEPT_LOG_INTERVAL.as_secs()
        );
        self.logged_at = Some(std::time::Instant::now());
        self.unlogged = 0;
    }
}

/// Serves one connection: its first request head is read (within the
/// header timeout, as a pending connection), then it takes a serving slot
/// (see [`admission`]) and hyper serves it, the head replayed.
fn connection<S>(
    stream: S,
    state: &Arc<State>,
    graceful: &GracefulShutdown,
    admission: &Arc<Admissions>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = state.clone();
    let admission = admission.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let settings = &state.settings;
        let header_timeout = settings.request_timeout.min(settings.idle_timeout);
        let mut stream = WriteTimeout::new(stream, settings.write_timeout);
        let Ok(pending) = admission.pending.admit(false) else {
            return;
        };
        if pending.evicted {
            state.metrics.refused("evicted");
        }
        let head = tokio::select! {
            head = tokio::time::timeout(
                header_timeout,
                admission::read_first_head(&mut stream, MAX_HEAD_BYTES),
            ) => head,
            () = pending.ticket.evicted() => return,
        };
        drop(pending);
        let Ok(Ok(head)) = head else {
            return;
        };
        let trusted = admission::head_header(&head, auth::TOKEN_HEADER)
            .and_then(|token| state.tokens.access(token))
            .is_some();
        let admitted = match admission.serving.admit(trusted) {
            Ok(admitted) => admitted,
            Err(Full) => {
                state.metrics.refused("connections");
                let message = json!({"error": {
                    "code": "too_many_connections",
                    "message": format!(
                        "the server has {} connections of token holders open (server.max_connections)",
                        settings.max_connections
                    ),
                }})
                .to_string();
                // Answered by hand: no connection is served past the limit.
                // A client that does not read it is dropped at the write
                // timeout.
                let response = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
                    message.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        if admitted.evicted {
            state.metrics.refused("evicted");
        }
        let ticket = admitted.ticket;
        let slot = ticket.slot();
        let timeout = settings.request_timeout;
        let service_state = state.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = service_state.clone();
            if state.tokens.carries_token(&request) {
                slot.trust();
            }
            let close = slot.count_request();
            async move {
                let response = match tokio::time::timeout(
                    timeout,
                    api::handle(state.clone(), request),
                )
                .await
                {
                    Ok(response) => response,
                    Err(_) => ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "deadline",
                        format!(
                            "the request took longer than {} ms (server.request_timeout_ms)",
                            timeout.as_millis()
                        ),
                    )
                    .into_response(),
                };
                state.metrics.response(response.status().as_u16());
                let mut response = response;
                if close {
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        // The header timeout also bounds how long a connection may sit idle
        // between requests (hyper starts it whenever it waits for a head).
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(admission::Replay::new(head, stream)), service);
        let connection = watcher.watch(connection);
        tokio::select! {
            _ = connection => {}
            // Dropping the connection closes it.
            () = ticket.evicted() => {}
        }
    });
}

/// The two stages a connection goes through (see [`admission`]).
#[derive(Debug)]
struct Admissions {
    /// Connections whose first request head has not arrived yet.
    pending: Arc<Admission>,
    /// Connections being served.
    serving: Arc<Admission>,
}
