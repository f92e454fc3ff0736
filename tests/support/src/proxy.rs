//! A small HTTP proxy in front of the local Secrets Manager server that
//! counts every call by operation and injects the faults a real server does
//! not produce: throttling, 5xx, access denied, and hangs.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A fault answered instead of forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 `ThrottlingException`.
    Throttle,
    /// HTTP 500 `InternalServiceError`.
    ServerError,
    /// HTTP 400 `AccessDeniedException`.
    AccessDenied,
    /// Never answers.
    Hang,
}

/// Text put in every fault's message: it must never reach a connector.
pub const FAULT_MESSAGE_CANARY: &str = "canary-in-an-aws-error-message";

#[derive(Default)]
struct State {
    next: VecDeque<Fault>,
    sticky: Option<Fault>,
    counts: HashMap<String, usize>,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.to_string();
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = task_state.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(request, state.clone(), client.clone(), upstream.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers every request with `fault` (or forwards again, with `None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.state().sticky = fault;
    }

    /// Answers the next `n` requests with `fault`, then forwards again.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.state().next.extend(std::iter::repeat_n(fault, n));
    }

    /// Calls of one operation (`GetSecretValue`, `BatchGetSecretValue`, ...),
    /// faulted ones included.
    pub fn count(&self, operation: &str) -> usize {
        self.state().counts.get(operation).copied().unwrap_or(0)
    }

    /// All calls.
    pub fn total(&self) -> usize {
        self.state().counts.values().sum()
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        self.state().counts.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string();
    let fault = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        *state.counts.entry(operation).or_default() += 1;
        state.next.pop_front().or(state.sticky)
    };
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(fault) = fault {
        return Ok(fault_response(fault).await);
    }
    let uri = format!(
        "http://{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let Ok(forward) = forward.body(Full::new(body)) else {
        return Ok(plain(StatusCode::BAD_GATEWAY, "bad request"));
    };
    match client.request(forward).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(e) => Ok(plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))),
    }
}

async fn fault_response(fault: Fault) -> Response<Full<Bytes>> {
    let (status, code) = match fault {
        Fault::Throttle => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        Fault::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServiceError"),
        Fault::AccessDenied => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::GATEWAY_TIMEOUT, "Hang")
        }
    };
    let body = format!(r#"{{"__type":"{code}","message":"{FAULT_MESSAGE_CANARY}"}}"#);
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "fault"))
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}
