//! Secret values: redacted in every `Debug`, zeroed on drop, and the JSON
//! path lookup that turns a secret into the leaf a reference asked for.

use std::fmt;
use std::sync::OnceLock;

use zeroize::Zeroizing;

/// A secret value as the backend stores it.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// `SecretString`.
    Text(Zeroizing<String>),
    /// `SecretBinary`.
    Bytes(Zeroizing<Vec<u8>>),
}

impl SecretValue {
    /// A text secret.
    pub fn text(value: impl Into<String>) -> Self {
        Self::Text(Zeroizing::new(value.into()))
    }

    /// A binary secret.
    pub fn bytes(value: impl Into<Vec<u8>>) -> Self {
        Self::Bytes(Zeroizing::new(value.into()))
    }

    /// The text, if this is a text secret.
    pub fn expose_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Bytes(_) => None,
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(_) => f.write_str("SecretValue::Text(****)"),
            Self::Bytes(_) => f.write_str("SecretValue::Bytes(****)"),
        }
    }
}

/// Why a path could not be followed. Holds key names, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The value is binary or not a JSON object.
    NotJson,
    /// `key` is missing (or its parent is not an object).
    MissingKey {
        /// The key that could not be followed.
        key: String,
        /// Keys before it, outermost first.
        parent: Vec<String>,
    },
}

/// A fetched version with its JSON parsed at most once, however many
/// references read keys from it.
pub struct ParsedSecret {
    value: SecretValue,
    json: OnceLock<Option<serde_json::Value>>,
}

impl fmt::Debug for ParsedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedSecret")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl Drop for ParsedSecret {
    fn drop(&mut self) {
        if let Some(Some(json)) = self.json.take() {
            zeroize_json(json);
        }
    }
}

/// Zeroes every string in a parsed JSON value.
fn zeroize_json(value: serde_json::Value) {
    match value {
        serde_json::Value::String(s) => drop(Zeroizing::new(s)),
        serde_json::Value::Array(items) => items.into_iter().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.into_iter().for_each(|(k, v)| {
            drop(Zeroizing::new(k));
            zeroize_json(v);
        }),
        _ => {}
    }
}

impl ParsedSecret {
    /// Wraps a value; JSON is parsed on the first path lookup.
    pub fn new(value: SecretValue) -> Self {
        Self {
            value,
            json: OnceLock::new(),
        }
    }

    /// The whole value.
    pub fn value(&self) -> &SecretValue {
        &self.value
    }

    /// The value a path selects: the whole value for an empty path; for a
    /// JSON leaf, a string as its text, anything else as compact JSON.
    pub fn select(&self, path: &[String]) -> Result<SecretValue, PathError> {
        if path.is_empty() {
            return Ok(self.value.clone());
        }
        let json = self
            .json
            .get_or_init(|| {
                self.value
                    .expose_text()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                    .filter(serde_json::Value::is_object)
            })
            .as_ref()
            .ok_or(PathError::NotJson)?;
        let mut node = json;
        for (depth, key) in path.iter().enumerate() {
            node =
                node.as_object()
                    .and_then(|o| o.get(key))
                    .ok_or_else(|| PathError::MissingKey {
                        key: key.clone(),
                        parent: path[..depth].to_vec(),
                    })?;
        }
        Ok(match node {
            serde_json::Value::String(text) => SecretValue::text(text.clone()),
            other => SecretValue::text(other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leaves_render_by_type() {
        let s = ParsedSecret::new(SecretValue::text(
            r#"{"user":"app","port":5432,"tls":true,"nested":{"a":[1,"x"]},"n":null}"#,
        ));
        assert_eq!(
            s.select(&keys(&["user"])).unwrap(),
            SecretValue::text("app")
        );
        assert_eq!(
            s.select(&keys(&["port"])).unwrap(),
            SecretValue::text("5432")
        );
        assert_eq!(
            s.select(&keys(&["tls"])).unwrap(),
            SecretValue::text("true")
        );
        assert_eq!(
            s.select(&keys(&["nested"])).unwrap(),
            SecretValue::text(r#"{"a":[1,"x"]}"#)
        );
        assert_eq!(s.select(&keys(&["n"])).unwrap(), SecretValue::text("null"));
    }

    #[test]
    fn missing_keys_and_non_json() {
        let s = ParsedSecret::new(SecretValue::text(r#"{"a":{"b":1}}"#));
        assert_eq!(
            s.select(&keys(&["a", "c"])).unwrap_err(),
            PathError::MissingKey {
                key: "c".into(),
                parent: keys(&["a"])
            }
        );
        assert!(matches!(
            s.select(&keys(&["a", "b", "c"])),
            Err(PathError::MissingKey { .. })
        ));
        let plain = ParsedSecret::new(SecretValue::text("hunter2"));
        assert_eq!(plain.select(&keys(&["a"])).unwrap_err(), PathError::NotJson);
        let binary = ParsedSecret::new(SecretValue::bytes(b"{\"a\":1}".to_vec()));
        assert_eq!(
            binary.select(&keys(&["a"])).unwrap_err(),
            PathError::NotJson
        );
    }

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?}", ParsedSecret::new(SecretValue::text("canary-77")));
        assert!(!shown.contains("canary"), "{shown}");
    }
}
