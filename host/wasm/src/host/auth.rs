//! `weir:sip/subscribers` and `weir:sip/connections`: what a digest-authentication
//! module needs from the host.
//!
//! - `subscribers.lookup` asks the runtime's [`SubscriberStore`] (set with
//!   [`Runtime::set_subscribers`](crate::Runtime::set_subscribers); an empty store until
//!   then). The store is shared by every module and may be swapped at any time, also
//!   while modules are loaded.
//! - `subscribers.ha1` asks the same store and answers with the HA1 alone, as raw
//!   bytes in a fixed-size record: computed here from a stored password, or decoded
//!   from a stored HA1. Nothing is allocated in the guest for the answer, and the
//!   password never enters it.
//! - `connections.identity` / `bind` read and write the runtime's
//!   [`ConnectionIdentities`]: a bounded table from stream-connection id (the
//!   `connection-id` of a message, [`CallContext::connection`](crate::CallContext)) to
//!   the identity a module authenticated on it. The oldest-used entry is forgotten when
//!   the table is full. Connection ids are never reused, so an entry left behind by a
//!   closed connection is only wasted space, never a wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use md5::Md5;
use sha2::{Digest, Sha256};
use wasmtime::component::{Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut};
use weir_store::{Credentials, MemorySubscribers, StoreError, SubscriberStore};

use super::Ctx;
use crate::bindings::weir::sip::kv::KvError as WitKvError;
use crate::bindings::weir::sip::subscribers::{
    Credentials as WitCredentials, DigestAlgorithm, Ha1Bytes, Ha1Lookup,
};

/// Longest username or domain the host passes to the subscriber store.
pub(crate) const MAX_SUBSCRIBER_FIELD: usize = 512;
/// Longest identity a connection may be bound to.
pub const MAX_IDENTITY: usize = 512;
/// Default capacity of [`ConnectionIdentities`].
pub const DEFAULT_CONNECTION_IDENTITIES: usize = 65_536;

// === AuthState ===

/// The runtime's subscriber store and connection table, shared by every store.
pub(crate) struct AuthState {
    subscribers: RwLock<Arc<dyn SubscriberStore>>,
    pub(crate) connections: Arc<ConnectionIdentities>,
}

impl AuthState {
    pub(crate) fn new() -> AuthState {
        AuthState {
            subscribers: RwLock::new(Arc::new(MemorySubscribers::new())),
            connections: Arc::new(ConnectionIdentities::new(DEFAULT_CONNECTION_IDENTITIES)),
        }
    }

    pub(crate) fn set_subscribers(&self, store: Arc<dyn SubscriberStore>) {
        *self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner) = store;
    }

    /// The current store (cloned out so a slow lookup holds no lock).
    pub(crate) fn subscribers(&self) -> Arc<dyn SubscriberStore> {
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

// === ConnectionIdentities ===

/// Identities bound to stream connections, bounded: when full, binding a new
/// connection forgets the least recently used one (bound or looked up).
///
/// ```
/// use weir_wasm::ConnectionIdentities;
///
/// let table = ConnectionIdentities::new(2);
/// assert!(table.bind(7, "alice@example.com"));
/// assert!(!table.bind(0, "bob@example.com")); // 0 is UDP: nothing to bind to
/// assert_eq!(table.identity(7).as_deref(), Some("alice@example.com"));
/// ```
#[derive(Debug)]
pub struct ConnectionIdentities {
    max: usize,
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Connection id -> (identity, last use stamp).
    by_id: HashMap<u64, (Arc<str>, u64)>,
    /// Last use stamp -> connection id, oldest first.
    by_use: BTreeMap<u64, u64>,
    clock: u64,
}

impl Table {
    fn touch(&mut self, id: u64) -> Option<Arc<str>> {
        self.clock += 1;
        let stamp = self.clock;
        let (identity, used) = self.by_id.get_mut(&id)?;
        self.by_use.remove(used);
        *used = stamp;
        self.by_use.insert(stamp, id);
        Some(identity.clone())
    }
}

impl ConnectionIdentities {
    /// An empty table holding at most `max` bindings (at least 1).
    pub fn new(max: usize) -> ConnectionIdentities {
        ConnectionIdentities {
            max: max.max(1),
            inner: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The identity bound to connection `id`, if any (counts as a use).
    pub fn identity(&self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        self.table().touch(id).map(|s| s.to_string())
    }

    /// Bind `identity` to connection `id`, replacing an earlier binding. False, binding
    /// nothing, if `id` is 0 (UDP) or `identity` is empty or longer than
    /// [`MAX_IDENTITY`] bytes.
    pub fn bind(&self, id: u64, identity: &str) -> bool {
        if id == 0 || identity.is_empty() || identity.len() > MAX_IDENTITY {
            return false;
        }
        let mut t = self.table();
        if let Some((old, used)) = t.by_id.remove(&id) {
            t.by_use.remove(&used);
            drop(old);
        }
        while t.by_id.len() >= self.max {
            let Some((_, oldest)) = t.by_use.pop_first() else {
                break;
            };
            t.by_id.remove(&oldest);
        }
        t.clock += 1;
        let stamp = t.clock;
        t.by_id.insert(id, (Arc::from(identity), stamp));
        t.by_use.insert(stamp, id);
        true
    }

    /// Forget connection `id` (e.g. when it closes); true if it was bound.
    pub fn forget(&self, id: u64) -> bool {
        let mut t = self.table();
        match t.by_id.remove(&id) {
            Some((_, used)) => {
                t.by_use.remove(&used);
                true
            }
            None => false,
        }
    }

    /// How many connections are bound now.
    pub fn len(&self) -> usize {
        self.table().by_id.len()
    }

    /// True if no connection is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most bindings the table keeps.
    pub fn capacity(&self) -> usize {
        self.max
    }
}

// === Linker ===

fn to_wit(e: StoreError) -> WitKvError {
    match e {
        StoreError::Backend(why) => WitKvError::Backend(why),
        StoreError::Conflict(what) => WitKvError::Backend(format!("update conflict on {what}")),
        other => WitKvError::Limit(other.to_string()),
    }
}

fn check_field(what: &str, value: &str) -> Result<(), WitKvError> {
    if value.len() > MAX_SUBSCRIBER_FIELD {
        return Err(WitKvError::Limit(format!(
            "{what} of {} bytes is longer than {MAX_SUBSCRIBER_FIELD}",
            value.len()
        )));
    }
    Ok(())
}

// === HA1 ===

/// `H(parts joined by ':')` into `out` (the hash's length).
fn hash_joined<D: Digest>(parts: [&str; 3], out: &mut [u8]) {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    let h = d.finalize();
    if h.len() == out.len() {
        out.copy_from_slice(&h);
    }
}

/// Decodes `hex` (either case) into `out`; false unless it is exactly `2 * out.len()`
/// hex digits.
fn unhex(hex: &str, out: &mut [u8]) -> bool {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 2 * out.len() {
        return false;
    }
    for (pair, o) in hex.as_bytes().chunks_exact(2).zip(out.iter_mut()) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return false,
        }
    }
    true
}

/// The HA1 of `c` for `alg`: `H(username:domain:password)` over the names the module
/// asked with when a password is stored, else the stored HA1 of that algorithm.
pub(crate) fn ha1_of(
    c: &Credentials,
    username: &str,
    domain: &str,
    alg: DigestAlgorithm,
) -> Ha1Lookup {
    let mut raw = [0u8; 32];
    let (len, stored) = match alg {
        DigestAlgorithm::Md5 => (16, c.ha1.as_deref()),
        DigestAlgorithm::Sha256 => (32, c.ha1_sha256.as_deref()),
    };
    let out = &mut raw[..len];
    match (&c.password, stored) {
        (Some(pw), _) => match alg {
            DigestAlgorithm::Md5 => hash_joined::<Md5>([username, domain, pw], out),
            DigestAlgorithm::Sha256 => hash_joined::<Sha256>([username, domain, pw], out),
        },
        (None, Some(hex)) if unhex(hex, out) => {}
        (None, _) => return Ha1Lookup::NoHa1,
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    Ha1Lookup::Found(Ha1Bytes {
        w0: word(0),
        w1: word(1),
        w2: word(2),
        w3: word(3),
    })
}

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:sip/subscribers@0.1.0")?;
    i.func_wrap(
        "lookup",
        |s: StoreContextMut<'_, Ctx>, (username, domain): (WasmStr, WasmStr)| {
            // `to_str` borrows the guest's memory: nothing is copied before the
            // lengths are checked.
            let user = username.to_str(s.as_context())?;
            let dom = domain.to_str(s.as_context())?;
            let found = check_field("username", &user)
                .and_then(|()| check_field("domain", &dom))
                .and_then(|()| {
                    let store = s.data().auth.subscribers();
                    store.credentials(&user, &dom).map_err(to_wit)
                });
            Ok((found.map(|c| {
                c.map(|c| WitCredentials {
                    username: c.username,
                    domain: c.domain,
                    password: c.password,
                    ha1: c.ha1,
                    ha1_sha256: c.ha1_sha256,
                })
            }),))
        },
    )?;

    i.func_wrap(
        "ha1",
        |s: StoreContextMut<'_, Ctx>,
         (username, domain, alg): (WasmStr, WasmStr, DigestAlgorithm)| {
            let user = username.to_str(s.as_context())?;
            let dom = domain.to_str(s.as_context())?;
            let found = check_field("username", &user)
                .and_then(|()| check_field("domain", &dom))
                .and_then(|()| {
                    let mut answer = Ha1Lookup::Unknown;
                    s.data()
                        .auth
                        .subscribers()
                        .with_credentials(&user, &dom, &mut |c| {
                            if let Some(c) = c {
                                answer = ha1_of(c, &user, &dom, alg);
                            }
                        })
                        .map_err(to_wit)?;
                    Ok(answer)
                });
            Ok((found,))
        },
    )?;

    let mut i = linker.instance("weir:sip/connections@0.1.0")?;
    i.func_wrap("identity", |s: StoreContextMut<'_, Ctx>, (id,): (u64,)| {
        Ok((s.data().auth.connections.identity(id),))
    })?;
    i.func_wrap(
        "bind",
        |s: StoreContextMut<'_, Ctx>, (id, identity): (u64, WasmStr)| {
            let identity = identity.to_str(s.as_context())?;
            Ok((s.data().auth.connections.bind(id, &identity),))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_reads_back() {
        let t = ConnectionIdentities::new(4);
        assert!(t.is_empty());
        assert_eq!(t.identity(1), None);
        assert!(t.bind(1, "alice@example.com"));
        assert_eq!(t.identity(1).as_deref(), Some("alice@example.com"));
        assert!(t.bind(1, "bob@example.com"));
        assert_eq!(t.identity(1).as_deref(), Some("bob@example.com"));
        assert_eq!(t.len(), 1);
        assert!(t.forget(1));
        assert!(!t.forget(1));
        assert_eq!(t.identity(1), None);
    }

    #[test]
    fn refuses_udp_and_bad_identities() {
        let t = ConnectionIdentities::new(4);
        assert!(!t.bind(0, "alice@example.com"));
        assert!(!t.bind(3, ""));
        assert!(!t.bind(3, &"a".repeat(MAX_IDENTITY + 1)));
        assert!(t.bind(3, &"a".repeat(MAX_IDENTITY)));
        assert_eq!(t.identity(0), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn forgets_the_least_recently_used_when_full() {
        let t = ConnectionIdentities::new(3);
        for id in 1..=3 {
            assert!(t.bind(id, &format!("u{id}@d")));
        }
        // 1 is used again, so 2 is now the oldest.
        assert!(t.identity(1).is_some());
        assert!(t.bind(4, "u4@d"));
        assert_eq!(t.len(), 3);
        assert_eq!(t.identity(2), None);
        assert!(t.identity(1).is_some());
        assert!(t.identity(3).is_some());
        assert!(t.identity(4).is_some());
        // Far more connections than the capacity: the table stays bounded.
        for id in 10..10_000 {
            t.bind(id, "x@d");
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.table().by_use.len(), 3);
        assert_eq!(t.capacity(), 3);
    }

    #[test]
    fn subscriber_store_can_be_swapped() {
        let state = AuthState::new();
        assert_eq!(state.subscribers().credentials("alice", "d"), Ok(None));
        let alice = Credentials {
            username: "alice".into(),
            domain: "d".into(),
            password: Some("pw".into()),
            ha1: None,
            ha1_sha256: None,
        };
        state.set_subscribers(Arc::new(MemorySubscribers::from_credentials([
            alice.clone()
        ])));
        assert_eq!(
            state.subscribers().credentials("alice", "d"),
            Ok(Some(alice))
        );
    }

    fn bytes(found: Ha1Lookup) -> Vec<u8> {
        let Ha1Lookup::Found(h) = found else {
            panic!("no HA1: {found:?}");
        };
        [h.w0, h.w1, h.w2, h.w3]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ha1_from_password_or_stored_hash() {
        // RFC 2617 §3.5's user: HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life").
        let md5 = "939e7578ed9e3c518a452acee763bce9";
        let pw = Credentials {
            username: "Mufasa".into(),
            domain: "testrealm@host.com".into(),
            password: Some("Circle Of Life".into()),
            ha1: Some("00".repeat(16)),
            ha1_sha256: None,
        };
        let got = bytes(ha1_of(
            &pw,
            "Mufasa",
            "testrealm@host.com",
            DigestAlgorithm::Md5,
        ));
        assert_eq!(hex(&got[..16]), md5, "the password wins over a stored HA1");
        assert_eq!(got[16..], [0; 16]);
        // RFC 7616 §3.9.1: SHA-256("Mufasa:http-auth@example.org:Circle of Life").
        let sha = Credentials {
            domain: "http-auth@example.org".into(),
            password: Some("Circle of Life".into()),
            ..pw.clone()
        };
        let got = bytes(ha1_of(
            &sha,
            "Mufasa",
            "http-auth@example.org",
            DigestAlgorithm::Sha256,
        ));
        assert_eq!(
            hex(&got),
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
        // Stored HA1s, either case; none of the algorithm, or not hex of its length.
        let stored = Credentials {
            password: None,
            ha1: Some(md5.to_ascii_uppercase()),
            ha1_sha256: Some("ab".repeat(31)),
            ..pw.clone()
        };
        let got = bytes(ha1_of(
            &stored,
            "Mufasa",
            "testrealm@host.com",
            DigestAlgorithm::Md5,
        ));
        assert_eq!(hex(&got[..16]), md5);
        assert_eq!(
            ha1_of(
                &stored,
                "Mufasa",
                "testrealm@host.com",
                DigestAlgorithm::Sha256
            ),
            Ha1Lookup::NoHa1
        );
        let bad = Credentials {
            ha1: Some(format!("{}zz", &md5[..30])),
            ..stored.clone()
        };
        assert_eq!(
            ha1_of(&bad, "Mufasa", "testrealm@host.com", DigestAlgorithm::Md5),
            Ha1Lookup::NoHa1
        );
        let none = Credentials {
            ha1: None,
            ha1_sha256: None,
            ..stored
        };
        assert_eq!(
            ha1_of(&none, "Mufasa", "testrealm@host.com", DigestAlgorithm::Md5),
            Ha1Lookup::NoHa1
        );
    }

    #[test]
    fn store_errors_map_to_kv_errors() {
        assert_eq!(
            to_wit(StoreError::Backend("down".into())),
            WitKvError::Backend("down".into())
        );
        assert!(matches!(
            to_wit(StoreError::KeyTooLarge { len: 2, max: 1 }),
            WitKvError::Limit(_)
        ));
        assert!(check_field("username", &"u".repeat(MAX_SUBSCRIBER_FIELD + 1)).is_err());
        assert!(check_field("username", "alice").is_ok());
    }
}
