//! `keyward serve`'s own settings: the `[server]` table of the
//! configuration file, read from the same text as the library's tables and
//! checked here (the library has no HTTP settings). All of it takes effect
//! at start-up; a reload that changes it is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_host::Config;
use serde::Deserialize;

/// The configuration file as the service reads it: the library's
/// configuration and the `[server]` table.
pub fn load(path: &Path) -> anyhow::Result<(Config, ServerSettings)> {
    let (config, file): (Config, ServerFile) = Config::load_with(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let settings = check(file.server, base)
        .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
    Ok((config, settings))
}

/// The tables of the file the service owns; the rest are the library's.
#[derive(Deserialize)]
struct ServerFile {
    #[serde(default)]
    server: RawServer,
}

/// The `[server]` table of `keyward serve`, checked. Taken at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// A Unix socket to listen on (created with mode 0600).
    pub socket: Option<PathBuf>,
    /// A TCP address to listen on; loopback unless `allow_non_loopback`.
    pub listen: Option<std::net::SocketAddr>,
    /// The environment variable holding the token that may receive values.
    pub token_env: String,
    /// A file holding that token (instead of the variable).
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the token that sees masked outputs only.
    pub masked_token_env: String,
    /// A file holding that token (instead of the variable).
    pub masked_token_file: Option<PathBuf>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Bound on handling one request.
    pub request_timeout: Duration,
    /// How long one write may wait on a client that does not read its
    /// answer before the connection is closed.
    pub write_timeout: Duration,
    /// How long a connection may sit idle between requests (or take to
    /// send a request's headers, if that is shorter than the request
    /// timeout).
    pub idle_timeout: Duration,
    /// Renders of one connector at once; more are answered 429.
    pub max_renders_per_connector: usize,
    /// Tokens limited to some tenants (`[[server.tenant_tokens]]`).
    pub tenant_tokens: Vec<TenantTokenSettings>,
}

/// One `[[server.tenant_tokens]]` entry: a token that serves only the
/// tenants it names, read like the service's own tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantTokenSettings {
    pub tenants: Vec<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Whether it sees masked outputs only.
    pub masked: bool,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTenantToken {
    tenants: Vec<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    masked: Option<bool>,
}

fn check(raw: RawServer, base: &Path) -> Result<ServerSettings, String> {
    let listen = raw
        .listen
        .map(|text| {
            text.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("server.listen: `{text}` is not an IP address and port"))
        })
        .transpose()?;
    if let Some(address) = listen
        && !address.ip().is_loopback()
        && raw.allow_non_loopback != Some(true)
    {
        return Err(format!(
            "server.listen: {address} is not a loopback address; the service hands out \
             secrets, so set `allow_non_loopback = true` to mean it"
        ));
    }
    let positive = |value: Option<usize>, default: usize, key: &str| match value {
        Some(0) => Err(format!("server.{key} must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let mut tenant_tokens = Vec::with_capacity(raw.tenant_tokens.len());
    for (index, token) in raw.tenant_tokens.iter().enumerate() {
        let at = format!("server.tenant_tokens[{index}]");
        if token.tenants.is_empty() {
            return Err(format!("{at}.tenants: name at least one tenant"));
        }
        if let Some(bad) = token
            .tenants
            .iter()
            .find(|t| *t != keyward_host::DEFAULT_TENANT && !keyward_host::valid_tenant_id(t))
        {
            return Err(format!("{at}.tenants: `{bad}` is not a tenant id"));
        }
        if token.token_env.is_some() == token.token_file.is_some() {
            return Err(format!("{at}: set one of token_env and token_file"));
        }
        tenant_tokens.push(TenantTokenSettings {
            tenants: token.tenants.clone(),
            token_env: token.token_env.clone(),
            token_file: token.token_file.as_ref().map(|p| base.join(p)),
            masked: token.masked.unwrap_or(false),
        });
    }
    Ok(ServerSettings {
        tenant_tokens,
        socket: raw.socket.map(|p| base.join(p)),
        listen,
        token_env: raw.token_env.unwrap_or_else(|| "KEYWARD_TOKEN".into()),
        token_file: raw.token_file.map(|p| base.join(p)),
        masked_token_env: raw
            .masked_token_env
            .unwrap_or_else(|| "KEYWARD_MASKED_TOKEN".into()),
        masked_token_file: raw.masked_token_file.map(|p| base.join(p)),
        max_connections: positive(raw.max_connections, 256, "max_connections")?,
        max_body_bytes: positive(raw.max_body_kb, 1024, "max_body_kb")?.saturating_mul(1024),
        request_timeout: Duration::from_millis(positive(
            raw.request_timeout_ms
                .map(|ms| usize::try_from(ms).unwrap_or(usize::MAX)),
            30_000,
            "request_timeout_ms",
        )? as u64),
        max_renders_per_connector: positive(
            raw.max_renders_per_connector,
            64,
            "max_renders_per_connector",
        )?,
        write_timeout: Duration::from_millis(positive(
            raw.write_timeout_ms
                .map(|ms| usize::try_from(ms).unwrap_or(usize::MAX)),
            5_000,
            "write_timeout_ms",
        )? as u64),
        idle_timeout: Duration::from_millis(positive(
            raw.idle_timeout_ms
                .map(|ms| usize::try_from(ms).unwrap_or(usize::MAX)),
            10_000,
            "idle_timeout_ms",
        )? as u64),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    socket: Option<PathBuf>,
    listen: Option<String>,
    allow_non_loopback: Option<bool>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    masked_token_env: Option<String>,
    masked_token_file: Option<PathBuf>,
    max_connections: Option<usize>,
    max_body_kb: Option<usize>,
    request_timeout_ms: Option<u64>,
    max_renders_per_connector: Option<usize>,
    write_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    tenant_tokens: Vec<RawTenantToken>,
}
