//! The glue between the SDK's plain Rust types and the generated bindings:
//! the host-backed [`Resolver`] and the exported functions' bodies.

use crate::bindings::keyward::connector::{log as wit_log, secrets, types};
use crate::connector::{self, Connector, RenderError, ResolveError, Resolver};
use crate::template::{Reference, Value};

pub use wit_log::Level;

// Outside a component (a connector's native unit tests) there is no host:
// the imports below would trap, so each has a native stand-in.

/// Writes a line to the host's log. The host masks secret values this
/// connector received, but do not log them on purpose. Natively (in unit
/// tests) the line goes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    wit_log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("{level:?}: {message}");
}

/// Names (relative to the host's namespace) this connector may use; none
/// natively.
pub fn list_secrets() -> Vec<String> {
    #[cfg(target_family = "wasm")]
    return secrets::list();
    #[cfg(not(target_family = "wasm"))]
    Vec::new()
}

/// Asks the host to drop its cached copy of a secret whose credentials were
/// rejected. Returns whether anything was dropped (the host rate-limits);
/// natively, nothing is.
pub fn invalidate(reference: &Reference) -> bool {
    #[cfg(target_family = "wasm")]
    return secrets::invalidate(&to_wit_ref(reference));
    #[cfg(not(target_family = "wasm"))]
    {
        let _ = reference;
        false
    }
}

fn to_wit_ref(r: &Reference) -> secrets::SecretRef {
    secrets::SecretRef {
        name: r.name.clone(),
        path: r.path.clone(),
        version_stage: r.version_stage.clone(),
        version_id: r.version_id.clone(),
    }
}

/// Resolves references through the host's `secrets.get-many`.
#[derive(Debug, Default)]
pub struct HostResolver;

impl Resolver for HostResolver {
    fn resolve_many(&mut self, references: &[Reference]) -> Vec<Result<Value, ResolveError>> {
        let refs: Vec<secrets::SecretRef> = references.iter().map(to_wit_ref).collect();
        secrets::get_many(&refs)
            .into_iter()
            .map(|result| match result {
                Ok(secrets::SecretValue::Text(text)) => Ok(Value::Text(text)),
                Ok(secrets::SecretValue::Bytes(bytes)) => Ok(Value::Bytes(bytes)),
                Err(e) => Err(ResolveError {
                    message: describe_error(&e),
                }),
            })
            .collect()
    }
}

/// One sentence per case; details come from the host and hold no values.
fn describe_error(error: &secrets::SecretError) -> String {
    use secrets::SecretError as E;
    match error {
        E::NotFound(reference) => {
            format!("secret `{reference}` was not found or is not allowed for this connector")
        }
        E::InvalidReference(d) => {
            format!("invalid secret reference `{}`: {}", d.reference, d.detail)
        }
        E::NotJson(reference) => {
            format!("secret `{reference}` is not a JSON object, so it has no keys")
        }
        E::MissingKey(d) => format!("secret `{}` has no key {}", d.reference, d.detail),
        E::Unavailable(d) => format!("secret `{}` is unavailable: {}", d.reference, d.detail),
    }
}

pub fn describe<C: Connector>() -> types::ConnectorInfo {
    let info = C::info();
    types::ConnectorInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        fields: info
            .fields
            .into_iter()
            .map(|f| types::FieldSpec {
                name: f.name,
                description: f.description,
                required: f.required,
                sensitive: f.sensitive,
                default_value: f.default,
                secret_reference: f.secret_reference,
            })
            .collect(),
    }
}

pub fn render_exported<C: Connector>(
    fields: Vec<types::FieldValue>,
) -> Result<Vec<types::RenderedValue>, types::RenderError> {
    let configured: Vec<(String, String)> =
        fields.into_iter().map(|f| (f.name, f.template)).collect();
    connector::render::<C>(&configured, &mut HostResolver)
        .map(|outputs| {
            outputs
                .into_iter()
                .map(|o| types::RenderedValue {
                    name: o.name,
                    value: o.value,
                    sensitive: o.sensitive,
                })
                .collect()
        })
        .map_err(
            |RenderError {
                 field,
                 column,
                 message,
             }| types::RenderError {
                field,
                column,
                message,
            },
        )
}
