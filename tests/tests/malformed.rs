//! Malformed input over UDP and TCP: the parser's invalid corpus plus hand-made cases.
//! What can be answered gets 400 (505, 513) with a reason phrase naming the problem;
//! the rest is dropped; and afterwards the proxy still answers and still proxies.
//!
//! Safety: every top Via is rewritten to 127.0.0.1 (with `rport`), the only route has a
//! loopback `next_hop`, and a message with a Route header that is not loopback is
//! refused by the test, so Weir never has a reason to send off this host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use weir_system_tests::conf;
use weir_system_tests::paths;
use weir_system_tests::peer::{TcpPeer, TcpRecv, UdpPeer};
use weir_system_tests::{Proxy, SipMsg};

/// How long a TCP case waits for a reply that must not come (connections that stay
/// open, e.g. for a body that never arrives). Cases run in parallel, so this is paid
/// about once per test.
const TCP_QUIET: Duration = Duration::from_millis(1_000);

/// Reasons for which a stream transport may close or wait instead of answering: the
/// message cannot be delimited (RFC 3261 §18.3 needs a usable Content-Length).
const FRAMING_REASONS: &[&str] = &[
    "Bad Content-Length",
    "Truncated Message",
    "Message Too Large",
];

// === Cases ===

/// What a case must get over UDP.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// A reply with this code whose reason phrase contains this text.
    Reply(u16, String),
    /// No reply, no forwarding.
    Dropped,
    /// Either of the above (for cases the RFC leaves open).
    DroppedOr(u16, String),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    data: Vec<u8>,
    expect: Expect,
}

impl Case {
    /// Whether the message has a Content-Length line (streams need one).
    fn has_content_length(&self) -> bool {
        header_block(&self.data).lines().any(|l| {
            l.split_once(':').is_some_and(|(n, _)| {
                let n = n.trim().to_ascii_lowercase();
                n == "content-length" || n == "l"
            })
        })
    }

    /// Whether a stream may refuse to delimit this message rather than answer it.
    fn stream_may_refuse(&self) -> bool {
        match &self.expect {
            Expect::Reply(_, reason) => {
                !self.has_content_length()
                    || FRAMING_REASONS
                        .iter()
                        .any(|r| reason.contains(r) || r.contains(reason.as_str()))
            }
            Expect::Dropped | Expect::DroppedOr(..) => true,
        }
    }
}

fn header_block(data: &[u8]) -> String {
    let end = weir_system_tests::sip::find(data, b"\r\n\r\n").unwrap_or(data.len());
    String::from_utf8_lossy(data.get(..end).unwrap_or(data)).into_owned()
}

fn code_for(reason: &str) -> u16 {
    match reason {
        "Unsupported SIP Version" => 505,
        "Message Too Large" => 513,
        _ => 400,
    }
}

/// Point the first Via at `127.0.0.1` (port kept, `rport` added, transport set to the
/// one used), so any reply comes back to the test socket and never leaves the host.
fn localize_top_via(data: &[u8], tcp: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    let mut done = false;
    let mut in_headers = true;
    for (i, line) in data.split_inclusive(|b| *b == b'\n').enumerate() {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if i > 0 && bare.is_empty() {
            in_headers = false;
        }
        if done || !in_headers || i == 0 {
            out.extend_from_slice(line);
            continue;
        }
        match std::str::from_utf8(line)
            .ok()
            .and_then(|l| rewrite_via_line(l, tcp))
        {
            Some(new) => {
                out.extend_from_slice(new.as_bytes());
                done = true;
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

fn rewrite_via_line(line: &str, tcp: bool) -> Option<String> {
    let (name, value) = line.split_once(':')?;
    let n = name.trim().to_ascii_lowercase();
    if n != "via" && n != "v" {
        return None;
    }
    let lead = value.len() - value.trim_start().len();
    let value = value.trim_start();
    let (proto, rest) = value.split_once([' ', '\t'])?;
    let rest = rest.trim_start();
    let end = rest.find([';', ',', ' ', '\r', '\n']).unwrap_or(rest.len());
    let (sent_by, tail) = rest.split_at(end);
    let port = match sent_by.rsplit_once(':') {
        Some((_, p)) if !sent_by.starts_with('[') => format!(":{p}"),
        _ => String::new(),
    };
    // The Via's transport must be the one the message travels on, or the reply goes
    // elsewhere (e.g. a TCP Via on a datagram).
    let proto = match proto.rsplit_once('/') {
        Some((version, _)) => format!("{version}/{}", if tcp { "TCP" } else { "UDP" }),
        None => proto.to_string(),
    };
    Some(format!(
        "{name}:{}{proto} 127.0.0.1{port};rport{tail}",
        " ".repeat(lead)
    ))
}

/// Refuse to send anything that could make Weir route off this host.
fn assert_safe(case: &Case) {
    for l in header_block(&case.data).lines() {
        if let Some((n, v)) = l.split_once(':') {
            if n.trim().eq_ignore_ascii_case("route") {
                assert!(
                    v.contains("127.0.0.1"),
                    "{}: Route header could send Weir off-host: {l}",
                    case.name
                );
            }
        }
    }
}

/// The parser's invalid corpus with its expected reasons, Vias localized.
fn corpus_cases(tcp: bool) -> Vec<Case> {
    let Some(dir) = paths::invalid_corpus_dir() else {
        return Vec::new();
    };
    let manifest = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let mut out = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, reason, partial] = cols[..] else {
            panic!("bad expected.tsv line: {line:?}");
        };
        let raw = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let data = localize_top_via(&raw, tcp);
        let is_response = data.starts_with(b"SIP/");
        let expect = if partial == "yes" && !is_response {
            Expect::Reply(code_for(reason), reason.to_string())
        } else {
            Expect::Dropped
        };
        out.push(Case {
            name: file.to_string(),
            data,
            expect,
        });
    }
    out
}

/// Hand-made cases; `via` is the sender's Via.
fn own_cases(via: &str) -> Vec<Case> {
    let base = |method: &str, extra: &str, cl: &str, body: &str| {
        format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=m1\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: {}@127.0.0.1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {cl}\r\n\r\n{body}",
            weir_system_tests::token()
        )
    };
    let case = |name: &str, text: String, expect: Expect| Case {
        name: name.to_string(),
        data: text.into_bytes(),
        expect,
    };
    let reply = |code: u16, what: &str| Expect::Reply(code, what.to_string());
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n";
    let mut garbage = Vec::new();
    let mut x: u32 = 0x2545_f491;
    for _ in 0..600 {
        // xorshift: deterministic binary noise.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x.to_le_bytes()[0]);
    }
    vec![
        case(
            "truncated body (Content-Length larger than the datagram)",
            base("INVITE", "Content-Type: application/sdp\r\n", "500", sdp),
            reply(400, "Content-Length"),
        ),
        case(
            "negative Content-Length",
            base("INVITE", "", "-5", ""),
            reply(400, "Content-Length"),
        ),
        case(
            "non-numeric Content-Length",
            base("OPTIONS", "", "ten", ""),
            reply(400, "Content-Length"),
        ),
        case(
            "bad SIP version",
            base("INVITE", "", "0", "").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1),
            reply(505, "Version"),
        ),
        case(
            "bad Max-Forwards",
            base("INVITE", "", "0", "").replace("Max-Forwards: 70", "Max-Forwards: many"),
            reply(400, "Max-Forwards"),
        ),
        case(
            "CSeq method differs from the request method",
            base("INVITE", "", "0", "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            reply(400, "CSeq"),
        ),
        case(
            "missing Call-ID",
            base("INVITE", "", "0", "")
                .lines()
                .filter(|l| !l.starts_with("Call-ID"))
                .map(|l| format!("{l}\r\n"))
                .collect(),
            Expect::DroppedOr(400, "Call-ID".into()),
        ),
        case(
            "missing From",
            base("INVITE", "", "0", "")
                .lines()
                .filter(|l| !l.starts_with("From"))
                .map(|l| format!("{l}\r\n"))
                .collect(),
            Expect::DroppedOr(400, "From".into()),
        ),
        case(
            "request line without version",
            base("INVITE", "", "0", "").replacen(" SIP/2.0\r\n", "\r\n", 1),
            Expect::DroppedOr(400, "Request".into()),
        ),
        Case {
            name: "binary garbage".into(),
            data: garbage,
            expect: Expect::Dropped,
        },
        Case {
            name: "SIP-looking start, then NULs and high bytes".into(),
            data: [
                b"INVITE sip:bob@example.com SIP/2.0\r\nVia: \x00\xff\xfe\r\n".as_slice(),
                &[0u8; 64],
            ]
            .concat(),
            expect: Expect::DroppedOr(400, "Via".into()),
        },
    ]
}

// === Running cases ===

/// One UDP case: send it, then a keep-alive; everything received before the
/// keep-alive's answer is what the case produced (one receive thread keeps order).
fn run_udp(ua: &UdpPeer, proxy: &Proxy, case: &Case) -> Vec<SipMsg> {
    assert_safe(case);
    ua.send_raw(&case.data, proxy.addr());
    let ka = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    ua.send(&ka, proxy.addr());
    let mut before = Vec::new();
    loop {
        let (m, _) = ua.expect(&format!("keep-alive answer after {:?}", case.name));
        if m.header("Call-ID") == ka.header("Call-ID") {
            assert_eq!(
                m.status(),
                Some(200),
                "{}: keep-alive: {}",
                case.name,
                m.text()
            );
            return before;
        }
        before.push(m);
    }
}

fn check_reply(case: &Case, got: &[SipMsg]) -> Result<(), String> {
    let fmt = || {
        got.iter()
            .map(SipMsg::summary)
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let matches = |code: u16, what: &str, m: &SipMsg| {
        m.status() == Some(code)
            && m.reason()
                .is_some_and(|r| r.to_ascii_lowercase().contains(&what.to_ascii_lowercase()))
    };
    match (&case.expect, got) {
        (Expect::Reply(code, what), [m]) | (Expect::DroppedOr(code, what), [m])
            if matches(*code, what, m) =>
        {
            Ok(())
        }
        (Expect::Dropped | Expect::DroppedOr(..), []) => Ok(()),
        (expect, _) => Err(format!(
            "{}: expected {expect:?}, got [{}]",
            case.name,
            fmt()
        )),
    }
}

/// One TCP case on its own connection: the reply, or the connection closing, or
/// silence for [`TCP_QUIET`].
fn run_tcp(proxy: SocketAddr, case: &Case) -> Result<(), String> {
    assert_safe(case);
    let mut conn = TcpPeer::connect(proxy);
    if !conn.try_send_raw(&case.data) {
        return check_refusal(case, "connection closed while sending");
    }
    let wait = match case.expect {
        Expect::Reply(..) if !case.stream_may_refuse() => weir_system_tests::peer::EXPECT_TIMEOUT,
        _ => TCP_QUIET,
    };
    match conn.recv(wait) {
        TcpRecv::Msg(m) => check_reply(case, &[m]),
        TcpRecv::Closed => check_refusal(case, "connection closed"),
        TcpRecv::Timeout => check_refusal(case, "no reply"),
    }
}

fn check_refusal(case: &Case, what: &str) -> Result<(), String> {
    if case.stream_may_refuse() {
        Ok(())
    } else {
        Err(format!(
            "{}: expected {:?} over TCP, got {what}",
            case.name, case.expect
        ))
    }
}

/// The proxy answers a keep-alive and relays a call leg, and forwarded nothing before.
fn still_serving(proxy: &Proxy, uas: &UdpPeer) {
    proxy.assert_running();
    let ua = UdpPeer::bind();
    let ka = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    let resp = ua.transact(&ka, proxy.addr(), "keep-alive 200");
    assert_eq!(resp.status(), Some(200));
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, from) = uas.expect("the INVITE after the malformed input");
    assert_eq!(
        fwd.header("Call-ID"),
        invite.header("Call-ID"),
        "a malformed message was forwarded: {}",
        fwd.text()
    );
    uas.send(&fwd.reply(200, "OK", Some("after")), from);
    let (ok, _) = ua.expect("200 for the INVITE");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
}

fn proxy_to(uas: &UdpPeer, extra_proxy: &str) -> Proxy {
    // `transport=udp`: anything wrongly forwarded, from either transport, lands on `uas`.
    let hop = format!("{};transport=udp", uas.uri());
    Proxy::start_with(|port| {
        conf::standard(port, &hop).replace("[proxy]\n", &format!("[proxy]\n{extra_proxy}"))
    })
}

fn run_all_udp(cases: &[Case], ua: &UdpPeer, proxy: &Proxy) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check_reply(c, &run_udp(ua, proxy, c)).err())
        .collect();
    assert!(failures.is_empty(), "UDP:\n{}", failures.join("\n"));
}

fn run_all_tcp(cases: Vec<Case>, proxy: &Proxy) {
    let addr = proxy.addr();
    let handles: Vec<_> = cases
        .into_iter()
        .map(|c| std::thread::spawn(move || run_tcp(addr, &c)))
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("case panicked".into()))
                .err()
        })
        .collect();
    assert!(failures.is_empty(), "TCP:\n{}", failures.join("\n"));
}

// === Tests ===

#[test]
fn invalid_corpus_over_udp_is_answered_or_dropped() {
    let cases: Vec<Case> = corpus_cases(false)
        .into_iter()
        // Bigger than any UDP datagram: see oversize_messages_are_refused.
        .filter(|c| c.data.len() < 65_000)
        .collect();
    if cases.is_empty() {
        eprintln!("note: no invalid corpus in host/sip-message/tests/corpus; nothing to replay");
        return;
    }
    assert!(cases.iter().any(|c| matches!(c.expect, Expect::Reply(..))));
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas, "");
    let ua = UdpPeer::bind();
    run_all_udp(&cases, &ua, &proxy);
    still_serving(&proxy, &uas);
}

#[test]
fn invalid_corpus_over_tcp_is_answered_or_refused() {
    let cases = corpus_cases(true);
    if cases.is_empty() {
        eprintln!("note: no invalid corpus in host/sip-message/tests/corpus; nothing to replay");
        return;
    }
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas, "");
    run_all_tcp(cases, &proxy);
    still_serving(&proxy, &uas);
}

#[test]
fn hand_made_malformed_messages_over_udp_and_tcp() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas, "");
    let ua = UdpPeer::bind();
    run_all_udp(&own_cases(&ua.via()), &ua, &proxy);

    let tcp_cases: Vec<Case> = own_cases("SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKtcp;rport");
    run_all_tcp(tcp_cases, &proxy);
    still_serving(&proxy, &uas);
}

#[test]
fn oversize_messages_are_refused() {
    // UDP cannot carry more than 64 KiB, so the datagram limit is lowered to 4 KiB.
    let uas = UdpPeer::bind();
    let small = proxy_to(&uas, "max_message_size = 4096\n");
    let ua = UdpPeer::bind();
    let big = ua
        .request("INVITE", "sip:bob@example.com")
        .with_body("text/plain", &vec![b'x'; 6_000]);
    let case = Case {
        name: "6 KB datagram over a 4 KiB limit".into(),
        data: big.to_bytes(),
        expect: Expect::DroppedOr(513, "Too Large".into()),
    };
    run_all_udp(&[case], &ua, &small);
    still_serving(&small, &uas);

    // Over TCP with the default limit (64 KiB): a 70 KB message.
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas, "");
    let mut conn = TcpPeer::connect(proxy.addr());
    let huge = conn
        .request("INVITE", "sip:bob@example.com")
        .with_body("text/plain", &vec![b'x'; 70_000]);
    let sent = conn.try_send_raw(&huge.to_bytes());
    match conn.recv(weir_system_tests::peer::EXPECT_TIMEOUT) {
        TcpRecv::Closed => {}
        TcpRecv::Msg(m) => assert_eq!(m.status(), Some(513), "{}", m.text()),
        TcpRecv::Timeout => panic!("70 KB over TCP (sent whole: {sent}): neither 513 nor closed"),
    }
    still_serving(&proxy, &uas);
}
