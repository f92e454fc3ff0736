//! [`Text`]: what a connector's fields and outputs are made of. Plain text
//! the connector may read, or sealed text it cannot: secret values stay in
//! the host, and the connector composes them with plain pieces and
//! encodings that the host applies after `render` returns.

use std::fmt;
use std::ops::{Add, AddAssign};

use keyward_template::compose::Node;
use keyward_template::encode::Encoding;

/// Text that may hold sealed (secret) parts.
///
/// ```
/// use keyward_guest::{Text, compose};
///
/// let user = Text::from("app");
/// let token = Text::from("t0k3n"); // in a render, a sealed field
/// let header = compose!["Basic ", compose![&user, ":", &token].base64()];
/// assert_eq!(header.as_plain(), Some("Basic YXBwOnQwazNu"));
/// ```
///
/// Plain pieces stay plain through concatenation and encodings (the SDK
/// encodes them at once); anything built from a sealed piece is sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Plain(String),
    Sealed(u64),
    Concat(Vec<Text>),
    Encode(Encoding, Box<Text>),
}

impl Text {
    /// Plain text.
    pub fn plain(text: impl Into<String>) -> Self {
        Self(Repr::Plain(text.into()))
    }

    /// A sealed piece from its host handle; the SDK makes these.
    pub(crate) fn sealed(handle: u64) -> Self {
        Self(Repr::Sealed(handle))
    }

    /// A sealed piece from a raw handle. Only for tests of the host's
    /// containment: a handle means nothing outside the render it came from.
    #[doc(hidden)]
    pub fn __from_handle(handle: u64) -> Self {
        Self::sealed(handle)
    }

    /// The raw handle of a text that is one sealed piece. Only for tests of
    /// the host's containment.
    #[doc(hidden)]
    pub fn __handle(&self) -> Option<u64> {
        match self.0 {
            Repr::Sealed(handle) => Some(handle),
            _ => None,
        }
    }

    /// The text, if no part of it is sealed.
    pub fn as_plain(&self) -> Option<&str> {
        match &self.0 {
            Repr::Plain(text) => Some(text),
            _ => None,
        }
    }

    /// The plain text before its first sealed part (all of it if there is
    /// none): what a connector can check of a field such as
    /// `https://{{ secrets.host }}/api`.
    pub fn plain_prefix(&self) -> &str {
        match &self.0 {
            Repr::Plain(text) => text,
            Repr::Concat(parts) => parts.first().map_or("", |first| match &first.0 {
                Repr::Plain(text) => text,
                _ => "",
            }),
            _ => "",
        }
    }

    /// Whether any part of it is sealed.
    pub fn is_sealed(&self) -> bool {
        self.as_plain().is_none()
    }

    /// The pieces one after another.
    pub fn concat<I, T>(pieces: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Text>,
    {
        pieces
            .into_iter()
            .fold(Text::plain(String::new()), |mut text, piece| {
                text += piece.into();
                text
            })
    }

    /// Encoded with `encoding`: at once if plain, by the host if sealed.
    pub fn encode(self, encoding: Encoding) -> Self {
        match self.0 {
            Repr::Plain(text) => Self::plain(encoding.apply(text.as_bytes())),
            sealed => Self(Repr::Encode(encoding, Box::new(Self(sealed)))),
        }
    }

    /// RFC 3986 percent-encoding (userinfo, path segment, query component).
    pub fn percent(self) -> Self {
        self.encode(Encoding::Percent)
    }

    /// Form encoding (`application/x-www-form-urlencoded`).
    pub fn form(self) -> Self {
        self.encode(Encoding::Form)
    }

    /// A JSON string literal, quotes included.
    pub fn json_string(self) -> Self {
        self.encode(Encoding::JsonString)
    }

    /// Standard base64 with padding.
    pub fn base64(self) -> Self {
        self.encode(Encoding::Base64)
    }

    /// URL-safe base64 without padding.
    pub fn base64url(self) -> Self {
        self.encode(Encoding::Base64Url)
    }

    /// A URI host: an IPv6 literal in brackets, anything else percent-encoded.
    pub fn uri_host(self) -> Self {
        self.encode(Encoding::UriHost)
    }

    /// The composition as the host takes it: nodes referring to earlier
    /// nodes, the value last.
    pub(crate) fn to_nodes(&self) -> Vec<Node<u64>> {
        self.clone().into_nodes()
    }

    /// [`Text::to_nodes`], moving the plain text instead of copying it.
    pub(crate) fn into_nodes(self) -> Vec<Node<u64>> {
        let mut nodes = Vec::new();
        self.push_nodes(&mut nodes);
        nodes
    }

    fn push_nodes(self, nodes: &mut Vec<Node<u64>>) -> u32 {
        let node = match self.0 {
            Repr::Plain(text) => Node::Plain(text),
            Repr::Sealed(handle) => Node::Sealed(handle),
            Repr::Concat(parts) => Node::Concat(
                parts
                    .into_iter()
                    .map(|part| part.push_nodes(nodes))
                    .collect(),
            ),
            Repr::Encode(encoding, part) => Node::Encode(encoding, part.push_nodes(nodes)),
        };
        nodes.push(node);
        u32::try_from(nodes.len() - 1).unwrap_or(u32::MAX)
    }
}

impl AddAssign<Text> for Text {
    fn add_assign(&mut self, piece: Text) {
        let this = std::mem::replace(&mut self.0, Repr::Plain(String::new()));
        self.0 = match (this, piece.0) {
            (Repr::Plain(mut a), Repr::Plain(b)) => {
                a.push_str(&b);
                Repr::Plain(a)
            }
            (Repr::Plain(a), b) if a.is_empty() => b,
            (a, Repr::Plain(b)) if b.is_empty() => a,
            (Repr::Concat(mut parts), Repr::Plain(b)) => {
                match parts.last_mut().map(|last| &mut last.0) {
                    Some(Repr::Plain(last)) => last.push_str(&b),
                    _ => parts.push(Text::plain(b)),
                }
                Repr::Concat(parts)
            }
            (Repr::Concat(mut parts), b) => {
                parts.push(Text(b));
                Repr::Concat(parts)
            }
            (a, b) => Repr::Concat(vec![Text(a), Text(b)]),
        };
    }
}

impl AddAssign<&str> for Text {
    fn add_assign(&mut self, piece: &str) {
        *self += Text::plain(piece);
    }
}

impl<T: Into<Text>> Add<T> for Text {
    type Output = Text;

    fn add(mut self, piece: T) -> Text {
        self += piece.into();
        self
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::plain(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::plain(text)
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Self {
        Text::plain(text.as_str())
    }
}

impl From<&Text> for Text {
    fn from(text: &Text) -> Self {
        text.clone()
    }
}

/// Plain parts as they are, sealed parts as `<sealed>`: nothing to hide,
/// since the connector never holds a sealed part's text.
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Plain(text) => write!(f, "{text:?}"),
            Repr::Sealed(_) => f.write_str("<sealed>"),
            Repr::Concat(parts) => {
                let mut list = f.debug_list();
                list.entries(parts);
                list.finish()
            }
            Repr::Encode(encoding, part) => write!(f, "{encoding}({part:?})"),
        }
    }
}

/// Concatenates plain and sealed pieces (anything `Into<Text>`):
/// `compose!["postgresql://", user.percent(), "@", host.uri_host()]`.
#[macro_export]
macro_rules! compose {
    ($($piece:expr),* $(,)?) => {
        $crate::Text::concat([$($crate::Text::from($piece)),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_stays_plain_and_sealed_spreads() {
        let text = crate::compose!["a", String::from("b"), Text::plain("c").base64()];
        assert_eq!(text.as_plain(), Some("abYw=="));
        let sealed = crate::compose!["user:", Text::sealed(7).percent(), "@", "host"];
        assert!(sealed.is_sealed());
        assert_eq!(
            format!("{sealed:?}"),
            r#"["user:", percent(<sealed>), "@host"]"#
        );
        assert_eq!(sealed.plain_prefix(), "user:");
        assert_eq!(Text::sealed(1).plain_prefix(), "");
        let nodes = sealed.to_nodes();
        assert_eq!(
            nodes,
            vec![
                Node::Plain("user:".into()),
                Node::Sealed(7),
                Node::Encode(Encoding::Percent, 1),
                Node::Plain("@host".into()),
                Node::Concat(vec![0, 2, 3]),
            ]
        );
        let value = keyward_template::compose::evaluate(&nodes, 1024, |_| Ok("p w")).unwrap();
        assert_eq!(value, "user:p%20w@host");
    }
}
