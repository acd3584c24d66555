//! gzcompress end to end: bodies compressed on the hop between two Weir proxies and
//! plain at both ends (sipp calls), the wire format checked against real zlib
//! (CPython's `zlib`, the C library Kamailio links), and bad compressed bodies answered
//! with 400/413 instead of crashing anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use weir_system_tests::conf;
use weir_system_tests::paths;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sipp::{Transport, Uac, Uas};
use weir_system_tests::zlib::python_inflate;
use weir_system_tests::{Proxy, SipMsg};

/// An offer of 258 bytes (above the default `min_size` of 256).
const SDP: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 97\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 iLBC/8000\r\n\
m=video 51372 RTP/AVP 31 32\r\n\
a=rtpmap:31 H261/90000\r\n\
a=rtpmap:32 MPV/90000\r\n";

/// `zlib.compress(SDP)` made by CPython's zlib.
const SDP_ZLIB_HEX: &str = "789c65cdc10e82300c06e03bc9dea12f2074dd609bc90ec84512318b51ef0b70\
58228128f2fc62a206f5d67e7ffa77b2c8a2defa4ba85b206d504b9952b61ccb3d944e023714634c3167d1\
cdae5854dbff60b408735f67fdbd093d48c315c2e1e892fcec004183512cf2f63a0e9d1fd608aea84e8946\
c485eaa7e6bf6a1484dda6787167a7d0b43da45c28fa3c101c042d6ee67d4b194f0c7e770982ca9ddffc00\
04de3edd";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `[modules.NAME]` running gzcompress with `params` (TOML lines).
fn module(name: &str, params: &str) -> String {
    format!(
        "[modules.{name}]\ncomponent = \"{}\"\n[modules.{name}.params]\n{params}\n\n",
        paths::plugin_wasm("gzcompress").display()
    )
}

/// A proxy with one stateless route to `next_hop`, running module `req` on requests and
/// `rep` on replies; both modules are defined by `modules`.
fn config(port: u16, modules: &str, req: &str, rep: &str, next_hop: &str) -> String {
    format!(
        "{}{}{modules}\
         [[route]]\nname = \"default\"\nmode = \"stateless\"\nnext_hop = \"{next_hop}\"\n\
         request = [{{ module = \"{req}\" }}]\nreply = [{{ module = \"{rep}\" }}]\n\n",
        conf::header(),
        conf::listeners(port),
    )
}

/// Compress everything going out (requests), inflate everything coming back (replies).
fn edge_modules() -> String {
    format!(
        "{}{}",
        module("pack", "compress = \"always\"\nmin_size = 0"),
        module("unpack", "compress = \"never\"\ndecompress = \"always\"")
    )
}

fn invite_with_sdp(ua: &UdpPeer) -> SipMsg {
    let mut msg = ua
        .request("INVITE", "sip:bob@example.com")
        .add_header("Content-Type", "application/sdp");
    msg.headers.retain(|(n, _)| n != "Content-Length");
    msg = msg.add_header("Content-Length", &SDP.len().to_string());
    msg.body = SDP.as_bytes().to_vec();
    msg
}

#[test]
fn calls_with_bodies_compressed_between_two_proxies_succeed() {
    const CALLS: u32 = 30;
    let uas = Uas::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Transport::Udp);
    let uas_uri = uas.uri();
    // B, next to the UAS: inflates requests, compresses replies.
    let b = Proxy::start_with(|port| config(port, &edge_modules(), "unpack", "pack", &uas_uri));
    let b_uri = format!("sip:127.0.0.1:{}", b.port());
    // A, next to the UAC: compresses requests, inflates replies.
    let a = Proxy::start_with(|port| config(port, &edge_modules(), "pack", "unpack", &b_uri));

    let run = Uac::new(a.addr(), Transport::Udp, CALLS, 15).run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(
        run.exit_code,
        Some(0),
        "sipp reports failed calls:\n{verdict}"
    );
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");
    for stats in [b.stop(), a.stop()] {
        assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
        assert_eq!(stats.get("local_replies"), 0, "{stats:?}");
    }
}

#[test]
fn bodies_on_the_wire_are_real_zlib_both_ways() {
    let sink = UdpPeer::bind();
    let p = Proxy::start_with(|port| config(port, &edge_modules(), "pack", "unpack", &sink.uri()));
    let ua = UdpPeer::bind();
    ua.send(&invite_with_sdp(&ua), p.addr());

    // What Weir sends inflates with C zlib to the original offer.
    let (invite, from) = sink.expect("compressed INVITE");
    assert_eq!(
        invite.header("Content-Encoding"),
        Some("deflate"),
        "{}",
        invite.text()
    );
    let cl: usize = invite.header("Content-Length").unwrap().parse().unwrap();
    assert_eq!(cl, invite.body.len());
    assert!(cl < SDP.len());
    assert_eq!(python_inflate(&invite.body), SDP.as_bytes());

    // A reply compressed by C zlib reaches the caller inflated, header gone.
    let packed = unhex(SDP_ZLIB_HEX);
    let mut ok = invite.reply(200, "OK", Some("uas1"));
    ok.headers.retain(|(n, _)| n != "Content-Length");
    ok = ok
        .add_header("Contact", &format!("<{}>", sink.uri()))
        .add_header("Content-Type", "application/sdp")
        .add_header("Content-Encoding", "deflate")
        .add_header("Content-Length", &packed.len().to_string());
    ok.body = packed;
    sink.send(&ok, from);
    let (reply, _) = ua.expect("inflated 200");
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    assert!(!reply.has("Content-Encoding"), "{}", reply.text());
    assert_eq!(reply.header("Content-Length"), Some("258"));
    assert_eq!(reply.body, SDP.as_bytes());

    let stats = p.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

#[test]
fn bad_compressed_bodies_get_clear_error_replies() {
    let sink = UdpPeer::bind();
    let p = Proxy::start_with(|port| {
        config(
            port,
            &module(
                "unpack",
                "compress = \"never\"\ndecompress = \"always\"\nmax_inflated_size = 4096",
            ),
            "unpack",
            "unpack",
            &sink.uri(),
        )
    });
    let ua = UdpPeer::bind();
    let with_body = |body: &[u8]| {
        let mut msg = ua
            .request("MESSAGE", "sip:bob@example.com")
            .add_header("Content-Type", "text/plain")
            .add_header("Content-Encoding", "deflate");
        msg.headers.retain(|(n, _)| n != "Content-Length");
        msg = msg.add_header("Content-Length", &body.len().to_string());
        msg.body = body.to_vec();
        msg
    };

    // Not zlib at all, and a truncated stream.
    let packed = unhex(SDP_ZLIB_HEX);
    for body in [&b"plain text, not deflate"[..], &packed[..packed.len() / 2]] {
        let reply = ua.transact(&with_body(body), p.addr(), "reply to a bad body");
        assert_eq!(reply.status(), Some(400), "{}", reply.text());
        assert_eq!(reply.reason(), Some("Bad Compressed Body"));
    }
    // A small stream that inflates past the limit (a "zip bomb"): 31 bytes that
    // inflate to 8 KiB of zeros, made by CPython's `zlib.compress(bytes(8192), 9)`.
    let bomb = unhex("78daedc1010d000000c2a0f74f6d0e37a00000000000000080770320000001");
    let reply = ua.transact(&with_body(&bomb), p.addr(), "reply to a bomb");
    assert_eq!(reply.status(), Some(413), "{}", reply.text());

    // A good one still goes through, inflated.
    ua.send(&with_body(&packed), p.addr());
    let (msg, _) = sink.expect("inflated MESSAGE");
    assert_eq!(msg.body, SDP.as_bytes());
    assert!(!msg.has("Content-Encoding"));

    p.assert_running();
    let stats = p.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}
