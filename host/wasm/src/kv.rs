//! The key-value store behind `weir:sip/kv`: the [`KvStore`] trait and the bounded,
//! in-memory [`MemoryKv`].
//!
//! The host namespaces every module as `"<tenant>/<module>"`; a module passes only the
//! key, so it can never name another namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

// === KvStore ===

/// A key-value store with TTLs, addressed by `(namespace, key)`.
///
/// Called synchronously from inside module calls (on the message path): an
/// implementation must not block for long and must not enter an async runtime.
/// Implementations enforce their own size limits and must check lengths before
/// copying `key` or `value`.
pub trait KvStore: Send + Sync {
    /// Value of `key`, if present and not expired.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value` under `key`, replacing any previous value and TTL; `ttl` of
    /// `None` means no expiry.
    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError>;
    /// Atomically adds `delta` to the decimal integer under `key` (absent counts as
    /// 0) and returns the new value; `ttl` applies only when the key is created.
    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError>;
    /// Removes `key`; true if it existed (and had not expired).
    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError>;
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
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
    /// The namespace holds as many keys as it may.
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
    /// The backing store failed.
    #[error("backend: {0}")]
    Backend(String),
}

// === MemoryKv ===

/// Bounds of a [`MemoryKv`].
#[derive(Clone, Debug)]
pub struct KvLimits {
    /// Most namespaces (modules with keys).
    pub max_namespaces: usize,
    /// Most live keys in one namespace.
    pub max_keys_per_namespace: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Longest value, in bytes.
    pub max_value_bytes: usize,
    /// How often a background thread purges expired entries (they are also purged
    /// when read, and when a full namespace needs room).
    pub sweep_interval: Duration,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_namespaces: 4096,
            max_keys_per_namespace: 100_000,
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// In-memory [`KvStore`]: bounded, with TTL expiry and atomic `incr`.
///
/// Each namespace has its own lock, so modules do not contend with each other. A
/// sweeper thread (named `weir-kv-sweep`) holds only a weak reference and ends once
/// the store is dropped.
pub struct MemoryKv {
    limits: KvLimits,
    namespaces: RwLock<HashMap<String, Arc<Mutex<Namespace>>>>,
}

#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

impl Namespace {
    fn purge(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.live(now));
        before - self.entries.len()
    }

    /// Makes room for one new key, purging expired entries if the namespace is full.
    fn room_for_one(&mut self, max: usize, now: Instant) -> Result<(), KvError> {
        if self.entries.len() >= max {
            self.purge(now);
        }
        if self.entries.len() >= max {
            return Err(KvError::NamespaceFull { max });
        }
        Ok(())
    }
}

fn deadline(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    // A TTL too large to represent means "never" in practice.
    ttl.and_then(|t| now.checked_add(t))
}

impl MemoryKv {
    /// A store with these limits, with its sweeper thread started.
    pub fn new(limits: KvLimits) -> Arc<MemoryKv> {
        let interval = limits.sweep_interval;
        let kv = Arc::new(MemoryKv {
            limits,
            namespaces: RwLock::new(HashMap::new()),
        });
        let weak: Weak<MemoryKv> = Arc::downgrade(&kv);
        let spawned = thread::Builder::new()
            .name("weir-kv-sweep".into())
            .spawn(move || loop {
                thread::sleep(interval);
                match weak.upgrade() {
                    Some(kv) => {
                        kv.sweep();
                    }
                    None => break,
                }
            });
        if let Err(e) = spawned {
            // Entries still expire lazily; only the background purge is missing.
            tracing::warn!(error = %e, "kv sweeper thread not started");
        }
        kv
    }

    /// Purges expired entries (and empty namespaces) now; returns how many entries
    /// went.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let purged = {
            // Purge namespace by namespace without holding the map lock.
            let all: Vec<Arc<Mutex<Namespace>>> = self
                .namespaces
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned()
                .collect();
            all.iter()
                .map(|ns| ns.lock().unwrap_or_else(PoisonError::into_inner).purge(now))
                .sum()
        };
        let mut map = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, ns| {
            // Keep a namespace someone holds right now, even if empty.
            Arc::strong_count(ns) > 1
                || !ns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .is_empty()
        });
        purged
    }

    /// Live keys in `namespace` (expired ones not yet purged included).
    pub fn len(&self, namespace: &str) -> usize {
        self.find(namespace)
            .map(|ns| {
                ns.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .unwrap_or(0)
    }

    /// True when no namespace holds a key.
    pub fn is_empty(&self) -> bool {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .all(|ns| {
                ns.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .is_empty()
            })
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.len() > self.limits.max_key_bytes {
            return Err(KvError::KeyTooLarge {
                len: key.len(),
                max: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    fn find(&self, namespace: &str) -> Option<Arc<Mutex<Namespace>>> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    fn find_or_create(&self, namespace: &str) -> Result<Arc<Mutex<Namespace>>, KvError> {
        if let Some(ns) = self.find(namespace) {
            return Ok(ns);
        }
        let mut map = self
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ns) = map.get(namespace) {
            return Ok(ns.clone());
        }
        if map.len() >= self.limits.max_namespaces {
            return Err(KvError::TooManyNamespaces {
                max: self.limits.max_namespaces,
            });
        }
        let ns = Arc::new(Mutex::new(Namespace::default()));
        map.insert(namespace.to_owned(), ns.clone());
        Ok(ns)
    }
}

impl KvStore for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        let Some(ns) = self.find(namespace) else {
            return Ok(None);
        };
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match ns.entries.get(key) {
            Some(e) if e.live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                ns.entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.check_key(key)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(KvError::ValueTooLarge {
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        let ns = self.find_or_create(namespace)?;
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = Entry {
            value: value.to_vec(),
            expires: deadline(now, ttl),
        };
        if let Some(slot) = ns.entries.get_mut(key) {
            *slot = entry;
            return Ok(());
        }
        ns.room_for_one(self.limits.max_keys_per_namespace, now)?;
        ns.entries.insert(key.to_owned(), entry);
        Ok(())
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        self.check_key(key)?;
        let ns = self.find_or_create(namespace)?;
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(e) = ns.entries.get_mut(key) {
            if e.live(now) {
                let current = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?;
                let next = current.checked_add(delta).ok_or(KvError::Overflow)?;
                e.value = next.to_string().into_bytes();
                return Ok(next);
            }
            ns.entries.remove(key);
        }
        ns.room_for_one(self.limits.max_keys_per_namespace, now)?;
        ns.entries.insert(
            key.to_owned(),
            Entry {
                value: delta.to_string().into_bytes(),
                expires: deadline(now, ttl),
            },
        );
        Ok(delta)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        let Some(ns) = self.find(namespace) else {
            return Ok(false);
        };
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(ns
            .entries
            .remove(key)
            .is_some_and(|e| e.live(Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Arc<MemoryKv> {
        MemoryKv::new(KvLimits {
            max_namespaces: 2,
            max_keys_per_namespace: 2,
            max_key_bytes: 8,
            max_value_bytes: 4,
            sweep_interval: Duration::from_millis(10),
        })
    }

    #[test]
    fn namespaces_are_separate() {
        let kv = small();
        kv.set("a/m", "k", b"1", None).unwrap();
        assert_eq!(kv.get("a/m", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.get("b/m", "k").unwrap(), None);
        assert!(!kv.delete("b/m", "k").unwrap());
        assert!(kv.delete("a/m", "k").unwrap());
    }

    #[test]
    fn limits_are_enforced() {
        let kv = small();
        assert_eq!(
            kv.set("a/m", "123456789", b"", None),
            Err(KvError::KeyTooLarge { len: 9, max: 8 })
        );
        assert_eq!(
            kv.set("a/m", "k", b"12345", None),
            Err(KvError::ValueTooLarge { len: 5, max: 4 })
        );
        kv.set("a/m", "k1", b"", None).unwrap();
        kv.set("a/m", "k2", b"", None).unwrap();
        kv.set("a/m", "k2", b"x", None).unwrap(); // replacing needs no room
        assert_eq!(
            kv.set("a/m", "k3", b"", None),
            Err(KvError::NamespaceFull { max: 2 })
        );
        kv.set("b/m", "k", b"", None).unwrap();
        assert_eq!(
            kv.set("c/m", "k", b"", None),
            Err(KvError::TooManyNamespaces { max: 2 })
        );
    }

    #[test]
    fn incr_is_numeric_and_checked() {
        let kv = small();
        assert_eq!(kv.incr("a/m", "n", 5, None).unwrap(), 5);
        assert_eq!(kv.incr("a/m", "n", -7, None).unwrap(), -2);
        kv.set("a/m", "s", b"x", None).unwrap();
        assert_eq!(kv.incr("a/m", "s", 1, None), Err(KvError::NotANumber));
        kv.delete("a/m", "n").unwrap();
        kv.incr("a/m", "n", i64::MAX, None).unwrap();
        assert_eq!(kv.incr("a/m", "n", 1, None), Err(KvError::Overflow));
    }

    #[test]
    fn ttl_expires_lazily_and_by_sweep() {
        let kv = small();
        let ttl = Some(Duration::from_millis(20));
        kv.set("a/m", "k1", b"1", ttl).unwrap();
        kv.incr("a/m", "k2", 1, ttl).unwrap();
        // incr keeps the TTL set at creation.
        assert_eq!(kv.incr("a/m", "k2", 1, None).unwrap(), 2);
        thread::sleep(Duration::from_millis(30));
        assert_eq!(kv.get("a/m", "k1").unwrap(), None);
        // A full namespace makes room by purging expired keys.
        kv.set("a/m", "k3", b"", None).unwrap();
        kv.set("a/m", "k4", b"", ttl).unwrap();
        thread::sleep(Duration::from_millis(80));
        assert_eq!(kv.len("a/m"), 1, "the sweeper purged k4");
        // An expired counter restarts from zero.
        assert_eq!(kv.incr("a/m", "k4", 3, None).unwrap(), 3);
    }

    #[test]
    fn huge_ttl_means_no_expiry() {
        let kv = small();
        kv.set("a/m", "k", b"v", Some(Duration::MAX)).unwrap();
        assert_eq!(kv.get("a/m", "k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn sweeper_ends_with_the_store() {
        let kv = small();
        let weak = Arc::downgrade(&kv);
        drop(kv);
        assert!(weak.upgrade().is_none());
    }
}
