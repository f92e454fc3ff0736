//! The tenant API: `PUT` and `DELETE /v1/tenants/{id}` write or remove the
//! tenant's file in `tenants_dir` (atomically: a temporary file, flushed,
//! renamed, the directory flushed) and reload, so that the directory stays
//! the one source of truth for restarts and for the tools that deploy it.
//! A tenant's file is checked before it is written; a reload that refuses
//! it (a component that does not load) puts the previous file back.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::State;
use super::api::{ApiError, Body, json_response};
use super::auth::Access;
use keyward_host::operator_file::{remove_durably, write_atomically};

/// Only the token that may receive values manages tenants.
fn require_values(access: Access) -> Result<(), ApiError> {
    match access {
        Access::Values => Ok(()),
        Access::Masked => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the masked-only token may not add, change or remove tenants",
        )),
    }
}

/// `PUT /v1/tenants/{id}`: the body is the tenant's file (TOML, the
/// tenant's table without its `[tenants.ID]` header).
pub async fn put(
    state: &State,
    id: &str,
    access: Access,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    require_values(access)?;
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the tenant file is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let _one_at_a_time = state.tenant_lock.lock().await;
    let config = state.current_config().await?;
    let tenant = config.check_tenant_file(id, text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_tenant",
            format!("tenant `{id}`: {e}"),
        )
    })?;
    let path = tenant.file.clone().unwrap_or_default();
    let previous = std::fs::read(&path).ok();
    write(&path, Some(text.as_bytes()))?;
    if let Err(e) = state.reload_outcome().await {
        write(&path, previous.as_deref())?;
        return Err(e);
    }
    let outcome = if previous.is_some() {
        "replaced"
    } else {
        "created"
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "tenant": id, "outcome": outcome }),
    ))
}

/// `DELETE /v1/tenants/{id}`: removes a tenant that has a file.
pub async fn delete(state: &State, id: &str, access: Access) -> Result<Response<Body>, ApiError> {
    require_values(access)?;
    let _one_at_a_time = state.tenant_lock.lock().await;
    let config = state.current_config().await?;
    let Some(file) = config.tenants.get(id).and_then(|t| t.file.clone()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!(
                "no tenant `{id}` has a file in tenants_dir (a [tenants.{id}] table is the configuration's)"
            ),
        ));
    };
    let previous = std::fs::read(&file).ok();
    write(&file, None)?;
    if let Err(e) = state.reload_outcome().await {
        write(&file, previous.as_deref())?;
        return Err(e);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "tenant": id, "outcome": "removed" }),
    ))
}

/// Writes `bytes` to `path` atomically, or removes it for `None`.
fn write(path: &std::path::Path, bytes: Option<&[u8]>) -> Result<(), ApiError> {
    let written = match bytes {
        Some(bytes) => write_atomically(path, bytes),
        None if path.exists() => remove_durably(path),
        None => Ok(()),
    };
    written.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}
