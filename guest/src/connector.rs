//! What a connector author implements, and the render pipeline around it.
//!
//! The SDK validates the configured fields against the connector's
//! declaration, parses every template, resolves all references of the
//! render in one [`Resolver::resolve_many`] call (one host crossing), and
//! only then calls the author's [`Connector::render`] with plain values.

use std::any::TypeId;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

use crate::fxhash::FxHashMap;
use crate::template::{Reference, Template, Value};

/// A keyward connector.
pub trait Connector: 'static {
    /// Name, version and the fields this connector takes.
    fn info() -> ConnectorInfo;

    /// Builds the connection from fields whose templates are already resolved.
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
}

impl ConnectorInfo {
    /// Starts a declaration.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            fields: Vec::new(),
        }
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
    /// Whether its value (and outputs built from it) must be masked.
    pub sensitive: bool,
    /// Template used when the field is not configured.
    pub default: Option<String>,
    /// Whether the whole value may be a bare ECS-style ARN.
    pub secret_reference: bool,
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
}

/// One output of a render.
#[derive(Clone)]
pub struct Output {
    /// Output name, such as `dsn`.
    pub name: String,
    /// The rendered text.
    pub value: String,
    /// Masked by the host unless revealed.
    pub sensitive: bool,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.sensitive { "****" } else { &self.value };
        f.debug_struct("Output")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}

impl Output {
    /// A non-sensitive output.
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            sensitive: false,
        }
    }

    /// A sensitive output.
    pub fn secret(name: &str, value: impl Into<String>) -> Self {
        Self {
            sensitive: true,
            ..Self::new(name, value)
        }
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

    fn at(field: &str, column: u32, message: impl Into<String>) -> Self {
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

/// The fields of one render, templates resolved.
pub struct Fields {
    values: FxHashMap<String, String>,
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
    /// The value of a configured (or defaulted) field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a field the connector cannot do without.
    pub fn require(&self, name: &str) -> Result<&str, RenderError> {
        self.get(name)
            .ok_or_else(|| RenderError::field(name, "required field is not configured"))
    }

    /// Parses a field (a port, a flag); the error names the field, not the value.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, RenderError> {
        self.get(name)
            .map(|text| {
                text.trim().parse().map_err(|_| {
                    RenderError::field(name, format!("not a valid {}", std::any::type_name::<T>()))
                })
            })
            .transpose()
    }
}

/// Why the host could not resolve one reference; the message names the
/// reference and never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// Human-readable cause.
    pub message: String,
}

/// The seam to the host's `secrets` interface.
pub trait Resolver {
    /// Resolves references, results in the same order.
    fn resolve_many(&mut self, references: &[Reference]) -> Vec<Result<Value, ResolveError>>;
}

/// A field template with the field it came from.
struct ParsedField<'a> {
    name: &'a str,
    template: Rc<Template>,
}

/// Validates, parses, resolves and renders the configured fields, then runs
/// the connector. `configured` is (field name, template) in config order.
pub fn render<C: Connector>(
    configured: &[(String, String)],
    resolver: &mut impl Resolver,
) -> Result<Vec<Output>, RenderError> {
    let info = info_of::<C>();
    let parsed = parse_fields(&info, configured)?;

    // Distinct references, in order of first use; a render has a handful,
    // so a linear search beats hashing them.
    let mut unique: Vec<Reference> = Vec::new();
    for field in &parsed {
        for placeholder in field.template.placeholders() {
            if !unique.contains(&placeholder.reference) {
                unique.push(placeholder.reference.clone());
            }
        }
    }
    let resolved = if unique.is_empty() {
        Vec::new()
    } else {
        resolver.resolve_many(&unique)
    };
    if resolved.len() != unique.len() {
        return Err(RenderError::new(format!(
            "host answered {} of {} secret references",
            resolved.len(),
            unique.len()
        )));
    }

    let mut values = FxHashMap::default();
    values.reserve(parsed.len());
    for field in &parsed {
        let text = field.template.render(|placeholder| {
            let index = unique
                .iter()
                .position(|r| *r == placeholder.reference)
                .unwrap_or_default();
            match &resolved[index] {
                Ok(value) => Ok(value),
                Err(e) => Err(RenderError::at(
                    field.name,
                    placeholder.column,
                    e.message.clone(),
                )),
            }
        })?;
        values.insert(field.name.to_string(), text);
    }
    C::render(&Fields { values })
}

fn parse_fields<'a>(
    info: &'a ConnectorInfo,
    configured: &'a [(String, String)],
) -> Result<Vec<ParsedField<'a>>, RenderError> {
    let mut given: FxHashMap<&str, &str> = FxHashMap::default();
    for (name, template) in configured {
        if !info.fields.iter().any(|f| f.name == *name) {
            let known: Vec<&str> = info.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(RenderError::field(
                name,
                format!("unknown field; `{}` takes: {}", info.name, known.join(", ")),
            ));
        }
        if given.insert(name, template).is_some() {
            return Err(RenderError::field(name, "configured twice"));
        }
    }
    let mut parsed = Vec::new();
    for field in &info.fields {
        let Some(text) = given
            .get(field.name.as_str())
            .copied()
            .or(field.default.as_deref())
        else {
            if field.required {
                return Err(RenderError::field(
                    &field.name,
                    "required field is not configured",
                ));
            }
            continue;
        };
        let bare =
            field.secret_reference && !text.contains("{{") && text.trim_start().starts_with("arn:");
        let template = parse_cached(text, bare)
            .map_err(|e| RenderError::at(&field.name, e.column, e.message))?;
        parsed.push(ParsedField {
            name: &field.name,
            template,
        });
    }
    Ok(parsed)
}

/// Parsed templates kept for the life of the instance (a warm instance
/// renders the same fields again and again), one map per parse mode so a
/// lookup borrows the text. Bounded; errors are not kept.
const MAX_CACHED_TEMPLATES: usize = 512;

type TemplateCache = FxHashMap<String, Rc<Template>>;

thread_local! {
    static PARSED: std::cell::RefCell<[TemplateCache; 2]> = std::cell::RefCell::default();
    static INFOS: std::cell::RefCell<FxHashMap<TypeId, Rc<ConnectorInfo>>> =
        std::cell::RefCell::default();
}

fn parse_cached(text: &str, bare: bool) -> Result<Rc<Template>, crate::template::TemplateError> {
    let mode = usize::from(bare);
    if let Some(template) = PARSED.with(|p| p.borrow()[mode].get(text).cloned()) {
        return Ok(template);
    }
    let template = Rc::new(if bare {
        Template::parse_bare_arn(text)
    } else {
        Template::parse(text)
    }?);
    PARSED.with(|p| {
        let cache = &mut p.borrow_mut()[mode];
        if cache.len() >= MAX_CACHED_TEMPLATES {
            cache.clear();
        }
        cache.insert(text.to_string(), template.clone());
    });
    Ok(template)
}

/// `C::info()`, built once per instance: it is constant, and rebuilding
/// its strings on every render showed in the profile.
fn info_of<C: Connector>() -> Rc<ConnectorInfo> {
    let id = TypeId::of::<C>();
    if let Some(info) = INFOS.with(|i| i.borrow().get(&id).cloned()) {
        return info;
    }
    let info = Rc::new(C::info());
    INFOS.with(|i| i.borrow_mut().insert(id, info.clone()));
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Echo;

    impl Connector for Echo {
        fn info() -> ConnectorInfo {
            ConnectorInfo::new("echo", "1.0.0", "test")
                .field(Field::new("host", "").required())
                .field(Field::new("port", "").default("5432"))
                .field(Field::new("password", "").sensitive())
                .field(Field::new("token", "").secret_reference())
        }

        fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
            let port: u16 = fields.parse("port")?.unwrap_or(0);
            let mut out = vec![
                Output::new("host", fields.require("host")?),
                Output::new("port", port.to_string()),
            ];
            if let Some(p) = fields.get("password") {
                out.push(Output::secret("password", p));
            }
            if let Some(t) = fields.get("token") {
                out.push(Output::secret("token", t));
            }
            Ok(out)
        }
    }

    /// Serves `name[/key]` from a map and counts calls.
    #[derive(Default)]
    struct MapResolver {
        values: HashMap<String, Value>,
        calls: usize,
        seen: Vec<Reference>,
    }

    impl Resolver for MapResolver {
        fn resolve_many(&mut self, references: &[Reference]) -> Vec<Result<Value, ResolveError>> {
            self.calls += 1;
            self.seen.extend(references.iter().cloned());
            references
                .iter()
                .map(|r| {
                    let key = std::iter::once(r.name.clone())
                        .chain(r.path.iter().cloned())
                        .collect::<Vec<_>>()
                        .join("/");
                    self.values.get(&key).cloned().ok_or_else(|| ResolveError {
                        message: format!("secret `{r}` not found"),
                    })
                })
                .collect()
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn resolver() -> MapResolver {
        let mut r = MapResolver::default();
        r.values
            .insert("host".into(), Value::Text("db.internal".into()));
        r.values
            .insert("db/password".into(), Value::Text("pw".into()));
        r
    }

    #[test]
    fn one_resolve_call_for_all_fields_and_duplicates_collapse() {
        let mut r = resolver();
        let out = render::<Echo>(
            &fields(&[
                ("host", "{{ secrets.host }}"),
                (
                    "password",
                    "{{ secrets.db.password }}-{{ secrets.db.password }}",
                ),
            ]),
            &mut r,
        )
        .unwrap();
        assert_eq!(r.calls, 1);
        assert_eq!(r.seen.len(), 2);
        assert_eq!(out[0].value, "db.internal");
        assert_eq!(out[1].value, "5432");
        assert_eq!(out[2].value, "pw-pw");
        assert!(format!("{out:?}").contains("****") && !format!("{out:?}").contains("pw-pw"));
    }

    #[test]
    fn no_host_call_without_references() {
        let mut r = resolver();
        render::<Echo>(&fields(&[("host", "localhost")]), &mut r).unwrap();
        assert_eq!(r.calls, 0);
    }

    #[test]
    fn errors_name_field_and_column() {
        let mut r = resolver();
        let e = render::<Echo>(&fields(&[("host", "x{{ secrets.nope }}")]), &mut r).unwrap_err();
        assert_eq!((e.field.as_deref(), e.column), (Some("host"), Some(2)));
        assert!(e.message.contains("nope"));
        let e = render::<Echo>(
            &fields(&[("host", "h"), ("password", "{{ secrets.p | bad }}")]),
            &mut r,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `password`, column 16: unknown filter `bad` (expected urlencode, json or base64)"
        );
    }

    #[test]
    fn unknown_missing_and_duplicate_fields() {
        let mut r = resolver();
        let e = render::<Echo>(&fields(&[("host", "h"), ("hots", "x")]), &mut r).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("hots"));
        assert!(e.message.contains("host, port, password, token"));
        let e = render::<Echo>(&fields(&[]), &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `host`: required field is not configured"
        );
        let e = render::<Echo>(&fields(&[("host", "a"), ("host", "b")]), &mut r).unwrap_err();
        assert!(e.message.contains("twice"));
        let e = render::<Echo>(&fields(&[("host", "a"), ("port", "http")]), &mut r).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("port"));
        assert!(!e.message.contains("http"));
    }

    #[test]
    fn bare_arn_only_in_declared_fields() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:api:token::";
        let mut r = resolver();
        r.values.insert(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:api/token".into(),
            Value::Text("t".into()),
        );
        let out = render::<Echo>(&fields(&[("host", arn), ("token", arn)]), &mut r).unwrap();
        assert_eq!(
            out[0].value, arn,
            "a field not declared as a reference stays literal"
        );
        assert_eq!(out[2].value, "t");
    }
}
