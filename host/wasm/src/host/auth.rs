//! `weir:sip/subscribers` and `weir:sip/connections`: what a digest-authentication
//! module needs from the host.
//!
//! - `subscribers.lookup` asks the runtime's [`SubscriberStore`] (set with
//!   [`Runtime::set_subscribers`](crate::Runtime::set_subscribers); an empty store until
//!   then). The store is shared by every module and may be swapped at any time, also
//!   while modules are loaded.
//! - `connections.identity` / `bind` read and write the runtime's
//!   [`ConnectionIdentities`]: a bounded table from stream-connection id (the
//!   `connection-id` of a message, [`CallContext::connection`](crate::CallContext)) to
//!   the identity a module authenticated on it. The oldest-used entry is forgotten when
//!   the table is full. Connection ids are never reused, so an entry left behind by a
//!   closed connection is only wasted space, never a wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use wasmtime::component::{Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut};
use weir_store::{MemorySubscribers, StoreError, SubscriberStore};

use super::Ctx;
use crate::bindings::weir::sip::kv::KvError as WitKvError;
use crate::bindings::weir::sip::subscribers::Credentials as WitCredentials;

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
    use weir_store::Credentials;

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
