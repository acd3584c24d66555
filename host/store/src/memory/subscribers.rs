//! [`MemorySubscribers`]: subscriber credentials held in memory (what the credentials
//! file loads into).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::{Credentials, StoreError, SubscriberStore};

/// Subscriber credentials in a hash map keyed by `(username, domain)`.
///
/// Unbounded by itself: it holds what its owner puts in (a file it loaded, whose size
/// the loader bounds).
#[derive(Default)]
pub struct MemorySubscribers {
    map: RwLock<HashMap<(String, String), Credentials>>,
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
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((c.username.clone(), c.domain.clone()), c);
    }

    /// Removes a subscriber; true if it existed.
    pub fn remove(&self, username: &str, domain: &str) -> bool {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(username.to_owned(), domain.to_owned()))
            .is_some()
    }

    /// Replaces every subscriber at once (a reload of the file).
    pub fn replace_all(&self, creds: impl IntoIterator<Item = Credentials>) {
        let map = creds
            .into_iter()
            .map(|c| ((c.username.clone(), c.domain.clone()), c))
            .collect();
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = map;
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
            .get(&(username.to_owned(), domain.to_owned()))
            .cloned())
    }
}
