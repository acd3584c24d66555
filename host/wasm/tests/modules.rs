//! Module calls against the `misbehave` fixture: verdicts, edits, failures and
//! their recovery, kv isolation, pooling.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use weir_wasm::{Error, KvStore, ModuleFailure, ModuleRegistry, Verdict};

const TIMEOUT: Duration = Duration::from_millis(10);

#[test]
fn ok_continues_and_adds_a_header() {
    let (rt, _) = runtime();
    let m = load(&rt, "ok", "ok", TIMEOUT);
    let mut msg = invite();
    assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    assert_eq!(msg.headers.get("X-Ok"), Some("1"));
    assert_eq!(m.name(), "ok");
    assert_eq!(m.tenant(), "test");
    assert_eq!(m.qualified_name(), "test/ok");
}

#[test]
fn reply_and_forward_verdicts() {
    let (rt, _) = runtime();
    let m = load(&rt, "reply", "reply", TIMEOUT);
    let mut msg = invite();
    assert_eq!(
        m.on_request(&mut msg, &ctx()),
        Ok(Verdict::Reply {
            code: 403,
            reason: "Forbidden".into(),
            headers: vec![("X-Why".into(), "misbehave".into())],
        })
    );
    // A reply hook treats `reply` as `continue` (WIT).
    assert_eq!(m.on_reply(&mut msg, &ctx()), Ok(Verdict::Continue));

    let mut msg = invite_with_mode("forward");
    assert_eq!(
        m.on_request(&mut msg, &ctx()),
        Ok(Verdict::Forward(vec![
            "sip:10.0.0.1:5060;transport=tcp".into(),
            "sip:10.0.0.2".into()
        ]))
    );
    let mut msg = invite_with_mode("bad-reply");
    assert!(matches!(
        m.on_request(&mut msg, &ctx()),
        Err(ModuleFailure::BadVerdict(_))
    ));
    assert_eq!(m.stats().bad_verdicts, 1);
}

#[test]
fn accessors_and_edits_reach_the_message() {
    let (rt, _) = runtime();
    let m = load(&rt, "inspect", "inspect", TIMEOUT);
    let mut msg = invite();
    let names_before = msg.headers.len();
    assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    let summary = msg.headers.get("X-Inspect").expect("X-Inspect").to_owned();
    assert_eq!(
        summary,
        format!(
            "request=true method=INVITE status=0 uri=sip:bob@example.com src=192.0.2.1:5060 \
             transport=Transport::Udp listener=udp0 vias=1 names={names_before} body=4 \
             joined=50:SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds||25:Bob <sip:bob@example.com>| \
             renamed=1 headers={names_before}"
        )
    );
    assert_eq!(msg.request_uri(), Some("sip:carol@example.org"));
    assert_eq!(&msg.body[..], b"v=0\r\n");
    // Renamed to the compact form, value kept.
    assert!(msg.headers.iter().any(|h| h.name == "v"));
    assert!(msg.headers.get("Via").is_some());
}

#[test]
fn module_error_keeps_the_instance_and_rolls_back_edits() {
    let (rt, _) = runtime();
    let m = load(&rt, "error", "error", TIMEOUT);
    let mut msg = invite();
    assert_eq!(
        m.on_request(&mut msg, &ctx()),
        Err(ModuleFailure::Error("asked to fail".into()))
    );

    let before = invite_with_mode("edit-error");
    let mut msg = before.clone();
    assert_eq!(
        m.on_request(&mut msg, &ctx()),
        Err(ModuleFailure::Error("failed after editing".into()))
    );
    assert!(msg.headers.get("X-Partial").is_none(), "edits rolled back");
    assert_eq!(msg.headers.get("From"), before.headers.get("From"));
    assert_eq!(msg.to_bytes(), before.to_bytes());

    let s = m.stats();
    assert_eq!(
        (s.errors, s.instances_created, s.instances_replaced),
        (2, 1, 0)
    );
}

#[test]
fn protected_header_edit_is_refused() {
    let (rt, _) = runtime();
    let m = load(&rt, "edit-via", "edit-via", TIMEOUT);
    let mut msg = invite();
    assert_eq!(
        m.on_request(&mut msg, &ctx()),
        Err(ModuleFailure::Error("protected-header: Via".into()))
    );
    assert!(msg.headers.get("Via").is_some());
}

#[test]
fn growth_past_64_kib_is_refused() {
    let (rt, _) = runtime();
    let m = load(&rt, "big", "big-header", TIMEOUT);
    let mut msg = invite();
    match m.on_request(&mut msg, &ctx()) {
        Err(ModuleFailure::Error(e)) => assert!(e.starts_with("too-large after 7"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(msg.headers.get("X-Big").is_none(), "rolled back");
}

/// Runs one misbehaving call, then checks the instance was replaced and the module
/// works again.
fn fails_then_recovers(mode: &str, expected: ModuleFailure, timeout: Duration) -> Duration {
    let (rt, _) = runtime();
    let m = load(&rt, mode, "ok", timeout);
    let mut msg = invite_with_mode(mode);
    let before = msg.to_bytes();
    let t = Instant::now();
    let got = m.on_request(&mut msg, &ctx());
    let elapsed = t.elapsed();
    assert_eq!(got, Err(expected), "mode {mode}");
    assert_eq!(msg.to_bytes(), before, "message untouched");
    let s = m.stats();
    assert_eq!(s.instances_replaced, 1, "{s:?}");
    assert_eq!(s.live_instances, 0, "{s:?}");

    let mut msg = invite();
    assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    assert_eq!(msg.headers.get("X-Ok"), Some("1"));
    let s = m.stats();
    assert_eq!(
        (s.instances_created, s.live_instances, s.idle_instances),
        (2, 1, 1)
    );
    elapsed
}

#[test]
fn trap_is_classified_and_the_instance_replaced() {
    fails_then_recovers(
        "trap",
        ModuleFailure::Trap("wasm trap: wasm `unreachable` instruction executed".into()),
        TIMEOUT,
    );
}

#[test]
fn guest_panic_is_a_trap() {
    let (rt, _) = runtime();
    let m = load(&rt, "panic", "panic", TIMEOUT);
    let mut msg = invite();
    assert!(matches!(
        m.on_request(&mut msg, &ctx()),
        Err(ModuleFailure::Trap(_))
    ));
    assert_eq!(m.stats().traps, 1);
}

#[test]
fn infinite_loop_times_out() {
    let elapsed = fails_then_recovers("loop", ModuleFailure::Timeout, TIMEOUT);
    println!("loop stopped after {elapsed:?} (timeout {TIMEOUT:?})");
    assert!(elapsed >= TIMEOUT, "{elapsed:?}");
    assert!(elapsed < TIMEOUT * 10, "{elapsed:?}");
}

#[test]
fn runaway_allocation_is_out_of_memory() {
    fails_then_recovers("alloc", ModuleFailure::OutOfMemory, Duration::from_secs(2));
}

#[test]
fn kv_counts_and_namespaces_are_isolated() {
    let (rt, kv) = runtime();
    let mut a = spec("counter", "tenant-a", "kv");
    a.limits.timeout = TIMEOUT;
    let mut b = spec("counter", "tenant-b", "kv");
    b.limits.timeout = TIMEOUT;
    let mut c = spec("other", "tenant-a", "kv");
    c.limits.timeout = TIMEOUT;
    let (a, b, c) = (
        rt.load(&a).unwrap(),
        rt.load(&b).unwrap(),
        rt.load(&c).unwrap(),
    );

    let count = |m: &weir_wasm::LoadedModule| {
        let mut msg = invite();
        assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
        msg.headers.get("X-Count").unwrap().to_owned()
    };
    assert_eq!(count(&a), "1");
    assert_eq!(count(&a), "2");
    assert_eq!(count(&b), "1", "another tenant, same module name");
    assert_eq!(count(&c), "1", "same tenant, another module");
    assert_eq!(count(&a), "3");

    // The host stored them under "<tenant>/<module>".
    assert_eq!(
        kv.get("tenant-a/counter", "counter").unwrap(),
        Some(b"3".to_vec())
    );
    assert_eq!(
        kv.get("tenant-b/counter", "counter").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(
        kv.get("tenant-a/other", "counter").unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn one_instance_serves_a_thousand_sequential_calls() {
    let (rt, _) = runtime();
    let m = load(&rt, "pool", "ok", TIMEOUT);
    for _ in 0..1000 {
        let mut msg = invite();
        assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    }
    let s = m.stats();
    assert_eq!(s.calls, 1000);
    assert_eq!(s.instances_created, 1, "{s:?}");
    assert_eq!(s.idle_instances, 1);
}

#[test]
fn busy_when_every_instance_is_in_a_call() {
    let (rt, _) = runtime();
    let mut spec = spec("busy", "test", "ok");
    spec.limits.max_instances = 1;
    spec.limits.timeout = Duration::from_millis(300);
    let m = rt.load(&spec).unwrap();
    let slow = {
        let m = m.clone();
        thread::spawn(move || {
            let mut msg = invite_with_mode("loop");
            m.on_request(&mut msg, &ctx())
        })
    };
    thread::sleep(Duration::from_millis(100));
    let mut msg = invite();
    assert_eq!(m.on_request(&mut msg, &ctx()), Err(ModuleFailure::Busy));
    assert_eq!(slow.join().unwrap(), Err(ModuleFailure::Timeout));
    // The timed-out instance was dropped, so a new one may be made.
    assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    let s = m.stats();
    assert_eq!((s.busy, s.timeouts, s.instances_created), (1, 1, 2));
}

#[test]
fn concurrent_calls_grow_the_pool_up_to_the_limit() {
    let (rt, _) = runtime();
    let mut spec = spec("par", "test", "ok");
    spec.limits.max_instances = 4;
    let m = rt.load(&spec).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..200 {
                    let mut msg = invite();
                    match m.on_request(&mut msg, &ctx()) {
                        Ok(Verdict::Continue) | Err(ModuleFailure::Busy) => {}
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = m.stats();
    assert!(s.instances_created <= 4, "{s:?}");
    assert_eq!(s.live_instances as u64, s.instances_created);
    assert_eq!(s.calls, 800);
}

#[test]
fn init_errors_name_the_module_and_the_reason() {
    let (rt, _) = runtime();
    match rt.load(&spec("bad", "acme", "nonsense")) {
        Err(e @ Error::InitRefused { .. }) => {
            let text = e.to_string();
            assert!(text.contains("acme/bad"), "{text}");
            assert!(text.contains("unknown mode `nonsense`"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let no_mode = weir_wasm::ModuleSpec::new("bad", "acme", misbehave_wasm());
    assert!(matches!(rt.load(&no_mode), Err(Error::InitRefused { .. })));
    let bad_tenant = spec("x", "a/b", "ok");
    assert!(matches!(
        rt.load(&bad_tenant),
        Err(Error::InvalidSpec { .. })
    ));
    let missing = weir_wasm::ModuleSpec::new("x", "acme", "/nonexistent.wasm");
    assert!(matches!(
        rt.load(&missing),
        Err(Error::ReadComponent { .. })
    ));
}

#[test]
fn filesystem_is_absent_not_trapping() {
    let (rt, _) = runtime();
    let m = load(&rt, "fs", "fs", TIMEOUT);
    let mut msg = invite();
    match m.on_request(&mut msg, &ctx()) {
        Err(ModuleFailure::Error(e)) => assert!(e.starts_with("fs refused"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wasi_shim_works_inside_tokio_workers() {
    let (rt, _) = runtime();
    let m = load(&rt, "wasi", "wasi", Duration::from_millis(100));
    let expected = "map=1 wall=true mono=true env=0 args=0";

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let m2 = m.clone();
    let got = multi
        .block_on(async move {
            tokio::spawn(async move {
                let mut msg = invite();
                let v = m2.on_request(&mut msg, &ctx());
                (v, msg.headers.get("X-Wasi").map(str::to_owned))
            })
            .await
        })
        .unwrap();
    assert_eq!(got, (Ok(Verdict::Continue), Some(expected.to_owned())));

    let single = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = single.block_on(async {
        let mut msg = invite();
        let v = m.on_request(&mut msg, &ctx());
        (v, msg.headers.get("X-Wasi").map(str::to_owned))
    });
    assert_eq!(got, (Ok(Verdict::Continue), Some(expected.to_owned())));
}

#[test]
fn registry_swap_leaves_in_flight_calls_on_the_old_version() {
    let (rt, _) = runtime();
    let registry = Arc::new(ModuleRegistry::new());
    let mut slow = spec("route", "test", "ok");
    slow.limits.timeout = Duration::from_millis(200);
    let v1 = rt.load(&slow).unwrap();
    registry.replace(v1.qualified_name(), v1.clone());

    // An in-flight call holds v1 (it loops until its timeout).
    let held = registry.get("test/route").unwrap();
    let in_flight = thread::spawn(move || {
        let mut msg = invite_with_mode("loop");
        held.on_request(&mut msg, &ctx())
    });
    thread::sleep(Duration::from_millis(50));

    let v2 = rt.load(&spec("route", "test", "reply")).unwrap();
    let old = registry.replace("test/route", v2).unwrap();
    assert!(Arc::ptr_eq(&old, &v1));
    let mut msg = invite();
    assert!(matches!(
        registry
            .get("test/route")
            .unwrap()
            .on_request(&mut msg, &ctx()),
        Ok(Verdict::Reply { code: 403, .. })
    ));
    assert_eq!(in_flight.join().unwrap(), Err(ModuleFailure::Timeout));
    assert_eq!(v1.stats().calls, 1);
    assert_eq!(registry.snapshot().len(), 1);
}

#[test]
fn the_per_thread_registry_copy_follows_every_change() {
    let (rt, _) = runtime();
    let registry = ModuleRegistry::new();
    let call = |registry: &ModuleRegistry| {
        registry.with("test/route", |m| {
            m.map(|m| {
                let mut msg = invite();
                m.on_request(&mut msg, &ctx())
            })
        })
    };
    assert_eq!(call(&registry), None);
    registry.replace("test/route", rt.load(&spec("route", "test", "ok")).unwrap());
    assert_eq!(call(&registry), Some(Ok(Verdict::Continue)));
    registry.replace(
        "test/route",
        rt.load(&spec("route", "test", "reply")).unwrap(),
    );
    assert!(matches!(
        call(&registry),
        Some(Ok(Verdict::Reply { code: 403, .. }))
    ));
    // A nested read (the slot's copy is in use) reads the shared map.
    let nested = registry.with("test/route", |outer| {
        registry.with("test/route", |inner| match (outer, inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        })
    });
    assert!(nested);
    registry.remove("test/route");
    assert_eq!(call(&registry), None);
}

#[test]
fn each_thread_keeps_its_own_instance() {
    let (rt, _) = runtime();
    let m = load(&rt, "affine", "ok", TIMEOUT);
    // Two threads calling in turn: two instances, each reused by its thread, none made
    // per call.
    for _ in 0..50 {
        for _ in 0..2 {
            let m = m.clone();
            let t = thread::spawn(move || {
                let mut msg = invite();
                m.on_request(&mut msg, &ctx())
            });
            assert_eq!(t.join().unwrap(), Ok(Verdict::Continue));
        }
    }
    let s = m.stats();
    assert_eq!(s.calls, 100);
    // Threads are new each time, so they share slots and take instances left in
    // others' slots rather than make new ones.
    assert_eq!(s.instances_created, 1, "{s:?}");
    assert_eq!(s.idle_instances, 1, "{s:?}");
}

#[test]
fn chain_context_reaches_the_module() {
    let (rt, _) = runtime();
    let m = load(&rt, "inspect-ctx", "inspect", TIMEOUT);
    let mut msg = invite();
    assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
    assert_eq!(
        msg.headers.get("X-Context"),
        Some("hook=Hook::Request failure=0 cancelled=false")
    );
    let mut failure = ctx();
    failure.hook = weir_wasm::Hook::Failure;
    failure.failure_status = 486;
    failure.cancelled = true;
    let mut msg = invite();
    assert_eq!(m.on_request(&mut msg, &failure), Ok(Verdict::Continue));
    assert_eq!(
        msg.headers.get("X-Context"),
        Some("hook=Hook::Failure failure=486 cancelled=true")
    );
}
