//! Renders every field as an output of the same name, so tests can drive
//! every template form through a real component. `secret` is sensitive;
//! `arn` may be a bare ARN; `log` is written to the host log after the
//! render, so tests can check masking; `list` outputs the host's `list`.

use keyward_guest::{
    Connector, ConnectorInfo, Field, Fields, Level, Output, RenderError, list_secrets, log,
};

struct Echo;

const PLAIN: [&str; 3] = ["a", "b", "c"];

impl Connector for Echo {
    fn info() -> ConnectorInfo {
        let mut info = ConnectorInfo::new("echo", "0.1.0", "Renders each field as an output")
            .field(Field::new("secret", "A sensitive field").sensitive())
            .field(
                Field::new("arn", "May be a bare ARN")
                    .sensitive()
                    .secret_reference(),
            )
            .field(Field::new("log", "Logged by the connector"))
            .field(Field::new(
                "list",
                "Set to anything to output the host's list",
            ));
        for name in PLAIN {
            info = info.field(Field::new(name, "A plain field"));
        }
        info
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let mut out = Vec::new();
        for name in PLAIN {
            if let Some(value) = fields.get(name) {
                out.push(Output::new(name, value));
            }
        }
        for name in ["secret", "arn"] {
            if let Some(value) = fields.get(name) {
                out.push(Output::secret(name, value));
            }
        }
        if let Some(line) = fields.get("log") {
            log(Level::Warn, &format!("echo says: {line}"));
        }
        if fields.get("list").is_some() {
            out.push(Output::new("list", list_secrets().join(",")));
        }
        Ok(out)
    }
}

keyward_guest::export_connector!(Echo);
