//! The encodings a template filter or a composition applies: written out
//! here so that neither the host nor a connector needs an encoding crate.

use std::fmt;

/// One way of encoding text for the place it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// RFC 3986 percent-encoding of every byte outside `A-Z a-z 0-9 - . _ ~`:
    /// safe in a URI's userinfo, path segment or query component.
    Percent,
    /// `application/x-www-form-urlencoded`: as [`Encoding::Percent`], with
    /// a space written `+`.
    Form,
    /// A JSON string literal, quotes included (RFC 8259 §7).
    JsonString,
    /// Standard base64 with padding (RFC 4648 §4).
    Base64,
    /// URL-safe base64 without padding (RFC 4648 §5, as JWTs use it).
    Base64Url,
    /// A URI host: an IPv6 literal (it holds `:`) in brackets, anything else
    /// percent-encoded.
    UriHost,
}

impl Encoding {
    /// Every encoding, in the order the WIT enum declares them.
    pub const ALL: [Encoding; 6] = [
        Self::Percent,
        Self::Form,
        Self::JsonString,
        Self::Base64,
        Self::Base64Url,
        Self::UriHost,
    ];

    /// Encodes `bytes`. Text that is not UTF-8 is JSON-encoded as the
    /// base64 of its bytes (a JSON string holds only text).
    pub fn apply(self, bytes: &[u8]) -> String {
        match self {
            Self::Percent => percent(bytes),
            Self::Form => form(bytes),
            Self::JsonString => match std::str::from_utf8(bytes) {
                Ok(text) => json_string(text),
                Err(_) => json_string(&base64(bytes)),
            },
            Self::Base64 => base64(bytes),
            Self::Base64Url => base64url(bytes),
            Self::UriHost => match std::str::from_utf8(bytes) {
                Ok(host) if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
                Ok(host) if host.starts_with('[') && host.ends_with(']') => host.to_string(),
                _ => percent(bytes),
            },
        }
    }

    /// The most bytes encoding `len` bytes can produce, so that a
    /// composition's size is bounded before anything is built.
    pub fn max_len(self, len: usize) -> usize {
        match self {
            Self::Percent | Self::Form => len.saturating_mul(3),
            Self::UriHost => len.saturating_mul(3).saturating_add(2),
            // `\u00XX` for a control byte; base64 of non-UTF-8 is shorter.
            Self::JsonString => len.saturating_mul(6).saturating_add(2),
            Self::Base64 | Self::Base64Url => len.div_ceil(3).saturating_mul(4),
        }
    }

    /// Its name in templates, messages and the SDKs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Percent => "percent",
            Self::Form => "form",
            Self::JsonString => "json-string",
            Self::Base64 => "base64",
            Self::Base64Url => "base64url",
            Self::UriHost => "uri-host",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986: every byte outside `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
pub fn percent(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        push_percent(&mut out, b);
    }
    out
}

/// Form encoding: [`percent`], except that a space is `+`.
pub fn form(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b == b' ' {
            out.push('+');
        } else {
            push_percent(&mut out, b);
        }
    }
    out
}

fn push_percent(out: &mut String, b: u8) {
    if is_unreserved(b) {
        out.push(char::from(b));
    } else {
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xF)]));
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64(bytes: &[u8]) -> String {
    base64_with(bytes, STANDARD, true)
}

/// URL-safe base64 (RFC 4648 §5) without padding.
pub fn base64url(bytes: &[u8]) -> String {
    base64_with(bytes, URL_SAFE, false)
}

fn base64_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// A JSON string literal, quotes included (RFC 8259 §7).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let code = u32::from(c) as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(code >> 4)].to_ascii_lowercase()));
                out.push(char::from(
                    HEX[usize::from(code & 0xF)].to_ascii_lowercase(),
                ));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_encoding_on_a_hostile_value() {
        let value = "p@ss:w/rd #%?&\"\n";
        assert_eq!(
            Encoding::Percent.apply(value.as_bytes()),
            "p%40ss%3Aw%2Frd%20%23%25%3F%26%22%0A"
        );
        assert_eq!(
            Encoding::Form.apply(value.as_bytes()),
            "p%40ss%3Aw%2Frd+%23%25%3F%26%22%0A"
        );
        assert_eq!(
            Encoding::JsonString.apply(value.as_bytes()),
            r#""p@ss:w/rd #%?&\"\n""#
        );
        assert_eq!(Encoding::Base64.apply(b"user:tok"), "dXNlcjp0b2s=");
        assert_eq!(Encoding::Base64Url.apply(&[0xfb, 0xff]), "-_8");
        assert_eq!(Encoding::UriHost.apply(b"::1"), "[::1]");
        assert_eq!(Encoding::UriHost.apply(b"[::1]"), "[::1]");
        assert_eq!(Encoding::UriHost.apply(b"db.example"), "db.example");
        assert_eq!(json_string("\u{1}"), r#""\u0001""#);
        assert_eq!(Encoding::JsonString.apply(&[0xff]), r#""/w==""#);
    }

    #[test]
    fn max_len_bounds_every_encoding() {
        let inputs: [&[u8]; 5] = [b"", b"a", b"\x01\x01\x01", &[0xff; 7], b"::1"];
        for encoding in Encoding::ALL {
            for input in inputs {
                assert!(
                    encoding.apply(input).len() <= encoding.max_len(input.len()),
                    "{encoding} of {input:?}"
                );
            }
        }
    }
}
