//! Unit-testing a connector natively, without a host: an in-memory
//! [`Resolver`] that answers the way the host does, and a one-call render.
//!
//! ```
//! use keyward_guest::testing::TestSecrets;
//! # use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError};
//! # struct Api;
//! # impl Connector for Api {
//! #     fn info() -> ConnectorInfo {
//! #         ConnectorInfo::new("api", "0.1.0", "An API").field(Field::new("token", "Token").required().sensitive())
//! #     }
//! #     fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
//! #         Ok(vec![Output::secret("authorization", format!("Bearer {}", fields.require("token")?))])
//! #     }
//! # }
//!
//! let mut secrets = TestSecrets::new().key("api", "token", "t0k3n");
//! let outputs = secrets
//!     .render::<Api>(&[("token", "{{ secrets.api.token }}")])
//!     .unwrap();
//! assert_eq!(outputs[0].value, "Bearer t0k3n");
//! assert_eq!(secrets.calls(), 1);
//! ```

use std::collections::HashMap;

use crate::connector::{self, Connector, Output, RenderError, ResolveError, Resolver};
use crate::template::{Reference, Value};

/// Secrets held in memory, keyed by name, JSON path and staging label.
///
/// Names are matched exactly as written (no namespace, no ARN parsing): a
/// test states the references its templates use. A reference with a version
/// stage other than `AWSCURRENT` resolves only if that stage was added with
/// [`TestSecrets::staged`].
#[derive(Default)]
pub struct TestSecrets {
    values: HashMap<(String, Vec<String>, String), Value>,
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

    fn at(mut self, name: &str, path: &[&str], stage: &str, value: Value) -> Self {
        let path = path.iter().map(|k| k.to_string()).collect();
        self.values.insert((name.into(), path, stage.into()), value);
        self
    }

    /// How many resolve calls renders made (the SDK makes one per render).
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Renders connector `C` from `(field, template)` pairs, exactly as the
    /// component would inside the host.
    pub fn render<C: Connector>(
        &mut self,
        fields: &[(&str, &str)],
    ) -> Result<Vec<Output>, RenderError> {
        let configured: Vec<(String, String)> = fields
            .iter()
            .map(|(name, template)| (name.to_string(), template.to_string()))
            .collect();
        connector::render::<C>(&configured, self)
    }
}

impl Resolver for TestSecrets {
    fn resolve_many(&mut self, references: &[Reference]) -> Vec<Result<Value, ResolveError>> {
        self.calls += 1;
        references
            .iter()
            .map(|reference| {
                let stage = reference.version_stage.as_deref().unwrap_or(CURRENT);
                let key = (
                    reference.name.clone(),
                    reference.path.clone(),
                    stage.to_string(),
                );
                self.values.get(&key).cloned().ok_or_else(|| ResolveError {
                    message: format!(
                        "secret `{reference}` was not found or is not allowed for this connector"
                    ),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectorInfo, Field, Fields};

    struct Dsn;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";

    impl Connector for Dsn {
        fn info() -> ConnectorInfo {
            ConnectorInfo::new("dsn", "0", "test")
                .field(Field::new("user", "user").required())
                .field(Field::new("password", "password").required().sensitive())
        }

        fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
            Ok(vec![Output::secret(
                "dsn",
                format!(
                    "{}:{}",
                    fields.require("user")?,
                    fields.require("password")?
                ),
            )])
        }
    }

    #[test]
    fn keys_stages_and_filters_resolve_like_the_host() {
        let mut secrets = TestSecrets::new()
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
        let out = secrets
            .render::<Dsn>(&[
                ("user", "{{ secrets.db.user }}"),
                (
                    "password",
                    &format!("{{{{ {ARN}:password:AWSPREVIOUS: }}}}"),
                ),
            ])
            .expect("render at AWSPREVIOUS");
        assert_eq!(out[0].value, "app:old");
        assert_eq!(secrets.calls(), 2);
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
}
