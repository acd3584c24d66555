//! In-memory, thread-local stand-ins for the host capabilities. Each `cargo test` test
//! runs on its own thread, so each test starts with an empty store and log.

use std::cell::RefCell;
use std::collections::HashMap;

use super::LogLine;
use crate::log::Level;
use crate::KvError;

/// Mock wall clock at start: 2023-11-14T22:13:20Z, fixed so tests are repeatable.
pub(crate) const START_MS: u64 = 1_700_000_000_000;
/// Mock monotonic clock at start.
pub(crate) const START_NS: u64 = 1_000_000_000;

pub(crate) struct State {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) store: HashMap<String, Entry>,
    pub(crate) now_ms: u64,
    pub(crate) mono_ns: u64,
    pub(crate) kv_error: Option<KvError>,
    pub(crate) load: crate::system::Load,
    /// Subscriber store: (username, domain) -> credentials.
    pub(crate) subscribers: HashMap<(String, String), crate::subscribers::Credentials>,
    pub(crate) subscribers_error: Option<KvError>,
    /// Connection id -> bound identity.
    pub(crate) connections: HashMap<u64, String>,
}

pub(crate) struct Entry {
    value: Vec<u8>,
    expires_ms: Option<u64>,
}

impl State {
    fn new() -> Self {
        Self {
            logs: Vec::new(),
            store: HashMap::new(),
            now_ms: START_MS,
            mono_ns: START_NS,
            kv_error: None,
            load: crate::system::Load::default(),
            subscribers: HashMap::new(),
            subscribers_error: None,
            connections: HashMap::new(),
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::new());
}

pub(crate) fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

pub(crate) fn reset() {
    with(|s| *s = State::new());
}

pub(crate) fn log(level: Level, message: &str) {
    // Shown by libtest for failing tests only (output capture).
    eprintln!("[weir {level:?}] {message}");
    with(|s| {
        s.logs.push(LogLine {
            level,
            message: message.to_string(),
        })
    });
}

/// Same signatures as the generated `weir:sip/kv` imports.
pub(crate) mod kv {
    use super::{with, Entry, State};
    use crate::__private::bindings::weir::sip::kv::KvError as WitKvError;
    use crate::KvError;

    type KvResult<T> = Result<T, WitKvError>;

    fn live<'s>(s: &'s mut State, key: &str) -> Option<&'s mut Entry> {
        let now = s.now_ms;
        if s.store
            .get(key)
            .is_some_and(|e| e.expires_ms.is_some_and(|t| t <= now))
        {
            s.store.remove(key);
        }
        s.store.get_mut(key)
    }

    fn failure(s: &State) -> KvResult<()> {
        match &s.kv_error {
            None => Ok(()),
            Some(KvError::Limit(why)) => Err(WitKvError::Limit(why.clone())),
            Some(KvError::NotANumber) => Err(WitKvError::NotANumber),
            Some(KvError::Backend(why)) => Err(WitKvError::Backend(why.clone())),
        }
    }

    fn expiry(s: &State, ttl_ms: Option<u64>) -> Option<u64> {
        ttl_ms.map(|ttl| s.now_ms.saturating_add(ttl))
    }

    pub(crate) fn get(key: &str) -> KvResult<Option<Vec<u8>>> {
        with(|s| {
            failure(s)?;
            Ok(live(s, key).map(|e| e.value.clone()))
        })
    }

    pub(crate) fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> KvResult<()> {
        with(|s| {
            failure(s)?;
            let expires_ms = expiry(s, ttl_ms);
            s.store.insert(
                key.to_string(),
                Entry {
                    value: value.to_vec(),
                    expires_ms,
                },
            );
            Ok(())
        })
    }

    pub(crate) fn incr(key: &str, delta: i64, ttl_ms: Option<u64>) -> KvResult<i64> {
        with(|s| {
            failure(s)?;
            let expires_ms = expiry(s, ttl_ms);
            let entry = match live(s, key) {
                Some(entry) => entry,
                None => s.store.entry(key.to_string()).or_insert(Entry {
                    value: b"0".to_vec(),
                    expires_ms,
                }),
            };
            let current = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or(WitKvError::NotANumber)?;
            let next = current
                .checked_add(delta)
                .ok_or_else(|| WitKvError::Limit("integer overflow".into()))?;
            entry.value = next.to_string().into_bytes();
            Ok(next)
        })
    }

    pub(crate) fn delete(key: &str) -> KvResult<bool> {
        with(|s| {
            failure(s)?;
            let existed = live(s, key).is_some();
            s.store.remove(key);
            Ok(existed)
        })
    }
}

/// Same signatures as the generated `weir:sip/clock` imports.
pub(crate) mod clock {
    use super::with;

    pub(crate) fn now_ms() -> u64 {
        with(|s| s.now_ms)
    }

    pub(crate) fn monotonic_ns() -> u64 {
        with(|s| s.mono_ns)
    }
}

/// Same signatures as the generated `weir:sip/system` imports.
pub(crate) mod system {
    use super::with;
    use crate::__private::bindings::weir::sip::system::Load as WitLoad;

    pub(crate) fn get_load() -> WitLoad {
        with(|s| WitLoad {
            cpu: s.load.cpu,
            rx_queue_bytes: s.load.rx_queue_bytes,
        })
    }
}

/// Same signatures as the generated `weir:sip/subscribers` imports.
pub(crate) mod subscribers {
    use super::with;
    use crate::__private::bindings::weir::sip::kv::KvError as WitKvError;
    use crate::__private::bindings::weir::sip::subscribers::Credentials as WitCredentials;
    use crate::KvError;

    /// As the host: longest username or domain passed to the store.
    const MAX_FIELD: usize = 512;

    pub(crate) fn lookup(
        username: &str,
        domain: &str,
    ) -> Result<Option<WitCredentials>, WitKvError> {
        with(|s| {
            match &s.subscribers_error {
                None => {}
                Some(KvError::Limit(why)) => return Err(WitKvError::Limit(why.clone())),
                Some(KvError::NotANumber) => return Err(WitKvError::NotANumber),
                Some(KvError::Backend(why)) => return Err(WitKvError::Backend(why.clone())),
            }
            if username.len() > MAX_FIELD || domain.len() > MAX_FIELD {
                return Err(WitKvError::Limit(format!(
                    "username or domain longer than {MAX_FIELD}"
                )));
            }
            Ok(s.subscribers
                .get(&(username.to_string(), domain.to_string()))
                .cloned()
                .map(WitCredentials::from))
        })
    }
}

/// Same signatures as the generated `weir:sip/connections` imports.
pub(crate) mod connections {
    use super::with;
    use crate::connections::MAX_IDENTITY;

    pub(crate) fn identity(id: u64) -> Option<String> {
        with(|s| s.connections.get(&id).cloned())
    }

    pub(crate) fn bind(id: u64, identity: &str) -> bool {
        if id == 0 || identity.is_empty() || identity.len() > MAX_IDENTITY {
            return false;
        }
        with(|s| s.connections.insert(id, identity.to_string()));
        true
    }
}
