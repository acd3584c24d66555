//! The example configs in `config/` that chain issue-5 modules, run as shipped: the
//! test only moves their addresses (`127.0.0.1:5060` and the next hop `:5070`) to free
//! loopback ports and makes their component paths absolute (the config is written to a
//! temp dir). Everything else (modules, params, routes) is the file as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weir_system_tests::paths::{repo_root, target_dir};
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sip::via_sent_by;
use weir_system_tests::sipp::{self, Transport, Uac, Uas, UasOptions};
use weir_system_tests::zlib::python_inflate;
use weir_system_tests::{Proxy, SipMsg};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `config/<name>` with the proxy on `port`, `next_hop` (`ip:port`) for every
/// `127.0.0.1:5070`, and `../target/` made absolute.
fn shipped(name: &str, port: u16, next_hop: &str) -> String {
    let path = repo_root().join("config").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let target = target_dir().display().to_string().replace('\\', "/");
    text.replace("127.0.0.1:5060", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:5070", next_hop)
        .replace("\"../target/", &format!("\"{target}/"))
}

/// The offer of the mobile tests: PCMU, PCMA, GSM, G729, DTMF and a video stream;
/// filtered, it is still above the profile's 256-byte compression threshold.
const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 3 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=rtcp:49171 IN IP4 127.0.0.1\r\n\
a=candidate:1 1 UDP 2130706431 127.0.0.1 49170 typ host\r\n\
a=candidate:1 2 UDP 2130706430 127.0.0.1 49171 typ host\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=sendrecv\r\n";

fn reply_to(req: &SipMsg, code: u16, reason: &str, extra: &str, body: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for v in req.header_lines(name) {
            s += &format!("{name}: {v}\r\n");
        }
    }
    s += &format!("To: {};tag=callee\r\n", req.header("To").expect("To"));
    s += "Contact: <sip:callee@127.0.0.1>\r\n";
    s += extra;
    s += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s
}

/// `config/mobile.toml` with a raw next hop: the INVITE arrives with only the kept headers,
/// PCMA and GSM, no video, and compressed (zlib, checked with python); the answer
/// comes back to the caller filtered.
#[test]
fn mobile_profile_strips_filters_and_compresses() {
    let hop = UdpPeer::bind();
    let proxy = Proxy::start_with(|port| shipped("mobile.toml", port, &hop.host_port()));
    let ua = UdpPeer::bind();
    let invite = format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: {}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: mobile-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{}>\r\n\
         User-Agent: Phone/1.0\r\n\
         Subject: hello\r\n\
         X-Carrier-Debug: 42\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{OFFER}",
        ua.via(),
        ua.host_port(),
        OFFER.len()
    );
    ua.send_raw(invite.as_bytes(), proxy.addr());
    let (fwd, _) = hop.expect("the INVITE at the next hop");
    assert_eq!(
        fwd.header("User-Agent"),
        Some("Phone/1.0"),
        "{}",
        fwd.text()
    );
    for gone in ["Subject", "X-Carrier-Debug", "Allow"] {
        assert_eq!(fwd.header(gone), None, "{gone} kept:\n{}", fwd.text());
    }
    assert_eq!(
        fwd.header("Content-Encoding"),
        Some("deflate"),
        "{}",
        fwd.text()
    );
    assert_eq!(
        fwd.header("Content-Length"),
        Some(fwd.body.len().to_string().as_str())
    );
    let sdp = String::from_utf8(python_inflate(&fwd.body)).expect("utf-8 SDP");
    assert!(sdp.contains("m=audio 49170 RTP/AVP 8 3\r\n"), "{sdp}");
    for gone in ["PCMU", "G729", "telephone-event", "m=video", "H264"] {
        assert!(!sdp.contains(gone), "{gone} left in:\n{sdp}");
    }
    assert!(
        fwd.body.len() < sdp.len(),
        "{} >= {}",
        fwd.body.len(),
        sdp.len()
    );

    // The answer, plain, with codecs the profile removes.
    let to: SocketAddr = via_sent_by(&fwd.top_via().expect("Via"))
        .and_then(|s| s.parse().ok())
        .expect("Weir's Via is ip:port");
    let answer = OFFER.replace("o=alice", "o=bob");
    hop.send_raw(
        reply_to(
            &fwd,
            200,
            "OK",
            "Content-Type: application/sdp\r\n",
            &answer,
        )
        .as_bytes(),
        to,
    );
    let ok = loop {
        let (m, _) = ua.expect("the 200 at the caller");
        if m.status() == Some(200) {
            break m;
        }
    };
    let body = String::from_utf8_lossy(&ok.body).to_string();
    assert!(body.contains("m=audio 49170 RTP/AVP 8 3\r\n"), "{body}");
    assert!(!body.contains("m=video"), "{body}");
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// `config/mobile.toml` with sipp on both sides (the sdpops scenarios check the
/// filtered offer and answer). sipp cannot inflate, so this one change to the file:
/// `compress = "never"` instead of `"always"`.
#[test]
fn mobile_profile_sipp_calls_complete() {
    const CALLS: u32 = 20;
    let mut uas = Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: Some(sipp::scenario("sdpops_uas.xml")),
            calls: Some(CALLS),
            args: Vec::new(),
        },
    );
    let hop = uas.addr().to_string();
    let proxy = Proxy::start_with(|port| {
        let c = shipped("mobile.toml", port, &hop);
        assert!(c.contains("compress = \"always\""), "{c}");
        c.replace("compress = \"always\"", "compress = \"never\"")
    });
    let mut uac = Uac::new(proxy.addr(), Transport::Udp, CALLS, 20);
    // Shipped configs run one receive thread per CPU on one socket: back-to-back
    // datagrams of one call may leave in the other order, as with Kamailio.
    uac.tolerate_reordering = true;
    uac.scenario = Some(sipp::scenario("sdpops_uac.xml"));
    let run = uac.run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(run.exit_code, Some(0), "{verdict}");
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");
    let done = uas.finish(Duration::from_secs(30));
    assert_eq!(done.exit_code, Some(0), "{done:?}\n{verdict}");
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

/// `config/pipelimit.toml` (500 initial requests per 1 s window, 503 + Retry-After
/// 10..309 over it) under 800 calls/s for 2 s: every call ends as sipp expects (a
/// completed call or a 503 with Retry-After in range), some were limited, and no
/// window let more than 500 through.
#[test]
fn pipelimit_profile_limits_to_500_per_second_with_retry_after() {
    const CALLS: u32 = 1600;
    let uas = Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: None,
            calls: None,
            args: Vec::new(),
        },
    );
    let hop = uas.addr().to_string();
    let proxy = Proxy::start_with(|port| shipped("pipelimit.toml", port, &hop));
    let mut uac = Uac::new(proxy.addr(), Transport::Udp, CALLS, 800);
    // Shipped configs run one receive thread per CPU on one socket: back-to-back
    // datagrams of one call may leave in the other order, as with Kamailio.
    uac.tolerate_reordering = true;
    uac.scenario = Some(sipp::scenario("shipped_pipelimit_uac.xml"));
    let run = uac.run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(run.exit_code, Some(0), "{verdict}");
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");
    let stats = proxy.stop();
    let limited = stats.get("local_replies");
    let passed = u64::from(CALLS) - limited;
    assert!(limited > 0, "nothing was limited: {stats:?}");
    // The calls spread over at most ceil(elapsed) + 1 windows of 500.
    let windows = run.elapsed.as_secs() + 2;
    assert!(
        passed <= 500 * windows,
        "{passed} passed in {:?}: {stats:?}",
        run.elapsed
    );
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    drop(uas);
}
