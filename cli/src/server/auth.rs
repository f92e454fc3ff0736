//! Who is calling: the `X-Keyward-Token` header against the two tokens,
//! compared in constant time, and the forwarding guard.

use std::path::Path;
use std::sync::Arc;

use super::settings::ServerSettings;

/// The header every request but the health checks carries.
pub const TOKEN_HEADER: &str = "x-keyward-token";

/// What a caller's token lets it see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Sensitive values included.
    Values,
    /// Sensitive values masked; references, descriptions and checks.
    Masked,
}

/// Who a caller is: what its token lets it see, and which tenants it may
/// reach (`None`: every tenant, and the service's own routes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub access: Access,
    pub tenants: Option<Arc<[String]>>,
}

impl Caller {
    /// Whether the caller may reach tenant `id`.
    pub fn may(&self, id: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.iter().any(|t| t == id))
    }

    /// Whether the caller's token is limited to some tenants.
    pub fn is_scoped(&self) -> bool {
        self.tenants.is_some()
    }
}

/// A token limited to some tenants.
struct TenantToken {
    token: String,
    access: Access,
    tenants: Arc<[String]>,
}

/// The service's tokens, read once at start-up.
pub struct Tokens {
    values: String,
    masked: Option<String>,
    tenant_tokens: Vec<TenantToken>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("masked", &self.masked.is_some())
            .field("tenant_tokens", &self.tenant_tokens.len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Reads the tokens the configuration names: a file if it names one,
    /// else an environment variable. The token that may receive values is
    /// required; the masked one is optional.
    pub fn load(server: &ServerSettings) -> Result<Self, String> {
        let values = read(server.token_file.as_deref(), &server.token_env)?.ok_or_else(|| {
            format!(
                "no token: set the environment variable {} or server.token_file",
                server.token_env
            )
        })?;
        let masked = read(
            server.masked_token_file.as_deref(),
            &server.masked_token_env,
        )?;
        if masked.as_deref() == Some(values.as_str()) {
            return Err(
                "the masked-only token must differ from the token that may receive \
                        values"
                    .into(),
            );
        }
        let mut tenant_tokens: Vec<TenantToken> = Vec::new();
        for (index, scoped) in server.tenant_tokens.iter().enumerate() {
            let env = scoped.token_env.as_deref().unwrap_or_default();
            let token = read(scoped.token_file.as_deref(), env)?.ok_or_else(|| {
                format!("server.tenant_tokens[{index}]: no token in the environment variable {env}")
            })?;
            let taken = token == values
                || masked.as_deref() == Some(token.as_str())
                || tenant_tokens.iter().any(|t| t.token == token);
            if taken {
                return Err(format!(
                    "server.tenant_tokens[{index}]: every token must differ from every other"
                ));
            }
            tenant_tokens.push(TenantToken {
                token,
                access: if scoped.masked {
                    Access::Masked
                } else {
                    Access::Values
                },
                tenants: scoped.tenants.clone().into(),
            });
        }
        Ok(Self {
            values,
            masked,
            tenant_tokens,
        })
    }

    /// Whether `request` carries a valid token (of either kind).
    pub fn carries_token<B>(&self, request: &hyper::Request<B>) -> bool {
        request
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|token| self.access(token.as_bytes()))
            .is_some()
    }

    /// Who the bearer of `presented` is, if anyone.
    pub fn access(&self, presented: &[u8]) -> Option<Caller> {
        // Every token compared, always: the time taken does not say which
        // matched.
        let values = same(presented, self.values.as_bytes());
        let masked = self
            .masked
            .as_ref()
            .is_some_and(|m| same(presented, m.as_bytes()));
        let mut scoped = None;
        for token in &self.tenant_tokens {
            if same(presented, token.token.as_bytes()) {
                scoped = Some(token);
            }
        }
        let unscoped = |access| Caller {
            access,
            tenants: None,
        };
        if values {
            Some(unscoped(Access::Values))
        } else if masked {
            Some(unscoped(Access::Masked))
        } else {
            scoped.map(|token| Caller {
                access: token.access,
                tenants: Some(token.tenants.clone()),
            })
        }
    }
}

/// The longest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

fn read(file: Option<&Path>, env: &str) -> Result<Option<String>, String> {
    let token = match file {
        Some(path) => Some(read_token_file(path)?),
        None => std::env::var(env).ok(),
    };
    let token = token.map(|t| t.trim().to_string());
    match token {
        Some(t) if t.len() < 16 => Err(format!(
            "the token from {} is {} characters; use at least 16",
            file.map_or_else(|| env.to_string(), |p| p.display().to_string()),
            t.len()
        )),
        other => Ok(other),
    }
}

/// A token file: a regular file of at most 4 KiB that only its owner may
/// read. A token readable by group or others is not a secret any more, so
/// it is refused rather than warned about (a warning is easy to miss, and
/// the fix is one `chmod 600`).
fn read_token_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let what = format!("token file {}", path.display());
    let text =
        keyward_host::operator_file::read_regular_text(path, MAX_TOKEN_FILE_BYTES, &what, None)?;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{what}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} may be read by group or others (mode {:o}); make it readable by its \
             owner only (chmod 600)",
            mode & 0o777
        ));
    }
    Ok(text)
}

/// Equality in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_what_they_are_for() {
        let tokens = Tokens {
            values: "v".repeat(20),
            masked: Some("m".repeat(20)),
            tenant_tokens: vec![TenantToken {
                token: "a".repeat(20),
                access: Access::Masked,
                tenants: vec!["acme".to_string()].into(),
            }],
        };
        let access = |token: &str| tokens.access(token.as_bytes()).map(|c| c.access);
        assert_eq!(access(&"v".repeat(20)), Some(Access::Values));
        assert_eq!(access(&"m".repeat(20)), Some(Access::Masked));
        assert_eq!(access("v"), None);
        assert_eq!(access(""), None);
        let acme = tokens
            .access("a".repeat(20).as_bytes())
            .expect("acme's token");
        assert_eq!(acme.access, Access::Masked);
        assert!(
            acme.is_scoped() && acme.may("acme") && !acme.may("globex") && !acme.may("default")
        );
        let all = tokens
            .access("v".repeat(20).as_bytes())
            .expect("the values token");
        assert!(!all.is_scoped() && all.may("globex") && all.may("default"));
        assert!(!format!("{tokens:?}").contains('v') && !format!("{tokens:?}").contains("aaaa"));
    }
}
