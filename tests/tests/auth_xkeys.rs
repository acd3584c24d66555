//! auth-xkeys end to end: two Weir proxies in a chain, A signing requests
//! (`mode = "add"`) and B checking them (`mode = "check"`), in front of a sipp UAS or a
//! raw test peer. Calls through A and B succeed; requests sent straight to B without a
//! valid token get 403; the token A writes is the one Kamailio's definition gives,
//! computed here independently (Python's hashlib).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use weir_system_tests::conf;
use weir_system_tests::paths;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sipp::{Transport, Uac, Uas};
use weir_system_tests::{Proxy, SipMsg};

const HEADER: &str = "X-AuthXKeys-Token";
/// The same at both nodes: `$vi` is the caller's address from the bottom Via.
const DATA: &str = "$vi:$fu:$ru:$ci:$cs:$rm";

/// sha256 of `secret:127.0.0.1:sip:alice@example.com:sip:bob@example.com:xkeys-fixed-1@127.0.0.1:1:INVITE`
/// (`hashlib.sha256(...).hexdigest()`): Kamailio's `auth_xkeys_add(hdr, "trunk",
/// "sha256", "$vi:$fu:$ru:$ci:$cs:$rm")` for [`fixed_invite`].
const FIXED_TOKEN: &str = "4fba7bf3eed377e291525ebdbcd75b0ca52a8ff29a9ae95b648a3cee6425f5da";

/// A proxy on `port` whose one stateless route runs auth-xkeys in `mode` and forwards to
/// `next_hop`.
fn config(port: u16, mode: &str, next_hop: &str) -> String {
    let wasm = paths::plugin_wasm("auth-xkeys");
    format!(
        "{}{}\
         [modules.xkeys]\ncomponent = \"{}\"\n\
         [modules.xkeys.params]\n\
         mode = \"{mode}\"\n\
         key_id = \"trunk\"\n\
         data = \"{DATA}\"\n\
         keys = [\"id=trunk;name=old;value=old-secret\", \"id=trunk;name=k1;value=secret\"]\n\n\
         [[route]]\nname = \"default\"\nmode = \"stateless\"\nnext_hop = \"{next_hop}\"\n\
         request = [{{ module = \"xkeys\" }}]\n\n",
        conf::header(),
        conf::listeners(port),
        wasm.display()
    )
}

/// An INVITE whose data string is fixed: From, R-URI, Call-ID and CSeq do not vary.
fn fixed_invite(ua: &UdpPeer, token: Option<&str>) -> SipMsg {
    let mut msg = ua.request("INVITE", "sip:bob@example.com");
    for (n, v) in msg.headers.iter_mut() {
        match n.as_str() {
            "From" => *v = "\"Alice\" <sip:alice@example.com>;tag=fixed".into(),
            "Call-ID" => *v = "xkeys-fixed-1@127.0.0.1".into(),
            _ => {}
        }
    }
    match token {
        Some(t) => msg.add_header(HEADER, t),
        None => msg,
    }
}

#[test]
fn calls_through_a_signing_and_a_checking_proxy_succeed() {
    const CALLS: u32 = 30;
    let uas = Uas::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Transport::Udp);
    let uas_uri = uas.uri();
    let b = Proxy::start_with(|port| config(port, "check", &uas_uri));
    let b_uri = format!("sip:127.0.0.1:{}", b.port());
    let a = Proxy::start_with(|port| config(port, "add", &b_uri));

    let run = Uac::new(a.addr(), Transport::Udp, CALLS, 15).run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(
        run.exit_code,
        Some(0),
        "sipp reports failed calls:\n{verdict}"
    );
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");

    let stats_b = b.stop();
    let stats_a = a.stop();
    // INVITE, ACK and BYE of every call passed B's check: nothing answered locally.
    assert!(
        stats_b.get("forwarded") >= 3 * u64::from(CALLS),
        "{stats_b:?}"
    );
    assert_eq!(stats_b.get("local_replies"), 0, "{stats_b:?}");
    assert_eq!(stats_b.get("module_failures"), 0, "{stats_b:?}");
    assert_eq!(stats_a.get("module_failures"), 0, "{stats_a:?}");
}

#[test]
fn the_signing_proxy_writes_kamailios_token() {
    let sink = UdpPeer::bind();
    let a = Proxy::start_with(|port| config(port, "add", &sink.uri()));
    let ua = UdpPeer::bind();
    // A forged token from the caller is replaced, not kept beside the real one.
    ua.send(&fixed_invite(&ua, Some("forged")), a.addr());
    let (invite, _) = sink.expect("signed INVITE");
    assert_eq!(
        invite.header_lines(HEADER),
        vec![FIXED_TOKEN],
        "{}",
        invite.text()
    );
    a.assert_running();
}

#[test]
fn the_checking_proxy_refuses_bad_tokens_and_strips_good_ones() {
    let sink = UdpPeer::bind();
    let b = Proxy::start_with(|port| config(port, "check", &sink.uri()));
    let ua = UdpPeer::bind();

    let wrong = FIXED_TOKEN.replace('4', "5");
    for token in [None, Some("nonsense"), Some(wrong.as_str())] {
        let reply = ua.transact(&fixed_invite(&ua, token), b.addr(), "reply to a bad token");
        assert_eq!(reply.status(), Some(403), "{token:?}: {}", reply.text());
        assert_eq!(reply.reason(), Some("Forbidden"));
    }
    // Another request's token does not fit this one.
    let other = fixed_invite(&ua, Some(FIXED_TOKEN)).add_header("X-Note", "changed CSeq");
    let other = SipMsg {
        headers: other
            .headers
            .into_iter()
            .map(|(n, v)| {
                if n == "CSeq" {
                    (n, "2 INVITE".into())
                } else {
                    (n, v)
                }
            })
            .collect(),
        ..other
    };
    let reply = ua.transact(&other, b.addr(), "reply to a replayed token");
    assert_eq!(reply.status(), Some(403));

    // The right token, in upper case as a peer may send it: forwarded, header removed.
    let upper = FIXED_TOKEN.to_ascii_uppercase();
    ua.send(&fixed_invite(&ua, Some(&upper)), b.addr());
    let (invite, _) = sink.expect("checked INVITE");
    assert_eq!(invite.method(), Some("INVITE"));
    assert!(!invite.has(HEADER), "{}", invite.text());
    assert!(sink.recv(Duration::from_millis(300)).is_none());

    let stats = b.stop();
    assert_eq!(stats.get("local_replies"), 4, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}
