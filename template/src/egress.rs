//! Egress: every secret of a render goes only to a destination the
//! operator configured, and only where a credential belongs.
//!
//! A connector cannot read a secret, but it decides where its outputs send
//! the platform. So the host checks a render after assembling it, knowing
//! which bytes of each output came from secret material (the marks
//! [`crate::compose::evaluate_marked`] returns):
//!
//! - **Pins** say where the operator sends this connector: the values the
//!   operator configured in the fields the connector declares as
//!   destination parts (a URL, a host, a port, a resource such as a
//!   database), or an explicit list (`egress` in the host's configuration).
//! - When any output holds secret material, every **destination output**
//!   must match a pin (scheme, host, port, path prefix): an output the
//!   connector calls a destination, any output a client could take for a
//!   URL, and any output named like a destination field.
//! - Secret material may stand only in credential outputs and in the
//!   credential parts of a destination: its userinfo, a query parameter the
//!   pin names, or a part that is exactly the operator's own value (a
//!   pinned host, the pinned path prefix, a configured resource). Never in
//!   a setting, a path, a fragment or another host's DNS labels.
//! - A render with secret material and no pins at all is refused: declaring
//!   nothing is no way around the check.
//!
//! Refusals name the output, the part at fault and the pins it missed by
//! where they came from (fields, or the `egress` entry, which is the
//! operator's own text), never a value.

use std::fmt;
use std::ops::Range;

use crate::compose::wipe;
use crate::destination::{self, Destination, DestinationError, default_port};

/// What an output is, as its connector declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// Where the platform connects: a URL, a DSN, a host, a port, a
    /// resource there.
    Destination,
    /// What the platform sends: a password, a key, a header value.
    Credential,
    /// Anything else: a region, a flag. Never holds secret material.
    Setting,
}

impl OutputKind {
    /// Its name in the render answer.
    pub fn name(self) -> &'static str {
        match self {
            Self::Destination => "destination",
            Self::Credential => "credential",
            Self::Setting => "setting",
        }
    }
}

/// Which part of a destination a field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationPart {
    /// A whole URL: scheme, host, port and path prefix.
    Url,
    /// A host name or an IP address (optionally with a port).
    Host,
    /// A port number.
    Port,
    /// A resource at the destination: a database, a bucket.
    Resource,
}

/// One place secrets may go.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin {
    /// The scheme, if pinned (a URL pin).
    pub scheme: Option<String>,
    /// The host, normalized.
    pub host: String,
    /// The port, if pinned (a URL pin's default port counts).
    pub port: Option<u16>,
    /// A path prefix (empty: any path).
    pub path_prefix: String,
    /// Query parameters whose values may hold secret material.
    pub secret_params: Vec<String>,
}

/// Pins hold the operator's values, which may be secrets (a host kept in
/// Secrets Manager): `Debug` shows none of them.
impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pin")
            .field("scheme", &self.scheme.is_some())
            .field("port", &self.port.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a pin set came from, for messages: field names, or the
/// operator's explicit `egress` entries (configuration text, not secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinOrigin {
    fields: Vec<String>,
    explicit: Vec<String>,
}

impl fmt::Display for PinOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.fields.is_empty() {
            let names: Vec<String> = self.fields.iter().map(|n| format!("`{n}`")).collect();
            parts.push(format!("from fields {}", names.join(", ")));
        }
        if !self.explicit.is_empty() {
            let entries: Vec<String> = self.explicit.iter().map(|e| format!("`{e}`")).collect();
            parts.push(format!("egress {}", entries.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The pins of one render, and the names of the connector's destination
/// fields (an output named like one is checked as a destination).
#[derive(Clone, Default)]
pub struct Pins {
    pins: Vec<Pin>,
    resources: Vec<String>,
    destination_fields: Vec<String>,
    origin: PinOrigin,
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pins")
            .field("pins", &self.pins.len())
            .field("resources", &self.resources.len())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for pin in &mut self.pins {
            wipe(&mut pin.host);
            wipe(&mut pin.path_prefix);
        }
        for resource in &mut self.resources {
            wipe(resource);
        }
    }
}

/// One explicit egress entry that is not a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressEntryError(pub String);

impl fmt::Display for EgressEntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EgressEntryError {}

/// A field as pins are derived from it: its name, the part it names, its
/// expanded value, and whether the operator configured it (a connector's
/// default for a host or URL is the connector's word, not the operator's;
/// a port field's default counts, as `describe` shows it).
#[derive(Debug, Clone, Copy)]
pub struct PinField<'a> {
    /// The field's name.
    pub name: &'a str,
    /// The part it names.
    pub part: DestinationPart,
    /// Its expanded value, if it has one.
    pub value: Option<&'a str>,
    /// Whether the operator configured it (else it is the default).
    pub configured: bool,
}

impl Pins {
    /// Pins from the connector's destination fields: each URL field's
    /// value, each host with each port, each resource.
    pub fn from_fields(fields: &[PinField<'_>]) -> Self {
        let mut pins = Self::default();
        let mut hosts: Vec<(String, Option<u16>)> = Vec::new();
        let mut ports: Vec<u16> = Vec::new();
        for field in fields {
            pins.destination_fields.push(field.name.to_string());
            let counts = field.configured || field.part == DestinationPart::Port;
            let Some(value) = field.value.filter(|v| counts && !v.is_empty()) else {
                continue;
            };
            let used = match field.part {
                DestinationPart::Url => destination::parse_url(value)
                    .map(|d| pins.pins.push(Pin::of_url(&d, value)))
                    .is_ok(),
                DestinationPart::Host => host_field(value).map(|h| hosts.push(h)).is_some(),
                DestinationPart::Port => value.parse::<u16>().map(|p| ports.push(p)).is_ok(),
                DestinationPart::Resource => {
                    pins.resources.push(value.to_string());
                    true
                }
            };
            if used {
                pins.origin.fields.push(field.name.to_string());
            }
        }
        for (host, own_port) in hosts {
            let mut each = |port| {
                pins.pins.push(Pin {
                    scheme: None,
                    host: host.clone(),
                    port,
                    path_prefix: String::new(),
                    secret_params: Vec::new(),
                })
            };
            match (own_port, ports.is_empty()) {
                (Some(port), _) => each(Some(port)),
                (None, true) => each(None),
                (None, false) => ports.iter().for_each(|&p| each(Some(p))),
            }
        }
        pins
    }

    /// Replaces the pins with the operator's explicit entries (see
    /// [`Egress`]), keeping the field-derived ones if `keep_fields`.
    pub fn with_explicit(mut self, egress: &Egress) -> Self {
        if !egress.keep_fields {
            self.pins.clear();
            self.resources.clear();
            self.origin.fields.clear();
        }
        self.pins.extend(egress.pins.iter().cloned());
        self.origin.explicit = egress.entries.clone();
        self
    }

    /// Whether there is nowhere at all secrets may go.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty() && self.resources.is_empty()
    }

    /// Where the pins came from, for messages.
    pub fn origin(&self) -> &PinOrigin {
        &self.origin
    }
}

/// A host field's value: `host`, `host:port`, `[v6]:port`, or an IPv6
/// address without brackets (as a connector's `uri-host` encoding takes it).
fn host_field(value: &str) -> Option<(String, Option<u16>)> {
    match destination::parse_bare(value) {
        Ok(d) => Some((d.host, d.port)),
        Err(_) => value
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|address| (address.to_string(), None)),
    }
}

impl Pin {
    fn of_url(d: &Destination, text: &str) -> Self {
        let path = &text[d.spans.path.clone()];
        Pin {
            scheme: d.scheme.clone(),
            host: d.host.clone(),
            port: d.effective_port(),
            path_prefix: if path == "/" {
                String::new()
            } else {
                path.to_string()
            },
            secret_params: d
                .query_params(text)
                .map(|(name, _)| name.to_string())
                .filter(|name| !name.is_empty())
                .collect(),
        }
    }

    fn matches_host(&self, d: &Destination) -> bool {
        self.host == d.host
    }

    fn matches_scheme(&self, d: &Destination) -> bool {
        match (&self.scheme, &d.scheme) {
            (Some(pinned), Some(scheme)) => pinned == scheme,
            _ => true,
        }
    }

    fn matches_port(&self, d: &Destination) -> bool {
        let written = d.port;
        let implied = d.scheme.as_deref().and_then(default_port);
        match (self.port, written.or(implied)) {
            (Some(pinned), Some(port)) => pinned == port,
            // A bare host, or a scheme with no known default, written
            // without a port: the client's default, which is the pin's.
            (Some(_), None) => true,
            // No pinned port: only the scheme's default.
            (None, _) => written.is_none() || written == implied,
        }
    }

    fn matches_path(&self, d: &Destination, text: &str) -> bool {
        if self.path_prefix.is_empty() || d.scheme.is_none() {
            return true;
        }
        let path = &text[d.spans.path.clone()];
        path == self.path_prefix
            || path == self.path_prefix.trim_end_matches('/')
            || (path.starts_with(self.path_prefix.as_str())
                && (self.path_prefix.ends_with('/')
                    || path.as_bytes().get(self.path_prefix.len()) == Some(&b'/')))
    }
}

/// The operator's explicit egress list for a connector: URLs
/// (`https://jira.example.com/rest/`, with `?name` for each query
/// parameter that may carry a secret) and bare hosts with an optional port
/// (`db.internal:5432`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    pins: Vec<Pin>,
    entries: Vec<String>,
    keep_fields: bool,
}

impl Egress {
    /// Parses the entries; an error names the entry by its index.
    pub fn parse(entries: &[String], keep_fields: bool) -> Result<Self, EgressEntryError> {
        let mut pins = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let parsed = destination::parse(entry)
                .map_err(|e| EgressEntryError(format!("entry {index} (`{entry}`): {e}")))?;
            pins.push(if parsed.scheme.is_some() {
                Pin::of_url(&parsed, entry)
            } else {
                Pin {
                    scheme: None,
                    host: parsed.host,
                    port: parsed.port,
                    path_prefix: String::new(),
                    secret_params: Vec::new(),
                }
            });
        }
        Ok(Self {
            pins,
            entries: entries.to_vec(),
            keep_fields,
        })
    }
}

/// One output as the check sees it.
#[derive(Clone, Copy)]
pub struct CheckedOutput<'a> {
    /// Its name.
    pub name: &'a str,
    /// What the connector says it is.
    pub kind: OutputKind,
    /// Its assembled value.
    pub value: &'a str,
    /// The byte ranges of `value` that came from secret material.
    pub marks: &'a [Range<usize>],
}

impl fmt::Debug for CheckedOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedOutput")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("marks", &self.marks.len())
            .finish_non_exhaustive()
    }
}

/// A refused render: the output at fault (by index) and why, with no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The index of the output at fault.
    pub output: usize,
    /// Why, naming the part at fault and the pins it missed.
    pub message: String,
    /// Whether the connector has no pins at all (a configuration to fix,
    /// rather than a connector sending a secret elsewhere).
    pub pinless: bool,
}

/// What the check found for one output.
// A render has a handful of outputs and its verdicts live only until the
// answer is built: boxing the destination would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a destination.
    NotDestination,
    /// A destination, parsed.
    Destination(Destination),
    /// A destination that is a configured resource or a bare port, or one
    /// that does not parse in a render without secret material.
    Unparsed,
}

/// Checks a render's outputs against its pins; answers each output's
/// verdict, or the first refusal.
pub fn check(outputs: &[CheckedOutput<'_>], pins: &Pins) -> Result<Vec<Verdict>, Refusal> {
    let holds_secret = outputs.iter().any(|o| !o.marks.is_empty());
    if holds_secret && pins.is_empty() {
        let output = outputs
            .iter()
            .position(|o| !o.marks.is_empty())
            .unwrap_or(0);
        return Err(Refusal {
            output,
            message: "it holds secret material but the connector has no destination pins: it \
                      declares no destination field the operator configured, and no `egress` \
                      is set"
                .into(),
            pinless: true,
        });
    }
    let mut verdicts = Vec::with_capacity(outputs.len());
    for (index, output) in outputs.iter().enumerate() {
        let refuse = |message: String| Refusal {
            output: index,
            message,
            pinless: false,
        };
        let url = destination::looks_like_url(output.value);
        let named = pins.destination_fields.iter().any(|f| f == output.name);
        if !(url || named || output.kind == OutputKind::Destination) {
            if output.kind == OutputKind::Setting && !output.marks.is_empty() {
                return Err(refuse(
                    "it is a setting but holds secret material; only credential and \
                     destination outputs may"
                        .into(),
                ));
            }
            verdicts.push(Verdict::NotDestination);
            continue;
        }
        let verdict = check_destination(output, url, pins, holds_secret).map_err(refuse)?;
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

fn check_destination(
    output: &CheckedOutput<'_>,
    url: bool,
    pins: &Pins,
    holds_secret: bool,
) -> Result<Verdict, String> {
    let value = output.value;
    if !url && pins.resources.iter().any(|r| r == value) {
        return Ok(Verdict::Unparsed);
    }
    if !url && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let port = value.parse::<u16>().ok();
        return if !holds_secret || pins.pins.iter().any(|p| p.port.is_some() && p.port == port) {
            Ok(Verdict::Unparsed)
        } else {
            Err(missed("port", pins))
        };
    }
    let parsed = if url {
        destination::parse_url(value)
    } else {
        destination::parse_bare(value)
    };
    let d = match parsed {
        Ok(d) => d,
        Err(_) if !holds_secret => return Ok(Verdict::Unparsed),
        Err(DestinationError { part, why }) => {
            return Err(format!(
                "it is a destination, and its {part} {why} (clients could read it differently)"
            ));
        }
    };
    if !holds_secret {
        return Ok(Verdict::Destination(d));
    }
    let candidates = pins.pins.iter().filter(|p| p.matches_host(&d));
    let mut best: Option<&'static str> = Some("host");
    for pin in candidates {
        let fault = if !pin.matches_scheme(&d) {
            Some("scheme")
        } else if !pin.matches_port(&d) {
            Some("port")
        } else if !pin.matches_path(&d, value) {
            Some("path")
        } else {
            None
        };
        match fault {
            None => {
                placement(output, &d, pin, pins)?;
                return Ok(Verdict::Destination(d));
            }
            Some(part) => {
                // Report the part closest to matching.
                let rank = |p: &str| {
                    ["host", "scheme", "port", "path"]
                        .iter()
                        .position(|x| *x == p)
                };
                if rank(part) > best.and_then(rank) {
                    best = Some(part);
                }
            }
        }
    }
    Err(missed(best.unwrap_or("host"), pins))
}

fn missed(part: &str, pins: &Pins) -> String {
    format!(
        "its {part} matches none of the connector's destination pins ({})",
        pins.origin
    )
}

/// Secret material in a matched destination stands only in its userinfo,
/// its (pinned) host and port, the pinned path prefix, a path segment that
/// is a configured resource, or a query parameter the pin names.
fn placement(
    output: &CheckedOutput<'_>,
    d: &Destination,
    pin: &Pin,
    pins: &Pins,
) -> Result<(), String> {
    if output.marks.is_empty() {
        return Ok(());
    }
    let text = output.value;
    let mut allowed: Vec<Range<usize>> = Vec::new();
    allowed.extend(d.spans.userinfo.clone());
    allowed.push(d.spans.host.clone());
    allowed.extend(d.spans.port.clone());
    let path = d.spans.path.clone();
    if !pin.path_prefix.is_empty() {
        allowed.push(path.start..path.start + pin.path_prefix.len().min(path.len()));
    }
    let mut at = path.start;
    for segment in text[path.clone()].split('/') {
        if !segment.is_empty()
            && pins.resources.iter().any(|r| {
                r == segment || crate::encode::Encoding::Percent.apply(r.as_bytes()) == segment
            })
        {
            allowed.push(at..at + segment.len());
        }
        at += segment.len() + 1;
    }
    for (name, value) in d.query_params(text) {
        if pin.secret_params.iter().any(|p| p == name) {
            allowed.push(value);
        }
    }
    for mark in output.marks {
        if let Some(byte) = first_uncovered(mark.clone(), &allowed) {
            let part = part_at(d, byte);
            return Err(format!(
                "secret material stands in its {part}, where only the operator's own value may \
                 (pins {})",
                pins.origin
            ));
        }
    }
    Ok(())
}

/// The first byte of `mark` that no range of `allowed` covers.
fn first_uncovered(mark: Range<usize>, allowed: &[Range<usize>]) -> Option<usize> {
    let mut at = mark.start;
    'outer: while at < mark.end {
        for range in allowed {
            if range.start <= at && at < range.end {
                at = range.end;
                continue 'outer;
            }
        }
        return Some(at);
    }
    None
}

fn part_at(d: &Destination, byte: usize) -> &'static str {
    let s = &d.spans;
    let within = |r: &Option<Range<usize>>| r.as_ref().is_some_and(|r| r.contains(&byte));
    if within(&s.scheme) {
        "scheme"
    } else if s.path.contains(&byte) {
        "path"
    } else if within(&s.query) {
        "query (a parameter the pin does not name)"
    } else if within(&s.fragment) {
        "fragment"
    } else {
        "delimiters"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(name: &'a str, part: DestinationPart, value: &'a str) -> PinField<'a> {
        PinField {
            name,
            part,
            value: Some(value),
            configured: true,
        }
    }

    fn postgres_pins() -> Pins {
        Pins::from_fields(&[
            field("host", DestinationPart::Host, "db.internal.example"),
            field("port", DestinationPart::Port, "5432"),
            field("database", DestinationPart::Resource, "orders"),
        ])
    }

    fn jira_pins() -> Pins {
        Pins::from_fields(&[field(
            "base_url",
            DestinationPart::Url,
            "https://jira.example.com/rest/",
        )])
    }

    /// Marks the first occurrence of `secret` in `value`.
    fn out<'a>(
        name: &'a str,
        kind: OutputKind,
        value: &'a str,
        marks: &'a [Range<usize>],
    ) -> CheckedOutput<'a> {
        CheckedOutput {
            name,
            kind,
            value,
            marks,
        }
    }

    fn verdict(pins: &Pins, kind: OutputKind, value: &str, secret: &str) -> Result<(), String> {
        let at = value.find(secret).expect("secret in value");
        let marks = [at..at + secret.len()];
        let outputs = [out("out", kind, value, &marks)];
        check(&outputs, pins).map(|_| ()).map_err(|r| r.message)
    }

    #[test]
    fn an_honest_dsn_passes_and_is_parsed() {
        let pins = postgres_pins();
        let dsn = "postgresql://app:s3cr3t@db.internal.example:5432/orders?sslmode=require";
        assert_eq!(
            verdict(&pins, OutputKind::Destination, dsn, "s3cr3t"),
            Ok(())
        );
        let marks = [17..23];
        let outputs = [
            out("dsn", OutputKind::Destination, dsn, &marks),
            out("host", OutputKind::Destination, "db.internal.example", &[]),
            out("port", OutputKind::Destination, "5432", &[]),
            out("database", OutputKind::Setting, "orders", &[]),
        ];
        let verdicts = check(&outputs, &pins).unwrap();
        let Verdict::Destination(d) = &verdicts[0] else {
            panic!("{verdicts:?}")
        };
        assert_eq!(
            (d.host.as_str(), d.port),
            ("db.internal.example", Some(5432))
        );
    }

    #[test]
    fn every_redirection_is_refused_naming_the_part() {
        let pg = postgres_pins();
        let jira = jira_pins();
        let cases: [(&Pins, &str, &str); 14] = [
            (
                &pg,
                "postgresql://app:S@attacker.example:5432/orders",
                "its host",
            ),
            (
                &pg,
                "postgresql://app:S@db.internal.example:6543/orders",
                "its port",
            ),
            (
                &pg,
                "postgresql://app@S.attacker.example/orders",
                "its host",
            ),
            (
                &pg,
                "postgresql://app@db.internal.example:5432/S",
                "in its path",
            ),
            (&jira, "http://u:S@jira.example.com/rest/", "its scheme"),
            (&jira, "https://u:S@jira.example.com:8443/rest/", "its port"),
            (&jira, "https://u:S@jira.example.com/admin/", "its path"),
            (
                &jira,
                "https://u:S@jira.example.com.attacker.example/rest/",
                "its host",
            ),
            (
                &jira,
                "https://u:S@attacker-jira.example.com/rest/",
                "its host",
            ),
            (
                &jira,
                "https://jira.example.com@attacker.example/rest/S",
                "its host",
            ),
            (
                &jira,
                "https://attacker.example\\@jira.example.com/S",
                "backslash",
            ),
            (&jira, "https://jira.example.com/rest/S", "in its path"),
            (&jira, "https://jira.example.com/rest/?q=S", "query"),
            (&jira, "https://jira.example.com/rest/#S", "fragment"),
        ];
        for (pins, value, expected) in cases {
            let e = verdict(pins, OutputKind::Credential, value, "S").unwrap_err();
            assert!(e.contains(expected), "{value}: {e}");
            assert!(!e.contains(value), "{e}");
        }
    }

    #[test]
    fn settings_and_pinless_connectors_may_not_hold_secrets() {
        let e = verdict(&postgres_pins(), OutputKind::Setting, "S", "S").unwrap_err();
        assert!(e.contains("is a setting"), "{e}");
        let e = verdict(&Pins::default(), OutputKind::Credential, "S", "S").unwrap_err();
        assert!(e.contains("no destination pins"), "{e}");
        let marks = [0..1];
        let outputs = [out("o", OutputKind::Credential, "S", &marks)];
        assert!(check(&outputs, &Pins::default()).unwrap_err().pinless);
        assert!(check(&outputs, &jira_pins()).is_ok());
        // A credential holds secrets freely; a URL-shaped one is checked.
        assert_eq!(
            verdict(&postgres_pins(), OutputKind::Credential, "Basic S", "S"),
            Ok(())
        );
        // Without secret material nothing is refused.
        let outputs = [out("u", OutputKind::Destination, "https://elsewhere/", &[])];
        assert!(check(&outputs, &Pins::default()).is_ok());
    }

    #[test]
    fn a_second_destination_beside_a_correct_one_is_refused() {
        let pins = jira_pins();
        let marks = [0..1];
        let outputs = [
            out("authorization", OutputKind::Credential, "S", &marks),
            out(
                "base_url",
                OutputKind::Destination,
                "https://jira.example.com/rest/",
                &[],
            ),
            out(
                "mirror",
                OutputKind::Setting,
                "https://attacker.example/",
                &[],
            ),
        ];
        let refusal = check(&outputs, &pins).unwrap_err();
        assert_eq!(refusal.output, 2);
        // Named like a destination field: checked whatever its kind.
        let outputs = [
            out("authorization", OutputKind::Credential, "S", &marks),
            out("base_url", OutputKind::Setting, "attacker.example", &[]),
        ];
        assert_eq!(check(&outputs, &pins).unwrap_err().output, 1);
    }

    #[test]
    fn the_operators_own_values_may_be_secrets() {
        let pins = Pins::from_fields(&[
            field("host", DestinationPart::Host, "db.internal.example"),
            field("database", DestinationPart::Resource, "orders"),
        ]);
        let dsn = "postgresql://db.internal.example/orders";
        let marks = [13..32, 33..39];
        let outputs = [out("dsn", OutputKind::Destination, dsn, &marks)];
        assert!(check(&outputs, &pins).is_ok());
        // A port not pinned: only the scheme's default.
        let dsn = "postgresql://db.internal.example:5433/orders";
        let outputs = [out("dsn", OutputKind::Destination, dsn, &marks)];
        assert!(check(&outputs, &pins).is_err());
        // A query parameter the operator named may carry a secret.
        let pins = Pins::from_fields(&[field(
            "base_url",
            DestinationPart::Url,
            "https://api.example.com/v1?api_key=x",
        )]);
        let url = "https://api.example.com/v1/items?api_key=S&q=1";
        assert_eq!(verdict(&pins, OutputKind::Destination, url, "S"), Ok(()));
    }

    #[test]
    fn an_ipv6_host_field_pins_its_address() {
        let pins = Pins::from_fields(&[field("host", DestinationPart::Host, "::1")]);
        assert_eq!(
            verdict(
                &pins,
                OutputKind::Destination,
                "rediss://u:S@[::1]:6379/3",
                "S"
            ),
            Ok(())
        );
    }

    #[test]
    fn explicit_egress_replaces_the_derived_pins_unless_kept() {
        let egress = Egress::parse(&["https://other.example/".into()], false).unwrap();
        let pins = jira_pins().with_explicit(&egress);
        assert!(
            verdict(
                &pins,
                OutputKind::Destination,
                "https://u:S@other.example/x",
                "S"
            )
            .is_ok()
        );
        let e = verdict(
            &pins,
            OutputKind::Destination,
            "https://u:S@jira.example.com/rest/",
            "S",
        )
        .unwrap_err();
        assert!(e.contains("egress `https://other.example/`"), "{e}");
        let kept = jira_pins().with_explicit(&Egress::parse(&[], true).unwrap());
        assert!(
            verdict(
                &kept,
                OutputKind::Destination,
                "https://u:S@jira.example.com/rest/",
                "S"
            )
            .is_ok()
        );
        assert!(
            Egress::parse(&["https://a\\b/".into()], false)
                .unwrap_err()
                .0
                .starts_with("entry 0")
        );
    }

    /// The cases the Rust, Python and TypeScript checks must agree on.
    #[test]
    fn the_shared_vectors_give_the_same_verdicts() {
        let vectors = include_str!("../../tests/vectors/egress.tsv");
        let mut cases = 0;
        for line in vectors
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let [pins, kind, value, secret, expected] = line.split('\t').collect::<Vec<_>>()[..]
            else {
                panic!("bad vector line: {line}");
            };
            let mut fields = Vec::new();
            let mut explicit = Vec::new();
            for item in pins.split(';').filter(|i| *i != "-") {
                let (part, value) = item.split_once('=').expect("part=value");
                let part = match part {
                    "url" => DestinationPart::Url,
                    "host" => DestinationPart::Host,
                    "port" => DestinationPart::Port,
                    "resource" => DestinationPart::Resource,
                    "egress" => {
                        explicit.push(value.to_string());
                        continue;
                    }
                    other => panic!("unknown part {other}"),
                };
                fields.push((part, value));
            }
            let names = ["url", "host", "port", "resource"];
            let pin_fields: Vec<PinField<'_>> = fields
                .iter()
                .map(|(part, value)| field(names[*part as usize], *part, value))
                .collect();
            let mut pins = Pins::from_fields(&pin_fields);
            if !explicit.is_empty() {
                pins = pins.with_explicit(&Egress::parse(&explicit, false).expect("egress"));
            }
            let kind = match kind {
                "destination" => OutputKind::Destination,
                "credential" => OutputKind::Credential,
                _ => OutputKind::Setting,
            };
            let marks: Vec<Range<usize>> = value
                .find(secret)
                .filter(|_| secret != "-")
                .map(|at| at..at + secret.len())
                .into_iter()
                .collect();
            let outputs = [out("out", kind, value, &marks)];
            match (check(&outputs, &pins), expected) {
                (Ok(_), "ok") => {}
                (Err(r), expected) if expected != "ok" && r.message.contains(expected) => {}
                (verdict, _) => panic!("{line}: {verdict:?}"),
            }
            cases += 1;
        }
        assert!(cases > 30, "{cases}");
    }

    #[test]
    fn pins_show_no_value_in_debug() {
        let pins = postgres_pins();
        let debug = format!("{pins:?} {:?}", pins.pins);
        assert!(
            !debug.contains("db.internal") && !debug.contains("orders"),
            "{debug}"
        );
    }
}
