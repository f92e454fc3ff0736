//! `keyward new connector NAME --lang rust|python`: writes a connector
//! project that builds with its language's own tools, with unit tests, a
//! local configuration and a `connector.toml` for `keyward build`, from the
//! templates kept in `cli/templates/` (compiled into the CLI, so the
//! command works from anywhere). A Python project gets the SDK
//! (`sdk/python`) and the contract (`wit/`) copied in.
//!
//! Placeholders are `@CONNECTOR@` (the name), `@CRATE@` (its Rust crate
//! name), `@TYPE@` (its type or class name) and `@SDK@` (the
//! `keyward-guest` dependency); `{{ }}` is left alone for the connector's
//! own templates.

use std::fmt;
use std::path::{Path, PathBuf};

/// The languages a connector can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the `keyward-guest` SDK.
    Rust,
    /// Python, built by componentize-py, on the `keyward_connector` SDK.
    Python,
    /// TypeScript, built by componentize-js, on the `keyward-connector` SDK.
    Typescript,
}

/// The Rust template's files: (path in the new project, contents).
const RUST_FILES: &[(&str, &str)] = &[
    (
        "connector.toml",
        include_str!("../../templates/connector/connector.toml.in"),
    ),
    (
        "Cargo.toml",
        include_str!("../../templates/connector/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/connector/src/lib.rs.in"),
    ),
    (
        "keyward.toml",
        include_str!("../../templates/connector/keyward.toml.in"),
    ),
    (
        "secrets.json",
        include_str!("../../templates/connector/secrets.json"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/connector/gitignore"),
    ),
];

/// The Python template's files, the SDK and the contract included.
const PYTHON_FILES: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py.in")),
    (
        "tests/test_app.py",
        include_str!("../../templates/python/tests/test_app.py.in"),
    ),
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt"),
    ),
    (
        "connector.toml",
        include_str!("../../templates/python/connector.toml.in"),
    ),
    (
        "keyward.toml",
        include_str!("../../templates/python/keyward.toml.in"),
    ),
    (
        "secrets.json",
        include_str!("../../templates/python/secrets.json"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md.in"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/gitignore"),
    ),
    (
        "wit/connector.wit",
        include_str!("../../../wit/connector.wit"),
    ),
    (
        "keyward_connector/__init__.py",
        include_str!("../../../sdk/python/keyward_connector/__init__.py"),
    ),
    (
        "keyward_connector/connector.py",
        include_str!("../../../sdk/python/keyward_connector/connector.py"),
    ),
    (
        "keyward_connector/egress.py",
        include_str!("../../../sdk/python/keyward_connector/egress.py"),
    ),
    (
        "keyward_connector/encode.py",
        include_str!("../../../sdk/python/keyward_connector/encode.py"),
    ),
    (
        "keyward_connector/export.py",
        include_str!("../../../sdk/python/keyward_connector/export.py"),
    ),
    (
        "keyward_connector/host.py",
        include_str!("../../../sdk/python/keyward_connector/host.py"),
    ),
    (
        "keyward_connector/testing.py",
        include_str!("../../../sdk/python/keyward_connector/testing.py"),
    ),
    (
        "keyward_connector/text.py",
        include_str!("../../../sdk/python/keyward_connector/text.py"),
    ),
];

/// The TypeScript template's files, the contract included.
const TYPESCRIPT_FILES: &[(&str, &str)] = &[
    (
        "app.ts",
        include_str!("../../templates/typescript/app.ts.in"),
    ),
    (
        "test/app.test.ts",
        include_str!("../../templates/typescript/test/app.test.ts.in"),
    ),
    (
        "package.json",
        include_str!("../../templates/typescript/package.json.in"),
    ),
    (
        "tsconfig.json",
        include_str!("../../templates/typescript/tsconfig.json"),
    ),
    (
        "connector.toml",
        include_str!("../../templates/typescript/connector.toml.in"),
    ),
    (
        "keyward.toml",
        include_str!("../../templates/typescript/keyward.toml.in"),
    ),
    (
        "secrets.json",
        include_str!("../../templates/typescript/secrets.json"),
    ),
    (
        "README.md",
        include_str!("../../templates/typescript/README.md.in"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/typescript/gitignore"),
    ),
    (
        "wit/connector.wit",
        include_str!("../../../wit/connector.wit"),
    ),
];

/// Where the TypeScript SDK is in the checkout this CLI was built from.
const BUILT_IN_TYPESCRIPT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/typescript");

impl Lang {
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Rust => RUST_FILES,
            Self::Python => PYTHON_FILES,
            Self::Typescript => TYPESCRIPT_FILES,
        }
    }
}

/// The TypeScript SDK to depend on: `sdk` if given, else the checkout's.
fn typescript_sdk_path(sdk: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let path = sdk.map_or_else(|| PathBuf::from(BUILT_IN_TYPESCRIPT_SDK), Path::to_path_buf);
    let manifest = std::fs::read_to_string(path.join("package.json")).unwrap_or_default();
    let is_sdk = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .is_some_and(|p| p["name"] == "keyward-connector");
    if !is_sdk {
        return Err(ScaffoldError::NoSdk(path));
    }
    std::fs::canonicalize(&path).map_err(|error| ScaffoldError::Io { path, error })
}

/// Where the SDK is in the checkout this CLI was built from.
const BUILT_IN_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest");

/// Why the crate was not written. Nothing is written unless all is well.
#[derive(Debug)]
pub enum ScaffoldError {
    /// The name cannot be a crate or connector name.
    BadName { name: String, why: &'static str },
    /// The target directory is there already.
    Exists(PathBuf),
    /// The SDK directory is not the `keyward-guest` crate.
    NoSdk(PathBuf),
    /// Writing failed.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName { name, why } => write!(f, "connector name `{name}`: {why}"),
            Self::Exists(path) => write!(
                f,
                "{} exists already; choose another name or --dir",
                path.display()
            ),
            Self::NoSdk(path) => write!(
                f,
                "the SDK is not at {} (no Cargo.toml naming `keyward-guest`, or package.json \
                 naming `keyward-connector`); pass --sdk with the path of a keyward \
                 checkout's guest/ (Rust) or sdk/typescript/ (TypeScript) directory",
                path.display()
            ),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for ScaffoldError {}

/// The names one connector name turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    connector: String,
    krate: String,
    type_name: String,
}

impl Names {
    /// `acme-api` → (`acme-api`, `acme_api`, `AcmeApi`).
    fn new(name: &str) -> Result<Self, ScaffoldError> {
        let bad = |why| ScaffoldError::BadName {
            name: name.chars().take(80).collect(),
            why,
        };
        if name.is_empty() || name.len() > 64 {
            return Err(bad("must be 1 to 64 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("must start with a lowercase letter"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(bad("may hold only a-z, 0-9, `-` and `_`"));
        }
        if name.ends_with(['-', '_']) {
            return Err(bad("must not end with `-` or `_`"));
        }
        let krate = name.replace('-', "_");
        const RESERVED: &[&str] = &[
            "alloc",
            "core",
            "crate",
            "proc_macro",
            "self",
            "std",
            "super",
            "test",
        ];
        if RESERVED.contains(&krate.as_str()) {
            return Err(bad("is reserved by Rust"));
        }
        let type_name = krate
            .split('_')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        Ok(Self {
            connector: name.to_string(),
            krate,
            type_name,
        })
    }
}

/// The SDK directory to depend on: `sdk` if given, else the checkout this
/// CLI was built from.
fn sdk_path(sdk: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let path = sdk.map_or_else(|| PathBuf::from(BUILT_IN_SDK), Path::to_path_buf);
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
    let is_sdk = manifest
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| {
            t.get("package")?
                .get("name")?
                .as_str()
                .map(|n| n == "keyward-guest")
        })
        .unwrap_or(false);
    if !is_sdk {
        return Err(ScaffoldError::NoSdk(path));
    }
    std::fs::canonicalize(&path).map_err(|error| ScaffoldError::Io { path, error })
}

/// Writes the connector project `name` in `lang` under `parent` and
/// returns its directory and the files written (relative to it).
pub fn new_connector(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<&Path>,
) -> Result<(PathBuf, Vec<&'static str>), ScaffoldError> {
    let names = Names::new(name)?;
    let dependency = match lang {
        Lang::Rust => format!(
            "{{ path = {} }}",
            toml::Value::String(sdk_path(sdk)?.to_string_lossy().into_owned())
        ),
        Lang::Python => String::new(),
        Lang::Typescript => serde_json::Value::String(format!(
            "file:{}",
            typescript_sdk_path(sdk)?.to_string_lossy()
        ))
        .to_string(),
    };
    let dir = parent.join(&names.connector);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let files = lang.files();
    let written = write_files(&dir, files, &names, &dependency);
    if written.is_err() {
        // The directory did not exist before: leave nothing half-written.
        let _ = std::fs::remove_dir_all(&dir);
    }
    written.map(|()| (dir, files.iter().map(|(path, _)| *path).collect()))
}

fn write_files(
    dir: &Path,
    files: &[(&str, &str)],
    names: &Names,
    dependency: &str,
) -> Result<(), ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ScaffoldError::Io { path, error }
    };
    for (relative, template) in files {
        let path = dir.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io(folder))?;
        }
        let text = template
            .replace("@CONNECTOR@", &names.connector)
            .replace("@CRATE@", &names.krate)
            .replace("@TYPE@", &names.type_name)
            .replace("@SDK@", dependency);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_crate_and_type_names() {
        let names = Names::new("acme-api_v2").expect("valid");
        assert_eq!(names.krate, "acme_api_v2");
        assert_eq!(names.type_name, "AcmeApiV2");
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, why) in [
            ("", "1 to 64"),
            ("Acme", "lowercase letter"),
            ("9lives", "lowercase letter"),
            ("acme api", "only a-z"),
            ("acme/../x", "only a-z"),
            ("acme-", "must not end"),
            ("test", "reserved"),
        ] {
            let error = Names::new(name).expect_err(name).to_string();
            assert!(error.contains(why), "{name}: {error}");
        }
    }

    #[test]
    fn every_placeholder_is_replaced_and_an_existing_directory_is_kept() {
        let parent = tempfile::tempdir().expect("tempdir");
        let (dir, files) =
            new_connector("acme-api", Lang::Rust, parent.path(), None).expect("written");
        for file in files {
            let text = std::fs::read_to_string(dir.join(file)).expect(file);
            for placeholder in ["@CONNECTOR@", "@CRATE@", "@TYPE@", "@SDK@"] {
                assert!(!text.contains(placeholder), "{file} keeps {placeholder}");
            }
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct AcmeApi;"));
        let error = new_connector("acme-api", Lang::Rust, parent.path(), None).expect_err("exists");
        assert!(matches!(error, ScaffoldError::Exists(_)), "{error}");
    }

    #[test]
    fn a_python_project_gets_the_sdk_and_the_contract() {
        let parent = tempfile::tempdir().expect("tempdir");
        let (dir, files) =
            new_connector("acme-api", Lang::Python, parent.path(), None).expect("written");
        for file in files {
            let text = std::fs::read_to_string(dir.join(file)).expect(file);
            for placeholder in ["@CONNECTOR@", "@TYPE@", "@SDK@"] {
                assert!(!text.contains(placeholder), "{file} keeps {placeholder}");
            }
        }
        let app = std::fs::read_to_string(dir.join("app.py")).expect("app.py");
        assert!(app.contains("class AcmeApi(Connector):"));
        assert!(dir.join("keyward_connector/text.py").is_file());
        assert!(dir.join("wit/connector.wit").is_file());
    }

    #[test]
    fn a_typescript_project_depends_on_the_checkouts_sdk() {
        let parent = tempfile::tempdir().expect("tempdir");
        let (dir, _) =
            new_connector("acme-ts", Lang::Typescript, parent.path(), None).expect("written");
        let package = std::fs::read_to_string(dir.join("package.json")).expect("package.json");
        let package: serde_json::Value = serde_json::from_str(&package).expect("valid JSON");
        let sdk = package["devDependencies"]["keyward-connector"]
            .as_str()
            .expect("the SDK");
        assert!(
            sdk.starts_with("file:/") && sdk.ends_with("sdk/typescript"),
            "{sdk}"
        );
        assert!(dir.join("wit/connector.wit").is_file());
    }

    #[test]
    fn a_directory_that_is_not_the_sdk_is_refused() {
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let error = new_connector("acme", Lang::Rust, elsewhere.path(), Some(elsewhere.path()))
            .expect_err("not the SDK");
        assert!(error.to_string().contains("--sdk"), "{error}");
        assert!(!elsewhere.path().join("acme").exists());
    }
}
