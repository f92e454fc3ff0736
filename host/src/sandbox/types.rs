//! The public types of running a connector: its declaration, its outputs,
//! and why a run failed.

use std::fmt;

use zeroize::Zeroizing;

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
}

impl fmt::Debug for RenderedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &str = if self.sensitive { MASK } else { &self.value };
        f.debug_struct("RenderedValue")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
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
    /// The guest trapped or the host could not run it.
    #[error("the connector failed: {0}")]
    Trap(String),
}
