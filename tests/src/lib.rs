//! Helpers shared by the end-to-end tests of this crate.

pub mod hostile;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use keyward_host::Backend;
use keyward_host::store::aws::AwsStore;
use keyward_host::store::file::FileStore;
use keyward_host::store::{
    BoxFuture, FetchedSecret, SecretKey, SecretStore, StoreError, StoreIdentity,
};
use keyward_host::{Clock, SystemClock};
use keyward_host::{Config, Keyward};
use keyward_test_support::{Moto, Scratch, sdk_config};

/// A host on the AWS backend that `config` (TOML, with its endpoint
/// filled in) describes, its SDK set up for the local server (static test
/// credentials). The scratch directory holds the configuration: keep it
/// as long as the host.
pub fn keyward_on_aws(config: &str) -> (Scratch, Keyward) {
    keyward_on_aws_with_clock(config, Arc::new(SystemClock))
}

/// [`keyward_on_aws`] with cache freshness and rate limits on `clock`.
pub fn keyward_on_aws_with_clock(config: &str, clock: Arc<dyn Clock>) -> (Scratch, Keyward) {
    let scratch = Scratch::new(config, &serde_json::json!({}));
    let config = Config::load(&scratch.config()).expect("config");
    let Backend::Aws(settings) = &config.secrets.backend else {
        panic!("the configuration must use backend = \"aws\"")
    };
    let store = Arc::new(AwsStore::from_sdk_config(&sdk_config(), None, settings));
    let keyward = Keyward::with_store_and_clock(config, store, clock).expect("keyward");
    (scratch, keyward)
}

/// A password full of what URLs and shells choke on, for the examples that
/// connect to real servers.
pub const URL_HOSTILE_PASSWORD: &str = "p@ss:w/rd#%?&\"é ünï";

/// [`URL_HOSTILE_PASSWORD`] percent-encoded, as a rendered URL holds it.
pub const URL_HOSTILE_PASSWORD_ENCODED: &str =
    "p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9%20%C3%BCn%C3%AF";

/// A local Secrets Manager holding one secret (`name`, the JSON `value`),
/// and a host on it as `config` describes (its `{MOTO}` filled in). Keep
/// all three as long as the host.
pub async fn keyward_with_one_secret(
    name: &str,
    value: &serde_json::Value,
    config: &str,
) -> (Moto, Scratch, Keyward) {
    let moto = Moto::start();
    moto.seed(&[(name, &value.to_string())]).await;
    let (scratch, keyward) = keyward_on_aws(&config.replace("{MOTO}", &moto.url()));
    (moto, scratch, keyward)
}

/// The file store, counting every fetch and listing that reaches it.
#[derive(Debug)]
pub struct Counting {
    inner: FileStore,
    fetches: AtomicUsize,
    lists: AtomicUsize,
    identity: StoreIdentity,
}

impl Counting {
    /// Counts fetches and listings from `inner`.
    pub fn new(inner: FileStore) -> Self {
        Self {
            inner,
            fetches: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            identity: StoreIdentity::default(),
        }
    }

    /// A store that reports `region` as where it found itself to be, as
    /// the AWS backend does with a region from the environment.
    pub fn in_region(inner: FileStore, region: &str) -> Self {
        Self {
            identity: StoreIdentity {
                region: Some(region.into()),
                ..StoreIdentity::default()
            },
            ..Self::new(inner)
        }
    }

    /// Fetches so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Listings so far.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }
}

impl SecretStore for Counting {
    fn fetch<'a>(&'a self, key: &'a SecretKey) -> BoxFuture<'a, Result<FetchedSecret, StoreError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(key)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    fn identity(&self) -> StoreIdentity {
        self.identity.clone()
    }
}

/// Everything written through `tracing` (all levels) by this test binary,
/// once this has been called: a global subscriber, so it also sees events
/// from tokio's worker threads.
pub fn captured_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Sink;
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                captured_logs()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            // No colour codes of its own: tests look for raw escapes.
            .with_ansi(false)
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        Mutex::new(Vec::new())
    })
}

/// The captured log text so far.
pub fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}
