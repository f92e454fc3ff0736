//! Test support: the compiled connector components (built from source by
//! this crate's build script), a scratch directory with a configuration and
//! a secrets file, a local Secrets Manager server and a fault proxy.

use std::path::{Path, PathBuf};

pub mod moto;
pub mod postgres;
pub mod proxy;

pub use moto::{Moto, sdk_builder, sdk_config};
pub use postgres::{Postgres, sql_literal};
pub use proxy::{FAULT_MESSAGE_CANARY, Fault, FaultProxy};

/// Paths of the compiled test components.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// A canary value: tests assert it appears nowhere it should not.
pub const CANARY: &str = "canary-7f3e9a1c-never-print-me";

/// A database role's passwords over two rotations, each with characters a
/// URL, a DSN or a shell would mangle unescaped.
pub const ROTATION_PASSWORDS: [&str; 3] = [
    "p@ss:w/rd#%?&\"é ünï 🔑",
    "n3w:p@ss/wörd?&=+'\"#%",
    "th1rd#p@ss:%2F",
];

/// Every redirection the hostile connector's `egress` mode tries (its
/// `attack` field), the output the host must refuse, and text the refusal
/// must hold (the part at fault). The library, CLI and service suites all
/// run this list.
pub const EGRESS_ATTACKS: [(&str, &str, &str); 19] = [
    ("dsn-host", "dsn", "its host"),
    ("dsn-port", "dsn", "its port"),
    ("dns-label", "dsn", "its host"),
    ("dns-label-base64url", "dsn", "its host"),
    ("dns-label-percent", "dsn", "its host"),
    ("password-in-host", "host", "its host"),
    ("secret-in-setting", "application_name", "is a setting"),
    ("second-destination", "replica", "its host"),
    ("base-url", "base_url", "its host"),
    ("downgrade", "base_url", "its scheme"),
    ("other-port", "base_url", "its port"),
    ("host-prefix", "base_url", "its host"),
    ("host-suffix", "base_url", "its host"),
    ("userinfo", "base_url", "its host"),
    ("backslash", "base_url", "backslash"),
    ("path", "base_url", "in its path"),
    ("query", "base_url", "query"),
    ("fragment", "base_url", "fragment"),
    ("url-in-credential", "callback", "its host"),
];

/// A temporary directory holding `keyward.toml` and `secrets.json`.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Writes `secrets` (a JSON object) and `config` (TOML; `{ECHO}`,
    /// `{ECHO_PLANNED}`, `{POSTGRES}` and the like are replaced by component paths).
    pub fn new(config: &str, secrets: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config
            .replace("{ECHO}", artifacts::ECHO)
            .replace("{ECHO_PLANNED}", artifacts::ECHO_PLANNED)
            .replace("{HOSTILE}", artifacts::HOSTILE)
            .replace("{HOSTILE_PY}", artifacts::HOSTILE_PY)
            .replace("{REDIS_PY}", artifacts::REDIS_PY)
            .replace("{MARIADB_TS}", artifacts::MARIADB_TS)
            .replace("{HOSTILE_TS}", artifacts::HOSTILE_TS)
            .replace("{POSTGRES}", artifacts::POSTGRES)
            .replace("{HTTP_API}", artifacts::HTTP_API)
            .replace("{S3}", artifacts::S3)
            .replace("{NOT_A_CONNECTOR}", artifacts::NOT_A_CONNECTOR);
        std::fs::write(dir.path().join("keyward.toml"), config).expect("write config");
        std::fs::write(dir.path().join("secrets.json"), secrets.to_string())
            .expect("write secrets");
        Self { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("keyward.toml")
    }

    /// Rewrites the secrets file (a rotation, for the file backend).
    pub fn write_secrets(&self, secrets: &serde_json::Value) {
        std::fs::write(self.dir.path().join("secrets.json"), secrets.to_string())
            .expect("write secrets");
    }
}
