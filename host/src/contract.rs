//! The public types of running a connector: its declaration, its outputs,
//! and why a run failed. A leaf: everything above uses these, they use
//! nothing of the host's.

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
    /// Runs on every render: its renders are never planned.
    pub run_every_render: bool,
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
    /// The guest was stopped: a bound it passed, its own fault, or the
    /// host's.
    #[error("the connector failed: {0}")]
    Trap(Trap),
}

impl RunError {
    /// The kind of trap, if the run trapped.
    pub fn trap_kind(&self) -> Option<TrapKind> {
        match self {
            RunError::Trap(trap) => Some(trap.kind),
            _ => None,
        }
    }
}

/// Why a connector was stopped, in one line that holds no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Trap {
    /// What stopped it.
    pub kind: TrapKind,
    /// The cause, naming the bound and its setting where there is one.
    pub message: String,
}

impl Trap {
    /// A trap of this kind.
    pub fn new(kind: TrapKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What stopped a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrapKind {
    /// It ran past its CPU deadline (`sandbox.render_timeout_ms`).
    CpuDeadline,
    /// Its render took longer than the wall-clock deadline
    /// (`sandbox.render_wall_timeout_ms`).
    WallDeadline,
    /// It grew its memory past its limit (`sandbox.max_memory_mb`).
    Memory,
    /// It made more host calls than one render may
    /// (`sandbox.max_host_calls`).
    HostCalls,
    /// It passed more bytes to the host in one call than it may (twice
    /// `sandbox.max_output_kb`).
    HostcallBytes,
    /// It overflowed its stack (deep recursion).
    StackOverflow,
    /// Its own fault: `unreachable` (a panic, a failed allocation), a bad
    /// memory access, a bad call.
    Guest,
    /// The host could not run it (an instance could not be made, say).
    Host,
}

impl TrapKind {
    /// A stable name for APIs and metrics: `cpu_deadline`, `memory`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::CpuDeadline => "cpu_deadline",
            TrapKind::WallDeadline => "wall_deadline",
            TrapKind::Memory => "memory",
            TrapKind::HostCalls => "host_calls",
            TrapKind::HostcallBytes => "hostcall_bytes",
            TrapKind::StackOverflow => "stack_overflow",
            TrapKind::Guest => "guest",
            TrapKind::Host => "host",
        }
    }

    /// Whether it is one of the two deadlines.
    pub fn is_deadline(self) -> bool {
        matches!(self, TrapKind::CpuDeadline | TrapKind::WallDeadline)
    }
}

/// A render refused by the egress check: the connector, the output and
/// why (the part at fault and the pins it missed), never a value. Its
/// message names the output; the host's error adds the connector.
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

/// A rendered connection.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The connector id.
    pub connector: String,
    /// Outputs in the connector's order.
    pub values: Vec<RenderedValue>,
}

impl Rendered {
    /// The value of one output.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }

    /// `{"name": "value", ...}`; sensitive values are `****` unless `reveal`.
    pub fn to_json(&self, reveal: bool) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|v| {
                let shown = if v.sensitive && !reveal {
                    MASK
                } else {
                    v.value.as_str()
                };
                (v.name.clone(), serde_json::Value::String(shown.to_string()))
            })
            .collect();
        serde_json::to_string_pretty(&map).unwrap_or_default()
    }
}
