//! # keyward-template: the one implementation of keyward's template grammar
//!
//! Connector field templates reference secrets in three syntaxes (see the
//! README's Policy section): Retool's `{{ secrets.db.password }}`, Workato's
//! `{{workato:sm:KEY:ARN}}` and ECS `valueFrom` ARNs, with the filters
//! `| urlencode`, `| json` and `| base64`.
//!
//! The host parses, validates and expands templates with this crate (so a
//! connector in any language needs no parser of its own), and the Rust SDK
//! uses it to run connectors natively in unit tests. It has no dependencies
//! and knows nothing of WebAssembly or of where values come from:
//!
//! - [`Template`]: one parsed template, errors with 1-based columns;
//! - [`expand`]: a connector's configured fields checked against its
//!   declaration, parsed, and expanded once their references are resolved;
//! - [`compose`]: the compositions a connector returns (plain and sealed
//!   pieces, concatenated and encoded), evaluated within a size bound;
//! - [`encode`]: the encodings filters and compositions apply;
//! - [`destination`] and [`egress`]: destinations parsed the strict way, and
//!   the check that a render's secrets go only where the operator pinned.

pub mod compose;
pub mod destination;
pub mod egress;
pub mod encode;
pub mod expand;
mod parse;

use encode::Encoding;

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

impl Reference {
    /// A reference to a whole secret at its current version.
    pub fn name(name: &str) -> Self {
        Self {
            name: name.into(),
            path: Vec::new(),
            version_stage: None,
            version_id: None,
        }
    }

    /// The reference as a template writes it, ready to paste:
    /// `{{ secrets.db.password }}` where every part allows the dotted form,
    /// else `{{ secrets['a/b']['key'] }}`.
    pub fn paste_form(&self) -> String {
        let plain = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let parts = std::iter::once(&self.name).chain(&self.path);
        if parts.clone().all(|p| plain(p)) {
            let dotted: Vec<&str> = parts.map(String::as_str).collect();
            format!("{{{{ secrets.{} }}}}", dotted.join("."))
        } else {
            let quoted: String = parts
                .map(|p| {
                    if p.contains('\'') {
                        format!("[\"{p}\"]")
                    } else {
                        format!("['{p}']")
                    }
                })
                .collect();
            format!("{{{{ secrets{quoted} }}}}")
        }
    }

    /// A reference to a JSON key path in a secret.
    pub fn key(name: &str, path: &[&str]) -> Self {
        Self {
            path: path.iter().map(|s| s.to_string()).collect(),
            ..Self::name(name)
        }
    }
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
    /// The encoding the filter applies.
    pub fn encoding(self) -> Encoding {
        match self {
            Self::UrlEncode => Encoding::Percent,
            Self::Json => Encoding::JsonString,
            Self::Base64 => Encoding::Base64,
        }
    }

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

    /// The template's parts in order: literal text as written, and each
    /// placeholder's value (from `value_of`) with its filters applied,
    /// tagged with what `value_of` was given. Adjacent literals are one part.
    pub fn render_parts<'v, T, E>(
        &self,
        mut value_of: impl FnMut(&Placeholder) -> Result<(ValueRef<'v>, T), E>,
    ) -> Result<Vec<Part<T>>, E> {
        let mut parts = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => match parts.last_mut() {
                    Some(Part::Literal(last)) => last.push_str(text),
                    _ => parts.push(Part::Literal(text.clone())),
                },
                Segment::Secret(placeholder) => {
                    let (value, tag) = value_of(placeholder)?;
                    let mut text = String::new();
                    push_filtered(&mut text, value, &placeholder.filters);
                    parts.push(Part::Value { text, tag });
                }
            }
        }
        Ok(parts)
    }

    /// Builds the text, taking each placeholder's value from `value_of`.
    /// Values are inserted as they are: a value is never parsed again.
    pub fn render<'v, E>(
        &self,
        mut value_of: impl FnMut(&Placeholder) -> Result<ValueRef<'v>, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Secret(placeholder) => {
                    let value = value_of(placeholder)?;
                    push_filtered(&mut out, value, &placeholder.filters);
                }
            }
        }
        Ok(out)
    }
}

/// One part of a rendered template. A value's text is never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Part<T> {
    /// Literal text from the template.
    Literal(String),
    /// A placeholder's filtered value, with the caller's tag.
    Value {
        /// The value, filters applied.
        text: String,
        /// What the caller tagged it with (a reference index, say).
        tag: T,
    },
}

impl<T: fmt::Debug> fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Literal(text) => f.debug_tuple("Literal").field(text).finish(),
            Part::Value { tag, .. } => f
                .debug_struct("Value")
                .field("tag", tag)
                .finish_non_exhaustive(),
        }
    }
}

/// A resolved secret value, owned (the SDK's test secrets; the host keeps
/// its own zeroizing type and lends a [`ValueRef`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// A `SecretString`, or the JSON leaf a path selected.
    Text(String),
    /// A `SecretBinary`.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value, borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Text(text) => ValueRef::Text(text),
            Value::Bytes(bytes) => ValueRef::Bytes(bytes),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(_) => f.write_str("Text(****)"),
            Value::Bytes(_) => f.write_str("Bytes(****)"),
        }
    }
}

/// A resolved secret value, borrowed from wherever it is kept.
#[derive(Clone, Copy)]
pub enum ValueRef<'a> {
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
}

impl fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Text(_) => f.write_str("Text(****)"),
            ValueRef::Bytes(_) => f.write_str("Bytes(****)"),
        }
    }
}

/// Appends a value with its filters applied: without filters text goes in
/// as it is and bytes as base64; each filter encodes the bytes of what came
/// before it.
pub(crate) fn push_filtered(out: &mut String, value: ValueRef<'_>, filters: &[Filter]) {
    let bytes = match (value, filters) {
        (ValueRef::Text(text), []) => return out.push_str(text),
        (ValueRef::Bytes(bytes), []) => return out.push_str(&encode::base64(bytes)),
        (ValueRef::Text(text), _) => text.as_bytes(),
        (ValueRef::Bytes(bytes), _) => bytes,
    };
    let mut encoded = filters[0].encoding().apply(bytes);
    for filter in &filters[1..] {
        encoded = filter.encoding().apply(encoded.as_bytes());
    }
    out.push_str(&encoded);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod paste_form_tests {
    use super::Reference;

    #[test]
    fn paste_forms() {
        assert_eq!(
            Reference::key("db", &["password"]).paste_form(),
            "{{ secrets.db.password }}"
        );
        assert_eq!(
            Reference::key("team/db", &["it's"]).paste_form(),
            r#"{{ secrets['team/db']["it's"] }}"#
        );
    }
}
