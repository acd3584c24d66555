//! `weir:sip/subscribers`, `weir:sip/connections` and `message.connection-id` through a
//! real guest: the `auth-digest` plugin, built for wasm32-wasip2 once per test binary.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use weir_message::{Limits, Message};
use weir_store::{Credentials, KvStore, MemorySubscribers, StoreError, SubscriberStore};
use weir_wasm::{CallContext, LoadedModule, ModuleSpec, ParamValue, Runtime, Transport, Verdict};

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKreg1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=r1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: reg-1@192.0.2.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n\
Content-Length: 0\r\n\
\r\n";

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: inv-1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

/// Builds `plugins/auth-digest` for wasm32-wasip2 once and returns the component.
fn auth_digest_wasm() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = common::repo_root();
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .args(["-p", "auth-digest", "--target-dir"])
                .arg(&target_dir)
                .status()
                .expect("run cargo to build auth-digest");
            assert!(status.success(), "building auth-digest failed");
            let wasm = target_dir.join("wasm32-wasip2/release/auth_digest.wasm");
            assert!(wasm.exists(), "{} missing", wasm.display());
            wasm
        })
        .clone()
}

fn load(rt: &Runtime, name: &str, params: &[(&str, ParamValue)]) -> Arc<LoadedModule> {
    let mut spec = ModuleSpec::new(name, "test", auth_digest_wasm());
    for (k, v) in params {
        spec = spec.param(*k, v.clone());
    }
    rt.load(&spec).expect("load auth-digest")
}

fn parse(text: &str) -> Message {
    Message::parse(text.as_bytes(), &Limits::default()).expect("parse")
}

fn ctx(connection: u64) -> CallContext<'static> {
    let transport = if connection == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let mut cx = CallContext::new("192.0.2.1:5060".parse().unwrap(), transport, "l0");
    cx.connection = connection;
    cx
}

fn alice() -> Arc<MemorySubscribers> {
    Arc::new(MemorySubscribers::from_credentials([Credentials {
        username: "alice".into(),
        domain: "example.com".into(),
        password: Some("s3cret".into()),
        ha1: None,
        ha1_sha256: None,
    }]))
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The challenge header of a reply verdict, if it is one.
fn challenge(v: &Verdict) -> (u16, String) {
    match v {
        Verdict::Reply { code, headers, .. } => (
            *code,
            headers
                .iter()
                .find(|(n, _)| n.ends_with("-Authenticate"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        ),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Credentials answering `challenge` (qop=auth) for alice.
fn answer(challenge: &str, method: &str, uri: &str, password: &str) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let ha1 = md5_hex(&format!("alice:example.com:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", qop=auth, nc=00000001, cnonce=\"c0ffee\""
    )
}

fn secret() -> (&'static str, ParamValue) {
    ("secret", ParamValue::Text("0123456789abcdef-test".into()))
}

#[test]
fn register_is_challenged_then_authenticated_from_the_store() {
    let (rt, _) = common::runtime();
    rt.set_subscribers(alice());
    let m = load(&rt, "auth", &[secret()]);
    let mut msg = parse(REGISTER);
    let v = m.on_request(&mut msg, &ctx(0)).unwrap();
    let (code, ch) = challenge(&v);
    assert_eq!(code, 401);
    assert!(
        ch.starts_with("Digest realm=\"example.com\", nonce=\"") && ch.ends_with("qop=\"auth\""),
        "{ch}"
    );

    let mut msg = parse(REGISTER);
    msg.headers.push(
        "Authorization",
        answer(&ch, "REGISTER", "sip:example.com", "s3cret"),
    );
    assert_eq!(m.on_request(&mut msg, &ctx(0)), Ok(Verdict::Continue));
    assert!(msg.headers.get("Authorization").is_some());

    let mut wrong = parse(REGISTER);
    wrong.headers.push(
        "Authorization",
        answer(&ch, "REGISTER", "sip:example.com", "guess"),
    );
    assert_eq!(
        challenge(&m.on_request(&mut wrong, &ctx(0)).unwrap()).0,
        401
    );
}

#[test]
fn stored_ha1_reaches_the_guest_through_subscribers_ha1() {
    // Alice's MD5 HA1 stored in upper case, no password: the host decodes it for the
    // guest. Bob has only a SHA-256 HA1, so an MD5 response of his can never pass.
    let (rt, _) = common::runtime();
    rt.set_subscribers(Arc::new(MemorySubscribers::from_credentials([
        Credentials {
            username: "alice".into(),
            domain: "example.com".into(),
            password: None,
            ha1: Some(md5_hex("alice:example.com:s3cret").to_ascii_uppercase()),
            ha1_sha256: None,
        },
        Credentials {
            username: "bob".into(),
            domain: "example.com".into(),
            password: None,
            ha1: None,
            ha1_sha256: Some("ab".repeat(32)),
        },
    ])));
    let m = load(&rt, "auth", &[secret()]);
    let (_, ch) = challenge(&m.on_request(&mut parse(REGISTER), &ctx(0)).unwrap());
    let mut ok = parse(REGISTER);
    ok.headers.push(
        "Authorization",
        answer(&ch, "REGISTER", "sip:example.com", "s3cret"),
    );
    assert_eq!(m.on_request(&mut ok, &ctx(0)), Ok(Verdict::Continue));
    let mut wrong = parse(REGISTER);
    wrong.headers.push(
        "Authorization",
        answer(&ch, "REGISTER", "sip:example.com", "guess"),
    );
    assert_eq!(
        challenge(&m.on_request(&mut wrong, &ctx(0)).unwrap()).0,
        401
    );
    // bob (From/To are alice's, so only the HA1 lookup can refuse first: no MD5 HA1).
    let mut bob = parse(REGISTER);
    bob.headers.push(
        "Authorization",
        answer(&ch, "REGISTER", "sip:example.com", "s3cret").replace("\"alice\"", "\"bob\""),
    );
    assert_eq!(challenge(&m.on_request(&mut bob, &ctx(0)).unwrap()).0, 401);
}

#[test]
fn store_is_empty_by_default_and_can_be_swapped_after_load() {
    let (rt, _) = common::runtime();
    let m = load(&rt, "auth", &[secret()]);
    let (_, ch) = challenge(&m.on_request(&mut parse(INVITE), &ctx(0)).unwrap());
    let auth = answer(&ch, "INVITE", "sip:bob@example.com", "s3cret");
    let mut msg = parse(INVITE);
    msg.headers.push("Proxy-Authorization", auth.clone());
    // Nobody in the default store: challenged again.
    assert_eq!(challenge(&m.on_request(&mut msg, &ctx(0)).unwrap()).0, 407);
    // The store set after the module was loaded is the one it asks.
    rt.set_subscribers(alice());
    let mut msg = parse(INVITE);
    msg.headers.push("Proxy-Authorization", auth);
    assert_eq!(m.on_request(&mut msg, &ctx(0)), Ok(Verdict::Continue));
    assert!(msg.headers.get("Proxy-Authorization").is_none());
}

struct Down;

impl SubscriberStore for Down {
    fn credentials(&self, _: &str, _: &str) -> Result<Option<Credentials>, StoreError> {
        Err(StoreError::Backend("database unreachable".into()))
    }
}

#[test]
fn store_failure_reaches_the_guest_as_a_backend_error() {
    let (rt, _) = common::runtime();
    rt.set_subscribers(Arc::new(Down));
    let m = load(&rt, "auth", &[secret()]);
    let (_, ch) = challenge(&m.on_request(&mut parse(INVITE), &ctx(0)).unwrap());
    let mut msg = parse(INVITE);
    msg.headers.push(
        "Proxy-Authorization",
        answer(&ch, "INVITE", "sip:bob@example.com", "s3cret"),
    );
    assert_eq!(challenge(&m.on_request(&mut msg, &ctx(0)).unwrap()).0, 500);
}

#[test]
fn connection_trust_binds_and_reads_the_connection_id() {
    let (rt, _) = common::runtime();
    rt.set_subscribers(alice());
    let m = load(
        &rt,
        "auth",
        &[secret(), ("trust_connection", ParamValue::Boolean(true))],
    );
    let (_, ch) = challenge(&m.on_request(&mut parse(INVITE), &ctx(41)).unwrap());
    let mut msg = parse(INVITE);
    msg.headers.push(
        "Proxy-Authorization",
        answer(&ch, "INVITE", "sip:bob@example.com", "s3cret"),
    );
    assert_eq!(m.on_request(&mut msg, &ctx(41)), Ok(Verdict::Continue));
    assert_eq!(
        rt.connections().identity(41).as_deref(),
        Some("alice@example.com")
    );
    // The next request on connection 41 needs no credentials; on 42 it does.
    assert_eq!(
        m.on_request(&mut parse(INVITE), &ctx(41)),
        Ok(Verdict::Continue)
    );
    assert_eq!(
        challenge(&m.on_request(&mut parse(INVITE), &ctx(42)).unwrap()).0,
        407
    );
    // A binding the host forgets (e.g. the connection closed) is trusted no more.
    assert!(rt.connections().forget(41));
    assert_eq!(
        challenge(&m.on_request(&mut parse(INVITE), &ctx(41)).unwrap()).0,
        407
    );
    // UDP binds nothing.
    let mut msg = parse(INVITE);
    msg.headers.push(
        "Proxy-Authorization",
        answer(&ch, "INVITE", "sip:bob@example.com", "s3cret"),
    );
    assert_eq!(m.on_request(&mut msg, &ctx(0)), Ok(Verdict::Continue));
    assert!(rt.connections().is_empty());
}

#[test]
fn generated_secret_uses_wasi_random_and_is_kept_in_kv() {
    let (rt, kv) = common::runtime();
    let _m = load(&rt, "auth-gen", &[]);
    let stored = kv.get("test/auth-gen", "nonce-secret").unwrap().unwrap();
    assert_eq!(stored.len(), 64);
    assert!(stored.iter().all(u8::is_ascii_hexdigit));
    // A reload (a new load of the same module) keeps the secret.
    let _again = load(&rt, "auth-gen", &[]);
    assert_eq!(
        kv.get("test/auth-gen", "nonce-secret").unwrap().unwrap(),
        stored
    );
}
