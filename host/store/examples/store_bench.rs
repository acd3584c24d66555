//! Write latency per acknowledged update of the stores, as reported in ADR 0006.
//!
//! `cargo run --release -p weir-store --example store_bench -- [dir] [redis-url]`
//!
//! Embedded (in `dir`, default a temp dir under /tmp): location `update` of one of 500
//! AORs (one ~400-byte binding record) and kv `set`, with `fsync` off and on, from 1
//! and 4 threads. With a Redis URL, the same against Redis.

use std::sync::Arc;
use std::time::Instant;

use weir_store::{
    Binding, Embedded, EmbeddedOptions, KvStore, LocationStore, RedisOptions, RedisStore,
};

fn binding(n: usize) -> Binding {
    Binding {
        contact: format!("sip:user{n}@192.0.2.10:5060;transport=udp"),
        expires_at_ms: u64::MAX,
        q: Some(1000),
        call_id: format!("{n:032x}@192.0.2.10"),
        cseq: 42,
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000000000000>".into()),
        reg_id: Some(1),
        path: vec!["<sip:edge.example.com;lr>".into()],
        received: Some("sip:198.51.100.7:40000;transport=udp".into()),
        listener: Some("udp-public".into()),
        user_agent: Some("bench/1.0".into()),
        params: vec![],
        ruid: format!("uloc-{n}"),
        updated_ms: 0,
    }
}

fn run(name: &str, store: Arc<dyn Store>, threads: usize, per_thread: usize) {
    let mut all: Vec<f64> = Vec::new();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let n = t * per_thread + i;
                        let t = Instant::now();
                        store.one(n);
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    lat
                })
            })
            .collect();
        for h in handles {
            all.extend(h.join().unwrap_or_default());
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let n = all.len();
    let mean = all.iter().sum::<f64>() / n as f64;
    println!(
        "{name:44} thr={threads} n={n:5} mean={mean:8.1}us p50={:8.1}us p99={:8.1}us  {:8.0} writes/s",
        all[n / 2],
        all[n * 99 / 100],
        n as f64 / wall
    );
}

trait Store: Send + Sync {
    fn one(&self, n: usize);
}

struct Loc(Arc<dyn LocationStore>);
impl Store for Loc {
    fn one(&self, n: usize) {
        let b = binding(n);
        let r = self
            .0
            .update(&format!("sip:user{}@example.com", n % 500), 0, &mut |bs| {
                bs.clear();
                bs.push(b.clone());
                true
            });
        if let Err(e) = r {
            eprintln!("update: {e}");
        }
    }
}

struct Kv(Arc<dyn KvStore>);
impl Store for Kv {
    fn one(&self, n: usize) {
        if let Err(e) = self
            .0
            .set("t/m", &format!("k{}", n % 500), &[b'x'; 100], None)
        {
            eprintln!("set: {e}");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("weir-store-bench-{}", std::process::id()))
        });
    let redis = args.next();
    for fsync in [false, true] {
        let path = dir.join(format!("fsync-{fsync}"));
        let _ = std::fs::remove_dir_all(&path);
        let store = match Embedded::open(EmbeddedOptions {
            path: Some(path),
            fsync,
            ..EmbeddedOptions::default()
        }) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("open: {e}");
                return;
            }
        };
        let n = if fsync { 1000 } else { 20_000 };
        for threads in [1, 4] {
            run(
                &format!("embedded fsync={fsync} location update"),
                Arc::new(Loc(store.clone())),
                threads,
                n / threads,
            );
            run(
                &format!("embedded fsync={fsync} kv set"),
                Arc::new(Kv(store.clone())),
                threads,
                n / threads,
            );
        }
    }
    let mem = Embedded::in_memory();
    run(
        "embedded in-memory location update",
        Arc::new(Loc(mem.clone())),
        1,
        20_000,
    );
    if let Some(url) = redis {
        let store = match RedisStore::open(RedisOptions {
            url,
            ..RedisOptions::default()
        }) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("redis: {e}");
                return;
            }
        };
        for threads in [1, 4] {
            run(
                "redis location update (WATCH/MULTI/EXEC)",
                Arc::new(Loc(store.clone())),
                threads,
                5000 / threads,
            );
            run(
                "redis kv set",
                Arc::new(Kv(store.clone())),
                threads,
                5000 / threads,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
