//! Subscriber credentials: the credentials file, a cache with auto-expiry in front of a
//! slower backend (the seed's htable-in-front-of-DB pattern), and a two-level lookup.
//!
//! # The credentials file
//!
//! UTF-8 text, one subscriber per line; blank lines and lines whose first non-blank
//! character is `#` are ignored:
//!
//! ```text
//! # username,domain,secret
//! alice,example.com,s3cret, with a comma
//! bob,example.com,ha1=4a9e5e0b4f7d3d1b0b8b5c7e1d2f3a4b
//! carol,example.com,ha1=4a9e5e0b4f7d3d1b0b8b5c7e1d2f3a4b,ha1_sha256=<64 hex>
//! dave,example.com,password=ha1=is-my-password
//! ```
//!
//! - `username` and `domain` are trimmed and must be non-empty (and contain no `,`).
//! - The secret is everything after the second comma, trimmed. If it starts with
//!   `ha1=` or `ha1_sha256=` it is a comma-separated list of such items (32 and 64
//!   hex digits, stored lowercase); if it starts with `password=` the rest is the
//!   password; otherwise the whole secret is the plain-text password (commas
//!   included). Leading or trailing blanks cannot be part of a password.
//! - A `(username, domain)` pair may appear once. Errors name the line (1-based).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Credentials, MemorySubscribers, StoreError, SubscriberStore};

/// Most subscribers a credentials file may hold.
pub const MAX_FILE_SUBSCRIBERS: usize = 1_000_000;

/// A credentials file that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct SubscriberFileError {
    /// The file (or `<text>` for parsed text).
    pub source_name: String,
    /// 1-based line number (0 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl From<SubscriberFileError> for StoreError {
    fn from(e: SubscriberFileError) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

/// Reads and parses the credentials file at `path` (format in the module docs).
pub fn load_subscribers(path: &Path) -> Result<Vec<Credentials>, SubscriberFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SubscriberFileError {
        source_name: name.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    parse(&name, &text)
}

/// Parses credentials-file text (format in the module docs).
pub fn parse_subscribers(text: &str) -> Result<Vec<Credentials>, SubscriberFileError> {
    parse("<text>", text)
}

fn parse(name: &str, text: &str) -> Result<Vec<Credentials>, SubscriberFileError> {
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| SubscriberFileError {
            source_name: name.to_owned(),
            line: line_no,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ',');
        let username = parts.next().unwrap_or("").trim();
        let domain = parts.next().unwrap_or("").trim();
        let secret = parts
            .next()
            .map(str::trim)
            .ok_or_else(|| err("expected `username,domain,secret`".into()))?;
        if username.is_empty() {
            return Err(err("empty username".into()));
        }
        if domain.is_empty() {
            return Err(err("empty domain".into()));
        }
        let mut c = Credentials {
            username: username.to_owned(),
            domain: domain.to_owned(),
            password: None,
            ha1: None,
            ha1_sha256: None,
        };
        if secret.starts_with("ha1=") || secret.starts_with("ha1_sha256=") {
            for item in secret.split(',').map(str::trim) {
                if let Some(h) = item.strip_prefix("ha1=") {
                    c.ha1 =
                        Some(hex(h, 32).ok_or_else(|| err("ha1 must be 32 hex digits".into()))?);
                } else if let Some(h) = item.strip_prefix("ha1_sha256=") {
                    c.ha1_sha256 = Some(
                        hex(h, 64).ok_or_else(|| err("ha1_sha256 must be 64 hex digits".into()))?,
                    );
                } else {
                    return Err(err(format!(
                        "expected `ha1=<hex>` or `ha1_sha256=<hex>`, found `{item}`"
                    )));
                }
            }
        } else {
            let pw = secret.strip_prefix("password=").unwrap_or(secret).trim();
            if pw.is_empty() {
                return Err(err("empty password".into()));
            }
            c.password = Some(pw.to_owned());
        }
        let key = (c.username.clone(), c.domain.clone());
        if let Some(first) = seen.insert(key, line_no) {
            return Err(err(format!(
                "{username}@{domain} already defined on line {first}"
            )));
        }
        if out.len() >= MAX_FILE_SUBSCRIBERS {
            return Err(err(format!("more than {MAX_FILE_SUBSCRIBERS} subscribers")));
        }
        out.push(c);
    }
    Ok(out)
}

/// `s` lowercased if it is exactly `len` hex digits.
fn hex(s: &str, len: usize) -> Option<String> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

impl<T: SubscriberStore + ?Sized> SubscriberStore for Arc<T> {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        (**self).credentials(username, domain)
    }

    fn with_credentials(
        &self,
        username: &str,
        domain: &str,
        f: &mut dyn FnMut(Option<&Credentials>),
    ) -> Result<(), StoreError> {
        (**self).with_credentials(username, domain, f)
    }
}

// === Cached ===

/// Bounds and lifetimes of a [`Cached`] store.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// How long a found subscriber is served from the cache.
    pub ttl: Duration,
    /// How long "no such subscriber" is served from the cache (short: a new
    /// subscriber should not wait long).
    pub negative_ttl: Duration,
    /// Most cached entries (found and not found together).
    pub max_entries: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
        }
    }
}

/// A bounded cache with auto-expiry in front of a slower [`SubscriberStore`] (such as
/// Redis). Backend errors are passed through and not cached.
pub struct Cached<S> {
    inner: S,
    options: CacheOptions,
    map: Mutex<HashMap<(String, String), CacheEntry>>,
}

/// A cached answer and until when it may be served.
type CacheEntry = (Option<Credentials>, Instant);

impl<S: SubscriberStore> Cached<S> {
    /// `inner` behind a cache with these options.
    pub fn new(inner: S, options: CacheOptions) -> Cached<S> {
        Cached {
            inner,
            options,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the cached entry of one subscriber (after changing it in the backend).
    pub fn invalidate(&self, username: &str, domain: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(username.to_owned(), domain.to_owned()));
    }

    /// Drops every cached entry.
    pub fn clear(&self) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Entries cached now (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: SubscriberStore> SubscriberStore for Cached<S> {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        let key = (username.to_owned(), domain.to_owned());
        let now = Instant::now();
        if let Some((found, until)) = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            if *until > now {
                return Ok(found.clone());
            }
        }
        // Not under the lock: the backend may be slow.
        let found = self.inner.credentials(username, domain)?;
        let ttl = if found.is_some() {
            self.options.ttl
        } else {
            self.options.negative_ttl
        };
        if ttl.is_zero() || self.options.max_entries == 0 {
            return Ok(found);
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.options.max_entries && !map.contains_key(&key) {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.options.max_entries {
                // Still full of live entries: evict an arbitrary one.
                if let Some(victim) = map.keys().next().cloned() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key, (found.clone(), now + ttl));
        Ok(found)
    }
}

// === Fallback ===

/// Looks a subscriber up in `first` (the credentials file), then in `then` (a store
/// backend, usually [`Cached`]).
pub struct Fallback<A, B> {
    /// Asked first.
    pub first: A,
    /// Asked when `first` does not know the subscriber.
    pub then: B,
}

impl<A: SubscriberStore, B: SubscriberStore> SubscriberStore for Fallback<A, B> {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        match self.first.credentials(username, domain)? {
            Some(c) => Ok(Some(c)),
            None => self.then.credentials(username, domain),
        }
    }

    fn with_credentials(
        &self,
        username: &str,
        domain: &str,
        f: &mut dyn FnMut(Option<&Credentials>),
    ) -> Result<(), StoreError> {
        let mut found = false;
        self.first.with_credentials(username, domain, &mut |c| {
            if let Some(c) = c {
                found = true;
                f(Some(c));
            }
        })?;
        if found {
            return Ok(());
        }
        self.then.with_credentials(username, domain, f)
    }
}

/// Loads the credentials file at `path` into a new [`MemorySubscribers`].
pub fn memory_from_file(path: &Path) -> Result<MemorySubscribers, SubscriberFileError> {
    Ok(MemorySubscribers::from_credentials(load_subscribers(path)?))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HA1: &str = "4A9E5E0B4F7D3D1B0B8B5C7E1D2F3A4B";

    #[test]
    fn parses_the_documented_format() {
        let text = format!(
            "# comment\n\n  alice , example.com , s3cret, with a comma \r\n\
             bob,example.com,ha1={HA1}\n\
             carol,example.com,ha1={HA1}, ha1_sha256={}\n\
             dave,example.com,password=ha1=is-my-password\n",
            "a".repeat(64)
        );
        let subs = parse_subscribers(&text).unwrap();
        assert_eq!(subs.len(), 4);
        assert_eq!(subs[0].username, "alice");
        assert_eq!(subs[0].password.as_deref(), Some("s3cret, with a comma"));
        assert_eq!(
            subs[1].ha1.as_deref(),
            Some(HA1.to_ascii_lowercase().as_str())
        );
        assert_eq!(subs[1].password, None);
        assert_eq!(subs[2].ha1_sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(subs[3].password.as_deref(), Some("ha1=is-my-password"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("alice,example.com", 1, "expected"),
            ("# c\n,example.com,pw", 2, "empty username"),
            ("a,,pw", 1, "empty domain"),
            ("a,d,", 1, "empty password"),
            ("a,d,ha1=123", 1, "32 hex"),
            ("a,d,ha1_sha256=zz", 1, "64 hex"),
            (&format!("a,d,ha1={HA1},pw"), 1, "expected `ha1="),
            ("a,d,x\n\na,d,y", 3, "already defined on line 1"),
        ];
        for (text, line, msg) in cases {
            let e = parse_subscribers(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("<text>:{line}: ")));
        }
    }

    #[test]
    fn loads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subscribers.csv");
        std::fs::write(&path, "alice,example.com,pw\n").unwrap();
        let store = memory_from_file(&path).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.credentials("alice", "example.com").unwrap().is_some());
        assert!(store.credentials("alice", "other").unwrap().is_none());
        let e = load_subscribers(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.line, 0);
    }

    /// Counts backend calls; fails when `fail` is set.
    struct Slow {
        calls: AtomicUsize,
        store: MemorySubscribers,
        fail: std::sync::atomic::AtomicBool,
    }

    impl SubscriberStore for Slow {
        fn credentials(&self, u: &str, d: &str) -> Result<Option<Credentials>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("down".into()));
            }
            self.store.credentials(u, d)
        }
    }

    fn slow() -> Arc<Slow> {
        Arc::new(Slow {
            calls: AtomicUsize::new(0),
            store: MemorySubscribers::from_credentials(parse_subscribers("alice,x,pw").unwrap()),
            fail: false.into(),
        })
    }

    #[test]
    fn cache_hits_expires_and_bounds() {
        let backend = slow();
        let cache = Cached::new(
            backend.clone(),
            CacheOptions {
                ttl: Duration::from_millis(100),
                negative_ttl: Duration::from_millis(30),
                max_entries: 3,
            },
        );
        for _ in 0..3 {
            assert!(cache.credentials("alice", "x").unwrap().is_some());
            assert!(cache.credentials("nobody", "x").unwrap().is_none());
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2, "one miss each");
        std::thread::sleep(Duration::from_millis(50));
        // The negative entry expired, the positive one not.
        cache.credentials("alice", "x").unwrap();
        cache.credentials("nobody", "x").unwrap();
        assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
        // Errors are not cached.
        backend.fail.store(true, Ordering::SeqCst);
        assert!(cache.credentials("carol", "x").is_err());
        assert!(cache.credentials("carol", "x").is_err());
        assert_eq!(backend.calls.load(Ordering::SeqCst), 5);
        // Still served from the cache while the backend is down.
        assert!(cache.credentials("alice", "x").unwrap().is_some());
        backend.fail.store(false, Ordering::SeqCst);
        // Bounded.
        for i in 0..10 {
            cache.credentials(&format!("u{i}"), "x").unwrap();
        }
        assert!(cache.len() <= 3);
        cache.invalidate("u9", "x");
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn fallback_asks_the_file_first() {
        let backend = slow();
        let both = Fallback {
            first: MemorySubscribers::from_credentials(parse_subscribers("bob,x,pw").unwrap()),
            then: backend.clone(),
        };
        assert!(both.credentials("bob", "x").unwrap().is_some());
        assert_eq!(backend.calls.load(Ordering::SeqCst), 0);
        assert!(both.credentials("alice", "x").unwrap().is_some());
        assert!(both.credentials("eve", "x").unwrap().is_none());
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    }

    /// What `with_credentials` lent, copied out.
    fn lent(s: &dyn SubscriberStore, user: &str) -> Result<Option<Credentials>, StoreError> {
        let mut out = None;
        s.with_credentials(user, "x", &mut |c| out = c.cloned())?;
        Ok(out)
    }

    #[test]
    fn with_credentials_lends_what_credentials_returns() {
        let backend = slow();
        let both: Arc<dyn SubscriberStore> = Arc::new(Fallback {
            first: MemorySubscribers::from_credentials(parse_subscribers("bob,x,pw").unwrap()),
            then: Cached::new(backend.clone(), CacheOptions::default()),
        });
        for user in ["bob", "alice", "eve"] {
            assert_eq!(lent(&both, user), both.credentials(user, "x"), "{user}");
        }
        assert_eq!(lent(&both, "bob").unwrap().unwrap().username, "bob");
        assert_eq!(lent(&both, "alice").unwrap().unwrap().username, "alice");
        assert_eq!(lent(&both, "eve"), Ok(None));
        // The file answered for bob; the backend saw alice and eve once each (both
        // answers, found and not found, are cached).
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
        backend.fail.store(true, Ordering::SeqCst);
        assert!(lent(&both, "carol").is_err());
        assert!(lent(&both, "bob").unwrap().is_some());
    }
}
