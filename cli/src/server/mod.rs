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

pub mod api;
pub mod auth;
pub mod metrics;

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
use keyward_host::config::ServerConfig;
use keyward_host::{Config, Keyward};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use api::{ApiError, Body, json_response};
use auth::Tokens;
use metrics::Metrics;

/// The largest request head (request line and headers), in bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long SIGTERM waits for requests in flight before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// After the listeners stop, how long connections just accepted get to
/// deliver their first request before idle connections are closed.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    keyward: Keyward,
    config_path: PathBuf,
    tokens: Tokens,
    settings: ServerConfig,
    metrics: Metrics,
    ready: AtomicBool,
    renders: Mutex<HashMap<String, Arc<Semaphore>>>,
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
    fn render_permit(&self, id: &str) -> Option<OwnedSemaphorePermit> {
        let mut renders = self.renders.lock().unwrap_or_else(|p| p.into_inner());
        let semaphore = match renders.get(id) {
            Some(semaphore) => semaphore.clone(),
            None => {
                let semaphore = Arc::new(Semaphore::new(self.settings.max_renders_per_connector));
                renders.insert(id.to_string(), semaphore.clone());
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
        let outcome = Config::load(&self.config_path)
            .map_err(keyward_host::Error::from)
            .and_then(|config| self.keyward.update_policy(&config));
        match outcome {
            Ok(()) => {
                self.metrics.reload("ok");
                tracing::info!("configuration reloaded from {}", self.config_path.display());
                json_response(StatusCode::OK, &json!({ "reloaded": true }))
            }
            Err(e) => {
                self.metrics.reload("refused");
                tracing::warn!("reload refused, the running configuration is unchanged: {e}");
                let (status, code, message) = match e {
                    keyward_host::Error::RestartRequired(_) => {
                        (StatusCode::CONFLICT, "restart_required", e.to_string())
                    }
                    _ => (
                        StatusCode::BAD_REQUEST,
                        "bad_configuration",
                        format!("{e}; the running configuration is unchanged"),
                    ),
                };
                ApiError::new(status, code, message).into_response()
            }
        }
    }
}

/// Runs the service until SIGTERM (or SIGINT); returns once requests in
/// flight have finished.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let settings = config.server.clone();
    if settings.socket.is_none() && settings.listen.is_none() {
        anyhow::bail!(
            "{}: [server] names neither `socket` nor `listen`; give at least one",
            config_path.display()
        );
    }
    let tokens = Tokens::load(&settings).map_err(anyhow::Error::msg)?;
    let keyward = Keyward::new(config).await?;
    let state = Arc::new(State {
        keyward,
        config_path: config_path.to_path_buf(),
        tokens,
        settings: settings.clone(),
        metrics: Metrics::default(),
        ready: AtomicBool::new(false),
        renders: Mutex::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let mut listening = Vec::new();
    let mut accepting = Vec::new();
    if let Some(path) = &settings.socket {
        let listener = bind_unix(path)?;
        listening.push(format!("unix:{}", path.display()));
        accepting.push(tokio::spawn(accept_loop(
            listener,
            state.clone(),
            graceful.clone(),
            connections.clone(),
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
            connections.clone(),
            stopped.clone(),
        )));
    }
    println!("keyward serve: listening on {}", listening.join(" "));
    // Every connector compiled (or loaded from the compile cache) before
    // the service says it is ready.
    state.keyward.preload().await?;
    state.ready.store(true, Ordering::Release);
    println!("keyward serve: ready");

    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
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
    if let Some(path) = &settings.socket {
        let _ = std::fs::remove_file(path);
    }
    println!("keyward serve: stopped");
    Ok(())
}

/// A Unix socket at `path`, mode 0600. A stale socket left by an earlier
/// run is replaced; any other file there is an error.
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            anyhow::bail!(
                "server.socket {}: a file that is not a socket is there",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("server.socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("server.socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("server.socket {}: {e}", path.display()))?;
    Ok(listener)
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
/// backlog) and returns.
async fn accept_loop<L: Listener>(
    listener: L,
    state: Arc<State>,
    graceful: Arc<GracefulShutdown>,
    connections: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => connection(stream, &state, &graceful, &connections),
                Err(e) => tracing::warn!("accepting a connection failed: {e}"),
            },
            _ = stopped.changed() => {
                while let Ok(Ok(stream)) =
                    tokio::time::timeout(Duration::from_millis(1), listener.accept_stream()).await
                {
                    connection(stream, &state, &graceful, &connections);
                }
                return;
            }
        }
    }
}

/// Serves one connection, or refuses it with a 503 if the limit is reached.
fn connection<S>(
    mut stream: S,
    state: &Arc<State>,
    graceful: &GracefulShutdown,
    connections: &Arc<Semaphore>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = connections.clone().try_acquire_owned() else {
        state.metrics.refused("connections");
        let message = json!({"error": {
            "code": "too_many_connections",
            "message": format!(
                "the server has {} connections open (server.max_connections)",
                state.settings.max_connections
            ),
        }})
        .to_string();
        // Answered by hand: no connection is served past the limit.
        tokio::spawn(async move {
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
                message.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
        return;
    };
    let state = state.clone();
    let timeout = state.settings.request_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let state = state.clone();
        async move {
            let response =
                match tokio::time::timeout(timeout, api::handle(state.clone(), request)).await {
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
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        let _ = connection.await;
        drop(permit);
    });
}
