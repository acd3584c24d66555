//! The Redis backend: [`RedisStore`], shared by every Weir node pointed at the same
//! Redis, so a user registered through node A is reachable through node B (ADR 0006).
//!
//! Synchronous `redis` connections from a small bounded pool; every connection has
//! connect, read and write timeouts, so a dead Redis costs a call at most about one
//! timeout and gives [`StoreError::Backend`]. After a failed connect the pool fails
//! fast (no new attempt) for `min(timeout, 1 s)`.
//!
//! Key layout (`P` is the configured prefix, `weir:` by default):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P kv:<ns>:<key>` | string | a kv value; its Redis TTL is the kv TTL |
//! | `P loc:<aor>` | string | JSON array of the AOR's [`Binding`]s; TTL = latest expiry + `expiry_grace` |
//! | `P loc-exp` | sorted set | member AOR, score = its earliest binding expiry (ms since epoch) |
//! | `P sub:<domain>:<username>` | hash | fields `username`, `domain`, `password`, `ha1`, `ha1_sha256` |
//!
//! In `<ns>` and `<domain>`, `%` and `:` are written `%25` and `%3A`, so the first `:`
//! after them ends them; keys, AORs and usernames are the tail, verbatim. The layout
//! is not Redis-Cluster safe (a location update touches `loc:<aor>` and `loc-exp` in
//! one transaction): use one Redis (with replicas / Sentinel for failover).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, ConnectionLike, ErrorKind, RedisError};

use crate::{Binding, Credentials, KvLimits, KvStore, LocationStore, StoreError, SubscriberStore};

/// How a [`RedisStore`] connects and what it bounds.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` (or `unix:///path`).
    pub url: String,
    /// Prefix of every key (lets several deployments share a Redis).
    pub prefix: String,
    /// Most connections open at once; callers beyond it wait up to `timeout`.
    pub pool_size: usize,
    /// Connect, read and write timeout, and the longest wait for a pooled connection.
    pub timeout: Duration,
    /// Key and value size limits for the kv store (the namespace and key counts are
    /// not enforced on Redis: bound it with `maxmemory`).
    pub kv_limits: KvLimits,
    /// Longest serialized binding list of one AOR (JSON bytes).
    pub max_record_bytes: usize,
    /// How long an AOR record outlives its last binding in Redis, so that
    /// `purge_expired` on some node can still report the expired bindings. If no node
    /// purges, Redis drops the record after it anyway.
    pub expiry_grace: Duration,
    /// Attempts of a location update that keeps losing WATCH races before
    /// [`StoreError::Conflict`].
    pub max_retries: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "weir:".into(),
            pool_size: 8,
            timeout: Duration::from_millis(500),
            kv_limits: KvLimits::default(),
            max_record_bytes: 64 * 1024,
            expiry_grace: Duration::from_secs(300),
            max_retries: 32,
        }
    }
}

/// Atomic increment that sets the TTL only when it creates the key.
const INCR_LUA: &str = r"
local created = redis.call('EXISTS', KEYS[1]) == 0
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
";

/// Expiries at or beyond this (ms since epoch, year ~2255) count as "never".
const NEVER_MS: u64 = 9_000_000_000_000;

/// AORs looked at per `purge_expired` call, at most.
const PURGE_BATCH: usize = 1000;

/// The Redis backend: [`KvStore`], [`LocationStore`] and [`SubscriberStore`]. See the
/// module docs for the key layout.
pub struct RedisStore {
    pool: Pool,
    options: RedisOptions,
    incr: redis::Script,
}

impl RedisStore {
    /// A store for `options`. Does not connect yet (connections are made on demand,
    /// so Weir starts while Redis is down); see [`ping`](RedisStore::ping).
    pub fn open(options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| StoreError::Backend(format!("redis url: {e}")))?;
        Ok(RedisStore {
            pool: Pool::new(client, options.pool_size.max(1), options.timeout),
            incr: redis::Script::new(INCR_LUA),
            options,
        })
    }

    /// Checks that Redis answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| redis::cmd("PING").query::<String>(c))
            .map(drop)
    }

    /// Adds or replaces a subscriber.
    pub fn put_subscriber(&self, c: &Credentials) -> Result<(), StoreError> {
        let key = self.sub_key(&c.username, &c.domain);
        let mut fields = vec![
            ("username", c.username.as_str()),
            ("domain", c.domain.as_str()),
        ];
        for (name, v) in [
            ("password", &c.password),
            ("ha1", &c.ha1),
            ("ha1_sha256", &c.ha1_sha256),
        ] {
            if let Some(v) = v {
                fields.push((name, v.as_str()));
            }
        }
        self.with(|conn| {
            redis::pipe()
                .atomic()
                .del(&key)
                .ignore()
                .hset_multiple(&key, &fields)
                .ignore()
                .query::<()>(conn)
        })
    }

    /// Removes a subscriber; true if it existed.
    pub fn remove_subscriber(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        let key = self.sub_key(username, domain);
        self.with(|c| redis::cmd("DEL").arg(&key).query::<i64>(c))
            .map(|n| n > 0)
    }

    // --- keys ---

    fn kv_key(&self, namespace: &str, key: &str) -> String {
        format!("{}kv:{}:{key}", self.options.prefix, escape(namespace))
    }

    fn loc_key(&self, aor: &str) -> String {
        format!("{}loc:{aor}", self.options.prefix)
    }

    fn exp_key(&self) -> String {
        format!("{}loc-exp", self.options.prefix)
    }

    fn sub_key(&self, username: &str, domain: &str) -> String {
        format!("{}sub:{}:{username}", self.options.prefix, escape(domain))
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        let max = self.options.kv_limits.max_key_bytes;
        if key.len() > max {
            return Err(StoreError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// Runs `f` on a pooled connection. A connection that saw anything but a server
    /// error reply (I/O, timeout, protocol) is closed rather than reused.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let r = f(conn.conn());
        if let Err(e) = &r {
            if !matches!(e.kind(), ErrorKind::Server(_)) {
                conn.broken = true;
            }
        }
        r.map_err(backend)
    }

    /// One attempt at a WATCHed read-modify-write of `aor`'s record. `Ok(None)` means
    /// the transaction lost a race (retry). `edit` gets the stored bindings and
    /// returns what to write (`None`: write nothing) and what to return.
    #[allow(clippy::type_complexity)]
    fn try_edit<R>(
        &self,
        conn: &mut Connection,
        aor: &str,
        edit: &mut dyn FnMut(Vec<Binding>) -> (Option<Vec<Binding>>, R),
    ) -> Result<Option<R>, StoreError> {
        let key = self.loc_key(aor);
        let raw: Option<Vec<u8>> = (|| {
            redis::cmd("WATCH").arg(&key).exec(conn)?;
            redis::cmd("GET").arg(&key).query(conn)
        })()
        .map_err(backend)?;
        let stored: Vec<Binding> = match &raw {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                // Leave the connection clean; the error is what the caller sees.
                let _ = redis::cmd("UNWATCH").exec(conn);
                StoreError::Backend(format!("corrupt location record {key}: {e}"))
            })?,
            None => Vec::new(),
        };
        let (write, out) = edit(stored);
        let Some(list) = write else {
            redis::cmd("UNWATCH").exec(conn).map_err(backend)?;
            return Ok(Some(out));
        };
        let mut p = redis::pipe();
        p.atomic();
        if list.is_empty() {
            if raw.is_none() {
                // Nothing stored, nothing to store; still drop a stale index entry.
                p.zrem(self.exp_key(), aor).ignore();
            } else {
                p.del(&key).ignore().zrem(self.exp_key(), aor).ignore();
            }
        } else {
            let bytes =
                serde_json::to_vec(&list).map_err(|e| StoreError::Backend(e.to_string()))?;
            if bytes.len() > self.options.max_record_bytes {
                let _ = redis::cmd("UNWATCH").exec(conn);
                return Err(StoreError::ValueTooLarge {
                    len: bytes.len(),
                    max: self.options.max_record_bytes,
                });
            }
            let earliest = list
                .iter()
                .map(|b| b.expires_at_ms)
                .min()
                .unwrap_or(u64::MAX);
            let latest = list
                .iter()
                .map(|b| b.expires_at_ms)
                .max()
                .unwrap_or(u64::MAX);
            let grace = u64::try_from(self.options.expiry_grace.as_millis()).unwrap_or(u64::MAX);
            let drop_at = latest.saturating_add(grace);
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(bytes);
            if drop_at < NEVER_MS {
                set.arg("PXAT").arg(drop_at);
            }
            p.add_command(set).ignore();
            // Scores are f64: exact for any realistic ms timestamp.
            #[allow(clippy::cast_precision_loss)]
            p.zadd(self.exp_key(), aor, earliest as f64).ignore();
        }
        let done: Option<()> = p.query(conn).map_err(backend)?;
        Ok(done.map(|()| out))
    }

    /// A WATCH/MULTI/EXEC loop around [`try_edit`](Self::try_edit).
    fn edit<R>(
        &self,
        aor: &str,
        edit: &mut dyn FnMut(Vec<Binding>) -> (Option<Vec<Binding>>, R),
    ) -> Result<R, StoreError> {
        let mut conn = self.pool.get()?;
        for attempt in 0..self.options.max_retries.max(1) {
            match self.try_edit(conn.conn(), aor, edit) {
                Ok(Some(out)) => return Ok(out),
                Ok(None) => backoff(attempt),
                Err(e) => {
                    if matches!(e, StoreError::Backend(_)) {
                        conn.broken = true;
                    }
                    return Err(e);
                }
            }
        }
        Err(StoreError::Conflict(aor.to_owned()))
    }
}

/// After losing a WATCH race: sleeps a random time in `[0, min(50 µs << attempt,
/// 2 ms))`, so that contenders on one AOR spread out instead of colliding again.
fn backoff(attempt: u32) {
    let cap_us = (50u64 << attempt.min(6)).min(2000);
    // Cheap jitter: the clock's nanoseconds mixed with the thread id.
    let mut h = DefaultHasher::new();
    thread::current().id().hash(&mut h);
    Instant::now().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    thread::sleep(Duration::from_micros(h.finish() % cap_us));
}

fn backend(e: RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// `%` → `%25`, `:` → `%3A`.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace(':', "%3A")
}

/// A TTL in whole milliseconds (at least 1), or `None` for "never".
fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    let ttl = ttl?;
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    (ms < NEVER_MS).then_some(ms)
}

impl KvStore for RedisStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_key(key)?;
        let k = self.kv_key(namespace, key);
        self.with(|c| redis::cmd("GET").arg(&k).query(c))
    }

    fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.check_key(key)?;
        let max = self.options.kv_limits.max_value_bytes;
        if value.len() > max {
            return Err(StoreError::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        let k = self.kv_key(namespace, key);
        if ttl == Some(Duration::ZERO) {
            // Expired on arrival: same as removing it.
            return self.with(|c| redis::cmd("DEL").arg(&k).exec(c));
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(&k).arg(value);
        if let Some(ms) = ttl_ms(ttl) {
            cmd.arg("PX").arg(ms);
        }
        self.with(|c| cmd.exec(c))
    }

    fn incr(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        self.check_key(key)?;
        let k = self.kv_key(namespace, key);
        let ms = ttl_ms(ttl).unwrap_or(0);
        let mut conn = self.pool.get()?;
        match self
            .incr
            .key(&k)
            .arg(delta)
            .arg(ms)
            .invoke::<i64>(conn.conn())
        {
            Ok(v) => Ok(v),
            Err(e) => {
                let text = e.to_string();
                if text.contains("not an integer") {
                    Err(StoreError::NotANumber)
                } else if text.contains("overflow") {
                    Err(StoreError::Overflow)
                } else {
                    if !matches!(e.kind(), ErrorKind::Server(_)) {
                        conn.broken = true;
                    }
                    Err(backend(e))
                }
            }
        }
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        self.check_key(key)?;
        let k = self.kv_key(namespace, key);
        self.with(|c| redis::cmd("DEL").arg(&k).query::<i64>(c))
            .map(|n| n > 0)
    }
}

impl LocationStore for RedisStore {
    fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        let key = self.loc_key(aor);
        let raw: Option<Vec<u8>> = self.with(|c| redis::cmd("GET").arg(&key).query(c))?;
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let all: Vec<Binding> = serde_json::from_slice(&raw)
            .map_err(|e| StoreError::Backend(format!("corrupt location record {key}: {e}")))?;
        Ok(all.into_iter().filter(|b| b.is_live(now_ms)).collect())
    }

    fn update(
        &self,
        aor: &str,
        now_ms: u64,
        f: &mut dyn FnMut(&mut Vec<Binding>) -> bool,
    ) -> Result<Vec<Binding>, StoreError> {
        self.edit(aor, &mut |stored| {
            let mut live: Vec<Binding> = stored.into_iter().filter(|b| b.is_live(now_ms)).collect();
            if f(&mut live) {
                (Some(live.clone()), live)
            } else {
                (None, live)
            }
        })
    }

    /// Finds the AORs due in the `loc-exp` index (`ZRANGEBYSCORE -inf now`, up to 1000
    /// per call) and removes their expired bindings, each in its own WATCHed
    /// transaction. When several nodes purge at once, each expired binding is
    /// reported by exactly one of them (the one whose transaction removed it).
    fn purge_expired(&self, now_ms: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        let exp = self.exp_key();
        let due: Vec<String> = self.with(|c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&exp)
                .arg("-inf")
                .arg(now_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(PURGE_BATCH)
                .query(c)
        })?;
        let mut removed = Vec::new();
        for aor in due {
            let dead = self.edit(&aor, &mut |stored| {
                let (live, dead): (Vec<Binding>, Vec<Binding>) =
                    stored.into_iter().partition(|b| b.is_live(now_ms));
                // Always write: also refreshes a stale index score or drops a stale
                // index entry whose record Redis already expired.
                (Some(live), dead)
            });
            match dead {
                Ok(dead) => removed.extend(dead.into_iter().map(|b| (aor.clone(), b))),
                // Another node keeps winning on this AOR: it is purging it.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    fn aor_count(&self) -> Result<usize, StoreError> {
        let exp = self.exp_key();
        self.with(|c| redis::cmd("ZCARD").arg(&exp).query::<usize>(c))
    }
}

impl SubscriberStore for RedisStore {
    fn credentials(&self, username: &str, domain: &str) -> Result<Option<Credentials>, StoreError> {
        let key = self.sub_key(username, domain);
        let mut h: HashMap<String, String> =
            self.with(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username: h.remove("username").unwrap_or_else(|| username.to_owned()),
            domain: h.remove("domain").unwrap_or_else(|| domain.to_owned()),
            password: h.remove("password"),
            ha1: h.remove("ha1"),
            ha1_sha256: h.remove("ha1_sha256"),
        }))
    }
}

// === Pool ===

/// A bounded pool of synchronous connections.
struct Pool {
    client: redis::Client,
    max: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections in use or idle.
    open: usize,
    /// After a failed connect, fail fast until then.
    down_until: Option<Instant>,
}

/// A connection on loan from the pool; returned on drop unless `broken`.
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
    broken: bool,
}

impl Pooled<'_> {
    fn conn(&mut self) -> &mut Connection {
        // `conn` is `Some` from `get` until `drop`; `get_or_insert_with` is never
        // reached, it only avoids an unwrap.
        match &mut self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_conn() -> ! {
    // A `Pooled` always holds a connection until dropped.
    panic!("pooled connection used after drop")
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut st = self
            .pool
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.conn.take() {
            Some(c) if !self.broken && c.is_open() => st.idle.push(c),
            _ => st.open = st.open.saturating_sub(1),
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    fn new(client: redis::Client, max: usize, timeout: Duration) -> Pool {
        Pool {
            client,
            max,
            timeout,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                down_until: None,
            }),
            freed: Condvar::new(),
        }
    }

    fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(c),
                    broken: false,
                });
            }
            if st.open < self.max {
                if let Some(until) = st.down_until {
                    if Instant::now() < until {
                        return Err(StoreError::Backend(
                            "redis: unreachable (recent connect failed)".into(),
                        ));
                    }
                }
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => {
                        self.state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .down_until = None;
                        Ok(Pooled {
                            pool: self,
                            conn: Some(c),
                            broken: false,
                        })
                    }
                    Err(e) => {
                        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                        st.open = st.open.saturating_sub(1);
                        st.down_until =
                            Some(Instant::now() + self.timeout.min(Duration::from_secs(1)));
                        drop(st);
                        self.freed.notify_one();
                        Err(backend(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Backend(format!(
                    "redis: all {} connections busy for {:?}",
                    self.max, self.timeout
                )));
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_keys_apart() {
        let s = RedisStore::open(RedisOptions::default()).unwrap();
        assert_ne!(s.kv_key("a:b", "c"), s.kv_key("a", "b:c"));
        assert_eq!(s.kv_key("t/m", "k:1"), "weir:kv:t/m:k:1");
        assert_eq!(s.kv_key("a%3A", "k"), "weir:kv:a%253A:k");
        assert_eq!(
            s.sub_key("alice", "example.com"),
            "weir:sub:example.com:alice"
        );
        assert_eq!(s.loc_key("sip:alice@x"), "weir:loc:sip:alice@x");
    }

    #[test]
    fn ttl_rounding() {
        assert_eq!(ttl_ms(None), None);
        assert_eq!(ttl_ms(Some(Duration::from_micros(10))), Some(1));
        assert_eq!(ttl_ms(Some(Duration::MAX)), None);
        assert_eq!(ttl_ms(Some(Duration::from_secs(2))), Some(2000));
    }

    #[test]
    fn bad_url_is_an_error() {
        assert!(RedisStore::open(RedisOptions {
            url: "nope://".into(),
            ..RedisOptions::default()
        })
        .is_err());
    }
}
