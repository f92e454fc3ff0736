//! A connector's configured fields, checked against what it declares,
//! parsed, and expanded once their references are resolved.
//!
//! Expansion runs in two steps so that resolving (the host's work, which may
//! wait on a backend) happens between them: [`plan`] checks and parses the
//! fields and collects their distinct references, and [`Plan::expand`] builds
//! each field's text from the resolved values.

use std::fmt;

use crate::{Part, Reference, Template, ValueRef};

/// What a connector declares of one field, as far as expansion needs it.
#[derive(Debug, Clone, Copy)]
pub struct FieldDecl<'a> {
    /// The field's name.
    pub name: &'a str,
    /// Whether a render without it is an error.
    pub required: bool,
    /// The template used when it is not configured.
    pub default: Option<&'a str>,
    /// Whether the whole value may be a bare Secrets Manager ARN.
    pub secret_reference: bool,
}

/// A field the connector cannot be given, with where: the field, and the
/// 1-based character column in its template when one is at fault. The
/// message names references, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The configuration field at fault.
    pub field: String,
    /// 1-based character column in that field's template.
    pub column: Option<u32>,
    /// What was wrong and what was expected.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            column: None,
            message: message.into(),
        }
    }

    fn at(field: &str, column: u32, message: impl Into<String>) -> Self {
        Self {
            column: Some(column),
            ..Self::new(field, message)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(
                f,
                "field `{}`, column {column}: {}",
                self.field, self.message
            ),
            None => write!(f, "field `{}`: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for FieldError {}

/// One field to expand: its name, its parsed template, and which of the
/// plan's references each of its placeholders uses.
#[derive(Debug, Clone)]
struct PlannedField {
    name: String,
    template: Template,
    uses: Vec<usize>,
    configured: bool,
}

/// Fields checked and parsed, their distinct references collected.
#[derive(Debug, Clone)]
pub struct Plan {
    fields: Vec<PlannedField>,
    references: Vec<Reference>,
}

/// One expanded field: its literal parts and each reference's value, in
/// order, a value tagged with its index in [`Plan::references`].
#[derive(Clone, Debug)]
pub struct Expanded {
    /// The field's name.
    pub name: String,
    /// Literal text and values; a literal field is one literal part.
    pub parts: Vec<Part<usize>>,
    /// Whether it was configured (else it is the connector's default).
    pub configured: bool,
}

impl Expanded {
    /// The field's whole text.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) | Part::Value { text, .. } => text.as_str(),
            })
            .collect()
    }

    /// The plan's references this field uses, in order (with repeats).
    pub fn references(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Value { tag, .. } => Some(*tag),
            Part::Literal(_) => None,
        })
    }
}

/// Checks `configured` (field name, template) against the declaration —
/// unknown fields, fields configured twice, required fields missing —
/// applies defaults, and parses every template. A field declared as a
/// secret reference whose whole value is a bare ARN is parsed as one.
pub fn plan(
    connector: &str,
    decls: &[FieldDecl<'_>],
    configured: &[(String, String)],
) -> Result<Plan, FieldError> {
    for (index, (name, _)) in configured.iter().enumerate() {
        if !decls.iter().any(|d| d.name == name) {
            let known: Vec<&str> = decls.iter().map(|d| d.name).collect();
            return Err(FieldError::new(
                name,
                format!("unknown field; `{connector}` takes: {}", known.join(", ")),
            ));
        }
        if configured[..index]
            .iter()
            .any(|(earlier, _)| earlier == name)
        {
            return Err(FieldError::new(name, "configured twice"));
        }
    }
    let mut plan = Plan {
        fields: Vec::with_capacity(decls.len()),
        references: Vec::new(),
    };
    for decl in decls {
        let given = configured
            .iter()
            .find(|(name, _)| name == decl.name)
            .map(|(_, template)| template.as_str());
        let Some(text) = given.or(decl.default) else {
            if decl.required {
                return Err(FieldError::new(
                    decl.name,
                    "required field is not configured",
                ));
            }
            continue;
        };
        let template = parse_field(text, decl.secret_reference)
            .map_err(|e| FieldError::at(decl.name, e.column, e.message))?;
        let uses = template
            .placeholders()
            .map(|placeholder| plan.index_of(&placeholder.reference))
            .collect();
        plan.fields.push(PlannedField {
            name: decl.name.to_string(),
            template,
            uses,
            configured: given.is_some(),
        });
    }
    Ok(plan)
}

/// Parses one field's template: as a bare ARN if the field may be one and
/// its whole value is one, else as a template with `{{ }}` placeholders.
pub fn parse_field(text: &str, secret_reference: bool) -> Result<Template, crate::TemplateError> {
    if secret_reference && !text.contains("{{") && text.trim_start().starts_with("arn:") {
        Template::parse_bare_arn(text)
    } else {
        Template::parse(text)
    }
}

impl Plan {
    /// The index of a reference, added if new. A render has a handful, so
    /// a linear search beats hashing them.
    fn index_of(&mut self, reference: &Reference) -> usize {
        match self.references.iter().position(|r| r == reference) {
            Some(index) => index,
            None => {
                self.references.push(reference.clone());
                self.references.len() - 1
            }
        }
    }

    /// The distinct references of all fields, in order of first use:
    /// resolve these, then [`Plan::expand`].
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// Whether the field named `name` holds a reference (a field that is
    /// not configured and has no default holds none).
    pub fn field_uses_references(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|field| field.name == name && !field.uses.is_empty())
    }

    /// Each field's parts, taking reference `i`'s value from
    /// `value_of(i)`; an unresolved reference is an error at its
    /// placeholder's column, with `value_of`'s message.
    pub fn expand<'v>(
        &self,
        mut value_of: impl FnMut(usize) -> Result<ValueRef<'v>, String>,
    ) -> Result<Vec<Expanded>, FieldError> {
        self.fields
            .iter()
            .map(|field| {
                let mut next = field.uses.iter();
                let parts = field.template.render_parts(|placeholder| {
                    let index = next.next().copied().unwrap_or_default();
                    value_of(index)
                        .map(|value| (value, index))
                        .map_err(|message| FieldError::at(&field.name, placeholder.column, message))
                })?;
                Ok(Expanded {
                    name: field.name.clone(),
                    parts,
                    configured: field.configured,
                })
            })
            .collect()
    }
}

impl Plan {
    /// Each placeholder's value, filtered, in the order [`Plan::expand`]
    /// places them (fields in declaration order, placeholders left to
    /// right), given to `each` with its field's name and its reference's
    /// index; the literal text is not built. For a host that knows the
    /// fields' shape already and needs only their values.
    pub fn values<'v>(
        &self,
        mut value_of: impl FnMut(usize) -> Result<ValueRef<'v>, String>,
        mut each: impl FnMut(&str, usize, String),
    ) -> Result<(), FieldError> {
        for field in &self.fields {
            for (placeholder, &index) in field.template.placeholders().zip(&field.uses) {
                let value = value_of(index)
                    .map_err(|message| FieldError::at(&field.name, placeholder.column, message))?;
                let mut text = String::new();
                crate::push_filtered(&mut text, value, &placeholder.filters);
                each(&field.name, index, text);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLS: [FieldDecl<'static>; 4] = [
        FieldDecl {
            name: "host",
            required: true,
            default: None,
            secret_reference: false,
        },
        FieldDecl {
            name: "port",
            required: false,
            default: Some("5432"),
            secret_reference: false,
        },
        FieldDecl {
            name: "password",
            required: false,
            default: None,
            secret_reference: true,
        },
        FieldDecl {
            name: "token",
            required: false,
            default: None,
            secret_reference: false,
        },
    ];

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn duplicates_collapse_and_defaults_apply() {
        let plan = plan(
            "echo",
            &DECLS,
            &fields(&[
                ("host", "{{ secrets.host }}"),
                (
                    "password",
                    "{{ secrets.db.pw }}-{{ secrets.db.pw | base64 }}",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(plan.references().len(), 2);
        let values = ["db.internal", "pw"];
        let expanded = plan.expand(|i| Ok(ValueRef::Text(values[i]))).unwrap();
        let shown: Vec<(&str, String, Vec<usize>)> = expanded
            .iter()
            .map(|e| (e.name.as_str(), e.text(), e.references().collect()))
            .collect();
        assert_eq!(
            shown,
            [
                ("host", "db.internal".into(), vec![0]),
                ("port", "5432".into(), vec![]),
                ("password", "pw-cHc=".into(), vec![1, 1])
            ]
        );
        assert_eq!(expanded[2].parts.len(), 3, "value, literal, value");
        assert_eq!(expanded[2].parts[1], Part::Literal("-".into()));
        assert!(!format!("{expanded:?}").contains("pw"));
    }

    #[test]
    fn values_are_the_expansions_values_in_order() {
        let plan = plan(
            "echo",
            &DECLS,
            &fields(&[
                ("host", "db-{{ secrets.host | urlencode }}"),
                ("password", "{{ secrets.db.pw }}:{{ secrets.host }}"),
            ]),
        )
        .unwrap();
        let values = ["a b", "pw"];
        let value_of = |i: usize| Ok(ValueRef::Text(values[i]));
        let expanded: Vec<(String, usize, String)> = plan
            .expand(value_of)
            .unwrap()
            .into_iter()
            .flat_map(|e| {
                let name = e.name.clone();
                e.parts.into_iter().filter_map(move |part| match part {
                    Part::Value { text, tag } => Some((name.clone(), tag, text)),
                    Part::Literal(_) => None,
                })
            })
            .collect();
        let mut seen = Vec::new();
        plan.values(value_of, |field, tag, text| {
            seen.push((field.to_string(), tag, text))
        })
        .unwrap();
        assert_eq!(seen, expanded);
        assert_eq!(seen[0], ("host".to_string(), 0, "a%20b".to_string()));
        assert!(plan.field_uses_references("host"));
        assert!(!plan.field_uses_references("port"));
        let missing = plan
            .values(|_| Err("gone".into()), |_, _, _| ())
            .unwrap_err();
        assert_eq!((missing.field.as_str(), missing.column), ("host", Some(4)));
    }

    #[test]
    fn errors_name_field_and_column() {
        let plan1 = plan("echo", &DECLS, &fields(&[("host", "x{{ secrets.nope }}")])).unwrap();
        let e = plan1
            .expand(|_| Err("secret `nope` was not found".into()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `host`, column 2: secret `nope` was not found"
        );
        let e = plan(
            "echo",
            &DECLS,
            &fields(&[("host", "h"), ("token", "{{ secrets.p | bad }}")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `token`, column 16: unknown filter `bad` (expected urlencode, json or base64)"
        );
    }

    #[test]
    fn unknown_missing_and_duplicate_fields() {
        let e = plan("echo", &DECLS, &fields(&[("host", "h"), ("hots", "x")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `hots`: unknown field; `echo` takes: host, port, password, token"
        );
        let e = plan("echo", &DECLS, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `host`: required field is not configured"
        );
        let e = plan("echo", &DECLS, &fields(&[("host", "a"), ("host", "b")])).unwrap_err();
        assert_eq!(e.to_string(), "field `host`: configured twice");
    }

    #[test]
    fn bare_arn_only_in_declared_fields() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:api:token::";
        let plan = plan("echo", &DECLS, &fields(&[("host", arn), ("password", arn)])).unwrap();
        assert_eq!(plan.references().len(), 1);
        assert_eq!(plan.references()[0].path, ["token"]);
        let expanded = plan.expand(|_| Ok(ValueRef::Text("t"))).unwrap();
        assert_eq!(
            expanded[0].text(),
            arn,
            "a field not declared as a reference stays literal"
        );
        assert_eq!(expanded[2].text(), "t");
    }
}
