//! Who is calling: the `X-Keyward-Token` header against the two tokens,
//! compared in constant time, and the forwarding guard.

use std::path::Path;

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

/// The two tokens, read once at start-up.
pub struct Tokens {
    values: String,
    masked: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("masked", &self.masked.is_some())
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
        Ok(Self { values, masked })
    }

    /// Whether `request` carries a valid token (of either kind).
    pub fn carries_token<B>(&self, request: &hyper::Request<B>) -> bool {
        request
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|token| self.access(token.as_bytes()))
            .is_some()
    }

    /// What `presented` lets its bearer see, if anything.
    pub fn access(&self, presented: &[u8]) -> Option<Access> {
        // Both compared, always: the time taken does not say which matched.
        let values = same(presented, self.values.as_bytes());
        let masked = self
            .masked
            .as_ref()
            .is_some_and(|m| same(presented, m.as_bytes()));
        if values {
            Some(Access::Values)
        } else if masked {
            Some(Access::Masked)
        } else {
            None
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
        };
        assert_eq!(
            tokens.access("v".repeat(20).as_bytes()),
            Some(Access::Values)
        );
        assert_eq!(
            tokens.access("m".repeat(20).as_bytes()),
            Some(Access::Masked)
        );
        assert_eq!(tokens.access(b"v"), None);
        assert_eq!(tokens.access(b""), None);
        assert!(!format!("{tokens:?}").contains('v'));
    }
}
