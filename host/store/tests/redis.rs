//! The Redis backend against a real `redis-server` (Debian's package), started per
//! test on a free loopback port in a temporary directory and killed afterwards.
//!
//! These tests fail (they do not skip) when `redis-server` is missing: set
//! `REDIS_SERVER` to its path if it is not on `PATH`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use weir_store::{
    Binding, Credentials, KvStore, LocationStore, RedisOptions, RedisStore, StoreError,
    SubscriberStore,
};

/// A `redis-server` child, killed (by its PID, via `Child::kill`) on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start() -> Server {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Server {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}): the Redis tests need redis-server \
                     (Debian package `redis-server`; or set REDIS_SERVER=/path/to/redis-server)"
                )
            });
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        use std::io::Write;
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> RedisStore {
        store_at(&self.url(), Duration::from_millis(500))
    }

    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store_at(url: &str, timeout: Duration) -> RedisStore {
    RedisStore::open(RedisOptions {
        url: url.into(),
        prefix: "test:".into(),
        pool_size: 4,
        timeout,
        ..RedisOptions::default()
    })
    .unwrap()
}

fn binding(contact: &str, expires_at_ms: u64) -> Binding {
    Binding {
        contact: contact.into(),
        expires_at_ms,
        q: Some(500),
        call_id: "call".into(),
        cseq: 1,
        instance: None,
        reg_id: None,
        path: vec!["<sip:edge;lr>".into()],
        received: None,
        listener: None,
        user_agent: None,
        params: vec![],
        ruid: format!("ruid-{contact}"),
        updated_ms: 0,
    }
}

/// [`register`] as a client does it: an update that lost every one of the store's
/// WATCH races (`Conflict`, answered 500 with Retry-After upstream) is sent again.
/// Under eight threads on one AOR with both cores busy, 32 lost races in a row happen.
fn register_retrying(store: &dyn LocationStore, aor: &str, b: Binding) {
    for _ in 0..100 {
        match try_register(store, aor, &b) {
            Ok(_) => return,
            Err(weir_store::StoreError::Conflict(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{aor}: 100 conflicts in a row");
}

fn register(store: &dyn LocationStore, aor: &str, b: Binding) -> Vec<Binding> {
    try_register(store, aor, &b).unwrap()
}

/// Add or replace `b`'s contact in `aor`'s bindings.
fn try_register(
    store: &dyn LocationStore,
    aor: &str,
    b: &Binding,
) -> Result<Vec<Binding>, weir_store::StoreError> {
    store.update(aor, weir_store::now_ms(), &mut |bs| {
        bs.retain(|x| x.contact != b.contact);
        bs.push(b.clone());
        true
    })
}

#[test]
fn two_nodes_share_state() {
    let server = Server::start();
    let (a, b) = (server.store(), server.store());
    a.ping().unwrap();
    let later = weir_store::now_ms() + 60_000;

    // Registered through node A, reachable through node B.
    register(
        &a,
        "sip:alice@example.com",
        binding("sip:alice@10.0.0.1", later),
    );
    let found = b
        .lookup("sip:alice@example.com", weir_store::now_ms())
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].contact, "sip:alice@10.0.0.1");
    assert_eq!(found[0].path, vec!["<sip:edge;lr>".to_string()]);
    assert_eq!(b.aor_count().unwrap(), 1);
    // Node B refreshes, node A sees both contacts.
    register(
        &b,
        "sip:alice@example.com",
        binding("sip:alice@10.0.0.2", later),
    );
    assert_eq!(
        a.lookup("sip:alice@example.com", weir_store::now_ms())
            .unwrap()
            .len(),
        2
    );
    // Unregister all through A.
    a.update("sip:alice@example.com", weir_store::now_ms(), &mut |bs| {
        bs.clear();
        true
    })
    .unwrap();
    assert!(b
        .lookup("sip:alice@example.com", weir_store::now_ms())
        .unwrap()
        .is_empty());
    assert_eq!(b.aor_count().unwrap(), 0);

    // kv.
    a.set("t/m", "k", b"v", None).unwrap();
    assert_eq!(b.get("t/m", "k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(b.get("t/other", "k").unwrap(), None);
    assert_eq!(a.incr("t/m", "n", 2, None).unwrap(), 2);
    assert_eq!(b.incr("t/m", "n", 3, None).unwrap(), 5);
    assert_eq!(b.incr("t/m", "k", 1, None), Err(StoreError::NotANumber));
    b.set("t/m", "big", i64::MAX.to_string().as_bytes(), None)
        .unwrap();
    assert_eq!(a.incr("t/m", "big", 1, None), Err(StoreError::Overflow));
    assert!(b.delete("t/m", "k").unwrap());
    assert!(!a.delete("t/m", "k").unwrap());
    assert_eq!(
        a.set("t/m", &"x".repeat(300), b"", None),
        Err(StoreError::KeyTooLarge { len: 300, max: 256 })
    );

    // Subscribers.
    let alice = Credentials {
        username: "alice".into(),
        domain: "example.com".into(),
        password: None,
        ha1: Some("0123456789abcdef0123456789abcdef".into()),
        ha1_sha256: None,
    };
    a.put_subscriber(&alice).unwrap();
    assert_eq!(b.credentials("alice", "example.com").unwrap(), Some(alice));
    assert_eq!(b.credentials("alice", "other.com").unwrap(), None);
    assert!(b.remove_subscriber("alice", "example.com").unwrap());
    assert_eq!(a.credentials("alice", "example.com").unwrap(), None);
    server.stop();
}

#[test]
fn concurrent_updates_of_one_aor_lose_nothing() {
    let server = Server::start();
    let nodes = [Arc::new(server.store()), Arc::new(server.store())];
    let later = weir_store::now_ms() + 60_000;
    let threads = 8;
    let per_thread = 25;
    thread::scope(|s| {
        for t in 0..threads {
            let node = nodes[t % 2].clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    register_retrying(
                        &*node,
                        "sip:busy@example.com",
                        binding(&format!("sip:{t}-{i}@h"), later),
                    );
                    node.incr("t/m", "hits", 1, Some(Duration::from_secs(60)))
                        .unwrap();
                }
            });
        }
    });
    let all = nodes[0]
        .lookup("sip:busy@example.com", weir_store::now_ms())
        .unwrap();
    assert_eq!(all.len(), threads * per_thread);
    assert_eq!(
        nodes[1].get("t/m", "hits").unwrap(),
        Some((threads * per_thread).to_string().into_bytes())
    );
}

#[test]
fn ttls_expire() {
    let server = Server::start();
    let s = server.store();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();

    // kv TTL.
    s.set("t/m", "short", b"v", Some(Duration::from_millis(100)))
        .unwrap();
    s.set("t/m", "gone", b"v", Some(Duration::ZERO)).unwrap();
    assert_eq!(s.get("t/m", "gone").unwrap(), None);
    // incr: the TTL applies only on create.
    s.incr("t/m", "ctr", 1, Some(Duration::from_millis(100)))
        .unwrap();
    s.incr("t/m", "ctr", 1, Some(Duration::from_secs(100)))
        .unwrap();
    s.incr("t/m", "ctr", 1, None).unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test:kv:t/m:ctr")
        .query(&mut raw)
        .unwrap();
    assert!((1..=100).contains(&pttl), "pttl {pttl}");
    s.set("t/m", "forever", b"v", None).unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test:kv:t/m:forever")
        .query(&mut raw)
        .unwrap();
    assert_eq!(pttl, -1);
    thread::sleep(Duration::from_millis(150));
    assert_eq!(s.get("t/m", "short").unwrap(), None);
    assert_eq!(s.get("t/m", "ctr").unwrap(), None);
    assert_eq!(
        s.incr("t/m", "ctr", 5, None).unwrap(),
        5,
        "restarts from zero"
    );

    // Location: the record's TTL is the latest expiry plus the grace.
    let now = weir_store::now_ms();
    register(&s, "sip:bob@x", binding("sip:bob@1", now + 200));
    register(&s, "sip:bob@x", binding("sip:bob@2", now + 60_000));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test:loc:sip:bob@x")
        .query(&mut raw)
        .unwrap();
    assert!(pttl > 300_000 && pttl <= 360_000, "pttl {pttl}");
    let score: f64 = redis::cmd("ZSCORE")
        .arg("test:loc-exp")
        .arg("sip:bob@x")
        .query(&mut raw)
        .unwrap();
    assert_eq!(score as u64, now + 200, "indexed by the earliest expiry");
    assert_eq!(
        s.lookup("sip:bob@x", now + 300).unwrap().len(),
        1,
        "expired ones are hidden"
    );

    // Two nodes purge at once: each expired binding is reported exactly once.
    let other = server.store();
    let (p1, p2) = thread::scope(|sc| {
        let h1 = sc.spawn(|| s.purge_expired(now + 300).unwrap());
        let h2 = sc.spawn(|| other.purge_expired(now + 300).unwrap());
        (h1.join().unwrap(), h2.join().unwrap())
    });
    let reported: Vec<_> = p1.into_iter().chain(p2).collect();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].0, "sip:bob@x");
    assert_eq!(reported[0].1.contact, "sip:bob@1");
    let score: f64 = redis::cmd("ZSCORE")
        .arg("test:loc-exp")
        .arg("sip:bob@x")
        .query(&mut raw)
        .unwrap();
    assert_eq!(score as u64, now + 60_000, "re-indexed by the next expiry");
    assert!(s.purge_expired(now + 300).unwrap().is_empty());
    let purged = s.purge_expired(now + 70_000).unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(s.aor_count().unwrap(), 0);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("test:loc:sip:bob@x")
        .query(&mut raw)
        .unwrap();
    assert_eq!(exists, 0);

    // A record Redis expired itself leaves a stale index entry: purge drops it.
    register(&s, "sip:carol@x", binding("sip:carol@1", now + 60_000));
    redis::cmd("DEL")
        .arg("test:loc:sip:carol@x")
        .exec(&mut raw)
        .unwrap();
    assert_eq!(s.aor_count().unwrap(), 1);
    assert!(s.purge_expired(now + 70_000).unwrap().is_empty());
    assert_eq!(s.aor_count().unwrap(), 0);
}

#[test]
fn redis_down_fails_fast_and_recovers() {
    let server = Server::start();
    let port = server.port;
    let s = server.store();
    s.set("t/m", "k", b"v", None).unwrap();
    server.stop();

    // Every call fails with Backend, quickly (the timeout is 500 ms).
    let t = Instant::now();
    for _ in 0..20 {
        assert!(matches!(s.get("t/m", "k"), Err(StoreError::Backend(_))));
        assert!(matches!(
            s.lookup("sip:a@x", weir_store::now_ms()),
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(
            s.credentials("a", "x"),
            Err(StoreError::Backend(_))
        ));
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );

    // Back on the same port (empty, no persistence): the store reconnects.
    let server = Server::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match s.set("t/m", "k", b"again", None) {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnect: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert_eq!(s.get("t/m", "k").unwrap(), Some(b"again".to_vec()));
    server.stop();
}

#[test]
fn a_hung_redis_costs_one_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accepter = thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            if held.len() > 16 {
                break;
            }
        }
        // Keep them open (silently) until the test ends.
        for mut c in held {
            let _ = c.read(&mut [0u8; 1]);
        }
    });
    let s = store_at(
        &format!("redis://127.0.0.1:{port}"),
        Duration::from_millis(200),
    );
    for _ in 0..3 {
        let t = Instant::now();
        let r = s.get("t/m", "k");
        let took = t.elapsed();
        assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
        assert!(took < Duration::from_millis(700), "took {took:?}");
    }
}
