//! Tenants: one keyward for many customers, each with its own backend
//! (its own AWS account, role, external id and region, or a file), its own
//! namespace and its own connectors.
//!
//! A tenant is a `[tenants.ID]` table of the configuration, or a file
//! `ID.toml` in the directory `tenants_dir` names, holding the same table
//! without its header, so that a platform onboards a customer by writing a
//! file and reloading. A bad tenant file is reported with its path and line
//! and leaves every other tenant loading; a bad `[tenants.ID]` table is an
//! error of the configuration itself, like any other table of it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    ConnectorConfig, RawBackend, RawConnector, RawSecrets, SecretsConfig, check_connectors,
    check_secrets, describe_toml_error,
};
use crate::sandbox::limits::SandboxConfig;

/// The tenant today's top-level `[secrets]` and `[connectors.*]` are: the
/// one the service's routes without a tenant serve.
pub const DEFAULT_TENANT: &str = "default";

/// The most tenants one configuration may hold, tables and files together,
/// unless `max_tenants` says otherwise.
pub const DEFAULT_MAX_TENANTS: usize = 20_000;

/// The longest tenant id: it names a file, a route segment, an assumed
/// role's session (`keyward-<id>`, at most 64 characters) and a metric label.
pub const MAX_TENANT_ID_CHARS: usize = 56;

/// The most bytes one tenant file may hold.
const MAX_TENANT_FILE_BYTES: u64 = 1 << 20;

/// A tenant's table as written: a `[secrets]` table's keys (`namespace`,
/// `backend`, the cache settings) beside its `connectors`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    backend: RawBackend,
    #[serde(default)]
    namespace: String,
    cache_ttl_ms: Option<u64>,
    cache_max_entries: Option<u64>,
    max_stale_ms: Option<u64>,
    refresh_ahead_ms: Option<u64>,
    invalidate_interval_ms: Option<u64>,
    connector_fetch_rate: Option<f64>,
    connector_fetch_burst: Option<u32>,
    #[serde(default)]
    connectors: BTreeMap<String, RawConnector>,
}

/// One tenant, checked.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// Its id (the table's name, or the file's stem).
    pub id: String,
    /// Its backend, namespace and cache.
    pub secrets: SecretsConfig,
    /// Its connectors by id.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// The file it was read from, if it has one of its own.
    pub file: Option<PathBuf>,
}

/// A tenant file that could not be loaded: the other tenants load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with its line and column where the file has them
    /// (never a value from it).
    pub message: String,
}

impl fmt::Display for TenantFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Whether `id` may name a tenant: 1 to [`MAX_TENANT_ID_CHARS`] lowercase
/// letters, digits and `-`, starting with a letter or digit (so it is a
/// file stem, a route segment and a session-name suffix as it stands).
pub fn valid_tenant_id(id: &str) -> bool {
    (1..=MAX_TENANT_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Why `id` cannot name a tenant, if it cannot.
fn check_id(id: &str) -> Result<(), String> {
    if id == DEFAULT_TENANT {
        return Err(format!(
            "`{DEFAULT_TENANT}` is the top-level [secrets] and [connectors] tables' tenant; \
             name this one otherwise"
        ));
    }
    if !valid_tenant_id(id) {
        return Err(format!(
            "a tenant id is 1 to {MAX_TENANT_ID_CHARS} lowercase letters, digits and `-`, \
             not starting with `-`"
        ));
    }
    Ok(())
}

/// Checks one tenant's table; errors name keys under `scope`
/// (`tenants.ID.` for a table of the configuration, empty for a file of
/// its own, whose path the caller names).
fn check_tenant(
    id: &str,
    raw: RawTenant,
    base: &Path,
    sandbox: &SandboxConfig,
    scope: &str,
) -> Result<TenantConfig, String> {
    let secrets = RawSecrets {
        backend: raw.backend,
        namespace: raw.namespace,
        cache_ttl_ms: raw.cache_ttl_ms,
        cache_max_entries: raw.cache_max_entries,
        max_stale_ms: raw.max_stale_ms,
        refresh_ahead_ms: raw.refresh_ahead_ms,
        invalidate_interval_ms: raw.invalidate_interval_ms,
        connector_fetch_rate: raw.connector_fetch_rate,
        connector_fetch_burst: raw.connector_fetch_burst,
    };
    // `check_secrets` names its keys under `secrets.`: a tenant's are its own.
    let secrets = check_secrets(secrets, base, &format!("keyward-{id}")).map_err(|e| {
        match e.strip_prefix("secrets.") {
            Some(rest) => format!("{scope}{rest}"),
            None => e,
        }
    })?;
    let connectors = check_connectors(raw.connectors, base, sandbox, scope)?;
    Ok(TenantConfig {
        id: id.to_string(),
        secrets,
        connectors,
        file: None,
    })
}

/// The `[tenants.ID]` tables of a configuration, checked: an error in one
/// is an error of the configuration.
pub(super) fn check_tables(
    raw: BTreeMap<String, RawTenant>,
    base: &Path,
    sandbox: &SandboxConfig,
) -> Result<BTreeMap<String, TenantConfig>, String> {
    let mut tenants = BTreeMap::new();
    for (id, raw) in raw {
        check_id(&id).map_err(|e| format!("tenants.{id}: {e}"))?;
        let tenant = check_tenant(&id, raw, base, sandbox, &format!("tenants.{id}."))?;
        tenants.insert(id, tenant);
    }
    Ok(tenants)
}

/// What a tenants directory held: the tenants that loaded, and the files
/// that did not, each with why.
#[derive(Debug, Default)]
pub(super) struct Directory {
    pub(super) tenants: BTreeMap<String, TenantConfig>,
    pub(super) errors: Vec<TenantFileError>,
}

/// Reads every `*.toml` file of `dir` as one tenant (its id the file's
/// stem), in name order; `taken` holds the ids already configured, which a
/// file may not reuse. At most `max_tenants` tenants in all; the directory
/// itself must be readable (a missing directory is an error of the
/// configuration: the operator named it).
pub(super) fn read_directory(
    dir: &Path,
    sandbox: &SandboxConfig,
    taken: &BTreeMap<String, TenantConfig>,
    max_tenants: usize,
) -> Result<Directory, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("tenants_dir: cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let mut directory = Directory::default();
    for path in files {
        let id = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default()
            .to_string();
        let loaded = if taken.len() + directory.tenants.len() >= max_tenants {
            Err(format!(
                "more than {max_tenants} tenants are configured (max_tenants); this one is not \
                 loaded"
            ))
        } else if taken.contains_key(&id) {
            Err(format!(
                "tenant `{id}` is also a [tenants.{id}] table of the configuration"
            ))
        } else {
            read_file(&path, &id, sandbox)
        };
        match loaded {
            Ok(tenant) => {
                directory.tenants.insert(id, tenant);
            }
            Err(message) => directory.errors.push(TenantFileError { path, message }),
        }
    }
    Ok(directory)
}

/// One tenant file: its stem checked as an id, its text as the tenant's
/// table (paths in it relative to the directory).
fn read_file(path: &Path, id: &str, sandbox: &SandboxConfig) -> Result<TenantConfig, String> {
    check_id(id).map_err(|e| format!("the file's stem names the tenant: {e}"))?;
    let text = crate::operator_file::read_regular_text(
        path,
        MAX_TENANT_FILE_BYTES,
        "the tenant file",
        None,
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    check_text(base, id, &text, sandbox)
}

/// `text` as the file `dir/ID.toml` of tenant `id`.
pub(super) fn check_text(
    dir: &Path,
    id: &str,
    text: &str,
    sandbox: &SandboxConfig,
) -> Result<TenantConfig, String> {
    check_id(id)?;
    if text.len() as u64 > MAX_TENANT_FILE_BYTES {
        return Err(format!(
            "a tenant file is at most {MAX_TENANT_FILE_BYTES} bytes; this one is {}",
            text.len()
        ));
    }
    let raw: RawTenant = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
    let mut tenant = check_tenant(id, raw, dir, sandbox, "")?;
    tenant.file = Some(dir.join(format!("{id}.toml")));
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use crate::config::{Backend, Config};

    const TOP: &str = r#"
[secrets]
namespace = "platform/"
[secrets.backend]
kind = "file"
path = "secrets.json"

[tenants.acme]
namespace = "acme/"
[tenants.acme.backend]
kind = "aws"
region = "eu-west-1"
role_arn = "arn:aws:iam::111111111111:role/keyward-reader"
external_id = "acme-7f3c"
[tenants.acme.connectors.db]
component = "connectors/postgres.wasm"
allow = ["db/*"]
[tenants.acme.connectors.db.config]
host = "{{ secrets.db.host }}"
"#;

    const GLOBEX: &str = r#"
namespace = "globex/"
[backend]
kind = "file"
path = "globex-secrets.json"
[connectors.api]
component = "../connectors/http.wasm"
allow = ["api"]
"#;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("scratch directory")
    }

    #[test]
    fn tenant_tables_have_their_own_backend_role_namespace_and_connectors() {
        let dir = scratch();
        let config = Config::parse(TOP, dir.path()).expect("config");
        let acme = &config.tenants["acme"];
        assert_eq!(acme.secrets.namespace.as_str(), "acme/");
        let Backend::Aws(aws) = &acme.secrets.backend else {
            panic!("acme's backend is aws");
        };
        assert_eq!(
            aws.role_arn.as_deref(),
            Some("arn:aws:iam::111111111111:role/keyward-reader")
        );
        assert_eq!(aws.external_id.as_deref(), Some("acme-7f3c"));
        assert_eq!(aws.session_name, "keyward-acme");
        assert_eq!(
            acme.connectors["db"].component,
            dir.path().join("connectors/postgres.wasm")
        );
        // The top-level tables stay the default tenant's.
        assert!(config.connectors.is_empty());
        assert_eq!(config.secrets.namespace.as_str(), "platform/");
        assert!(config.tenant_errors.is_empty());
    }

    #[test]
    fn errors_in_a_tenant_table_name_its_keys() {
        let dir = scratch();
        let bad = TOP.replace("acme-7f3c", "x");
        let e = Config::parse(&bad, dir.path()).unwrap_err();
        assert!(
            e.starts_with("tenants.acme.backend.external_id: 2 to 1224"),
            "{e}"
        );
        let bad = TOP.replace(r#"allow = ["db/*"]"#, r#"allow = ["db/**x"]"#);
        let e = Config::parse(&bad, dir.path()).unwrap_err();
        assert!(
            e.starts_with("tenants.acme.connectors.db.allow: rule"),
            "{e}"
        );
        let bad = TOP.replace("[tenants.acme", "[tenants.Acme");
        let e = Config::parse(&bad, dir.path()).unwrap_err();
        assert!(
            e.starts_with("tenants.Acme: a tenant id is 1 to 56 lowercase"),
            "{e}"
        );
        let bad = TOP.replace("[tenants.acme", "[tenants.default");
        let e = Config::parse(&bad, dir.path()).unwrap_err();
        assert!(e.contains("`default` is the top-level"), "{e}");
        let bad = TOP.replace("external_id = \"acme-7f3c\"\n", "").replace(
            "role_arn = \"arn:aws:iam::111111111111:role/keyward-reader\"\n",
            "external_id = \"acme-7f3c\"\n",
        );
        let e = Config::parse(&bad, dir.path()).unwrap_err();
        assert!(e.contains("only means something beside `role_arn`"), "{e}");
    }

    #[test]
    fn a_directory_holds_one_tenant_per_file_and_a_bad_file_stops_only_itself() {
        let dir = scratch();
        let tenants = dir.path().join("tenants");
        std::fs::create_dir(&tenants).unwrap();
        std::fs::write(tenants.join("globex.toml"), GLOBEX).unwrap();
        // A syntax error on line 3, a semantic one, a bad stem, a clash
        // with a table, and a file that is not a tenant's (ignored).
        std::fs::write(
            tenants.join("broken.toml"),
            "namespace = \"b/\"\n\n[backend\n",
        )
        .unwrap();
        std::fs::write(
            tenants.join("wrong.toml"),
            GLOBEX.replace("kind = \"file\"", "kind = \"ftp\""),
        )
        .unwrap();
        std::fs::write(tenants.join("Bad_Name.toml"), GLOBEX).unwrap();
        std::fs::write(tenants.join("acme.toml"), GLOBEX).unwrap();
        std::fs::write(tenants.join("notes.txt"), "not a tenant").unwrap();
        let text = format!("tenants_dir = \"tenants\"\n{TOP}");
        let config = Config::parse(&text, dir.path()).expect("config");
        let ids: Vec<&str> = config.tenants.keys().map(String::as_str).collect();
        assert_eq!(ids, ["acme", "globex"]);
        let globex = &config.tenants["globex"];
        assert_eq!(
            globex.file.as_deref(),
            Some(tenants.join("globex.toml").as_path())
        );
        // Paths in a tenant file are relative to its directory.
        assert_eq!(
            globex.connectors["api"].component,
            tenants.join("../connectors/http.wasm")
        );
        let Backend::File(file) = &globex.secrets.backend else {
            panic!("globex's backend is a file");
        };
        assert_eq!(file.path, tenants.join("globex-secrets.json"));
        let errors: Vec<String> = config
            .tenant_errors
            .iter()
            .map(ToString::to_string)
            .collect();
        let path = |name: &str| tenants.join(name).display().to_string();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with(&format!("{}: the file's stem", path("Bad_Name.toml"))));
        assert!(
            errors[1].starts_with(&format!(
                "{}: tenant `acme` is also a [tenants.acme]",
                path("acme.toml")
            )),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].starts_with(&format!("{}: line 3, column", path("broken.toml"))),
            "{}",
            errors[2]
        );
        assert!(
            errors[3].starts_with(&format!(
                "{}: backend.kind: unknown backend `ftp`",
                path("wrong.toml")
            )),
            "{}",
            errors[3]
        );
    }

    #[test]
    fn tenants_are_bounded_and_a_named_directory_must_exist() {
        let dir = scratch();
        let tenants = dir.path().join("tenants");
        std::fs::create_dir(&tenants).unwrap();
        for id in ["a", "b", "c"] {
            std::fs::write(tenants.join(format!("{id}.toml")), GLOBEX).unwrap();
        }
        let text = format!("tenants_dir = \"tenants\"\nmax_tenants = 3\n{TOP}");
        let config = Config::parse(&text, dir.path()).expect("config");
        // acme (a table) and a, b: c is one too many.
        assert_eq!(config.tenants.len(), 3);
        assert_eq!(config.tenant_errors.len(), 1);
        assert!(
            config.tenant_errors[0]
                .message
                .contains("more than 3 tenants")
        );
        let text = format!("tenants_dir = \"missing\"\n{TOP}");
        let e = Config::parse(&text, dir.path()).unwrap_err();
        assert!(e.starts_with("tenants_dir: cannot read"), "{e}");
        let e = Config::parse(&format!("max_tenants = 0\n{TOP}"), dir.path()).unwrap_err();
        assert_eq!(e, "max_tenants: must be at least 1");
    }

    #[test]
    fn tenant_ids_are_file_stems_route_segments_and_session_suffixes() {
        use super::valid_tenant_id;
        for good in ["acme", "a", "customer-42", "0day"] {
            assert!(valid_tenant_id(good), "{good}");
        }
        let long = "a".repeat(super::MAX_TENANT_ID_CHARS + 1);
        for bad in ["", "-x", "Acme", "a_b", "a.b", "a/b", "é", long.as_str()] {
            assert!(!valid_tenant_id(bad), "{bad}");
        }
        // The longest id still makes a session name STS takes (64 at most).
        assert!(format!("keyward-{}", "a".repeat(super::MAX_TENANT_ID_CHARS)).len() <= 64);
    }
}
