//! The `/v1` API: routing, JSON in and out, and one error shape with a
//! stable code. Every response but the health checks needs a token;
//! sensitive values go only to the token that may receive them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use keyward_host::{Error, Invalidation, MASK, RunError, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::State;
use super::auth::{Access, Caller, TOKEN_HEADER};

/// A response body.
pub type Body = Full<Bytes>;

/// An error as the API answers it: status, stable code, one line.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For render errors: the field and column at fault.
    place: Option<(Option<String>, Option<u32>)>,
    /// For a trapped connector: what stopped it (`cpu_deadline`, `memory`, ...).
    trap: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            place: None,
            trap: None,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_response(self) -> Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some((field, column)) = self.place {
            error["field"] = json!(field);
            error["column"] = json!(column);
        }
        if let Some(trap) = self.trap {
            error["trap"] = json!(trap);
        }
        json_response(self.status, &json!({ "error": error }))
    }
}

/// Maps a library error to its status and code. Messages name connector,
/// field and column; none holds a value.
fn from_keyward(error: Error) -> ApiError {
    let message = error.to_string();
    match error {
        Error::UnknownConnector(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_connector", message)
        }
        Error::UnknownTenant(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_tenant", message),
        Error::Run {
            error: RunError::Render(e),
            ..
        } => ApiError {
            place: Some((e.field.clone(), e.column)),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "render_error", message)
        },
        Error::Run {
            error: RunError::Egress(_),
            ..
        } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "egress_refused", message),
        Error::Run {
            error: RunError::Unavailable(e),
            ..
        } => ApiError {
            place: Some((e.field.clone(), e.column)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                message,
            )
        },
        Error::Run {
            error: RunError::Trap(trap),
            ..
        } => {
            let (status, code) = if trap.kind.is_deadline() {
                (StatusCode::GATEWAY_TIMEOUT, "deadline")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "connector_failed")
            };
            ApiError {
                trap: Some(trap.kind.as_str()),
                ..ApiError::new(status, code, message)
            }
        }
        Error::Backend(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            message,
        ),
        Error::RestartRequired(_) => {
            ApiError::new(StatusCode::CONFLICT, "restart_required", message)
        }
        Error::Config(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_configuration", message),
        Error::Load { .. } | Error::Engine(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "load_failed", message)
        }
        Error::Audit { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_unavailable",
            message,
        ),
        Error::Busy(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message),
        _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
    }
}

/// Maps a refused reload to its status and code: a start-up setting
/// changed (409), else the new configuration is wrong (400); either way
/// the running one is unchanged.
pub fn reload_refused(error: Error) -> ApiError {
    match error {
        Error::RestartRequired(_) => {
            ApiError::new(StatusCode::CONFLICT, "restart_required", error.to_string())
        }
        error => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_configuration",
            format!("{error}; the running configuration is unchanged"),
        ),
    }
}

pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serializing these types (strings, numbers, maps) cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a render (typed, so the hot path builds no JSON tree).
#[derive(Serialize)]
struct RenderResponse<'a> {
    connector: &'a str,
    outputs: Vec<RenderedOutput<'a>>,
}

/// One output of a render, masked unless the token may see its value.
#[derive(Serialize)]
struct RenderedOutput<'a> {
    name: &'a str,
    value: &'a str,
    sensitive: bool,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<DestinationAnswer<'a>>,
}

/// Where a destination output sends the platform: connect only there.
#[derive(Serialize)]
struct DestinationAnswer<'a> {
    scheme: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
}

/// The body of a render request.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenderRequest {
    /// Fields to render with instead of the configured ones.
    fields: Option<BTreeMap<String, String>>,
    /// Whether sensitive values are wanted (default: what the token allows).
    reveal: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    /// One reference, as a template writes it.
    reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheInvalidateRequest {
    /// A full secret name (namespace included).
    name: String,
}

/// Routes one request.
pub async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // No token for the health checks, so that an orchestrator can probe.
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => {
            return json_response(StatusCode::OK, &json!({"status": "ok"}));
        }
        (&Method::GET, "/readyz") => {
            return if state.is_ready() {
                json_response(StatusCode::OK, &json!({"status": "ready"}))
            } else {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "compiling connectors",
                )
                .into_response()
            };
        }
        _ => {}
    }
    if request.headers().contains_key("x-forwarded-for") {
        state.metrics.refused("forwarded");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forwarded_request",
            "requests carrying X-Forwarded-For are refused: keyward serves local callers only",
        )
        .into_response();
    }
    let caller = request
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|token| state.tokens.access(token.as_bytes()));
    let Some(caller) = caller else {
        state.metrics.refused("token");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "a valid X-Keyward-Token header is required",
        )
        .into_response();
    };
    let access = caller.access;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // `/v1/tenants/{tenant}/...` is `/v1/...` of that tenant; the routes
    // without one are the default tenant's.
    let (tenant, route): (Arc<Tenant>, Vec<&str>) = match segments.as_slice() {
        ["v1", "tenants", tenant, rest @ ..] if !rest.is_empty() => {
            match state.keyward().tenant(tenant) {
                Ok(found) if caller.may(tenant) => (
                    found,
                    std::iter::once("v1").chain(rest.iter().copied()).collect(),
                ),
                _ => return unknown_tenant(&state, &caller, tenant).into_response(),
            }
        }
        _ => (state.keyward().default_tenant().clone(), segments),
    };
    let tenant = &*tenant;
    // A token limited to tenants reaches their routes only, and a tenant
    // it may not reach answers like one that does not exist.
    let of_a_tenant = matches!(route.get(1), Some(&("connectors" | "cache" | "check")));
    if of_a_tenant && !caller.may(tenant.id()) {
        return unknown_tenant(&state, &caller, tenant.id()).into_response();
    }
    let scoped = |what: &str| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a token limited to tenants may not {what}"),
        ))
    };
    let result = match (&method, route.as_slice()) {
        (&Method::GET, ["metrics"]) if caller.is_scoped() => scoped("read the service's metrics"),
        (&Method::PUT | &Method::DELETE, ["v1", "tenants", _]) if caller.is_scoped() => {
            scoped("add, change or remove tenants")
        }
        (&Method::POST, ["v1", "reload"]) if caller.is_scoped() => {
            scoped("reload the configuration")
        }
        (&Method::GET, ["metrics"]) => {
            let text = state.metrics.render_text(&state.keyward().stats());
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return response;
        }
        (&Method::PUT, ["v1", "tenants", id]) => match read_body(&state, request).await {
            Ok(body) => super::tenants::put(&state, id, access, &body).await,
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["v1", "tenants", id]) => {
            super::tenants::delete(&state, id, access).await
        }
        (&Method::GET, ["v1", "tenants"]) => {
            let ids: Vec<String> = state
                .keyward()
                .tenant_ids()
                .into_iter()
                .filter(|id| caller.may(id))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "tenants": ids })))
        }
        (&Method::GET, ["v1", "connectors"]) => list_connectors(tenant).await,
        (&Method::GET, ["v1", "connectors", id]) => describe(tenant, id).await,
        (&Method::POST, ["v1", "connectors", id, "render"]) => {
            let body = read_body(&state, request).await;
            match body {
                Ok(body) => render(&state, tenant, id, access, &body).await,
                Err(e) => Err(e),
            }
        }
        (&Method::GET, ["v1", "connectors", id, "references"]) => references(tenant, id).await,
        (&Method::POST, ["v1", "connectors", id, "invalidate"]) => {
            match read_body(&state, request).await {
                Ok(body) => invalidate(&state, tenant, id, access, &body).await,
                Err(e) => Err(e),
            }
        }
        (&Method::POST, ["v1", "cache", "invalidate"]) => match read_body(&state, request).await {
            Ok(body) => invalidate_cache(tenant, access, &body).await,
            Err(e) => Err(e),
        },
        (&Method::GET, ["v1", "check"]) => Ok(check(&state, tenant).await),
        (&Method::POST, ["v1", "reload"]) if access == Access::Values => Ok(state.reload().await),
        (&Method::POST, ["v1", "reload"]) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the masked-only token may not reload the configuration",
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {method} {}", escape(&path)),
        )),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// The answer for a tenant that does not exist or that the caller may not
/// reach: the same, naming only the tenants the caller may reach.
fn unknown_tenant(state: &State, caller: &Caller, id: &str) -> ApiError {
    let known: Vec<String> = state
        .keyward()
        .tenant_ids()
        .into_iter()
        .filter(|t| caller.may(t))
        .collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_tenant",
        format!(
            "unknown tenant `{}`; configured: {}",
            escape(id),
            known.join(", ")
        ),
    )
}

/// A request path as it may be quoted in a message.
fn escape(path: &str) -> String {
    keyward_host::escape::escape_untrusted(&path.chars().take(200).collect::<String>()).into_owned()
}

async fn read_body(state: &State, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(request.into_body(), state.settings.max_body_bytes)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than {} bytes (server.max_body_kb)",
                state.settings.max_body_bytes
            ),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        )),
    }
}

/// JSON from a body: an empty body is the type's default where it has one.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], empty: Option<T>) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(empty) = empty
    {
        return Ok(empty);
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "the body is not the JSON expected: line {}, column {}: {}",
                e.line(),
                e.column(),
                e.classify_message()
            ),
        )
    })
}

trait ClassifyMessage {
    fn classify_message(&self) -> &'static str;
}

impl ClassifyMessage for serde_json::Error {
    /// What kind of problem, without quoting the body (it may hold a
    /// template with a literal credential).
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Eof => "the JSON ends early",
            serde_json::error::Category::Data => {
                "unexpected or misspelt keys or types (see docs/openapi.json)"
            }
            serde_json::error::Category::Io => "unreadable",
        }
    }
}

async fn list_connectors(tenant: &Tenant) -> Result<Response<Body>, ApiError> {
    let mut connectors = Vec::new();
    for id in tenant.connector_ids() {
        let info = tenant.describe(&id).await.map_err(from_keyward)?;
        connectors.push(json!({ "id": id, "describe": info }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "connectors": connectors }),
    ))
}

async fn describe(tenant: &Tenant, id: &str) -> Result<Response<Body>, ApiError> {
    let info = tenant.describe(id).await.map_err(from_keyward)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "id": id, "describe": info }),
    ))
}

async fn render(
    state: &State,
    tenant: &Tenant,
    id: &str,
    access: Access,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let request: RenderRequest = parse(body, Some(RenderRequest::default()))?;
    let reveal = match (request.reveal, access) {
        (Some(true), Access::Masked) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token sees masked outputs only; it may not ask for sensitive values",
            ));
        }
        (Some(reveal), Access::Values) => reveal,
        (None, access) => access == Access::Values,
        (Some(false), Access::Masked) => false,
    };
    // Before the render slot: the server keeps slots for configured ids only.
    tenant.require_connector(id).map_err(from_keyward)?;
    let _permit = state.render_permit(tenant.id(), id).ok_or_else(|| {
        state.metrics.refused("busy");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            format!(
                "connector `{id}` has {} renders under way (server.max_renders_per_connector)",
                state.settings.max_renders_per_connector
            ),
        )
    })?;
    let started = Instant::now();
    let rendered = match request.fields {
        None => tenant.render(id).await,
        Some(fields) => {
            let fields: Vec<(String, String)> = fields.into_iter().collect();
            tenant.render_fields(id, &fields).await
        }
    };
    {
        let outcome = match &rendered {
            Ok(_) => "ok",
            Err(Error::Run {
                error: RunError::Render(_),
                ..
            }) => "render_error",
            Err(Error::Run {
                error: RunError::Egress(_),
                ..
            }) => "egress_refused",
            Err(Error::Run { .. }) => "trap",
            Err(_) => "error",
        };
        state
            .metrics
            .render(tenant.id(), id, outcome, started.elapsed());
    }
    let rendered = rendered.map_err(from_keyward)?;
    let outputs = rendered
        .values
        .iter()
        .map(|v| RenderedOutput {
            name: &v.name,
            value: if v.sensitive && !reveal {
                MASK
            } else {
                v.value.as_str()
            },
            sensitive: v.sensitive,
            kind: v.kind.name(),
            destination: v.destination.as_ref().map(|d| DestinationAnswer {
                scheme: d.scheme.as_deref(),
                host: if d.secret && v.sensitive && !reveal {
                    MASK
                } else {
                    &d.host
                },
                port: d.port,
            }),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &RenderResponse {
            connector: &rendered.connector,
            outputs,
        },
    ))
}

async fn references(tenant: &Tenant, id: &str) -> Result<Response<Body>, ApiError> {
    let requests = tenant.allowed_references(id).await.map_err(from_keyward)?;
    let references: Vec<String> = requests.iter().map(|r| r.paste_form()).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "connector": id, "references": references }),
    ))
}

/// A connector's invalidate drops its cached copy of a secret and makes
/// the next render read it upstream: that is for the platform that saw the
/// credentials rejected, which holds the full token. The masked token (a
/// UI showing configurations) has no such reason, and would otherwise let
/// the weakest credential drive reads of Secrets Manager.
async fn invalidate(
    state: &State,
    tenant: &Tenant,
    id: &str,
    access: Access,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if access == Access::Masked {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the masked-only token may not drop cached secrets",
        ));
    }
    let request: InvalidateRequest = parse(body, None)?;
    let Some(reference) = keyward_host::single_reference(&request.reference) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_reference",
            "`reference` must be one reference as a template writes it, such as {{ secrets.db }}",
        ));
    };
    let outcome = tenant
        .invalidate(id, &reference)
        .await
        .map_err(from_keyward)?;
    let (status, code, word) = match outcome {
        Invalidation::Done => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({ "connector": id, "outcome": "invalidated" }),
            ));
        }
        Invalidation::RateLimited => {
            state.metrics.refused("rate_limited");
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate_limited",
            )
        }
        Invalidation::NotAllowed => (StatusCode::NOT_FOUND, "not_allowed", "not_allowed"),
        Invalidation::Invalid => (StatusCode::BAD_REQUEST, "bad_reference", "invalid"),
    };
    Err(ApiError::new(
        status,
        code,
        format!("connector `{id}`: the reference was not invalidated ({word})"),
    ))
}

async fn invalidate_cache(
    tenant: &Tenant,
    access: Access,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if access != Access::Values {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the masked-only token may not drop cached secrets",
        ));
    }
    let request: CacheInvalidateRequest = parse(body, None)?;
    let name = keyward_host::name::SecretName::new(&request.name).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_reference",
            format!("`name`: {e}"),
        )
    })?;
    tenant.cache().invalidate(&name).await;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "outcome": "invalidated" }),
    ))
}

/// `GET /v1/check`, one at a time (a check waits for the one under way),
/// each connector's render within its `max_renders_per_connector` like any
/// other, and the backend's listing from the cache: checks, which the
/// masked token may ask for, cannot drive renders or upstream calls past
/// the limits renders have.
async fn check(state: &State, tenant: &Tenant) -> Response<Body> {
    let _one_at_a_time = state.check_lock.lock().await;
    let report = tenant
        .check_with(|id| {
            state.render_permit(tenant.id(), id).ok_or_else(|| {
                state.metrics.refused("busy");
                format!(
                    "connector `{id}` has {} renders under way (server.max_renders_per_connector)",
                    state.settings.max_renders_per_connector
                )
            })
        })
        .await;
    let connectors: Vec<Value> = report
        .connectors
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "refused": c.refused.iter().map(|r| json!({
                    "field": r.field, "column": r.column, "message": r.why
                })).collect::<Vec<_>>(),
                "listing_error": c.listing,
                "references": c.references.iter().map(|r| json!({
                    "reference": r.reference,
                    "ok": r.result.is_ok(),
                    "error": r.result.as_ref().err(),
                })).collect::<Vec<_>>(),
                "render": { "ok": c.render.is_ok(), "error": c.render.as_ref().err() },
                "destinations": { "ok": c.destinations.is_ok(), "error": c.destinations.as_ref().err() },
            })
        })
        .collect();
    let status = if report.backend.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "ok": report.failures() == 0,
            "failures": report.failures(),
            "backend": {
                "ok": report.backend.is_ok(),
                "secrets": report.backend.as_ref().ok(),
                "error": report.backend.as_ref().err(),
            },
            "connectors": connectors,
        }),
    )
}
