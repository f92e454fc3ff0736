//! Shared set-up for the benchmarks: a local Secrets Manager (moto) behind
//! a counting proxy, three secrets, keyward hosts in both execution modes,
//! and the peer — the official Rust caching client for Secrets Manager
//! (`aws_secretsmanager_caching`) — pointed at the same server.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use aws_secretsmanager_caching::SecretsManagerCachingClient;
use keyward_host::Backend;
use keyward_host::store::aws::AwsStore;
use keyward_host::{Config, Keyward};
use keyward_test_support::{FaultProxy, Moto, Scratch, sdk_builder, sdk_config};

/// The rendered template: three secrets, one of them URL-encoded.
pub const TEMPLATE: &str = "postgresql://{{ secrets.user }}:{{ secrets.password | urlencode }}@{{ secrets.host }}:5432/orders";

/// The same three secrets, as the peer reads them.
pub const SECRET_IDS: [&str; 3] = ["bench/user", "bench/password", "bench/host"];

/// How many secrets the wide template reads (the cost per secret).
pub const WIDE: usize = 20;

/// The name of the wide template's `i`th secret, under the namespace.
fn wide_name(i: usize) -> String {
    format!("wide{i:02}")
}

/// A template of [`WIDE`] secrets, comma-separated.
pub fn wide_template() -> String {
    (0..WIDE)
        .map(|i| format!("{{{{ secrets.{} }}}}", wide_name(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The policy-and-audit variant: the connector's allowlist names the
/// three secrets (no wildcard), and every read is audited to a file.
const AUDITED: &str = r#"
[audit]
file = "audit.jsonl"

[connectors.echo-audited]
component = "{ECHO_PLANNED}"
egress = ["db.internal.example:5432"]
allow = ["user", "password", "host"]
"#;

const CONFIG: &str = r#"
[secrets]
namespace = "bench/"
cache_ttl_ms = 3600000
connector_fetch_burst = 100000

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{PROXY}"

[sandbox]
mode = "{MODE}"
warm_instances = 1000
pooled_instances = 1100
render_timeout_ms = 1000
compile_cache = "{CACHE}"

# Planned: after its first render of a configuration, the connector does
# not run again for it.
[connectors.echo]
component = "{ECHO_PLANNED}"
egress = ["db.internal.example:5432"]
allow = ["**"]

# The same connector, declaring `run_every_render`: every render crosses
# into the sandbox, as every render did before plans.
[connectors.echo-unplanned]
component = "{ECHO}"
egress = ["db.internal.example:5432"]
allow = ["**"]
"#;

/// moto, the counting proxy and the seeded secrets.
#[derive(Debug)]
pub struct Fixture {
    _moto: Moto,
    /// Counts keyward's and the peer's upstream calls.
    pub proxy: FaultProxy,
    scratch: Vec<Scratch>,
    compile_cache: tempfile::TempDir,
}

impl Fixture {
    /// Starts moto and the proxy and creates the secrets.
    pub async fn start() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.address()).await;
        let admin = aws_sdk_secretsmanager::Client::from_conf(
            sdk_builder().endpoint_url(moto.url()).build(),
        );
        for (name, value) in [
            ("bench/user", "orders_app"),
            ("bench/password", "p@ss:w/rd#%?&\"é"),
            ("bench/host", "db.internal.example"),
        ] {
            admin
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .expect("create secret");
        }
        for i in 0..WIDE {
            admin
                .create_secret()
                .name(format!("bench/{}", wide_name(i)))
                .secret_string(format!("value-{i:02}"))
                .send()
                .await
                .expect("create secret");
        }
        Self {
            _moto: moto,
            proxy,
            scratch: Vec::new(),
            compile_cache: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A keyward host on the AWS backend (through the proxy), in `mode`
    /// ("fresh" or "warm"), with a cold secret cache; compiled components
    /// are cached in the fixture's shared compile cache.
    pub fn keyward(&mut self, mode: &str) -> Keyward {
        let cache = self.compile_cache.path().to_path_buf();
        self.keyward_with_compile_cache(mode, &cache)
    }

    /// Like [`Fixture::keyward`] ("fresh"), with `extra` more connector
    /// ids (`echo-0`, ...) on the same component.
    pub fn keyward_with_extra_ids(&mut self, extra: usize) -> Keyward {
        let cache = self.compile_cache.path().to_path_buf();
        let mut config = CONFIG.to_string();
        for i in 0..extra {
            config.push_str(&format!(
                "\n[connectors.echo-{i}]\ncomponent = \"{{ECHO}}\"\negress = [\"db.internal.example:5432\"]\nallow = [\"**\"]\n"
            ));
        }
        self.keyward_from(&config, "fresh", &cache)
    }

    /// A warm-mode host that also has `echo-audited`: a connector whose
    /// allowlist names its three secrets, with every read audited to a
    /// file in the host's scratch directory.
    pub fn keyward_audited(&mut self) -> Keyward {
        let cache = self.compile_cache.path().to_path_buf();
        let config = format!("{AUDITED}{CONFIG}");
        self.keyward_from(&config, "warm", &cache)
    }

    /// The audit file of the most recent host (see [`Fixture::keyward_audited`]).
    pub fn audit_file(&self) -> std::path::PathBuf {
        self.scratch
            .last()
            .expect("a host was made")
            .path()
            .join("audit.jsonl")
    }

    /// Like [`Fixture::keyward`] with the compile cache in `dir`.
    pub fn keyward_with_compile_cache(&mut self, mode: &str, dir: &std::path::Path) -> Keyward {
        self.keyward_from(CONFIG, mode, dir)
    }

    fn keyward_from(&mut self, config: &str, mode: &str, dir: &std::path::Path) -> Keyward {
        let config = config
            .replace("{PROXY}", &self.proxy.url())
            .replace("{MODE}", mode)
            .replace("{CACHE}", &dir.display().to_string());
        let scratch = Scratch::new(&config, &serde_json::json!({}));
        let config = Config::load(&scratch.config()).expect("config");
        let Backend::Aws(settings) = &config.secrets.backend else {
            panic!("aws backend")
        };
        let store = AwsStore::from_sdk_config(&sdk_config(), None, settings);
        self.scratch.push(scratch);
        Keyward::with_store(config, Arc::new(store)).expect("keyward")
    }

    /// The peer, with a cold cache, TTL one hour.
    pub async fn peer(&self) -> SecretsManagerCachingClient {
        SecretsManagerCachingClient::from_builder(
            sdk_builder().endpoint_url(self.proxy.url()),
            NonZeroUsize::new(1000).expect("non-zero"),
            Duration::from_secs(3600),
            false,
        )
        .await
        .expect("peer")
    }
}

/// One keyward render of `fields` by the planned echo connector.
pub async fn keyward_render(keyward: &Keyward, fields: &[(String, String)]) -> String {
    keyward_render_by(keyward, "echo", fields).await
}

/// One keyward render of `fields` by `connector` (`echo`, planned, or
/// `echo-unplanned`), its output `a`.
pub async fn keyward_render_by(
    keyward: &Keyward,
    connector: &str,
    fields: &[(String, String)],
) -> String {
    let rendered = keyward
        .render_fields(connector, fields)
        .await
        .expect("render");
    rendered.get("a").expect("output").to_string()
}

/// The fields of one render.
pub fn fields() -> Vec<(String, String)> {
    vec![("a".to_string(), TEMPLATE.to_string())]
}

/// The peer's equivalent of the wide template: [`WIDE`] cached lookups,
/// joined as keyward joins them.
pub async fn peer_render_wide(peer: &SecretsManagerCachingClient) -> String {
    let mut values = Vec::with_capacity(WIDE);
    for i in 0..WIDE {
        let output = peer
            .get_secret_value(&format!("bench/{}", wide_name(i)), None, None, false)
            .await
            .expect("peer read");
        values.push(output.secret_string.unwrap_or_default());
    }
    values.join(",")
}

/// The peer's equivalent: three cached lookups and the same string.
pub async fn peer_render(peer: &SecretsManagerCachingClient) -> String {
    let mut values = Vec::with_capacity(3);
    for id in SECRET_IDS {
        let output = peer
            .get_secret_value(id, None, None, false)
            .await
            .expect("peer read");
        values.push(output.secret_string.unwrap_or_default());
    }
    format!(
        "postgresql://{}:{}@{}:5432/orders",
        values[0],
        keyward_host::template::encode::percent(values[1].as_bytes()),
        values[2]
    )
}
