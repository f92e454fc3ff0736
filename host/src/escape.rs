//! Text a connector wrote, made safe for a log line, an error line or a
//! terminal.
//!
//! A connector controls its log lines, render-error messages and fields,
//! output names and `describe` text. Raw, a newline in them could forge a
//! host log or audit line, and an ESC or BEL a terminal escape sequence
//! (colours, cursor moves, clipboard writes). Every such character is
//! written as its Rust escape (`\n`, `\u{1b}`) instead.

use std::borrow::Cow;

/// Whether a character could end a line, move the cursor, start a
/// terminal escape or reorder what a reader sees: C0 and C1 controls,
/// DEL, and the Unicode line separators and bidirectional overrides.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character escaped; borrowed when there is none.
pub fn escape_untrusted(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The largest character boundary of `text` at or before `at`.
pub fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Guest text for one line, at most `limit` bytes: `prefix` (already cut
/// to about `limit` and masked) escaped, cut again (escapes are longer
/// than what they replace), and noted as cut with the original length.
pub fn bounded_line(prefix: &str, original_len: usize, limit: usize) -> String {
    let escaped = escape_untrusted(prefix);
    let cut = floor_char_boundary(&escaped, limit);
    let mut line = escaped[..cut].to_string();
    if cut < escaped.len() || prefix.len() < original_len {
        line.push_str(&format!("… (cut; {original_len} bytes)"));
    }
    line
}

/// JSON text for a terminal: serde_json escapes the C0 controls inside
/// strings (so any left are the layout's own newlines) but leaves DEL, the
/// C1 controls (such as CSI, U+009B) and the bidirectional overrides raw;
/// they are written as `\uXXXX` escapes, which mean the same to a JSON
/// reader.
pub fn json_for_terminal(json: &str) -> Cow<'_, str> {
    let unsafe_in_json = |c: char| is_unsafe(c) && c >= ' ';
    if !json.chars().any(unsafe_in_json) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if unsafe_in_json(c) {
            // Outside the BMP nothing is unsafe, so one escape suffices.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape_untrusted("plain é 🔑"), Cow::Borrowed(_)));
        assert_eq!(
            escape_untrusted("a\nb\rc\u{1b}[31md\u{7}e\u{9b}f\u{7f}g\u{202e}h"),
            "a\\nb\\rc\\u{1b}[31md\\u{7}e\\u{9b}f\\u{7f}g\\u{202e}h"
        );
    }

    #[test]
    fn json_escapes_are_json() {
        let json = serde_json::to_string("x\u{9b}y\u{7f}z\u{202e}\n\u{1b}").unwrap();
        let safe = json_for_terminal(&json);
        assert_eq!(safe, "\"x\\u009by\\u007fz\\u202e\\n\\u001b\"");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "x\u{9b}y\u{7f}z\u{202e}\n\u{1b}");
        let pretty = serde_json::to_string_pretty(&serde_json::json!({"a": "\u{9b}"})).unwrap();
        let safe = json_for_terminal(&pretty);
        assert!(safe.contains('\n'), "the layout's newlines stay: {safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["a"], "\u{9b}");
    }
}
