//! The embedded backend: secrets in a local JSON file.
//!
//! The simplest file maps names to text values:
//!
//! ```json
//! { "acme/prod/host": "db.internal" }
//! ```
//!
//! A name may instead map to an object describing the secret, for JSON
//! values, binary values and versions with staging labels:
//!
//! ```json
//! {
//!   "acme/prod/db": { "json": { "user": "app", "password": "s3cret" } },
//!   "acme/prod/cert": { "binary_base64": "AAEC" },
//!   "acme/prod/api": { "versions": [
//!     { "id": "v1", "stages": ["AWSPREVIOUS"], "text": "old-token" },
//!     { "id": "v2", "stages": ["AWSCURRENT"], "text": "new-token" }
//!   ] }
//! }
//! ```
//!
//! The file is read again whenever it changes, so editing it is a rotation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;

use super::{BoxFuture, FetchedSecret, SecretKey, SecretStore, StoreError, StoreIdentity};
use crate::name::{AWSCURRENT, SecretName, VersionSelector};
use crate::value::SecretValue;

/// The file backend's settings: `[secrets.backend]` with `kind = "file"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSettings {
    /// The JSON file (relative paths in the configuration are resolved
    /// against the configuration file's directory).
    pub path: PathBuf,
    /// A file has no region, account or partition of its own: the
    /// operator names those that ARNs in references must point at.
    pub identity: StoreIdentity,
}

/// Secrets read from a JSON file.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    modified: Option<SystemTime>,
    secrets: BTreeMap<String, Vec<Version>>,
}

struct Version {
    id: String,
    stages: Vec<String>,
    value: SecretValue,
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("id", &self.id)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

/// The largest secrets file read.
const MAX_SECRETS_FILE_BYTES: u64 = 64 << 20;

/// A file problem: where, and what. Never quotes the file's contents.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileStoreError {
    path: String,
    message: String,
}

impl FileStore {
    /// Opens and checks the file now, so a broken file fails at start-up.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, FileStoreError> {
        let path = path.into();
        let loaded = load(&path)?;
        Ok(Self {
            path,
            loaded: Mutex::new(loaded),
        })
    }

    /// Reloads the file if it changed since it was last read. The read
    /// runs on a blocking thread, off the runtime's workers, so a slow or
    /// odd file never stalls other requests.
    async fn refresh(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, StoreError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let stale = {
            let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            modified != loaded.modified || modified.is_none()
        };
        if !stale {
            return Ok(self.loaded.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let path = self.path.clone();
        let fresh = tokio::task::spawn_blocking(move || load(&path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading the secrets file: {e}")))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        *loaded = fresh;
        Ok(loaded)
    }
}

fn load(path: &Path) -> Result<Loaded, FileStoreError> {
    let err = |message: String| FileStoreError {
        path: path.display().to_string(),
        message,
    };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let bytes =
        crate::operator_file::read_regular(path, MAX_SECRETS_FILE_BYTES, "the secrets file", None)
            .map_err(err)?;
    // serde_json's syntax errors name a line and column, never the text
    // there; shapes are checked below, by hand, so that no message quotes
    // a value (serde's "invalid type" messages do).
    let document: Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let Value::Object(raw) = document else {
        return Err(err(format!(
            "the top level is {}; expected an object mapping secret names to values",
            kind(&document)
        )));
    };
    let mut secrets = BTreeMap::new();
    for (name, raw_value) in raw {
        SecretName::new(&name)
            .map_err(|e| err(format!("secret `{}`: {e}", name.escape_debug())))?;
        let versions =
            secret(raw_value).map_err(|e| err(format!("secret `{}`: {e}", name.escape_debug())))?;
        secrets.insert(name, versions);
    }
    Ok(Loaded { modified, secrets })
}

/// What a JSON value is, for an error message: its type, never its content.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The keys a secret object may have, and those of one of its versions.
const SECRET_KEYS: &[&str] = &["text", "json", "binary_base64", "versions"];
const VERSION_KEYS: &[&str] = &["id", "stages", "text", "json", "binary_base64"];

/// One secret: a string (a text value) or an object describing it.
fn secret(raw: Value) -> Result<Vec<Version>, String> {
    let mut fields = match raw {
        Value::String(text) => {
            return Ok(vec![Version {
                id: "v1".into(),
                stages: vec![AWSCURRENT.into()],
                value: SecretValue::text(text),
            }]);
        }
        Value::Object(fields) => fields,
        other => {
            return Err(format!(
                "the value is {}; write a text value as a string, or an object with one of \
                 `text`, `json`, `binary_base64` or `versions`",
                kind(&other)
            ));
        }
    };
    known_keys(&fields, SECRET_KEYS)?;
    let versions = fields.remove("versions");
    let single = value(&mut fields)?;
    let versions = match (single, versions) {
        (Some(_), Some(_)) => return Err("give either a value or `versions`, not both".into()),
        (None, None) => {
            return Err("no value: give `text`, `json`, `binary_base64` or `versions`".into());
        }
        (Some(value), None) => {
            return Ok(vec![Version {
                id: "v1".into(),
                stages: vec![AWSCURRENT.into()],
                value,
            }]);
        }
        (None, Some(Value::Array(versions))) => versions,
        (None, Some(other)) => {
            return Err(format!(
                "`versions` is {}; expected an array of versions",
                kind(&other)
            ));
        }
    };
    let mut out: Vec<Version> = Vec::new();
    for (index, raw) in versions.into_iter().enumerate() {
        let version = one_version(raw, &out).map_err(|e| format!("version {}: {e}", index + 1))?;
        out.push(version);
    }
    if !out.iter().any(|v| v.stages.iter().any(|s| s == AWSCURRENT)) {
        return Err("no version has the stage AWSCURRENT".into());
    }
    Ok(out)
}

/// One entry of `versions`, checked against the versions before it.
fn one_version(raw: Value, before: &[Version]) -> Result<Version, String> {
    let Value::Object(mut fields) = raw else {
        return Err(format!(
            "is {}; expected an object with `id`, `stages` and a value",
            kind(&raw)
        ));
    };
    known_keys(&fields, VERSION_KEYS)?;
    let id = match fields.remove("id") {
        Some(Value::String(id)) => id,
        Some(other) => return Err(format!("`id` is {}; expected a string", kind(&other))),
        None => return Err("missing field `id`".into()),
    };
    VersionSelector::from_parts(None, Some(&id)).map_err(|e| format!("`id`: {e}"))?;
    if before.iter().any(|v| v.id == id) {
        return Err(format!("version id `{id}` appears twice"));
    }
    let stages = match fields.remove("stages") {
        None => Vec::new(),
        Some(Value::Array(stages)) => stages
            .into_iter()
            .map(|stage| match stage {
                Value::String(stage) => Ok(stage),
                other => Err(format!("`stages` holds {}; expected strings", kind(&other))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`stages` is {}; expected an array of strings",
                kind(&other)
            ));
        }
    };
    for stage in &stages {
        VersionSelector::from_parts(Some(stage), None).map_err(|e| format!("`stages`: {e}"))?;
        if before.iter().any(|v| v.stages.contains(stage)) {
            return Err(format!("stage `{stage}` is on two versions"));
        }
    }
    let value = value(&mut fields)?
        .ok_or_else(|| "no value: give `text`, `json` or `binary_base64`".to_string())?;
    Ok(Version { id, stages, value })
}

/// `unknown field `x`, expected one of ...`: names keys, never values.
fn known_keys(fields: &serde_json::Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(format!(
            "unknown field `{}`, expected one of {}",
            unknown.escape_debug(),
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(()),
    }
}

/// At most one of the three value forms, taken out of `fields`.
fn value(fields: &mut serde_json::Map<String, Value>) -> Result<Option<SecretValue>, String> {
    let text = fields.remove("text");
    let json = fields.remove("json");
    let binary = fields.remove("binary_base64");
    match (text, json, binary) {
        (None, None, None) => Ok(None),
        (Some(Value::String(text)), None, None) => Ok(Some(SecretValue::text(text))),
        (Some(other), None, None) => Err(format!(
            "`text` is {}; expected a string (use `json` for a JSON value)",
            kind(&other)
        )),
        (None, Some(json), None) => Ok(Some(SecretValue::text(json.to_string()))),
        (None, None, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(|bytes| Some(SecretValue::bytes(bytes)))
            .map_err(|_| "`binary_base64` is not valid base64".to_string()),
        (None, None, Some(other)) => Err(format!(
            "`binary_base64` is {}; expected a base64 string",
            kind(&other)
        )),
        _ => Err("give exactly one of `text`, `json` or `binary_base64`".into()),
    }
}

impl SecretStore for FileStore {
    /// A file has no ARNs: a complete ARN's secret is read by its name.
    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        Box::pin(async move {
            let loaded = self.refresh().await?;
            let versions = loaded
                .secrets
                .get(key.name.as_str())
                .ok_or(StoreError::NotFound)?;
            let found = versions.iter().find(|v| match &key.version {
                VersionSelector::Stage(stage) => v.stages.contains(stage),
                VersionSelector::Id(id) => &v.id == id,
            });
            let v = found.ok_or(StoreError::NotFound)?;
            Ok(FetchedSecret {
                version_id: v.id.clone(),
                stages: v.stages.clone(),
                value: v.value.clone(),
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let loaded = self.refresh().await?;
            Ok(loaded
                .secrets
                .keys()
                .filter(|n| n.starts_with(prefix))
                .cloned()
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(json: &str) -> Result<FileStore, FileStoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, json).unwrap();
        let s = FileStore::open(&path);
        std::mem::forget(dir);
        s
    }

    fn fetch(s: &FileStore, name: &str, v: VersionSelector) -> Result<FetchedSecret, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.fetch(&SecretKey::new(SecretName::new(name).unwrap(), v)))
    }

    fn current() -> VersionSelector {
        VersionSelector::Stage(AWSCURRENT.into())
    }

    #[test]
    fn text_json_binary_and_versions() {
        let s = store(
            r#"{"a":"plain","b":{"json":{"k":1}},"c":{"binary_base64":"AAEC"},
               "d":{"versions":[{"id":"v1","stages":["AWSPREVIOUS"],"text":"old"},{"id":"v2","stages":["AWSCURRENT"],"text":"new"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            fetch(&s, "a", current()).unwrap().value,
            SecretValue::text("plain")
        );
        assert_eq!(
            fetch(&s, "b", current()).unwrap().value,
            SecretValue::text(r#"{"k":1}"#)
        );
        assert_eq!(
            fetch(&s, "c", current()).unwrap().value,
            SecretValue::bytes(vec![0, 1, 2])
        );
        assert_eq!(fetch(&s, "d", current()).unwrap().version_id, "v2");
        assert_eq!(
            fetch(&s, "d", VersionSelector::Stage("AWSPREVIOUS".into()))
                .unwrap()
                .value,
            SecretValue::text("old")
        );
        assert_eq!(
            fetch(&s, "d", VersionSelector::Id("v1".into()))
                .unwrap()
                .value,
            SecretValue::text("old")
        );
        assert_eq!(
            fetch(&s, "d", VersionSelector::Id("v9".into())).unwrap_err(),
            StoreError::NotFound
        );
        assert_eq!(
            fetch(&s, "zz", current()).unwrap_err(),
            StoreError::NotFound
        );
    }

    #[test]
    fn mistakes_are_named_without_values() {
        let e = store(r#"{"db":{"user":"app","password":"canary-pw"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("secret `db`: unknown field `user`"), "{e}");
        assert!(!e.contains("canary"), "{e}");
        let e = store(
            r#"{"db":{"text":"x","versions":[{"id":"v1","stages":["AWSCURRENT"],"text":"y"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = store(r#"{"db":{"versions":[{"id":"v1","stages":["AWSPREVIOUS"],"text":"y"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWSCURRENT"), "{e}");
        let e = store(r#"{"db":"x", "bad name":"y"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad name"), "{e}");
        let e = store(r#"{"db": "canary-pw""#).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("canary"), "{e}");
        let e = store(r#"{"db": 42}"#).unwrap_err().to_string();
        assert!(
            e.contains("secret `db`: the value is a number") && !e.contains("42"),
            "{e}"
        );
    }

    #[test]
    fn shape_errors_name_the_place_and_the_type_never_the_content() {
        for (json, expected) in [
            (
                r#""canary-top""#,
                "the top level is a string; expected an object",
            ),
            (r#"["canary-top"]"#, "the top level is an array"),
            (
                r#"{"db":{"text":["canary-in"]}}"#,
                "secret `db`: `text` is an array",
            ),
            (
                r#"{"db":{"binary_base64":7}}"#,
                "`binary_base64` is a number",
            ),
            (
                r#"{"db":{"versions":"canary-v"}}"#,
                "secret `db`: `versions` is a string",
            ),
            (
                r#"{"db":{"versions":[{"id":"v1","stages":["AWSCURRENT"],"text":"x"},{"id":"v2","stages":[true],"text":"canary-s"}]}}"#,
                "secret `db`: version 2: `stages` holds a boolean",
            ),
            (
                r#"{"db":{"versions":[{"id":{"canary":1},"text":"x"}]}}"#,
                "secret `db`: version 1: `id` is an object",
            ),
            (
                r#"{"db":{"versions":["canary-v"]}}"#,
                "secret `db`: version 1: is a string",
            ),
            (
                r#"{"db":{"versions":[{"id":"v1","text":"x","secret":"canary-k"}]}}"#,
                "version 1: unknown field `secret`",
            ),
        ] {
            let e = store(json).unwrap_err().to_string();
            assert!(e.contains(expected), "{json}: {e}");
            assert!(!e.contains("canary"), "{json}: {e}");
        }
    }
}
