//! In-memory, thread-local stand-ins for the host capabilities. Each `cargo test` test
//! runs on its own thread, so each test starts with an empty store and log.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use super::LogLine;
use crate::log::Level;
use crate::transactions::State as TxState;
use crate::{BranchTarget, KvError};

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
    /// Running timers in the order started: (name, interval).
    pub(crate) timers: Vec<(String, Duration)>,
    /// The last id given to a SIP or HTTP request (one sequence for both).
    pub(crate) last_id: u64,
    pub(crate) sent: Vec<(u64, crate::requests::Request, String)>,
    pub(crate) requests_error: Option<String>,
    pub(crate) http_sent: Vec<(u64, crate::http::Request, String)>,
    pub(crate) http_allow: Vec<String>,
    pub(crate) http_error: Option<String>,
    pub(crate) tx_states: HashMap<u64, TxState>,
    /// Every branch added (add-branch and append-contacts), in order.
    pub(crate) branches: Vec<(u64, BranchTarget)>,
    pub(crate) appended: Vec<(u64, String, Option<String>)>,
    pub(crate) watched: Vec<u64>,
    /// Location service: AOR -> bindings.
    pub(crate) bindings: HashMap<String, Vec<crate::location::Binding>>,
    pub(crate) location_error: Option<String>,
    /// Granted files: name -> (version, content).
    pub(crate) files: HashMap<String, (u64, Vec<u8>)>,
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
            timers: Vec::new(),
            last_id: 0,
            sent: Vec::new(),
            requests_error: None,
            http_sent: Vec::new(),
            http_allow: Vec::new(),
            http_error: None,
            tx_states: HashMap::new(),
            branches: Vec::new(),
            appended: Vec::new(),
            watched: Vec::new(),
            bindings: HashMap::new(),
            location_error: None,
            files: HashMap::new(),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn tx_state(&self, id: u64) -> TxState {
        self.tx_states.get(&id).copied().unwrap_or(TxState::Gone)
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
    use crate::__private::bindings::weir::sip::subscribers::{
        Credentials as WitCredentials, DigestAlgorithm as WitAlgorithm, Ha1Bytes as WitHa1,
        Ha1Lookup as WitHa1Lookup,
    };
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

    /// As the host: the password's hash over the given names, else the stored HA1.
    pub(crate) fn ha1(
        username: &str,
        domain: &str,
        algorithm: WitAlgorithm,
    ) -> Result<WitHa1Lookup, WitKvError> {
        use md5::Digest as _;
        let Some(c) = lookup(username, domain)? else {
            return Ok(WitHa1Lookup::Unknown);
        };
        let joined = |pw: &str| format!("{username}:{domain}:{pw}");
        let bytes: Vec<u8> = match (algorithm, &c.password, &c.ha1, &c.ha1_sha256) {
            (WitAlgorithm::Md5, Some(pw), _, _) => md5::Md5::digest(joined(pw)).to_vec(),
            (WitAlgorithm::Sha256, Some(pw), _, _) => sha2::Sha256::digest(joined(pw)).to_vec(),
            (WitAlgorithm::Md5, None, Some(hex), _) => unhex(hex, 16),
            (WitAlgorithm::Sha256, None, _, Some(hex)) => unhex(hex, 32),
            _ => Vec::new(),
        };
        if bytes.is_empty() {
            return Ok(WitHa1Lookup::NoHa1);
        }
        let mut raw = [0u8; 32];
        raw[..bytes.len()].copy_from_slice(&bytes);
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        Ok(WitHa1Lookup::Found(WitHa1 {
            w0: word(0),
            w1: word(1),
            w2: word(2),
            w3: word(3),
        }))
    }

    /// `hex` decoded if it is exactly `len` bytes of hex digits (either case), else empty.
    fn unhex(hex: &str, len: usize) -> Vec<u8> {
        if hex.len() != 2 * len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Vec::new();
        }
        (0..len)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
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

/// The host's checks of what a module asks of its services (`host/wasm`), so that a
/// request the host would refuse fails in tests too.
mod checks {
    use crate::__private::bindings::weir::sip::types::Header as WitHeader;
    use crate::names;
    use crate::testing::mem::is_uri;

    /// Longest module tag on a request.
    pub(super) const MAX_TAG: usize = 256;
    /// Most headers on an originated request.
    const MAX_HEADERS: usize = 32;
    /// Largest body of an originated request (SIP or HTTP).
    pub(super) const MAX_BODY: usize = 64 * 1024;
    /// Longest URI, URL or AOR.
    pub(super) const MAX_URI: usize = 2048;
    /// Most Path entries on a branch.
    pub(super) const MAX_PATH: usize = 8;

    pub(super) fn tag(tag: &str) -> Result<(), String> {
        if tag.len() > MAX_TAG {
            return Err(format!("tag longer than {MAX_TAG} bytes"));
        }
        Ok(())
    }

    pub(super) fn token(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    }

    pub(super) fn sip_uri(what: &str, s: &str) -> Result<(), String> {
        if s.len() > MAX_URI {
            return Err(format!("{what} is longer than {MAX_URI} bytes"));
        }
        if !is_uri(s) {
            return Err(format!("{what} `{s}` does not parse"));
        }
        Ok(())
    }

    pub(super) fn headers(list: &[WitHeader]) -> Result<(), String> {
        if list.len() > MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} headers"));
        }
        match list
            .iter()
            .find(|h| !names::is_valid(&h.name) || !names::is_valid_value(&h.value))
        {
            Some(h) => Err(format!("`{}` is not a valid header", h.name)),
            None => Ok(()),
        }
    }

    pub(super) fn body(body: &[u8]) -> Result<(), String> {
        if body.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        Ok(())
    }
}

/// Same signatures as the generated `weir:sip/timers` imports.
pub(crate) mod timers {
    use std::time::Duration;

    use super::with;
    use crate::timers::{MAX_NAME, MAX_TIMERS};

    pub(crate) fn every(name: &str, interval_ms: u32) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(format!("timer names are 1 to {MAX_NAME} bytes"));
        }
        if !(10..=86_400_000).contains(&interval_ms) {
            return Err("interval-ms must be 10 to 86400000".into());
        }
        let interval = Duration::from_millis(u64::from(interval_ms));
        with(|s| {
            if let Some(t) = s.timers.iter_mut().find(|(n, _)| n == name) {
                t.1 = interval;
                return Ok(());
            }
            if s.timers.len() >= MAX_TIMERS {
                return Err(format!("a module has at most {MAX_TIMERS} timers"));
            }
            s.timers.push((name.to_string(), interval));
            Ok(())
        })
    }

    pub(crate) fn cancel(name: &str) -> bool {
        with(|s| {
            let before = s.timers.len();
            s.timers.retain(|(n, _)| n != name);
            s.timers.len() != before
        })
    }
}

/// Same signatures as the generated `weir:sip/requests` imports.
pub(crate) mod requests {
    use super::{checks, with};
    use crate::__private::bindings::weir::sip::requests::OutgoingRequest;
    use crate::names;

    fn check(r: &OutgoingRequest) -> Result<(), String> {
        if !checks::token(&r.method) {
            return Err("the method is not a SIP token".into());
        }
        if matches!(
            r.method.to_ascii_uppercase().as_str(),
            "INVITE" | "ACK" | "CANCEL"
        ) {
            return Err(format!("{} cannot be originated by a module", r.method));
        }
        checks::sip_uri("uri", &r.uri)?;
        if let Some(d) = &r.destination {
            checks::sip_uri("destination", d)?;
        }
        if !(100..=32_000).contains(&r.timeout_ms) {
            return Err("timeout-ms must be 100 to 32000".into());
        }
        checks::body(&r.body)?;
        checks::headers(&r.headers)?;
        if let Some(h) = r.headers.iter().find(|h| {
            ["Via", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"]
                .iter()
                .any(|owned| names::equivalent(owned, &h.name))
        }) {
            return Err(format!("header `{}` is the host's", h.name));
        }
        Ok(())
    }

    pub(crate) fn send(req: &OutgoingRequest, tag: &str) -> Result<u64, String> {
        with(|s| {
            if let Some(e) = &s.requests_error {
                return Err(e.clone());
            }
            checks::tag(tag)?;
            check(req)?;
            let id = s.next_id();
            s.sent.push((id, req.clone().into(), tag.to_string()));
            Ok(id)
        })
    }
}

/// Same signatures as the generated `weir:sip/transactions` imports.
pub(crate) mod transactions {
    use super::{checks, with};
    use crate::__private::bindings::weir::sip::transactions::TxState;
    use crate::__private::bindings::weir::sip::types::BranchTarget as WitBranch;
    use crate::names;
    use crate::transactions::State;

    pub(crate) fn state(id: u64) -> TxState {
        with(|s| s.tx_state(id)).into()
    }

    fn pending(state: State, id: u64) -> Result<(), String> {
        match state {
            State::Pending => Ok(()),
            other => Err(format!(
                "transaction {id} is not pending ({})",
                format!("{other:?}").to_ascii_lowercase()
            )),
        }
    }

    fn check(b: &WitBranch) -> Result<(), String> {
        checks::sip_uri("uri", &b.uri)?;
        if let Some(d) = &b.destination {
            checks::sip_uri("destination", d)?;
        }
        if b.path.len() > checks::MAX_PATH {
            return Err(format!("more than {} path entries", checks::MAX_PATH));
        }
        if b.path
            .iter()
            .any(|p| p.len() > checks::MAX_URI || !names::is_valid_value(p))
        {
            return Err("a path entry is not a valid Route value".into());
        }
        Ok(())
    }

    pub(crate) fn add_branch(id: u64, target: &WitBranch) -> Result<(), String> {
        check(target)?;
        with(|s| {
            pending(s.tx_state(id), id)?;
            s.branches.push((id, target.clone().into()));
            Ok(())
        })
    }

    pub(crate) fn append_contacts(
        id: u64,
        aor: &str,
        contact: Option<&str>,
    ) -> Result<u32, String> {
        if aor.len() > checks::MAX_URI || contact.is_some_and(|c| c.len() > checks::MAX_URI) {
            return Err(format!(
                "aor and contact are at most {} bytes",
                checks::MAX_URI
            ));
        }
        with(|s| {
            pending(s.tx_state(id), id)?;
            if let Some(e) = &s.location_error {
                return Err(e.clone());
            }
            let bindings = s.bindings.get(aor).cloned().unwrap_or_default();
            let mut added = 0u32;
            for b in bindings {
                if contact.is_some_and(|c| c != b.contact) {
                    continue;
                }
                let known = s
                    .branches
                    .iter()
                    .any(|(tx, t)| *tx == id && t.uri == b.contact);
                if !known {
                    s.branches.push((id, b.to_branch()));
                    added += 1;
                }
            }
            s.appended
                .push((id, aor.to_string(), contact.map(str::to_string)));
            Ok(added)
        })
    }

    pub(crate) fn watch(id: u64) -> bool {
        with(|s| {
            if s.tx_state(id) == State::Gone {
                return false;
            }
            if !s.watched.contains(&id) {
                s.watched.push(id);
            }
            true
        })
    }
}

/// Same signatures as the generated `weir:sip/location` imports.
pub(crate) mod location {
    use super::{checks, with};
    use crate::__private::bindings::weir::sip::location::Binding as WitBinding;

    pub(crate) fn lookup(aor: &str) -> Result<Vec<WitBinding>, String> {
        if aor.len() > checks::MAX_URI {
            return Err(format!("aor longer than {} bytes", checks::MAX_URI));
        }
        with(|s| {
            if let Some(e) = &s.location_error {
                return Err(e.clone());
            }
            Ok(s.bindings
                .get(aor)
                .map(|list| list.iter().cloned().map(WitBinding::from).collect())
                .unwrap_or_default())
        })
    }
}

/// Same signatures as the generated `weir:sip/http` imports.
pub(crate) mod http {
    use super::{checks, with};
    use crate::__private::bindings::weir::sip::http::HttpRequest;

    fn check(r: &HttpRequest) -> Result<(), String> {
        if !checks::token(&r.method) {
            return Err("the method is not an HTTP token".into());
        }
        if r.url.len() > checks::MAX_URI {
            return Err(format!("url is longer than {} bytes", checks::MAX_URI));
        }
        if !(100..=60_000).contains(&r.timeout_ms) {
            return Err("timeout-ms must be 100 to 60000".into());
        }
        checks::body(&r.body)?;
        checks::headers(&r.headers)
    }

    pub(crate) fn send(req: &HttpRequest, tag: &str) -> Result<u64, String> {
        with(|s| {
            if !s.http_allow.iter().any(|p| req.url.starts_with(p.as_str())) {
                return Err(format!(
                    "`{}` is not granted to this module (http_allow)",
                    req.url
                ));
            }
            if let Some(e) = &s.http_error {
                return Err(e.clone());
            }
            checks::tag(tag)?;
            check(req)?;
            let id = s.next_id();
            s.http_sent.push((id, req.clone().into(), tag.to_string()));
            Ok(id)
        })
    }
}

/// Same signatures as the generated `weir:sip/files` imports.
pub(crate) mod files {
    use super::with;
    use crate::__private::bindings::weir::sip::files::File;

    pub(crate) fn read(name: &str) -> Result<File, String> {
        with(|s| match s.files.get(name) {
            Some((version, content)) => Ok(File {
                version: *version,
                content: content.clone(),
            }),
            None => Err(format!("no file is granted as `{name}`")),
        })
    }

    pub(crate) fn version(name: &str) -> Option<u64> {
        with(|s| s.files.get(name).map(|(v, _)| *v))
    }
}
