//! What a connector author implements: its declaration and its render,
//! over fields the host has already checked and expanded.

use std::fmt;
use std::str::FromStr;

pub use keyward_template::egress::{DestinationPart, OutputKind};

use crate::fxhash::FxHashMap;
use crate::text::Text;

/// A keyward connector.
pub trait Connector: 'static {
    /// Name, version and the fields this connector takes.
    fn info() -> ConnectorInfo;

    /// Builds the connection from fields the host expanded: plain text, or
    /// sealed text the connector composes into its outputs.
    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError>;
}

/// Declaration of a connector.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    /// Short machine name, such as `postgres`.
    pub name: String,
    /// The connector's own version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// The fields it takes.
    pub fields: Vec<Field>,
    /// Run on every render, with the real clocks and random, instead of
    /// having the host replay the answer of the first render of a
    /// configuration (see [`ConnectorInfo::run_every_render`]).
    pub run_every_render: bool,
}

impl ConnectorInfo {
    /// Starts a declaration.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            fields: Vec::new(),
            run_every_render: false,
        }
    }

    /// Asks the host to run the connector on every render. By default the
    /// host keeps the outputs of the first render of a configuration as a
    /// render plan and evaluates that with the current secret values from
    /// then on, without running the connector: a render cannot read its
    /// sealed values, so its outputs depend only on the fields' plain text
    /// and where the sealed pieces stand. A recorded render sees a fixed
    /// clock and a random stream seeded from its configuration; a connector
    /// whose outputs must depend on the time or on fresh randomness opts out
    /// here. (A render that reveals, lists or invalidates is never planned.)
    pub fn run_every_render(mut self) -> Self {
        self.run_every_render = true;
        self
    }

    /// Adds a field.
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }
}

/// One configuration field a connector takes.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key in the host's `[connectors.ID.config]` table.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Whether a render without it is an error.
    pub required: bool,
    /// Whether it should hold a secret (outputs holding secret material are
    /// sensitive whatever this says).
    pub sensitive: bool,
    /// Template used when the field is not configured.
    pub default: Option<String>,
    /// Whether the whole value may be a bare ECS-style ARN.
    pub secret_reference: bool,
    /// The part of a destination it names, if any: what the operator
    /// configures in it is where the host lets this connector's secrets go.
    pub destination: Option<DestinationPart>,
}

impl Field {
    /// An optional, non-sensitive field.
    pub fn new(name: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            required: false,
            sensitive: false,
            default: None,
            secret_reference: false,
            destination: None,
        }
    }

    /// The field must be configured (or have a default).
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The field holds a secret.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// The template used when the field is not configured.
    pub fn default(mut self, template: &str) -> Self {
        self.default = Some(template.into());
        self
    }

    /// The field may be a bare `arn:aws:secretsmanager:...` reference.
    pub fn secret_reference(mut self) -> Self {
        self.secret_reference = true;
        self
    }

    /// The field names a part of where the platform connects; see
    /// [`Field::url`], [`Field::host`], [`Field::port`], [`Field::resource`].
    pub fn destination(mut self, part: DestinationPart) -> Self {
        self.destination = Some(part);
        self
    }

    /// The field is a URL the platform connects to (`https://jira.example.com/rest/`).
    pub fn url(self) -> Self {
        self.destination(DestinationPart::Url)
    }

    /// The field is a host the platform connects to.
    pub fn host(self) -> Self {
        self.destination(DestinationPart::Host)
    }

    /// The field is the port the platform connects to.
    pub fn port(self) -> Self {
        self.destination(DestinationPart::Port)
    }

    /// The field names a resource at the destination (a database, a bucket).
    pub fn resource(self) -> Self {
        self.destination(DestinationPart::Resource)
    }
}

/// One output of a render.
#[derive(Clone, Debug)]
pub struct Output {
    /// Output name, such as `dsn`.
    pub name: String,
    /// The value, plain or composed with sealed parts.
    pub value: Text,
    /// What it is: where the platform connects, what it sends, or a
    /// setting. The host checks destinations against the operator's pins.
    pub kind: OutputKind,
    /// Whether the connector marks it sensitive. The host marks it so
    /// anyway if the value holds a secret that is not public, or if the
    /// render revealed any.
    pub sensitive: bool,
}

impl Output {
    fn of(kind: OutputKind, name: &str, value: impl Into<Text>, sensitive: bool) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            kind,
            sensitive,
        }
    }

    /// A setting (a region, a flag): it may not hold secret material.
    pub fn setting(name: &str, value: impl Into<Text>) -> Self {
        Self::of(OutputKind::Setting, name, value, false)
    }

    /// Where the platform connects: a URL, a DSN, a host, a port, a
    /// database. The host refuses a render whose secrets such an output
    /// would take anywhere the operator did not configure.
    pub fn destination(name: &str, value: impl Into<Text>) -> Self {
        Self::of(OutputKind::Destination, name, value, false)
    }

    /// What the platform sends (a password, a key, a user name, a header
    /// value). Sensitive when it holds secret material, as every output.
    pub fn credential(name: &str, value: impl Into<Text>) -> Self {
        Self::of(OutputKind::Credential, name, value, false)
    }

    /// A setting; the same as [`Output::setting`].
    pub fn new(name: &str, value: impl Into<Text>) -> Self {
        Self::setting(name, value)
    }

    /// A credential the connector marks sensitive even when it holds no
    /// secret material.
    pub fn secret(name: &str, value: impl Into<Text>) -> Self {
        Self::of(OutputKind::Credential, name, value, true)
    }
}

/// Why a render failed. Never put a secret value in `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// The configuration field at fault.
    pub field: Option<String>,
    /// 1-based character column in that field's template.
    pub column: Option<u32>,
    /// What was wrong.
    pub message: String,
}

impl RenderError {
    /// An error not tied to one field.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error about `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            column: None,
            message: message.into(),
        }
    }

    /// An error at a 1-based character column of `field`'s template.
    pub fn at(field: &str, column: u32, message: impl Into<String>) -> Self {
        Self {
            column: Some(column),
            ..Self::field(field, message)
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, self.column) {
            (Some(field), Some(column)) => {
                write!(f, "field `{field}`, column {column}: {}", self.message)
            }
            (Some(field), None) => write!(f, "field `{field}`: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RenderError {}

/// The fields of one render, as the host expanded them.
pub struct Fields {
    values: FxHashMap<String, Text>,
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Fields")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Fields {
    /// The fields given, by name.
    pub fn new(values: impl IntoIterator<Item = (String, Text)>) -> Self {
        Self {
            values: values.into_iter().collect(),
        }
    }

    /// The value of a configured (or defaulted) field.
    pub fn get(&self, name: &str) -> Option<&Text> {
        self.values.get(name)
    }

    /// The value of a field the connector cannot do without.
    pub fn require(&self, name: &str) -> Result<&Text, RenderError> {
        self.get(name)
            .ok_or_else(|| RenderError::field(name, "required field is not configured"))
    }

    /// The text of a field the connector must read (a port, a mode). A
    /// field holding a secret is an error: the operator must configure it
    /// in plain text, or mark the secret public.
    pub fn plain(&self, name: &str) -> Result<Option<&str>, RenderError> {
        self.get(name)
            .map(|text| {
                text.as_plain().ok_or_else(|| {
                    RenderError::field(
                        name,
                        "holds a secret, which this connector cannot read; configure it \
                         in plain text or mark the secret public in the connector's policy",
                    )
                })
            })
            .transpose()
    }

    /// Parses a plain field (a port, a flag); the error names the field,
    /// not the value.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, RenderError> {
        self.plain(name)?
            .map(|text| {
                text.trim().parse().map_err(|_| {
                    RenderError::field(name, format!("not a valid {}", std::any::type_name::<T>()))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields::new([
            ("port".to_string(), Text::plain(" 5432 ")),
            ("host".to_string(), Text::sealed(1)),
            ("mode".to_string(), Text::plain("http")),
        ])
    }

    #[test]
    fn plain_fields_parse_and_sealed_ones_do_not() {
        let fields = fields();
        assert_eq!(fields.parse::<u16>("port").unwrap(), Some(5432));
        assert_eq!(fields.parse::<u16>("absent").unwrap(), None);
        let e = fields.parse::<u16>("mode").unwrap_err();
        assert_eq!(e.to_string(), "field `mode`: not a valid u16");
        let e = fields.plain("host").unwrap_err();
        assert!(e.message.contains("mark the secret public"), "{e}");
        assert!(fields.require("host").unwrap().is_sealed());
        assert_eq!(
            fields.require("user").unwrap_err().to_string(),
            "field `user`: required field is not configured"
        );
        assert!(!format!("{fields:?}").contains("5432"));
    }
}
