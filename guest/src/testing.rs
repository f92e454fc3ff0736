//! Unit-testing a connector natively, without a host: secrets in memory,
//! expanded and sealed the way the host does it, outputs evaluated and
//! marked sensitive the way the host does it. Only here can a test read
//! what a sealed output turned into.
//!
//! ```
//! use keyward_guest::testing::TestSecrets;
//! # use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError, compose};
//! # struct Api;
//! # impl Connector for Api {
//! #     fn info() -> ConnectorInfo {
//! #         ConnectorInfo::new("api", "0.1.0", "An API")
//! #             .field(Field::new("url", "Base URL").required().url())
//! #             .field(Field::new("token", "Token").required())
//! #     }
//! #     fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
//! #         Ok(vec![
//! #             Output::credential("authorization", compose!["Bearer ", fields.require("token")?]),
//! #             Output::destination("url", fields.require("url")?),
//! #         ])
//! #     }
//! # }
//!
//! let mut secrets = TestSecrets::new().key("api", "token", "t0k3n");
//! let fields = [("url", "https://api.example.com/"), ("token", "{{ secrets.api.token }}")];
//! let outputs = secrets.render::<Api>(&fields).unwrap();
//! assert_eq!(outputs[0].value, "Bearer t0k3n");
//! assert!(outputs[0].sensitive, "it holds a secret, so the host masks it");
//! assert_eq!(secrets.calls(), 1);
//!
//! // The host's egress check runs too: a secret sent elsewhere is refused.
//! let moved = [("url", "{{ secrets.api.token }}.attacker.example"), ("token", "x")];
//! assert!(secrets.render::<Api>(&moved).is_err());
//! ```

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use keyward_template::compose;
use keyward_template::egress::{self, CheckedOutput, Egress, PinField, Pins};
use keyward_template::expand::{self, FieldDecl};
use keyward_template::{Part, Reference, Value};

use crate::connector::{Connector, Fields, OutputKind, RenderError};
use crate::text::Text;

/// The host's default bounds on a render's outputs: how many, their bytes
/// in all, and what a sealed piece counts as in them.
const MAX_OUTPUTS: usize = 64;
const MAX_OUTPUT_BYTES: usize = 4 << 20;
const MAX_SECRET_BYTES: usize = 64 << 10;

/// One output as the host would hand it to the platform.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Output name.
    pub name: String,
    /// The evaluated text.
    pub value: String,
    /// Whether the host would mask it.
    pub sensitive: bool,
    /// What the connector says it is.
    pub kind: OutputKind,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.sensitive { "****" } else { &self.value };
        f.debug_struct("Rendered")
            .field("name", &self.name)
            .field("value", &value)
            .field("sensitive", &self.sensitive)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Secrets held in memory, keyed by name, JSON path and staging label.
///
/// Names are matched exactly as written (no namespace, no ARN parsing): a
/// test states the references its templates use. A reference with a version
/// stage other than `AWSCURRENT` resolves only if that stage was added with
/// [`TestSecrets::staged`].
#[derive(Default)]
pub struct TestSecrets {
    values: HashMap<(String, Vec<String>, String), Value>,
    public: HashSet<String>,
    reveal: bool,
    egress: Option<Egress>,
    calls: usize,
}

impl std::fmt::Debug for TestSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSecrets")
            .field("secrets", &self.values.len())
            .field("calls", &self.calls)
            .finish()
    }
}

const CURRENT: &str = "AWSCURRENT";

/// The sealed texts of the render under way, by handle (natively).
#[derive(Default)]
struct Sealed {
    texts: Vec<String>,
    reveal: bool,
    revealed: bool,
}

thread_local! {
    static SEALED: RefCell<Sealed> = RefCell::default();
}

/// `reveal` natively: the sealed text, if the test granted reveal.
pub(crate) fn reveal(handle: u64) -> Result<String, String> {
    SEALED.with(|sealed| {
        let mut sealed = sealed.borrow_mut();
        if !sealed.reveal {
            return Err("reveal is not granted to this connector".into());
        }
        sealed.revealed = true;
        usize::try_from(handle)
            .ok()
            .and_then(|i| sealed.texts.get(i).cloned())
            .ok_or_else(|| format!("sealed value {handle} is not from this render"))
    })
}

impl TestSecrets {
    /// No secrets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A whole `SecretString`: `{{ secrets.NAME }}`.
    pub fn text(self, name: &str, value: &str) -> Self {
        self.at(name, &[], CURRENT, Value::Text(value.into()))
    }

    /// One key of a JSON secret: `{{ secrets.NAME.KEY }}`.
    pub fn key(self, name: &str, key: &str, value: &str) -> Self {
        self.at(name, &[key], CURRENT, Value::Text(value.into()))
    }

    /// A `SecretBinary`: rendered as base64 unless a filter says otherwise.
    pub fn bytes(self, name: &str, value: &[u8]) -> Self {
        self.at(name, &[], CURRENT, Value::Bytes(value.to_vec()))
    }

    /// One key of a JSON secret at a staging label such as `AWSPREVIOUS`.
    pub fn staged(self, name: &str, key: &str, stage: &str, value: &str) -> Self {
        self.at(name, &[key], stage, Value::Text(value.into()))
    }

    /// Marks a secret public, as an operator's policy would: fields using
    /// only public secrets arrive in plain text.
    pub fn public(mut self, name: &str) -> Self {
        self.public.insert(name.into());
        self
    }

    /// Sets the operator's explicit destinations, as `egress` in the
    /// host's configuration does: they replace the pins the host derives
    /// from the connector's destination fields.
    ///
    /// # Panics
    /// If an entry is not a destination (a test's own mistake).
    pub fn egress(mut self, entries: &[&str]) -> Self {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        match Egress::parse(&entries, false) {
            Ok(egress) => self.egress = Some(egress),
            Err(e) => panic!("egress: {e}"),
        }
        self
    }

    /// Grants `reveal`, as an operator's policy would.
    pub fn with_reveal(mut self) -> Self {
        self.reveal = true;
        self
    }

    fn at(mut self, name: &str, path: &[&str], stage: &str, value: Value) -> Self {
        let path = path.iter().map(|k| k.to_string()).collect();
        self.values.insert((name.into(), path, stage.into()), value);
        self
    }

    /// How many times renders resolved references (the host does it once
    /// per render, for all fields).
    pub fn calls(&self) -> usize {
        self.calls
    }

    fn lookup(&self, reference: &Reference) -> Result<&Value, String> {
        let stage = reference.version_stage.as_deref().unwrap_or(CURRENT);
        let key = (
            reference.name.clone(),
            reference.path.clone(),
            stage.to_string(),
        );
        self.values.get(&key).ok_or_else(|| {
            format!("secret `{reference}` was not found or is not allowed for this connector")
        })
    }

    /// Renders connector `C` from `(field, template)` pairs, as the host
    /// would: fields checked, expanded and sealed, the connector run, its
    /// outputs evaluated and marked sensitive where they hold secrets.
    pub fn render<C: Connector>(
        &mut self,
        fields: &[(&str, &str)],
    ) -> Result<Vec<Rendered>, RenderError> {
        let info = C::info();
        let decls: Vec<FieldDecl<'_>> = info
            .fields
            .iter()
            .map(|f| FieldDecl {
                name: &f.name,
                required: f.required,
                default: f.default.as_deref(),
                secret_reference: f.secret_reference,
            })
            .collect();
        let configured: Vec<(String, String)> = fields
            .iter()
            .map(|(name, template)| (name.to_string(), template.to_string()))
            .collect();
        let field_error = |e: expand::FieldError| RenderError {
            field: Some(e.field),
            column: e.column,
            message: e.message,
        };
        let plan = expand::plan(&info.name, &decls, &configured).map_err(field_error)?;
        if !plan.references().is_empty() {
            self.calls += 1;
        }
        let expanded = plan
            .expand(|i| self.lookup(&plan.references()[i]).map(Value::as_ref))
            .map_err(field_error)?;
        let mut sealed = Sealed {
            reveal: self.reveal,
            ..Sealed::default()
        };
        let expanded_destinations: Vec<(usize, String, bool)> = expanded
            .iter()
            .filter_map(|field| {
                let at = info
                    .fields
                    .iter()
                    .position(|f| f.name == field.name && f.destination.is_some())?;
                Some((at, field.text(), field.configured))
            })
            .collect();
        let mut given = Vec::with_capacity(expanded.len());
        for field in expanded {
            let pieces = field.parts.into_iter().map(|part| match part {
                Part::Literal(text) => Text::plain(text),
                Part::Value { text, tag } => {
                    if self.public.contains(&plan.references()[tag].name) {
                        Text::plain(text)
                    } else {
                        sealed.texts.push(text);
                        Text::sealed(sealed.texts.len() as u64 - 1)
                    }
                }
            });
            given.push((field.name, Text::concat(pieces)));
        }
        SEALED.with(|s| *s.borrow_mut() = sealed);
        let outputs = C::render(&Fields::new(given));
        let sealed = SEALED.with(|s| std::mem::take(&mut *s.borrow_mut()));
        let outputs = outputs?;
        if outputs.len() > MAX_OUTPUTS {
            return Err(RenderError::new(format!(
                "the connector returned {} outputs; at most {MAX_OUTPUTS} are allowed \
                 (sandbox.max_outputs)",
                outputs.len()
            )));
        }
        let mut allowance = compose::Allowance {
            value_bytes: MAX_OUTPUT_BYTES,
            built_bytes: MAX_OUTPUT_BYTES * 8,
            sealed_bytes: Some(MAX_SECRET_BYTES),
        };
        let mut rendered = Vec::new();
        let mut marks = Vec::new();
        for output in outputs {
            let nodes = output.value.into_nodes();
            allowance.value_bytes = allowance.value_bytes.saturating_sub(output.name.len());
            let (value, marked) = compose::evaluate_marked(&nodes, &mut allowance, |handle| {
                usize::try_from(handle)
                    .ok()
                    .and_then(|i| sealed.texts.get(i))
                    .map(String::as_str)
                    .ok_or_else(|| format!("sealed value {handle} is not from this render"))
            })
            .map_err(|e| match e {
                compose::ComposeError::TooLarge => RenderError::new(format!(
                    "output `{}`: the outputs could be larger than {MAX_OUTPUT_BYTES} bytes in \
                     all (sandbox.max_output_kb), each sealed piece counted as \
                     {MAX_SECRET_BYTES} bytes (sandbox.max_secret_kb)",
                    output.name
                )),
                e => RenderError::new(format!("output `{}`: {e}", output.name)),
            })?;
            rendered.push(Rendered {
                name: output.name,
                sensitive: output.sensitive || !marked.is_empty() || sealed.revealed,
                value,
                kind: output.kind,
            });
            marks.push(marked);
        }
        // The host's egress check, on the pins the host would derive.
        let texts: Vec<(usize, String, bool)> = expanded_destinations;
        let pin_fields: Vec<PinField<'_>> = info
            .fields
            .iter()
            .filter_map(|f| {
                let part = f.destination?;
                let value = texts
                    .iter()
                    .find(|(i, _, _)| info.fields[*i].name == f.name);
                Some(PinField {
                    name: &f.name,
                    part,
                    value: value.map(|(_, text, _)| text.as_str()),
                    configured: value.is_some_and(|(_, _, configured)| *configured),
                })
            })
            .collect();
        let mut pins = Pins::from_fields(&pin_fields);
        if let Some(egress) = &self.egress {
            pins = pins.with_explicit(egress);
        }
        let checked: Vec<CheckedOutput<'_>> = rendered
            .iter()
            .zip(&marks)
            .map(|(r, marks)| CheckedOutput {
                name: &r.name,
                kind: r.kind,
                value: &r.value,
                marks,
            })
            .collect();
        if let Err(refusal) = egress::check(&checked, &pins) {
            return Err(RenderError::new(format!(
                "egress refused: output `{}`: {}",
                rendered[refusal.output].name, refusal.message
            )));
        }
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectorInfo, Field, Output, compose};

    struct Dsn;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";

    impl Connector for Dsn {
        fn info() -> ConnectorInfo {
            ConnectorInfo::new("dsn", "0", "test")
                .field(Field::new("user", "user").required())
                .field(Field::new("password", "password").required().sensitive())
        }

        fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
            let user = fields.require("user")?;
            Ok(vec![
                Output::credential("dsn", compose![user, ":", fields.require("password")?]),
                Output::credential("user", user),
            ])
        }
    }

    #[test]
    fn keys_stages_and_filters_resolve_like_the_host() {
        let mut secrets = TestSecrets::new()
            .egress(&["db.internal:5432"])
            .key("db", "user", "app")
            .key("db", "password", "p@ss")
            .staged(ARN, "password", "AWSPREVIOUS", "old");
        let out = secrets
            .render::<Dsn>(&[
                ("user", "{{ secrets.db.user }}"),
                ("password", "{{ secrets.db.password | urlencode }}"),
            ])
            .expect("render");
        assert_eq!(out[0].value, "app:p%40ss");
        assert!(out[0].sensitive && out[1].sensitive, "both hold secrets");
        let out = secrets
            .render::<Dsn>(&[
                ("user", "app"),
                (
                    "password",
                    &format!("{{{{ {ARN}:password:AWSPREVIOUS: }}}}"),
                ),
            ])
            .expect("render at AWSPREVIOUS");
        assert_eq!(out[0].value, "app:old");
        assert!(!out[1].sensitive, "a literal field stays plain");
        assert_eq!(secrets.calls(), 2);
        assert!(!format!("{out:?}").contains("old"));
    }

    #[test]
    fn public_secrets_arrive_plain() {
        let out = TestSecrets::new()
            .egress(&["db.internal:5432"])
            .key("db", "user", "app")
            .key("db", "password", "pw")
            .public("db")
            .render::<Dsn>(&[("user", "{{ secrets.db.user }}"), ("password", "x")])
            .expect("render");
        assert_eq!((out[1].value.as_str(), out[1].sensitive), ("app", false));
    }

    #[test]
    fn a_missing_secret_names_the_field_and_column() {
        let err = TestSecrets::new()
            .key("db", "user", "app")
            .render::<Dsn>(&[
                ("user", "{{ secrets.db.user }}"),
                ("password", "x{{ secrets.db.pasword }}"),
            ])
            .expect_err("missing key");
        assert_eq!(err.field.as_deref(), Some("password"));
        assert_eq!(err.column, Some(2));
        assert!(err.message.contains("db[\"pasword\"]"), "{}", err.message);
    }

    struct Signer;

    impl Connector for Signer {
        fn info() -> ConnectorInfo {
            ConnectorInfo::new("signer", "0", "test").field(Field::new("key", "key").required())
        }

        fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
            let key = crate::reveal(fields.require("key")?)?;
            Ok(vec![Output::new("length", key.len().to_string())])
        }
    }

    #[test]
    fn reveal_needs_the_grant_and_makes_every_output_sensitive() {
        let mut secrets = TestSecrets::new().text("k", "12345");
        let e = secrets
            .render::<Signer>(&[("key", "{{ secrets.k }}")])
            .unwrap_err();
        assert_eq!(e.message, "reveal is not granted to this connector");
        let out = TestSecrets::new()
            .text("k", "12345")
            .with_reveal()
            .render::<Signer>(&[("key", "{{ secrets.k }}")])
            .unwrap();
        assert_eq!((out[0].value.as_str(), out[0].sensitive), ("5", true));
    }
}
