//! The public types of running a connector: its declaration, its outputs,
//! and why a run failed.

use std::fmt;

use zeroize::Zeroizing;

pub use keyward_template::egress::{DestinationPart, OutputKind};

/// The mask written in place of a secret value.
pub const MASK: &str = "****";

/// A connector's declaration, as its `describe` returned it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorInfo {
    /// Machine name.
    pub name: String,
    /// The connector's version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// Fields it takes.
    pub fields: Vec<FieldSpec>,
}

/// One field a connector takes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldSpec {
    /// Field name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Must be configured.
    pub required: bool,
    /// Masked in outputs.
    pub sensitive: bool,
    /// Used when not configured.
    pub default: Option<String>,
    /// May be a bare Secrets Manager ARN.
    pub secret_reference: bool,
    /// The part of a destination it names, if any: what the operator
    /// configures in it pins where the connector's secrets may go.
    #[serde(serialize_with = "serialize_part")]
    pub destination: Option<DestinationPart>,
}

fn serialize_part<S: serde::Serializer>(
    part: &Option<DestinationPart>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let name = part.map(|p| match p {
        DestinationPart::Url => "url",
        DestinationPart::Host => "host",
        DestinationPart::Port => "port",
        DestinationPart::Resource => "resource",
    });
    serde::Serialize::serialize(&name, serializer)
}

/// Where a destination output sends the platform, as keyward parsed it.
#[derive(Clone, PartialEq, Eq)]
pub struct DestinationInfo {
    /// The scheme, lowercased, if it is a URL.
    pub scheme: Option<String>,
    /// The host, lowercased (an IPv6 address without brackets).
    pub host: String,
    /// The port: the one written, else the scheme's well-known default.
    pub port: Option<u16>,
    /// Whether the scheme, host or port came from secret material (a host
    /// kept in Secrets Manager): then it is masked wherever the output is.
    pub secret: bool,
}

impl fmt::Debug for DestinationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host: &str = if self.secret { MASK } else { &self.host };
        f.debug_struct("DestinationInfo")
            .field("scheme", &self.scheme)
            .field("host", &host)
            .field("port", &self.port)
            .finish()
    }
}

/// One rendered output.
#[derive(Clone)]
pub struct RenderedValue {
    /// Output name.
    pub name: String,
    /// The text; zeroed on drop.
    pub value: Zeroizing<String>,
    /// Masked unless revealed.
    pub sensitive: bool,
    /// What the connector says it is.
    pub kind: OutputKind,
    /// For a destination, where it sends the platform.
    pub destination: Option<DestinationInfo>,
}

impl fmt::Debug for RenderedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &str = if self.sensitive { MASK } else { &self.value };
        f.debug_struct("RenderedValue")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
            .field("kind", &self.kind)
            .field("destination", &self.destination)
            .finish()
    }
}

/// A render error as the connector reported it: the field and column of
/// the author's template, and a message that holds no secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_render_error(field, column, message))]
pub struct RenderError {
    /// The field at fault.
    pub field: Option<String>,
    /// 1-based character column in the field's template.
    pub column: Option<u32>,
    /// What was wrong.
    pub message: String,
}

fn describe_render_error(field: &Option<String>, column: &Option<u32>, message: &str) -> String {
    match (field, column) {
        (Some(field), Some(column)) => format!("field `{field}`, column {column}: {message}"),
        (Some(field), None) => format!("field `{field}`: {message}"),
        _ => message.to_string(),
    }
}

/// Why running a connector failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The connector rejected its input.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A field's secret could not be read because the backend failed (and
    /// no cached copy was fresh enough); try again later.
    #[error(transparent)]
    Unavailable(RenderError),
    /// An output would take secret material where the operator did not
    /// send it (see [`keyward_template::egress`]).
    #[error(transparent)]
    Egress(EgressRefused),
    /// The guest trapped or the host could not run it.
    #[error("the connector failed: {0}")]
    Trap(String),
}

/// A render refused by the egress check: the connector, the output and
/// why (the part at fault and the pins it missed), never a value. Its
/// message names the output; [`crate::Error::Run`] adds the connector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("output `{output}`: {message}")]
pub struct EgressRefused {
    /// The connector id.
    pub connector: String,
    /// The output at fault (escaped).
    pub output: String,
    /// Why.
    pub message: String,
    /// The connector has no pins at all: it declares no destination field
    /// the operator configured and no `egress` is set.
    pub pinless: bool,
}
