//! A PostgreSQL connector: renders a libpq connection URI from fields that
//! may each be a secret template.
//!
//! Every URI component is percent-encoded as RFC 3986 requires, so a
//! password such as `p@ss:w/rd#%?&"` survives any conforming URI parser.

use keyward_guest::encode::percent;
use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError};

/// The SSL modes libpq accepts.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The connector type exported by this component.
pub struct Postgres;

impl Connector for Postgres {
    fn info() -> ConnectorInfo {
        ConnectorInfo::new(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL connection (libpq URI)",
        )
        .field(Field::new("host", "Server host name or IP address").required())
        .field(Field::new("port", "Server port").default("5432"))
        .field(Field::new("database", "Database name").required())
        .field(Field::new("user", "Role to connect as").required())
        .field(
            Field::new("password", "Password of the role")
                .sensitive()
                .secret_reference(),
        )
        .field(Field::new("sslmode", "libpq sslmode").default("prefer"))
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let host = fields.require("host")?;
        let port: u16 = fields.parse("port")?.unwrap_or(5432);
        let database = fields.require("database")?;
        let user = fields.require("user")?;
        let sslmode = fields.get("sslmode").unwrap_or("prefer");
        if !SSL_MODES.contains(&sslmode) {
            return Err(RenderError::field(
                "sslmode",
                format!("must be one of {}", SSL_MODES.join(", ")),
            ));
        }
        if host.is_empty() {
            return Err(RenderError::field("host", "is empty"));
        }
        let host_part = if host.contains(':') {
            format!("[{host}]") // an IPv6 literal
        } else {
            percent(host.as_bytes())
        };
        let userinfo = match fields.get("password") {
            Some(password) => format!(
                "{}:{}",
                percent(user.as_bytes()),
                percent(password.as_bytes())
            ),
            None => percent(user.as_bytes()),
        };
        let dsn = format!(
            "postgresql://{userinfo}@{host_part}:{port}/{}?sslmode={sslmode}",
            percent(database.as_bytes())
        );
        Ok(vec![
            Output::secret("dsn", dsn),
            Output::new("host", host),
            Output::new("port", port.to_string()),
            Output::new("database", database),
            Output::new("user", user),
            Output::new("sslmode", sslmode),
        ])
    }
}

keyward_guest::export_connector!(Postgres);
