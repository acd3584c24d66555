//! Stateless proxying (RFC 3261 §16.6, §16.11), checked header by header with raw
//! sockets: a test UA sends through Weir to a fake UAS socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use weir_system_tests::conf;
use weir_system_tests::peer::{TcpPeer, TcpServer, UdpPeer};
use weir_system_tests::sip::{param, uri_of, via_sent_by};
use weir_system_tests::{Proxy, SipMsg};

/// A proxy with the standard config forwarding to `uas`.
fn proxy_to(uas: &UdpPeer) -> Proxy {
    let hop = uas.uri();
    Proxy::start_with(|port| conf::standard(port, &hop))
}

/// The fake UAS answers `req` (as received from the proxy) where its top Via says.
fn answer(uas: &UdpPeer, req: &SipMsg, code: u16, reason: &str, tag: &str) {
    let top = req.top_via().expect("forwarded request has a Via");
    let to: SocketAddr = via_sent_by(&top)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("Weir's Via is not ip:port: {top}"));
    uas.send(&req.reply(code, reason, Some(tag)), to);
}

fn is_weir_via(via: &str, proxy: &Proxy, transport: &str) -> bool {
    via.starts_with(&format!("SIP/2.0/{transport} "))
        && via_sent_by(via) == Some(proxy.addr().to_string().as_str())
}

#[test]
fn invite_is_forwarded_with_via_max_forwards_record_route_and_header_edits() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();

    // A host name in the Via (not the source address) makes Weir stamp `received`.
    let ua_via = format!(
        "SIP/2.0/UDP localhost:{};branch=z9hG4bKua1{};rport",
        ua.addr().port(),
        weir_system_tests::token()
    );
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let invite = SipMsg::request("INVITE", "sip:bob@example.com", &ua_via)
        .add_header("Contact", &format!("<sip:alice@{}>", ua.host_port()))
        .add_header("X-Debug-Trace", "7f3a")
        .add_header("x-debug-level", "9")
        .add_header("X-Keep", "yes")
        .with_body("application/sdp", sdp);
    ua.send(&invite, proxy.addr());

    let (fwd, from) = uas.expect("forwarded INVITE");
    assert_eq!(from, proxy.addr(), "sent from the listener it advertises");
    assert_eq!(fwd.start, "INVITE sip:bob@example.com SIP/2.0");
    let vias = fwd.list("Via");
    assert_eq!(vias.len(), 2, "one Via added: {vias:?}");
    assert!(
        is_weir_via(&vias[0], &proxy, "UDP"),
        "top Via is Weir's: {}",
        vias[0]
    );
    let branch = param(&vias[0], "branch").flatten().unwrap_or_default();
    assert!(
        branch.starts_with("z9hG4bK") && branch.len() > 7,
        "RFC 3261 branch: {branch}"
    );
    assert!(vias[1].contains(&format!("localhost:{}", ua.addr().port())));
    assert_eq!(
        param(&vias[1], "received"),
        Some(Some("127.0.0.1".into())),
        "{}",
        vias[1]
    );
    assert_eq!(
        param(&vias[1], "rport"),
        Some(Some(ua.addr().port().to_string())),
        "{}",
        vias[1]
    );
    assert_eq!(fwd.header("Max-Forwards"), Some("69"));
    let rr = fwd.list("Record-Route");
    assert_eq!(rr.len(), 1, "{rr:?}");
    let rr_uri = uri_of(&rr[0]);
    assert!(
        rr_uri.starts_with(&format!("sip:{}", proxy.addr())),
        "{rr_uri}"
    );
    assert!(
        rr_uri.contains(";lr"),
        "loose-routing Record-Route: {rr_uri}"
    );
    // header-ops: X-Debug-* removed whatever the case, X-Weir appended, the rest kept.
    assert!(
        !fwd.has_prefix("x-debug-"),
        "X-Debug-* removed:\n{}",
        fwd.text()
    );
    assert_eq!(fwd.header("X-Weir"), Some("stateless"));
    assert_eq!(fwd.header("X-Keep"), Some("yes"));
    assert_eq!(fwd.header("Call-ID"), invite.header("Call-ID"));
    assert_eq!(fwd.body, sdp.to_vec(), "body untouched");

    // Responses come back with Weir's Via removed, Record-Route echoed.
    answer(&uas, &fwd, 180, "Ringing", "uas1");
    answer(&uas, &fwd, 200, "OK", "uas1");
    for code in [180, 200] {
        let (resp, from) = ua.expect("response");
        assert_eq!(from, proxy.addr());
        assert_eq!(resp.status(), Some(code), "{}", resp.text());
        let vias = resp.list("Via");
        assert_eq!(vias.len(), 1, "Weir's Via removed: {vias:?}");
        assert_eq!(param(&vias[0], "branch"), param(&ua_via, "branch"));
        assert_eq!(resp.list("Record-Route"), rr);
        assert_eq!(
            resp.header("To").and_then(|t| param(t, "tag")),
            Some(Some("uas1".into()))
        );
    }
    proxy.assert_running();
}

#[test]
fn max_forwards_is_added_when_absent() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    ua.send(
        &ua.request("INVITE", "sip:bob@example.com")
            .without("Max-Forwards"),
        proxy.addr(),
    );
    let (fwd, _) = uas.expect("forwarded INVITE");
    assert_eq!(fwd.header_lines("Max-Forwards"), vec!["70"]);
}

#[test]
fn retransmission_keeps_the_branch_and_cancel_gets_the_invite_branch() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    ua.send(&invite, proxy.addr());
    let (first, _) = uas.expect("INVITE");
    let (again, _) = uas.expect("retransmitted INVITE");
    assert_eq!(first.method(), Some("INVITE"));
    assert_eq!(again.method(), Some("INVITE"));
    assert_eq!(
        first.branch(),
        again.branch(),
        "stateless: same branch (§16.11)"
    );

    // CANCEL: same Via branch, Call-ID, From, To, R-URI and CSeq number as the INVITE.
    let cancel = SipMsg {
        start: "CANCEL sip:bob@example.com SIP/2.0".into(),
        ..invite.clone()
    }
    .set_header("CSeq", "1 CANCEL")
    .without("Contact");
    ua.send(&cancel, proxy.addr());
    let (c, _) = uas.expect("CANCEL");
    assert_eq!(c.method(), Some("CANCEL"));
    assert_eq!(
        c.branch(),
        first.branch(),
        "CANCEL follows the INVITE's branch"
    );
    assert!(
        c.list("Record-Route").is_empty(),
        "no Record-Route on CANCEL"
    );

    // A new transaction gets a new branch.
    ua.send(&ua.request("INVITE", "sip:bob@example.com"), proxy.addr());
    let (other, _) = uas.expect("second INVITE");
    assert_ne!(other.branch(), first.branch());
}

#[test]
fn max_forwards_zero_is_answered_483_and_not_forwarded() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let req = ua
        .request("INVITE", "sip:bob@example.com")
        .set_header("Max-Forwards", "0");
    let resp = ua.transact(&req, proxy.addr(), "483");
    assert_eq!(resp.status(), Some(483), "{}", resp.text());
    assert_eq!(resp.reason(), Some("Too Many Hops"));
    assert_eq!(resp.list("Via").len(), 1);
    assert_eq!(resp.branch(), req.branch());
    assert_eq!(resp.header("Call-ID"), req.header("Call-ID"));
    assert!(
        resp.header("To").and_then(|t| param(t, "tag")).is_some(),
        "a final reply carries a To tag"
    );
    // Its ACK (same branch, our To tag) ends at the proxy, as Kamailio's sl absorbs it.
    let n = req
        .header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .expect("CSeq")
        .to_string();
    let ack = SipMsg {
        start: req.start.replacen("INVITE", "ACK", 1),
        ..req.clone()
    }
    .set_header("CSeq", &format!("{n} ACK"))
    .set_header("To", resp.header("To").expect("To"));
    ua.send(&ack, proxy.addr());

    // Sentinel: the first request the UAS sees is the one sent after.
    let next = ua.request("OPTIONS", "sip:bob@example.com");
    ua.send(&next, proxy.addr());
    let (got, _) = uas.expect("sentinel OPTIONS");
    assert_eq!(
        got.header("Call-ID"),
        next.header("Call-ID"),
        "483'd INVITE or its ACK was forwarded"
    );
    assert_eq!(proxy.stop().get("acks_absorbed"), 1);
}

#[test]
fn next_hop_pointing_back_at_the_proxy_is_a_loop_482_without_a_storm() {
    let proxy = Proxy::start_with(|port| conf::standard(port, &format!("sip:127.0.0.1:{port}")));
    let ua = UdpPeer::bind();
    let req = ua.request("INVITE", "sip:bob@example.com");
    let resp = ua.transact(&req, proxy.addr(), "482");
    assert_eq!(resp.status(), Some(482), "{}", resp.text());
    assert_eq!(resp.branch(), req.branch());

    // Exactly one answer: the next message is the keep-alive's 200, not another 482.
    let ka = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    ua.send(&ka, proxy.addr());
    let (next, _) = ua.expect("keep-alive 200");
    assert_eq!(next.status(), Some(200), "{}", next.text());
    assert_eq!(next.header("Call-ID"), ka.header("Call-ID"));
    let stats = proxy.stop();
    assert_eq!(stats.get("forwarded"), 0, "{stats:?}");
    assert_eq!(stats.get("loops"), 1, "{stats:?}");
}

#[test]
fn two_proxies_forwarding_to_each_other_detect_the_loop_by_via() {
    // A -> B -> A: A finds its own Via with the same loop hash (§16.3 step 4).
    let pa = weir_system_tests::ports::free_port_dual();
    let pb = weir_system_tests::ports::free_port_dual();
    let a = Proxy::start(pa, &conf::standard(pa, &format!("sip:127.0.0.1:{pb}")));
    let b = Proxy::start(pb, &conf::standard(pb, &format!("sip:127.0.0.1:{pa}")));
    let ua = UdpPeer::bind();
    let req = ua.request("INVITE", "sip:bob@example.com");
    let resp = ua.transact(&req, a.addr(), "482 through both proxies");
    assert_eq!(resp.status(), Some(482), "{}", resp.text());
    assert_eq!(
        resp.list("Via").len(),
        1,
        "relayed back down to the UA: {}",
        resp.text()
    );

    let ka = ua.request("OPTIONS", &format!("sip:127.0.0.1:{pa}"));
    ua.send(&ka, a.addr());
    let (next, _) = ua.expect("keep-alive 200");
    assert_eq!(
        next.header("Call-ID"),
        ka.header("Call-ID"),
        "one answer only"
    );
    let (sa, sb) = (a.stop(), b.stop());
    assert_eq!((sa.get("forwarded"), sa.get("loops")), (1, 1), "A: {sa:?}");
    assert_eq!((sb.get("forwarded"), sb.get("loops")), (1, 0), "B: {sb:?}");
}

#[test]
fn options_to_the_proxy_itself_is_answered_locally_and_never_forwarded() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    for ruri in [
        format!("sip:{}", proxy.addr()),
        format!("sip:localhost:{}", proxy.port()),
    ] {
        let ka = ua.request("OPTIONS", &ruri);
        let resp = ua.transact(&ka, proxy.addr(), "keep-alive reply");
        assert_eq!(resp.status(), Some(200), "{ruri}: {}", resp.text());
        assert_eq!(resp.header("Call-ID"), ka.header("Call-ID"));
        assert_eq!(resp.branch(), ka.branch());
        assert!(resp.header("To").and_then(|t| param(t, "tag")).is_some());
    }
    // Sentinel: an OPTIONS to a user goes through; it must be the first thing the UAS sees.
    let user = ua.request("OPTIONS", &format!("sip:bob@{}", proxy.addr()));
    ua.send(&user, proxy.addr());
    let (got, _) = uas.expect("OPTIONS to a user");
    assert_eq!(
        got.header("Call-ID"),
        user.header("Call-ID"),
        "a keep-alive was forwarded"
    );
}

#[test]
fn options_to_a_user_is_forwarded_and_answered_by_the_uas() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let req = ua.request("OPTIONS", &format!("sip:bob@{}", proxy.addr()));
    ua.send(&req, proxy.addr());
    let (fwd, _) = uas.expect("forwarded OPTIONS");
    assert_eq!(fwd.method(), Some("OPTIONS"));
    assert_eq!(fwd.ruri(), req.ruri());
    assert!(
        fwd.list("Record-Route").is_empty(),
        "OPTIONS forms no dialog"
    );
    answer(&uas, &fwd, 200, "OK", "uas-options");
    let (resp, _) = ua.expect("200 from the UAS");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(
        resp.header("To").and_then(|t| param(t, "tag")),
        Some(Some("uas-options".into())),
        "the UAS's answer, not a local one"
    );
}

#[test]
fn route_to_the_proxy_is_stripped_and_the_next_route_is_followed() {
    let uas = UdpPeer::bind();
    let decoy = UdpPeer::bind();
    let proxy = proxy_to(&decoy);
    let ua = UdpPeer::bind();
    let req = ua.request("INVITE", "sip:bob@example.com").add_header(
        "Route",
        &format!("<sip:{};lr>, <{};lr>", proxy.addr(), uas.uri()),
    );
    ua.send(&req, proxy.addr());
    let (fwd, _) = uas.expect("INVITE routed by Route");
    assert_eq!(
        fwd.ruri(),
        Some("sip:bob@example.com"),
        "loose routing keeps the R-URI"
    );
    assert_eq!(fwd.list("Route"), vec![format!("<{};lr>", uas.uri())]);

    // The decoy (the route's next_hop) first sees the request sent after, without Route.
    let plain = ua.request("OPTIONS", "sip:bob@example.com");
    ua.send(&plain, proxy.addr());
    let (got, _) = decoy.expect("request by next_hop");
    assert_eq!(got.header("Call-ID"), plain.header("Call-ID"));
}

#[test]
fn response_whose_top_via_is_not_ours_is_dropped() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, _) = uas.expect("INVITE");

    // Not ours: Weir's Via taken off (the UA's is on top), and a stranger's on top.
    let mut stripped = fwd.clone().without("Via");
    for v in fwd.list("Via").iter().skip(1).rev() {
        stripped = stripped.push_front("Via", v);
    }
    uas.send(&stripped.reply(200, "OK", Some("bogus1")), proxy.addr());
    let stranger = fwd
        .clone()
        .push_front("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKstranger");
    uas.send(&stranger.reply(200, "OK", Some("bogus2")), proxy.addr());
    answer(&uas, &fwd, 200, "OK", "real");

    let (resp, _) = ua.expect("200");
    assert_eq!(
        resp.header("To").and_then(|t| param(t, "tag")),
        Some(Some("real".into())),
        "a response not for Weir was relayed: {}",
        resp.text()
    );
    let stats = proxy.stop();
    assert_eq!(stats.get("responses_dropped"), 2, "{stats:?}");
    assert_eq!(stats.get("responses_relayed"), 1, "{stats:?}");
}

#[test]
fn tcp_request_gets_its_response_on_the_same_connection() {
    let uas = TcpServer::bind();
    let hop = format!("sip:{}", uas.host_port());
    let proxy = Proxy::start_with(|port| conf::standard(port, &hop));
    let mut ua = TcpPeer::connect(proxy.addr());

    // A local answer comes back on the connection.
    let ka = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    ua.send(&ka);
    let resp = ua.expect("keep-alive 200 over TCP");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.header("Call-ID"), ka.header("Call-ID"));

    // A forwarded request keeps TCP (next_hop names no transport), and the answer
    // comes back up the same connections.
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite);
    let mut down = uas.expect_conn("Weir's connection");
    let fwd = down.expect("INVITE over TCP");
    let vias = fwd.list("Via");
    assert!(is_weir_via(&vias[0], &proxy, "TCP"), "{vias:?}");
    assert_eq!(param(&vias[1], "received"), Some(Some("127.0.0.1".into())));
    assert_eq!(
        param(&vias[1], "rport"),
        Some(Some(ua.local().port().to_string())),
        "stream source recorded: {}",
        vias[1]
    );
    let rr = fwd.list("Record-Route");
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(
        uri_of(&rr[0]).contains(";transport=tcp") && uri_of(&rr[0]).contains(";lr"),
        "{rr:?}"
    );
    down.send(&fwd.reply(200, "OK", Some("tcp-uas")));
    let resp = ua.expect("200 over TCP");
    assert_eq!(resp.status(), Some(200), "{}", resp.text());
    assert_eq!(resp.list("Via").len(), 1);
    assert_eq!(resp.branch(), invite.branch());
    assert_eq!(
        resp.header("To").and_then(|t| param(t, "tag")),
        Some(Some("tcp-uas".into()))
    );
}

#[test]
fn compact_headers_and_rfc2543_branches_are_proxied() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    // Compact forms throughout, and a Via without the RFC 3261 magic cookie.
    let text = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP {hp};branch=old2543;rport\r\n\
         f: <sip:alice@example.com>;tag=c1\r\nt: <sip:bob@example.com>\r\ni: compact-{t}@192.0.2.1\r\n\
         CSeq: 7 INVITE\r\nMax-Forwards: 5\r\nm: <sip:alice@{hp}>\r\nl: 0\r\n\r\n",
        hp = ua.host_port(),
        t = weir_system_tests::token()
    );
    ua.send_raw(text.as_bytes(), proxy.addr());
    ua.send_raw(text.as_bytes(), proxy.addr());
    let (first, from) = uas.expect("compact INVITE");
    let (again, _) = uas.expect("retransmitted compact INVITE");
    let vias = first.list("Via");
    assert_eq!(vias.len(), 2, "{}", first.text());
    assert!(is_weir_via(&vias[0], &proxy, "UDP"), "{vias:?}");
    assert!(first.branch().is_some_and(|b| b.starts_with("z9hG4bK")));
    assert_eq!(
        first.branch(),
        again.branch(),
        "stable branch without a cookie"
    );
    assert_eq!(first.header("Max-Forwards"), Some("4"));
    assert_eq!(param(&vias[1], "branch"), Some(Some("old2543".into())));

    // The UAS answers in compact form, Weir's Via and the UA's in one `v:` line.
    let mut reply = first.reply(200, "OK", Some("c2")).without("Via");
    reply = reply.push_front("v", &vias.join(", "));
    uas.send(&reply, from);
    let (resp, _) = ua.expect("200");
    assert_eq!(resp.status(), Some(200), "{}", resp.text());
    assert_eq!(resp.list("Via").len(), 1, "{}", resp.text());
    assert_eq!(resp.branch().as_deref(), Some("old2543"));
}

#[test]
fn transport_change_doubles_record_route_and_relays_back() {
    // UDP in, TCP out: each side of the dialog must reach Weir on its own transport.
    let uas = TcpServer::bind();
    let hop = format!("sip:{};transport=tcp", uas.host_port());
    let proxy = Proxy::start_with(|port| conf::standard(port, &hop));
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let mut down = uas.expect_conn("Weir's TCP connection");
    let fwd = down.expect("INVITE over TCP");
    assert!(
        is_weir_via(&fwd.list("Via")[0], &proxy, "TCP"),
        "{}",
        fwd.text()
    );
    let rr: Vec<String> = fwd
        .list("Record-Route")
        .iter()
        .map(|r| uri_of(r).to_string())
        .collect();
    assert_eq!(
        rr,
        vec![
            format!("sip:{};transport=tcp;lr;r2=on", proxy.addr()),
            format!("sip:{};lr;r2=on", proxy.addr()),
        ],
        "outbound (TCP) first, then inbound (UDP)"
    );
    down.send(&fwd.reply(200, "OK", Some("tcp")));
    let (resp, _) = ua.expect("200 relayed from TCP to UDP");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.branch(), invite.branch());
    assert_eq!(resp.list("Via").len(), 1);
}

/// A request bigger than the UDP MTU (1300 by default) with its SDP.
fn big_invite(ua: &UdpPeer) -> SipMsg {
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
    while sdp.len() < 2_500 {
        sdp.push_str("a=candidate:1 1 UDP 2130706431 192.0.2.10 4000 typ host\r\n");
    }
    ua.request("INVITE", "sip:bob@example.com")
        .with_body("application/sdp", sdp.as_bytes())
}

#[test]
fn large_udp_request_goes_by_tcp_when_the_next_hop_listens_on_tcp() {
    // RFC 3261 §18.1.1: within 200 bytes of the MTU, a request must go by TCP.
    let port = weir_system_tests::ports::free_port();
    let uas_udp = UdpPeer::bind_at(SocketAddr::from(([127, 0, 0, 1], port)));
    let uas_tcp = TcpServer::bind_at(SocketAddr::from(([127, 0, 0, 1], port)));
    let proxy = proxy_to(&uas_udp);
    let ua = UdpPeer::bind();
    let invite = big_invite(&ua);
    ua.send(&invite, proxy.addr());
    let mut down = uas_tcp.expect_conn("TCP connection for a large request");
    let fwd = down.expect("large INVITE over TCP");
    assert_eq!(fwd.body, invite.body);
    assert!(
        is_weir_via(&fwd.list("Via")[0], &proxy, "TCP"),
        "{}",
        fwd.text()
    );
    down.send(&fwd.reply(200, "OK", Some("big")));
    let (resp, _) = ua.expect("200 for the large INVITE");
    assert_eq!(resp.status(), Some(200));
}

#[test]
fn large_udp_request_still_reaches_a_udp_only_next_hop() {
    // RFC 3261 §18.1.1: when the TCP attempt is reset, the element SHOULD retry by UDP.
    // Without it, any INVITE with a large SDP to a UDP-only UA is black-holed.
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let invite = big_invite(&ua);
    ua.send(&invite, proxy.addr());
    let (fwd, from) = uas.expect("large INVITE (by UDP after TCP was refused)");
    assert_eq!(fwd.body, invite.body);
    uas.send(&fwd.reply(200, "OK", Some("big")), from);
    let (resp, _) = ua.expect("200 for the large INVITE");
    assert_eq!(resp.status(), Some(200));
}

#[test]
fn client_supplied_received_does_not_redirect_replies() {
    // The Via host is the real source address, so Weir adds no `received` of its own,
    // and the one the client wrote (another address) decides where the reply goes.
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let elsewhere = UdpPeer::bind_at(SocketAddr::from(([127, 0, 0, 2], ua.addr().port())));
    let req = ua
        .request("INVITE", "sip:bob@example.com")
        .set_header(
            "Via",
            &format!(
                "SIP/2.0/UDP {};branch=z9hG4bK{};received=127.0.0.2",
                ua.host_port(),
                weir_system_tests::token()
            ),
        )
        .set_header("Max-Forwards", "0");
    ua.send(&req, proxy.addr());
    // The 483 must go to the source of the request, not to the client-named address.
    let tick = std::time::Duration::from_millis(10);
    let got = weir_system_tests::wait::until(weir_system_tests::peer::EXPECT_TIMEOUT, || {
        if let Some((m, _)) = elsewhere.recv(tick) {
            return Some(Err(m));
        }
        ua.recv(tick).map(|(m, _)| Ok(m))
    });
    match got {
        Some(Ok(resp)) => assert_eq!(resp.status(), Some(483), "{}", resp.text()),
        Some(Err(m)) => panic!(
            "reply sent to the client-supplied received address: {}",
            m.summary()
        ),
        None => panic!("no 483 anywhere"),
    }
}

#[test]
fn in_dialog_routes_take_requests_by_their_to_tag() {
    // Requests with a To tag take the first route (`in_dialog = true`), initial ones
    // the second (`in_dialog = false`), each to its own next hop.
    let dialog = UdpPeer::bind();
    let initial = UdpPeer::bind();
    let (dialog_hop, initial_hop) = (dialog.uri(), initial.uri());
    let proxy = Proxy::start_with(|port| {
        format!(
            "{}{}[[route]]\nname = \"in-dialog\"\nin_dialog = true\nnext_hop = \"{dialog_hop}\"\n\n\
             [[route]]\nname = \"initial\"\nin_dialog = false\nnext_hop = \"{initial_hop}\"\n\n",
            conf::header(),
            conf::listeners(port),
        )
    });
    let ua = UdpPeer::bind();
    ua.send(&ua.request("INVITE", "sip:bob@example.com"), proxy.addr());
    let (fwd, _) = initial.expect("initial INVITE on the initial route");
    assert_eq!(fwd.method(), Some("INVITE"));

    let to = ua
        .request("BYE", "sip:bob@example.com")
        .header("To")
        .map(|t| format!("{t};tag=b1"))
        .unwrap();
    ua.send(
        &ua.request("BYE", "sip:bob@example.com")
            .set_header("To", &to),
        proxy.addr(),
    );
    let (fwd, _) = dialog.expect("BYE with a To tag on the in-dialog route");
    assert_eq!(fwd.method(), Some("BYE"));

    // And back: an initial OPTIONS to a user goes the initial way again.
    ua.send(&ua.request("OPTIONS", "sip:bob@example.com"), proxy.addr());
    let (fwd, _) = initial.expect("initial OPTIONS on the initial route");
    assert_eq!(fwd.method(), Some("OPTIONS"));
    proxy.assert_running();
}
