//! Destinations: the places a platform connects to, parsed the strict way.
//!
//! A platform hands a rendered URL or host to its own client (libpq, an
//! HTTP library, a Redis driver), and every client parses it a little
//! differently. A host check is only as good as the agreement between the
//! checker's parser and the client's, so this parser accepts only what
//! RFC 3986, the WHATWG URL standard (Node's `URL`), Python's
//! `urllib.parse` and Rust's `url` all read the same way, and refuses
//! everything they could disagree on: backslashes, whitespace and control
//! characters, non-ASCII text, more than one `@`, percent-encoded or
//! trailing-dot host names, numeric, hex and octal IPv4 forms, IPv6 zone
//! ids, empty hosts and ports, and dot segments in paths.
//!
//! Every part is returned with its byte range in the input, so a caller can
//! tell which part a given byte stands in.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// A parsed destination: a URL (`scheme://[userinfo@]host[:port][/path][?query][#fragment]`)
/// or a bare `host[:port]`. Host names are lowercased.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// The scheme, lowercased (`postgresql`, `https`, `jdbc:mysql`); none
    /// for a bare host.
    pub scheme: Option<String>,
    /// The host, lowercased; an IPv6 address without its brackets.
    pub host: String,
    /// The port written in the text, if any.
    pub port: Option<u16>,
    /// Where each part stands in the text.
    pub spans: Spans,
}

/// Byte ranges of a destination's parts in the text it was parsed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spans {
    /// The scheme and its `://`.
    pub scheme: Option<Range<usize>>,
    /// Userinfo, without its `@`.
    pub userinfo: Option<Range<usize>>,
    /// The host (brackets included for IPv6).
    pub host: Range<usize>,
    /// The port's digits.
    pub port: Option<Range<usize>>,
    /// The path, from its leading `/` (possibly empty).
    pub path: Range<usize>,
    /// The query, without its `?`.
    pub query: Option<Range<usize>>,
    /// The fragment, without its `#`.
    pub fragment: Option<Range<usize>>,
}

/// Debug shows the scheme, host and port, which are what a platform is
/// told; never userinfo, path or query, which may hold credentials.
impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Why a text is not a destination keyward accepts: the part at fault and
/// what is wrong with it, never the text itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationError {
    /// The part at fault (`host`, `port`, `authority`, `path`, ...).
    pub part: &'static str,
    /// What is wrong, in words.
    pub why: &'static str,
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "its {} {}", self.part, self.why)
    }
}

impl std::error::Error for DestinationError {}

fn refuse<T>(part: &'static str, why: &'static str) -> Result<T, DestinationError> {
    Err(DestinationError { part, why })
}

/// The schemes the WHATWG URL standard parses specially: a client reads
/// `https:host` or `https:\\host` as `https://host/`.
const SPECIAL_SCHEMES: [&str; 6] = ["http", "https", "ws", "wss", "ftp", "file"];

/// Well-known default ports, for comparing a URL without a port against a
/// pin with one (and the reverse).
pub fn default_port(scheme: &str) -> Option<u16> {
    let scheme = scheme.rsplit(':').next().unwrap_or(scheme);
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "ftp" => 21,
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" | "rediss" => 6379,
        "mongodb" => 27017,
        "amqp" => 5672,
        "amqps" => 5671,
        "sqlserver" => 1433,
        _ => return None,
    })
}

/// Whether a client could take `text` for a URL: after what the WHATWG
/// parser strips (leading and trailing spaces and controls, tabs and
/// newlines anywhere), it starts with a scheme (`jdbc:postgresql:` counts)
/// followed by a slash or backslash, or with a special scheme at all
/// (`https:evil.example` is a URL to a client).
pub fn looks_like_url(text: &str) -> bool {
    let trimmed = text.trim_matches(|c: char| c <= ' ').as_bytes();
    let head = &trimmed[..trimmed.len().min(256)];
    // Tabs and newlines are rare: only then is a copy made.
    let cleaned: std::borrow::Cow<'_, [u8]> =
        if head.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r')) {
            head.iter()
                .copied()
                .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'))
                .collect::<Vec<u8>>()
                .into()
        } else {
            head.into()
        };
    let bytes = &*cleaned;
    let mut at = 0;
    let mut first_scheme: Option<&[u8]> = None;
    loop {
        let start = at;
        if !bytes.get(at).is_some_and(u8::is_ascii_alphabetic) {
            return false;
        }
        while bytes
            .get(at)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            at += 1;
        }
        if bytes.get(at) != Some(&b':') {
            return false;
        }
        let first = *first_scheme.get_or_insert(&bytes[start..at]);
        at += 1;
        match bytes.get(at) {
            Some(b'/' | b'\\') => return true,
            _ if SPECIAL_SCHEMES
                .iter()
                .any(|s| s.as_bytes().eq_ignore_ascii_case(first)) =>
            {
                return true;
            }
            // `jdbc:postgresql://`: another scheme may follow.
            Some(b) if b.is_ascii_alphabetic() => continue,
            _ => return false,
        }
    }
}

/// Where `byte` first stands in `text`, if it does (a byte search: every
/// byte that matters here is ASCII).
fn find_byte(text: &str, byte: impl Fn(u8) -> bool) -> Option<usize> {
    text.bytes().position(byte)
}

/// Bytes a strict destination may hold anywhere: printable ASCII other
/// than space, backslash and the characters RFC 3986 never allows.
fn check_bytes(text: &str) -> Result<(), DestinationError> {
    for b in text.bytes() {
        match b {
            b'\\' => return refuse("text", "holds a backslash"),
            b if b <= b' ' || b == 0x7f => {
                return refuse("text", "holds whitespace or a control character");
            }
            b if b >= 0x80 => return refuse("text", "holds non-ASCII text"),
            b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' => {
                return refuse("text", "holds a character URLs do not allow");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses an absolute URL with an authority (`scheme://...`).
pub fn parse_url(text: &str) -> Result<Destination, DestinationError> {
    check_bytes(text)?;
    let Some(end) = text.as_bytes().windows(3).position(|w| w == b"://") else {
        return refuse("scheme", "is not followed by `://`");
    };
    let scheme = &text[..end];
    let scheme_ok = !scheme.is_empty()
        && scheme.split(':').all(|s| {
            s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
    if !scheme_ok {
        return refuse("scheme", "is not a scheme");
    }
    let authority_start = end + 3;
    let rest = &text[authority_start..];
    let authority_len = find_byte(rest, |b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let (userinfo, hostport_start) = match authority.find('@') {
        Some(at) if authority[at + 1..].contains('@') => {
            return refuse("authority", "holds more than one `@`");
        }
        Some(at) => {
            check_userinfo(&authority[..at])?;
            (
                Some(authority_start..authority_start + at),
                authority_start + at + 1,
            )
        }
        None => (None, authority_start),
    };
    let hostport_end = authority_start + authority_len;
    let (host, host_span, port, port_span) = parse_hostport(text, hostport_start..hostport_end)?;
    let mut spans = Spans {
        scheme: Some(0..authority_start),
        userinfo,
        host: host_span,
        port: port_span,
        ..Spans::default()
    };
    let tail = &text[hostport_end..];
    let path_len = find_byte(tail, |b| matches!(b, b'?' | b'#')).unwrap_or(tail.len());
    spans.path = hostport_end..hostport_end + path_len;
    check_path(&text[spans.path.clone()])?;
    let mut at = hostport_end + path_len;
    if text[at..].starts_with('?') {
        let len = find_byte(&text[at + 1..], |b| b == b'#').unwrap_or(text.len() - at - 1);
        spans.query = Some(at + 1..at + 1 + len);
        check_percent(&text[at + 1..at + 1 + len], "query")?;
        at += 1 + len;
    }
    if text[at..].starts_with('#') {
        spans.fragment = Some(at + 1..text.len());
        check_percent(&text[at + 1..], "fragment")?;
        if text[at + 1..].contains('#') {
            return refuse("fragment", "holds a second `#`");
        }
    }
    Ok(Destination {
        scheme: Some(scheme.to_ascii_lowercase()),
        host,
        port,
        spans,
    })
}

/// Parses a bare `host`, `host:port` or `[v6]:port`.
pub fn parse_bare(text: &str) -> Result<Destination, DestinationError> {
    check_bytes(text)?;
    if text.contains(['/', '?', '#', '@']) {
        return refuse("host", "is not a bare host or host and port");
    }
    let (host, host_span, port, port_span) = parse_hostport(text, 0..text.len())?;
    Ok(Destination {
        scheme: None,
        host,
        port,
        spans: Spans {
            host: host_span,
            port: port_span,
            path: text.len()..text.len(),
            ..Spans::default()
        },
    })
}

/// Parses `text` as a URL if a client could take it for one, else as a
/// bare host and port.
pub fn parse(text: &str) -> Result<Destination, DestinationError> {
    if looks_like_url(text) {
        parse_url(text)
    } else {
        parse_bare(text)
    }
}

type HostPort = (String, Range<usize>, Option<u16>, Option<Range<usize>>);

fn parse_hostport(text: &str, span: Range<usize>) -> Result<HostPort, DestinationError> {
    let hostport = &text[span.clone()];
    let (host_len, port_at) = if hostport.starts_with('[') {
        let Some(close) = hostport.find(']') else {
            return refuse("host", "opens `[` without closing it");
        };
        match hostport.as_bytes().get(close + 1) {
            None => (close + 1, None),
            Some(b':') => (close + 1, Some(close + 2)),
            Some(_) => return refuse("host", "has text after its `]`"),
        }
    } else {
        match hostport.find(':') {
            Some(colon) => (colon, Some(colon + 1)),
            None => (hostport.len(), None),
        }
    };
    let host_text = &hostport[..host_len];
    let host = normalize_host(host_text)?;
    let host_span = span.start..span.start + host_len;
    let (port, port_span) = match port_at {
        None => (None, None),
        Some(at) => {
            let digits = &hostport[at..];
            if digits.is_empty() {
                return refuse("port", "is empty");
            }
            if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return refuse("port", "is not a number from 0 to 65535");
            }
            let Ok(port) = digits.parse::<u16>() else {
                return refuse("port", "is not a number from 0 to 65535");
            };
            (Some(port), Some(span.start + at..span.end))
        }
    };
    Ok((host, host_span, port, port_span))
}

/// A host as every parser reads it, lowercased; refuses the forms they
/// read differently.
pub fn normalize_host(host: &str) -> Result<String, DestinationError> {
    if host.is_empty() {
        return refuse("host", "is empty");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return refuse("host", "opens `[` without closing it");
        };
        if inner.contains('%') {
            return refuse("host", "is an IPv6 address with a zone id");
        }
        return match inner.parse::<Ipv6Addr>() {
            Ok(address) => Ok(address.to_string()),
            Err(_) => refuse("host", "is not an IPv6 address"),
        };
    }
    if host.contains('%') {
        return refuse("host", "is percent-encoded");
    }
    if host.ends_with('.') {
        return refuse("host", "ends with a dot");
    }
    if host.len() > 253 {
        return refuse("host", "is longer than 253 characters");
    }
    let mut labels = 0;
    for label in host.split('.') {
        labels += 1;
        if label.is_empty() {
            return refuse("host", "has an empty label");
        }
        if label.len() > 63 {
            return refuse("host", "has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return refuse("host", "holds a character host names do not have");
        }
    }
    // WHATWG reads a host whose last label is a number (decimal, `0x`
    // hex, or octal with a leading zero) as IPv4, in any of its forms:
    // only the canonical dotted quad is read the same by every client.
    let last = host.rsplit('.').next().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() >= 2 && last[..2].eq_ignore_ascii_case("0x"));
    if numeric {
        let canonical = labels == 4
            && host.split('.').all(|l| {
                l.bytes().all(|b| b.is_ascii_digit()) && (l.len() == 1 || !l.starts_with('0'))
            })
            && host.parse::<Ipv4Addr>().is_ok();
        if !canonical {
            return refuse("host", "is a numeric address that is not a dotted quad");
        }
    }
    Ok(host.to_ascii_lowercase())
}

fn check_userinfo(userinfo: &str) -> Result<(), DestinationError> {
    if userinfo.contains(['[', ']']) {
        return refuse("userinfo", "holds `[` or `]`");
    }
    check_percent(userinfo, "userinfo")
}

fn check_path(path: &str) -> Result<(), DestinationError> {
    check_percent(path, "path")?;
    for segment in path.split('/').skip(1) {
        if segment == "." || segment == ".." {
            return refuse("path", "has a dot segment");
        }
        // Escapes are rare: only a segment with one is lowercased.
        if !segment.contains('%') {
            continue;
        }
        let lower = segment.to_ascii_lowercase();
        let decoded_dots = lower.replace("%2e", ".");
        if decoded_dots == "." || decoded_dots == ".." {
            return refuse("path", "has a dot segment");
        }
        if lower.contains("%2f") || lower.contains("%5c") {
            return refuse("path", "holds an encoded slash or backslash");
        }
    }
    Ok(())
}

/// Every `%` begins a two-digit hex escape.
fn check_percent(text: &str, part: &'static str) -> Result<(), DestinationError> {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let ok = bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return refuse(part, "holds a `%` that is not an escape");
            }
            at += 3;
        } else {
            at += 1;
        }
    }
    Ok(())
}

impl Destination {
    /// The port a client connects to: the one written, else the scheme's
    /// well-known default.
    pub fn effective_port(&self) -> Option<u16> {
        self.port
            .or_else(|| self.scheme.as_deref().and_then(default_port))
    }

    /// The query's `name=value` pairs, with the range of each value.
    pub fn query_params<'t>(
        &self,
        text: &'t str,
    ) -> impl Iterator<Item = (&'t str, Range<usize>)> + 't {
        let span = self.spans.query.clone().unwrap_or(0..0);
        let start = span.start;
        let query = &text[span];
        let mut offset = start;
        query.split('&').map(move |pair| {
            let at = offset;
            offset += pair.len() + 1;
            match pair.find('=') {
                Some(eq) => (&pair[..eq], at + eq + 1..at + pair.len()),
                None => (pair, at + pair.len()..at + pair.len()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str) -> &'static str {
        parse(text).expect_err(text).part
    }

    #[test]
    fn urls_clients_agree_on_are_parsed_with_their_spans() {
        let text = "postgresql://app:p%40ss@DB.Internal.example:5432/orders?sslmode=require#x";
        let d = parse(text).unwrap();
        assert_eq!(d.scheme.as_deref(), Some("postgresql"));
        assert_eq!(d.host, "db.internal.example");
        assert_eq!(d.port, Some(5432));
        assert_eq!(&text[d.spans.userinfo.clone().unwrap()], "app:p%40ss");
        assert_eq!(&text[d.spans.host.clone()], "DB.Internal.example");
        assert_eq!(&text[d.spans.path.clone()], "/orders");
        assert_eq!(&text[d.spans.query.clone().unwrap()], "sslmode=require");
        assert_eq!(&text[d.spans.fragment.clone().unwrap()], "x");
        let params: Vec<_> = d.query_params(text).map(|(n, v)| (n, &text[v])).collect();
        assert_eq!(params, [("sslmode", "require")]);
        let v6 = parse("https://[::1]:8443/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(8443)));
        assert_eq!(v6.effective_port(), Some(8443));
        assert_eq!(
            parse("jdbc:mysql://db:3306/x").unwrap().scheme.as_deref(),
            Some("jdbc:mysql")
        );
        assert_eq!(
            parse("https://a.example").unwrap().effective_port(),
            Some(443)
        );
        let bare = parse("db.internal:6379").unwrap();
        assert_eq!((bare.scheme, bare.port), (None, Some(6379)));
        assert_eq!(parse("10.0.0.1").unwrap().host, "10.0.0.1");
    }

    #[test]
    fn forms_parsers_disagree_on_are_refused_naming_the_part() {
        assert_eq!(part("https://attacker.example\\@jira.example.com"), "text");
        assert_eq!(part("https://a@b@c.example/"), "authority");
        assert_eq!(part("https://jira.example.com./"), "host");
        assert_eq!(part("https://j%69ra.example.com/"), "host");
        assert_eq!(part("https://jïra.example.com/"), "text");
        assert_eq!(part("http://2130706433/"), "host");
        assert_eq!(part("http://0x7f.1/"), "host");
        assert_eq!(part("http://0177.0.0.1/"), "host");
        assert_eq!(part("http://127.1/"), "host");
        assert_eq!(part("http://[fe80::1%25eth0]/"), "host");
        assert_eq!(part("https:///path"), "host");
        assert_eq!(part("https://a.example:/"), "port");
        assert_eq!(part("https://a.example:99999/"), "port");
        assert_eq!(part("https://a..example/"), "host");
        assert_eq!(part("https://a.example/rest/../admin"), "path");
        assert_eq!(part("https://a.example/rest/%2E%2e/admin"), "path");
        assert_eq!(part("https://a.example/rest%2Fadmin"), "path");
        assert_eq!(part(" https://a.example/"), "text");
        assert_eq!(part("https://a.example/\tx"), "text");
        assert_eq!(part("https://a.example/%zz"), "path");
        assert_eq!(part("a.example/x"), "host");
    }

    #[test]
    fn what_a_client_takes_for_a_url_is_one() {
        for url in [
            "https://x",
            "HTTPS://x",
            "https:x.example",
            "https:\\\\x.example",
            " https://x",
            "ht\ttps://x",
            "jdbc:postgresql://x/db",
            "redis://x",
            "x+y.z://x",
        ] {
            assert!(looks_like_url(url), "{url}");
        }
        for text in [
            "Basic dXNlcjpwYXNz",
            "p@ss:word",
            "us-east-1",
            "db.internal:5432",
            "user:pass",
            "",
        ] {
            assert!(!looks_like_url(text), "{text}");
        }
    }
}
