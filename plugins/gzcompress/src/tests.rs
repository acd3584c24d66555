use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_sdk::testing::{self, json, JsonValue};
use weir_sdk::{Address, KvError, Module, Verdict};

use super::{accepts_coding, deflate, inflate, normalize_peer, GzCompress, InflateError};

/// The RFC 4317-style offer used throughout (258 bytes).
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

/// `zlib.compress(SDP)` from CPython's zlib (the C library Kamailio links), level 6.
const SDP_ZLIB_HEX: &str = "789c65cdc10e82300c06e03bc9dea12f2074dd609bc90ec84512318b51ef0b70\
58228128f2fc62a206f5d67e7ffa77b2c8a2defa4ba85b206d504b9952b61ccb3d944e023714634c3167d1\
cdae5854dbff60b408735f67fdbd093d48c315c2e1e892fcec004183512cf2f63a0e9d1fd608aea84e8946\
c485eaa7e6bf6a1484dda6787167a7d0b43da45c28fa3c101c042d6ee67d4b194f0c7e770982ca9ddffc00\
04de3edd";

const HEAD: &str = "INVITE sip:bob@198.51.100.20:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: 3848276298220188511@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060>\r\n\
Content-Type: application/sdp\r\n";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn module(params: JsonValue) -> GzCompress {
    testing::init(params).unwrap()
}

/// The INVITE with a plain SDP body and `extra` header lines.
fn plain_invite(extra: &str) -> weir_sdk::Message<'static> {
    testing::request(&format!(
        "{HEAD}{extra}Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

/// The INVITE carrying `body` (bytes) under `Content-Encoding: deflate`.
fn compressed_invite(body: &[u8]) -> weir_sdk::Message<'static> {
    let mut msg = testing::request(&format!(
        "{HEAD}Content-Encoding: deflate\r\nContent-Length: 0\r\n\r\n"
    ));
    msg.set_body(body).unwrap();
    msg
}

fn reply_400() -> Verdict {
    Verdict::reply_with(400, "Bad Compressed Body", Vec::<(String, String)>::new())
}

// === codec ===

#[test]
fn inflates_what_real_zlib_made() {
    assert_eq!(
        inflate(&unhex(SDP_ZLIB_HEX), 65_536).unwrap(),
        SDP.as_bytes()
    );
}

#[test]
fn deflate_round_trips_at_every_level() {
    for level in 1..=9 {
        let packed = deflate(SDP.as_bytes(), level);
        assert_eq!(packed[0], 0x78, "zlib header (RFC 1950 CMF)");
        assert_eq!(
            (u16::from(packed[0]) << 8 | u16::from(packed[1])) % 31,
            0,
            "FCHECK"
        );
        assert!(packed.len() < SDP.len());
        assert_eq!(inflate(&packed, 65_536).unwrap(), SDP.as_bytes());
    }
}

/// Our stream through CPython's zlib.decompress (the C zlib Kamailio uses). Skipped,
/// with a note, where python3 is missing; the system test checks it on the wire too.
#[test]
fn what_we_deflate_inflates_with_real_zlib() {
    let packed = deflate(SDP.as_bytes(), 6);
    let child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("python3 not found: skipping the cross-check with C zlib");
        return;
    };
    child.stdin.take().unwrap().write_all(&packed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, SDP.as_bytes());
}

#[test]
fn bad_streams_are_refused_not_panicked_on() {
    let good = unhex(SDP_ZLIB_HEX);
    // Raw deflate (no zlib header), gzip, truncated, flipped checksum, garbage, empty.
    let mut bad_adler = good.clone();
    *bad_adler.last_mut().unwrap() ^= 1;
    let gzip = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    for (what, data) in [
        ("raw deflate", good[2..].to_vec()),
        ("gzip", gzip.to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("bad adler", bad_adler),
        ("garbage", b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".to_vec()),
        ("empty", Vec::new()),
    ] {
        assert_eq!(inflate(&data, 65_536), Err(InflateError::Corrupt), "{what}");
    }
}

#[test]
fn inflation_is_bounded() {
    let bomb = deflate(&vec![0u8; 1_000_000], 9);
    assert!(bomb.len() < 2_000);
    assert_eq!(inflate(&bomb, 65_536), Err(InflateError::TooLarge));
    assert_eq!(
        inflate(&unhex(SDP_ZLIB_HEX), SDP.len() - 1),
        Err(InflateError::TooLarge)
    );
    assert_eq!(
        inflate(&unhex(SDP_ZLIB_HEX), SDP.len()).unwrap().len(),
        SDP.len()
    );
}

// === compress ===

#[test]
fn always_compresses_a_plain_body_and_sets_the_header() {
    let gz = module(json!({ "compress": "always" }));
    let mut msg = plain_invite("");
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(msg.header("Content-Encoding").as_deref(), Some("deflate"));
    let body = msg.body();
    assert_eq!(body, deflate(SDP.as_bytes(), 6));
    assert_eq!(inflate(&body, 65_536).unwrap(), SDP.as_bytes());
    // The host rewrites Content-Length to the compressed size.
    let wire = testing::serialize(&msg);
    assert!(
        wire.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{wire}"
    );
}

#[test]
fn small_empty_or_incompressible_bodies_stay_plain() {
    let gz = module(json!({ "compress": "always", "min_size": 300 }));
    let mut msg = plain_invite("");
    gz.on_request(&mut msg).unwrap();
    assert!(!msg.has_header("Content-Encoding"));
    assert_eq!(msg.body(), SDP.as_bytes());

    let gz = module(json!({ "compress": "always", "min_size": 0 }));
    let mut msg = testing::request(&format!("{HEAD}Content-Length: 0\r\n\r\n"));
    gz.on_request(&mut msg).unwrap();
    assert!(!msg.has_header("Content-Encoding"));

    // 12 bytes of text deflate to more than 12: left alone.
    let mut msg = testing::request(&format!("{HEAD}Content-Length: 12\r\n\r\nhello world!"));
    gz.on_request(&mut msg).unwrap();
    assert!(!msg.has_header("Content-Encoding"));
    assert_eq!(msg.body(), b"hello world!");
}

#[test]
fn other_codings_are_left_alone() {
    let gz = module(json!({ "compress": "always" }));
    for coding in ["gzip", "deflate, gzip", "br"] {
        let mut msg = plain_invite(&format!("Content-Encoding: {coding}\r\n"));
        gz.on_request(&mut msg).unwrap();
        assert_eq!(msg.body(), SDP.as_bytes(), "{coding}");
        assert_eq!(msg.header("Content-Encoding").as_deref(), Some(coding));
    }
}

#[test]
fn if_accepted_uses_the_configured_peers() {
    let gz = module(json!({ "peers_accepting": ["198.51.100.20:5070"] }));
    let mut msg = plain_invite("");
    gz.on_request(&mut msg).unwrap();
    assert!(msg.has_header("Content-Encoding"));

    // A Route header decides over the request URI.
    let mut msg = plain_invite("Route: <sip:198.51.100.30;lr>\r\n");
    gz.on_request(&mut msg).unwrap();
    assert!(!msg.has_header("Content-Encoding"));

    // A peer without a port matches every port of its host.
    let gz = module(json!({ "peers_accepting": ["sip:198.51.100.30"] }));
    let mut msg = plain_invite("Route: <sip:198.51.100.30:5080;lr>, <sip:x.example>\r\n");
    gz.on_request(&mut msg).unwrap();
    assert!(msg.has_header("Content-Encoding"));
}

#[test]
fn never_compresses_when_told_not_to() {
    let gz = module(json!({
        "compress": "never",
        "peers_accepting": ["198.51.100.20:5070"]
    }));
    let mut msg = plain_invite("");
    gz.on_request(&mut msg).unwrap();
    assert_eq!(msg.body(), SDP.as_bytes());
}

// === learning ===

#[test]
fn a_peer_that_sent_accept_encoding_gets_compressed_replies() {
    let gz = module(json!({}));
    // The caller's INVITE says it takes deflate...
    let mut invite = plain_invite("Accept-Encoding: gzip;q=0.5, deflate\r\n");
    testing::set_source(&mut invite, Address::new("192.0.2.1", 5060));
    gz.on_request(&mut invite).unwrap();
    // ...so the 200 with SDP going back to it is compressed.
    let ok = format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
         From: <sip:alice@example.com>;tag=9fxced76sl\r\n\
         To: <sip:bob@example.com>;tag=8321234356\r\n\
         Call-ID: 3848276298220188511@192.0.2.1\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let mut reply = testing::reply(&ok);
    assert_eq!(gz.on_reply(&mut reply).unwrap(), Verdict::Continue);
    assert_eq!(reply.header("Content-Encoding").as_deref(), Some("deflate"));

    // A reply to another caller stays plain.
    let mut other = testing::reply(&ok.replace("192.0.2.1:5060;", "192.0.2.99:5060;"));
    gz.on_reply(&mut other).unwrap();
    assert!(!other.has_header("Content-Encoding"));

    // The memory fades with learn_ttl_s.
    testing::advance(Duration::from_secs(3600));
    let mut reply = testing::reply(&ok);
    gz.on_reply(&mut reply).unwrap();
    assert!(!reply.has_header("Content-Encoding"));
}

#[test]
fn received_and_rport_decide_where_a_reply_goes() {
    let gz = module(json!({ "peers_accepting": ["203.0.113.5:40000"] }));
    let ok = format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;rport=40000;received=203.0.113.5;branch=z9hG4bK1\r\n\
         CSeq: 1 INVITE\r\nCall-ID: x\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let mut reply = testing::reply(&ok);
    gz.on_reply(&mut reply).unwrap();
    assert!(reply.has_header("Content-Encoding"));
}

#[test]
fn a_peer_that_stops_accepting_is_forgotten_and_q0_refuses() {
    let gz = module(json!({}));
    let mut msg = plain_invite("Accept-Encoding: deflate\r\n");
    gz.on_request(&mut msg).unwrap();
    assert_eq!(
        weir_sdk::kv::get_string("accepts:192.0.2.1:5060").unwrap(),
        Some("1".into())
    );
    let mut msg = plain_invite("Accept-Encoding: deflate;q=0\r\n");
    gz.on_request(&mut msg).unwrap();
    assert_eq!(weir_sdk::kv::get("accepts:192.0.2.1:5060").unwrap(), None);

    assert!(accepts_coding("gzip, deflate;q=0.1", "deflate"));
    assert!(accepts_coding("*", "deflate"));
    assert!(accepts_coding("DEFLATE", "deflate"));
    assert!(!accepts_coding("deflate;q=0.000", "deflate"));
    assert!(!accepts_coding("x-deflate, identity", "deflate"));
}

#[test]
fn learning_can_be_off_and_kv_failures_only_log() {
    let gz = module(json!({ "learn_ttl_s": 0 }));
    let mut msg = plain_invite("Accept-Encoding: deflate\r\n");
    gz.on_request(&mut msg).unwrap();
    assert_eq!(weir_sdk::kv::get("accepts:192.0.2.1:5060").unwrap(), None);

    let gz = module(json!({}));
    testing::fail_kv(Some(KvError::Backend("down".into())));
    let mut msg = plain_invite("Accept-Encoding: deflate\r\n");
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(testing::logs()
        .iter()
        .any(|l| l.message.contains("kv update for 192.0.2.1:5060 failed")));
}

// === decompress ===

#[test]
fn a_compressed_body_is_inflated_for_a_peer_that_does_not_accept_it() {
    let gz = module(json!({}));
    let mut msg = compressed_invite(&unhex(SDP_ZLIB_HEX));
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(
        testing::serialize(&msg),
        format!("{HEAD}Content-Length: {}\r\n\r\n{SDP}", SDP.len())
    );
}

#[test]
fn a_compressed_body_stays_compressed_for_a_peer_that_accepts_it() {
    let gz = module(json!({ "peers_accepting": ["198.51.100.20:5070"] }));
    let packed = unhex(SDP_ZLIB_HEX);
    let mut msg = compressed_invite(&packed);
    gz.on_request(&mut msg).unwrap();
    assert_eq!(msg.body(), packed);
    assert!(msg.has_header("Content-Encoding"));

    // Unless told to inflate always (for SDP filtering further down the chain).
    let gz = module(json!({
        "decompress": "always",
        "peers_accepting": ["198.51.100.20:5070"]
    }));
    let mut msg = compressed_invite(&packed);
    gz.on_request(&mut msg).unwrap();
    assert_eq!(msg.body(), SDP.as_bytes());
    assert!(!msg.has_header("Content-Encoding"));
}

#[test]
fn header_matching_ignores_case_and_takes_the_compact_form() {
    let gz = module(json!({ "decompress": "always" }));
    for line in [
        "content-encoding: DEFLATE",
        "e: deflate",
        "Content-Encoding:  deflate ",
    ] {
        let mut msg = testing::request(&format!("{HEAD}{line}\r\nContent-Length: 0\r\n\r\n"));
        msg.set_body(unhex(SDP_ZLIB_HEX)).unwrap();
        gz.on_request(&mut msg).unwrap();
        assert_eq!(msg.body(), SDP.as_bytes(), "{line}");
        assert!(!msg.has_header("Content-Encoding"), "{line}");
    }
}

#[test]
fn a_custom_header_and_value_are_used() {
    let gz = module(json!({
        "compress": "always",
        "header_name": "X-Body-Coding",
        "header_value": "zlib"
    }));
    let mut msg = plain_invite("");
    gz.on_request(&mut msg).unwrap();
    assert_eq!(msg.header("X-Body-Coding").as_deref(), Some("zlib"));
    assert!(!msg.has_header("Content-Encoding"));
}

#[test]
fn an_empty_compressed_body_just_loses_the_header() {
    let gz = module(json!({ "decompress": "always" }));
    let mut msg = compressed_invite(b"");
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert!(!msg.has_header("Content-Encoding"));
}

#[test]
fn a_bad_compressed_request_gets_400_and_an_ack_is_dropped() {
    let gz = module(json!({ "decompress": "always" }));
    let mut msg = compressed_invite(b"\x78\x9cnot deflate at all");
    assert_eq!(gz.on_request(&mut msg).unwrap(), reply_400());
    assert!(testing::logs()
        .iter()
        .any(|l| l.message.contains("Bad Compressed Body")));

    let ack = format!("{HEAD}Content-Encoding: deflate\r\nContent-Length: 3\r\n\r\nabc")
        .replace("INVITE sip:", "ACK sip:")
        .replace("1 INVITE", "1 ACK");
    let mut msg = testing::request(&ack);
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Drop);
}

#[test]
fn a_bomb_gets_413() {
    let gz = module(json!({ "decompress": "always", "max_inflated_size": 1024 }));
    let mut msg = compressed_invite(&deflate(&[b'a'; 4096], 9));
    assert_eq!(
        gz.on_request(&mut msg).unwrap(),
        Verdict::reply_with(
            413,
            "Decompressed Body Too Large",
            Vec::<(String, String)>::new()
        )
    );
}

#[test]
fn a_body_that_would_outgrow_the_message_limit_fails_the_call() {
    let gz = module(json!({ "decompress": "always" }));
    let mut msg = compressed_invite(&unhex(SDP_ZLIB_HEX));
    testing::set_max_size(&mut msg, 600);
    let err = gz.on_request(&mut msg).unwrap_err();
    assert!(
        err.to_string().contains("gzcompress: setting the body"),
        "{err}"
    );
}

#[test]
fn a_bad_compressed_reply_is_passed_or_dropped() {
    let text = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
CSeq: 1 INVITE\r\nCall-ID: x\r\nContent-Encoding: deflate\r\nContent-Length: 4\r\n\r\njunk";
    let gz = module(json!({ "decompress": "always" }));
    let mut reply = testing::reply(text);
    assert_eq!(gz.on_reply(&mut reply).unwrap(), Verdict::Continue);
    assert_eq!(reply.body(), b"junk");
    assert!(testing::logs()
        .iter()
        .any(|l| l.message.contains("relayed unchanged")));

    let gz = module(json!({ "decompress": "always", "bad_reply": "drop" }));
    let mut reply = testing::reply(text);
    assert_eq!(gz.on_reply(&mut reply).unwrap(), Verdict::Drop);
}

// === config ===

#[test]
fn peers_parse() {
    assert!(normalize_peer("127.0.0.1:5070").is_some());
    assert!(normalize_peer("[::1]:5070").is_some());
    assert!(normalize_peer("sip:[::1]").is_some());
    assert!(normalize_peer("Proxy.Example.COM").is_some());
    for bad in ["", ":5060", "host:0", "host:x", "[::1", "a b", "host:99999"] {
        assert!(normalize_peer(bad).is_none(), "{bad}");
    }
}

#[test]
fn bad_config_is_refused_with_the_param_named() {
    let err = |p: JsonValue| testing::init_err::<GzCompress>(p);
    let e = err(json!({ "compress": "sometimes" }));
    assert!(
        e.starts_with("param `compress`: unknown variant `sometimes`"),
        "{e}"
    );
    let e = err(json!({ "decompres": "always" }));
    assert!(e.starts_with("param `decompres`: unknown field"), "{e}");
    let e = err(json!({ "min_size": -1 }));
    assert!(e.starts_with("param `min_size`: invalid value"), "{e}");
    assert_eq!(
        err(json!({ "level": 0 })),
        "level: 0 is not a zlib level (1 to 9)"
    );
    assert_eq!(
        err(json!({ "max_inflated_size": 0 })),
        "max_inflated_size: 0 is not between 1 and 16777216"
    );
    assert!(err(json!({ "compress": "always", "decompress": "always" })).contains("contradict"));
    assert_eq!(
        err(json!({ "header_name": "Content-Length" })),
        "header_name: `Content-Length` is not a header name this module can set"
    );
    assert_eq!(
        err(json!({ "header_value": "de flate" })),
        "header_value: `de flate` is not a content-coding token"
    );
    assert_eq!(
        err(json!({ "peers_accepting": ["host:x"] })),
        "peers_accepting: `host:x` is not host[:port] (IPv6 as [addr]:port)"
    );
    // The defaults are valid.
    assert!(testing::init::<GzCompress>(json!({})).is_ok());
}

// === the README exchange ===

#[test]
fn readme_invite_is_packed() {
    let gz = module(json!({ "compress": "always", "min_size": 256 }));
    let mut msg = plain_invite("");
    assert_eq!(gz.on_request(&mut msg).unwrap(), Verdict::Continue);
    let body = msg.body();
    assert_eq!(body.len(), 174);
    assert_eq!(body[..2], [0x78, 0x9c]);
    let wire = testing::serialize(&msg);
    let head = wire.split("\r\n\r\n").next().unwrap();
    assert_eq!(
        format!("{head}\r\n\r\n"),
        format!("{HEAD}Content-Length: 174\r\nContent-Encoding: deflate\r\n\r\n")
    );
}

// === the encoder ===

/// A deterministic xorshift generator for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The chain benchmark's audio+video offer (473 bytes).
const SDP_AV: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
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
a=sendrecv\r\n\
m=video 51372 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=sendrecv\r\n";

/// SDP-like text of about `n` bytes: offers with varying addresses, ports and
/// codecs, cut to exactly `n`.
fn sdp_like(n: usize, rng: &mut Rng) -> Vec<u8> {
    let codecs = [
        "PCMU/8000",
        "PCMA/8000",
        "GSM/8000",
        "G722/8000",
        "opus/48000/2",
        "telephone-event/8000",
        "H264/90000",
    ];
    let mut out = Vec::with_capacity(n + 200);
    while out.len() < n {
        let r = rng.next();
        out.extend_from_slice(
            format!(
                "v=0\r\no=- {} {} IN IP4 10.{}.{}.{}\r\ns=-\r\nc=IN IP4 10.{}.{}.{}\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 0 8 101\r\n",
                r % 1_000_000_007,
                r % 97,
                r % 256,
                (r >> 8) % 256,
                (r >> 16) % 256,
                (r >> 24) % 256,
                (r >> 32) % 256,
                (r >> 40) % 256,
                10_000 + (r >> 20) % 50_000,
            )
            .as_bytes(),
        );
        for i in 0..(r % 5) as usize {
            let pt = (r >> (i * 3)) % 128;
            let codec = codecs[((r >> (i * 5)) % codecs.len() as u64) as usize];
            out.extend_from_slice(format!("a=rtpmap:{pt} {codec}\r\na=ptime:20\r\n").as_bytes());
        }
    }
    out.truncate(n);
    out
}

/// Sizes from empty to 64 KiB, around the block and window edges.
const SIZES: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 16, 64, 200, 255, 256, 257, 473, 1000, 1500, 2048, 4096, 8191, 16_384,
    32_767, 32_768, 32_769, 40_000, 65_535, 65_536,
];

/// Every kind of input the tests use, with a name.
fn samples() -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    for &n in SIZES {
        out.push((format!("random {n}"), rng.bytes(n)));
        out.push((format!("sdp-like {n}"), sdp_like(n, &mut rng)));
        out.push((format!("zeros {n}"), vec![0; n]));
        // Few symbols, short runs: small alphabets in the Huffman codes.
        out.push((
            format!("ab {n}"),
            (0..n).map(|_| b'a' + (rng.next() % 2) as u8).collect(),
        ));
    }
    // A random block repeated: matches at the far end of the window and past it.
    let block = rng.bytes(20_000);
    out.push(("random x3".into(), block.repeat(3)));
    let block = rng.bytes(32_767);
    out.push(("random 32767 x2".into(), block.repeat(2)));
    out.push(("all bytes".into(), (0..=255u8).cycle().take(5000).collect()));
    out.push(("sdp".into(), SDP.as_bytes().to_vec()));
    out.push(("sdp av".into(), SDP_AV.as_bytes().to_vec()));
    out
}

#[test]
fn round_trips_every_size_and_kind_at_every_level() {
    for (what, data) in samples() {
        for level in 1..=9 {
            let packed = deflate(&data, level);
            assert_eq!(packed[0], 0x78, "{what} level {level}");
            assert_eq!(
                (u16::from(packed[0]) << 8 | u16::from(packed[1])) % 31,
                0,
                "{what} level {level}: FCHECK"
            );
            // Random data goes stored: never more than a few bytes per 64 KB over.
            assert!(
                packed.len() <= data.len() + 11 + 5 * (data.len() / 16_384),
                "{what} level {level}: {} -> {}",
                data.len(),
                packed.len()
            );
            let plain = inflate(&packed, 1 << 24).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert!(plain == data, "{what} level {level}: round trip");
        }
    }
}

#[test]
fn empty_input_is_the_zlib_empty_stream() {
    // What zlib's compress(b"") gives at level 6.
    assert_eq!(deflate(b"", 6), unhex("789c030000000001"));
}

/// Every sample, compressed at levels 1, 6 and 9, through CPython's zlib.decompress
/// in one python3 process (length-prefixed frames both ways).
#[test]
fn every_sample_inflates_with_real_zlib() {
    let samples = samples();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for (what, data) in &samples {
        for level in [1, 6, 9] {
            let packed = deflate(data, level);
            input.extend_from_slice(&u32::try_from(packed.len()).unwrap().to_be_bytes());
            input.extend_from_slice(&packed);
            expected.push((format!("{what} level {level}"), data));
        }
    }
    let child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib, struct\n\
             d = sys.stdin.buffer.read(); i = 0; o = sys.stdout.buffer\n\
             while i < len(d):\n\
             \x20   (n,) = struct.unpack('>I', d[i:i+4]); i += 4\n\
             \x20   p = zlib.decompress(d[i:i+n]); i += n\n\
             \x20   o.write(struct.pack('>I', len(p))); o.write(p)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("python3 not found: skipping the cross-check with C zlib");
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "zlib.decompress refused a stream");
    let mut rest = &out.stdout[..];
    for (what, data) in expected {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(
            rest[4..4 + n] == data[..],
            "{what}: C zlib inflated something else"
        );
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty());
}

/// The ratio on SDP stays within 15% of C zlib at level 6 (sizes from CPython's
/// `zlib.compress(sdp, 6)`: 165 bytes for the 258-byte offer, 273 for the 473-byte
/// one). Bodies under 1 KiB get fixed Huffman codes (174 and 311 bytes here).
#[test]
fn sdp_compresses_about_as_well_as_zlib() {
    for (sdp, zlib6) in [(SDP, 165usize), (SDP_AV, 273)] {
        let ours = deflate(sdp.as_bytes(), 6).len();
        eprintln!("{} bytes: ours {ours}, zlib 6 {zlib6}", sdp.len());
        assert!(
            ours * 100 <= zlib6 * 115,
            "{} bytes: {ours} vs zlib's {zlib6}",
            sdp.len()
        );
    }
    // SDP-like bodies of typical sizes: a useful ratio.
    let mut rng = Rng(7);
    for n in [300, 600, 1200, 2400, 4000] {
        let body = sdp_like(n, &mut rng);
        let ours = deflate(&body, 6).len();
        assert!(ours * 100 < n * 70, "{n} bytes -> {ours}");
    }
}
