//! Weir's state stores: one abstraction for the three kinds of state the proxy keeps.
//!
//! - [`KvStore`]: the module key-value store (Kamailio htable semantics: TTL auto-expiry,
//!   atomic increment), namespaced by the host per tenant and module.
//! - [`LocationStore`]: registrar bindings per address of record (Kamailio usrloc).
//! - [`SubscriberStore`]: digest credentials (Kamailio auth_db's subscriber table).
//!
//! Backends: the embedded store (in memory, optionally persisted to local disk so that
//! state survives `kill -9`) and Redis (so several Weir nodes share state). Every call
//! is synchronous and short: the proxy calls stores from its message path (UDP receive
//! threads and module calls), never from inside an async runtime's reactor.
//!
//! What a store must never do: return expired entries, lose an acknowledged write
//! (a call that returned `Ok`), or grow without bound.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod config;

/// A hash map keyed by what peers send (AORs, usernames, kv keys): foldhash, seeded per
/// process and per map, as the transaction table's (ADR 0008): SipHash's margin is not
/// needed, its cost is (about 2k instructions per registration).
pub(crate) type PeerMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

mod embedded;
pub mod memory;
mod redis_store;
pub mod subscribers;

pub use config::{open, Backend, Config, KvConfig, RedisConfig, Stores, SubscribersConfig};
pub use embedded::{Embedded, EmbeddedOptions};
pub use memory::kv::{KvLimits, MemoryKv};
pub use memory::subscribers::MemorySubscribers;
pub use redis_store::{RedisOptions, RedisStore};
pub use subscribers::{
    load_subscribers, parse_subscribers, CacheOptions, Cached, Fallback, SubscriberFileError,
};

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// === Errors ===

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key is longer than the store accepts.
    #[error("key of {len} bytes is longer than {max}")]
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than the store accepts.
    #[error("value of {len} bytes is longer than {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The namespace (or the location table) holds as many entries as it may.
    #[error("namespace is full ({max} keys)")]
    NamespaceFull {
        /// The limit.
        max: usize,
    },
    /// The store holds as many namespaces as it may.
    #[error("too many namespaces ({max})")]
    TooManyNamespaces {
        /// The limit.
        max: usize,
    },
    /// `incr` on a value that is not a decimal integer.
    #[error("value is not a decimal integer")]
    NotANumber,
    /// `incr` would overflow an `i64`.
    #[error("integer overflow")]
    Overflow,
    /// A compare-and-set update lost too many races in a row.
    #[error("update conflict on {0}")]
    Conflict(String),
    /// The backing store failed (disk, network, corrupt record).
    #[error("backend: {0}")]
    Backend(String),
}

/// The name the rest of Weir uses for key-value errors.
pub type KvError = StoreError;

// === KvStore ===

/// A key-value store with TTLs, addressed by `(namespace, key)`.
///
/// Called synchronously from inside module calls (on the message path): an
/// implementation must not block for long and must not enter an async runtime.
/// Implementations enforce their own size limits and must check lengths before
/// copying `key` or `value`.
pub trait KvStore: Send + Sync {
    /// Value of `key`, if present and not expired.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing any previous value and TTL; `ttl` of
    /// `None` means no expiry.
    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;
    /// Atomically adds `delta` to the decimal integer under `key` (absent counts as
    /// 0) and returns the new value; `ttl` applies only when the key is created.
    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError>;
    /// Removes `key`; true if it existed (and had not expired).
    fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError>;
}

// === LocationStore ===

/// One contact bound to an address of record (a usrloc `ucontact`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    /// The Contact URI, as registered (without the name-addr brackets or params).
    pub contact: String,
    /// Absolute expiry, milliseconds since the Unix epoch (wall clock, so it means the
    /// same on every node and after a restart).
    pub expires_at_ms: u64,
    /// q-value times 1000 (0..=1000); `None` when the Contact had no `q`.
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that created or last refreshed it.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// `+sip.instance` Contact param (RFC 5626), unquoted, if any.
    pub instance: Option<String>,
    /// `reg-id` Contact param (RFC 5626), if any.
    pub reg_id: Option<u32>,
    /// Path header values of the REGISTER (RFC 3327), in order.
    pub path: Vec<String>,
    /// Where the REGISTER came from, as `sip:<ip>:<port>;transport=<t>` (for NAT).
    pub received: Option<String>,
    /// Name of the listener the REGISTER arrived on.
    pub listener: Option<String>,
    /// User-Agent of the REGISTER.
    pub user_agent: Option<String>,
    /// Other Contact params worth keeping (e.g. RFC 8599 `pn-*`), as `(name, value)`.
    pub params: Vec<(String, String)>,
    /// Unique id of the binding (usrloc `ruid`), stable across refreshes.
    pub ruid: String,
    /// Last write, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

impl Binding {
    /// True when the binding has not expired at `now_ms` (`expires_at_ms > now_ms`).
    /// A permanent binding (usrloc's `expires 0`) is stored with
    /// `expires_at_ms = u64::MAX`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }
}

/// Registrar bindings per address of record (AOR, e.g. `sip:alice@example.com`
/// normalised by the registrar).
///
/// Writes go through [`update`](LocationStore::update): a read-modify-write of one
/// AOR's whole binding list that is atomic per AOR on every backend (a lock in the
/// embedded store, optimistic WATCH/MULTI/EXEC with retries on Redis), so two nodes
/// registering the same AOR cannot lose each other's bindings.
pub trait LocationStore: Send + Sync {
    /// The live (unexpired at `now_ms`) bindings of `aor`, in stored order.
    fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError>;

    /// Atomically edits the bindings of `aor`. `f` gets the live bindings at `now_ms`
    /// (expired ones already removed) to edit in place, and returns whether to write
    /// them back (an empty list removes the record; `false` changes nothing, expired
    /// bindings included). `f` may be called more than once (on a conflict it is
    /// retried with fresh data), so whatever it reports to its caller through captured
    /// state must be overwritten on each call, not accumulated.
    /// Returns the bindings as stored afterwards. When the call returns `Ok`, the write
    /// is durable as the backend promises (embedded with a path: survives `kill -9`;
    /// Redis: as its persistence is set).
    fn update(
        &self,
        aor: &str,
        now_ms: u64,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> bool,
    ) -> Result<Vec<Binding>, StoreError>;

    /// Removes every binding that expired at `now_ms` and returns them with their AOR
    /// (for "binding removed" events). Called periodically by the host.
    fn purge_expired(&self, now_ms: u64) -> Result<Vec<(String, Binding)>, StoreError>;

    /// Number of AORs with at least one stored binding (a gauge; may include expired
    /// bindings not yet purged).
    fn aor_count(&self) -> Result<usize, StoreError>;
}

// === SubscriberStore ===

/// Digest credentials of one subscriber (auth_db's `subscriber` row). At least one of
/// `password` and the HA1 values is present.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// The user part.
    pub username: String,
    /// The domain (the digest realm it authenticates in).
    pub domain: String,
    /// Plain-text password, when stored that way.
    pub password: Option<String>,
    /// MD5(username:domain:password), lowercase hex.
    pub ha1: Option<String>,
    /// SHA-256(username:domain:password), lowercase hex.
    pub ha1_sha256: Option<String>,
}

/// Subscriber credentials by (username, domain).
pub trait SubscriberStore: Send + Sync {
    /// The credentials of `username` in `domain`, if the subscriber exists.
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError>;

    /// Calls `f` with the credentials of `username` in `domain` (`None` if the
    /// subscriber does not exist). The default goes through
    /// [`credentials`](Self::credentials); a store that holds them in memory lends them
    /// without a copy.
    fn with_credentials(
        &self,
        username: &str,
        domain: &str,
        f: &mut dyn FnMut(Option<&Credentials>),
    ) -> Result<(), StoreError> {
        let found = self.credentials(username, domain)?;
        f(found.as_ref());
        Ok(())
    }
}
