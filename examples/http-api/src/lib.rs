//! A Jira-style REST connector: renders the base URL and an
//! `Authorization: Basic` header from a user and an API token. The token is
//! typically a Workato-style reference,
//! `{{workato:sm:prod.jira.secret.key:arn:aws:secretsmanager:...}}`.

use keyward_guest::encode::base64;
use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError};

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
        .field(Field::new("base_url", "Base URL, such as https://jira.example.com").required())
        .field(Field::new("user", "Account name or e-mail").required())
        .field(
            Field::new("token", "API token")
                .required()
                .sensitive()
                .secret_reference(),
        )
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let base_url = fields.require("base_url")?.trim_end_matches('/');
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(RenderError::field(
                "base_url",
                "must start with https:// or http://",
            ));
        }
        let user = fields.require("user")?;
        if user.contains(':') {
            return Err(RenderError::field(
                "user",
                "must not contain `:` (Basic authentication splits on it)",
            ));
        }
        let token = fields.require("token")?;
        Ok(vec![
            Output::new("base_url", base_url),
            Output::secret(
                "authorization",
                format!("Basic {}", base64(format!("{user}:{token}").as_bytes())),
            ),
        ])
    }
}

keyward_guest::export_connector!(HttpApi);
