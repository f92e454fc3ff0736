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
use serde::Deserialize;

use super::{BoxFuture, FetchedSecret, SecretStore, StoreError};
use crate::name::{AWSCURRENT, SecretName, VersionSelector};
use crate::value::SecretValue;

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

/// A secret written as an object (a bare string is a text secret).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescribed {
    text: Option<String>,
    json: Option<serde_json::Value>,
    binary_base64: Option<String>,
    #[serde(default)]
    versions: Vec<RawVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    id: String,
    #[serde(default)]
    stages: Vec<String>,
    text: Option<String>,
    json: Option<serde_json::Value>,
    binary_base64: Option<String>,
}

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

    /// Reloads the file if it changed since it was last read.
    fn refresh(&self) -> Result<std::sync::MutexGuard<'_, Loaded>, StoreError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified != loaded.modified || modified.is_none() {
            *loaded = load(&self.path).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
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
        std::fs::read(path).map_err(|e| err(format!("cannot read the secrets file: {e}")))?;
    // serde_json's messages name a line and column, never the text there.
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("not a JSON object of secret names: {e}")))?;
    let mut secrets = BTreeMap::new();
    for (name, raw_value) in raw {
        SecretName::new(&name)
            .map_err(|e| err(format!("secret `{}`: {e}", name.escape_debug())))?;
        let versions = match raw_value {
            serde_json::Value::String(text) => Ok(vec![Version {
                id: "v1".into(),
                stages: vec![AWSCURRENT.into()],
                value: SecretValue::text(text),
            }]),
            other => serde_json::from_value::<RawDescribed>(other)
                .map_err(|e| {
                    format!(
                        "{}; write a text value as a string, or an object with one of \
                         `text`, `json`, `binary_base64` or `versions`",
                        describe_serde(&e)
                    )
                })
                .and_then(versions),
        }
        .map_err(|e| err(format!("secret `{name}`: {e}")))?;
        secrets.insert(name, versions);
    }
    Ok(Loaded { modified, secrets })
}

/// serde's message for an unknown field lists field names only; others may
/// quote input, so they are reduced to their kind.
fn describe_serde(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("unknown field") || text.starts_with("missing field") {
        text
    } else {
        "unexpected value shape".to_string()
    }
}

fn versions(described: RawDescribed) -> Result<Vec<Version>, String> {
    let single = value(described.text, described.json, described.binary_base64)?;
    let versions = match (single, described.versions.is_empty()) {
        (Some(_), false) => return Err("give either a value or `versions`, not both".into()),
        (None, true) => {
            return Err("no value: give `text`, `json`, `binary_base64` or `versions`".into());
        }
        (Some(value), true) => {
            return Ok(vec![Version {
                id: "v1".into(),
                stages: vec![AWSCURRENT.into()],
                value,
            }]);
        }
        (None, false) => described.versions,
    };
    let mut out: Vec<Version> = Vec::new();
    for raw in versions {
        let context = |e: String| format!("version `{}`: {e}", raw.id);
        VersionSelector::from_parts(None, Some(&raw.id)).map_err(context)?;
        if out.iter().any(|v| v.id == raw.id) {
            return Err(format!("version id `{}` appears twice", raw.id));
        }
        for stage in &raw.stages {
            VersionSelector::from_parts(Some(stage), None).map_err(context)?;
            if out.iter().any(|v| v.stages.contains(stage)) {
                return Err(format!("stage `{stage}` is on two versions"));
            }
        }
        let value = value(raw.text, raw.json, raw.binary_base64)
            .map_err(context)?
            .ok_or_else(|| context("no value: give `text`, `json` or `binary_base64`".into()))?;
        out.push(Version {
            id: raw.id,
            stages: raw.stages,
            value,
        });
    }
    if !out.iter().any(|v| v.stages.iter().any(|s| s == AWSCURRENT)) {
        return Err("no version has the stage AWSCURRENT".into());
    }
    Ok(out)
}

/// At most one of the three value forms.
fn value(
    text: Option<String>,
    json: Option<serde_json::Value>,
    binary_base64: Option<String>,
) -> Result<Option<SecretValue>, String> {
    match (text, json, binary_base64) {
        (None, None, None) => Ok(None),
        (Some(text), None, None) => Ok(Some(SecretValue::text(text))),
        (None, Some(json), None) => Ok(Some(SecretValue::text(json.to_string()))),
        (None, None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(|bytes| Some(SecretValue::bytes(bytes)))
            .map_err(|_| "`binary_base64` is not valid base64".to_string()),
        _ => Err("give exactly one of `text`, `json` or `binary_base64`".into()),
    }
}

impl SecretStore for FileStore {
    fn fetch<'a>(
        &'a self,
        name: &'a SecretName,
        version: &'a VersionSelector,
    ) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        Box::pin(async move {
            let loaded = self.refresh()?;
            let versions = loaded
                .secrets
                .get(name.as_str())
                .ok_or(StoreError::NotFound)?;
            let found = versions.iter().find(|v| match version {
                VersionSelector::Stage(stage) => v.stages.contains(stage),
                VersionSelector::Id(id) => &v.id == id,
            });
            let v = found.ok_or(StoreError::NotFound)?;
            Ok(FetchedSecret {
                version_id: v.id.clone(),
                value: v.value.clone(),
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let loaded = self.refresh()?;
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
        rt.block_on(s.fetch(&SecretName::new(name).unwrap(), &v))
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
            e.contains("unexpected value shape") && !e.contains("42"),
            "{e}"
        );
    }
}
