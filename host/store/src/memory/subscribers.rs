//! [`MemorySubscribers`]: subscriber credentials held in memory (what the credentials
//! file loads into).

use crate::PeerMap;
use std::sync::{PoisonError, RwLock};

use crate::{Credentials, StoreError, SubscriberStore};

/// Subscriber credentials in a hash map keyed by `(username, domain)`: by domain, then
/// by username, so that a lookup builds no key.
///
/// Unbounded by itself: it holds what its owner puts in (a file it loaded, whose size
/// the loader bounds).
#[derive(Default)]
pub struct MemorySubscribers {
    map: RwLock<Domains>,
}

/// Domain -> username -> credentials. No domain is left with no username.
type Domains = PeerMap<String, PeerMap<String, Credentials>>;

fn insert(map: &mut Domains, c: Credentials) {
    map.entry(c.domain.clone())
        .or_default()
        .insert(c.username.clone(), c);
}

impl MemorySubscribers {
    /// An empty store.
    pub fn new() -> MemorySubscribers {
        MemorySubscribers::default()
    }

    /// A store holding `creds` (a later duplicate replaces an earlier one).
    pub fn from_credentials(creds: impl IntoIterator<Item = Credentials>) -> MemorySubscribers {
        let s = MemorySubscribers::new();
        for c in creds {
            s.put(c);
        }
        s
    }

    /// Adds or replaces the credentials of `(c.username, c.domain)`.
    pub fn put(&self, c: Credentials) {
        insert(
            &mut self.map.write().unwrap_or_else(PoisonError::into_inner),
            c,
        );
    }

    /// Removes a subscriber; true if it existed.
    pub fn remove(&self, username: &str, domain: &str) -> bool {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let Some(users) = map.get_mut(domain) else {
            return false;
        };
        let removed = users.remove(username).is_some();
        if users.is_empty() {
            map.remove(domain);
        }
        removed
    }

    /// Replaces every subscriber at once (a reload of the file).
    pub fn replace_all(&self, creds: impl IntoIterator<Item = Credentials>) {
        let mut map = Domains::default();
        for c in creds {
            insert(&mut map, c);
        }
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = map;
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(PeerMap::len)
            .sum()
    }

    /// True when there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SubscriberStore for MemorySubscribers {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        Ok(self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain)
            .and_then(|users| users.get(username))
            .cloned())
    }

    fn with_credentials(
        &self,
        username: &str,
        domain: &str,
        f: &mut dyn FnMut(Option<&Credentials>),
    ) -> Result<(), StoreError> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        f(map.get(domain).and_then(|users| users.get(username)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(username: &str, domain: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            domain: domain.into(),
            password: Some(password.into()),
            ha1: None,
            ha1_sha256: None,
        }
    }

    fn password(s: &MemorySubscribers, username: &str, domain: &str) -> Option<String> {
        s.credentials(username, domain)
            .unwrap()
            .and_then(|c| c.password)
    }

    #[test]
    fn keyed_by_username_and_domain() {
        let s = MemorySubscribers::from_credentials([
            creds("alice", "a.example", "1"),
            creds("alice", "b.example", "2"),
            creds("bob", "a.example", "3"),
            creds("alice", "a.example", "4"),
        ]);
        assert_eq!(s.len(), 3);
        assert_eq!(password(&s, "alice", "a.example").as_deref(), Some("4"));
        assert_eq!(password(&s, "alice", "b.example").as_deref(), Some("2"));
        assert_eq!(password(&s, "bob", "a.example").as_deref(), Some("3"));
        // Exact match on both: no case folding, no cross-domain answer.
        assert_eq!(password(&s, "bob", "b.example"), None);
        assert_eq!(password(&s, "Alice", "a.example"), None);
        assert_eq!(password(&s, "alice", "A.example"), None);

        assert!(s.remove("alice", "b.example"));
        assert!(!s.remove("alice", "b.example"));
        assert!(!s.remove("carol", "a.example"));
        assert_eq!(s.len(), 2);
        assert_eq!(password(&s, "alice", "b.example"), None);
        s.put(creds("alice", "b.example", "5"));
        assert_eq!(password(&s, "alice", "b.example").as_deref(), Some("5"));

        s.replace_all([creds("carol", "c.example", "6")]);
        assert_eq!(s.len(), 1);
        assert_eq!(password(&s, "alice", "a.example"), None);
        assert_eq!(password(&s, "carol", "c.example").as_deref(), Some("6"));
        assert!(s.remove("carol", "c.example"));
        assert!(s.is_empty());
    }
}
