//! Renders every field as an output of the same name, so tests can drive
//! every template form through a real component. `secret` is sensitive;
//! `arn` may be a bare ARN; `log` is written to the host log after the
//! render, so tests can check masking; `list` outputs the host's `list`;
//! `panic` traps with the value in the panic message.

use std::sync::atomic::{AtomicU32, Ordering};

use keyward_guest::template::{Reference, Value};
use keyward_guest::{
    Connector, ConnectorInfo, Field, Fields, HostResolver, Level, Output, RenderError, Resolver,
    list_secrets, log,
};

struct Echo;

/// Renders done by this instance: 1 every time with fresh instances.
static RENDERS: AtomicU32 = AtomicU32::new(0);

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
            ))
            .field(Field::new("raw", "A reference sent as is: NAME␞KEY␟KEY␞STAGE␞ID").sensitive())
            .field(Field::new(
                "panic",
                "The connector panics holding this value",
            ))
            .field(Field::new(
                "count",
                "Outputs how many renders this instance did",
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
        if let Some(raw) = fields.get("raw") {
            out.push(Output::secret("raw", resolve_raw(raw)?));
        }
        if let Some(value) = fields.get("panic") {
            panic!("a hostile connector panics holding {value}");
        }
        let renders = RENDERS.fetch_add(1, Ordering::Relaxed) + 1;
        if fields.get("count").is_some() {
            out.push(Output::new("count", renders.to_string()));
        }
        if fields.get("list").is_some() {
            out.push(Output::new("list", list_secrets().join(",")));
        }
        Ok(out)
    }
}

keyward_guest::export_connector!(Echo);

/// Sends a reference to the host without the SDK's parser, as a hostile
/// connector could: `NAME␞KEY␟KEY␞STAGE␞ID` (␞ = U+001E, ␟ = U+001F).
fn resolve_raw(raw: &str) -> Result<String, RenderError> {
    let mut parts = raw.split('\u{1e}');
    let name = parts.next().unwrap_or_default().to_string();
    let path = match parts.next() {
        Some("") | None => Vec::new(),
        Some(keys) => keys.split('\u{1f}').map(str::to_string).collect(),
    };
    let optional = |p: Option<&str>| p.filter(|s| !s.is_empty()).map(str::to_string);
    let reference = Reference {
        name,
        path,
        version_stage: optional(parts.next()),
        version_id: optional(parts.next()),
    };
    match HostResolver.resolve_many(&[reference]).pop() {
        Some(Ok(Value::Text(text))) => Ok(text),
        Some(Ok(Value::Bytes(bytes))) => Ok(format!("{} bytes", bytes.len())),
        Some(Err(e)) => Err(RenderError::field("raw", e.message)),
        None => Err(RenderError::field("raw", "no answer")),
    }
}
