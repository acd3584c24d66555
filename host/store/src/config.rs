//! Store configuration and [`open`]: which backend, where, and how the subscriber
//! lookup is layered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::subscribers::{memory_from_file, Fallback};
use crate::{
    CacheOptions, Cached, Embedded, EmbeddedOptions, KvLimits, KvStore, LocationStore,
    MemorySubscribers, RedisOptions, RedisStore, StoreError, SubscriberStore,
};

/// Which backend holds the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, persisted to `path` if set (the default).
    #[default]
    Embedded,
    /// A Redis server shared by every node (`[redis]`).
    Redis,
}

/// The state-store configuration (a `[store]` table in TOML).
///
/// ```toml
/// backend = "embedded"      # "embedded" (default) | "redis"
/// path = "/var/lib/weir/state"   # embedded: persist here; absent = memory only
/// fsync = false             # embedded: fdatasync each acknowledged write
/// persist_kv = true         # embedded: persist the module kv store too
/// max_aors = 1000000        # embedded: most AORs with bindings
///
/// [redis]
/// url = "redis://127.0.0.1:6379"
/// prefix = "weir:"
/// pool_size = 8
/// timeout_ms = 500
///
/// [subscribers]
/// file = "subscribers.csv"  # the credentials file (format: weir_store::subscribers)
/// cache_ttl_s = 60          # redis: cache of found subscribers
/// negative_ttl_s = 5        # redis: cache of unknown subscribers
/// cache_max = 100000
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `"embedded"` (default) or `"redis"`.
    #[serde(default)]
    pub backend: Backend,
    /// Embedded: directory the state persists to (created if missing). Absent: the
    /// state lives in memory only and is lost on restart.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Embedded: `fdatasync` each acknowledged write, so it survives power loss and OS
    /// crashes, not only `kill -9` (default `false`; costs ~0.1-1 ms per write, shared
    /// between concurrent writers).
    #[serde(default)]
    pub fsync: bool,
    /// Embedded with `path`: persist the module key-value store too (default `true`).
    /// Location bindings and subscribers always persist.
    #[serde(default = "yes")]
    pub persist_kv: bool,
    /// Embedded: most AORs with stored bindings (default 1,000,000).
    #[serde(default)]
    pub max_aors: Option<usize>,
    /// Both: longest serialized binding list of one AOR, in bytes (default 65536).
    #[serde(default)]
    pub max_record_bytes: Option<usize>,
    /// Key-value bounds (defaults as [`KvLimits::default`]).
    #[serde(default)]
    pub kv: KvConfig,
    /// The Redis connection (used when `backend = "redis"`).
    #[serde(default)]
    pub redis: RedisConfig,
    /// Where subscriber credentials come from.
    #[serde(default)]
    pub subscribers: SubscribersConfig,
}

fn yes() -> bool {
    true
}

/// `[kv]`: bounds of the module key-value store. Embedded enforces all of them;
/// Redis enforces the byte sizes (bound its memory with `maxmemory`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    /// Most namespaces (modules with keys); default 4096.
    #[serde(default)]
    pub max_namespaces: Option<usize>,
    /// Most live keys per namespace; default 100,000.
    #[serde(default)]
    pub max_keys_per_namespace: Option<usize>,
    /// Longest key in bytes; default 256.
    #[serde(default)]
    pub max_key_bytes: Option<usize>,
    /// Longest value in bytes; default 65536.
    #[serde(default)]
    pub max_value_bytes: Option<usize>,
}

impl KvConfig {
    fn limits(&self) -> KvLimits {
        let d = KvLimits::default();
        KvLimits {
            max_namespaces: self.max_namespaces.unwrap_or(d.max_namespaces),
            max_keys_per_namespace: self
                .max_keys_per_namespace
                .unwrap_or(d.max_keys_per_namespace),
            max_key_bytes: self.max_key_bytes.unwrap_or(d.max_key_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(d.max_value_bytes),
            sweep_interval: d.sweep_interval,
        }
    }
}

/// `[redis]`: how to reach the shared Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; default `redis://127.0.0.1:6379`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Prefix of every key; default `weir:`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Most connections per node; default 8.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// Connect/read/write timeout and pool wait, in ms; default 500. A dead Redis
    /// costs a call at most about this long.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How long (s) an AOR record outlives its last binding so `purge_expired` can
    /// report it; default 300.
    #[serde(default = "default_grace")]
    pub expiry_grace_s: u64,
}

fn default_url() -> String {
    RedisOptions::default().url
}
fn default_prefix() -> String {
    RedisOptions::default().prefix
}
fn default_pool() -> usize {
    RedisOptions::default().pool_size
}
fn default_timeout() -> u64 {
    500
}
fn default_grace() -> u64 {
    300
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: default_url(),
            prefix: default_prefix(),
            pool_size: default_pool(),
            timeout_ms: default_timeout(),
            expiry_grace_s: default_grace(),
        }
    }
}

/// `[subscribers]`: the credentials file and the cache in front of Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribersConfig {
    /// The credentials file (format in [`crate::subscribers`]), asked before the
    /// backend. Absent: backend only.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Redis: seconds a found subscriber stays cached; default 60, 0 = no cache.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_s: u64,
    /// Redis: seconds an unknown subscriber stays cached; default 5.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_s: u64,
    /// Redis: most cached subscribers; default 100,000.
    #[serde(default = "default_cache_max")]
    pub cache_max: usize,
}

fn default_cache_ttl() -> u64 {
    60
}
fn default_negative_ttl() -> u64 {
    5
}
fn default_cache_max() -> usize {
    100_000
}

impl Default for SubscribersConfig {
    fn default() -> Self {
        SubscribersConfig {
            file: None,
            cache_ttl_s: default_cache_ttl(),
            negative_ttl_s: default_negative_ttl(),
            cache_max: default_cache_max(),
        }
    }
}

/// The opened stores, ready to hand to the registrar, auth and the module runtime.
#[derive(Clone)]
pub struct Stores {
    /// The module key-value store.
    pub kv: Arc<dyn KvStore>,
    /// Registrar bindings.
    pub location: Arc<dyn LocationStore>,
    /// Subscriber credentials: the file first, then the backend (cached if Redis).
    pub subscribers: Arc<dyn SubscriberStore>,
    /// The credentials loaded from `subscribers.file`, to reload in place
    /// ([`MemorySubscribers::replace_all`]).
    pub subscriber_file: Option<Arc<MemorySubscribers>>,
    /// The embedded store, when that is the backend (for its kv sweep and
    /// subscriber provisioning).
    pub embedded: Option<Arc<Embedded>>,
    /// The Redis store, when that is the backend.
    pub redis: Option<Arc<RedisStore>>,
}

/// Opens the stores `config` describes. The embedded backend loads its directory;
/// the Redis backend does not connect until first used (Weir starts while Redis is
/// down; calls fail with [`StoreError::Backend`] until it is back).
pub fn open(config: &Config) -> Result<Stores, StoreError> {
    let file = match &config.subscribers.file {
        Some(path) => Some(Arc::new(memory_from_file(path)?)),
        None => None,
    };
    let d_embedded = EmbeddedOptions::default();
    let d_redis = RedisOptions::default();
    let max_record_bytes = config
        .max_record_bytes
        .unwrap_or(d_embedded.max_record_bytes);
    type Opened = (
        Arc<dyn KvStore>,
        Arc<dyn LocationStore>,
        Arc<dyn SubscriberStore>,
        Option<Arc<Embedded>>,
        Option<Arc<RedisStore>>,
    );
    let (kv, location, backend_subs, embedded, redis): Opened = match config.backend {
        Backend::Embedded => {
            let e = Embedded::open(EmbeddedOptions {
                path: config.path.clone(),
                fsync: config.fsync,
                persist_kv: config.persist_kv,
                kv_limits: config.kv.limits(),
                max_aors: config.max_aors.unwrap_or(d_embedded.max_aors),
                max_record_bytes,
                max_subscribers: d_embedded.max_subscribers,
            })?;
            (e.clone(), e.clone(), e.clone(), Some(e), None)
        }
        Backend::Redis => {
            let r = Arc::new(RedisStore::open(RedisOptions {
                url: config.redis.url.clone(),
                prefix: config.redis.prefix.clone(),
                pool_size: config.redis.pool_size,
                timeout: Duration::from_millis(config.redis.timeout_ms),
                kv_limits: config.kv.limits(),
                max_record_bytes,
                expiry_grace: Duration::from_secs(config.redis.expiry_grace_s),
                max_retries: d_redis.max_retries,
            })?);
            let subs: Arc<dyn SubscriberStore> = if config.subscribers.cache_ttl_s == 0 {
                r.clone()
            } else {
                Arc::new(Cached::new(
                    r.clone(),
                    CacheOptions {
                        ttl: Duration::from_secs(config.subscribers.cache_ttl_s),
                        negative_ttl: Duration::from_secs(config.subscribers.negative_ttl_s),
                        max_entries: config.subscribers.cache_max,
                    },
                ))
            };
            (r.clone(), r.clone(), subs, None, Some(r))
        }
    };
    let subscribers: Arc<dyn SubscriberStore> = match &file {
        Some(f) => Arc::new(Fallback {
            first: f.clone(),
            then: backend_subs,
        }),
        None => backend_subs,
    };
    Ok(Stores {
        kv,
        location,
        subscribers,
        subscriber_file: file,
        embedded,
        redis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: Config = serde_json::from_str(
            r#"{"backend":"redis","redis":{"url":"redis://h:1","timeout_ms":50},
                "subscribers":{"cache_ttl_s":0},"kv":{"max_key_bytes":10}}"#,
        )
        .unwrap();
        assert_eq!(c.backend, Backend::Redis);
        assert_eq!(c.redis.prefix, "weir:");
        assert_eq!(c.redis.timeout_ms, 50);
        assert!(c.persist_kv);
        assert_eq!(c.kv.limits().max_key_bytes, 10);
        assert!(serde_json::from_str::<Config>(r#"{"bogus":1}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"redis":{"bogus":1}}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"backend":"sqlite"}"#).is_err());
    }

    #[test]
    fn opens_embedded_with_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subs.csv");
        std::fs::write(&file, "alice,x,pw\n").unwrap();
        let stores = open(&Config {
            path: Some(dir.path().join("state")),
            subscribers: SubscribersConfig {
                file: Some(file),
                ..SubscribersConfig::default()
            },
            ..Config::default()
        })
        .unwrap();
        assert!(stores
            .subscribers
            .credentials("alice", "x")
            .unwrap()
            .is_some());
        stores.kv.set("t/m", "k", b"v", None).unwrap();
        assert_eq!(stores.location.aor_count().unwrap(), 0);
        assert!(stores.embedded.is_some());
    }

    #[test]
    fn a_bad_file_fails_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subs.csv");
        std::fs::write(&file, "alice,x\n").unwrap();
        let e = open(&Config {
            subscribers: SubscribersConfig {
                file: Some(file),
                ..SubscribersConfig::default()
            },
            ..Config::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("subs.csv:1:"), "{e}");
    }
}
