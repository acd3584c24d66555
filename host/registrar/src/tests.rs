//! Behaviour tests: every registrar / lookup rule, deterministic rng, in-memory store.

use std::sync::Arc;

use rand::rngs::mock::StepRng;
use rand::rngs::StdRng;
use rand::SeedableRng;
use weir_message::{Message, Method};

use crate::testing::{BrokenStore, MemStore, Subs};
use crate::*;

const T0: u64 = 1_700_000_000_000;
const INST: &str = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
const INST2: &str = "<urn:uuid:11111111-0000-1000-8000-000a95a0e128>";

fn setup(cfg: Config) -> (Arc<MemStore>, Registrar) {
    let store = Arc::new(MemStore::default());
    let reg = Registrar::new(cfg, store.clone()).unwrap();
    (store, reg)
}

fn ctx(now_ms: u64) -> RequestContext<'static> {
    RequestContext {
        source: "192.0.2.10:5060".parse().unwrap(),
        transport: "udp",
        listener: Some("udp0"),
        now_ms,
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// A REGISTER for alice@example.com with Call-ID `call_id`, CSeq `cseq`, plus `extra`
/// header lines (`Name: value`).
fn req(call_id: &str, cseq: u32, extra: &[&str]) -> Message {
    let mut m = Message::new_request(Method::Register, "sip:example.com");
    m.headers
        .push("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1");
    m.headers.push("From", "<sip:alice@example.com>;tag=1");
    m.headers.push("To", "<sip:alice@example.com>");
    m.headers.push("Call-ID", call_id);
    m.headers.push("CSeq", format!("{cseq} REGISTER"));
    for line in extra {
        let (n, v) = line.split_once(':').unwrap();
        m.headers.push(n.trim(), v.trim());
    }
    m
}

fn reg_at(r: &Registrar, m: &Message, now: u64) -> Registered {
    r.register(m, &ctx(now), &mut rng())
}

fn found(l: Lookup) -> Vec<Target> {
    match l {
        Lookup::Found(t) => t,
        other => panic!("expected Found, got {other:?}"),
    }
}

fn contact_uris(r: &Registrar, now: u64) -> Vec<String> {
    match r.lookup("sip:alice@example.com", now) {
        Lookup::Found(t) => t.into_iter().map(|t| t.uri).collect(),
        _ => Vec::new(),
    }
}

fn expires_of(reply: &Registered) -> u32 {
    let c = reply.header("Contact").unwrap();
    let e = c.split(";expires=").nth(1).unwrap();
    e.split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

const A: &str = "Contact: <sip:alice@192.0.2.10:5060>";

// === basic ===

#[test]
fn first_register_and_contact_format() {
    let (store, r) = setup(Config::default());
    let reply = reg_at(
        &r,
        &req(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10:5060>;expires=600"],
        ),
        T0,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.reason, "OK");
    assert_eq!(reply.result, SaveResult::Inserted);
    assert_eq!(reply.aor.as_deref(), Some("sip:alice@example.com"));
    assert_eq!(
        reply.headers,
        vec![(
            "Contact".to_string(),
            "<sip:alice@192.0.2.10:5060>;expires=600".to_string()
        )]
    );
    assert_eq!(reply.events.len(), 1);
    assert_eq!(reply.events[0].kind, EventKind::Added);
    let b = &store.raw("sip:alice@example.com")[0];
    assert_eq!(b.expires_at_ms, T0 + 600_000);
    assert_eq!(b.call_id, "c1");
    assert_eq!(b.cseq, 1);
    assert_eq!(b.listener.as_deref(), Some("udp0"));
    assert_eq!(b.received, None, "contact matches the source: no NAT");
    assert!(b.ruid.starts_with("uloc-"));
}

#[test]
fn ruid_format() {
    let (_s, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &[A]), T0);
    let ruid = &x.events[0].binding.ruid;
    let parts: Vec<&str> = ruid.split('-').collect();
    assert_eq!(parts.len(), 4, "{ruid}");
    assert_eq!(parts[0], "uloc");
    assert_eq!(parts[1], format!("{:x}", T0 / 1000));
    assert_eq!(parts[2], "0");
    assert_eq!(parts[3].len(), 8);
    assert!(parts[3]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn events_in_order_with_the_bindings_as_stored() {
    let (store, r) = setup(Config::default());
    let first = reg_at(
        &r,
        &req(
            "c1",
            1,
            &["Contact: <sip:a@192.0.2.10:5060>, <sip:b@192.0.2.10:5060>, <sip:c@192.0.2.10:5060>"],
        ),
        T0,
    );
    let kinds = |x: &Registered| {
        x.events
            .iter()
            .map(|e| (e.kind, e.binding.contact.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&first),
        vec![
            (EventKind::Added, "sip:a@192.0.2.10:5060".to_string()),
            (EventKind::Added, "sip:b@192.0.2.10:5060".to_string()),
            (EventKind::Added, "sip:c@192.0.2.10:5060".to_string()),
        ]
    );
    // b refreshed, a removed, d added, c untouched: Removed first, then list order.
    let x = reg_at(
        &r,
        &req(
            "c1",
            2,
            &["Contact: <sip:b@192.0.2.10:5060>;expires=100, <sip:a@192.0.2.10:5060>;expires=0, <sip:d@192.0.2.10:5060>"],
        ),
        T0 + 1_000,
    );
    assert_eq!(x.status, 200);
    assert_eq!(x.result, SaveResult::Inserted);
    assert_eq!(
        kinds(&x),
        vec![
            (EventKind::Removed, "sip:a@192.0.2.10:5060".to_string()),
            (EventKind::Refreshed, "sip:b@192.0.2.10:5060".to_string()),
            (EventKind::Added, "sip:d@192.0.2.10:5060".to_string()),
        ]
    );
    let stored = store.raw("sip:alice@example.com");
    assert_eq!(stored.len(), 3);
    assert_eq!(x.events[0].binding, first.events[0].binding);
    assert_eq!(x.events[1].binding, stored[0]);
    assert_eq!(x.events[2].binding, stored[2]);
    assert!(x.events.iter().all(|e| e.aor == "sip:alice@example.com"));
}

#[test]
fn several_lines_compact_form_and_remaining_expires() {
    let (_s, r) = setup(Config::default());
    let reply = reg_at(
        &r,
        &req(
            "c1",
            1,
            &[
                "m: <sip:a@192.0.2.10:5060>;expires=100, \"Bob, x\" <sip:b@192.0.2.10:5060>",
                "Contact: sip:c@192.0.2.10:5060;q=0.25",
                "Expires: 300",
            ],
        ),
        T0,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.events.len(), 3);
    // remaining seconds are printed 10 s later; q first, then expires
    let later = reg_at(&r, &req("c1", 2, &[]), T0 + 10_000);
    assert_eq!(later.result, SaveResult::Fetched);
    assert_eq!(
        later.header("Contact").unwrap(),
        "<sip:c@192.0.2.10:5060>;q=0.25;expires=290, <sip:a@192.0.2.10:5060>;expires=90, <sip:b@192.0.2.10:5060>;expires=290"
    );
}

#[test]
fn fetch_without_contact() {
    let (_s, r) = setup(Config::default());
    let reply = reg_at(&r, &req("c1", 1, &[]), T0);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.result, SaveResult::Fetched);
    assert!(reply.headers.is_empty());
    reg_at(&r, &req("c1", 2, &[A]), T0);
    let reply = reg_at(&r, &req("c1", 3, &[]), T0 + 1000);
    assert_eq!(
        reply.header("Contact"),
        Some("<sip:alice@192.0.2.10:5060>;expires=3599")
    );
    assert!(reply.events.is_empty());
}

// === expiry ===

#[test]
fn expiry_precedence() {
    let (_s, r) = setup(Config::default());
    // contact param beats header
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>;expires=120", "Expires: 200"]),
        T0,
    );
    assert_eq!(expires_of(&x), 120);
    // header beats default
    let (_s, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>", "Expires: 200"]),
        T0,
    );
    assert_eq!(expires_of(&x), 200);
    // default
    let (_s, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0);
    assert_eq!(expires_of(&x), 3600);
    // non-numeric contact expires -> default_expires (not the header)
    let (_s, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req(
            "c1",
            1,
            &["Contact: <sip:a@h>;expires=soon", "Expires: 200"],
        ),
        T0,
    );
    assert_eq!(expires_of(&x), 3600);
    // empty / flag expires param -> as if absent (header)
    let (_s, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>;expires", "Expires: 200"]),
        T0,
    );
    assert_eq!(expires_of(&x), 200);
    // huge values saturate, then max_expires
    let (_s, r) = setup(Config {
        max_expires: 7200,
        ..Config::default()
    });
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>;expires=99999999999999"]),
        T0,
    );
    assert_eq!(expires_of(&x), 7200);
    // unparsable Expires header -> 400
    let (_s, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>", "Expires: soon"]),
        T0,
    );
    assert_eq!(x.status, 400);
    assert_eq!(x.header("P-Registrar-Error"), Some("Expires parse error"));
}

#[test]
fn min_expires_raise_or_423() {
    let (_s, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;expires=30"]), T0);
    assert_eq!(expires_of(&x), 60);

    let (store, r) = setup(Config {
        min_expires_mode: true,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;expires=30"]), T0);
    assert_eq!(x.status, 423);
    assert_eq!(x.reason, "Interval Too Brief");
    assert_eq!(x.header("Min-Expires"), Some("60"));
    assert_eq!(x.header("P-Registrar-Error"), Some("Interval too brief"));
    assert!(x.header("Retry-After").is_none());
    assert!(store.raw("sip:alice@example.com").is_empty());
    // 0 is a removal, never "too brief"
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:a@h>;expires=0"]), T0);
    assert_eq!(x.status, 200);
    // min_expires = 0 disables
    let (_s, r) = setup(Config {
        min_expires: 0,
        min_expires_mode: true,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;expires=1"]), T0);
    assert_eq!(expires_of(&x), 1);
}

#[test]
fn max_expires_clamps() {
    let (_s, r) = setup(Config {
        max_expires: 1800,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0);
    assert_eq!(expires_of(&x), 1800);
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:a@h>;expires=1799"]), T0);
    assert_eq!(expires_of(&x), 1799);
}

#[test]
fn randomisation_bounds() {
    let cfg = Config {
        expires_range: 20,
        ..Config::default()
    };
    let r = Registrar::new(cfg, Arc::new(MemStore::default())).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200u64 {
        let m = req(&format!("c{seed}"), 1, &["Contact: <sip:a@h>;expires=1000"]);
        let x = r.register(&m, &ctx(T0), &mut StdRng::seed_from_u64(seed));
        let e = expires_of(&x);
        assert!((800..=1000).contains(&e), "{e}");
        seen.insert(e);
    }
    assert!(seen.len() > 20, "spread: {}", seen.len());
    // extremes with a mock rng: lowest draw gives the lower bound
    let (_s, r) = setup(Config {
        expires_range: 20,
        ..Config::default()
    });
    let m = req("c1", 1, &["Contact: <sip:a@h>;expires=1000"]);
    let x = r.register(&m, &ctx(T0), &mut StepRng::new(0, 0));
    assert_eq!(expires_of(&x), 800);
    // the default value uses default_expires_range, not expires_range
    let (_s, r) = setup(Config {
        expires_range: 0,
        default_expires_range: 50,
        ..Config::default()
    });
    let x = r.register(
        &req("c1", 1, &["Contact: <sip:a@h>"]),
        &ctx(T0),
        &mut StepRng::new(0, 0),
    );
    assert_eq!(expires_of(&x), 1800);
    let x = r.register(
        &req("c2", 1, &["Contact: <sip:b@h>;expires=1000"]),
        &ctx(T0),
        &mut StepRng::new(0, 0),
    );
    assert_eq!(
        expires_of(&x).min(1000),
        1000,
        "client value not randomised"
    );
    // re-clamped to min_expires after randomising
    let (_s, r) = setup(Config {
        expires_range: 90,
        min_expires: 60,
        ..Config::default()
    });
    let x = r.register(
        &req("c1", 1, &["Contact: <sip:a@h>;expires=100"]),
        &ctx(T0),
        &mut StepRng::new(0, 0),
    );
    assert_eq!(expires_of(&x), 60);
    // flag 0x08: no randomisation
    let (_s, r) = setup(Config {
        expires_range: 50,
        ..Config::default()
    });
    let x = r.register_with(
        &req("c1", 1, &["Contact: <sip:a@h>;expires=1000"]),
        &ctx(T0),
        &SaveOptions {
            no_randomize: true,
            ..SaveOptions::default()
        },
        &mut StepRng::new(0, 0),
    );
    assert_eq!(expires_of(&x), 1000);
}

#[test]
fn expired_bindings_disappear_on_time() {
    let (store, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;expires=60"]), T0);
    assert_eq!(
        found(r.lookup("sip:alice@example.com", T0 + 59_999)).len(),
        1
    );
    assert_eq!(
        r.lookup("sip:alice@example.com", T0 + 60_000),
        Lookup::NotFound
    );
    assert!(!r.registered("sip:alice@example.com", T0 + 60_000).unwrap());
    let ev = r.purge(T0 + 60_000).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::Expired);
    assert_eq!(ev[0].aor, "sip:alice@example.com");
    assert!(store.raw("sip:alice@example.com").is_empty());
    assert!(r.purge(T0 + 60_000).unwrap().is_empty());
}

// === star ===

#[test]
fn star_rules() {
    let (store, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]), T0);
    // star without Expires: default 3600 != 0
    let x = reg_at(&r, &req("c1", 2, &["Contact: *"]), T0);
    assert_eq!(x.status, 400);
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("* used in contact and expires is not zero")
    );
    let x = reg_at(&r, &req("c1", 2, &["Contact: *", "Expires: 60"]), T0);
    assert_eq!(x.status, 400);
    // star with another contact (same line or another line)
    for extra in [
        &["Contact: *, <sip:c@h>", "Expires: 0"][..],
        &["Contact: *", "m: <sip:c@h>", "Expires: 0"][..],
    ] {
        let x = reg_at(&r, &req("c1", 2, extra), T0);
        assert_eq!(x.status, 400);
        assert_eq!(
            x.header("P-Registrar-Error"),
            Some("* used in contact and more than 1 contact")
        );
    }
    assert_eq!(store.raw("sip:alice@example.com").len(), 2);
    let x = reg_at(&r, &req("c1", 2, &["Contact: *", "Expires: 0"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.result, SaveResult::Deleted);
    assert!(x.header("Contact").is_none());
    assert_eq!(x.events.len(), 2);
    assert!(x.events.iter().all(|e| e.kind == EventKind::Removed));
    assert!(store.raw("sip:alice@example.com").is_empty());
    // on an empty AOR: still 200
    let x = reg_at(&r, &req("c9", 1, &["Contact: *", "Expires: 0"]), T0);
    assert_eq!(x.status, 200);
    assert!(x.events.is_empty());
}

#[test]
fn expires_zero_removes_one() {
    let (_s, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]), T0);
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:a@h>;expires=0"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.result, SaveResult::Deleted);
    assert_eq!(x.events.len(), 1);
    assert_eq!(x.events[0].kind, EventKind::Removed);
    assert_eq!(x.events[0].binding.contact, "sip:a@h");
    assert_eq!(x.header("Contact"), Some("<sip:b@h>;expires=3600"));
    // removing an unknown contact changes nothing
    let x = reg_at(
        &r,
        &req("c1", 3, &["Contact: <sip:zz@h>", "Expires: 0"]),
        T0,
    );
    assert_eq!(x.status, 200);
    assert!(x.events.is_empty());
    assert_eq!(contact_uris(&r, T0), vec!["sip:b@h"]);
}

// === CSeq ===

#[test]
fn cseq_ordering_and_retransmission_window() {
    let (_s, r) = setup(Config::default());
    let first = reg_at(&r, &req("c1", 10, &[A]), T0);
    assert_eq!(first.status, 200);
    // lower CSeq, same Call-ID
    let x = reg_at(&r, &req("c1", 9, &[A]), T0 + 1000);
    assert_eq!(x.status, 400);
    assert_eq!(x.header("P-Registrar-Error"), Some("Invalid CSeq number"));
    assert!(x.header("Contact").is_some(), "current bindings listed");
    // same CSeq within 20 s: retransmission, 200, nothing changes
    let x = reg_at(
        &r,
        &req(
            "c1",
            10,
            &["Contact: <sip:alice@192.0.2.10:5060>;expires=100"],
        ),
        T0 + 19_999,
    );
    assert_eq!(x.status, 200);
    assert!(x.events.is_empty());
    assert_eq!(
        expires_of(&x),
        3581,
        "expiry not changed by the retransmission"
    );
    // same CSeq after 20 s: 400
    let x = reg_at(&r, &req("c1", 10, &[A]), T0 + 20_000);
    assert_eq!(x.status, 400);
    // higher CSeq refreshes
    let x = reg_at(&r, &req("c1", 11, &[A]), T0 + 30_000);
    assert_eq!(x.status, 200);
    assert_eq!(x.result, SaveResult::Updated);
    assert_eq!(x.events[0].kind, EventKind::Refreshed);
    assert_eq!(
        x.events[0].binding.ruid, first.events[0].binding.ruid,
        "ruid stable"
    );
    // another Call-ID with a lower CSeq is fine (new dialog of the UA)
    let x = reg_at(&r, &req("c2", 1, &[A]), T0 + 40_000);
    assert_eq!(x.status, 200);
    // cseq_delay is configurable
    let (_s, r) = setup(Config {
        cseq_delay: 0,
        ..Config::default()
    });
    reg_at(&r, &req("c1", 10, &[A]), T0);
    assert_eq!(reg_at(&r, &req("c1", 10, &[A]), T0).status, 400);
}

#[test]
fn failed_request_writes_nothing() {
    let (store, r) = setup(Config::default());
    reg_at(&r, &req("c1", 5, &["Contact: <sip:b@h>"]), T0);
    // first contact is new, the second has a bad CSeq: nothing is stored
    let x = reg_at(&r, &req("c1", 4, &["Contact: <sip:a@h>, <sip:b@h>"]), T0);
    assert_eq!(x.status, 400);
    assert_eq!(store.raw("sip:alice@example.com").len(), 1);
}

// === max_contacts / Retry-After ===

#[test]
fn max_contacts_arithmetic() {
    let cfg = Config {
        max_contacts: 2,
        ..Config::default()
    };
    let (store, r) = setup(cfg.clone());
    assert_eq!(
        reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]), T0).status,
        200
    );
    // a third: 503
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:c@h>"]), T0);
    assert_eq!(x.status, 503);
    assert_eq!(x.reason, "Service Unavailable");
    assert_eq!(x.result, SaveResult::TooMany);
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("Too many registered contacts")
    );
    assert!(x.header("Retry-After").is_none(), "retry_after off");
    assert_eq!(store.raw("sip:alice@example.com").len(), 2);
    // add one while removing one: 2 + 1 - 1 = 2
    let x = reg_at(
        &r,
        &req(
            "c1",
            3,
            &["Contact: <sip:c@h>", "Contact: <sip:a@h>;expires=0"],
        ),
        T0,
    );
    assert_eq!(x.status, 200);
    assert_eq!(contact_uris(&r, T0), vec!["sip:b@h", "sip:c@h"]);
    // refreshing existing ones at the limit is fine
    assert_eq!(
        reg_at(&r, &req("c1", 4, &["Contact: <sip:b@h>, <sip:c@h>"]), T0).status,
        200
    );
    // a retransmission does not count
    assert_eq!(
        reg_at(
            &r,
            &req("c1", 4, &["Contact: <sip:b@h>, <sip:c@h>"]),
            T0 + 1
        )
        .status,
        200
    );
    // expired bindings do not count
    let (_s, r) = setup(cfg);
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>;expires=60, <sip:b@h>"]),
        T0,
    );
    assert_eq!(
        reg_at(&r, &req("c1", 2, &["Contact: <sip:c@h>"]), T0 + 61_000).status,
        200
    );
    // more new contacts than allowed on an empty AOR
    let (store, r) = setup(Config {
        max_contacts: 1,
        ..Config::default()
    });
    assert_eq!(
        reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]), T0).status,
        503
    );
    assert!(store.raw("sip:alice@example.com").is_empty());
}

#[test]
fn retry_after_fixed_and_range() {
    let (_s, r) = setup(Config {
        max_contacts: 1,
        retry_after: RetryAfter::Fixed(30),
        ..Config::default()
    });
    reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0);
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:b@h>"]), T0);
    assert_eq!(x.status, 503);
    assert_eq!(x.header("Retry-After"), Some("30"));
    // not on 4xx
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0 + 60_000);
    assert_eq!(x.status, 400);
    assert!(x.header("Retry-After").is_none());

    let (_s, r) = setup(Config {
        max_contacts: 1,
        retry_after: RetryAfter::Range { min: 10, max: 310 },
        ..Config::default()
    });
    reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let x = r.register(
            &req("c1", 2, &["Contact: <sip:b@h>"]),
            &ctx(T0),
            &mut StdRng::seed_from_u64(seed),
        );
        let v: u32 = x.header("Retry-After").unwrap().parse().unwrap();
        assert!((10..=310).contains(&v));
        seen.insert(v);
    }
    assert!(seen.len() > 10);
    // the storm answer
    let o = r.overloaded(&mut StepRng::new(0, 0));
    assert_eq!(o.status, 500);
    assert_eq!(o.header("Retry-After"), Some("10"));
}

#[test]
fn store_errors_give_500() {
    let r = Registrar::new(
        Config {
            retry_after: RetryAfter::Fixed(10),
            ..Config::default()
        },
        Arc::new(BrokenStore),
    )
    .unwrap();
    for extra in [&[A][..], &[][..], &["Contact: *", "Expires: 0"][..]] {
        let x = reg_at(&r, &req("c1", 1, extra), T0);
        assert_eq!(x.status, 500, "{extra:?}");
        assert_eq!(x.reason, "Server Internal Error");
        assert!(x.header("P-Registrar-Error").is_some());
        assert_eq!(x.header("Retry-After"), Some("10"));
        assert_eq!(x.result, SaveResult::Error);
    }
    let l = r.lookup("sip:alice@example.com", T0);
    assert!(matches!(l, Lookup::Error(_)));
    assert_eq!(r.lookup_reply(&l), Some((500, "Server Internal Error")));
    assert!(r.purge(T0).is_err());
    assert!(r.registered("sip:alice@example.com", T0).is_err());
}

// === instance / reg-id (RFC 5626 / 5627) ===

#[test]
fn one_binding_per_instance() {
    let (_s, r) = setup(Config::default());
    let c1 = format!("Contact: <sip:alice@10.0.0.1:5060>;+sip.instance=\"{INST}\"");
    let first = reg_at(&r, &req("c1", 1, &[&c1]), T0);
    let ruid = first.events[0].binding.ruid.clone();
    assert_eq!(first.events[0].binding.instance.as_deref(), Some(INST));
    // the device moved (new IP): same instance, same Call-ID -> binding replaced
    let c2 = format!("Contact: <sip:alice@10.0.0.2:5060>;+sip.instance=\"{INST}\"");
    let x = reg_at(&r, &req("c1", 2, &[&c2]), T0 + 1000);
    assert_eq!(x.status, 200);
    assert_eq!(x.events.len(), 1);
    assert_eq!(x.events[0].kind, EventKind::Refreshed);
    assert_eq!(x.events[0].binding.ruid, ruid);
    assert_eq!(contact_uris(&r, T0 + 1000), vec!["sip:alice@10.0.0.2:5060"]);
    // rebooted (new Call-ID, CSeq restarts): still one binding
    let c3 = format!(
        "Contact: <sip:alice@10.0.0.3:5060>;+sip.instance=\"{}\"",
        INST.to_uppercase()
    );
    let x = reg_at(&r, &req("other", 1, &[&c3]), T0 + 2000);
    assert_eq!(x.status, 200);
    assert_eq!(contact_uris(&r, T0 + 2000), vec!["sip:alice@10.0.0.3:5060"]);
    // another device is another binding
    let c4 = format!("Contact: <sip:alice@10.0.0.4:5060>;+sip.instance=\"{INST2}\"");
    reg_at(&r, &req("d1", 1, &[&c4]), T0 + 3000);
    assert_eq!(contact_uris(&r, T0 + 3000).len(), 2);
}

#[test]
fn reg_id_flows_and_restart() {
    let (_s, r) = setup(Config::default());
    let f1 = format!("Contact: <sip:alice@10.0.0.1:5060>;+sip.instance=\"{INST}\";reg-id=1");
    let f2 = format!("Contact: <sip:alice@10.0.0.1:5062>;+sip.instance=\"{INST}\";reg-id=2");
    reg_at(&r, &req("c1", 1, &[&f1]), T0);
    reg_at(&r, &req("c2", 1, &[&f2]), T0);
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(t.len(), 2, "two flows of one instance coexist");
    assert_eq!(t[0].reg_id, Some(1));
    // flow 1 re-registers with a new Call-ID: the instance's other flows go
    let x = reg_at(&r, &req("c3", 1, &[&f1]), T0 + 1000);
    assert_eq!(x.status, 200);
    assert_eq!(
        x.events
            .iter()
            .filter(|e| e.kind == EventKind::Removed)
            .count(),
        1
    );
    let t = found(r.lookup("sip:alice@example.com", T0 + 1000));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].reg_id, Some(1));
}

#[test]
fn reg_id_validation() {
    let (_s, r) = setup(Config::default());
    for bad in ["0", "x", "4294967295"] {
        let c = format!("Contact: <sip:a@h>;+sip.instance=\"{INST}\";reg-id={bad}");
        let x = reg_at(&r, &req("c1", 1, &[&c]), T0);
        assert_eq!(x.status, 400, "{bad}");
        assert_eq!(x.header("P-Registrar-Error"), Some("Invalid Reg-Id number"));
    }
    // reg-id without instance is ignored
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;reg-id=0"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.events[0].binding.reg_id, None);
}

// === q ===

#[test]
fn q_values_and_default_q() {
    let (_s, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;q=1.5"]), T0);
    assert_eq!(x.status, 400);
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("Invalid q param in contact")
    );
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>;q"]), T0);
    assert_eq!(x.status, 400);
    let x = reg_at(
        &r,
        &req(
            "c1",
            1,
            &["Contact: <sip:a@h>;q=1.0, <sip:b@h>;q=0, <sip:c@h>;q=0.125, <sip:d@h>"],
        ),
        T0,
    );
    assert_eq!(
        x.header("Contact").unwrap(),
        "<sip:a@h>;q=1;expires=3600, <sip:c@h>;q=0.125;expires=3600, <sip:b@h>;q=0;expires=3600, <sip:d@h>;expires=3600"
    );
    let (_s, r) = setup(Config {
        default_q: Some(500),
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>"]), T0);
    assert_eq!(x.header("Contact"), Some("<sip:a@h>;q=0.5;expires=3600"));
}

// === GRUU ===

#[test]
fn gruu_only_with_supported_gruu() {
    let (_s, r) = setup(Config::default());
    let c = format!("Contact: <sip:alice@192.0.2.10:5060>;+sip.instance=\"{INST}\";reg-id=1");
    let x = reg_at(&r, &req("c1", 1, &[&c]), T0);
    assert_eq!(
        x.header("Contact").unwrap(),
        format!("<sip:alice@192.0.2.10:5060>;expires=3600;+sip.instance=\"{INST}\";reg-id=1")
    );
    let x = reg_at(&r, &req("c1", 2, &[&c, "Supported: path, gruu"]), T0);
    let ruid = &x.events[0].binding.ruid;
    let contact = x.header("Contact").unwrap();
    assert!(contact.starts_with(
        "<sip:alice@192.0.2.10:5060>;expires=3600;pub-gruu=\"sip:alice@example.com;gr=urn:uuid:00000000-0000-1000-8000-000a95a0e128\";temp-gruu=\"sip:"
    ), "{contact}");
    assert!(contact.contains(&format!("temp-gruu=\"sip:{ruid}-")));
    assert!(
        contact.ends_with(&format!(
            "@example.com;gr\";+sip.instance=\"{INST}\";reg-id=1"
        )),
        "{contact}"
    );
    // gruu_enabled = 0
    let (_s, r) = setup(Config {
        gruu_enabled: false,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &[&c, "k: gruu"]), T0);
    assert!(!x.header("Contact").unwrap().contains("gruu"));
    // lookup by public GRUU selects the instance
    let (_s, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &[&c, "Contact: <sip:other@h>"]), T0);
    let t = found(r.lookup(
        "sip:alice@example.com;gr=urn:uuid:00000000-0000-1000-8000-000A95A0E128",
        T0,
    ));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].uri, "sip:alice@192.0.2.10:5060");
    assert_eq!(
        r.lookup("sip:alice@example.com;gr=urn:uuid:nope", T0),
        Lookup::NotFound
    );
    assert_eq!(r.lookup("sip:x-y@example.com;gr", T0), Lookup::NotFound);
}

// === Path ===

fn path_cfg(mode: PathMode) -> Config {
    Config {
        use_path: true,
        path_mode: mode,
        ..Config::default()
    }
}

const PATH: &str = "Path: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>";

#[test]
fn path_modes() {
    // use_path off: ignored
    let (store, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &[A, PATH]), T0);
    assert_eq!(x.status, 200);
    assert!(x.header("Path").is_none());
    assert!(store.raw("sip:alice@example.com")[0].path.is_empty());

    // strict without Supported: path -> 420, nothing stored
    let (store, r) = setup(path_cfg(PathMode::Strict));
    let x = reg_at(&r, &req("c1", 1, &[A, PATH]), T0);
    assert_eq!(x.status, 420);
    assert_eq!(x.reason, "Bad Extension");
    assert_eq!(x.header("Unsupported"), Some("path"));
    assert_eq!(
        x.header("Path"),
        Some("<sip:edge1.example.net;lr>,<sip:edge2.example.net;lr>")
    );
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("No support for found Path indicated")
    );
    assert!(store.raw("sip:alice@example.com").is_empty());
    // strict with support: echoed
    let x = reg_at(&r, &req("c1", 1, &[A, PATH, "Supported: path"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(
        x.header("Path"),
        Some("<sip:edge1.example.net;lr>,<sip:edge2.example.net;lr>")
    );
    // strict without any Path: fine
    let (_s, r) = setup(path_cfg(PathMode::Strict));
    assert_eq!(reg_at(&r, &req("c1", 1, &[A]), T0).status, 200);

    // lazy: stored, echoed only if supported
    let (store, r) = setup(path_cfg(PathMode::Lazy));
    let x = reg_at(&r, &req("c1", 1, &[A, PATH]), T0);
    assert_eq!(x.status, 200);
    assert!(x.header("Path").is_none());
    assert_eq!(store.raw("sip:alice@example.com")[0].path.len(), 2);
    let x = reg_at(&r, &req("c1", 2, &[A, PATH, "Supported: path"]), T0);
    assert!(x.header("Path").is_some());

    // off: stored, never echoed
    let (store, r) = setup(path_cfg(PathMode::Off));
    let x = reg_at(&r, &req("c1", 1, &[A, PATH, "Supported: path"]), T0);
    assert!(x.header("Path").is_none());
    assert_eq!(store.raw("sip:alice@example.com")[0].path.len(), 2);

    // bad Path
    let (_s, r) = setup(path_cfg(PathMode::Lazy));
    let x = reg_at(&r, &req("c1", 1, &[A, "Path: <sip:edge1;lr"]), T0);
    assert_eq!(x.status, 400);
    assert_eq!(x.header("P-Registrar-Error"), Some("Path parse error"));
}

#[test]
fn lookup_path_becomes_route_and_destination() {
    let (_s, r) = setup(path_cfg(PathMode::Lazy));
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:alice@10.0.0.1:5060>", PATH]),
        T0,
    );
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(t[0].uri, "sip:alice@10.0.0.1:5060");
    assert_eq!(
        t[0].route,
        vec!["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>"]
    );
    assert_eq!(
        t[0].destination.as_deref(),
        Some("sip:edge1.example.net;lr")
    );
    assert_eq!(t[0].listener.as_deref(), Some("udp0"));
}

// === received ===

#[test]
fn received_for_nat_and_destination() {
    let (_s, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:alice@10.0.0.1:5060>"]),
        T0,
    );
    assert_eq!(
        x.header("Contact"),
        Some(
            "<sip:alice@10.0.0.1:5060>;expires=3600;received=\"sip:192.0.2.10:5060;transport=udp\""
        )
    );
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(
        t[0].destination.as_deref(),
        Some("sip:192.0.2.10:5060;transport=udp")
    );
    assert!(t[0].route.is_empty());
    // port differs (default 5060 vs 5070 source)
    let (store, r) = setup(Config::default());
    let c = RequestContext {
        source: "192.0.2.10:5070".parse().unwrap(),
        ..ctx(T0)
    };
    r.register(
        &req("c1", 1, &["Contact: <sip:alice@192.0.2.10>"]),
        &c,
        &mut rng(),
    );
    assert_eq!(
        store.raw("sip:alice@example.com")[0].received.as_deref(),
        Some("sip:192.0.2.10:5070;transport=udp")
    );
    // connection-oriented transports always keep the source; IPv6 bracketed
    let (store, r) = setup(Config::default());
    let c = RequestContext {
        source: "[2001:db8::1]:40000".parse().unwrap(),
        transport: "TLS",
        ..ctx(T0)
    };
    r.register(
        &req("c1", 1, &["Contact: <sips:alice@[2001:db8::1]:40000>"]),
        &c,
        &mut rng(),
    );
    assert_eq!(
        store.raw("sip:alice@example.com")[0].received.as_deref(),
        Some("sip:[2001:db8::1]:40000;transport=tls")
    );
    // never / received_param ""
    let (store, r) = setup(Config {
        save_received: SaveReceived::Never,
        ..Config::default()
    });
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:alice@10.0.0.1:5060>"]),
        T0,
    );
    assert_eq!(store.raw("sip:alice@example.com")[0].received, None);
    assert_eq!(
        found(r.lookup("sip:alice@example.com", T0))[0].destination,
        None
    );
    let (_s, r) = setup(Config {
        received_param: String::new(),
        ..Config::default()
    });
    let x = reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:alice@10.0.0.1:5060>"]),
        T0,
    );
    assert_eq!(
        x.header("Contact"),
        Some("<sip:alice@10.0.0.1:5060>;expires=3600")
    );
}

// === outbound ===

#[test]
fn outbound_420_421_439() {
    // required, UA lacks support -> 421
    let (_s, r) = setup(Config {
        outbound_mode: OutboundMode::Required,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &[A]), T0);
    assert_eq!(x.status, 421);
    assert_eq!(x.reason, "Extension Required");
    assert_eq!(x.header("Require"), Some("outbound"));
    assert_eq!(x.header("Supported"), Some("outbound"));
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("No support for Outbound indicated")
    );
    let x = reg_at(&r, &req("c1", 1, &[A, "Supported: outbound"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.header("Require"), Some("outbound"));
    assert_eq!(x.header("Supported"), Some("outbound"));

    // none, UA requires it -> 420
    let (_s, r) = setup(Config::default());
    let x = reg_at(&r, &req("c1", 1, &[A, "Require: outbound"]), T0);
    assert_eq!(x.status, 420);
    assert_eq!(x.header("Unsupported"), Some("outbound"));
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("No support for Outbound on server")
    );

    // supported + regid_mode outbound, not first hop, no ;ob in Path -> 439
    let cfg = Config {
        outbound_mode: OutboundMode::Supported,
        regid_mode: RegIdMode::Outbound,
        flow_timer: 25,
        use_path: true,
        path_mode: PathMode::Lazy,
        ..Config::default()
    };
    let (_s, r) = setup(cfg.clone());
    let c = format!("Contact: <sip:alice@10.0.0.1:5060>;+sip.instance=\"{INST}\";reg-id=1");
    let via2 = "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2";
    let x = reg_at(&r, &req("c1", 1, &[via2, &c, "Supported: outbound"]), T0);
    assert_eq!(x.status, 439);
    assert_eq!(x.reason, "First Hop Lacks Outbound Support");
    assert_eq!(
        x.header("P-Registrar-Error"),
        Some("No support for Outbound on edge proxy")
    );
    // UA does not claim outbound: reg-id ignored instead
    let x = reg_at(&r, &req("c1", 1, &[via2, &c]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.events[0].binding.reg_id, None);
    assert_eq!(x.header("Supported"), Some("outbound"));
    assert!(x.header("Require").is_none());
    // edge proxy put ;ob in its Path: reg-id honoured, Require + Flow-Timer
    let (_s, r) = setup(cfg);
    let x = reg_at(
        &r,
        &req(
            "c1",
            1,
            &[
                via2,
                &c,
                "Supported: outbound, path",
                "Path: <sip:edge.example.net;lr;ob>",
            ],
        ),
        T0,
    );
    assert_eq!(x.status, 200);
    assert_eq!(x.events[0].binding.reg_id, Some(1));
    assert_eq!(x.header("Require"), Some("outbound"));
    assert_eq!(x.header("Flow-Timer"), Some("25"));
    assert_eq!(x.header("Path"), Some("<sip:edge.example.net;lr;ob>"));
    // first hop (one Via): reg-id honoured without Path
    let (_s, r) = setup(Config {
        outbound_mode: OutboundMode::Supported,
        regid_mode: RegIdMode::Outbound,
        ..Config::default()
    });
    let x = reg_at(&r, &req("c1", 1, &[&c, "Supported: outbound"]), T0);
    assert_eq!(x.status, 200);
    assert_eq!(x.events[0].binding.reg_id, Some(1));
}

// === flag 0x04 ===

#[test]
fn single_binding_flag() {
    let (_s, r) = setup(Config {
        max_contacts: 1,
        ..Config::default()
    });
    let opts = SaveOptions {
        single_binding: true,
        ..SaveOptions::default()
    };
    let x = r.register_with(
        &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]),
        &ctx(T0),
        &opts,
        &mut rng(),
    );
    assert_eq!(x.status, 200);
    assert_eq!(
        contact_uris(&r, T0),
        vec!["sip:a@h"],
        "only the first contact"
    );
    let x = r.register_with(
        &req("c2", 1, &["Contact: <sip:c@h>"]),
        &ctx(T0),
        &opts,
        &mut rng(),
    );
    assert_eq!(x.status, 200);
    assert_eq!(contact_uris(&r, T0), vec!["sip:c@h"]);
    assert!(x
        .events
        .iter()
        .any(|e| e.kind == EventKind::Removed && e.binding.contact == "sip:a@h"));
    assert!(x
        .events
        .iter()
        .any(|e| e.kind == EventKind::Added && e.binding.contact == "sip:c@h"));
    // a first contact with expires 0 is skipped, the next one saved
    let x = r.register_with(
        &req("c3", 1, &["Contact: <sip:c@h>;expires=0, <sip:d@h>"]),
        &ctx(T0),
        &opts,
        &mut rng(),
    );
    assert_eq!(x.status, 200);
    assert_eq!(contact_uris(&r, T0), vec!["sip:d@h"]);
}

// === malformed requests ===

#[test]
fn malformed_requests_get_400() {
    let (_s, r) = setup(Config::default());
    let mut m = req("c1", 1, &[A]);
    m.headers.remove("to");
    let x = reg_at(&r, &m, T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("To header not found"))
    );
    assert_eq!(x.aor, None);
    let mut m = req("c1", 1, &[A]);
    m.headers.remove("call-id");
    let x = reg_at(&r, &m, T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("Call-ID header not found"))
    );
    let mut m = req("c1", 1, &[A]);
    m.headers.remove("cseq");
    let x = reg_at(&r, &m, T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("CSeq header not found"))
    );
    let mut m = req("c1", 1, &[A]);
    m.headers.set("CSeq", "x REGISTER");
    assert_eq!(reg_at(&r, &m, T0).status, 400);
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h"]), T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("Contact parse error"))
    );
    let long = format!("Contact: <sip:{}@h>", "a".repeat(600));
    let x = reg_at(&r, &req("c1", 1, &[&long]), T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("Contact/received too long"))
    );
    let x = reg_at(&r, &req(&"i".repeat(300), 1, &[A]), T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("Callid too long"))
    );
    let mut m = req("c1", 1, &[A]);
    m.headers.set("To", "<sip:a%ff@example.com>");
    let x = reg_at(&r, &m, T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (400, Some("Error while unescaping username"))
    );
    let mut m = req("c1", 1, &[A]);
    m.headers.set("To", "garbage");
    assert_eq!(reg_at(&r, &m, T0).status, 400);
    let mut m = req("c1", 1, &[A]);
    m.headers
        .set("To", format!("<sip:{}@example.com>", "u".repeat(300)));
    let x = reg_at(&r, &m, T0);
    assert_eq!(
        (x.status, x.header("P-Registrar-Error")),
        (500, Some("Address Of Record too long"))
    );
}

#[test]
fn weird_input_never_panics() {
    let (_s, r) = setup(Config {
        use_path: true,
        outbound_mode: OutboundMode::Supported,
        ..Config::default()
    });
    let values = [
        "",
        "*",
        ",",
        " , ",
        "<",
        ">",
        "\"",
        "\"\\",
        "<sip:a@h>;q=",
        "<sip:a@h>;expires=-1",
        "<sip:a@h>;+sip.instance=",
        "<sip:a@h>;+sip.instance=\"\"",
        "<sip:a@h>;reg-id",
        "<sip:a@h>;;",
        "sip:a@h,,sip:b@h",
        "<tel:+123>",
        "<sip:[::1]:5060>",
        "<urn:x>",
        "\u{00e9}<sip:a@h>",
        "<sip:a@h>;expires=00000000000000000000000000001",
    ];
    for (i, v) in values.iter().enumerate() {
        for expires in ["", "0", "x", "4294967296"] {
            let mut extra = vec![format!("Contact: {v}"), format!("Path: {v}")];
            if !expires.is_empty() {
                extra.push(format!("Expires: {expires}"));
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let x = reg_at(&r, &req("c1", u32::try_from(i).unwrap() + 1, &extra), T0);
            assert!(
                [200, 400, 420, 423, 500, 503].contains(&x.status),
                "{v:?}: {}",
                x.status
            );
        }
        let _ = r.lookup(v, T0);
    }
}

// === lookup ===

#[test]
fn lookup_order_q_then_age() {
    let (_s, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &["Contact: <sip:none@h>"]), T0);
    reg_at(&r, &req("c2", 1, &["Contact: <sip:half@h>;q=0.5"]), T0 + 1);
    reg_at(&r, &req("c3", 1, &["Contact: <sip:old1@h>;q=1"]), T0 + 2);
    reg_at(&r, &req("c4", 1, &["Contact: <sip:new1@h>;q=1"]), T0 + 3);
    reg_at(&r, &req("c5", 1, &["Contact: <sip:zero@h>;q=0"]), T0 + 4);
    // refreshing the old one keeps its place
    reg_at(&r, &req("c3", 2, &["Contact: <sip:old1@h>;q=1"]), T0 + 5);
    let t = found(r.lookup("sip:ALICE@Example.COM;user=phone", T0 + 6));
    let uris: Vec<&str> = t.iter().map(|t| t.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "sip:old1@h",
            "sip:new1@h",
            "sip:half@h",
            "sip:zero@h",
            "sip:none@h"
        ]
    );
    assert_eq!(t[0].q, Some(1000));
    assert_eq!(t[0].aor, "sip:alice@example.com");

    let plan = fork_plan(t.clone());
    assert_eq!(
        plan.uri_groups(),
        vec![
            vec!["sip:old1@h".to_string(), "sip:new1@h".to_string()],
            vec!["sip:half@h".to_string()],
            vec!["sip:zero@h".to_string()],
            vec!["sip:none@h".to_string()],
        ]
    );
    assert!(plan.flows.is_empty());

    let (_s, r) = setup(Config {
        append_branches: false,
        ..Config::default()
    });
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>;q=0.1, <sip:b@h>;q=0.9"]),
        T0,
    );
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].uri, "sip:b@h");
}

#[test]
fn fork_plan_defers_extra_flows() {
    let (_s, r) = setup(Config::default());
    let f1 = format!("Contact: <sip:alice@10.0.0.1:5060>;+sip.instance=\"{INST}\";reg-id=1");
    let f2 = format!("Contact: <sip:alice@10.0.0.1:5062>;+sip.instance=\"{INST}\";reg-id=2");
    reg_at(&r, &req("c1", 1, &[&f1, &f2, "Contact: <sip:desk@h>"]), T0);
    let mut plan = fork_plan(found(r.lookup("sip:alice@example.com", T0)));
    assert_eq!(
        plan.uri_groups(),
        vec![vec![
            "sip:alice@10.0.0.1:5060".to_string(),
            "sip:desk@h".to_string()
        ]]
    );
    assert_eq!(plan.flows.len(), 1);
    let next = plan.next_flow(INST).unwrap();
    assert_eq!(next.uri, "sip:alice@10.0.0.1:5062");
    assert!(plan.next_flow(INST).is_none());
    assert_eq!(fork_plan(Vec::new()), ForkPlan::default());
}

#[test]
fn lookup_not_found_and_no_binding() {
    let store = Arc::new(MemStore::default());
    let r = Registrar::new(
        Config {
            no_binding_reply: 480,
            ..Config::default()
        },
        store,
    )
    .unwrap()
    .with_subscribers(Arc::new(Subs(vec![("alice".into(), "example.com".into())])));
    let l = r.lookup("sip:alice@example.com", T0);
    assert_eq!(l, Lookup::NoBinding);
    assert_eq!(r.lookup_reply(&l), Some((480, "Temporarily Unavailable")));
    let l = r.lookup("sip:bob@example.com", T0);
    assert_eq!(l, Lookup::NotFound);
    assert_eq!(r.lookup_reply(&l), Some((404, "Not Found")));
    assert_eq!(r.lookup("not a uri", T0), Lookup::NotFound);
    // without a subscriber store everything unknown is 404
    let (_s, r) = setup(Config::default());
    assert_eq!(r.lookup("sip:alice@example.com", T0), Lookup::NotFound);
    reg_at(&r, &req("c1", 1, &[A]), T0);
    let l = r.lookup("sip:alice@example.com", T0);
    assert_eq!(r.lookup_reply(&l), None);
}

#[test]
fn aor_normalisation_in_register_and_lookup() {
    let (store, r) = setup(Config::default());
    let mut m = req("c1", 1, &[A]);
    m.headers
        .set("To", "\"Alice\" <sips:%41lice@EXAMPLE.com:5061>;tag=x");
    assert_eq!(reg_at(&r, &m, T0).status, 200);
    assert_eq!(store.raw("sip:alice@example.com").len(), 1);
    assert_eq!(found(r.lookup("sip:alice@example.com", T0)).len(), 1);
    // explicit AOR URI (save(.., .., uri))
    let x = r.register_with(
        &req("c2", 1, &["Contact: <sip:b@h>"]),
        &ctx(T0),
        &SaveOptions {
            aor_uri: Some("sip:bob@example.com".into()),
            ..SaveOptions::default()
        },
        &mut rng(),
    );
    assert_eq!(x.aor.as_deref(), Some("sip:bob@example.com"));
    assert_eq!(found(r.lookup("sip:bob@example.com", T0)).len(), 1);
    // use_domain = 0 merges domains
    let (_s, r) = setup(Config {
        use_domain: false,
        ..Config::default()
    });
    reg_at(&r, &req("c1", 1, &[A]), T0);
    assert_eq!(found(r.lookup("sip:alice@other.example", T0)).len(), 1);
    assert_eq!(r.aor_key("sip:Alice@x").unwrap(), "sip:alice");
}

// === removal ===

#[test]
fn branch_failure_unregisters() {
    let (_s, r) = setup(Config {
        unregister_on: vec![477, 408],
        ..Config::default()
    });
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>, <sip:c@h>"]),
        T0,
    );
    let t = found(r.lookup("sip:alice@example.com", T0));
    // 486 is not listed
    assert_eq!(r.branch_failed(&t[0], 486, true, T0).unwrap(), None);
    // 408 after a provisional reply: the device is alive
    assert_eq!(r.branch_failed(&t[0], 408, true, T0).unwrap(), None);
    // 408 with no reply at all: removed
    let ev = r.branch_failed(&t[0], 408, false, T0).unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::Removed);
    assert_eq!(ev.binding.contact, "sip:a@h");
    // 477 removes
    assert!(r.branch_failed(&t[1], 477, false, T0).unwrap().is_some());
    // already gone
    assert_eq!(r.branch_failed(&t[1], 477, false, T0).unwrap(), None);
    // refreshed since the lookup: kept
    reg_at(&r, &req("c1", 2, &["Contact: <sip:c@h>"]), T0 + 5000);
    assert_eq!(r.branch_failed(&t[2], 477, false, T0 + 6000).unwrap(), None);
    assert_eq!(contact_uris(&r, T0 + 6000), vec!["sip:c@h"]);
    // default config never unregisters
    let (_s, r) = setup(Config::default());
    reg_at(&r, &req("c1", 1, &[A]), T0);
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(r.branch_failed(&t[0], 477, false, T0).unwrap(), None);
}

#[test]
fn remove_binding_and_unregister() {
    let (_s, r) = setup(Config::default());
    reg_at(
        &r,
        &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>, <sip:c@h>"]),
        T0,
    );
    let ev = r
        .remove_binding(
            "sip:alice@example.com",
            BindingRef::Contact("sip:b@h"),
            None,
            T0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(ev.binding.contact, "sip:b@h");
    assert_eq!(
        r.remove_binding("sip:alice@example.com", BindingRef::Ruid("nope"), None, T0)
            .unwrap(),
        None
    );
    let ev = r.unregister("sip:Alice@example.com", T0).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(r.lookup("sip:alice@example.com", T0), Lookup::NotFound);
    assert!(r.unregister("junk", T0).unwrap().is_empty());
}

// === store contract ===

#[test]
fn update_closure_is_retry_safe() {
    let store = Arc::new(MemStore {
        retry_once: true,
        ..MemStore::default()
    });
    let r = Registrar::new(Config::default(), store.clone()).unwrap();
    let x = reg_at(&r, &req("c1", 1, &["Contact: <sip:a@h>, <sip:b@h>"]), T0);
    assert_eq!(x.events.len(), 2);
    let x = reg_at(&r, &req("c1", 2, &["Contact: <sip:a@h>;expires=0"]), T0);
    assert_eq!(x.events.len(), 1);
    let x = reg_at(&r, &req("c1", 3, &["Contact: *", "Expires: 0"]), T0);
    assert_eq!(x.events.len(), 1);
    reg_at(&r, &req("c1", 4, &["Contact: <sip:a@h>, <sip:b@h>"]), T0);
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert!(r
        .remove_binding(&t[0].aor, BindingRef::Ruid(&t[0].ruid), None, T0)
        .unwrap()
        .is_some());
    assert_eq!(store.raw("sip:alice@example.com").len(), 1);
}

#[test]
fn user_agent_params_and_events() {
    let (store, r) = setup(Config::default());
    let x = reg_at(
        &r,
        &req(
            "c1",
            1,
            &[
                "Contact: <sip:a@h>;pn-provider=apns;pn-prid=\"tok\";+sip.ice",
                "User-Agent: Phone/1.0",
            ],
        ),
        T0,
    );
    let b = &store.raw("sip:alice@example.com")[0];
    assert_eq!(b.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(
        b.params,
        vec![
            ("pn-provider".to_string(), "apns".to_string()),
            ("pn-prid".to_string(), "\"tok\"".to_string()),
            ("+sip.ice".to_string(), String::new()),
        ]
    );
    assert_eq!(x.events[0].binding, *b);
    let t = found(r.lookup("sip:alice@example.com", T0));
    assert_eq!(t[0].params, b.params);
    assert_eq!(t[0].updated_ms, T0);
}

// === config ===

#[test]
fn config_deserialises_kamailio_style() {
    let cfg: Config = toml::from_str(
        r#"
        default_expires = 1800
        expires_range = 10
        min_expires_mode = 1
        case_sensitive = true
        retry_after = [10, 310]
        path_mode = "lazy"
        outbound_mode = 1
        save_received = "always"
        unregister_on = [477, 408]
        no_binding_reply = 480
        default_q = 500
        "#,
    )
    .unwrap();
    assert_eq!(cfg.default_expires, 1800);
    assert!(cfg.min_expires_mode);
    assert!(cfg.case_sensitive);
    assert_eq!(cfg.retry_after, RetryAfter::Range { min: 10, max: 310 });
    assert_eq!(cfg.path_mode, PathMode::Lazy);
    assert_eq!(cfg.outbound_mode, OutboundMode::Supported);
    assert_eq!(cfg.save_received, SaveReceived::Always);
    assert_eq!(cfg.min_expires, 60, "defaults kept");
    assert!(cfg.use_domain);
    cfg.validate().unwrap();

    let c: Config = toml::from_str("retry_after = 30").unwrap();
    assert_eq!(c.retry_after, RetryAfter::Fixed(30));
    let c: Config = toml::from_str("retry_after = 0").unwrap();
    assert_eq!(c.retry_after, RetryAfter::Off);
    let c: Config = serde_json::from_str(r#"{"path_mode": 0, "use_path": 1}"#).unwrap();
    assert_eq!(c.path_mode, PathMode::Off);
    assert!(c.use_path);

    for bad in [
        "nope = 1",
        "retry_after = [310, 10]",
        "retry_after = [1, 2, 3]",
        "path_mode = 3",
        "path_mode = \"sometimes\"",
        "min_expires_mode = 2",
        "default_expires = -1",
    ] {
        assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
    }
    for bad in [
        Config {
            expires_range: 101,
            ..Config::default()
        },
        Config {
            default_q: Some(1001),
            ..Config::default()
        },
        Config {
            min_expires: 100,
            max_expires: 50,
            ..Config::default()
        },
        Config {
            no_binding_reply: 500,
            ..Config::default()
        },
        Config {
            unregister_on: vec![200],
            ..Config::default()
        },
        Config {
            flow_timer: 1000,
            ..Config::default()
        },
        Config {
            realm_prefix: Some(String::new()),
            ..Config::default()
        },
        Config {
            received_param: "a b".into(),
            ..Config::default()
        },
    ] {
        assert!(Registrar::new(bad, Arc::new(MemStore::default())).is_err());
    }
}

#[test]
fn save_result_codes() {
    assert_eq!(SaveResult::Inserted.code(), 1);
    assert_eq!(SaveResult::Updated.code(), 2);
    assert_eq!(SaveResult::Deleted.code(), 3);
    assert_eq!(SaveResult::Fetched.code(), 4);
    assert_eq!(SaveResult::Error.code(), -1);
    assert_eq!(SaveResult::TooMany.code(), -2);
}
