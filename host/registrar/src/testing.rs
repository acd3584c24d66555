//! Test doubles: a simple in-memory `LocationStore`, a failing one, a subscriber list.

use std::collections::BTreeMap;
use std::sync::Mutex;

use weir_store::{Binding, Credentials, LocationStore, StoreError, SubscriberStore};

/// In-memory location store (one mutex, BTreeMap of AOR -> bindings).
#[derive(Default)]
pub struct MemStore {
    pub map: Mutex<BTreeMap<String, Vec<Binding>>>,
    /// Calls `f` twice per update (the first result discarded) to check that the
    /// registrar's closure does not accumulate state across retries.
    pub retry_once: bool,
}

fn live(v: &[Binding], now: u64) -> Vec<Binding> {
    v.iter()
        .filter(|b| b.expires_at_ms > now)
        .cloned()
        .collect()
}

impl LocationStore for MemStore {
    fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        let m = self.map.lock().unwrap();
        Ok(m.get(aor).map(|v| live(v, now_ms)).unwrap_or_default())
    }

    fn update(
        &self,
        aor: &str,
        now_ms: u64,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> bool,
    ) -> Result<Vec<Binding>, StoreError> {
        let mut m = self.map.lock().unwrap();
        let current = m.get(aor).map(|v| live(v, now_ms)).unwrap_or_default();
        if self.retry_once {
            let mut scratch = current.clone();
            let _ = f(&mut scratch);
        }
        let mut cur = current;
        if f(&mut cur) {
            if cur.is_empty() {
                m.remove(aor);
            } else {
                m.insert(aor.to_string(), cur);
            }
        }
        Ok(m.get(aor).map(|v| live(v, now_ms)).unwrap_or_default())
    }

    fn purge_expired(&self, now_ms: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        let mut m = self.map.lock().unwrap();
        let mut out = Vec::new();
        for (aor, v) in m.iter_mut() {
            let (dead, keep): (Vec<_>, Vec<_>) =
                v.drain(..).partition(|b| b.expires_at_ms <= now_ms);
            *v = keep;
            out.extend(dead.into_iter().map(|b| (aor.clone(), b)));
        }
        m.retain(|_, v| !v.is_empty());
        Ok(out)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        Ok(self.map.lock().unwrap().len())
    }
}

impl MemStore {
    /// Every stored binding of `aor`, expired ones included.
    pub fn raw(&self, aor: &str) -> Vec<Binding> {
        self.map
            .lock()
            .unwrap()
            .get(aor)
            .cloned()
            .unwrap_or_default()
    }
}

/// A store whose every call fails.
pub struct BrokenStore;

impl LocationStore for BrokenStore {
    fn lookup(&self, _: &str, _: u64) -> Result<Vec<Binding>, StoreError> {
        Err(StoreError::Backend("down".into()))
    }
    fn update(
        &self,
        _: &str,
        _: u64,
        _: &mut dyn FnMut(&mut Vec<Binding>) -> bool,
    ) -> Result<Vec<Binding>, StoreError> {
        Err(StoreError::Backend("down".into()))
    }
    fn purge_expired(&self, _: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        Err(StoreError::Backend("down".into()))
    }
    fn aor_count(&self) -> Result<usize, StoreError> {
        Err(StoreError::Backend("down".into()))
    }
}

/// Subscribers by (user, domain).
pub struct Subs(pub Vec<(String, String)>);

impl SubscriberStore for Subs {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        Ok(self
            .0
            .iter()
            .find(|(u, d)| u == username && d == domain)
            .map(|(u, d)| Credentials {
                username: u.clone(),
                domain: d.clone(),
                password: Some("x".into()),
                ha1: None,
                ha1_sha256: None,
            }))
    }
}
