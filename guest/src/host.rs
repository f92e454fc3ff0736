//! The glue between the SDK's Rust types and the generated bindings: the
//! host's `secrets` and `log` imports, and the exported functions' bodies.

#[cfg(target_family = "wasm")]
use crate::bindings::keyward::connector::secrets;
use crate::bindings::keyward::connector::{log as wit_log, types};
use crate::connector::{Connector, DestinationPart, Fields, OutputKind, RenderError};
use crate::text::Text;
use keyward_template::compose::{self, Node};
use keyward_template::encode::Encoding;

pub use wit_log::Level;

// Outside a component (a connector's native unit tests) there is no host:
// the imports below would trap, so each has a native stand-in.

/// Writes a line to the host's log (escaped; revealed values masked).
/// Natively (in unit tests) the line goes to stderr.
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
/// rejected; `reference` is written as in a template (`{{ secrets.db }}`).
/// Returns whether the host took it (it rate-limits); natively, never.
pub fn invalidate(reference: &str) -> bool {
    #[cfg(target_family = "wasm")]
    return secrets::invalidate(reference);
    #[cfg(not(target_family = "wasm"))]
    {
        let _ = reference;
        false
    }
}

/// The plaintext of `text`, for a connector that must compute over a
/// secret (sign a request, derive a token). The operator must have granted
/// `reveal` for every secret in it; the host audits it, marks every output
/// of the render sensitive, and masks the value in this connector's logs
/// and errors. Compose instead wherever you can.
pub fn reveal(text: &Text) -> Result<String, RenderError> {
    let nodes = text.to_nodes();
    let mut revealed: Vec<(u64, String)> = Vec::new();
    for node in &nodes {
        if let Node::Sealed(handle) = node
            && !revealed.iter().any(|(h, _)| h == handle)
        {
            revealed.push((*handle, reveal_handle(*handle).map_err(RenderError::new)?));
        }
    }
    let value = compose::evaluate(&nodes, usize::MAX / 8, |handle| {
        revealed
            .iter()
            .find(|(h, _)| *h == handle)
            .map(|(_, text)| text.as_str())
            .ok_or_else(|| "not revealed".to_string())
    })
    .map_err(|e| RenderError::new(e.to_string()));
    for (_, text) in &mut revealed {
        compose::wipe(text);
    }
    value
}

fn reveal_handle(handle: u64) -> Result<String, String> {
    #[cfg(target_family = "wasm")]
    return secrets::reveal(handle);
    #[cfg(not(target_family = "wasm"))]
    crate::testing::reveal(handle)
}

fn to_wit_encoding(encoding: Encoding) -> types::Encoding {
    match encoding {
        Encoding::Percent => types::Encoding::Percent,
        Encoding::Form => types::Encoding::Form,
        Encoding::JsonString => types::Encoding::JsonString,
        Encoding::Base64 => types::Encoding::Base64,
        Encoding::Base64Url => types::Encoding::Base64url,
        Encoding::UriHost => types::Encoding::UriHost,
    }
}

fn to_wit_composition(text: Text) -> types::Composition {
    types::Composition {
        nodes: text
            .into_nodes()
            .into_iter()
            .map(|node| match node {
                Node::Plain(text) => types::Node::Plain(text),
                Node::Sealed(handle) => types::Node::Sealed(handle),
                Node::Concat(parts) => types::Node::Concat(parts),
                Node::Encode(encoding, part) => {
                    types::Node::Encode((to_wit_encoding(encoding), part))
                }
            })
            .collect(),
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
                destination: f.destination.map(|part| match part {
                    DestinationPart::Url => types::DestinationPart::Url,
                    DestinationPart::Host => types::DestinationPart::Host,
                    DestinationPart::Port => types::DestinationPart::Port,
                    DestinationPart::Resource => types::DestinationPart::Resource,
                }),
            })
            .collect(),
        run_every_render: info.run_every_render,
    }
}

pub fn render_exported<C: Connector>(
    fields: Vec<types::Field>,
) -> Result<Vec<types::Output>, types::RenderError> {
    let fields = Fields::new(fields.into_iter().map(|field| {
        let value = Text::concat(field.value.into_iter().map(|piece| match piece {
            types::Text::Plain(text) => Text::plain(text),
            types::Text::Sealed(handle) => Text::sealed(handle),
        }));
        (field.name, value)
    }));
    C::render(&fields)
        .map(|outputs| {
            outputs
                .into_iter()
                .map(|o| types::Output {
                    name: o.name,
                    value: to_wit_composition(o.value),
                    kind: match o.kind {
                        OutputKind::Destination => types::OutputKind::Destination,
                        OutputKind::Credential => types::OutputKind::Credential,
                        OutputKind::Setting => types::OutputKind::Setting,
                    },
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
