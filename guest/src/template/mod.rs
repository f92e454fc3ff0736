//! Connector field templates: parsing the three reference syntaxes and
//! rendering them with resolved values.
//!
//! The engine knows nothing of WebAssembly: it resolves through the
//! [`Resolver`] trait, so it is unit-tested natively with an in-memory
//! resolver and driven by the host's `secrets.get-many` inside a component.

use crate::encode;
mod parse;

use std::fmt;

/// A reference to one secret, as written in a template.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// A name relative to the host's namespace, or an ARN, as written.
    pub name: String,
    /// JSON keys into the value, outermost first.
    pub path: Vec<String>,
    /// A staging label (`AWSCURRENT`, `AWSPREVIOUS`, ...).
    pub version_stage: Option<String>,
    /// One exact version id.
    pub version_id: Option<String>,
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `name.key1.key2@stage` — for messages; a reference holds no value.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        for key in &self.path {
            write!(f, "[{key:?}]")?;
        }
        if let Some(stage) = &self.version_stage {
            write!(f, " (stage {stage})")?;
        }
        if let Some(id) = &self.version_id {
            write!(f, " (version {id})")?;
        }
        Ok(())
    }
}

/// A transformation applied to a value before it is placed in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// RFC 3986 percent-encoding of every byte outside the unreserved set.
    UrlEncode,
    /// A JSON string literal, quotes included.
    Json,
    /// Standard base64 with padding.
    Base64,
}

impl Filter {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "urlencode" => Some(Self::UrlEncode),
            "json" => Some(Self::Json),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }
}

/// One `{{ ... }}` that names a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// What to resolve.
    pub reference: Reference,
    /// Filters, applied left to right.
    pub filters: Vec<Filter>,
    /// 1-based character column of the placeholder's `{{`.
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Secret(Placeholder),
}

/// A parsed field template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// A template that could not be parsed; `column` is 1-based, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Where the problem is.
    pub column: u32,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses a template with `{{ }}` placeholders.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        parse::parse(text)
    }

    /// Parses a field whose whole value is a bare Secrets Manager ARN with
    /// optional ECS `:JSON_KEY:VERSION_STAGE:VERSION_ID` fields.
    pub fn parse_bare_arn(text: &str) -> Result<Self, TemplateError> {
        parse::parse_bare_arn(text)
    }

    /// The placeholders, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Secret(placeholder) => Some(placeholder),
            Segment::Literal(_) => None,
        })
    }

    /// Builds the text, taking each placeholder's value from `value_of`.
    /// Values are inserted as they are: a value is never parsed again.
    pub fn render<V: std::borrow::Borrow<Value>, E>(
        &self,
        mut value_of: impl FnMut(&Placeholder) -> Result<V, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Secret(placeholder) => {
                    let value = value_of(placeholder)?;
                    push_filtered(&mut out, value.borrow(), &placeholder.filters);
                }
            }
        }
        Ok(out)
    }
}

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// A `SecretString`, or the JSON leaf a path selected.
    Text(String),
    /// A `SecretBinary`.
    Bytes(Vec<u8>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(_) => f.write_str("Text(****)"),
            Value::Bytes(_) => f.write_str("Bytes(****)"),
        }
    }
}

/// Appends a value with its filters applied; unfiltered text is copied
/// straight into the output.
fn push_filtered(out: &mut String, value: &Value, filters: &[Filter]) {
    match (value, filters) {
        (Value::Text(text), []) => out.push_str(text),
        _ => out.push_str(&apply_filters(value, filters)),
    }
}

/// Without filters text renders as is and bytes as base64. Each filter
/// encodes the bytes of what came before it.
fn apply_filters(value: &Value, filters: &[Filter]) -> String {
    let bytes = match value {
        Value::Text(text) => text.as_bytes(),
        Value::Bytes(bytes) => bytes,
    };
    let Some((first, rest)) = filters.split_first() else {
        return match value {
            Value::Text(text) => text.clone(),
            Value::Bytes(bytes) => encode::base64(bytes),
        };
    };
    rest.iter()
        .fold(apply_filter(*first, bytes), |text, filter| {
            apply_filter(*filter, text.as_bytes())
        })
}

fn apply_filter(filter: Filter, bytes: &[u8]) -> String {
    match filter {
        Filter::UrlEncode => encode::percent(bytes),
        Filter::Base64 => encode::base64(bytes),
        Filter::Json => match std::str::from_utf8(bytes) {
            Ok(text) => encode::json_string(text),
            Err(_) => encode::json_string(&encode::base64(bytes)),
        },
    }
}

#[cfg(test)]
mod tests;
