//! A PostgreSQL connector: renders a libpq connection URI from fields that
//! may each be a secret template.
//!
//! Every URI component is percent-encoded as RFC 3986 requires, so a
//! password such as `p@ss:w/rd#%?&"` survives any conforming URI parser.
//! The connector never sees the password (or any other field held in a
//! secret): it composes sealed text, and the host encodes and assembles it.

use keyward_guest::{Connector, ConnectorInfo, Field, Fields, Output, RenderError, compose};

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
        .field(
            Field::new("host", "Server host name or IP address")
                .required()
                .host(),
        )
        .field(Field::new("port", "Server port").default("5432").port())
        .field(
            Field::new("database", "Database name")
                .required()
                .resource(),
        )
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
        let sslmode = fields.plain("sslmode")?.unwrap_or("prefer");
        if !SSL_MODES.contains(&sslmode) {
            return Err(RenderError::field(
                "sslmode",
                format!("must be one of {}", SSL_MODES.join(", ")),
            ));
        }
        if host.as_plain() == Some("") {
            return Err(RenderError::field("host", "is empty"));
        }
        let userinfo = match fields.get("password") {
            Some(password) => compose![user.clone().percent(), ":", password.clone().percent()],
            None => user.clone().percent(),
        };
        let dsn = compose![
            "postgresql://",
            userinfo,
            "@",
            host.clone().uri_host(),
            format!(":{port}/"),
            database.clone().percent(),
            format!("?sslmode={sslmode}"),
        ];
        Ok(vec![
            Output::destination("dsn", dsn),
            Output::destination("host", host),
            Output::destination("port", port.to_string()),
            Output::destination("database", database),
            Output::credential("user", user),
            Output::setting("sslmode", sslmode),
        ])
    }
}

keyward_guest::export_connector!(Postgres);
