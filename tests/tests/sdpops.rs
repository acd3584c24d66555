//! The sdpops module in the real proxy: sipp calls whose INVITE offers PCMU, PCMA, GSM,
//! DTMF and video pass through Weir with `keep_codecs_by_name = ["PCMA", "GSM"]` and
//! `remove_media = ["video"]` in the request and reply chains. The sipp UAS checks the
//! offer it receives and the UAC the answer (a failed check fails the call), and a
//! raw-socket peer checks the forwarded bodies and their Content-Length byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weir_system_tests::conf;
use weir_system_tests::paths;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sip::via_sent_by;
use weir_system_tests::sipp::{self, Transport, Uac, Uas, UasOptions};
use weir_system_tests::{Proxy, SipMsg};

const CALLS: u32 = 20;
const RATE: u32 = 20;

/// The offer of the module's README: PCMU, PCMA, GSM, DTMF and a video stream.
const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 3 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 49172 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:* ccm fir\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=sendrecv\r\n";

/// [`OFFER`] after the module.
const OFFER_FILTERED: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 3\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// An answer with DTMF and a rejected video stream, LF line ends.
const ANSWER: &str = "v=0\n\
o=bob 2808844564 2808844564 IN IP4 192.0.2.4\n\
s=-\n\
c=IN IP4 192.0.2.4\n\
t=0 0\n\
m=audio 3456 RTP/AVP 8 101\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\n\
m=video 0 RTP/AVP 96\n\
a=rtpmap:96 H264/90000\n";

/// [`ANSWER`] after the module.
const ANSWER_FILTERED: &str = "v=0\n\
o=bob 2808844564 2808844564 IN IP4 192.0.2.4\n\
s=-\n\
c=IN IP4 192.0.2.4\n\
t=0 0\n\
m=audio 3456 RTP/AVP 8\n\
a=rtpmap:8 PCMA/8000\n";

// === helpers ===

/// A TOML string holding a path.
fn toml_path(p: &std::path::Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// The mobile profile: sdpops as `sdp`, keeping PCMA and GSM and removing video.
fn sdpops_module() -> String {
    format!(
        "[modules.sdp]\ncomponent = \"{}\"\n[modules.sdp.params]\n\
         keep_codecs_by_name = [\"PCMA\", \"GSM\"]\nremove_media = [\"video\"]\n\n",
        toml_path(&paths::plugin_wasm("sdpops"))
    )
}

/// A route to `next_hop` with sdpops in the request and reply chains.
fn route(mode: &str, next_hop: &str) -> String {
    format!(
        "[[route]]\nname = \"default\"\nmode = \"{mode}\"\nnext_hop = \"{next_hop}\"\n\
         request = [{{ module = \"sdp\" }}]\nreply = [{{ module = \"sdp\" }}]\n\n"
    )
}

fn proxy(mode: &str, next_hop: &str) -> Proxy {
    Proxy::start_with(|port| {
        format!(
            "{}{}{}{}",
            conf::header(),
            conf::listeners(port),
            sdpops_module(),
            route(mode, next_hop)
        )
    })
}

/// sipp calls through a proxy in `mode` over `transport`; every check in both
/// scenarios must pass.
fn sipp_calls(mode: &str, transport: Transport) {
    let mut uas = Uas::start_with(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        transport,
        &UasOptions {
            scenario: Some(sipp::scenario("sdpops_uas.xml")),
            calls: Some(CALLS),
            args: Vec::new(),
        },
    );
    let proxy = proxy(mode, &uas.uri());
    let mut uac = Uac::new(proxy.addr(), transport, CALLS, RATE);
    uac.scenario = Some(sipp::scenario("sdpops_uac.xml"));
    let run = uac.run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(run.exit_code, Some(0), "UAC: failed calls:\n{verdict}");
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");
    let uas_run = uas.finish(Duration::from_secs(30));
    assert_eq!(
        uas_run.exit_code,
        Some(0),
        "UAS: failed calls ({uas_run:?}):\n{verdict}"
    );
    assert_eq!(uas_run.successful, Some(u64::from(CALLS)), "{verdict}");
    proxy.assert_running();
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    assert_eq!(stats.get("local_replies"), 0, "{stats:?}");
}

/// The fake UAS answers `req` where its top Via says.
fn answer(uas: &UdpPeer, req: &SipMsg, reply: &SipMsg) {
    let top = req.top_via().expect("forwarded request has a Via");
    let to: SocketAddr = via_sent_by(&top)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("Weir's Via is not ip:port: {top}"));
    uas.send(reply, to);
}

/// The Content-Length header equals the body's length.
fn assert_content_length(msg: &SipMsg) {
    assert_eq!(
        msg.header("Content-Length"),
        Some(msg.body.len().to_string().as_str()),
        "{}",
        msg.text()
    );
}

// === sipp ===

#[test]
fn sipp_calls_over_udp_get_the_filtered_offer_and_answer() {
    sipp_calls("stateless", Transport::Udp);
}

#[test]
fn sipp_calls_over_tcp_through_a_stateful_route_get_the_filtered_offer_and_answer() {
    sipp_calls("stateful", Transport::Tcp);
}

// === byte for byte ===

#[test]
fn forwarded_offer_and_relayed_answer_are_filtered_byte_for_byte() {
    let uas = UdpPeer::bind();
    let proxy = proxy("stateless", &uas.uri());
    let ua = UdpPeer::bind();

    let invite = ua
        .request("INVITE", "sip:bob@example.com")
        .with_body("application/sdp", OFFER.as_bytes());
    ua.send(&invite, proxy.addr());
    let (fwd, _) = uas.expect("forwarded INVITE");
    assert_eq!(String::from_utf8_lossy(&fwd.body), OFFER_FILTERED);
    assert_content_length(&fwd);

    let ok = fwd
        .reply(200, "OK", Some("b1"))
        .add_header("Contact", &format!("<sip:bob@{}>", uas.host_port()))
        .with_body("Application/SDP; charset=utf-8", ANSWER.as_bytes());
    answer(&uas, &fwd, &ok);
    let (relayed, _) = ua.expect("relayed 200");
    assert_eq!(relayed.status(), Some(200));
    assert_eq!(String::from_utf8_lossy(&relayed.body), ANSWER_FILTERED);
    assert_content_length(&relayed);

    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

#[test]
fn malformed_sdp_and_other_bodies_pass_unchanged() {
    let uas = UdpPeer::bind();
    let proxy = proxy("stateless", &uas.uri());
    let ua = UdpPeer::bind();

    let no_c = OFFER.replace("c=IN IP4 10.20.30.40\r\n", "");
    for (ct, body) in [
        ("application/sdp", no_c.as_str()),
        ("text/plain", OFFER),
        ("multipart/mixed;boundary=b", OFFER),
    ] {
        let invite = ua
            .request("INVITE", "sip:bob@example.com")
            .with_body(ct, body.as_bytes());
        ua.send(&invite, proxy.addr());
        let (fwd, _) = uas.expect("forwarded INVITE");
        assert_eq!(fwd.body, body.as_bytes(), "{ct}");
        assert_content_length(&fwd);
    }
    assert!(
        proxy.wait_for_log("SDP left unchanged", Duration::from_secs(5)),
        "the malformed SDP is logged:\n{}",
        proxy.log()
    );
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}
