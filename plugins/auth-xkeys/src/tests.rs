use std::time::Duration;

use weir_sdk::testing::{self, json, JsonValue};
use weir_sdk::{Address, Module, Verdict};

use super::{verify, Algorithm, AuthXkeys, Key, Refusal, Template};

/// The RFC 3261 §24.2 INVITE (as the README example).
const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
Content-Length: 0\r\n\
\r\n";

/// `$si:$fu:$ru:$ci:$cs` of [`INVITE`] from the harness's default source.
const INVITE_DATA: &str =
    "192.0.2.1:sip:alice@example.com:sip:bob@example.com:a84b4c76e66710@pc33.example.com:314159";

// Tokens of INVITE_DATA, computed with Python's hashlib/hmac (independently of this
// crate): `hashlib.sha256(b"n3wer:" + data).hexdigest()` and so on.
const SHA256_NEW: &str = "1261f1e9f02c177d62b9d6c5facdd8642ac724e491483c1df53e961e6f36c00a";
const SHA256_OLD: &str = "86fd3d405de33b1faa3086d4393104f7dce8adcacb23d26d666b85afb82a1eab";
const SHA512_NEW: &str = "137241cd32f77a296336e784a58c0e280474a58c48a6c3d6939e174b7c7aaf78\
b8de2e76c2538c04806b1beb4a03d8a1489d366af6dafda0e1fc19c4ddd98419";
const HMAC_NEW: &str = "tyFzDs0lErtqpM-HiaJ4YoK6ZV634fY0RK6nE90i-8U";

/// Two keys in group `peers` (the later one is the newest, as in Kamailio) and one in
/// another group.
fn keys() -> JsonValue {
    json!([
        "id=peers;name=k-old;value=old-secret",
        "id=peers;name=k-new;value=n3wer;expires=3600",
        "id=other;name=x;value=zzz",
    ])
}

fn params(mode: &str, extra: JsonValue) -> JsonValue {
    let mut p = json!({
        "mode": mode,
        "key_id": "peers",
        "data": "$si:$fu:$ru:$ci:$cs",
        "keys": keys(),
    });
    if let (Some(p), JsonValue::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn module(mode: &str, extra: JsonValue) -> AuthXkeys {
    testing::init(params(mode, extra)).unwrap()
}

fn with_token(token: &str) -> weir_sdk::Message<'static> {
    let text = INVITE.replace(
        "Content-Length: 0\r\n",
        &format!("X-AuthXKeys-Token: {token}\r\nContent-Length: 0\r\n"),
    );
    testing::request(&text)
}

fn forbidden() -> Verdict {
    Verdict::reply_with(403, "Forbidden", Vec::<(String, String)>::new())
}

// === algorithms ===

#[test]
fn kamailio_reference_vectors() {
    let data = "10.0.0.1:sip:alice@example.com";
    // From the Kamailio reference (sha256, hmac-sha256); sha384/sha512 from openssl dgst.
    assert_eq!(
        Algorithm::Sha256.token("secret", data),
        "d335fd82ab6fb3f7224c6f770957f6bcf0e709875231a0cb5cc2bfc972a20e56"
    );
    assert_eq!(
        Algorithm::Sha384.token("secret", data),
        "9e741f79b100556c09bca6597a2d9cee9db195a64c941ab3bf99180aab09d65e\
         530562c520fbd0657a14e16be2d8f46f"
    );
    assert_eq!(
        Algorithm::Sha512.token("secret", data),
        "fdf8f70332f44c5e2ffbd71f81b226e987cb1790dfb7586578ebf89bc040b12d\
         ecbe9ceb7875a9bb137993055e1fc15bf33749fb91f057fc28112ad36794a509"
    );
    assert_eq!(
        Algorithm::HmacSha256.token("secret", data),
        "iLedlHc5TBaL7avZ94SYOmu9fQ4_vApvKPWvbkJIWRE"
    );
    for alg in [
        Algorithm::Sha256,
        Algorithm::Sha384,
        Algorithm::Sha512,
        Algorithm::HmacSha256,
    ] {
        assert_eq!(
            alg.token("k", "d").len(),
            alg.token_len(),
            "{}",
            alg.as_str()
        );
    }
}

#[test]
fn verify_follows_kamailio_length_and_case_rules() {
    let good = Algorithm::Sha256.token("secret", "d");
    let keys = || ["other", "secret"].into_iter();
    assert_eq!(verify(Algorithm::Sha256, &good, keys(), "d"), Ok(1));
    assert_eq!(
        verify(Algorithm::Sha256, &good.to_ascii_uppercase(), keys(), "d"),
        Ok(1)
    );
    assert_eq!(
        verify(Algorithm::Sha256, "", keys(), "d"),
        Err(Refusal::Empty)
    );
    // A sha512-long token under sha256 fails on length before any key is tried.
    let long = Algorithm::Sha512.token("secret", "d");
    assert_eq!(
        verify(Algorithm::Sha256, &long, keys(), "d"),
        Err(Refusal::BadLength)
    );
    assert_eq!(
        verify(Algorithm::Sha256, &good[1..], keys(), "d"),
        Err(Refusal::BadLength)
    );
    assert_eq!(
        verify(Algorithm::Sha256, &good, keys(), "other data"),
        Err(Refusal::NoMatch)
    );
    // base64url is case-sensitive: an HMAC token compares exactly.
    let mac = Algorithm::HmacSha256.token("secret", "d");
    assert_eq!(verify(Algorithm::HmacSha256, &mac, keys(), "d"), Ok(1));
    let flipped: String = mac
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    assert_ne!(flipped, mac);
    assert_eq!(
        verify(Algorithm::HmacSha256, &flipped, keys(), "d"),
        Err(Refusal::NoMatch)
    );
}

// === add ===

#[test]
fn add_appends_the_token_of_the_newest_key() {
    let add = module("add", json!({}));
    let mut msg = testing::request(INVITE);
    assert_eq!(add.on_request(&mut msg).unwrap(), Verdict::Continue);
    // The README's exchange, byte for byte.
    assert_eq!(
        testing::serialize(&msg),
        format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
             Max-Forwards: 70\r\n\
             To: Bob <sip:bob@example.com>\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
             Call-ID: a84b4c76e66710@pc33.example.com\r\n\
             CSeq: 314159 INVITE\r\n\
             Contact: <sip:alice@pc33.example.com>\r\n\
             Content-Length: 0\r\n\
             X-AuthXKeys-Token: {SHA256_NEW}\r\n\
             \r\n"
        )
    );
}

#[test]
fn add_replaces_a_token_the_sender_brought() {
    let add = module("add", json!({}));
    let mut msg = with_token("forged");
    add.on_request(&mut msg).unwrap();
    assert_eq!(
        msg.header_values("X-AuthXKeys-Token"),
        vec![SHA256_NEW.to_string()]
    );
}

#[test]
fn add_with_other_algorithms_and_header() {
    let add = module(
        "add",
        json!({ "algorithm": "sha512", "header": "X-Peer-Key" }),
    );
    let mut msg = testing::request(INVITE);
    add.on_request(&mut msg).unwrap();
    assert_eq!(msg.header("x-peer-key").as_deref(), Some(SHA512_NEW));

    let add = module("add", json!({ "algorithm": "hmac-sha256" }));
    let mut msg = testing::request(INVITE);
    add.on_request(&mut msg).unwrap();
    assert_eq!(msg.header("X-AuthXKeys-Token").as_deref(), Some(HMAC_NEW));
}

#[test]
fn methods_limit_what_is_signed() {
    let add = module("add", json!({ "methods": ["REGISTER"] }));
    let mut msg = testing::request(INVITE);
    assert_eq!(add.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(!msg.has_header("X-AuthXKeys-Token"));
}

// === check ===

#[test]
fn check_accepts_newest_and_older_keys_and_removes_the_header() {
    let check = module("check", json!({}));
    for token in [SHA256_NEW, SHA256_OLD] {
        let mut msg = with_token(token);
        assert_eq!(check.on_request(&mut msg).unwrap(), Verdict::Continue);
        assert!(!msg.has_header("X-AuthXKeys-Token"));
        assert_eq!(testing::serialize(&msg), INVITE);
    }
    // Upper-case hex and surrounding whitespace are fine, as in Kamailio.
    let mut msg = with_token(&format!("  {}  ", SHA256_NEW.to_ascii_uppercase()));
    assert_eq!(check.on_request(&mut msg).unwrap(), Verdict::Continue);
}

#[test]
fn check_refuses_missing_wrong_and_foreign_tokens_with_403() {
    let check = module("check", json!({}));
    let mut msg = testing::request(INVITE);
    assert_eq!(check.on_request(&mut msg).unwrap(), forbidden());

    let other_group = Algorithm::Sha256.token("zzz", INVITE_DATA);
    let wrong_data = Algorithm::Sha256.token("n3wer", "something else");
    for token in [
        other_group.as_str(),
        wrong_data.as_str(),
        &SHA256_NEW[..63],
        SHA512_NEW,
        "",
    ] {
        let mut msg = with_token(token);
        assert_eq!(check.on_request(&mut msg).unwrap(), forbidden(), "{token}");
        assert!(msg.has_header("X-AuthXKeys-Token"));
    }
    assert!(testing::logs()
        .iter()
        .any(|l| l.message.contains("no key matches the token")));
}

#[test]
fn check_uses_the_first_header_line_only() {
    let check = module("check", json!({}));
    let text = INVITE.replace(
        "Content-Length: 0\r\n",
        &format!("X-AuthXKeys-Token: bad\r\nX-AuthXKeys-Token: {SHA256_NEW}\r\n"),
    );
    let mut msg = testing::request(&text);
    assert_eq!(check.on_request(&mut msg).unwrap(), forbidden());
}

#[test]
fn check_reply_is_configurable_and_an_ack_is_dropped() {
    let check = module(
        "check",
        json!({ "reply_code": 401, "reply_reason": "Untrusted Peer" }),
    );
    let mut msg = testing::request(INVITE);
    assert_eq!(
        check.on_request(&mut msg).unwrap(),
        Verdict::reply_with(401, "Untrusted Peer", Vec::<(String, String)>::new())
    );
    let ack = INVITE
        .replace("INVITE sip", "ACK sip")
        .replace("314159 INVITE", "314159 ACK");
    let mut msg = testing::request(&ack);
    assert_eq!(check.on_request(&mut msg).unwrap(), Verdict::Drop);
}

#[test]
fn check_can_keep_the_header() {
    let check = module("check", json!({ "remove_header": false }));
    let mut msg = with_token(SHA256_NEW);
    assert_eq!(check.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(msg.header("X-AuthXKeys-Token").as_deref(), Some(SHA256_NEW));
}

#[test]
fn check_with_sha512_and_hmac() {
    let check = module("check", json!({ "algorithm": "sha512" }));
    assert_eq!(
        check.on_request(&mut with_token(SHA512_NEW)).unwrap(),
        Verdict::Continue
    );
    assert_eq!(
        check.on_request(&mut with_token(SHA256_NEW)).unwrap(),
        forbidden()
    );
    let check = module("check", json!({ "algorithm": "hmac-sha256" }));
    assert_eq!(
        check.on_request(&mut with_token(HMAC_NEW)).unwrap(),
        Verdict::Continue
    );
}

#[test]
fn a_token_added_by_one_node_passes_the_check_on_the_next() {
    // $vi (the bottom Via's origin) is the same at every hop, unlike $si.
    let extra = json!({ "data": "$vi:$fu:$ru:$ci:$cs:$rm" });
    let add = module("add", extra.clone());
    let check = module("check", extra);
    let mut msg = testing::request(INVITE);
    add.on_request(&mut msg).unwrap();
    // The next node sees the request from the first one, under the first one's Via.
    let wire = testing::serialize(&msg).replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnode1\r\nVia: ",
        1,
    );
    let mut next = testing::request(&wire);
    testing::set_source(&mut next, Address::new("198.51.100.7", 5060));
    assert_eq!(check.on_request(&mut next).unwrap(), Verdict::Continue);
    // A different method gives a different token.
    let mut bye = testing::request(
        &wire
            .replace("INVITE sip:bob", "BYE sip:bob")
            .replace("314159 INVITE", "314159 BYE"),
    );
    assert_eq!(check.on_request(&mut bye).unwrap(), forbidden());
}

// === keys ===

#[test]
fn keys_past_their_until_are_not_used() {
    // The mock clock starts at 1_700_000_000 s.
    let add = module(
        "add",
        json!({ "keys": [
            "id=peers;name=k-old;value=old-secret",
            "id=peers;name=k-new;value=n3wer;until=1700000060",
        ]}),
    );
    let check = module(
        "check",
        json!({ "keys": [
            "id=peers;name=k-old;value=old-secret",
            "id=peers;name=k-new;value=n3wer;until=1700000060",
        ]}),
    );
    let mut msg = testing::request(INVITE);
    add.on_request(&mut msg).unwrap();
    assert_eq!(msg.header("X-AuthXKeys-Token").as_deref(), Some(SHA256_NEW));
    assert_eq!(
        check.on_request(&mut with_token(SHA256_NEW)).unwrap(),
        Verdict::Continue
    );

    testing::advance(Duration::from_secs(60));
    let mut msg = testing::request(INVITE);
    add.on_request(&mut msg).unwrap();
    assert_eq!(msg.header("X-AuthXKeys-Token").as_deref(), Some(SHA256_OLD));
    assert_eq!(
        check.on_request(&mut with_token(SHA256_NEW)).unwrap(),
        forbidden()
    );
}

#[test]
fn signing_with_every_key_expired_is_an_error() {
    let add = module(
        "add",
        json!({ "keys": ["id=peers;name=k;value=v;until=1600000000"] }),
    );
    let err = add.on_request(&mut testing::request(INVITE)).unwrap_err();
    assert!(err.to_string().contains("no usable key"), "{err}");
}

#[test]
fn key_strings_parse_as_kamailio_xkey() {
    let k = Key::parse(" ID = a ; Name=k1;value=\"se;cret\" ;expires=30;").unwrap();
    assert_eq!(
        (k.id.as_str(), k.name.as_str(), k.value.as_str(), k.expires),
        ("a", "k1", "se;cret", 30)
    );
    assert!(!format!("{k:?}").contains("se;cret"));
    // The group id compares case-insensitively, as in Kamailio.
    let m = module("check", json!({ "key_id": "PEERS" }));
    assert_eq!(
        m.on_request(&mut with_token(SHA256_NEW)).unwrap(),
        Verdict::Continue
    );
}

// === template ===

#[test]
fn template_variables() {
    let t =
        Template::parse("$rm|$ru|$fu|$ft|$tu|$ci|$cs|$si|$sp|$vi|$hdr(Subject)|$hdr(X-None)|$$x")
            .unwrap();
    let text = "MESSAGE sip:bob@example.com;transport=tcp SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bK0\r\n\
f: sip:alice@example.com;tag=abc\r\n\
t: \"Bob <b>; x\" <sip:bob@example.com;user=phone>;tag=xyz\r\n\
i: id-1@host\r\n\
CSeq: 7 MESSAGE\r\n\
s: hello there\r\n\
\r\n";
    let mut msg = testing::request(text);
    testing::set_source(&mut msg, Address::new("::1", 5099));
    let headers = msg.headers();
    assert_eq!(
        t.render(&msg, &headers),
        "MESSAGE|sip:bob@example.com;transport=tcp|sip:alice@example.com|abc|\
         sip:bob@example.com;user=phone|id-1@host|7|::1|5099|2001:db8::5|hello there||$x"
    );
    // `received` wins over the sent-by host.
    let msg = testing::request(&text.replace(
        "[2001:db8::5]:5060;",
        "pc.example.com;received=203.0.113.9;",
    ));
    let t = Template::parse("$vi").unwrap();
    assert_eq!(t.render(&msg, &msg.headers()), "203.0.113.9");
    // Without headers needed, none are read.
    assert!(!Template::parse("$si:$ru").unwrap().needs_headers());
}

// === config errors ===

#[test]
fn bad_config_is_refused_with_the_param_named() {
    let err = |p: JsonValue| testing::init_err::<AuthXkeys>(p);
    let with = |extra: JsonValue| err(params("add", extra));

    assert!(err(json!({})).contains("missing field `mode`"));
    let e = err(params("sign", json!({})));
    assert!(e.starts_with("param `mode`: unknown variant `sign`"), "{e}");
    let e = with(json!({ "algorithm": "md5" }));
    assert!(
        e.starts_with("param `algorithm`: unknown variant `md5`"),
        "{e}"
    );
    let e = with(json!({ "colour": "red" }));
    assert!(e.starts_with("param `colour`: unknown field"), "{e}");
    assert_eq!(
        with(json!({ "key_id": "nobody" })),
        "key_id: no key of group `nobody` in `keys`"
    );
    assert_eq!(with(json!({ "key_id": " " })), "key_id: must not be empty");
    assert_eq!(
        with(json!({ "header": "Bad Name" })),
        "header: `Bad Name` is not a valid header name"
    );
    assert_eq!(
        with(json!({ "header": "CSeq" })),
        "header: `CSeq` is owned by the host"
    );
    assert_eq!(
        with(json!({ "reply_code": 200 })),
        "reply_code: 200 is not a failure code (400 to 699)"
    );
    assert_eq!(
        with(json!({ "methods": ["INV ITE"] })),
        "methods: `INV ITE` is not a method name"
    );
}

#[test]
fn bad_templates_are_refused() {
    let with = |data: &str| testing::init_err::<AuthXkeys>(params("add", json!({ "data": data })));
    assert!(with("$xx:$fu").contains("unknown variable `$xx`"));
    assert!(with("fixed text").contains("no variable"));
    assert!(with("$hdr(X-A").contains("`$hdr(` without `)`"));
    assert!(with("$hdr(a b)").contains("not a header name"));
    assert!(with("$").contains("unknown variable `$`"));
}

#[test]
fn bad_key_strings_are_refused_without_showing_the_secret() {
    let with =
        |keys: JsonValue| testing::init_err::<AuthXkeys>(params("add", json!({ "keys": keys })));
    let e = with(json!(["id=peers;name=k;value=hunter2;colour=red"]));
    assert!(e.contains("unknown field `colour`"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    assert!(with(json!(["id=peers;name=k"])).contains("`value` is missing or empty"));
    assert!(with(json!(["id=peers;name=;value=v"])).contains("`name` is missing or empty"));
    assert!(with(json!(["id=peers;id=x;name=k;value=v"])).contains("`id` given twice"));
    assert!(with(json!(["id=peers;name=k;value=v;expires=soon"])).contains("expires `soon`"));
    assert!(with(json!(["id=peers;name=k;value=v;until=-1"])).contains("until `-1`"));
    assert!(with(json!(["id=peers;name=k;value=\"v"])).contains("unterminated quote"));
    assert!(with(json!(["id=peers;name;value=v"])).contains("is not name=value"));
    let e = with(json!([]));
    assert_eq!(e, "key_id: no key of group `peers` in `keys`");
}
