//! auth-digest end to end: the real `weir` with the auth module in front of the
//! registrar (`request = [{ module = "auth" }, ...]`) and credentials from the
//! subscriber store (`[store.subscribers] file = config/subscribers.csv`).
//!
//! What is checked: challenges exactly as Kamailio's `auth_challenge("$fd", "1")`
//! prints them (`Digest realm="<From domain>", nonce="<32 base64>", qop="auth"`, the
//! nonce `base64(expire|since|MD5)` with `expire - since = nonce_expire`), 401 for
//! REGISTER and 407 for requests from local users, none for other domains; sipp
//! registering users of `config/subscribers.csv` (plain passwords and `ha1=`) with
//! `[authentication]`, over UDP and TCP; a wrong password or an unknown user challenged
//! again (403 with `on_failure = "forbidden"`), an identity mismatch 403, never 200; a
//! local caller (sipp) challenged with 407, answering it, and the call reaching the
//! registered callee (a raw peer) without Proxy-Authorization (`consume_credentials`);
//! a nonce used again with nc incremented accepted until it expires, then
//! `stale=true`; connection trust over TCP; `config/proxy-auth.toml` as shipped.
//!
//! The digest responses of the raw test UA are computed here with an MD5 of this file
//! (checked against RFC 1321's vectors), independent of the module's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_system_tests::paths::{self, repo_root, target_dir, TempDir};
use weir_system_tests::peer::{TcpPeer, UdpPeer, EXPECT_TIMEOUT};
use weir_system_tests::proxy::HEADER_OPS;
use weir_system_tests::sip::param;
use weir_system_tests::sipp::{self, Transport, Uac};
use weir_system_tests::{conf, token, wait, Proxy, SipMsg};

/// The realm of the numbered users: the From domain sipp and the raw UA use.
const REALM: &str = "127.0.0.1";
/// The local domains of the test proxy (routes and `local_domains`).
const LOCAL_DOMAINS: &str = "[\"127.0.0.1\", \"localhost\", \"weir.test\"]";

// === MD5 (RFC 1321), for the test UA's digest responses ===

fn md5(input: &[u8]) -> [u8; 16] {
    const SHIFT: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
    let k: Vec<u32> = (0..64u32)
        .map(|i| {
            // floor(|sin(i + 1)| * 2^32), exact for these 64 values in f64.
            let v = (f64::from(i + 1)).sin().abs() * 4_294_967_296.0;
            u32::try_from(v as u64).unwrap()
        })
        .collect();
    let mut msg = input.to_vec();
    let bits = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64usize {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(SHIFT[(i / 16) * 4 + i % 4]));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 16];
    for (i, w) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

fn md5_hex(s: &str) -> String {
    md5(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Standard base64 (with `=` padding) to bytes; `None` if it is not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let body = s.trim_end_matches('=');
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let v = u32::try_from(ALPHABET.iter().position(|a| *a == c)?).ok()?;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[test]
fn md5_and_base64_of_the_test_ua_are_right() {
    // RFC 1321 appendix A.5.
    assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        md5_hex("12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
    // RFC 2617 section 3.5: HA1 of Mufasa.
    assert_eq!(
        md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
        "939e7578ed9e3c518a452acee763bce9"
    );
    assert_eq!(
        base64_decode("AAECAw==").as_deref(),
        Some(&[0u8, 1, 2, 3][..])
    );
    assert_eq!(base64_decode("a*==").as_deref(), None);
}

// === Subscribers ===

/// A subscriber of `config/subscribers.csv` with its password.
#[derive(Debug, Clone)]
struct Subscriber {
    user: String,
    domain: String,
    password: String,
    /// Stored as `ha1=` (else plain).
    hashed: bool,
}

fn subscribers_csv() -> PathBuf {
    repo_root().join("config/subscribers.csv")
}

/// Every subscriber of `config/subscribers.csv`, with the password its header comment
/// documents (`userNNNN` / `pass-NNNN`, `<name>` / `<name>-secret`), checked against
/// the stored secret (plain, or `ha1=` MD5).
fn shipped_subscribers() -> Vec<Subscriber> {
    let path = subscribers_csv();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ',');
        let (Some(user), Some(domain), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!(
                "{}:{}: not user,domain,secret: {line}",
                path.display(),
                i + 1
            );
        };
        let password = match user.strip_prefix("user") {
            Some(n) => format!("pass-{n}"),
            None => format!("{user}-secret"),
        };
        let ha1 = secret
            .split(',')
            .find_map(|s| s.trim().strip_prefix("ha1="))
            .map(str::to_string);
        let hashed = match ha1 {
            Some(h) => {
                assert_eq!(
                    h,
                    md5_hex(&format!("{user}:{domain}:{password}")),
                    "{}:{}: ha1 of {user} is not MD5({user}:{domain}:{password})",
                    path.display(),
                    i + 1
                );
                true
            }
            None => {
                assert_eq!(secret, password, "{}:{}", path.display(), i + 1);
                false
            }
        };
        out.push(Subscriber {
            user: user.to_string(),
            domain: domain.to_string(),
            password,
            hashed,
        });
    }
    out
}

/// A sipp injection file of `subs` (user, password) in `dir`: field 0 the user, field 1
/// the whole `[authentication username=.. password=..]` keyword, which the `auth_*`
/// scenarios put where the credentials go (sipp 3.6 does not expand `[fieldN]` inside
/// `[authentication ...]`; it does expand a keyword coming from a field).
fn inject_file(dir: &TempDir, name: &str, subs: &[(String, String)]) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for (u, p) in subs {
        text += &format!("{u};[authentication username={u} password={p}];\n");
    }
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The first `n` numbered users of the shipped file (odd ones plain, even ones `ha1=`).
fn numbered(n: usize) -> Vec<(String, String)> {
    shipped_subscribers()
        .into_iter()
        .filter(|s| s.domain == REALM)
        .take(n)
        .map(|s| (s.user, s.password))
        .collect()
}

#[test]
fn subscribers_csv_has_1000_users_plain_and_ha1() {
    let subs = shipped_subscribers();
    let numbered: Vec<&Subscriber> = subs.iter().filter(|s| s.domain == REALM).collect();
    assert!(
        numbered.len() >= 1000,
        "{} users at {REALM}",
        numbered.len()
    );
    assert!(numbered.iter().any(|s| s.hashed) && numbered.iter().any(|s| !s.hashed));
    for name in ["alice", "bob"] {
        assert!(
            subs.iter()
                .any(|s| s.user == name && s.domain == "weir.test"),
            "{name}@weir.test missing"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for s in &subs {
        assert!(
            seen.insert((&s.user, &s.domain)),
            "{}@{} twice",
            s.user,
            s.domain
        );
    }
}

// === Config ===

/// The test proxy: UDP and TCP on `127.0.0.1:port` (one UDP receive thread), the auth
/// module (`local_domains` set, more params in `auth_params`) then header-ops on two
/// stateful routes (REGISTER to the registrar, the rest looked up), subscribers from
/// `config/subscribers.csv`, bindings in memory.
fn config(port: u16, auth_params: &str) -> String {
    let mut c = conf::header();
    c += &conf::transaction("fr_timer_ms = 2000\nfr_inv_timer_ms = 10000");
    c += &conf::listeners(port);
    // Generous module deadlines: these tests run beside sipp on few cores.
    c += &format!(
        "[modules.auth]\ncomponent = \"{}\"\ntimeout_ms = 1000\n\
         [modules.auth.params]\nlocal_domains = {LOCAL_DOMAINS}\n{}\n\n",
        paths::plugin_wasm("auth-digest").display(),
        auth_params.trim()
    );
    c += &format!(
        "[modules.headers]\ncomponent = \"{HEADER_OPS}\"\ntimeout_ms = 1000\n\
         [modules.headers.params]\nappend = [\"X-Weir: auth\"]\n\n"
    );
    c += "[registrar]\n\n";
    c += &format!(
        "[store]\n[store.subscribers]\nfile = \"{}\"\n\n",
        subscribers_csv().display()
    );
    let chain = "request = [{ module = \"auth\" }, { module = \"headers\" }]";
    c += &conf::stateful_route(
        "register",
        "",
        &format!("methods = [\"REGISTER\"]\ndomains = {LOCAL_DOMAINS}\nregistrar = true\n{chain}"),
    );
    c += &conf::stateful_route(
        "local",
        "",
        &format!("domains = {LOCAL_DOMAINS}\nlookup = true\n{chain}"),
    );
    c
}

fn start(auth_params: &str) -> Proxy {
    Proxy::start_with(|port| config(port, auth_params))
}

// === Digest ===

/// The params of a `Digest ...` challenge, in order, values unquoted.
fn challenge_params(value: &str) -> Vec<(String, String)> {
    let rest = value
        .strip_prefix("Digest ")
        .unwrap_or_else(|| panic!("not a Digest challenge: {value}"));
    rest.split(", ")
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .unwrap_or_else(|| panic!("param without value in {value}"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// The nonce of the one `header` of `reply` (401/407), after checking the header is
/// exactly Kamailio's `Digest realm="<realm>", nonce="<n>", qop="auth"[, stale=true]`.
fn kamailio_challenge(reply: &SipMsg, header: &str, realm: &str, stale: bool) -> String {
    let lines = reply.header_lines(header);
    assert_eq!(lines.len(), 1, "one {header} expected:\n{}", reply.text());
    let nonce = challenge_params(lines[0])
        .into_iter()
        .find(|(k, _)| k == "nonce")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no nonce:\n{}", reply.text()));
    let stale = if stale { ", stale=true" } else { "" };
    assert_eq!(
        lines[0],
        format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\"{stale}"),
        "{}",
        reply.text()
    );
    nonce
}

/// `(expire, since)` of a Kamailio nonce (`base64(expire|since|MD5(...))`, 24 bytes).
fn nonce_times(nonce: &str) -> (u64, u64) {
    assert_eq!(nonce.len(), 32, "nonce {nonce}");
    let raw = base64_decode(nonce).unwrap_or_else(|| panic!("nonce not base64: {nonce}"));
    assert_eq!(raw.len(), 24, "nonce {nonce}");
    let word = |i: usize| {
        u64::from(u32::from_be_bytes([
            raw[i],
            raw[i + 1],
            raw[i + 2],
            raw[i + 3],
        ]))
    };
    (word(0), word(4))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An `Authorization` / `Proxy-Authorization` value for MD5, `qop=auth`.
#[allow(clippy::too_many_arguments)]
fn credentials(
    user: &str,
    password: &str,
    realm: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let cnonce = token();
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", qop=auth, nc={nc:08x}, cnonce=\"{cnonce}\""
    )
}

// === Requests of the raw test UA ===

/// A REGISTER of `user@domain` (Request-URI `sip:<domain>`) with `contact` and
/// Expires 600.
fn register_msg(
    via: &str,
    contact: &str,
    user: &str,
    domain: &str,
    call_id: &str,
    cseq: u32,
) -> SipMsg {
    SipMsg::request("REGISTER", &format!("sip:{domain}"), via)
        .set_header("From", &format!("<sip:{user}@{domain}>;tag=r{}", token()))
        .set_header("To", &format!("<sip:{user}@{domain}>"))
        .set_header("Call-ID", call_id)
        .set_header("CSeq", &format!("{cseq} REGISTER"))
        .add_header("Contact", &format!("<{contact}>"))
        .add_header("Expires", "600")
}

/// A request `method` from `from_user@from_domain` to `ruri`.
fn request_from(method: &str, ruri: &str, via: &str, from: &str) -> SipMsg {
    SipMsg::request(method, ruri, via)
        .set_header("From", &format!("<sip:{from}>;tag=f{}", token()))
        .set_header("To", &format!("<{ruri}>"))
}

/// The final response to `req` sent by `ua` (provisionals and other transactions
/// skipped); a non-2xx final to an INVITE is ACKed.
fn final_of(ua: &UdpPeer, to: SocketAddr, req: &SipMsg) -> SipMsg {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let Some((m, _)) = ua.recv(wait::left(end)) else {
            panic!("no final response to\n{}", req.text());
        };
        if m.header("Call-ID") != req.header("Call-ID")
            || m.header("CSeq") != req.header("CSeq")
            || m.status().is_none_or(|s| s < 200)
        {
            continue;
        }
        if req.method() == Some("INVITE") && m.status().is_some_and(|s| s >= 300) {
            ua.send(&ack_for(req, &m), to);
        }
        return m;
    }
}

/// The ACK of a non-2xx final `reply` to `invite` (same branch, To tag of the reply).
fn ack_for(invite: &SipMsg, reply: &SipMsg) -> SipMsg {
    let cseq = invite.header("CSeq").unwrap().replace("INVITE", "ACK");
    SipMsg {
        start: invite.start.replacen("INVITE", "ACK", 1),
        ..invite.clone()
    }
    .set_header("CSeq", &cseq)
    .set_header("To", reply.header("To").expect("reply has a To"))
    .without("Contact")
    .without("Proxy-Authorization")
}

/// Send `req` from `ua` to `proxy` and return its final response.
fn send(ua: &UdpPeer, proxy: &Proxy, req: &SipMsg) -> SipMsg {
    ua.send(req, proxy.addr());
    final_of(ua, proxy.addr(), req)
}

/// Register `ua` (its own address as Contact) as `user` with `password` at `domain`:
/// 401, then 200. The nonce used.
fn register_with_auth(
    ua: &UdpPeer,
    proxy: &Proxy,
    user: &str,
    password: &str,
    domain: &str,
) -> String {
    let call_id = format!("{}@127.0.0.1", token());
    let contact = format!("sip:{user}@{}", ua.host_port());
    let r = send(
        ua,
        proxy,
        &register_msg(&ua.via(), &contact, user, domain, &call_id, 1),
    );
    assert_eq!(r.status(), Some(401), "{}", r.text());
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", domain, false);
    let auth = credentials(
        user,
        password,
        domain,
        &nonce,
        "REGISTER",
        &format!("sip:{domain}"),
        1,
    );
    let req = register_msg(&ua.via(), &contact, user, domain, &call_id, 2)
        .add_header("Authorization", &auth);
    let r = send(ua, proxy, &req);
    assert_eq!(
        r.status(),
        Some(200),
        "REGISTER of {user} with credentials:\n{}",
        r.text()
    );
    nonce
}

// === Tests ===

/// No credentials: REGISTER gets `401 Unauthorized` with one WWW-Authenticate exactly
/// as Kamailio prints it (realm = From domain), a nonce whose lifetime is
/// `nonce_expire` (default 300) from now; an INVITE from a local user gets `407 Proxy
/// Authentication Required` with Proxy-Authenticate; from another domain it is not
/// challenged (the lookup answers: no binding).
#[test]
fn challenges_are_kamailio_s() {
    let proxy = start("");
    let ua = UdpPeer::bind();
    let call_id = format!("{}@127.0.0.1", token());
    let contact = format!("sip:user0001@{}", ua.host_port());
    let before = unix_now();
    let r = send(
        &ua,
        &proxy,
        &register_msg(&ua.via(), &contact, "user0001", REALM, &call_id, 1),
    );
    let after = unix_now();
    assert_eq!(r.start, "SIP/2.0 401 Unauthorized", "{}", r.text());
    assert!(!r.has("Proxy-Authenticate"), "{}", r.text());
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", REALM, false);
    let (expire, since) = nonce_times(&nonce);
    assert_eq!(expire - since, 300, "nonce {nonce}");
    assert!(
        (before..=after).contains(&since),
        "nonce created at {since}, not in {before}..={after}"
    );
    assert!(
        param(r.header("To").unwrap(), "tag").is_some(),
        "{}",
        r.text()
    );

    // The realm follows the From domain.
    let r = send(
        &ua,
        &proxy,
        &register_msg(
            &ua.via(),
            "sip:alice@127.0.0.1:9",
            "alice",
            "weir.test",
            &format!("{}@x", token()),
            1,
        ),
    );
    assert_eq!(r.status(), Some(401), "{}", r.text());
    kamailio_challenge(&r, "WWW-Authenticate", "weir.test", false);

    // A call from a local user: 407.
    let inv = request_from(
        "INVITE",
        "sip:user0002@127.0.0.1",
        &ua.via(),
        "user0001@127.0.0.1",
    );
    let r = send(&ua, &proxy, &inv);
    assert_eq!(
        r.start,
        "SIP/2.0 407 Proxy Authentication Required",
        "{}",
        r.text()
    );
    assert!(!r.has("WWW-Authenticate"), "{}", r.text());
    kamailio_challenge(&r, "Proxy-Authenticate", REALM, false);

    // From another domain: not challenged; user0002 has no binding.
    let inv = request_from(
        "INVITE",
        "sip:user0002@127.0.0.1",
        &ua.via(),
        "carol@example.com",
    );
    let r = send(&ua, &proxy, &inv);
    assert_eq!(r.status(), Some(404), "{}", r.text());

    let stats = proxy.stop();
    assert_eq!(stats.get("registrations"), 0, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// sipp registers 200 users of `config/subscribers.csv` (half plain passwords, half
/// `ha1=`) over UDP and 40 over TCP: each REGISTER is challenged (401, Kamailio's
/// format, checked by the scenario), answered with `[authentication]`, and gets the
/// registrar's 200 with the binding.
#[test]
fn sipp_registers_subscribers_with_digest_over_udp_and_tcp() {
    const UDP_USERS: usize = 200;
    const TCP_USERS: usize = 40;
    let proxy = start("");
    let dir = TempDir::new("auth-inf");
    let users = numbered(UDP_USERS);
    assert_eq!(users.len(), UDP_USERS);
    for (transport, n) in [(Transport::Udp, UDP_USERS), (Transport::Tcp, TCP_USERS)] {
        let inf = inject_file(&dir, &format!("{transport:?}.csv"), &users[..n]);
        let mut u = Uac::new(proxy.addr(), transport, u32::try_from(n).unwrap(), 100);
        u.scenario = Some(sipp::scenario("auth_register.xml"));
        u.args = vec![
            "-inf".into(),
            inf.display().to_string(),
            "-key".into(),
            "expires".into(),
            "600".into(),
        ];
        let run = u.run();
        let n = u64::try_from(n).unwrap();
        assert_eq!(run.successful, Some(n), "{transport:?}\n{}", run.report);
        assert_eq!(run.failed, Some(0), "{transport:?}\n{}", run.report);
        assert_eq!(run.exit_code, Some(0), "{transport:?}\n{}", run.report);
    }
    let stats = proxy.stop();
    let total = u64::try_from(UDP_USERS + TCP_USERS).unwrap();
    assert_eq!(stats.get("registrations"), total, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// Wrong passwords (sipp, 10 users, plain and `ha1=`) and an unknown user are
/// challenged again, never registered; with `on_failure = "forbidden"` a wrong
/// password gets 403; a valid user authenticating for another From user gets
/// `403 Forbidden auth ID`.
#[test]
fn wrong_passwords_are_challenged_again_and_never_registered() {
    let proxy = start("");
    let dir = TempDir::new("auth-inf");
    let mut wrong: Vec<(String, String)> = numbered(10)
        .into_iter()
        .map(|(u, p)| (u, format!("{p}x")))
        .collect();
    wrong.push(("nobody".into(), "pass-0001".into()));
    let inf = inject_file(&dir, "wrong.csv", &wrong);
    let mut u = Uac::new(
        proxy.addr(),
        Transport::Udp,
        u32::try_from(wrong.len()).unwrap(),
        50,
    );
    u.scenario = Some(sipp::scenario("auth_register_wrong.xml"));
    u.args = vec!["-inf".into(), inf.display().to_string()];
    let run = u.run();
    let n = u64::try_from(wrong.len()).unwrap();
    assert_eq!(run.successful, Some(n), "{}", run.report);
    assert_eq!(run.exit_code, Some(0), "{}", run.report);

    // user0001's valid credentials in a REGISTER of user0003: 403.
    let ua = UdpPeer::bind();
    let call_id = format!("{}@127.0.0.1", token());
    let contact = format!("sip:user0003@{}", ua.host_port());
    let r = send(
        &ua,
        &proxy,
        &register_msg(&ua.via(), &contact, "user0003", REALM, &call_id, 1),
    );
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", REALM, false);
    let auth = credentials(
        "user0001",
        "pass-0001",
        REALM,
        &nonce,
        "REGISTER",
        "sip:127.0.0.1",
        1,
    );
    let req = register_msg(&ua.via(), &contact, "user0003", REALM, &call_id, 2)
        .add_header("Authorization", &auth);
    let r = send(&ua, &proxy, &req);
    assert_eq!(r.start, "SIP/2.0 403 Forbidden auth ID", "{}", r.text());
    let stats = proxy.stop();
    assert_eq!(stats.get("registrations"), 0, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");

    // on_failure = "forbidden": 403 instead of a new challenge; still 200 when right.
    let proxy = start("on_failure = \"forbidden\"");
    let call_id = format!("{}@127.0.0.1", token());
    let contact = format!("sip:user0002@{}", ua.host_port());
    let r = send(
        &ua,
        &proxy,
        &register_msg(&ua.via(), &contact, "user0002", REALM, &call_id, 1),
    );
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", REALM, false);
    let auth = credentials(
        "user0002",
        "pass-0001",
        REALM,
        &nonce,
        "REGISTER",
        "sip:127.0.0.1",
        1,
    );
    let req = register_msg(&ua.via(), &contact, "user0002", REALM, &call_id, 2)
        .add_header("Authorization", &auth);
    let r = send(&ua, &proxy, &req);
    assert_eq!(r.start, "SIP/2.0 403 Forbidden auth ID", "{}", r.text());
    register_with_auth(&ua, &proxy, "user0002", "pass-0002", REALM);
    let stats = proxy.stop();
    assert_eq!(stats.get("registrations"), 1, "{stats:?}");
}

/// The callee (a raw peer, `ha1=` user0004) registers with credentials; a sipp caller
/// (user0001, From domain local) sends an INVITE, gets 407, ACKs it, sends it again
/// with Proxy-Authorization; the call reaches the callee, whose INVITE carries no
/// Proxy-Authorization (consumed) but header-ops' edit (the chain went on); ACK and
/// BYE pass without a challenge and the call completes.
#[test]
fn a_local_caller_answers_407_and_reaches_the_callee_without_credentials() {
    let proxy = start("");
    let callee = UdpPeer::bind();
    register_with_auth(&callee, &proxy, "user0004", "pass-0004", REALM);

    let answering = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        let mut invites = Vec::new();
        let mut others = Vec::new();
        loop {
            let Some((m, from)) = callee.recv(wait::left(end)) else {
                panic!("callee: no BYE; INVITEs {invites:?}, others {others:?}");
            };
            match m.method() {
                Some("INVITE") => {
                    let ok = m
                        .reply(200, "OK", Some("callee"))
                        .add_header("Contact", &format!("<sip:user0004@{}>", callee.host_port()));
                    callee.send(&ok, from);
                    invites.push(m);
                }
                Some("BYE") => {
                    callee.send(&m.reply(200, "OK", None), from);
                    others.push(m.summary());
                    return (invites, others);
                }
                _ => others.push(m.summary()),
            }
        }
    });

    let dir = TempDir::new("auth-inf");
    let inf = inject_file(
        &dir,
        "caller.csv",
        &[("user0001".into(), "pass-0001".into())],
    );
    let mut u = Uac::new(proxy.addr(), Transport::Udp, 1, 1);
    u.scenario = Some(sipp::scenario("auth_uac_call.xml"));
    u.timeout = Duration::from_secs(20);
    u.args = vec![
        "-inf".into(),
        inf.display().to_string(),
        "-s".into(),
        "user0004".into(),
    ];
    let run = u.run();
    let Ok((invites, others)) = answering.join() else {
        panic!("the callee failed (see above); sipp:\n{}", run.report);
    };
    let verdict = format!("{}\ncallee saw {others:?}", run.report);
    assert_eq!(run.successful, Some(1), "{verdict}");
    assert_eq!(run.exit_code, Some(0), "{verdict}");
    // Only the authenticated INVITE was forwarded (retransmissions aside).
    assert!(!invites.is_empty(), "{verdict}");
    for inv in &invites {
        assert_eq!(inv.header("CSeq"), Some("2 INVITE"), "{}", inv.text());
        assert!(
            !inv.has("Proxy-Authorization"),
            "credentials forwarded:\n{}",
            inv.text()
        );
        assert!(!inv.has("Authorization"), "{}", inv.text());
        assert_eq!(inv.header("X-Weir"), Some("auth"), "{}", inv.text());
        assert!(
            inv.header("From")
                .unwrap()
                .contains("sip:user0001@127.0.0.1"),
            "{}",
            inv.text()
        );
    }
    assert!(others.iter().any(|s| s.starts_with("ACK")), "{verdict}");
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// `nonce_expire = 3`: the nonce of a challenge is used again with nc incremented and
/// a new cnonce (a re-REGISTER, and a REGISTER of another Call-ID): 200 each time, no
/// new challenge. Once it has expired the same credentials get a challenge with
/// `stale=true` and a new nonce, which works. A nonce that is not ours gets a challenge
/// without `stale`.
#[test]
fn a_nonce_is_reused_until_it_expires_then_stale() {
    let proxy = start("nonce_expire = 3");
    let ua = UdpPeer::bind();
    let contact = format!("sip:user0006@{}", ua.host_port());
    let reg = |call_id: &str, cseq: u32, auth: Option<String>| {
        let m = register_msg(&ua.via(), &contact, "user0006", REALM, call_id, cseq);
        match auth {
            Some(a) => m.add_header("Authorization", &a),
            None => m,
        }
    };
    let auth = |nonce: &str, nc: u32| {
        credentials(
            "user0006",
            "pass-0006",
            REALM,
            nonce,
            "REGISTER",
            "sip:127.0.0.1",
            nc,
        )
    };
    let call_id = format!("{}@127.0.0.1", token());
    let t0 = Instant::now();
    let r = send(&ua, &proxy, &reg(&call_id, 1, None));
    assert_eq!(r.status(), Some(401), "{}", r.text());
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", REALM, false);
    let (expire, since) = nonce_times(&nonce);
    assert_eq!(expire - since, 3, "nonce {nonce}");

    let mut cseq = 2;
    for nc in 1..=3u32 {
        let r = send(&ua, &proxy, &reg(&call_id, cseq, Some(auth(&nonce, nc))));
        cseq += 1;
        assert_eq!(
            r.status(),
            Some(200),
            "nc {nc} after {:?}:\n{}",
            t0.elapsed(),
            r.text()
        );
    }
    let other_call = format!("{}@127.0.0.1", token());
    let r = send(&ua, &proxy, &reg(&other_call, 1, Some(auth(&nonce, 4))));
    assert_eq!(
        r.status(),
        Some(200),
        "after {:?}:\n{}",
        t0.elapsed(),
        r.text()
    );

    // Keep using it until it is refused: every answer until then is 200.
    let mut nc = 5;
    let stale = wait::until(Duration::from_secs(15), || {
        std::thread::sleep(Duration::from_millis(100));
        let r = send(&ua, &proxy, &reg(&call_id, cseq, Some(auth(&nonce, nc))));
        cseq += 1;
        nc += 1;
        match r.status() {
            Some(200) => None,
            _ => Some(r),
        }
    })
    .expect("the nonce never expired");
    let elapsed = t0.elapsed();
    assert_eq!(stale.status(), Some(401), "{}", stale.text());
    let fresh = kamailio_challenge(&stale, "WWW-Authenticate", REALM, true);
    assert_ne!(fresh, nonce);
    // Valid while `expire >= now` (whole seconds): at least 3 s after the challenge.
    assert!(
        elapsed >= Duration::from_millis(2900),
        "stale after {elapsed:?}"
    );

    let r = send(&ua, &proxy, &reg(&call_id, cseq, Some(auth(&fresh, 1))));
    cseq += 1;
    assert_eq!(r.status(), Some(200), "{}", r.text());

    // Not our nonce (right length, wrong MD5): a plain challenge.
    let bogus = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = send(&ua, &proxy, &reg(&call_id, cseq, Some(auth(bogus, 1))));
    assert_eq!(r.status(), Some(401), "{}", r.text());
    kamailio_challenge(&r, "WWW-Authenticate", REALM, false);

    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// `trust_connection = true`: user0001 authenticates a REGISTER on a TCP connection;
/// its next request on that connection (a MESSAGE to user0003, registered over UDP)
/// passes without a challenge and reaches user0003. On the same connection a MESSAGE
/// from user0005 is challenged (407), and so is user0001 on a new connection and over
/// UDP.
#[test]
fn an_authenticated_tcp_connection_is_trusted_for_its_user_only() {
    let proxy = start("trust_connection = true");
    let callee = UdpPeer::bind();
    register_with_auth(&callee, &proxy, "user0003", "pass-0003", REALM);

    let mut tcp = TcpPeer::connect(proxy.addr());
    let contact = format!("sip:user0001@{};transport=tcp", tcp.local());
    let call_id = format!("{}@127.0.0.1", token());
    tcp.send(&register_msg(
        &tcp.via(),
        &contact,
        "user0001",
        REALM,
        &call_id,
        1,
    ));
    let r = tcp_final(&mut tcp, "401 to REGISTER");
    assert_eq!(r.status(), Some(401), "{}", r.text());
    let nonce = kamailio_challenge(&r, "WWW-Authenticate", REALM, false);
    let auth = credentials(
        "user0001",
        "pass-0001",
        REALM,
        &nonce,
        "REGISTER",
        "sip:127.0.0.1",
        1,
    );
    tcp.send(
        &register_msg(&tcp.via(), &contact, "user0001", REALM, &call_id, 2)
            .add_header("Authorization", &auth),
    );
    let r = tcp_final(&mut tcp, "200 to REGISTER");
    assert_eq!(r.status(), Some(200), "{}", r.text());

    // user0001 on the trusted connection: no challenge, the MESSAGE is delivered.
    let msg = request_from(
        "MESSAGE",
        "sip:user0003@127.0.0.1",
        &tcp.via(),
        "user0001@127.0.0.1",
    );
    tcp.send(&msg);
    let (fwd, from) = loop {
        let Some((m, from)) = callee.recv(EXPECT_TIMEOUT) else {
            let got = tcp.recv(Duration::from_millis(500));
            panic!("the MESSAGE did not reach user0003; user0001 got {got:?}");
        };
        if m.method() == Some("MESSAGE") {
            break (m, from);
        }
    };
    assert!(
        fwd.header("From").unwrap().contains("user0001@127.0.0.1"),
        "{}",
        fwd.text()
    );
    callee.send(&fwd.reply(200, "OK", Some("callee")), from);
    let r = tcp_final(&mut tcp, "200 to MESSAGE");
    assert_eq!(r.status(), Some(200), "{}", r.text());

    // Another From user on the same connection: challenged.
    tcp.send(&request_from(
        "MESSAGE",
        "sip:user0003@127.0.0.1",
        &tcp.via(),
        "user0005@127.0.0.1",
    ));
    let r = tcp_final(&mut tcp, "407 to user0005's MESSAGE");
    assert_eq!(r.status(), Some(407), "{}", r.text());
    kamailio_challenge(&r, "Proxy-Authenticate", REALM, false);

    // user0001 on a new connection: challenged.
    let mut tcp2 = TcpPeer::connect(proxy.addr());
    tcp2.send(&request_from(
        "MESSAGE",
        "sip:user0003@127.0.0.1",
        &tcp2.via(),
        "user0001@127.0.0.1",
    ));
    let r = tcp_final(&mut tcp2, "407 on a new connection");
    assert_eq!(r.status(), Some(407), "{}", r.text());

    // user0001 over UDP: challenged.
    let ua = UdpPeer::bind();
    let r = send(
        &ua,
        &proxy,
        &request_from(
            "MESSAGE",
            "sip:user0003@127.0.0.1",
            &ua.via(),
            "user0001@127.0.0.1",
        ),
    );
    assert_eq!(r.status(), Some(407), "{}", r.text());

    // Nothing but the one MESSAGE reached the callee.
    assert!(callee
        .recv(Duration::from_millis(200))
        .is_none_or(|(m, _)| m.method() != Some("MESSAGE")));
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// The next final response on `tcp`.
fn tcp_final(tcp: &mut TcpPeer, what: &str) -> SipMsg {
    loop {
        let m = tcp.expect(what);
        if m.status().is_some_and(|s| s >= 200) {
            return m;
        }
    }
}

/// `config/proxy-auth.toml` as shipped, with only its addresses and paths moved: the
/// proxy on a free port, the next hop (`127.0.0.1:5070`) on a raw peer, `../target/`,
/// `subscribers.csv` and the state directory absolute. sipp registers 20 users of
/// `config/subscribers.csv` with digest; a local user's INVITE, to a local or a
/// foreign domain, gets 407; an INVITE from another domain is not challenged.
#[test]
fn shipped_proxy_auth_config_registers_subscribers() {
    let path = repo_root().join("config/proxy-auth.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let state = TempDir::new("proxy-auth-state");
    let hop = UdpPeer::bind();
    let target = target_dir().display().to_string();
    for needle in [
        "127.0.0.1:5060",
        "127.0.0.1:5070",
        "\"../target/",
        "file = \"subscribers.csv\"",
        "path = \"../var/proxy-auth-state\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {}", path.display());
    }
    let proxy = Proxy::start_with(|port| {
        text.replace("127.0.0.1:5060", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:5070", &hop.host_port())
            .replace("\"../target/", &format!("\"{target}/"))
            .replace(
                "file = \"subscribers.csv\"",
                &format!("file = \"{}\"", subscribers_csv().display()),
            )
            .replace(
                "path = \"../var/proxy-auth-state\"",
                &format!("path = \"{}\"", state.path().display()),
            )
    });

    let dir = TempDir::new("auth-inf");
    let inf = inject_file(&dir, "users.csv", &numbered(20));
    let mut u = Uac::new(proxy.addr(), Transport::Udp, 20, 50);
    u.scenario = Some(sipp::scenario("auth_register.xml"));
    u.args = vec![
        "-inf".into(),
        inf.display().to_string(),
        "-key".into(),
        "expires".into(),
        "600".into(),
    ];
    let run = u.run();
    assert_eq!(run.successful, Some(20), "{}", run.report);
    assert_eq!(run.exit_code, Some(0), "{}", run.report);

    let ua = UdpPeer::bind();
    for ruri in ["sip:user0002@127.0.0.1", "sip:someone@example.com"] {
        let r = send(
            &ua,
            &proxy,
            &request_from("INVITE", ruri, &ua.via(), "user0001@127.0.0.1"),
        );
        assert_eq!(r.status(), Some(407), "{ruri}:\n{}", r.text());
        kamailio_challenge(&r, "Proxy-Authenticate", REALM, false);
    }
    // From another domain to a local user without binding: the lookup answers.
    let r = send(
        &ua,
        &proxy,
        &request_from(
            "INVITE",
            "sip:user0999@127.0.0.1",
            &ua.via(),
            "x@example.com",
        ),
    );
    assert_eq!(r.status(), Some(404), "{}", r.text());
    assert!(
        hop.recv(Duration::from_millis(100)).is_none(),
        "something reached the next hop"
    );

    let stats = proxy.stop();
    assert_eq!(stats.get("registrations"), 20, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// `[store.subscribers]` without a `[store]` line before it is valid TOML (the parent
/// table is implicit) and should mean the default store with a credentials file, as
/// `[store]` + `[store.subscribers]` does. Weir refuses it.
#[test]
fn store_subscribers_without_a_store_line_is_accepted() {
    let text = format!(
        "{}[[listen]]\nname = \"udp\"\ntransport = \"udp\"\naddress = \"127.0.0.1:5999\"\n\n\
         [store.subscribers]\nfile = \"{}\"\n\n\
         [[route]]\nname = \"default\"\nnext_hop = \"sip:127.0.0.1:5070\"\n",
        conf::header(),
        subscribers_csv().display()
    );
    let done = Proxy::check(&text);
    assert!(done.status.success(), "{}\n{text}", done.output());
}

/// `weir check` validates a config without starting it; a credentials file that
/// `weir run` refuses (here a line with a trailing `# comment`, as in the example of
/// plugins/auth-digest/README.md) should fail the check too, naming the line.
#[test]
fn weir_check_refuses_a_bad_credentials_file() {
    let dir = TempDir::new("bad-subscribers");
    let csv = dir.path().join("subscribers.csv");
    std::fs::write(
        &csv,
        "bob,example.com,ha1=f3281035fbec0270e4c177bc17a0e860   # MD5(bob:example.com:b0b)\n",
    )
    .unwrap();
    let text = format!(
        "{}[[listen]]\nname = \"udp\"\ntransport = \"udp\"\naddress = \"127.0.0.1:5999\"\n\n\
         [store]\n[store.subscribers]\nfile = \"{}\"\n\n\
         [[route]]\nname = \"default\"\nnext_hop = \"sip:127.0.0.1:5070\"\n",
        conf::header(),
        csv.display()
    );
    let done = Proxy::check(&text);
    assert!(
        !done.status.success(),
        "weir check accepted it:\n{}",
        done.output()
    );
    assert!(done.output().contains(":1:"), "{}", done.output());
}
