//! The bounded, in-memory [`MemoryKv`] (moved here from `weir-wasm`).
//!
//! The host namespaces every module as `"<tenant>/<module>"`; a module passes only the
//! key, so it can never name another namespace.
//!
//! The embedded store ([`Embedded`](crate::Embedded)) reuses it with a journal: every
//! write is made durable by the journal *before* it is applied in memory, under the
//! namespace lock, so memory only ever shows acknowledged state.

use crate::PeerMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::{now_ms, KvError, KvStore};

/// Where a [`MemoryKv`] makes its writes durable (the embedded store's disk).
pub(crate) trait KvJournal: Send + Sync {
    /// Durably records `value` under `(namespace, key)`; returns once it is durable.
    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), KvError>;
    /// Durably removes `(namespace, key)`.
    fn remove(&self, namespace: &str, key: &str) -> Result<(), KvError>;
    /// Forgets expired entries; best effort (a failure only means they are dropped at
    /// the next load instead).
    fn forget(&self, namespace: &str, keys: &[String]);
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
    namespaces: RwLock<PeerMap<String, Arc<Mutex<Namespace>>>>,
    journal: Option<Arc<dyn KvJournal>>,
}

#[derive(Default)]
struct Namespace {
    entries: PeerMap<String, Entry>,
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
    /// The same deadline on the wall clock (what the journal records).
    expires_at_ms: Option<u64>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

impl Namespace {
    /// Drops expired entries; returns their keys.
    fn purge(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        self.entries.retain(|k, e| {
            let live = e.live(now);
            if !live {
                gone.push(k.clone());
            }
            live
        });
        gone
    }
}

/// A TTL as both an `Instant` and a wall-clock deadline. A TTL too large to represent
/// means "never" in practice.
fn deadline(now: Instant, ttl: Option<Duration>) -> (Option<Instant>, Option<u64>) {
    let Some(ttl) = ttl else {
        return (None, None);
    };
    match now.checked_add(ttl) {
        Some(at) => {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            (Some(at), now_ms().checked_add(ms))
        }
        None => (None, None),
    }
}

impl MemoryKv {
    /// A store with these limits, with its sweeper thread started.
    pub fn new(limits: KvLimits) -> Arc<MemoryKv> {
        Self::with_journal(limits, None)
    }

    /// A store whose writes are made durable by `journal` before they are applied.
    pub(crate) fn with_journal(
        limits: KvLimits,
        journal: Option<Arc<dyn KvJournal>>,
    ) -> Arc<MemoryKv> {
        let interval = limits.sweep_interval;
        let kv = Arc::new(MemoryKv {
            limits,
            namespaces: RwLock::new(PeerMap::default()),
            journal,
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

    /// Puts an entry loaded from disk back, without journaling it. Expired entries and
    /// entries over the limits are skipped; returns whether it was kept.
    pub(crate) fn restore(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    ) -> bool {
        let now = Instant::now();
        let wall = now_ms();
        let expires = match expires_at_ms {
            None => None,
            Some(at) if at <= wall => return false,
            Some(at) => now.checked_add(Duration::from_millis(at - wall)),
        };
        if key.len() > self.limits.max_key_bytes || value.len() > self.limits.max_value_bytes {
            return false;
        }
        let Ok(ns) = self.find_or_create(namespace) else {
            return false;
        };
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        if ns.entries.len() >= self.limits.max_keys_per_namespace {
            return false;
        }
        ns.entries.insert(
            key.to_owned(),
            Entry {
                value,
                expires,
                expires_at_ms,
            },
        );
        true
    }

    /// Purges expired entries (and empty namespaces) now; returns how many entries
    /// went.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let purged = {
            // Purge namespace by namespace without holding the map lock.
            let all: Vec<(String, Arc<Mutex<Namespace>>)> = self
                .namespaces
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(name, ns)| (name.clone(), ns.clone()))
                .collect();
            all.iter()
                .map(|(name, ns)| {
                    let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
                    let gone = ns.purge(now);
                    self.forget(name, &gone);
                    gone.len()
                })
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

    /// Tells the journal (if any) about expired keys just dropped. Called with the
    /// namespace lock held, so it cannot overtake a later write of the same key.
    fn forget(&self, namespace: &str, keys: &[String]) {
        if let (Some(j), false) = (&self.journal, keys.is_empty()) {
            j.forget(namespace, keys);
        }
    }

    /// Makes room for one new key, purging expired entries if the namespace is full.
    fn room_for_one(&self, name: &str, ns: &mut Namespace, now: Instant) -> Result<(), KvError> {
        let max = self.limits.max_keys_per_namespace;
        if ns.entries.len() >= max {
            let gone = ns.purge(now);
            self.forget(name, &gone);
        }
        if ns.entries.len() >= max {
            return Err(KvError::NamespaceFull { max });
        }
        Ok(())
    }

    /// Journals then stores `entry` under `key`.
    fn write(
        &self,
        name: &str,
        ns: &mut Namespace,
        key: &str,
        entry: Entry,
    ) -> Result<(), KvError> {
        if let Some(j) = &self.journal {
            j.put(name, key, &entry.value, entry.expires_at_ms)?;
        }
        match ns.entries.get_mut(key) {
            Some(slot) => *slot = entry,
            None => {
                ns.entries.insert(key.to_owned(), entry);
            }
        }
        Ok(())
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
                self.forget(namespace, &[key.to_owned()]);
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
        let handle = self.find_or_create(namespace)?;
        let mut ns = handle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if !ns.entries.contains_key(key) {
            // Replacing needs no room.
            self.room_for_one(namespace, &mut ns, now)?;
        }
        let (expires, expires_at_ms) = deadline(now, ttl);
        let entry = Entry {
            value: value.to_vec(),
            expires,
            expires_at_ms,
        };
        self.write(namespace, &mut ns, key, entry)
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, KvError> {
        self.check_key(key)?;
        let handle = self.find_or_create(namespace)?;
        let mut ns = handle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // One lookup; the live entry is updated in place (its TTL, set at creation,
        // stays).
        let expired = match ns.entries.get_mut(key) {
            Some(e) if e.live(now) => {
                let current = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?;
                if delta == 0 {
                    // A read (a shared generation counter, say): nothing to write.
                    return Ok(current);
                }
                let next = current.checked_add(delta).ok_or(KvError::Overflow)?;
                let mut digits = [0u8; 20]; // i64::MIN is 20 characters
                let len = {
                    let mut w = std::io::Cursor::new(&mut digits[..]);
                    // 20 bytes hold any i64: this cannot fail.
                    let _ = write!(w, "{next}");
                    usize::try_from(w.position()).unwrap_or(0)
                };
                let value = digits.get(..len).unwrap_or_default();
                if let Some(j) = &self.journal {
                    j.put(namespace, key, value, e.expires_at_ms)?;
                }
                e.value.clear();
                e.value.extend_from_slice(value);
                return Ok(next);
            }
            Some(_) => true,
            None => false,
        };
        if expired {
            ns.entries.remove(key);
            self.forget(namespace, &[key.to_owned()]);
        }
        self.room_for_one(namespace, &mut ns, now)?;
        let (expires, expires_at_ms) = deadline(now, ttl);
        let entry = Entry {
            value: delta.to_string().into_bytes(),
            expires,
            expires_at_ms,
        };
        self.write(namespace, &mut ns, key, entry)?;
        Ok(delta)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        let Some(ns) = self.find(namespace) else {
            return Ok(false);
        };
        let mut ns = ns.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(live) = ns.entries.get(key).map(|e| e.live(Instant::now())) else {
            return Ok(false);
        };
        if let Some(j) = &self.journal {
            j.remove(namespace, key)?;
        }
        ns.entries.remove(key);
        Ok(live)
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

    /// A journaled write: key, value, expiry.
    type Put = (String, Vec<u8>, Option<u64>);

    /// Records the writes a store journals.
    #[derive(Default)]
    struct Counting {
        puts: std::sync::Mutex<Vec<Put>>,
    }

    impl KvJournal for Counting {
        fn put(
            &self,
            _namespace: &str,
            key: &str,
            value: &[u8],
            expires_at_ms: Option<u64>,
        ) -> Result<(), KvError> {
            self.puts
                .lock()
                .unwrap()
                .push((key.to_owned(), value.to_vec(), expires_at_ms));
            Ok(())
        }
        fn remove(&self, _namespace: &str, _key: &str) -> Result<(), KvError> {
            Ok(())
        }
        fn forget(&self, _namespace: &str, _keys: &[String]) {}
    }

    #[test]
    fn incr_updates_in_place_and_an_incr_by_zero_writes_nothing() {
        let journal = Arc::new(Counting::default());
        let kv = MemoryKv::with_journal(
            KvLimits {
                max_namespaces: 2,
                max_keys_per_namespace: 2,
                max_key_bytes: 8,
                max_value_bytes: 4,
                sweep_interval: Duration::from_secs(60),
            },
            Some(journal.clone()),
        );
        assert_eq!(kv.incr("a/m", "n", 0, None).unwrap(), 0); // created as 0
        assert_eq!(kv.incr("a/m", "n", 9, None).unwrap(), 9);
        assert_eq!(kv.incr("a/m", "n", 0, None).unwrap(), 9);
        assert_eq!(kv.incr("a/m", "n", 0, None).unwrap(), 9);
        assert_eq!(kv.incr("a/m", "n", 991, None).unwrap(), 1000);
        assert_eq!(kv.get("a/m", "n").unwrap(), Some(b"1000".to_vec()));
        assert_eq!(
            kv.incr("a/m", "n", i64::MIN, None).unwrap(),
            i64::MIN + 1000
        );
        assert_eq!(
            kv.get("a/m", "n").unwrap(),
            Some((i64::MIN + 1000).to_string().into_bytes())
        );
        let puts = journal.puts.lock().unwrap().clone();
        let values: Vec<&[u8]> = puts.iter().map(|(_, v, _)| v.as_slice()).collect();
        assert_eq!(
            values,
            [
                &b"0"[..],
                b"9",
                b"1000",
                (i64::MIN + 1000).to_string().as_bytes()
            ]
        );

        // The TTL set at creation stays, in memory and in the journal.
        kv.incr("a/m", "t", 1, Some(Duration::from_secs(100)))
            .unwrap();
        kv.incr("a/m", "t", 1, Some(Duration::from_secs(5)))
            .unwrap();
        let puts = journal.puts.lock().unwrap().clone();
        let (first, second) = (&puts[puts.len() - 2], &puts[puts.len() - 1]);
        assert!(first.2.is_some());
        assert_eq!(first.2, second.2);
        assert_eq!(second.1, b"2");
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
