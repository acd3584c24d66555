use std::time::Duration;

use weir_sdk::subscribers::Credentials;
use weir_sdk::testing::{self, json, JsonValue};
use weir_sdk::{connections, KvError, Message, Module, Reply, Verdict};

use super::credentials::{self, Malformed};
use super::uri::{uri_user_host, user_host};
use super::{digest, Algorithm, AuthDigest, NonceCheck, NonceKey, SECRET_KEY};

const SECRET: &str = "0123456789abcdef";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKreg1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=r1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: reg-1@192.0.2.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n\
Expires: 3600\r\n\
\r\n";

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: Bob <sip:bob@example.com>\r\n\
Call-ID: inv-1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060;transport=tcp>\r\n\
\r\n";

// === helpers ===

fn params(extra: JsonValue) -> JsonValue {
    let mut p = json!({ "secret": SECRET });
    if let (Some(p), JsonValue::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn module(extra: JsonValue) -> AuthDigest {
    testing::add_subscriber(Credentials::with_password("alice", "example.com", "s3cret"));
    testing::init(params(extra)).unwrap()
}

fn reply(v: Verdict) -> Reply {
    match v {
        Verdict::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn header_values(r: &Reply, name: &str) -> Vec<String> {
    r.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.clone())
        .collect()
}

/// `name="value"` or `name=value` of a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.strip_prefix("Digest ")?;
    rest.split(", ").find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| v.trim_matches('"').to_string())
    })
}

/// What a UA sends back for `challenge`: the credentials header value.
fn answer(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    alg: Algorithm,
) -> String {
    let realm = param(challenge, "realm").unwrap();
    let nonce = param(challenge, "nonce").unwrap();
    let ha1 = alg.ha1(user, &realm, password);
    let alg_param = if challenge.contains("algorithm=") {
        format!(", algorithm={}", alg.name())
    } else {
        String::new()
    };
    if param(challenge, "qop").is_some() {
        let (nc, cnonce) = ("00000001", "0a4f113b");
        let response = alg.response(&ha1, &nonce, method, uri, Some((nc, cnonce)));
        let response = response.as_str();
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\"{alg_param}"
        )
    } else {
        let response = alg.response(&ha1, &nonce, method, uri, None);
        let response = response.as_str();
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\"{alg_param}"
        )
    }
}

fn with_header(text: &str, name: &str, value: &str) -> Message<'static> {
    let mut msg = testing::request(text);
    msg.add_header(name, value).unwrap();
    msg
}

/// Challenge an INVITE, then answer it as `user`/`password`: the second message.
fn answered_invite(m: &AuthDigest, user: &str, password: &str) -> Message<'static> {
    let r = reply(m.on_request(&mut testing::request(INVITE)).unwrap());
    assert_eq!(r.code, 407);
    let ch = &header_values(&r, "Proxy-Authenticate")[0];
    let auth = answer(
        ch,
        user,
        password,
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    with_header(INVITE, "Proxy-Authorization", &auth)
}

// === digest math: published vectors ===

#[test]
fn rfc2617_md5_qop_auth_vector() {
    let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    let r = Algorithm::Md5.response(
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        Some(("00000001", "0a4f113b")),
    );
    assert_eq!(r.as_str(), "6629fae49393a05397450978507c4ef1");
}

#[test]
fn rfc7616_md5_and_sha256_vectors() {
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let qop = Some(("00000001", cnonce));
    let md5 = Algorithm::Md5.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
    assert_eq!(
        Algorithm::Md5
            .response(&md5, nonce, "GET", "/dir/index.html", qop)
            .as_str(),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    let sha = Algorithm::Sha256.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
    assert_eq!(
        Algorithm::Sha256
            .response(&sha, nonce, "GET", "/dir/index.html", qop)
            .as_str(),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn ha2_cache_answers_as_the_hash_does() {
    let mut cache = super::Ha2Cache::default();
    // (algorithm, method, uri) in an order that hits, and misses on each part
    let seq = [
        (Algorithm::Md5, "REGISTER", "sip:example.com"),
        (Algorithm::Md5, "REGISTER", "sip:example.com"),
        (Algorithm::Md5, "INVITE", "sip:example.com"),
        (Algorithm::Md5, "INVITE", "sip:bob@example.com"),
        (Algorithm::Sha256, "INVITE", "sip:bob@example.com"),
        (Algorithm::Md5, "INVITE", "sip:bob@example.com"),
        (Algorithm::Md5, "INVITE", "sip:bob@example.co"),
        (Algorithm::Md5, "INVITEsip:bob@example.co", ""),
        (Algorithm::Md5, "REGISTER", "sip:example.com"),
    ];
    for (alg, method, uri) in seq {
        let ha2 = cache.get(alg, method, uri);
        assert_eq!(
            ha2.as_str(),
            alg.hash(&[method, uri]).as_str(),
            "{method} {uri}"
        );
        let ha1 = alg.ha1("alice", "example.com", "pw");
        let qop = Some(("00000001", "c1"));
        assert_eq!(
            alg.response_with_ha2(&ha1, "n1", &ha2, qop).as_str(),
            alg.response(&ha1, "n1", method, uri, qop).as_str()
        );
    }
}

#[test]
fn response_without_qop_and_ha1_values() {
    // Computed with Python's hashlib, independently of this crate.
    let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    let r = Algorithm::Md5.response(
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        None,
    );
    assert_eq!(r.as_str(), "670fd8c2df070c60b045671b8b24ff02");
    assert_eq!(
        Algorithm::Md5.ha1("alice", "example.com", "s3cret"),
        "d2d0c8958e1b1c2b989afda0efb9663e"
    );
    assert_eq!(
        Algorithm::Sha256.ha1("alice", "example.com", "s3cret"),
        "5297838bf1a4f1fc5d284fa2f0df90bdf2046b6bf4c022e85118af37bb6dbf75"
    );
}

#[test]
fn algorithm_names_and_constant_time_eq() {
    assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::parse("MD5-sess"), None);
    assert_eq!(Algorithm::Sha256.name(), "SHA-256");
    assert!(digest::ct_eq(b"abc", b"abc"));
    assert!(!digest::ct_eq(b"abc", b"abd"));
    assert!(!digest::ct_eq(b"abc", b"abcd"));
    assert_eq!(digest::hex(&[0x00, 0xff, 0x1a]), "00ff1a");
}

// === nonces ===

#[test]
fn nonce_is_kamailios_format() {
    // base64(BE expire | BE since | MD5(expire|since|secret)), from Python.
    let key = NonceKey::new(SECRET.as_bytes());
    assert_eq!(
        key.create(1_700_000_000, 300),
        "ZVPyLGVT8QBC4UT2UPpOw7AA9hal39gh"
    );
}

#[test]
fn nonce_round_trip_tamper_and_other_secret() {
    let key = NonceKey::new(SECRET.as_bytes());
    let n = key.create(1_000, 300);
    assert_eq!(key.check(&n, 1_000, 3), NonceCheck::Valid);
    assert_eq!(key.check(&n, 1_300, 3), NonceCheck::Valid);
    // Every single-character change is refused.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for i in 0..n.len() {
        let mut bytes = n.clone().into_bytes();
        bytes[i] = if bytes[i] == alphabet[0] {
            alphabet[1]
        } else {
            alphabet[0]
        };
        let t = String::from_utf8(bytes).unwrap();
        assert_eq!(key.check(&t, 1_000, 3), NonceCheck::Invalid, "{t}");
    }
    let other = NonceKey::new(b"another secret!!");
    assert_eq!(other.check(&n, 1_000, 3), NonceCheck::Invalid);
    for junk in [
        "",
        "abc",
        "not base64 !!",
        &"A".repeat(100),
        &n[..n.len() - 4],
    ] {
        assert_eq!(key.check(junk, 1_000, 3), NonceCheck::Invalid, "{junk}");
    }
}

#[test]
fn nonce_cache_of_the_last_times_gives_the_same_answers() {
    // The key remembers the integrity hash of the last times it saw: answers must not
    // depend on what was asked before.
    let key = NonceKey::new(SECRET.as_bytes());
    let fresh = || NonceKey::new(SECRET.as_bytes());
    let a = key.create(1_000, 300);
    let b = key.create(1_001, 300);
    assert_eq!(a, fresh().create(1_000, 300));
    assert_eq!(key.create(1_001, 300), b, "same second, same nonce");
    for (n, now) in [
        (&a, 1_000),
        (&b, 1_001),
        (&a, 1_002),
        (&a, 1_301),
        (&b, 1_001),
    ] {
        assert_eq!(
            key.check(n, now, 3),
            fresh().check(n, now, 3),
            "{n} at {now}"
        );
    }
    // Another secret's nonce with the cached times is still refused.
    let other = NonceKey::new(b"another secret!!").create(1_001, 300);
    assert_eq!(key.check(&b, 1_001, 3), NonceCheck::Valid);
    assert_eq!(key.check(&other, 1_001, 3), NonceCheck::Invalid);
}

#[test]
fn nonce_expiry_and_drift() {
    let key = NonceKey::new(SECRET.as_bytes());
    let n = key.create(1_000, 300);
    assert_eq!(key.check(&n, 1_301, 3), NonceCheck::Stale);
    // Created by a node whose clock is ahead: within the drift it is fine.
    let ahead = key.create(1_003, 300);
    assert_eq!(key.check(&ahead, 1_000, 3), NonceCheck::Valid);
    let far = key.create(1_004, 300);
    assert_eq!(key.check(&far, 1_000, 3), NonceCheck::Stale);
    assert_eq!(key.check(&far, 1_000, 4), NonceCheck::Valid);
}

// === credentials parsing ===

#[test]
fn parses_quoted_strings_commas_and_case() {
    let c = credentials::parse(
        "digest  USERNAME = \"al\\\"ice, x\" ,Realm=\"example.com\",nonce=\"n,1\", \
         uri=\"sip:bob@example.com;transport=tcp\", response=ABCDEF, qop=auth, nc=00000001, \
         cnonce=\"c\", algorithm=SHA-256, opaque=\"\", userhash=false",
    )
    .unwrap();
    assert_eq!(c.username, "al\"ice, x");
    assert_eq!(c.realm, "example.com");
    assert_eq!(c.nonce, "n,1");
    assert_eq!(c.uri, "sip:bob@example.com;transport=tcp");
    assert_eq!(c.response, "ABCDEF");
    assert_eq!(c.qop.as_deref(), Some("auth"));
    assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
    assert_eq!(c.opaque.as_deref(), Some(""));
}

#[test]
fn refuses_malformed_credentials() {
    let ok = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
    assert!(credentials::parse(ok).is_ok());
    assert_eq!(
        credentials::parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
        Err(Malformed::NotDigest)
    );
    assert_eq!(credentials::parse("Digest"), Err(Malformed::NotDigest));
    assert!(matches!(
        credentials::parse("Digest username=\"a"),
        Err(Malformed::Syntax(_))
    ));
    assert!(matches!(
        credentials::parse("Digest username=\"a\" realm=\"r\""),
        Err(Malformed::Syntax(_))
    ));
    assert!(matches!(
        credentials::parse("Digest =x"),
        Err(Malformed::Syntax(_))
    ));
    assert_eq!(
        credentials::parse("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\""),
        Err(Malformed::Missing("response"))
    );
    assert_eq!(
        credentials::parse(&format!("{ok}, Realm=\"other\"")),
        Err(Malformed::Duplicate("realm".into()))
    );
    assert_eq!(
        credentials::parse(&format!("{ok}, x=\"{}\"", "a".repeat(5000))),
        Err(Malformed::TooLong)
    );
    assert_eq!(credentials::realm_of(ok).as_deref(), Some("r"));
    // escapes, a multi-byte escaped character, line breaks, a trailing backslash
    let c = credentials::parse(
        "Digest username=\"\\\\b\\ü\\\"\", realm=\"r\", nonce=\"n\", uri=\"u\", response=x",
    )
    .unwrap();
    assert_eq!(c.username, "\\bü\"");
    assert!(matches!(
        credentials::parse("Digest username=\"a\r\nb\""),
        Err(Malformed::Syntax("line break in a value"))
    ));
    assert!(matches!(
        credentials::parse("Digest username=\"a\\"),
        Err(Malformed::Syntax("dangling `\\`"))
    ));
    // one pass picks our realm's credentials: another realm or scheme is None, ours
    // parses (or is malformed) as `parse` says
    assert!(credentials::parse_for_realm(ok, "other").is_none());
    assert!(credentials::parse_for_realm("Basic abc", "r").is_none());
    assert_eq!(
        credentials::parse_for_realm(ok, "r"),
        Some(credentials::parse(ok))
    );
    let missing = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\"";
    assert_eq!(
        credentials::parse_for_realm(missing, "r"),
        Some(Err(Malformed::Missing("response")))
    );
}

#[test]
fn credentials_borrow_values_and_check_every_param_once() {
    use std::borrow::Cow;
    // Values without escapes borrow from the header value; an escape makes a copy.
    let c = credentials::parse(
        "Digest username=\"a\\\"b\", realm=\"r\", nonce=n, uri=\"sip:x@y\", response=\"f\"",
    )
    .unwrap();
    assert!(matches!(c.username, Cow::Owned(ref u) if u == "a\"b"));
    assert!(matches!(c.realm, Cow::Borrowed("r")));
    assert!(matches!(c.nonce, Cow::Borrowed("n")));
    assert!(matches!(c.uri, Cow::Borrowed("sip:x@y")));
    // Extension params may appear once too (case ignored); the first one is named.
    let ok = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
    assert!(credentials::parse(&format!("{ok}, userhash=false")).is_ok());
    assert_eq!(
        credentials::parse(&format!("{ok}, userhash=false, UserHash=true")),
        Err(Malformed::Duplicate("userhash".into()))
    );
    assert_eq!(
        credentials::parse(&format!("{ok}, x=1, NC=1, y=2, nc=2, x=3")),
        Err(Malformed::Duplicate("nc".into()))
    );
    // A duplicated realm: the first one selects, and the credentials are malformed.
    let twice = format!("{ok}, realm=\"other\"");
    assert_eq!(credentials::realm_of(&twice).as_deref(), Some("r"));
    assert!(credentials::parse_for_realm(&twice, "other").is_none());
    assert_eq!(
        credentials::parse_for_realm(&twice, "r"),
        Some(Err(Malformed::Duplicate("realm".into())))
    );
    // A syntax error after our realm still makes the value not ours.
    assert!(credentials::parse_for_realm(&format!("{ok}, x"), "r").is_none());
    assert!(matches!(
        credentials::parse(&format!("{ok}, x=\"unterminated")),
        Err(Malformed::Syntax("unterminated quoted string"))
    ));
    assert!(matches!(
        credentials::parse(&format!("{ok}, x=\"a\\\"b")),
        Err(Malformed::Syntax("unterminated quoted string"))
    ));
    // Token characters of RFC 3261, and `/ : @` in unquoted values.
    let c = credentials::parse(
        "Digest username=a-b.c!d%e*f_g+h`i'j~k, realm=r, nonce=n, uri=sip:u@h/p, response=x",
    )
    .unwrap();
    assert_eq!(c.username, "a-b.c!d%e*f_g+h`i'j~k");
    assert_eq!(c.uri, "sip:u@h/p");
    assert!(matches!(
        credentials::parse("Digest user(name)=a"),
        Err(Malformed::Syntax(_))
    ));
    assert!(matches!(
        credentials::parse("Digest username=a\u{e9}"),
        Err(Malformed::Syntax(_))
    ));
}

#[test]
fn digest_hex_on_the_stack_and_lowercase_comparison() {
    let h = Algorithm::Md5.hash(&["Mufasa", "testrealm@host.com", "Circle Of Life"]);
    assert_eq!(h.as_str(), "939e7578ed9e3c518a452acee763bce9");
    assert_eq!(
        h.as_str(),
        Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    );
    assert_eq!(Algorithm::Sha256.hash(&["a"]).as_str().len(), 64);
    assert_eq!(digest::HexHash::new(&[0x00, 0xff, 0x1a]).as_str(), "00ff1a");
    assert!(digest::ct_eq_lowercase(b"00ff1a", b"00FF1A"));
    assert!(digest::ct_eq_lowercase(b"00ff1a", b"00ff1a"));
    assert!(!digest::ct_eq_lowercase(b"00ff1a", b"00ff1b"));
    assert!(!digest::ct_eq_lowercase(b"00ff1a", b"00ff1"));
}

#[test]
fn uri_user_and_host() {
    let uh = |v: &str| user_host(v).map(|(u, h)| format!("{u}@{h}"));
    assert_eq!(
        uh("\"A\" <sip:alice@Example.COM:5061;transport=tls>;tag=1").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        uh("sip:alice@example.com;tag=1").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        uh("<sips:bob:pw@[2001:db8::1]:5061>").as_deref(),
        Some("bob@[2001:db8::1]")
    );
    assert_eq!(uh("<sip:example.com>").as_deref(), Some("@example.com"));
    assert_eq!(
        uh("<SIP:Bob@Host.Example>").as_deref(),
        Some("Bob@host.example")
    );
    assert_eq!(uh("<SIPS:bob@h>").as_deref(), Some("bob@h"));
    assert_eq!(uh("sip:"), None);
    assert_eq!(uh("<sip:a@h?x=y>").as_deref(), Some("a@h"));
    assert!(matches!(
        user_host("<sip:a@h>"),
        Some(("a", std::borrow::Cow::Borrowed("h")))
    ));
    assert_eq!(uh("<tel:+123>"), None);
    assert_eq!(uh("garbage"), None);
    assert_eq!(
        uri_user_host("sip:+1;phone-context=x@example.com;user=phone")
            .map(|(u, h)| format!("{u}@{h}"))
            .as_deref(),
        Some("+1;phone-context=x@example.com")
    );
}

// === challenges ===

#[test]
fn register_without_credentials_gets_401() {
    let m = module(json!({}));
    let r = reply(m.on_request(&mut testing::request(REGISTER)).unwrap());
    assert_eq!((r.code, r.reason.as_str()), (401, "Unauthorized"));
    let ch = header_values(&r, "WWW-Authenticate");
    assert_eq!(ch.len(), 1);
    let nonce = NonceKey::new(SECRET.as_bytes()).create(1_700_000_000, 300);
    // Kamailio's exact text: no algorithm= for the default, qop="auth" quoted.
    assert_eq!(
        ch[0],
        format!("Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\"")
    );
}

#[test]
fn invite_without_credentials_gets_407() {
    let m = module(json!({}));
    let r = reply(m.on_request(&mut testing::request(INVITE)).unwrap());
    assert_eq!(
        (r.code, r.reason.as_str()),
        (407, "Proxy Authentication Required")
    );
    assert_eq!(header_values(&r, "Proxy-Authenticate").len(), 1);
    assert!(header_values(&r, "WWW-Authenticate").is_empty());
}

#[test]
fn one_challenge_per_algorithm_same_nonce() {
    let m = module(json!({ "algorithm": ["SHA-256", "MD5"], "realm": "weir" }));
    let r = reply(m.on_request(&mut testing::request(REGISTER)).unwrap());
    let ch = header_values(&r, "WWW-Authenticate");
    assert_eq!(ch.len(), 2);
    assert!(ch[0].starts_with("Digest realm=\"weir\", nonce=\""));
    assert!(
        ch[0].ends_with(", qop=\"auth\", algorithm=SHA-256"),
        "{}",
        ch[0]
    );
    assert!(
        ch[1].ends_with(", qop=\"auth\", algorithm=MD5"),
        "{}",
        ch[1]
    );
    assert_eq!(param(&ch[0], "nonce"), param(&ch[1], "nonce"));
}

#[test]
fn no_qop_when_configured_empty() {
    let m = module(json!({ "qop": "" }));
    let r = reply(m.on_request(&mut testing::request(INVITE)).unwrap());
    let ch = &header_values(&r, "Proxy-Authenticate")[0];
    assert!(!ch.contains("qop"), "{ch}");
    let auth = answer(
        ch,
        "alice",
        "s3cret",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(INVITE, "Proxy-Authorization", &auth);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
}

// === success ===

#[test]
fn register_with_credentials_passes_and_keeps_them() {
    let m = module(json!({}));
    let r = reply(m.on_request(&mut testing::request(REGISTER)).unwrap());
    let ch = &header_values(&r, "WWW-Authenticate")[0];
    let auth = answer(
        ch,
        "alice",
        "s3cret",
        "REGISTER",
        "sip:example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(REGISTER, "Authorization", &auth);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    // REGISTER keeps its credentials (the registrar may want them).
    assert_eq!(msg.header("Authorization").as_deref(), Some(auth.as_str()));
}

#[test]
fn invite_with_credentials_passes_and_consumes_them() {
    let m = module(json!({}));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(!msg.has_header("Proxy-Authorization"));
}

#[test]
fn consume_credentials_off_keeps_them() {
    let m = module(json!({ "consume_credentials": false }));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(msg.has_header("Proxy-Authorization"));
}

#[test]
fn consume_keeps_other_realms_credentials() {
    let m = module(json!({}));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    let other =
        "Digest username=\"a\", realm=\"upstream.net\", nonce=\"n\", uri=\"u\", response=\"x\"";
    // Theirs before ours.
    let ours = msg.header("Proxy-Authorization").unwrap();
    msg.remove_header("Proxy-Authorization").unwrap();
    msg.add_header("Proxy-Authorization", other).unwrap();
    msg.add_header("Proxy-Authorization", &ours).unwrap();
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(
        msg.header_values("Proxy-Authorization"),
        vec![other.to_string()]
    );
}

#[test]
fn publish_keeps_credentials_and_checks_request_uri() {
    let publish = INVITE
        .replace(
            "INVITE sip:bob@example.com",
            "PUBLISH sip:alice@example.com",
        )
        .replace(
            "To: Bob <sip:bob@example.com>",
            "To: <sip:alice@example.com>",
        )
        .replace("1 INVITE", "1 PUBLISH");
    let m = module(json!({}));
    let r = reply(m.on_request(&mut testing::request(&publish)).unwrap());
    let ch = &header_values(&r, "Proxy-Authenticate")[0];
    let auth = answer(
        ch,
        "alice",
        "s3cret",
        "PUBLISH",
        "sip:alice@example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(&publish, "Proxy-Authorization", &auth);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(msg.has_header("Proxy-Authorization"));
    // The same credentials for a PUBLISH about bob: identity mismatch.
    let bob = publish.replace(
        "PUBLISH sip:alice@example.com",
        "PUBLISH sip:bob@example.com",
    );
    let mut msg = with_header(&bob, "Proxy-Authorization", &auth);
    assert_eq!(reply(m.on_request(&mut msg).unwrap()).code, 403);
}

#[test]
fn sha256_with_password_and_stored_ha1() {
    let m = module(json!({ "algorithm": ["SHA-256"] }));
    testing::add_subscriber(Credentials {
        username: "carol".into(),
        domain: "example.com".into(),
        password: None,
        ha1: None,
        ha1_sha256: Some(
            Algorithm::Sha256
                .ha1("carol", "example.com", "pw")
                .to_uppercase(),
        ),
    });
    for (user, pw) in [("alice", "s3cret"), ("carol", "pw")] {
        let text = INVITE.replace(
            "sip:alice@example.com>",
            &format!("sip:{user}@example.com>"),
        );
        let r = reply(m.on_request(&mut testing::request(&text)).unwrap());
        let ch = &header_values(&r, "Proxy-Authenticate")[0];
        assert!(ch.ends_with("algorithm=SHA-256"));
        let auth = answer(
            ch,
            user,
            pw,
            "INVITE",
            "sip:bob@example.com",
            Algorithm::Sha256,
        );
        let mut msg = with_header(&text, "Proxy-Authorization", &auth);
        assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue, "{user}");
    }
}

#[test]
fn stored_md5_ha1_and_missing_ha1() {
    let m = module(json!({ "algorithm": ["MD5", "SHA-256"] }));
    testing::add_subscriber(Credentials {
        username: "dave".into(),
        domain: "example.com".into(),
        password: None,
        ha1: Some(Algorithm::Md5.ha1("dave", "example.com", "pw")),
        ha1_sha256: None,
    });
    let text = INVITE.replace("sip:alice@example.com>", "sip:dave@example.com>");
    let r = reply(m.on_request(&mut testing::request(&text)).unwrap());
    let ch = header_values(&r, "Proxy-Authenticate");
    let md5 = answer(
        &ch[0],
        "dave",
        "pw",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(&text, "Proxy-Authorization", &md5);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    // SHA-256 cannot be checked without a SHA-256 HA1 or the password: challenged.
    let sha = answer(
        &ch[1],
        "dave",
        "pw",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Sha256,
    );
    let mut msg = with_header(&text, "Proxy-Authorization", &sha);
    assert_eq!(reply(m.on_request(&mut msg).unwrap()).code, 407);
}

#[test]
fn response_hex_case_and_missing_qop_are_accepted() {
    let m = module(json!({}));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    let auth = msg.header("Proxy-Authorization").unwrap();
    let c = credentials::parse(&auth).unwrap();
    let upper = auth.replace(&*c.response, &c.response.to_uppercase());
    msg.set_header("Proxy-Authorization", &upper).unwrap();
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    // qop was offered, the client answers RFC 2069 style: accepted (as Kamailio).
    let ha1 = Algorithm::Md5.ha1("alice", "example.com", "s3cret");
    let resp = Algorithm::Md5.response(&ha1, &c.nonce, "INVITE", &c.uri, None);
    let resp = resp.as_str();
    let plain = format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{}\", uri=\"{}\", response=\"{resp}\"",
        c.nonce, c.uri
    );
    let mut msg = with_header(INVITE, "Proxy-Authorization", &plain);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
}

// === nonce reuse, expiry, stale ===

#[test]
fn nonce_is_reusable_within_validity_then_stale() {
    let m = module(json!({ "nonce_expire": 60 }));
    let msg = answered_invite(&m, "alice", "s3cret");
    let auth = msg.header("Proxy-Authorization").unwrap();
    // A mobile client waking up reuses the nonce: fine while it is valid.
    for _ in 0..3 {
        let mut again = with_header(INVITE, "Proxy-Authorization", &auth);
        assert_eq!(m.on_request(&mut again).unwrap(), Verdict::Continue);
        testing::advance(Duration::from_secs(20));
    }
    // 60 s after creation it is still valid (inclusive); one more second: stale.
    testing::advance(Duration::from_secs(1));
    let mut late = with_header(INVITE, "Proxy-Authorization", &auth);
    let r = reply(m.on_request(&mut late).unwrap());
    assert_eq!(r.code, 407);
    let ch = &header_values(&r, "Proxy-Authenticate")[0];
    assert!(ch.ends_with(", qop=\"auth\", stale=true"), "{ch}");
    // The fresh nonce in the stale challenge works.
    let auth = answer(
        ch,
        "alice",
        "s3cret",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(INVITE, "Proxy-Authorization", &auth);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
}

#[test]
fn forged_nonce_gets_a_plain_challenge() {
    let m = module(json!({}));
    let forged = NonceKey::new(b"not our secret at all").create(1_700_000_000, 300);
    let ch = format!("Digest realm=\"example.com\", nonce=\"{forged}\", qop=\"auth\"");
    let auth = answer(
        &ch,
        "alice",
        "s3cret",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(INVITE, "Proxy-Authorization", &auth);
    let r = reply(m.on_request(&mut msg).unwrap());
    assert_eq!(r.code, 407);
    assert!(!header_values(&r, "Proxy-Authenticate")[0].contains("stale"));
}

// === failures ===

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let m = module(json!({}));
    let mut wrong = answered_invite(&m, "alice", "guess");
    let r1 = reply(m.on_request(&mut wrong).unwrap());
    let text = INVITE.replace("sip:alice@example.com>", "sip:mallory@example.com>");
    let r = reply(m.on_request(&mut testing::request(&text)).unwrap());
    let ch = &header_values(&r, "Proxy-Authenticate")[0];
    let auth = answer(
        ch,
        "mallory",
        "x",
        "INVITE",
        "sip:bob@example.com",
        Algorithm::Md5,
    );
    let r2 = reply(
        m.on_request(&mut with_header(&text, "Proxy-Authorization", &auth))
            .unwrap(),
    );
    assert_eq!((r1.code, r2.code), (407, 407));
    assert_eq!(r1.reason, r2.reason);
    assert_eq!(r1.headers.len(), r2.headers.len());
}

#[test]
fn on_failure_forbidden_answers_403() {
    let m = module(json!({ "on_failure": "forbidden" }));
    let mut wrong = answered_invite(&m, "alice", "guess");
    let r = reply(m.on_request(&mut wrong).unwrap());
    assert_eq!((r.code, r.reason.as_str()), (403, "Forbidden auth ID"));
}

#[test]
fn malformed_credentials_get_400() {
    let m = module(json!({}));
    let good = answered_invite(&m, "alice", "s3cret")
        .header("Proxy-Authorization")
        .unwrap();
    let broken = [
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"x".to_string(),
        good.replace(", nc=00000001", ""),
        good.replace("nc=00000001", "nc=1"),
        good.replace("qop=auth", "qop=auth-int"),
        format!("{good}, algorithm=MD5-sess"),
        good.replace("response=\"", "response=\"00"),
    ];
    for b in broken {
        let mut msg = with_header(INVITE, "Proxy-Authorization", &b);
        let r = reply(m.on_request(&mut msg).unwrap());
        assert_eq!((r.code, r.reason.as_str()), (400, "Bad Credentials"), "{b}");
    }
}

#[test]
fn other_realm_or_scheme_gets_a_challenge() {
    let m = module(json!({}));
    let good = answered_invite(&m, "alice", "s3cret")
        .header("Proxy-Authorization")
        .unwrap();
    for v in [
        good.replace("realm=\"example.com\"", "realm=\"elsewhere\""),
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_string(),
    ] {
        let mut msg = with_header(INVITE, "Proxy-Authorization", &v);
        assert_eq!(reply(m.on_request(&mut msg).unwrap()).code, 407, "{v}");
    }
    // An algorithm we do not offer: answered with the offer.
    let m = module(json!({ "algorithm": ["SHA-256"] }));
    let mut msg = with_header(
        INVITE,
        "Proxy-Authorization",
        &format!("{good}, algorithm=MD5"),
    );
    let r = reply(m.on_request(&mut msg).unwrap());
    assert!(header_values(&r, "Proxy-Authenticate")[0].ends_with("algorithm=SHA-256"));
}

#[test]
fn store_failure_answers_500() {
    let m = module(json!({}));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    testing::fail_subscribers(Some(KvError::Backend("db down".into())));
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::reply(500));
    assert!(testing::logs()
        .iter()
        .any(|l| l.message.contains("db down")));
}

#[test]
fn bad_from_gets_400() {
    let m = module(json!({}));
    let text = INVITE.replace(
        "\"Alice\" <sip:alice@example.com>;tag=1928301774",
        "garbage",
    );
    assert_eq!(
        reply(m.on_request(&mut testing::request(&text)).unwrap()).code,
        400
    );
}

// === identity ===

#[test]
fn identity_mismatch_is_forbidden_unless_disabled() {
    testing::add_subscriber(Credentials::with_password("bob", "example.com", "b0b"));
    let m = module(json!({}));
    // bob's valid credentials in a request From alice.
    let mut msg = answered_invite(&m, "bob", "b0b");
    let r = reply(m.on_request(&mut msg).unwrap());
    assert_eq!((r.code, r.reason.as_str()), (403, "Forbidden auth ID"));

    let m = module(json!({ "check_identity": false }));
    let mut msg = answered_invite(&m, "bob", "b0b");
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
}

#[test]
fn register_checks_the_to_user() {
    let m = module(json!({}));
    let third_party = REGISTER.replace("To: <sip:alice@example.com>", "To: <sip:bob@example.com>");
    let r = reply(m.on_request(&mut testing::request(&third_party)).unwrap());
    let ch = &header_values(&r, "WWW-Authenticate")[0];
    let auth = answer(
        ch,
        "alice",
        "s3cret",
        "REGISTER",
        "sip:example.com",
        Algorithm::Md5,
    );
    let mut msg = with_header(&third_party, "Authorization", &auth);
    assert_eq!(reply(m.on_request(&mut msg).unwrap()).code, 403);
}

// === which requests ===

#[test]
fn ack_cancel_prack_methods_and_in_dialog_pass() {
    let m = module(json!({ "methods": ["INVITE", "REGISTER", "BYE"] }));
    for method in ["ACK", "CANCEL", "PRACK", "OPTIONS"] {
        let text = INVITE
            .replace("INVITE sip:", &format!("{method} sip:"))
            .replace("1 INVITE", &format!("1 {method}"));
        assert_eq!(
            m.on_request(&mut testing::request(&text)).unwrap(),
            Verdict::Continue,
            "{method}"
        );
    }
    let bye = INVITE
        .replace("INVITE sip:", "BYE sip:")
        .replace("1 INVITE", "2 BYE")
        .replace(
            "To: Bob <sip:bob@example.com>",
            "To: Bob <sip:bob@example.com>;tag=xyz",
        );
    assert_eq!(
        m.on_request(&mut testing::request(&bye)).unwrap(),
        Verdict::Continue
    );
    // The tag param's name in any case, with whitespace around it; a param that only
    // starts like one (`tagx=`) or a `tag` without a value is no tag.
    for (to, in_dialog) in [
        (";TAG=xyz", true),
        ("; Tag=xyz", true),
        (";tagx=1", false),
        (";tag", false),
    ] {
        let text = bye.replace(";tag=xyz", to);
        let v = m.on_request(&mut testing::request(&text)).unwrap();
        assert_eq!(v == Verdict::Continue, in_dialog, "{to}");
    }
    let m = module(json!({ "authenticate_in_dialog": true }));
    assert_eq!(
        reply(m.on_request(&mut testing::request(&bye)).unwrap()).code,
        407
    );
}

#[test]
fn only_local_from_domains_are_authenticated() {
    let m = module(json!({ "local_domains": ["Example.com"] }));
    let foreign = INVITE.replace("sip:alice@example.com>", "sip:carol@elsewhere.net>");
    assert_eq!(
        m.on_request(&mut testing::request(&foreign)).unwrap(),
        Verdict::Continue
    );
    assert_eq!(
        reply(m.on_request(&mut testing::request(INVITE)).unwrap()).code,
        407
    );
    // REGISTER is always authenticated.
    let reg = REGISTER.replace("alice@example.com", "carol@elsewhere.net");
    assert_eq!(
        reply(m.on_request(&mut testing::request(&reg)).unwrap()).code,
        401
    );
}

// === connection trust ===

#[test]
fn trusted_connection_skips_the_challenge_for_the_same_user() {
    testing::add_subscriber(Credentials::with_password("bob", "example.com", "b0b"));
    let m = module(json!({ "trust_connection": true }));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    testing::set_connection(&mut msg, 7);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(
        testing::connection_identities(),
        vec![(7, "alice@example.com".to_string())]
    );

    // Same connection, same From user, no credentials: passes.
    let mut next = testing::request(INVITE);
    testing::set_connection(&mut next, 7);
    assert_eq!(m.on_request(&mut next).unwrap(), Verdict::Continue);
    // Same connection, another From user: challenged.
    let bob = INVITE.replace("sip:alice@example.com>", "sip:bob@example.com>");
    let mut other = testing::request(&bob);
    testing::set_connection(&mut other, 7);
    assert_eq!(reply(m.on_request(&mut other).unwrap()).code, 407);
    // Another connection: challenged.
    let mut elsewhere = testing::request(INVITE);
    testing::set_connection(&mut elsewhere, 8);
    assert_eq!(reply(m.on_request(&mut elsewhere).unwrap()).code, 407);
    // UDP: nothing is bound, every request is challenged.
    let mut udp = answered_invite(&m, "alice", "s3cret");
    assert_eq!(m.on_request(&mut udp).unwrap(), Verdict::Continue);
    assert_eq!(testing::connection_identities().len(), 1);
}

#[test]
fn trust_is_off_by_default() {
    let m = module(json!({}));
    let mut msg = answered_invite(&m, "alice", "s3cret");
    testing::set_connection(&mut msg, 7);
    assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(testing::connection_identities().is_empty());
    // A binding made by someone else is not trusted either.
    assert!(connections::bind(9, "alice@example.com"));
    let mut next = testing::request(INVITE);
    testing::set_connection(&mut next, 9);
    assert_eq!(reply(m.on_request(&mut next).unwrap()).code, 407);
}

// === secret ===

#[test]
fn generated_secret_is_shared_through_kv() {
    testing::add_subscriber(Credentials::with_password("alice", "example.com", "s3cret"));
    let a: AuthDigest = testing::init(json!({})).unwrap();
    let stored = weir_sdk::kv::get_string(SECRET_KEY).unwrap().unwrap();
    assert_eq!(stored.len(), 64);
    // A second instance reads the same secret: a nonce of one is valid on the other.
    let b: AuthDigest = testing::init(json!({})).unwrap();
    let mut msg = answered_invite(&a, "alice", "s3cret");
    assert_eq!(b.on_request(&mut msg).unwrap(), Verdict::Continue);
    // A configured secret differs: the nonce is not ours.
    let c = module(json!({}));
    let mut msg = answered_invite(&a, "alice", "s3cret");
    assert_eq!(reply(c.on_request(&mut msg).unwrap()).code, 407);
}

#[test]
fn kv_failure_without_a_secret_refuses_the_config() {
    testing::fail_kv(Some(KvError::Backend("down".into())));
    let e = testing::init_err::<AuthDigest>(json!({}));
    assert!(e.contains("secret"), "{e}");
    testing::fail_kv(None);
}

// === config errors ===

#[test]
fn config_errors_name_the_param() {
    let cases = [
        (json!({ "algorithm": ["MD5-sess"] }), "algorithm"),
        (json!({ "algorithm": ["MD5", "md5"] }), "algorithm"),
        (json!({ "algorithm": [] }), "algorithm"),
        (json!({ "qop": "auth-int" }), "qop"),
        (json!({ "nonce_expire": 0 }), "nonce_expire"),
        (
            json!({ "nonce_auth_max_drift": 100000 }),
            "nonce_auth_max_drift",
        ),
        (json!({ "realm": "a\"b" }), "realm"),
        (json!({ "realm": " " }), "realm"),
        (json!({ "on_failure": "ignore" }), "on_failure"),
        (json!({ "methods": ["IN VITE"] }), "methods"),
        (json!({ "local_domains": [""] }), "local_domains"),
        (json!({ "reason_401": "a\r\nb" }), "reason_401"),
        (json!({ "secret": "" }), "secret"),
        (json!({ "nonce_expiry": 10 }), "nonce_expiry"),
    ];
    for (extra, name) in cases {
        let mut p = params(json!({}));
        if let (Some(p), JsonValue::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        let e = testing::init_err::<AuthDigest>(p);
        assert!(e.contains(name), "{name}: {e}");
    }
}
