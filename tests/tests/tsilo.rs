//! The `tsilo` module on a running Weir: late forking to devices that register while an
//! INVITE is pending, and RFC 8599 push through the granted HTTP capability.
//!
//! What is checked, with raw UDP user agents for the caller and the callee's devices
//! (they register themselves, so the registrar's `received` is their own address):
//! - a callee with no contact registers 2 s after the INVITE arrived: the INVITE (held
//!   by the `wait` verdict) is forked to the new contact and the call completes;
//! - two devices of one user registering 1 s apart both get the INVITE and ring; the
//!   second answers, the first is CANCELled (487);
//! - a device that registered push parameters gets a push (a real HTTP server in the
//!   test receives the POST with its `pn-prid`), is not rung at its stale contact, and
//!   rings once it re-registers;
//! - nobody registering within the wait: `480`;
//! - a callee with a contact is forked to at once (the route's lookup), and a device
//!   that registers meanwhile rings too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use weir_system_tests::paths;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::{conf, token, wait, Proxy, SipMsg};

/// How long a test waits for a message it expects.
const EXPECT: Duration = Duration::from_secs(10);

fn toml_path(p: &std::path::Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// A stateful proxy with the registrar, tsilo in the binding events and in the request
/// chain of the looked-up route. `params` are the module's params (TOML lines),
/// `http_allow` its HTTP grant.
fn config(port: u16, params: &str, http_allow: &str) -> String {
    let mut c = conf::header();
    c += &conf::transaction("fr_timer_ms = 2000\nfr_inv_timer_ms = 30000");
    c += &conf::listeners(port);
    c += &format!(
        "[modules.tsilo]\ncomponent = \"{}\"\ntimeout_ms = 1000\nhttp_allow = [{http_allow}]\n\
         [modules.tsilo.params]\n{}\n\n",
        toml_path(&paths::plugin_wasm("tsilo")),
        params.trim()
    );
    c += "[registrar]\n\n[events]\nbinding = [{ module = \"tsilo\" }]\n\n";
    c += &conf::stateful_route("register", "", "methods = [\"REGISTER\"]\nregistrar = true");
    c += &conf::stateful_route(
        "calls",
        "",
        "lookup = true\nrequest = [{ module = \"tsilo\" }]",
    );
    c
}

fn start(params: &str, http_allow: &str) -> Proxy {
    Proxy::start_with(|port| config(port, params, http_allow))
}

/// `sip:bob@127.0.0.1`.
const BOB: &str = "sip:bob@127.0.0.1";

/// A device of bob at `dev`: its contact URI.
fn contact_of(dev: &UdpPeer) -> String {
    format!("sip:bob@{}", dev.host_port())
}

/// `dev` registers `contact` (a Contact header value) for bob; expects 200.
fn register(dev: &UdpPeer, proxy: &Proxy, contact: &str, call_id: &str, cseq: u32) {
    let req = SipMsg::request("REGISTER", "sip:127.0.0.1", &dev.via())
        .set_header("From", &format!("<{BOB}>;tag=r{}", token()))
        .set_header("To", &format!("<{BOB}>"))
        .set_header("Call-ID", call_id)
        .set_header("CSeq", &format!("{cseq} REGISTER"))
        .add_header("Contact", contact)
        .add_header("Expires", "600");
    let r = dev.transact(&req, proxy.addr(), "final reply to REGISTER");
    assert_eq!(r.status(), Some(200), "REGISTER {contact}:\n{}", r.text());
}

/// The caller's INVITE to bob.
fn invite(caller: &UdpPeer) -> SipMsg {
    SipMsg::request("INVITE", BOB, &caller.via())
        .set_header("To", &format!("<{BOB}>"))
        .add_header("Contact", &format!("<sip:alice@{}>", caller.host_port()))
}

/// The next INVITE `dev` receives (skipping ACKs), and where it came from.
fn expect_invite(dev: &UdpPeer, what: &str) -> (SipMsg, std::net::SocketAddr) {
    let end = Instant::now() + EXPECT;
    loop {
        let Some((m, from)) = dev.recv(wait::left(end)) else {
            panic!("no INVITE: {what}");
        };
        if m.method() == Some("INVITE") {
            return (m, from);
        }
    }
}

/// The caller's next response to `req` with a status in `codes` (others skipped).
fn expect_status(caller: &UdpPeer, req: &SipMsg, codes: &[u16], limit: Duration) -> SipMsg {
    let end = Instant::now() + limit;
    loop {
        let Some((m, _)) = caller.recv(wait::left(end)) else {
            panic!("no {codes:?} within {limit:?} to\n{}", req.text());
        };
        if m.header("Call-ID") == req.header("Call-ID")
            && m.status().is_some_and(|s| codes.contains(&s))
        {
            return m;
        }
    }
}

#[test]
fn callee_registering_after_the_invite_gets_the_call() {
    let proxy = start("wait_ms = 15000", "");
    let caller = UdpPeer::bind();
    let phone = UdpPeer::bind();
    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    expect_status(&caller, &req, &[100], EXPECT);
    // Nothing rings yet: bob has no contact.
    thread::sleep(Duration::from_secs(2));
    register(
        &phone,
        &proxy,
        &format!("<{}>", contact_of(&phone)),
        &token(),
        1,
    );
    let (inv, from) = expect_invite(&phone, "forked after the registration");
    assert_eq!(
        inv.ruri(),
        Some(contact_of(&phone).as_str()),
        "{}",
        inv.text()
    );
    phone.send(&inv.reply(180, "Ringing", Some("ph1")), from);
    expect_status(&caller, &req, &[180], EXPECT);
    phone.send(&inv.reply(200, "OK", Some("ph1")), from);
    let ok = expect_status(&caller, &req, &[200], EXPECT);
    assert!(
        ok.header("To").unwrap_or("").contains("tag=ph1"),
        "{}",
        ok.text()
    );
    // The transaction ends after Weir's wt_timer linger (5 s) and tsilo hears of it.
    thread::sleep(Duration::from_millis(6500));
    let stats = proxy.stop();
    assert!(
        stats.get("module_events") >= 1,
        "transaction-done not delivered: {stats:?}"
    );
    assert!(stats.get("parked") >= 1, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    assert!(stats.get("late_branches") >= 1, "{stats:?}");
    assert_eq!(stats.get("park_timeouts"), 0, "{stats:?}");
}

#[test]
fn two_devices_registering_at_different_times_both_ring() {
    let proxy = start("wait_ms = 20000", "");
    let caller = UdpPeer::bind();
    let (d1, d2) = (UdpPeer::bind(), UdpPeer::bind());
    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    expect_status(&caller, &req, &[100], EXPECT);

    thread::sleep(Duration::from_secs(1));
    register(&d1, &proxy, &format!("<{}>", contact_of(&d1)), &token(), 1);
    let (inv1, from1) = expect_invite(&d1, "device 1 rings");
    d1.send(&inv1.reply(180, "Ringing", Some("d1")), from1);
    expect_status(&caller, &req, &[180], EXPECT);

    thread::sleep(Duration::from_secs(1));
    register(&d2, &proxy, &format!("<{}>", contact_of(&d2)), &token(), 1);
    let (inv2, from2) = expect_invite(&d2, "device 2 rings too");
    assert_eq!(inv2.ruri(), Some(contact_of(&d2).as_str()));
    d2.send(&inv2.reply(180, "Ringing", Some("d2")), from2);
    d2.send(&inv2.reply(200, "OK", Some("d2")), from2);
    let ok = expect_status(&caller, &req, &[200], EXPECT);
    assert!(
        ok.header("To").unwrap_or("").contains("tag=d2"),
        "{}",
        ok.text()
    );

    // Device 1 is CANCELled; it answers 200 and 487 as a phone would.
    let end = Instant::now() + EXPECT;
    let cancel = loop {
        let Some((m, from)) = d1.recv(wait::left(end)) else {
            panic!("device 1 got no CANCEL");
        };
        if m.method() == Some("CANCEL") {
            break (m, from);
        }
    };
    d1.send(&cancel.0.reply(200, "OK", None), cancel.1);
    d1.send(&inv1.reply(487, "Request Terminated", Some("d1")), from1);
    let stats = proxy.stop();
    assert!(stats.get("late_branches") >= 2, "{stats:?}");
}

#[test]
fn nobody_registering_in_time_gets_480() {
    let proxy = start("wait_ms = 1500", "");
    let caller = UdpPeer::bind();
    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    let r = expect_status(&caller, &req, &[480], EXPECT);
    assert_eq!(r.status(), Some(480));
    let stats = proxy.stop();
    assert_eq!(stats.get("park_timeouts"), 1, "{stats:?}");
}

#[test]
fn a_device_registering_during_a_ringing_call_rings_too() {
    // No wait: bob's desk phone is registered, the call forks to it at once (the
    // route's lookup); his mobile registers while it rings and is added.
    let proxy = start("", "");
    let caller = UdpPeer::bind();
    let (desk, mobile) = (UdpPeer::bind(), UdpPeer::bind());
    register(
        &desk,
        &proxy,
        &format!("<{}>", contact_of(&desk)),
        &token(),
        1,
    );
    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    let (inv1, from1) = expect_invite(&desk, "the desk phone rings");
    desk.send(&inv1.reply(180, "Ringing", Some("desk")), from1);
    register(
        &mobile,
        &proxy,
        &format!("<{}>", contact_of(&mobile)),
        &token(),
        1,
    );
    let (inv2, from2) = expect_invite(&mobile, "the mobile rings once registered");
    mobile.send(&inv2.reply(200, "OK", Some("mob")), from2);
    let ok = expect_status(&caller, &req, &[200], EXPECT);
    assert!(
        ok.header("To").unwrap_or("").contains("tag=mob"),
        "{}",
        ok.text()
    );
    drop(proxy);
}

// === Push ===

/// A one-purpose HTTP server: every request's body goes to the channel, the answer is
/// `200 OK`. Runs until the test process ends.
fn push_server() -> (String, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send((head, String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (url, rx)
}

#[test]
fn a_push_wakes_the_device_and_the_call_reaches_it() {
    let (url, pushes) = push_server();
    let proxy = start(
        &format!("[modules.tsilo.params.push]\nurl = \"{url}\"\nwait_ms = 20000"),
        &format!("\"{url}\""),
    );
    let caller = UdpPeer::bind();
    let phone = UdpPeer::bind();
    let prid = format!("device-token-{}", token());
    let contact = format!(
        "<{}>;pn-provider=fcm;pn-prid={prid};pn-param=proj-1",
        contact_of(&phone)
    );
    let reg_call_id = token();
    register(&phone, &proxy, &contact, &reg_call_id, 1);

    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    expect_status(&caller, &req, &[100], EXPECT);
    let (head, body) = pushes.recv_timeout(EXPECT).expect("a push request");
    assert!(head.starts_with("POST /push HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(body.contains(&format!("\"pn-prid\":\"{prid}\"")), "{body}");
    assert!(body.contains("\"pn-provider\":\"fcm\""), "{body}");
    assert!(
        body.contains(&format!(
            "\"call-id\":\"{}\"",
            req.header("Call-ID").unwrap()
        )),
        "{body}"
    );
    // The sleeping phone is not rung at its stale registration.
    let early = phone.recv(Duration::from_millis(800));
    assert!(early.is_none(), "rung before re-registering: {early:?}");

    // Woken, it registers again; now it rings.
    register(&phone, &proxy, &contact, &reg_call_id, 2);
    let (inv, from) = expect_invite(&phone, "rung after the push");
    phone.send(&inv.reply(200, "OK", Some("ph")), from);
    expect_status(&caller, &req, &[200], EXPECT);
    let stats = proxy.stop();
    assert_eq!(stats.get("module_http_requests"), 1, "{stats:?}");
    // The push's outcome reached the module.
    assert!(stats.get("module_events") >= 1, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

#[test]
fn a_push_url_not_granted_is_refused_and_the_call_times_out() {
    // http_allow grants another URL: the push fails in the module (logged), the call
    // waits and ends with 480.
    let (url, pushes) = push_server();
    let proxy = start(
        &format!("wait_code = 480\n[modules.tsilo.params.push]\nurl = \"{url}\"\nwait_ms = 1500"),
        "\"http://127.0.0.1:1/other/\"",
    );
    let caller = UdpPeer::bind();
    let phone = UdpPeer::bind();
    register(
        &phone,
        &proxy,
        &format!("<{}>;pn-provider=fcm;pn-prid=x", contact_of(&phone)),
        &token(),
        1,
    );
    let req = invite(&caller);
    caller.send(&req, proxy.addr());
    expect_status(&caller, &req, &[480], EXPECT);
    assert!(pushes.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(
        proxy.wait_for_log("not granted", Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
}
