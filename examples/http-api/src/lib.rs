//! A Jira-style REST connector: renders the base URL and an
//! `Authorization: Basic` header from a user and an API token. The token is
//! typically a Workato-style reference,
//! `{{workato:sm:prod.jira.secret.key:arn:aws:secretsmanager:...}}`.

//!
//! The header is composed without the connector ever holding the token:
//! `compose!["Basic ", compose![user, ":", token].base64()]`, encoded and
//! assembled by the host.

use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError, compose};

/// The connector type exported by this component.
#[derive(Debug)]
pub struct HttpApi;

impl Connector for HttpApi {
    fn info() -> ConnectorInfo {
        ConnectorInfo::new(
            "http-api",
            env!("CARGO_PKG_VERSION"),
            "REST API with Basic authentication",
        )
        .field(
            Field::new("base_url", "Base URL, such as https://jira.example.com")
                .required()
                .url(),
        )
        .field(Field::new("user", "Account name or e-mail").required())
        .field(
            Field::new("token", "API token")
                .required()
                .sensitive()
                .secret_reference(),
        )
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let base_url = fields.require("base_url")?;
        // A base URL held in a secret is not checked: the connector cannot
        // read it.
        let base_url = match base_url.as_plain() {
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                return Err(RenderError::field(
                    "base_url",
                    "must start with https:// or http://",
                ));
            }
            Some(url) => url.trim_end_matches('/').into(),
            None => base_url.clone(),
        };
        let user = fields.require("user")?;
        if user.as_plain().is_some_and(|user| user.contains(':')) {
            return Err(RenderError::field(
                "user",
                "must not contain `:` (Basic authentication splits on it)",
            ));
        }
        let token = fields.require("token")?;
        Ok(vec![
            Output::destination("base_url", base_url),
            Output::secret(
                "authorization",
                compose!["Basic ", compose![user, ":", token].base64()],
            ),
        ])
    }
}

keyward_guest::export_connector!(HttpApi);
