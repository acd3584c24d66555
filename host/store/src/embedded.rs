//! The embedded store: every kind of state in memory, optionally persisted to a local
//! directory with [fjall](https://docs.rs/fjall) (ADR 0006).
//!
//! Reads are served from memory. A write goes to disk first (fjall's journal, flushed
//! to the OS before `insert` returns, and `fdatasync`ed when `fsync` is on), then to
//! memory, all under the lock of what it changes: memory never shows a write that is
//! not durable, and a call that returned `Ok` survives `kill -9` (and, with `fsync`,
//! power loss). With `fsync`, concurrent writers share `fdatasync` calls (group
//! commit: one leader syncs everything journaled so far while the others wait).
//!
//! On disk (three fjall keyspaces):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `kv` | `u16 BE len(namespace)`, namespace, key | `u64 BE expiry ms since epoch (0 = none)`, value |
//! | `loc` | AOR | JSON array of [`Binding`] |
//! | `sub` | `u16 BE len(username)`, username, domain | JSON [`Credentials`] |

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::memory::kv::KvJournal;
use crate::PeerMap;
use crate::{
    Binding, Credentials, KvLimits, KvStore, LocationStore, MemoryKv, StoreError, SubscriberStore,
};

/// How an [`Embedded`] store is set up.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Directory to persist to (created if missing); `None` keeps everything in memory
    /// only. One process at a time may open a directory.
    pub path: Option<PathBuf>,
    /// `fdatasync` every acknowledged write (power-loss durability). Without it a write
    /// that returned `Ok` is in the OS page cache: it survives `kill -9` of the
    /// process, not a crash of the machine.
    pub fsync: bool,
    /// Persist the key-value store too (htable with persistence). Location bindings
    /// and subscribers always persist when there is a path.
    pub persist_kv: bool,
    /// Bounds of the key-value store.
    pub kv_limits: KvLimits,
    /// Most AORs with stored bindings; more gives [`StoreError::NamespaceFull`].
    pub max_aors: usize,
    /// Longest serialized binding list of one AOR (JSON bytes); more gives
    /// [`StoreError::ValueTooLarge`].
    pub max_record_bytes: usize,
    /// Most subscribers.
    pub max_subscribers: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            path: None,
            fsync: false,
            persist_kv: true,
            kv_limits: KvLimits::default(),
            max_aors: 1_000_000,
            max_record_bytes: 64 * 1024,
            max_subscribers: 1_000_000,
        }
    }
}

const SHARDS: usize = 64;

type Records = PeerMap<String, Vec<Binding>>;

/// The embedded store: [`KvStore`], [`LocationStore`] and [`SubscriberStore`] in
/// memory, persisted to disk when opened with a path. See the module docs.
pub struct Embedded {
    kv: Arc<MemoryKv>,
    shards: Vec<Mutex<Records>>,
    /// Picks an AOR's shard (seeded per store: it must agree only within the process).
    shard_hash: foldhash::fast::RandomState,
    aors: AtomicUsize,
    subscribers: RwLock<PeerMap<(String, String), Credentials>>,
    disk: Option<Arc<Disk>>,
    options: EmbeddedOptions,
}

impl Embedded {
    /// A store that keeps everything in memory only, with default bounds.
    pub fn in_memory() -> Arc<Embedded> {
        // Without a path nothing can fail.
        Embedded::build(EmbeddedOptions::default(), None)
    }

    /// Opens (or creates) the store described by `options`, loading everything
    /// persisted before.
    pub fn open(options: EmbeddedOptions) -> Result<Arc<Embedded>, StoreError> {
        let disk = match &options.path {
            Some(path) => Some(Arc::new(Disk::open(path, options.fsync)?)),
            None => None,
        };
        let store = Embedded::build(options, disk);
        store.load()?;
        Ok(store)
    }

    fn build(options: EmbeddedOptions, disk: Option<Arc<Disk>>) -> Arc<Embedded> {
        let journal: Option<Arc<dyn KvJournal>> = match (&disk, options.persist_kv) {
            (Some(d), true) => Some(d.clone()),
            _ => None,
        };
        Arc::new(Embedded {
            kv: MemoryKv::with_journal(options.kv_limits.clone(), journal),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(PeerMap::default()))
                .collect(),
            shard_hash: foldhash::fast::RandomState::default(),
            aors: AtomicUsize::new(0),
            subscribers: RwLock::new(PeerMap::default()),
            disk,
            options,
        })
    }

    /// The key-value part (for sweeping or inspecting it).
    pub fn kv(&self) -> &Arc<MemoryKv> {
        &self.kv
    }

    /// Adds or replaces a subscriber (durably, when persisted).
    pub fn put_subscriber(&self, c: Credentials) -> Result<(), StoreError> {
        let mut map = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (c.username.clone(), c.domain.clone());
        if !map.contains_key(&key) && map.len() >= self.options.max_subscribers {
            return Err(StoreError::NamespaceFull {
                max: self.options.max_subscribers,
            });
        }
        if let Some(d) = &self.disk {
            let bytes = serde_json::to_vec(&c).map_err(|e| StoreError::Backend(e.to_string()))?;
            d.put(&d.sub, sub_key(&c.username, &c.domain), bytes)?;
        }
        map.insert(key, c);
        Ok(())
    }

    /// Removes a subscriber; true if it existed.
    pub fn remove_subscriber(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        let mut map = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (username.to_owned(), domain.to_owned());
        if !map.contains_key(&key) {
            return Ok(false);
        }
        if let Some(d) = &self.disk {
            d.remove(&d.sub, sub_key(username, domain))?;
        }
        map.remove(&key);
        Ok(true)
    }

    fn shard(&self, aor: &str) -> &Mutex<Records> {
        let i = usize::try_from(self.shard_hash.hash_one(aor) % SHARDS as u64).unwrap_or(0);
        // `i < SHARDS == shards.len()`.
        &self.shards[i]
    }

    /// Loads what the disk holds into memory. Corrupt records are skipped (logged);
    /// expired kv entries are dropped; expired bindings stay until `purge_expired`
    /// reports them.
    fn load(&self) -> Result<(), StoreError> {
        let Some(d) = &self.disk else {
            return Ok(());
        };
        let mut dropped = Vec::new();
        if self.options.persist_kv {
            for item in d.kv.iter() {
                let (k, v) = item.into_inner().map_err(disk_err)?;
                let kept = match (decode_kv_key(&k), decode_kv_value(&v)) {
                    (Some((ns, key)), Some((exp, value))) => {
                        self.kv.restore(ns, key, value.to_vec(), exp)
                    }
                    _ => {
                        tracing::warn!("skipping a corrupt kv record on disk");
                        false
                    }
                };
                if !kept {
                    dropped.push(k.to_vec());
                }
            }
            for k in dropped.drain(..) {
                d.kv.remove(k).map_err(disk_err)?;
            }
        }
        for item in d.loc.iter() {
            let (k, v) = item.into_inner().map_err(disk_err)?;
            let parsed = std::str::from_utf8(&k)
                .ok()
                .zip(serde_json::from_slice::<Vec<Binding>>(&v).ok());
            let Some((aor, bindings)) = parsed else {
                tracing::warn!("skipping a corrupt location record on disk");
                continue;
            };
            if bindings.is_empty() || self.aors.load(Ordering::Relaxed) >= self.options.max_aors {
                dropped.push(k.to_vec());
                continue;
            }
            let mut shard = self
                .shard(aor)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if shard.insert(aor.to_owned(), bindings).is_none() {
                self.aors.fetch_add(1, Ordering::Relaxed);
            }
        }
        for k in dropped.drain(..) {
            d.loc.remove(k).map_err(disk_err)?;
        }
        let mut subs = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for item in d.sub.iter() {
            let (_, v) = item.into_inner().map_err(disk_err)?;
            match serde_json::from_slice::<Credentials>(&v) {
                Ok(c) if subs.len() < self.options.max_subscribers => {
                    subs.insert((c.username.clone(), c.domain.clone()), c);
                }
                Ok(_) => {}
                Err(_) => tracing::warn!("skipping a corrupt subscriber record on disk"),
            }
        }
        Ok(())
    }
}

impl KvStore for Embedded {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(namespace, key)
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.kv.set(namespace, key, value, ttl)
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        self.kv.incr(namespace, key, delta, ttl)
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        self.kv.delete(namespace, key)
    }
}

impl LocationStore for Embedded {
    fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        let shard = self
            .shard(aor)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(shard
            .get(aor)
            .map(|bs| live_copy(bs, now_ms))
            .unwrap_or_default())
    }

    fn update(
        &self,
        aor: &str,
        now_ms: u64,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> bool,
    ) -> Result<Vec<Binding>, StoreError> {
        let mut shard = self
            .shard(aor)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = shard.get(aor);
        let exists = current.is_some();
        let mut live: Vec<Binding> = current.map(|bs| live_copy(bs, now_ms)).unwrap_or_default();
        if !f(&mut live) {
            return Ok(live);
        }
        if live.is_empty() {
            if exists {
                if let Some(d) = &self.disk {
                    d.remove(&d.loc, aor.as_bytes().to_vec())?;
                }
                shard.remove(aor);
                self.aors.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(live);
        }
        // The JSON record is needed to persist it; in memory only its size counts, and
        // a record whose size bound is within the limit needs no serialising to know.
        let max = self.options.max_record_bytes;
        let bytes = if self.disk.is_some() || json_len_bound(&live) > max {
            let bytes =
                serde_json::to_vec(&live).map_err(|e| StoreError::Backend(e.to_string()))?;
            if bytes.len() > max {
                return Err(StoreError::ValueTooLarge {
                    len: bytes.len(),
                    max,
                });
            }
            Some(bytes)
        } else {
            None
        };
        if !exists && self.aors.load(Ordering::Relaxed) >= self.options.max_aors {
            return Err(StoreError::NamespaceFull {
                max: self.options.max_aors,
            });
        }
        if let (Some(d), Some(bytes)) = (&self.disk, bytes) {
            d.put(&d.loc, aor.as_bytes().to_vec(), bytes)?;
        }
        if !exists {
            shard.insert(aor.to_owned(), live.clone());
            self.aors.fetch_add(1, Ordering::Relaxed);
        } else if let Some(stored) = shard.get_mut(aor) {
            stored.clone_from(&live);
        }
        Ok(live)
    }

    fn purge_expired(&self, now_ms: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let due: Vec<String> = shard
                .iter()
                .filter(|(_, bs)| bs.iter().any(|b| !b.is_live(now_ms)))
                .map(|(aor, _)| aor.clone())
                .collect();
            for aor in due {
                let Some(bs) = shard.get_mut(&aor) else {
                    continue;
                };
                let (live, dead): (Vec<Binding>, Vec<Binding>) =
                    bs.drain(..).partition(|b| b.is_live(now_ms));
                // Not made durable: a purge lost in a crash is redone after the load.
                if live.is_empty() {
                    if let Some(d) = &self.disk {
                        d.forget(&d.loc, aor.as_bytes().to_vec());
                    }
                    shard.remove(&aor);
                    self.aors.fetch_sub(1, Ordering::Relaxed);
                } else {
                    if let Some(d) = &self.disk {
                        if let Ok(bytes) = serde_json::to_vec(&live) {
                            d.put_lazy(&d.loc, aor.as_bytes().to_vec(), bytes);
                        }
                    }
                    *bs = live;
                }
                removed.extend(dead.into_iter().map(|b| (aor.clone(), b)));
            }
        }
        Ok(removed)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        Ok(self.aors.load(Ordering::Relaxed))
    }
}

impl SubscriberStore for Embedded {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        Ok(self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(username.to_owned(), domain.to_owned()))
            .cloned())
    }
}

// === Disk ===

/// The fjall database and the group-commit state.
struct Disk {
    db: Database,
    kv: Keyspace,
    loc: Keyspace,
    sub: Keyspace,
    fsync: bool,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Writes journaled so far (tickets handed out).
    written: u64,
    /// Every ticket up to this one is on stable storage.
    synced: u64,
    /// A leader is in `fdatasync` right now.
    syncing: bool,
}

fn disk_err(e: fjall::Error) -> StoreError {
    StoreError::Backend(format!("disk: {e}"))
}

impl Disk {
    fn open(path: &PathBuf, fsync: bool) -> Result<Disk, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let db = Database::builder(path)
            // Reads come from memory: a small block cache is enough.
            .cache_size(8 * 1024 * 1024)
            .worker_threads(1)
            .open()
            .map_err(disk_err)?;
        let kv = db
            .keyspace("kv", KeyspaceCreateOptions::default)
            .map_err(disk_err)?;
        let loc = db
            .keyspace("loc", KeyspaceCreateOptions::default)
            .map_err(disk_err)?;
        let sub = db
            .keyspace("sub", KeyspaceCreateOptions::default)
            .map_err(disk_err)?;
        Ok(Disk {
            db,
            kv,
            loc,
            sub,
            fsync,
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
        })
    }

    /// Durable insert: returns once the write survives `kill -9` (and power loss with
    /// `fsync`).
    fn put(&self, ks: &Keyspace, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        // `insert` journals and flushes to the OS (fjall's default `PersistMode::Buffer`
        // per write), so the data is in the page cache when it returns.
        ks.insert(key, value).map_err(disk_err)?;
        self.commit()
    }

    /// Durable remove.
    fn remove(&self, ks: &Keyspace, key: Vec<u8>) -> Result<(), StoreError> {
        ks.remove(key).map_err(disk_err)?;
        self.commit()
    }

    /// Insert without waiting for stable storage; failures are logged.
    fn put_lazy(&self, ks: &Keyspace, key: Vec<u8>, value: Vec<u8>) {
        if let Err(e) = ks.insert(key, value) {
            tracing::warn!(error = %e, "store: lazy write failed");
        }
    }

    /// Remove without waiting for stable storage; failures are logged.
    fn forget(&self, ks: &Keyspace, key: Vec<u8>) {
        if let Err(e) = ks.remove(key) {
            tracing::warn!(error = %e, "store: lazy remove failed");
        }
    }

    /// With `fsync`, waits until everything journaled so far is on stable storage,
    /// sharing one `fdatasync` among the writers that arrive while one is running.
    fn commit(&self) -> Result<(), StoreError> {
        if !self.fsync {
            return Ok(());
        }
        let mut st = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
        // Our write is journaled: any sync that starts after this ticket covers it.
        st.written += 1;
        let ticket = st.written;
        loop {
            if st.synced >= ticket {
                return Ok(());
            }
            if st.syncing {
                st = self.synced.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.syncing = true;
            let target = st.written;
            drop(st);
            let result = self.db.persist(PersistMode::SyncData);
            st = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
            st.syncing = false;
            if result.is_ok() {
                st.synced = st.synced.max(target);
            }
            self.synced.notify_all();
            // On failure the waiters retry as leaders (and fail the same way: fjall
            // poisons the database after a failed sync).
            result.map_err(disk_err)?;
        }
    }
}

impl KvJournal for Disk {
    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(8 + value.len());
        v.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
        v.extend_from_slice(value);
        Disk::put(self, &self.kv, kv_key(namespace, key), v)
    }

    fn remove(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        Disk::remove(self, &self.kv, kv_key(namespace, key))
    }

    fn forget(&self, namespace: &str, keys: &[String]) {
        for k in keys {
            Disk::forget(self, &self.kv, kv_key(namespace, k));
        }
    }
}

/// The bindings of `bs` live at `now_ms`, in a Vec of the exact size (bindings are
/// large: a Vec grown by doubling can leave malloc's small-block cache).
fn live_copy(bs: &[Binding], now_ms: u64) -> Vec<Binding> {
    let mut live = Vec::with_capacity(bs.len());
    live.extend(bs.iter().filter(|b| b.is_live(now_ms)).cloned());
    live
}

/// An upper bound of the length of `serde_json::to_vec(bindings)`: every string byte
/// counted as 6 (the longest JSON escape, `\u00XX`), every binding's field names,
/// numbers, nulls and punctuation as 512 bytes (they take at most about 250).
fn json_len_bound(bindings: &[Binding]) -> usize {
    let text = |s: &str| 3 + 6 * s.len();
    let opt = |s: &Option<String>| s.as_deref().map_or(0, text);
    bindings
        .iter()
        .map(|b| {
            512 + text(&b.contact)
                + text(&b.call_id)
                + text(&b.ruid)
                + opt(&b.instance)
                + opt(&b.received)
                + opt(&b.listener)
                + opt(&b.user_agent)
                + b.path.iter().map(|p| text(p)).sum::<usize>()
                + b.params
                    .iter()
                    .map(|(n, v)| 3 + text(n) + text(v))
                    .sum::<usize>()
        })
        .sum::<usize>()
        + 2
}

/// `u16 BE len(a)`, a, b. Namespaces and usernames longer than 65535 bytes are cut
/// (the host never builds one; key lengths are bounded far below).
fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let a = &a.as_bytes()[..a.len().min(usize::from(u16::MAX))];
    let mut k = Vec::with_capacity(2 + a.len() + b.len());
    k.extend_from_slice(&u16::try_from(a.len()).unwrap_or(u16::MAX).to_be_bytes());
    k.extend_from_slice(a);
    k.extend_from_slice(b.as_bytes());
    k
}

fn kv_key(namespace: &str, key: &str) -> Vec<u8> {
    pair_key(namespace, key)
}

fn sub_key(username: &str, domain: &str) -> Vec<u8> {
    pair_key(username, domain)
}

fn decode_kv_key(k: &[u8]) -> Option<(&str, &str)> {
    let len = usize::from(u16::from_be_bytes([*k.first()?, *k.get(1)?]));
    let ns = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    let key = std::str::from_utf8(k.get(2 + len..)?).ok()?;
    Some((ns, key))
}

fn decode_kv_value(v: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let exp = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    Some(((exp != 0).then_some(exp), v.get(8..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str, expires_at_ms: u64) -> Binding {
        Binding {
            contact: contact.into(),
            expires_at_ms,
            q: None,
            call_id: "c1".into(),
            cseq: 1,
            instance: None,
            reg_id: None,
            path: vec![],
            received: None,
            listener: None,
            user_agent: None,
            params: vec![],
            ruid: format!("ruid-{contact}"),
            updated_ms: 0,
        }
    }

    fn add(store: &dyn LocationStore, aor: &str, b: Binding, now: u64) -> Vec<Binding> {
        store
            .update(aor, now, &mut |bs| {
                bs.retain(|x| x.contact != b.contact);
                bs.push(b.clone());
                true
            })
            .unwrap()
    }

    #[test]
    fn keys_round_trip() {
        let k = kv_key("t/m", "a\0b:c");
        assert_eq!(decode_kv_key(&k), Some(("t/m", "a\0b:c")));
        assert_eq!(decode_kv_key(&[0]), None);
        assert_eq!(decode_kv_key(&[0, 9, b'x']), None);
        assert_eq!(decode_kv_value(&[1, 2]), None);
    }

    #[test]
    fn location_in_memory() {
        let s = Embedded::in_memory();
        add(&*s, "sip:a@x", binding("sip:a@1", 1000), 0);
        add(&*s, "sip:a@x", binding("sip:a@2", 2000), 0);
        assert_eq!(s.lookup("sip:a@x", 0).unwrap().len(), 2);
        assert_eq!(s.lookup("sip:a@x", 1500).unwrap().len(), 1);
        assert_eq!(s.aor_count().unwrap(), 1);
        // `false` writes nothing back.
        let live = s.update("sip:a@x", 1500, &mut |bs| {
            bs.clear();
            false
        });
        assert_eq!(live.unwrap().len(), 0);
        assert_eq!(s.lookup("sip:a@x", 0).unwrap().len(), 2);
        let purged = s.purge_expired(1500).unwrap();
        assert_eq!(purged.len(), 1);
        assert_eq!(purged[0].0, "sip:a@x");
        assert_eq!(purged[0].1.contact, "sip:a@1");
        assert!(s.purge_expired(1500).unwrap().is_empty());
        let purged = s.purge_expired(5000).unwrap();
        assert_eq!(purged.len(), 1);
        assert_eq!(s.aor_count().unwrap(), 0);
        // An empty list removes the record.
        add(&*s, "sip:b@x", binding("sip:b@1", 1000), 0);
        s.update("sip:b@x", 0, &mut |bs| {
            bs.clear();
            true
        })
        .unwrap();
        assert_eq!(s.aor_count().unwrap(), 0);
    }

    #[test]
    fn json_len_bound_is_an_upper_bound() {
        let plain = binding("sip:a@1", u64::MAX);
        let mut full = binding("sip:\u{1}\"\\\n\u{7f}é@x", u64::MAX);
        full.q = Some(1000);
        full.cseq = u32::MAX;
        full.instance = Some("<urn:uuid:\u{0}>".into());
        full.reg_id = Some(u32::MAX);
        full.path = vec!["<sip:p\u{1f}@x;lr>".into(), String::new()];
        full.received = Some("sip:1.2.3.4:5;transport=udp".into());
        full.listener = Some("udp\t".into());
        full.user_agent = Some("\u{2}\u{3}".into());
        full.params = vec![
            ("pn-prid".into(), "\"\u{5}\"".into()),
            (String::new(), String::new()),
        ];
        full.updated_ms = u64::MAX;
        for list in [vec![], vec![plain.clone()], vec![full.clone(), plain, full]] {
            let len = serde_json::to_vec(&list).unwrap().len();
            assert!(json_len_bound(&list) >= len, "{len}: {list:?}");
        }
    }

    #[test]
    fn location_bounds() {
        let s = Embedded::open(EmbeddedOptions {
            max_aors: 1,
            max_record_bytes: 700,
            ..EmbeddedOptions::default()
        })
        .unwrap();
        add(&*s, "sip:a@x", binding("sip:a@1", 1000), 0);
        let err = s.update("sip:b@x", 0, &mut |bs| {
            bs.push(binding("sip:b@1", 1000));
            true
        });
        assert_eq!(err, Err(StoreError::NamespaceFull { max: 1 }));
        let err = s.update("sip:a@x", 0, &mut |bs| {
            for i in 0..10 {
                bs.push(binding(&format!("sip:a@{i}"), 1000));
            }
            true
        });
        assert!(matches!(
            err,
            Err(StoreError::ValueTooLarge { max: 700, .. })
        ));
        assert_eq!(s.lookup("sip:a@x", 0).unwrap().len(), 1);
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        for fsync in [false, true] {
            let path = dir.path().join(format!("db-{fsync}"));
            let opts = EmbeddedOptions {
                path: Some(path),
                fsync,
                ..EmbeddedOptions::default()
            };
            let now = crate::now_ms();
            {
                let s = Embedded::open(opts.clone()).unwrap();
                add(&*s, "sip:a@x", binding("sip:a@1", now + 60_000), now);
                add(&*s, "sip:gone@x", binding("sip:g@1", now + 1), now);
                s.set("t/m", "k", b"v", None).unwrap();
                s.set("t/m", "short", b"v", Some(Duration::from_millis(1)))
                    .unwrap();
                s.incr("t/m", "n", 5, Some(Duration::from_secs(60)))
                    .unwrap();
                s.incr("t/m", "n", 2, None).unwrap();
                s.set("t/m", "del", b"v", None).unwrap();
                assert!(s.delete("t/m", "del").unwrap());
                s.put_subscriber(Credentials {
                    username: "alice".into(),
                    domain: "x".into(),
                    password: Some("pw".into()),
                    ha1: None,
                    ha1_sha256: None,
                })
                .unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
            let s = Embedded::open(opts).unwrap();
            assert_eq!(s.lookup("sip:a@x", now).unwrap().len(), 1);
            assert_eq!(s.get("t/m", "k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(s.get("t/m", "short").unwrap(), None);
            assert_eq!(s.get("t/m", "del").unwrap(), None);
            assert_eq!(s.get("t/m", "n").unwrap(), Some(b"7".to_vec()));
            assert_eq!(
                s.credentials("alice", "x").unwrap().unwrap().password,
                Some("pw".into())
            );
            // The expired binding was loaded so that a purge reports it.
            let purged = s.purge_expired(crate::now_ms()).unwrap();
            assert_eq!(purged.len(), 1);
            assert_eq!(purged[0].0, "sip:gone@x");
            assert_eq!(s.aor_count().unwrap(), 1);
        }
    }

    #[test]
    fn kv_persistence_can_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions {
            path: Some(dir.path().to_owned()),
            persist_kv: false,
            ..EmbeddedOptions::default()
        };
        {
            let s = Embedded::open(opts.clone()).unwrap();
            s.set("t/m", "k", b"v", None).unwrap();
            add(&*s, "sip:a@x", binding("sip:a@1", u64::MAX), 0);
        }
        let s = Embedded::open(opts).unwrap();
        assert_eq!(s.get("t/m", "k").unwrap(), None);
        assert_eq!(s.lookup("sip:a@x", crate::now_ms()).unwrap().len(), 1);
    }

    #[test]
    fn concurrent_fsync_writers_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Embedded::open(EmbeddedOptions {
            path: Some(dir.path().to_owned()),
            fsync: true,
            ..EmbeddedOptions::default()
        })
        .unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..25 {
                        add(
                            &**s,
                            "sip:a@x",
                            binding(&format!("sip:{t}-{i}@h"), u64::MAX),
                            0,
                        );
                    }
                });
            }
        });
        assert_eq!(s.lookup("sip:a@x", 0).unwrap().len(), 100);
    }
}
