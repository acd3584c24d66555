//! The registrar and location service (`[registrar]`, routes with `registrar = true` and
//! `lookup = true`, `[store]`): REGISTERs saved and answered with the AOR's bindings,
//! initial requests sent to the registered contacts.
//!
//! What is checked: sipp registering users from an injection file (`-inf`), over UDP and
//! TCP, every 200 listing the binding with `expires=`; a sipp call to a registered user
//! completing at the sipp UAS that is its contact, an unknown user getting 404; a short
//! registration (`min_expires` lowered) working before and 404 after its expiry, and the
//! purge deleting the expired record (Redis, where the record is visible); `max_contacts`
//! refusing a third contact with 503 + `P-Registrar-Error` + `Retry-After`; a
//! `+sip.instance` re-registered with a new Call-ID and contact replacing its binding;
//! `Contact: *` + `Expires: 0` removing all bindings (and `*` without it refused);
//! bindings of an embedded store with `path` surviving `kill -9`; two nodes sharing
//! bindings through one real `redis-server`; `unregister_on = [477]` removing a binding
//! whose branch failed with 477 (and not one whose branch got 486).
//!
//! Registrations whose Contact is a sipp UAS are made by the raw test UA on the UAS's
//! behalf (sipp's UAS cannot send a REGISTER first): those tests set
//! `save_received = "never"`, otherwise the registrar would keep the UA's own address
//! as the binding's `received` (the NAT case) and send the calls there. Contacts that
//! register themselves (raw peers) use the default.
//!
//! The AORs are `sip:<user>@127.0.0.1` (To of the REGISTER, port ignored).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_system_tests::paths::TempDir;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::proxy::{HEADER_OPS, MISBEHAVE};
use weir_system_tests::sip::{param, uri_of};
use weir_system_tests::sipp::{self, Transport, Uac, UacResult, Uas, UasOptions};
use weir_system_tests::{conf, ports, token, wait, Proxy, SipMsg};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long a UAS that was given a number of calls may take to finish them once the
/// UAC is done.
const UAS_FINISH: Duration = Duration::from_secs(15);

/// The registrar setting of tests whose contacts are registered by someone else.
const THIRD_PARTY: &str = "save_received = \"never\"";

// === Config ===

/// The test proxy: UDP and TCP on `127.0.0.1:port` (one UDP receive thread), short
/// transaction timers, header-ops as `headers`, `[registrar]` with `registrar` lines,
/// `store` (a whole `[store]` table, or empty for the in-memory default), and two
/// stateful routes: REGISTER to the registrar, everything else looked up (requests
/// within a dialog follow their Request-URI).
fn config(port: u16, registrar: &str, store: &str) -> String {
    let mut c = conf::header();
    c += &conf::transaction("fr_timer_ms = 1000\nfr_inv_timer_ms = 10000");
    c += &conf::listeners(port);
    // A generous module deadline: these tests run beside sipp on few cores.
    c += &format!(
        "[modules.headers]\ncomponent = \"{HEADER_OPS}\"\ntimeout_ms = 1000\n\
         [modules.headers.params]\n\
         remove_prefix = [\"X-Debug-\"]\nappend = [\"X-Weir: registrar\"]\n\n"
    );
    c += &format!("[registrar]\n{}\n\n", registrar.trim());
    if !store.is_empty() {
        c += &format!("{}\n\n", store.trim());
    }
    let chain = "request = [{ module = \"headers\" }]";
    c += &conf::stateful_route(
        "register",
        "",
        &format!("methods = [\"REGISTER\"]\nregistrar = true\n{chain}"),
    );
    c += &conf::stateful_route("location", "", &format!("lookup = true\n{chain}"));
    c
}

fn start(registrar: &str, store: &str) -> Proxy {
    Proxy::start_with(|port| config(port, registrar, store))
}

/// A `[store]` table persisting to `dir`.
fn embedded_store(dir: &TempDir) -> String {
    let p = dir.path().display().to_string();
    format!(
        "[store]\nbackend = \"embedded\"\npath = \"{}\"",
        p.replace('\\', "\\\\")
    )
}

/// A `[store]` table on the Redis at `url`.
fn redis_store(url: &str) -> String {
    format!(
        "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"{url}\"\nprefix = \"{REDIS_PREFIX}\""
    )
}

// === REGISTER by the raw UA ===

/// `sip:<user>@127.0.0.1`.
fn aor(user: &str) -> String {
    format!("sip:{user}@127.0.0.1")
}

/// A REGISTER for `user` without Contact (a query, until the caller adds some).
fn register_req(ua: &UdpPeer, user: &str, call_id: &str, cseq: u32) -> SipMsg {
    SipMsg::request("REGISTER", "sip:127.0.0.1", &ua.via())
        .set_header("From", &format!("<{}>;tag=r{}", aor(user), token()))
        .set_header("To", &format!("<{}>", aor(user)))
        .set_header("Call-ID", call_id)
        .set_header("CSeq", &format!("{cseq} REGISTER"))
}

/// Send `req` through `proxy` and return the final reply.
fn send_register(ua: &UdpPeer, proxy: &Proxy, req: &SipMsg) -> SipMsg {
    ua.transact(req, proxy.addr(), "final reply to REGISTER")
}

/// Register `contact` (a URI) for `user` with `expires`, expecting 200; the 200.
fn register(ua: &UdpPeer, proxy: &Proxy, user: &str, contact: &str, expires: u32) -> SipMsg {
    let req = register_req(ua, user, &format!("{}@127.0.0.1", token()), 1)
        .add_header("Contact", &format!("<{contact}>"))
        .add_header("Expires", &expires.to_string());
    let r = send_register(ua, proxy, &req);
    assert_eq!(
        r.status(),
        Some(200),
        "REGISTER of {contact}:\n{}",
        r.text()
    );
    r
}

/// The bindings a 200 to REGISTER lists (`(contact URI, expires)`).
fn bindings(reply: &SipMsg) -> Vec<(String, u32)> {
    reply
        .list("Contact")
        .iter()
        .map(|c| {
            let exp = param(c, "expires")
                .flatten()
                .and_then(|e| e.parse().ok())
                .unwrap_or_else(|| panic!("binding without expires: {c}\n{}", reply.text()));
            (uri_of(c).to_string(), exp)
        })
        .collect()
}

/// The bindings of `user`, from a REGISTER without Contact.
fn query(ua: &UdpPeer, proxy: &Proxy, user: &str) -> Vec<(String, u32)> {
    let req = register_req(ua, user, &format!("{}@127.0.0.1", token()), 1);
    let r = send_register(ua, proxy, &req);
    assert_eq!(r.status(), Some(200), "query of {user}:\n{}", r.text());
    bindings(&r)
}

/// The URIs of `b`.
fn uris(b: &[(String, u32)]) -> Vec<&str> {
    b.iter().map(|(u, _)| u.as_str()).collect()
}

// === Calls by the raw UA ===

/// An INVITE from `ua` to `ruri`.
fn invite(ua: &UdpPeer, ruri: &str) -> SipMsg {
    SipMsg::request("INVITE", ruri, &ua.via())
        .set_header("To", &format!("<{ruri}>"))
        .add_header("Contact", &format!("<sip:caller@{}>", ua.host_port()))
}

/// The final response to `req` (sent by `ua`), skipping provisionals and anything of
/// another call; a non-2xx final is ACKed.
fn final_of(ua: &UdpPeer, proxy: &Proxy, req: &SipMsg, limit: Duration) -> SipMsg {
    let end = Instant::now() + limit;
    loop {
        let left = wait::left(end);
        let Some((m, _)) = ua.recv(left) else {
            panic!("no final response within {limit:?} to\n{}", req.text());
        };
        if m.header("Call-ID") != req.header("Call-ID") || m.status().is_none_or(|s| s < 200) {
            continue;
        }
        if m.status().is_some_and(|s| s >= 300) {
            let ack = SipMsg {
                start: req.start.replacen("INVITE", "ACK", 1),
                ..req.clone()
            }
            .set_header("CSeq", "1 ACK")
            .set_header("To", m.header("To").expect("response has a To"))
            .without("Contact");
            ua.send(&ack, proxy.addr());
        }
        return m;
    }
}

/// Call `ruri` through `proxy` from a fresh UA and return the final status. For
/// users whose contact answers nothing (or is gone), the branch ends with a timeout.
fn call_status(proxy: &Proxy, ruri: &str) -> u16 {
    let ua = UdpPeer::bind();
    let req = invite(&ua, ruri);
    ua.send(&req, proxy.addr());
    final_of(&ua, proxy, &req, Duration::from_secs(15))
        .status()
        .unwrap_or(0)
}

/// `contact` (a raw peer) takes the next INVITE (skipping Weir's ACKs of earlier
/// finals) and answers it with `code`; the INVITE.
fn answer(contact: &UdpPeer, code: u16, reason: &str) -> SipMsg {
    let (inv, from) = loop {
        let (m, from) = contact.expect("INVITE for the registered contact");
        if m.method() != Some("ACK") {
            break (m, from);
        }
    };
    assert_eq!(inv.method(), Some("INVITE"), "{}", inv.text());
    contact.send(&inv.reply(code, reason, Some(&token())), from);
    inv
}

// === sipp ===

/// One sipp call (`uac_call.xml`) to `user` at `proxy`.
fn sipp_call(proxy: &Proxy, user: &str) -> UacResult {
    let mut u = Uac::new(proxy.addr(), Transport::Udp, 1, 1);
    u.scenario = Some(sipp::scenario("uac_call.xml"));
    u.timeout = Duration::from_secs(20);
    u.args = vec!["-s".into(), user.into()];
    u.run()
}

/// A sipp UAS (built-in `uas`) that exits after `calls` calls.
fn uas_for(calls: u32) -> Uas {
    Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: None,
            calls: Some(calls),
            args: Vec::new(),
        },
    )
}

/// The Contact URI under which a sipp UAS is registered for `user`.
fn uas_contact(uas: &Uas, user: &str) -> String {
    format!("sip:{user}@{}", uas.addr())
}

fn assert_call_succeeded(run: &UacResult, context: &str) {
    let verdict = format!("{}\n{context}", run.report);
    assert_eq!(run.successful, Some(1), "{verdict}");
    assert_eq!(run.failed, Some(0), "{verdict}");
    assert_eq!(run.exit_code, Some(0), "sipp reports failures:\n{verdict}");
}

fn assert_uas_succeeded(uas: &mut Uas, calls: u64) {
    let r = uas.finish(UAS_FINISH);
    assert_eq!(r.successful, Some(calls), "{r:?}\n{}", uas.log());
    assert_eq!(r.exit_code, Some(0), "{r:?}\n{}", uas.log());
}

// === Redis ===

const REDIS_PREFIX: &str = "weir-test:";

/// A `redis-server` child on a free loopback port, in-memory only, killed by its PID
/// (`Child::kill`) on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    fn start() -> Redis {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let mut last = String::new();
        for _ in 0..5 {
            let port = ports::free_port();
            let dir = TempDir::new("redis");
            let log = std::fs::File::create(dir.path().join("redis.log")).unwrap();
            let child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start `{bin}` ({e}): install redis-server or set REDIS_SERVER")
                });
            let mut r = Redis {
                child,
                port,
                _dir: dir,
            };
            let up = wait::until(Duration::from_secs(10), || {
                if r.child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                r.try_cmd(&["PING"]).map(|l| l == "+PONG")
            });
            if up == Some(true) {
                return r;
            }
            last = std::fs::read_to_string(r._dir.path().join("redis.log")).unwrap_or_default();
            r.kill();
        }
        panic!("redis-server did not start:\n{last}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command; the first line of the reply (`+PONG`, `:1`, ...).
    fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// Whether the location record of `aor` exists.
    fn has_record(&self, aor: &str) -> bool {
        let key = format!("{REDIS_PREFIX}loc:{aor}");
        match self.try_cmd(&["EXISTS", &key]).as_deref() {
            Some(":1") => true,
            Some(":0") => false,
            other => panic!("EXISTS {key}: {other:?}"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// === Tests ===

#[test]
fn sipp_registers_users_from_a_csv_over_udp_and_tcp() {
    // 20 users from registrar_users.csv, no authentication: every REGISTER gets a 200
    // whose Contact lists a binding with expires= (the scenario checks it). Then the
    // same users over TCP: each user has two bindings, the TCP one with `received`.
    let proxy = start("", "");
    let csv = sipp::scenario("registrar_users.csv");
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut u = Uac::new(proxy.addr(), transport, 20, 50);
        u.scenario = Some(sipp::scenario("registrar_register.xml"));
        u.args = ["-inf", &csv.display().to_string(), "-key", "expires", "600"]
            .map(String::from)
            .to_vec();
        let run = u.run();
        assert_eq!(run.successful, Some(20), "{transport:?}\n{}", run.report);
        assert_eq!(run.failed, Some(0), "{transport:?}\n{}", run.report);
        assert_eq!(run.exit_code, Some(0), "{transport:?}\n{}", run.report);
    }
    let ua = UdpPeer::bind();
    let user07 = query(&ua, &proxy, "user07");
    assert_eq!(user07.len(), 2, "{user07:?}");
    for (uri, exp) in &user07 {
        assert!(uri.starts_with("sip:user07@127.0.0.1:"), "{user07:?}");
        assert!((580..=600).contains(exp), "expires {exp}: {user07:?}");
    }
    assert_eq!(
        user07
            .iter()
            .filter(|(u, _)| u.to_ascii_lowercase().ends_with(";transport=tcp"))
            .count(),
        1,
        "{user07:?}"
    );
    // Not in the file: no binding.
    assert_eq!(query(&ua, &proxy, "user21"), vec![]);
    let stats = proxy.stop();
    assert_eq!(stats.get("registrations"), 42, "{stats:?}");
    assert_eq!(stats.get("registrations_refused"), 0, "{stats:?}");
}

#[test]
fn a_call_reaches_the_registered_contact_and_an_unknown_user_gets_404() {
    let proxy = start(THIRD_PARTY, "");
    let mut uas = uas_for(1);
    let ua = UdpPeer::bind();
    let contact = uas_contact(&uas, "bob");
    let ok = register(&ua, &proxy, "Bob", &contact, 3600);
    assert_eq!(uris(&bindings(&ok)), [contact.as_str()], "{}", ok.text());

    // AORs are lowercased: Bob registered, bob is called.
    let run = sipp_call(&proxy, "bob");
    assert_call_succeeded(&run, &proxy.log());
    assert_uas_succeeded(&mut uas, 1);

    assert_eq!(call_status(&proxy, "sip:nobody@127.0.0.1"), 404);
    let stats = proxy.stop();
    // ACK and BYE within the dialog are not looked up.
    assert_eq!(stats.get("lookups"), 2, "{stats:?}");
    assert_eq!(stats.get("lookups_not_found"), 1, "{stats:?}");
}

#[test]
fn a_binding_works_until_it_expires_then_the_user_gets_404() {
    let proxy = start(&format!("min_expires = 1\n{THIRD_PARTY}"), "");
    let mut uas = uas_for(1);
    let ua = UdpPeer::bind();
    let contact = uas_contact(&uas, "carol");
    let sent = Instant::now();
    let ok = register(&ua, &proxy, "carol", &contact, 2);
    let b = bindings(&ok);
    assert_eq!(uris(&b), [contact.as_str()], "{}", ok.text());
    assert!(b[0].1 <= 2, "expires {}: {}", b[0].1, ok.text());

    let run = sipp_call(&proxy, "carol");
    assert_call_succeeded(&run, &proxy.log());
    assert_uas_succeeded(&mut uas, 1);

    // The UAS has exited: until the binding expires a call times out on its branch
    // (408, fr_timer 1 s); then it gets 404.
    let mut seen = Vec::new();
    let gone = wait::until(Duration::from_secs(15), || {
        let s = call_status(&proxy, "sip:carol@127.0.0.1");
        seen.push(s);
        (s == 404).then_some(())
    });
    assert!(gone.is_some(), "statuses: {seen:?}");
    assert!(
        sent.elapsed() >= Duration::from_millis(1900),
        "404 {:?} after registering for 2 s: {seen:?}",
        sent.elapsed()
    );
    assert!(
        seen.iter().all(|s| [404, 408].contains(s)),
        "statuses: {seen:?}"
    );
    assert_eq!(query(&ua, &proxy, "carol"), vec![]);
}

#[test]
fn expired_bindings_are_purged_from_the_store() {
    // Lookups never return an expired binding; the purge (every 5 s) deletes it from
    // the store. With Redis the record is visible: it would otherwise outlive its
    // binding by expiry_grace_s (300 s).
    let redis = Redis::start();
    let proxy = start("min_expires = 1", &redis_store(&redis.url()));
    let ua = UdpPeer::bind();
    register(&ua, &proxy, "ivan", "sip:ivan@127.0.0.1:5999", 1);
    register(&ua, &proxy, "judy", "sip:judy@127.0.0.1:5999", 3600);
    assert!(redis.has_record(&aor("ivan")));
    let purged = wait::until(Duration::from_secs(20), || {
        (!redis.has_record(&aor("ivan"))).then_some(())
    });
    assert!(purged.is_some(), "the expired binding was not purged");
    assert!(redis.has_record(&aor("judy")), "a live binding was purged");
    assert_eq!(call_status(&proxy, "sip:ivan@127.0.0.1"), 404);
}

#[test]
fn max_contacts_refuses_a_third_contact_with_503() {
    let proxy = start("max_contacts = 2\nretry_after = 30", "");
    let ua = UdpPeer::bind();
    let call_id = format!("{}@127.0.0.1", token());
    let contacts = ["sip:dave@127.0.0.1:5901", "sip:dave@127.0.0.1:5902"];
    for (i, c) in contacts.iter().enumerate() {
        let req = register_req(&ua, "dave", &call_id, 1 + i as u32)
            .add_header("Contact", &format!("<{c}>"));
        let r = send_register(&ua, &proxy, &req);
        assert_eq!(r.status(), Some(200), "{}", r.text());
        assert_eq!(bindings(&r).len(), i + 1, "{}", r.text());
    }
    let req =
        register_req(&ua, "dave", &call_id, 3).add_header("Contact", "<sip:dave@127.0.0.1:5903>");
    let r = send_register(&ua, &proxy, &req);
    assert_eq!(r.status(), Some(503), "{}", r.text());
    assert_eq!(
        r.header("P-Registrar-Error"),
        Some("Too many registered contacts"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("Retry-After"), Some("30"), "{}", r.text());
    // Nothing changed; refreshing a known contact is still fine.
    let mut known = uris(&query(&ua, &proxy, "dave"))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    known.sort();
    assert_eq!(known, contacts);
    let req =
        register_req(&ua, "dave", &call_id, 4).add_header("Contact", &format!("<{}>", contacts[0]));
    assert_eq!(send_register(&ua, &proxy, &req).status(), Some(200));
    let stats = proxy.stop();
    assert_eq!(stats.get("registrations_refused"), 1, "{stats:?}");
}

#[test]
fn a_new_registration_of_an_instance_replaces_its_binding() {
    // A phone (one +sip.instance) registers from one address, restarts (new Call-ID)
    // and registers from another: one binding, the new one, and calls go there.
    let proxy = start("", "");
    let instance = format!("\"<urn:uuid:00000000-0000-4000-8000-{}>\"", token());
    let (old, new) = (UdpPeer::bind(), UdpPeer::bind());
    for phone in [&old, &new] {
        let req = register_req(phone, "erin", &format!("{}@127.0.0.1", token()), 1)
            .add_header(
                "Contact",
                &format!("<sip:erin@{}>;+sip.instance={instance}", phone.host_port()),
            )
            .add_header("Expires", "600");
        let r = send_register(phone, &proxy, &req);
        assert_eq!(r.status(), Some(200), "{}", r.text());
        let listed = r.list("Contact");
        assert_eq!(listed.len(), 1, "{}", r.text());
        assert_eq!(
            uri_of(&listed[0]),
            format!("sip:erin@{}", phone.host_port()),
            "{}",
            r.text()
        );
    }
    let ua = UdpPeer::bind();
    let req = invite(&ua, "sip:erin@127.0.0.1");
    ua.send(&req, proxy.addr());
    let inv = answer(&new, 486, "Busy Here");
    assert_eq!(
        inv.ruri(),
        Some(format!("sip:erin@{}", new.host_port()).as_str())
    );
    let fin = final_of(&ua, &proxy, &req, Duration::from_secs(10));
    assert_eq!(fin.status(), Some(486), "{}", fin.text());
    // A parallel branch to the old address would have been sent with the new one.
    assert!(
        old.recv(Duration::from_millis(50)).is_none(),
        "the old binding was called"
    );
}

#[test]
fn star_with_expires_0_removes_every_binding() {
    let proxy = start("", "");
    let ua = UdpPeer::bind();
    let call_id = format!("{}@127.0.0.1", token());
    let req = register_req(&ua, "frank", &call_id, 1)
        .add_header("Contact", "<sip:frank@127.0.0.1:5911>")
        .add_header("Contact", "<sip:frank@127.0.0.1:5912>;expires=300");
    let r = send_register(&ua, &proxy, &req);
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert_eq!(bindings(&r).len(), 2, "{}", r.text());

    // `*` needs Expires: 0 (Kamailio: 400 "* used in contact and expires is not zero").
    let req = register_req(&ua, "frank", &call_id, 2)
        .add_header("Contact", "*")
        .add_header("Expires", "3600");
    let r = send_register(&ua, &proxy, &req);
    assert_eq!(r.status(), Some(400), "{}", r.text());
    assert_eq!(query(&ua, &proxy, "frank").len(), 2);

    let req = register_req(&ua, "frank", &call_id, 3)
        .add_header("Contact", "*")
        .add_header("Expires", "0");
    let r = send_register(&ua, &proxy, &req);
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert!(!r.has("Contact"), "{}", r.text());
    assert_eq!(query(&ua, &proxy, "frank"), vec![]);
    assert_eq!(call_status(&proxy, "sip:frank@127.0.0.1"), 404);
}

#[test]
fn bindings_of_an_embedded_store_survive_kill_9() {
    let state = TempDir::new("registrar-state");
    let store = embedded_store(&state);
    let mut uas = uas_for(1);
    let contact = uas_contact(&uas, "gina");
    let ua = UdpPeer::bind();
    let first = start(THIRD_PARTY, &store);
    register(&ua, &first, "gina", &contact, 3600);
    first.kill9();

    let second = start(THIRD_PARTY, &store);
    let run = sipp_call(&second, "gina");
    assert_call_succeeded(&run, &second.log());
    assert_uas_succeeded(&mut uas, 1);
    let listed = query(&ua, &second, "gina");
    assert_eq!(uris(&listed), [contact.as_str()], "{listed:?}");
    assert!((3500..=3600).contains(&listed[0].1), "{listed:?}");
    let stats = second.stop();
    assert_eq!(stats.get("lookups"), 1, "{stats:?}");
    assert_eq!(stats.get("lookups_not_found"), 0, "{stats:?}");
}

#[test]
fn two_nodes_share_bindings_through_redis() {
    let redis = Redis::start();
    let store = redis_store(&redis.url());
    let a = start(THIRD_PARTY, &store);
    let b = start(THIRD_PARTY, &store);
    let mut uas = uas_for(1);
    let contact = uas_contact(&uas, "henry");
    let ua = UdpPeer::bind();

    // Registered through A, called through B.
    register(&ua, &a, "henry", &contact, 3600);
    let run = sipp_call(&b, "henry");
    assert_call_succeeded(&run, &b.log());
    assert_uas_succeeded(&mut uas, 1);

    // B lists the binding A saved; unregistered through B, A no longer finds it.
    let listed = query(&ua, &b, "henry");
    assert_eq!(uris(&listed), [contact.as_str()], "{listed:?}");
    let req = register_req(&ua, "henry", &format!("{}@127.0.0.1", token()), 1)
        .add_header("Contact", &format!("<{contact}>;expires=0"));
    let r = send_register(&ua, &b, &req);
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert!(!r.has("Contact"), "{}", r.text());
    assert_eq!(call_status(&a, "sip:henry@127.0.0.1"), 404);
    assert_eq!(query(&ua, &a, "henry"), vec![]);

    let (sa, sb) = (a.stop(), b.stop());
    assert_eq!(sa.get("lookups_not_found"), 1, "{sa:?}");
    assert_eq!(sb.get("lookups"), 1, "{sb:?}");
    assert_eq!(sb.get("lookups_not_found"), 0, "{sb:?}");
}

#[test]
fn a_branch_failing_with_477_unregisters_the_contact() {
    // unregister_on = [477]: a 486 leaves the binding, a 477 removes it.
    let proxy = start("unregister_on = [477]", "");
    let phone = UdpPeer::bind();
    let req = register_req(&phone, "jack", &format!("{}@127.0.0.1", token()), 1)
        .add_header("Contact", &format!("<sip:jack@{}>", phone.host_port()));
    assert_eq!(send_register(&phone, &proxy, &req).status(), Some(200));

    for (code, reason) in [(486, "Busy Here"), (477, "Send Failed")] {
        let ua = UdpPeer::bind();
        let req = invite(&ua, "sip:jack@127.0.0.1");
        ua.send(&req, proxy.addr());
        answer(&phone, code, reason);
        let fin = final_of(&ua, &proxy, &req, Duration::from_secs(10));
        assert_eq!(fin.status(), Some(code), "{}", fin.text());
    }
    assert_eq!(call_status(&proxy, "sip:jack@127.0.0.1"), 404);
    let stats = proxy.stop();
    assert_eq!(stats.get("unregistered"), 1, "{stats:?}");
    assert_eq!(stats.get("lookups_not_found"), 1, "{stats:?}");
}

#[test]
fn a_contact_that_cannot_be_reached_is_unregistered_with_477() {
    // A TCP contact whose port refuses connections: the request cannot be sent, which
    // is what 477 stands for in `unregister_on` (docs/registrar.md: "477 = could not
    // send"; Kamailio's E_SEND is 477).
    let proxy = start(&format!("unregister_on = [477]\n{THIRD_PARTY}"), "");
    let closed = ports::free_port();
    let ua = UdpPeer::bind();
    let contact = format!("sip:kate@127.0.0.1:{closed};transport=tcp");
    register(&ua, &proxy, "kate", &contact, 3600);
    let first = call_status(&proxy, "sip:kate@127.0.0.1");
    assert!(first >= 400, "{first}");
    let listed = query(&ua, &proxy, "kate");
    let stats = proxy.stop();
    assert_eq!(
        listed,
        vec![],
        "binding kept after its branch could not be sent (final {first}, {stats:?})"
    );
}

// === Binding events to modules ===

#[test]
fn binding_events_reach_the_event_modules() {
    // `[events] binding` lists the misbehave module in mode `note`, which logs every
    // event it gets: added, refreshed, removed (Expires 0) and expired (purge).
    let proxy = Proxy::start_with(|port| {
        let c = config(port, "min_expires = 1", "");
        format!(
            "{c}[modules.note]\ncomponent = \"{MISBEHAVE}\"\ntimeout_ms = 1000\n\
             [modules.note.params]\nmode = \"note\"\n\n\
             [events]\nbinding = [{{ module = \"note\" }}]\n"
        )
    });
    let ua = UdpPeer::bind();
    let contact = "sip:kim@127.0.0.1:5999";
    let expect = |line: &str| {
        assert!(
            proxy.wait_for_log(line, Duration::from_secs(10)),
            "no {line:?} in:\n{}",
            proxy.log()
        );
    };
    register(&ua, &proxy, "kim", contact, 60);
    expect(&format!(
        "note binding=BindingChange::Added aor=sip:kim@127.0.0.1 contact={contact}"
    ));
    register(&ua, &proxy, "kim", contact, 60);
    expect(&format!(
        "note binding=BindingChange::Refreshed aor=sip:kim@127.0.0.1 contact={contact}"
    ));
    register(&ua, &proxy, "kim", contact, 0);
    expect(&format!(
        "note binding=BindingChange::Removed aor=sip:kim@127.0.0.1 contact={contact}"
    ));
    // Expiry: purged within the 5 s purge interval after the 1 s expiry.
    register(&ua, &proxy, "kim", contact, 1);
    expect(&format!(
        "note binding=BindingChange::Expired aor=sip:kim@127.0.0.1 contact={contact}"
    ));
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    assert!(stats.get("binding_events") >= 5, "{stats:?}");
}
