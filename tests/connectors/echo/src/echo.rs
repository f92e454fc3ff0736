//! The echo connector, shared by two packages: `echo` declares
//! `run_every_render` (the suites that watch warm and fresh instances and
//! the synchronous path need it to run on every render), `echo-planned`
//! does not (the benchmarks and the render-plan tests need a connector whose
//! renders are planned).
//!
//! It renders every field as an output of the same name, so tests can drive
//! every template form through a real component. `secret` is marked
//! sensitive; `arn` may be a bare ARN; `log` is written to the host log;
//! `list` outputs the host's `list`; `invalidate` passes its text to the
//! host's `invalidate`; `panic` traps holding the field; `count` outputs
//! how many renders this instance did; `clock` outputs the wall clock's
//! nanoseconds. Its outputs are credentials and it declares no destination
//! field, so a configuration that renders secrets through it sets `egress`.

use std::sync::atomic::{AtomicU32, Ordering};

use keyward_guest::{
    Connector, ConnectorInfo, Field, Fields, Level, Output, RenderError, Text, invalidate,
    list_secrets, log,
};

/// The connector; `RUNS_EVERY_RENDER` is what its `describe` declares.
pub struct Echo<const RUNS_EVERY_RENDER: bool>;

/// Renders done by this instance: 1 every time with fresh instances.
static RENDERS: AtomicU32 = AtomicU32::new(0);

const PLAIN: [&str; 3] = ["a", "b", "c"];

impl<const RUNS_EVERY_RENDER: bool> Connector for Echo<RUNS_EVERY_RENDER> {
    fn info() -> ConnectorInfo {
        let name = if RUNS_EVERY_RENDER {
            "echo"
        } else {
            "echo-planned"
        };
        let mut info = ConnectorInfo::new(name, "0.3.0", "Renders each field as an output")
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
            .field(Field::new(
                "invalidate",
                "A reference for the host's invalidate",
            ))
            .field(Field::new(
                "panic",
                "The connector panics holding this value",
            ))
            .field(Field::new(
                "count",
                "Outputs how many renders this instance did",
            ))
            .field(Field::new(
                "clock",
                "Set to anything to output the wall clock's nanoseconds",
            ));
        for name in PLAIN {
            info = info.field(Field::new(name, "A plain field"));
        }
        if RUNS_EVERY_RENDER {
            info = info.run_every_render();
        }
        info
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let mut out = Vec::new();
        for name in PLAIN {
            if let Some(value) = fields.get(name) {
                out.push(Output::credential(name, value));
            }
        }
        for name in ["secret", "arn"] {
            if let Some(value) = fields.get(name) {
                out.push(Output::secret(name, value));
            }
        }
        if let Some(line) = fields.get("log") {
            log(Level::Warn, &format!("echo says: {}", shown(line)));
        }
        if let Some(reference) = fields.get("invalidate") {
            let done = invalidate(reference.as_plain().unwrap_or_default());
            out.push(Output::new("invalidate", done.to_string()));
        }
        if let Some(value) = fields.get("panic") {
            panic!("a connector panics holding {}", shown(value));
        }
        let renders = RENDERS.fetch_add(1, Ordering::Relaxed) + 1;
        if fields.get("clock").is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            out.push(Output::new("clock", now.to_string()));
        }
        if fields.get("count").is_some() {
            out.push(Output::new("count", renders.to_string()));
        }
        if fields.get("list").is_some() {
            out.push(Output::new("list", list_secrets().join(",")));
        }
        Ok(out)
    }
}

/// Plain text as it is; sealed text as the connector sees it.
fn shown(text: &Text) -> String {
    text.as_plain()
        .map_or_else(|| format!("{text:?}"), str::to_string)
}
