//! The parser for connector field templates.
//!
//! A hand-written scanner rather than a search for `}}`: quoted names and the
//! `{{ '{{' }}` escape may contain braces, and every error must point at the
//! exact column the author has to fix.

use super::{Filter, Placeholder, Reference, Segment, Template, TemplateError};

/// The ARN shape shared by the Workato and ECS forms, split at its colons.
const ARN_FIXED_PARTS: usize = 7;

pub(super) fn parse(text: &str) -> Result<Template, TemplateError> {
    Parser::new(text).template()
}

/// Parses a field whose whole value is a bare ECS `valueFrom` ARN.
pub(super) fn parse_bare_arn(text: &str) -> Result<Template, TemplateError> {
    let mut parser = Parser::new(text);
    parser.skip_ws();
    let start = parser.pos;
    let token = parser.token();
    let reference = parse_ecs_arn(&token, start)?;
    parser.skip_ws();
    if parser.pos < parser.chars.len() {
        return Err(parser.error_here("unexpected text after the ARN".to_string()));
    }
    Ok(Template {
        segments: vec![Segment::Secret(Placeholder {
            reference,
            filters: Vec::new(),
            column: column(start),
        })],
    })
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

fn column(pos: usize) -> u32 {
    u32::try_from(pos + 1).unwrap_or(u32::MAX)
}

impl Parser {
    fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn error_at(&self, pos: usize, message: String) -> TemplateError {
        TemplateError {
            column: column(pos),
            message,
        }
    }

    fn error_here(&self, message: String) -> TemplateError {
        self.error_at(self.pos, message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn looking_at(&self, s: &str) -> bool {
        (self.pos..)
            .zip(s.chars())
            .all(|(i, c)| self.chars.get(i) == Some(&c))
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn template(mut self) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        while self.pos < self.chars.len() {
            if self.looking_at("{{") {
                let open = self.pos;
                self.pos += 2;
                match self.expression(open)? {
                    Expression::Literal(text) => literal.push_str(&text),
                    Expression::Secret(placeholder) => {
                        if !literal.is_empty() {
                            segments.push(Segment::Literal(std::mem::take(&mut literal)));
                        }
                        segments.push(Segment::Secret(placeholder));
                    }
                }
            } else {
                literal.push(self.chars[self.pos]);
                self.pos += 1;
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// Everything between `{{` (at `open`) and its `}}`, which it consumes.
    fn expression(&mut self, open: usize) -> Result<Expression, TemplateError> {
        self.skip_ws();
        let start = self.pos;
        let expression = match self.peek() {
            None => return Err(self.unclosed(open)),
            Some('\'' | '"') => {
                let text = self.string_literal()?;
                self.close(open, false)?;
                return Ok(Expression::Literal(text));
            }
            Some(_) if self.looking_at("workato:sm:") => self.workato(start)?,
            Some(_) if self.looking_at("arn:") => {
                let token = self.token();
                parse_ecs_arn(&token, start)?
            }
            Some(_) if self.looking_at("secrets") => self.secrets_path(start)?,
            Some(_) if self.looking_at("}}") => {
                return Err(
                    self.error_at(open, "empty `{{ }}`: expected a secret reference".into())
                );
            }
            Some(_) => {
                return Err(self.error_here(
                    "expected `secrets.NAME`, `secrets['NAME']`, `workato:sm:KEY:ARN`, \
                     an `arn:aws:secretsmanager:...` reference or a quoted string after `{{`"
                        .into(),
                ));
            }
        };
        let filters = self.close(open, true)?;
        Ok(Expression::Secret(Placeholder {
            reference: expression,
            filters,
            column: column(open),
        }))
    }

    fn unclosed(&self, open: usize) -> TemplateError {
        self.error_at(
            open,
            "unclosed `{{`: expected `}}` before the end of the field".into(),
        )
    }

    /// Reads optional filters (where allowed), then the closing `}}`.
    fn close(&mut self, open: usize, filters_allowed: bool) -> Result<Vec<Filter>, TemplateError> {
        let mut filters = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.unclosed(open)),
                Some('|') if filters_allowed => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek().is_none() {
                        return Err(self.unclosed(open));
                    }
                    let at = self.pos;
                    let name = self.identifier();
                    if name.is_empty() {
                        return Err(self.error_here("expected a filter name after `|`".into()));
                    }
                    let filter = Filter::from_name(&name).ok_or_else(|| {
                        self.error_at(
                            at,
                            format!("unknown filter `{name}` (expected urlencode, json or base64)"),
                        )
                    })?;
                    filters.push(filter);
                }
                Some('|') => {
                    return Err(self.error_here("filters apply only to secret references".into()));
                }
                Some(_) if self.looking_at("}}") => {
                    self.pos += 2;
                    return Ok(filters);
                }
                Some(c) => {
                    return Err(self.error_here(format!(
                        "unexpected `{c}`: expected {}`}}}}`",
                        if filters_allowed {
                            "`|` and a filter, or "
                        } else {
                            ""
                        }
                    )));
                }
            }
        }
    }

    /// Characters of a dotted name or key, or of a filter name.
    fn identifier(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                out.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        out
    }

    /// A run of characters up to white space, `|` or `}`: an ARN.
    fn token(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '|' || c == '}' {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        out
    }

    /// A single- or double-quoted string with `\\`, `\'` and `\"` escapes.
    fn string_literal(&mut self) -> Result<String, TemplateError> {
        let open = self.pos;
        let Some(quote) = self.peek() else {
            return Err(self.error_here("expected a quoted string".into()));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        open,
                        format!("unterminated string: expected a closing {quote}"),
                    ));
                }
                Some('\\') => {
                    let escaped = self.chars.get(self.pos + 1).copied();
                    match escaped {
                        Some(c @ ('\\' | '\'' | '"')) => out.push(c),
                        _ => {
                            return Err(self.error_here(
                                "unknown escape in string: only \\\\, \\' and \\\" are allowed"
                                    .into(),
                            ));
                        }
                    }
                    self.pos += 2;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `secrets.NAME.KEY...` or `secrets['NAME']['KEY']...`, in any mix.
    fn secrets_path(&mut self, start: usize) -> Result<Reference, TemplateError> {
        self.pos += "secrets".len();
        let mut parts: Vec<String> = Vec::new();
        loop {
            let at = self.pos;
            let what = if parts.is_empty() {
                "secret name"
            } else {
                "key"
            };
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    let part = self.identifier();
                    if part.is_empty() {
                        return Err(match self.peek() {
                            Some(c) if !c.is_whitespace() && c != '}' && c != '|' => self
                                .error_here(format!(
                                    "`{c}` cannot appear in a dotted {what}; use the bracket form \
                                 `['...']`"
                                )),
                            _ => self.error_at(at, format!("empty {what} after `.`")),
                        });
                    }
                    parts.push(part);
                }
                Some('[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if !matches!(self.peek(), Some('\'' | '"')) {
                        return Err(self.error_here(format!("expected a quoted {what} after `[`")));
                    }
                    let part = self.string_literal()?;
                    if part.is_empty() {
                        return Err(self.error_at(at, format!("empty {what} in `[...]`")));
                    }
                    self.skip_ws();
                    if self.peek() != Some(']') {
                        return Err(self.error_here("expected `]`".into()));
                    }
                    self.pos += 1;
                    parts.push(part);
                }
                Some(c) if !parts.is_empty() && !c.is_whitespace() && c != '|' && c != '}' => {
                    return Err(self.error_here(format!(
                        "`{c}` cannot appear in a dotted name or key; use the bracket form `['...']`"
                    )));
                }
                _ => break,
            }
        }
        if parts.is_empty() {
            return Err(self.error_at(
                start,
                "expected `.NAME` or `['NAME']` after `secrets`".into(),
            ));
        }
        let name = parts.remove(0);
        Ok(Reference {
            name,
            path: parts,
            version_stage: None,
            version_id: None,
        })
    }

    /// `workato:sm:KEY_NAME:SECRET_ARN`; the key may contain dots.
    fn workato(&mut self, start: usize) -> Result<Reference, TemplateError> {
        self.pos += "workato:sm:".len();
        let body_start = self.pos;
        let body = self.token();
        let Some(split) = body.find(":arn:") else {
            return Err(self.error_at(
                start,
                "expected `workato:sm:KEY_NAME:SECRET_ARN` (no `:arn:` found)".into(),
            ));
        };
        let key = &body[..split];
        if key.is_empty() {
            return Err(self.error_at(
                body_start,
                "empty key name in `workato:sm:KEY_NAME:SECRET_ARN`".into(),
            ));
        }
        let arn = &body[split + 1..];
        let arn_start = body_start + body[..=split].chars().count();
        if arn.split(':').count() > ARN_FIXED_PARTS {
            return Err(self.error_at(
                arn_start,
                "a Workato reference takes a plain secret ARN, without `:JSON_KEY:STAGE:ID` fields"
                    .into(),
            ));
        }
        let reference = parse_ecs_arn(arn, arn_start)?;
        Ok(Reference {
            path: vec![key.to_string()],
            ..reference
        })
    }
}

enum Expression {
    Literal(String),
    Secret(Placeholder),
}

/// Parses `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME` with the
/// optional ECS fields `:JSON_KEY:VERSION_STAGE:VERSION_ID` (all three or
/// none).
fn parse_ecs_arn(arn: &str, start: usize) -> Result<Reference, TemplateError> {
    let err = |message: String| TemplateError {
        column: column(start),
        message,
    };
    let parts: Vec<&str> = arn.split(':').collect();
    // ECS accepts the bare ARN or all three trailing fields (empty ones
    // keeping their colons); one or two would turn a typo into a lookup.
    if parts.len() != ARN_FIXED_PARTS && parts.len() != ARN_FIXED_PARTS + 3 {
        let shape = "expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME, or with all three \
                     fields NAME:JSON_KEY:VERSION_STAGE:VERSION_ID (empty ones keep their colons, \
                     as in `secret:db:password::`)";
        return Err(err(if parts.len() < ARN_FIXED_PARTS {
            format!("bad ARN `{}`: {shape}", printable(arn))
        } else {
            format!(
                "bad ARN `{}`: {} field(s) after the secret name; {shape}",
                printable(arn),
                parts.len() - ARN_FIXED_PARTS
            )
        }));
    }
    let labels = [
        "arn",
        "partition",
        "service",
        "region",
        "account",
        "resource type",
        "secret name",
    ];
    for (label, part) in labels.iter().zip(&parts) {
        if part.is_empty() {
            return Err(err(format!("bad ARN `{}`: empty {label}", printable(arn))));
        }
    }
    if parts[2] != "secretsmanager" {
        return Err(err(format!(
            "bad ARN `{}`: service is `{}`, expected `secretsmanager`",
            printable(arn),
            printable(parts[2])
        )));
    }
    if parts[5] != "secret" {
        return Err(err(format!(
            "bad ARN `{}`: resource type is `{}`, expected `secret`",
            printable(arn),
            printable(parts[5])
        )));
    }
    let optional = |i: usize| {
        parts
            .get(i)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
    };
    let json_key = optional(7);
    let version_stage = optional(8);
    let version_id = optional(9);
    if version_stage.is_some() && version_id.is_some() {
        return Err(err(format!(
            "bad ARN `{}`: VERSION_STAGE and VERSION_ID are exclusive; give one",
            printable(arn)
        )));
    }
    let reference = Reference {
        name: parts[..ARN_FIXED_PARTS].join(":"),
        path: json_key.into_iter().collect(),
        version_stage,
        version_id,
    };
    Ok(reference)
}

/// The most characters of an ARN quoted in an error.
const MAX_QUOTED_ARN: usize = 300;

/// An ARN as typed, with control characters escaped and cut short, for
/// error messages.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED_ARN)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_QUOTED_ARN).is_some() {
        out.push('…');
    }
    out
}
