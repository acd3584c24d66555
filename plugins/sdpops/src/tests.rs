use weir_sdk::log::Level;
use weir_sdk::testing::{self, json, JsonValue};
use weir_sdk::{Message, Module, Verdict};

use super::sdp::{Sdp, MAX_IDS_PER_NAME};
use super::SdpOps;

// === fixtures ===

/// The README's offer: a phone offering PCMU, PCMA, GSM, DTMF and two video codecs.
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

/// [`OFFER`] after `keep_codecs_by_name = ["PCMA", "GSM"]`, `remove_media = ["video"]`.
const OFFER_MOBILE: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 3\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const INVITE_HEAD: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@10.20.30.40\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.20.30.40:5060>\r\n";

/// A Linphone-style offer with SRTP (`RTP/SAVP` + `a=crypto`) and an RTP/AVP fallback,
/// Opus, Speex, G.722, DTMF at two rates, and an H.264/VP8 video stream.
const LINPHONE: &str = "v=0\r\n\
o=alice 1983 678 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/SAVP 96 97 98 9 0 8 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=audio 7078 RTP/AVP 96 97 98 9 0 8 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
m=video 9078 RTP/AVP 102 103\r\n\
a=rtpmap:102 H264/90000\r\n\
a=fmtp:102 profile-level-id=42801F; packetization-mode=1\r\n\
a=rtpmap:103 VP8/90000\r\n\
a=rtcp-fb:* nack pli\r\n\
a=rtcp-fb:102 ccm fir\r\n\
a=rtcp-fb:103 goog-remb\r\n";

/// A browser (WebRTC) offer: ICE, DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), BUNDLE, extmap,
/// RED, CN at two rates, ssrc lines.
const WEBRTC: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0\r\n\
a=candidate:2 1 udp 1686052607 203.0.113.7 54321 typ srflx raddr 192.168.1.20 rport 54321\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n\
a=mid:1\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n";

/// A desk phone (Yealink/Polycom style): G.722, PCMU, PCMA, G.729 with annexb=no,
/// iLBC, DTMF; LF line ends and no final line end.
const DESK_PHONE_LF: &str = "v=0\n\
o=- 20012 20012 IN IP4 10.0.0.50\n\
s=SDP data\n\
c=IN IP4 10.0.0.50\n\
t=0 0\n\
m=audio 11798 RTP/AVP 9 0 8 18 98 101\n\
a=rtpmap:9 G722/8000\n\
a=rtpmap:0 PCMU/8000\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:18 G729/8000\n\
a=fmtp:18 annexb=no\n\
a=rtpmap:98 iLBC/8000\n\
a=fmtp:98 mode=30\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-15\n\
a=ptime:20\n\
a=sendrecv";

// === helpers ===

fn module(params: JsonValue) -> SdpOps {
    match testing::init::<SdpOps>(params) {
        Ok(m) => m,
        Err(e) => panic!("init failed: {e}"),
    }
}

/// An INVITE with `body` under `content_type`.
fn invite_with(content_type: &str, body: &str) -> String {
    format!(
        "{INVITE_HEAD}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn invite(sdp: &str) -> String {
    invite_with("application/sdp", sdp)
}

/// A 200 OK to the INVITE with `sdp` as its answer.
fn ok_200(sdp: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK776asdhds\r\n\
To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@10.20.30.40\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn body(msg: &Message) -> String {
    String::from_utf8(msg.body()).unwrap()
}

/// The body of an INVITE carrying `sdp` after the module with `params`.
fn edit(params: JsonValue, sdp: &str) -> String {
    let ops = module(params);
    let mut msg = testing::request(&invite(sdp));
    assert_eq!(ops.on_request(&mut msg).unwrap(), Verdict::Continue);
    body(&msg)
}

/// The `m=` lines of an SDP.
fn m_lines(sdp: &str) -> Vec<&str> {
    lines_with(sdp, "m=")
}

/// The lines of `sdp` that start with `prefix`.
fn lines_with<'s>(sdp: &'s str, prefix: &str) -> Vec<&'s str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with(prefix))
        .collect()
}

// === the README example ===

#[test]
fn readme_example_mobile_invite() {
    let ops = module(json!({
        "keep_codecs_by_name": ["PCMA", "GSM"],
        "remove_media": ["video"],
    }));
    let mut msg = testing::request(&invite(OFFER));
    assert_eq!(ops.on_request(&mut msg).unwrap(), Verdict::Continue);
    let expected = format!(
        "{INVITE_HEAD}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER_MOBILE}",
        OFFER_MOBILE.len()
    );
    assert_eq!(testing::serialize(&msg), expected);
    assert_eq!(OFFER.len(), 447, "README says so");
    assert_eq!(OFFER_MOBILE.len(), 183, "README says so");
    assert!(testing::logs().is_empty());
}

#[test]
fn the_answer_in_a_200_is_edited_too() {
    let ops = module(json!({
        "keep_codecs_by_name": ["PCMA", "GSM"],
        "remove_media": ["video"],
    }));
    let mut msg = testing::reply(&ok_200(OFFER));
    assert_eq!(ops.on_reply(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(body(&msg), OFFER_MOBILE);
    assert!(
        testing::serialize(&msg).contains(&format!("Content-Length: {}\r\n", OFFER_MOBILE.len()))
    );
}

// === name resolution (Kamailio's sdpops_build_ids_list) ===

#[test]
fn a_static_name_resolves_through_the_table_only() {
    // PCMA is 8 in the static table; the dynamic PT 97 named PCMA is not looked up, so
    // keeping PCMA removes it, and removing PCMA leaves it.
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 97 8 0\r\na=rtpmap:97 PCMA/16000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n";
    let kept = edit(json!({ "keep_codecs_by_name": ["pcma"] }), sdp);
    assert_eq!(m_lines(&kept), ["m=audio 4000 RTP/AVP 8"]);
    assert_eq!(lines_with(&kept, "a=rtpmap"), ["a=rtpmap:8 PCMA/8000"]);

    let removed = edit(json!({ "remove_codecs_by_name": ["PCMA"] }), sdp);
    assert_eq!(m_lines(&removed), ["m=audio 4000 RTP/AVP 97 0"]);
    assert_eq!(
        lines_with(&removed, "a=rtpmap"),
        ["a=rtpmap:97 PCMA/16000", "a=rtpmap:0 PCMU/8000"]
    );
}

#[test]
fn multi_id_static_names_resolve_to_every_id() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 5 6 16 17 10 11 0\r\n";
    let out = edit(json!({ "remove_codecs_by_name": ["DVI4", "l16"] }), sdp);
    assert_eq!(m_lines(&out), ["m=audio 4000 RTP/AVP 0"]);
}

#[test]
fn a_dynamic_name_resolves_to_every_matching_rtpmap_in_any_stream() {
    // telephone-event has PT 101 in the SRTP stream and 101/99/100 in both.
    let out = edit(
        json!({ "remove_codecs_by_name": ["telephone-event"] }),
        LINPHONE,
    );
    assert_eq!(
        m_lines(&out),
        [
            "m=audio 7078 RTP/SAVP 96 97 98 9 0 8",
            "m=audio 7078 RTP/AVP 96 97 98 9 0 8",
            "m=video 9078 RTP/AVP 102 103",
        ]
    );
    assert!(lines_with(&out, "a=rtpmap:")
        .iter()
        .all(|l| !l.contains("telephone-event")));
}

#[test]
fn encoding_names_match_case_insensitively_and_whole() {
    // "speex" matches "SPEEX"; "AMR" does not match "AMR-WB".
    let out = edit(
        json!({ "remove_codecs_by_name": ["SPEEX", "AMR"] }),
        LINPHONE,
    );
    assert_eq!(
        m_lines(&out)[0],
        "m=audio 7078 RTP/SAVP 96 9 0 8 101 99 100"
    );
    let amr = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 96 97\r\na=rtpmap:96 AMR-WB/16000\r\na=rtpmap:97 AMR/8000\r\n";
    let out = edit(json!({ "keep_codecs_by_name": ["AMR-WB"] }), amr);
    assert_eq!(m_lines(&out), ["m=audio 4000 RTP/AVP 96"]);
}

#[test]
fn unknown_names_are_skipped() {
    let out = edit(
        json!({ "keep_codecs_by_name": ["FOO", "PCMA", "GSM"] }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 8 3");
}

#[test]
fn nothing_resolved_changes_nothing() {
    let ops = module(json!({ "keep_codecs_by_name": ["AMR-WB", "opus"] }));
    let mut msg = testing::request(&invite(OFFER));
    ops.on_request(&mut msg).unwrap();
    assert_eq!(testing::serialize(&msg), invite(OFFER));

    let out = edit(json!({ "remove_codecs_by_name": ["AMR-WB"] }), OFFER);
    assert_eq!(out, OFFER);
}

#[test]
fn an_rtpmap_for_a_pt_not_in_the_m_line_does_not_resolve() {
    // Kamailio attaches rtpmaps to the m= line's payload types only.
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:96 opus/48000/2\r\n";
    assert_eq!(edit(json!({ "keep_codecs_by_name": ["opus"] }), sdp), sdp);
}

#[test]
fn a_name_with_more_than_sixteen_dynamic_pts_is_skipped() {
    let pts: Vec<String> = (96..=96 + MAX_IDS_PER_NAME as u32)
        .map(|p| p.to_string())
        .collect();
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 {}\r\n",
        pts.join(" ")
    );
    for pt in &pts {
        sdp.push_str(&format!("a=rtpmap:{pt} opus/48000/2\r\n"));
    }
    // 17 opus PTs: the name resolves to nothing, so keep changes nothing.
    assert_eq!(edit(json!({ "keep_codecs_by_name": ["opus"] }), &sdp), sdp);
    // With PCMU listed as well, only PCMU is kept.
    let out = edit(json!({ "keep_codecs_by_name": ["opus", "PCMU"] }), &sdp);
    assert_eq!(m_lines(&out), ["m=audio 4000 RTP/AVP 0"]);
}

#[test]
fn a_resolved_list_over_128_characters_skips_the_operation_and_warns() {
    // 13 static names with 19 ids: "0,3,4,5,6,16,17,7,8,9,10,11,12,..." is short, so
    // repeat names until the list passes 128 characters.
    let names: Vec<&str> = std::iter::repeat_n("DVI4", 13).collect();
    let out = edit(json!({ "keep_codecs_by_name": names }), OFFER);
    assert_eq!(out, OFFER);
    let logs = testing::logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, Level::Warn);
    assert!(
        logs[0].message.contains("keep_codecs_by_name skipped"),
        "{}",
        logs[0].message
    );
}

// === keep ===

#[test]
fn telephone_event_survives_keep_only_if_listed() {
    let out = edit(json!({ "keep_codecs_by_name": ["PCMA"] }), OFFER);
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 8");
    assert!(lines_with(&out, "a=fmtp:101").is_empty());

    let out = edit(
        json!({ "keep_codecs_by_name": ["PCMA", "telephone-event"] }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 8 101");
    assert_eq!(lines_with(&out, "a=fmtp:101"), ["a=fmtp:101 0-16"]);

    let out = edit(json!({ "keep_codecs_by_id": [8, 101] }), OFFER);
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 8 101");
}

#[test]
fn keep_applies_to_every_stream_unless_restricted_by_media_type() {
    // Without media_type the video stream loses every payload type, as in Kamailio.
    let out = edit(json!({ "keep_codecs_by_id": [8] }), OFFER);
    assert_eq!(
        m_lines(&out),
        ["m=audio 49170 RTP/AVP 8", "m=video 49172 RTP/AVP"]
    );
    assert_eq!(lines_with(&out, "a=rtcp-fb"), ["a=rtcp-fb:* ccm fir"]);

    let out = edit(
        json!({ "keep_codecs_by_id": [8], "media_type": "AUDIO" }),
        OFFER,
    );
    assert_eq!(
        m_lines(&out),
        ["m=audio 49170 RTP/AVP 8", "m=video 49172 RTP/AVP 96 97"]
    );
    assert_eq!(lines_with(&out, "a=rtpmap:96"), ["a=rtpmap:96 H264/90000"]);
}

#[test]
fn keeping_a_static_codec_the_offer_lacks_empties_the_format_list() {
    // G729 resolves through the static table whatever the SDP holds (Kamailio).
    let out = edit(
        json!({ "keep_codecs_by_name": ["G729"], "media_type": "audio" }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP");
    assert!(lines_with(&out, "a=rtpmap:")
        .iter()
        .all(|l| !l.contains("/8000")));
    assert_eq!(lines_with(&out, "a=ptime"), ["a=ptime:20"]);
}

#[test]
fn keep_by_name_and_by_id_form_one_list() {
    let out = edit(
        json!({ "keep_codecs_by_name": ["GSM"], "keep_codecs_by_id": [101], "media_type": "audio" }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 3 101");
    // A name that resolves to nothing still leaves the ids to keep by.
    let out = edit(
        json!({ "keep_codecs_by_name": ["AMR"], "keep_codecs_by_id": [0], "media_type": "audio" }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 0");
}

// === remove by id ===

#[test]
fn remove_by_id_takes_rtpmap_fmtp_and_rtcp_fb_but_not_the_wildcard() {
    let out = edit(json!({ "remove_codecs_by_id": [96] }), OFFER);
    assert_eq!(m_lines(&out)[1], "m=video 49172 RTP/AVP 97");
    assert!(lines_with(&out, "a=rtpmap:96").is_empty());
    assert!(lines_with(&out, "a=fmtp:96").is_empty());
    assert_eq!(lines_with(&out, "a=rtcp-fb"), ["a=rtcp-fb:* ccm fir"]);
}

#[test]
fn attribute_prefixes_match_any_case_and_the_pt_exactly() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 1 101 0\r\n\
A=RTPMAP:1 X/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=Fmtp:1 a=b\r\n\
a=fmtp:1\r\n\
a=rtcp-fb:10 nack\r\n\
a=rtpmap:0 PCMU/8000\r\n";
    let out = edit(json!({ "remove_codecs_by_id": [1] }), sdp);
    assert_eq!(
        out,
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 101 0\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:1\r\n\
a=rtcp-fb:10 nack\r\n\
a=rtpmap:0 PCMU/8000\r\n"
    );
}

#[test]
fn removing_every_pt_leaves_an_empty_format_list() {
    let out = edit(
        json!({ "remove_codecs_by_id": [0, 8, 3, 101], "media_type": "audio" }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP");
    assert_eq!(
        lines_with(&out, "a="),
        [
            "a=ptime:20",
            "a=sendrecv",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1",
            "a=rtcp-fb:96 nack",
            "a=rtcp-fb:* ccm fir",
            "a=rtpmap:97 VP8/90000",
            "a=sendrecv",
        ]
    );
}

#[test]
fn removal_takes_the_space_before_the_pt_and_keeps_other_spacing() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio  4000 RTP/AVP 0  8 3 \r\n";
    let out = edit(json!({ "remove_codecs_by_id": [8, 3] }), sdp);
    assert_eq!(m_lines(&out), ["m=audio  4000 RTP/AVP 0  "]);
    let out = edit(json!({ "remove_codecs_by_id": [0] }), sdp);
    assert_eq!(m_lines(&out), ["m=audio  4000 RTP/AVP  8 3 "]);
}

#[test]
fn the_port_and_protocol_are_never_taken_for_pts() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 8 RTP/AVP 0 8\r\n";
    let out = edit(json!({ "remove_codecs_by_id": [8] }), sdp);
    assert_eq!(m_lines(&out), ["m=audio 8 RTP/AVP 0"]);
}

#[test]
fn remove_and_keep_together() {
    let out = edit(
        json!({ "remove_codecs_by_name": ["PCMU"], "keep_codecs_by_id": [0, 8, 101], "media_type": "audio" }),
        OFFER,
    );
    assert_eq!(m_lines(&out)[0], "m=audio 49170 RTP/AVP 8 101");
}

// === remove media / transport ===

#[test]
fn remove_media_drops_the_section_up_to_the_next_m_line() {
    let out = edit(json!({ "remove_media": ["AUDIO"] }), OFFER);
    assert_eq!(
        out,
        "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=video 49172 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:* ccm fir\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=sendrecv\r\n"
    );
    // Removing every stream leaves the session part (Kamailio does the same).
    let out = edit(json!({ "remove_media": ["audio", "video"] }), OFFER);
    assert!(m_lines(&out).is_empty());
    assert!(out.ends_with("t=0 0\r\n"));
}

#[test]
fn remove_transport_drops_srtp_streams_and_keeps_the_rest() {
    let out = edit(json!({ "remove_transport": ["rtp/savp"] }), LINPHONE);
    assert_eq!(
        m_lines(&out),
        [
            "m=audio 7078 RTP/AVP 96 97 98 9 0 8 101 99 100",
            "m=video 9078 RTP/AVP 102 103"
        ]
    );
    assert!(lines_with(&out, "a=crypto").is_empty());
    // Session-level lines before the first m= stay.
    assert_eq!(lines_with(&out, "a=rtcp-xr").len(), 1);
}

#[test]
fn transport_must_match_whole() {
    // RTP/SAVP does not match UDP/TLS/RTP/SAVPF.
    let out = edit(json!({ "remove_transport": ["RTP/SAVP"] }), WEBRTC);
    assert_eq!(out, WEBRTC);
    let out = edit(json!({ "remove_transport": ["UDP/TLS/RTP/SAVPF"] }), WEBRTC);
    assert!(m_lines(&out).is_empty());
}

// === remove lines by prefix ===

#[test]
fn remove_line_prefix_is_case_sensitive_over_the_whole_body() {
    let out = edit(
        json!({ "remove_line_prefix": ["a=candidate", "a=ice-", "a=ssrc"] }),
        WEBRTC,
    );
    assert!(lines_with(&out, "a=candidate").is_empty());
    assert!(lines_with(&out, "a=ice-").is_empty());
    assert!(lines_with(&out, "a=ssrc").is_empty());
    assert_eq!(lines_with(&out, "a=rtpmap").len(), 10);
    let out = edit(json!({ "remove_line_prefix": ["A=CANDIDATE"] }), WEBRTC);
    assert_eq!(out, WEBRTC);
}

#[test]
fn remove_line_prefix_with_media_type_touches_only_those_streams() {
    let out = edit(
        json!({ "remove_line_prefix": ["a=ice-"], "media_type": "video" }),
        WEBRTC,
    );
    assert_eq!(lines_with(&out, "a=ice-ufrag").len(), 1);
    assert_eq!(lines_with(&out, "a=ice-options").len(), 1);
    assert_eq!(lines_with(&out, "a=ice-pwd").len(), 1);
}

#[test]
fn remove_line_prefix_reaches_session_lines() {
    let out = edit(json!({ "remove_line_prefix": ["a=rtcp-xr"] }), LINPHONE);
    assert!(lines_with(&out, "a=rtcp-xr").is_empty());
    assert_eq!(
        out.len(),
        LINPHONE.len()
            - "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n".len()
    );
}

// === real-world offers ===

#[test]
fn webrtc_offer_keep_opus_and_pcma_for_audio() {
    let out = edit(
        json!({ "keep_codecs_by_name": ["opus", "PCMA", "telephone-event"], "media_type": "audio" }),
        WEBRTC,
    );
    assert_eq!(
        m_lines(&out),
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 8 110 126",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97"
        ]
    );
    // RED's fmtp went with PT 63; ICE, DTLS and ssrc lines stay.
    assert!(lines_with(&out, "a=fmtp:63").is_empty());
    assert_eq!(lines_with(&out, "a=candidate").len(), 2);
    assert_eq!(lines_with(&out, "a=fingerprint").len(), 1);
    assert_eq!(
        lines_with(&out, "a=rtcp-fb:111"),
        ["a=rtcp-fb:111 transport-cc"]
    );
}

#[test]
fn webrtc_cn_resolves_to_13_only() {
    let out = edit(json!({ "remove_codecs_by_name": ["CN"] }), WEBRTC);
    assert_eq!(
        m_lines(&out)[0],
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126"
    );
}

#[test]
fn a_dynamic_cn_is_not_cn() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 13 105\r\na=rtpmap:13 CN/8000\r\na=rtpmap:105 CN/16000\r\n";
    let out = edit(json!({ "remove_codecs_by_name": ["cn"] }), sdp);
    assert_eq!(m_lines(&out), ["m=audio 4000 RTP/AVP 0 105"]);
    assert_eq!(lines_with(&out, "a=rtpmap"), ["a=rtpmap:105 CN/16000"]);
}

#[test]
fn readme_other_entries_are_valid() {
    module(json!({
        "remove_transport": ["RTP/AVP"],
        "remove_line_prefix": ["a=candidate", "a=ice-", "a=end-of-candidates"],
    }));
    module(json!({ "remove_codecs_by_name": ["G729", "telephone-event"], "media_type": "audio" }));
    module(json!({ "keep_codecs_by_id": [8, 101], "apply_to": "replies", "multipart": true }));
}

#[test]
fn linphone_offer_mobile_profile() {
    let out = edit(
        json!({ "keep_codecs_by_name": ["PCMA", "GSM"], "remove_media": ["video"] }),
        LINPHONE,
    );
    assert_eq!(
        out,
        "v=0\r\n\
o=alice 1983 678 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/SAVP 8\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=audio 7078 RTP/AVP 8\r\n"
    );
}

#[test]
fn lf_line_ends_and_a_missing_final_line_end_are_kept() {
    let out = edit(
        json!({ "keep_codecs_by_name": ["G722", "G729"] }),
        DESK_PHONE_LF,
    );
    assert_eq!(
        out,
        "v=0\n\
o=- 20012 20012 IN IP4 10.0.0.50\n\
s=SDP data\n\
c=IN IP4 10.0.0.50\n\
t=0 0\n\
m=audio 11798 RTP/AVP 9 18\n\
a=rtpmap:9 G722/8000\n\
a=rtpmap:18 G729/8000\n\
a=fmtp:18 annexb=no\n\
a=ptime:20\n\
a=sendrecv"
    );
    // The last line can go too.
    let out = edit(
        json!({ "remove_line_prefix": ["a=sendrecv"] }),
        DESK_PHONE_LF,
    );
    assert!(out.ends_with("a=ptime:20\n"));
}

#[test]
fn mixed_line_ends_are_kept_per_line() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 192.0.2.1\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\n";
    let out = edit(json!({ "remove_codecs_by_id": [0] }), sdp);
    assert_eq!(
        out,
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\ns=-\r\nc=IN IP4 192.0.2.1\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n"
    );
}

#[test]
fn an_unchanged_body_is_not_rewritten() {
    // Nothing matches: the editor reports no change, so the module makes no set_body.
    let ops = super::sdp::Ops {
        remove_media: vec!["video".into()],
        remove_ids: vec!["96".into()],
        line_prefixes: vec!["a=crypto".into()],
        ..Default::default()
    };
    let mut sdp = Sdp::parse(DESK_PHONE_LF.as_bytes()).unwrap();
    assert!(sdp.apply(&ops).is_empty());
    assert!(!sdp.changed());
    assert_eq!(sdp.to_bytes(), DESK_PHONE_LF.as_bytes());
}

// === content types ===

#[test]
fn content_type_is_matched_without_case_and_with_params() {
    for ct in [
        "Application/SDP",
        "application/sdp;charset=utf-8",
        " application/sdp ; version=1",
    ] {
        let ops = module(json!({ "remove_media": ["video"] }));
        let mut msg = testing::request(&invite_with(ct, OFFER));
        ops.on_request(&mut msg).unwrap();
        assert_eq!(m_lines(&body(&msg)).len(), 1, "{ct}");
    }
    // The compact form c: is the same header.
    let ops = module(json!({ "remove_media": ["video"] }));
    let text = invite(OFFER).replace("Content-Type:", "c:");
    let mut msg = testing::request(&text);
    ops.on_request(&mut msg).unwrap();
    assert_eq!(m_lines(&body(&msg)).len(), 1);
}

#[test]
fn other_bodies_are_left_alone() {
    let ops = module(json!({ "remove_media": ["video"] }));
    for ct in [
        "text/plain",
        "application/sdpx",
        "application/json",
        "message/sipfrag",
    ] {
        let text = invite_with(ct, OFFER);
        let mut msg = testing::request(&text);
        ops.on_request(&mut msg).unwrap();
        assert_eq!(testing::serialize(&msg), text, "{ct}");
    }
    // No Content-Type: not SDP (Kamailio's parse_sdp refuses it as well).
    let text = format!(
        "{INVITE_HEAD}Content-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    );
    let mut msg = testing::request(&text);
    ops.on_request(&mut msg).unwrap();
    assert_eq!(testing::serialize(&msg), text);
    // No body.
    let text = format!("{INVITE_HEAD}Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n");
    let mut msg = testing::request(&text);
    ops.on_request(&mut msg).unwrap();
    assert_eq!(testing::serialize(&msg), text);
    assert!(testing::logs().is_empty());
}

// === multipart ===

/// An INVITE body with SDP and an ISUP-like part, as SIP-I gateways send.
fn multipart_body(eol: &str) -> String {
    let sdp = OFFER.replace("\r\n", eol);
    format!(
        "preamble{eol}--unique-boundary-1{eol}Content-Type: application/sdp{eol}{eol}{sdp}{eol}\
--unique-boundary-1{eol}Content-Type: application/ISUP; version=itu-t92+{eol}\
Content-Disposition: signal; handling=optional{eol}{eol}\u{1}\u{2}m=video 1 RTP/AVP 0{eol}\
--unique-boundary-1--{eol}epilogue{eol}"
    )
}

#[test]
fn multipart_bodies_are_left_alone_by_default() {
    let ops = module(json!({ "remove_media": ["video"] }));
    let text = invite_with(
        "multipart/mixed;boundary=unique-boundary-1",
        &multipart_body("\r\n"),
    );
    let mut msg = testing::request(&text);
    ops.on_request(&mut msg).unwrap();
    assert_eq!(testing::serialize(&msg), text);
    assert!(testing::logs().is_empty());
}

#[test]
fn multipart_edits_only_the_sdp_part_and_keeps_the_boundaries() {
    for eol in ["\r\n", "\n"] {
        let ops = module(json!({
            "keep_codecs_by_name": ["PCMA", "GSM"],
            "remove_media": ["video"],
            "multipart": true,
        }));
        let text = invite_with(
            "multipart/mixed; boundary=\"unique-boundary-1\"",
            &multipart_body(eol),
        );
        let mut msg = testing::request(&text);
        ops.on_request(&mut msg).unwrap();
        let expected = multipart_body(eol).replace(
            &OFFER.replace("\r\n", eol),
            &OFFER_MOBILE.replace("\r\n", eol),
        );
        assert_ne!(expected, multipart_body(eol));
        assert_eq!(body(&msg), expected, "{eol:?}");
        assert!(
            testing::serialize(&msg).contains(&format!("Content-Length: {}\r\n", expected.len()))
        );
    }
}

#[test]
fn broken_multipart_is_left_alone_and_logged() {
    let ops = module(json!({ "remove_media": ["video"], "multipart": true }));
    let unclosed = multipart_body("\r\n").replace("--unique-boundary-1--", "--unique-boundary-1");
    for (ct, b, why) in [
        (
            "multipart/mixed",
            multipart_body("\r\n"),
            "without a boundary",
        ),
        (
            "multipart/mixed;boundary=other",
            multipart_body("\r\n"),
            "without a delimiter",
        ),
        (
            "multipart/mixed;boundary=unique-boundary-1",
            unclosed,
            "without a close delimiter",
        ),
        (
            "multipart/mixed;boundary=unique-boundary-1",
            multipart_body("\r\n").replace("c=IN IP4 10.20.30.40", "c=IN"),
            "part 1: line 4",
        ),
    ] {
        let text = invite_with(ct, &b);
        let mut msg = testing::request(&text);
        ops.on_request(&mut msg).unwrap();
        assert_eq!(testing::serialize(&msg), text);
        let logs = testing::take_logs();
        assert_eq!(logs.len(), 1, "{ct}: {logs:?}");
        assert!(logs[0].message.contains(why), "{}", logs[0].message);
    }
}

// === malformed SDP ===

#[test]
fn malformed_sdp_is_left_unchanged_and_logged_once() {
    let base = OFFER;
    let cases = [
        (base.replace("v=0\r\n", ""), "no v= line"),
        (base.replace("o=alice", "x=alice"), "no o= line"),
        (base.replace("m=", "x="), "no m= line"),
        (
            base.replace("c=IN IP4 10.20.30.40\r\n", ""),
            "line 5: stream without a c= line",
        ),
        (
            base.replace("c=IN IP4 10.20.30.40", "c=IN IPX 10.20.30.40"),
            "line 4: c= line",
        ),
        (
            base.replace("m=video 49172 RTP/AVP 96 97", "m=video 49172"),
            "line 14: m= line",
        ),
        (
            base.replace("m=audio 49170", "m=audio x49170"),
            "line 6: m= line",
        ),
        ("hello".to_string(), "no v= line"),
    ];
    for (sdp, why) in cases {
        let ops = module(json!({ "keep_codecs_by_name": ["PCMA"], "remove_media": ["video"] }));
        let text = invite(&sdp);
        let mut msg = testing::request(&text);
        assert_eq!(ops.on_request(&mut msg).unwrap(), Verdict::Continue);
        assert_eq!(testing::serialize(&msg), text, "{why}");
        let logs = testing::take_logs();
        assert_eq!(logs.len(), 1, "{why}: {logs:?}");
        assert_eq!(logs[0].level, Level::Warn);
        assert!(logs[0].message.contains(why), "{why}: {}", logs[0].message);
        assert!(logs[0]
            .message
            .contains("INVITE (Call-ID a84b4c76e66710@10.20.30.40)"));
        assert!(!logs[0].message.contains("a=rtpmap"), "no body in the log");
    }
}

#[test]
fn a_malformed_reply_is_logged_with_its_status() {
    let ops = module(json!({ "remove_media": ["video"] }));
    let mut msg = testing::reply(&ok_200("v=0\r\n"));
    ops.on_reply(&mut msg).unwrap();
    let logs = testing::take_logs();
    assert!(
        logs[0].message.starts_with("sdpops: 200 reply to INVITE"),
        "{}",
        logs[0].message
    );
}

#[test]
fn a_media_stream_with_its_own_c_line_needs_no_session_c_line() {
    let out = edit(json!({ "remove_media": ["video"] }), WEBRTC);
    assert_eq!(m_lines(&out).len(), 1);
    // ...but the stream without one then makes the SDP malformed.
    let sdp = WEBRTC.replacen("c=IN IP4 0.0.0.0\r\n", "", 1);
    assert_eq!(edit(json!({ "remove_media": ["video"] }), &sdp), sdp);
}

#[test]
fn a_non_utf8_body_is_edited_byte_for_byte() {
    let ops = module(json!({ "remove_media": ["video"] }));
    let mut msg = testing::request(&invite(OFFER));
    // A Latin-1 session name, as some phones send.
    let at = OFFER.find("s=-").unwrap() + 2;
    let mut raw = OFFER.as_bytes().to_vec();
    raw.splice(at..at + 1, *b"Caf\xe9 \xff");
    msg.set_body(&raw).unwrap();
    ops.on_request(&mut msg).unwrap();
    let out = msg.body();
    assert!(out.windows(10).any(|w| w == b"s=Caf\xe9 \xff\r\n"));
    assert!(!out.windows(8).any(|w| w == b"m=video "));
}

// === apply_to ===

#[test]
fn apply_to_selects_the_hooks() {
    let cases = [
        ("requests", true, false),
        ("replies", false, true),
        ("both", true, true),
    ];
    for (apply_to, requests, replies) in cases {
        let ops = module(json!({ "remove_media": ["video"], "apply_to": apply_to }));
        let mut req = testing::request(&invite(OFFER));
        ops.on_request(&mut req).unwrap();
        assert_eq!(body(&req) != OFFER, requests, "{apply_to} request");
        let mut rep = testing::reply(&ok_200(OFFER));
        ops.on_reply(&mut rep).unwrap();
        assert_eq!(body(&rep) != OFFER, replies, "{apply_to} reply");
    }
}

#[test]
fn no_params_is_a_no_op() {
    let ops = module(json!({}));
    let text = invite(OFFER);
    let mut msg = testing::request(&text);
    ops.on_request(&mut msg).unwrap();
    assert_eq!(testing::serialize(&msg), text);
}

// === config errors ===

#[test]
fn bad_config_is_refused_with_the_param_named() {
    let cases = [
        (
            json!({ "keep_codecs_by_name": [] }),
            "keep_codecs_by_name: the list is empty",
        ),
        (
            json!({ "keep_codecs_by_id": [] }),
            "keep_codecs_by_id: the list is empty",
        ),
        (
            json!({ "keep_codecs_by_name": ["PCMA,GSM"] }),
            "keep_codecs_by_name: `PCMA,GSM` is not",
        ),
        (
            json!({ "remove_codecs_by_name": ["PCMA/8000"] }),
            "remove_codecs_by_name: `PCMA/8000` is not",
        ),
        (
            json!({ "remove_codecs_by_name": [""] }),
            "remove_codecs_by_name: `` is not",
        ),
        (
            json!({ "remove_codecs_by_id": [128] }),
            "remove_codecs_by_id: 128 is not an RTP payload type",
        ),
        (
            json!({ "keep_codecs_by_id": [-1] }),
            "keep_codecs_by_id: -1 is not",
        ),
        (json!({ "media_type": "" }), "media_type: `` is not"),
        (
            json!({ "remove_media": ["vid eo"] }),
            "remove_media: `vid eo` is not",
        ),
        (
            json!({ "remove_transport": [""] }),
            "remove_transport: `` is not",
        ),
        (
            json!({ "remove_line_prefix": ["candidate"] }),
            "remove_line_prefix: `candidate` cannot match",
        ),
        (
            json!({ "remove_line_prefix": ["a"] }),
            "remove_line_prefix: `a` cannot match",
        ),
        (
            json!({ "remove_line_prefix": ["=a"] }),
            "remove_line_prefix: `=a` cannot match",
        ),
    ];
    for (params, want) in cases {
        let err = testing::init_err::<SdpOps>(params.clone());
        assert!(err.starts_with(want), "{params}: {err}");
    }
    let err = testing::init_err::<SdpOps>(json!({ "keep_codecs": ["PCMA"] }));
    assert!(
        err.starts_with("param `keep_codecs`: unknown field"),
        "{err}"
    );
    let err = testing::init_err::<SdpOps>(json!({ "apply_to": "all" }));
    assert!(
        err.starts_with("param `apply_to`: unknown variant"),
        "{err}"
    );
    let err = testing::init_err::<SdpOps>(json!({ "remove_codecs_by_id": ["8"] }));
    assert!(err.starts_with("param `remove_codecs_by_id"), "{err}");
    let err = testing::init_err::<SdpOps>(json!({ "multipart": "yes" }));
    assert!(err.starts_with("param `multipart`: invalid type"), "{err}");
}

// === properties ===

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Configs that exercise every step.
fn property_configs() -> Vec<JsonValue> {
    vec![
        json!({ "keep_codecs_by_name": ["PCMA", "GSM"], "remove_media": ["video"] }),
        json!({ "keep_codecs_by_name": ["opus", "telephone-event"], "media_type": "audio" }),
        json!({ "remove_codecs_by_name": ["telephone-event", "H264", "PCMU"] }),
        json!({ "remove_codecs_by_id": [0, 96, 101], "keep_codecs_by_id": [8, 96, 9] }),
        json!({ "remove_transport": ["RTP/SAVP"], "remove_line_prefix": ["a=ice-", "a=candidate", "c="] }),
        json!({ "remove_line_prefix": ["m="], "media_type": "video", "multipart": true }),
    ]
}

/// Splits into lines without their ends.
fn plain_lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    if v.last().is_some_and(|l| l.is_empty()) {
        v.pop();
    }
    v.into_iter()
        .map(|l| l.strip_suffix(b"").unwrap_or(l))
        .collect()
}

/// The output only deletes: its lines are a subsequence of the input's, where an
/// `m=` line may have lost payload types.
fn only_deletes(input: &[u8], output: &[u8]) -> bool {
    let inp = plain_lines(input);
    let mut i = 0;
    for line in plain_lines(output) {
        loop {
            let Some(&cand) = inp.get(i) else {
                return false;
            };
            i += 1;
            let same = cand == line
                || (line.starts_with(b"m=") && cand.starts_with(b"m=") && cand.len() > line.len());
            if same {
                break;
            }
        }
    }
    true
}

#[test]
fn random_and_mutated_bodies_never_panic_and_only_delete() {
    let ops: Vec<SdpOps> = property_configs().into_iter().map(module).collect();
    let corpus = [OFFER, LINPHONE, WEBRTC, DESK_PHONE_LF];
    let tokens: [&[u8]; 14] = [
        b"\r\n",
        b"\n",
        b"",
        b"m=",
        b"c=IN IP4 1.2.3.4",
        b" ",
        b"a=rtpmap:",
        b"0",
        b"101",
        b"/",
        b"v=0",
        b"o=- 1 1 IN IP4 x",
        b"\xff",
        b"--b",
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut edited = 0;
    for round in 0..6000 {
        let mut body: Vec<u8> = if round % 5 == 4 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            corpus[rng.below(corpus.len())].as_bytes().to_vec()
        };
        for _ in 0..rng.below(8) {
            let at = rng.below(body.len() + 1);
            match rng.below(4) {
                0 => {
                    let t = tokens[rng.below(tokens.len())];
                    body.splice(at..at, t.iter().copied());
                }
                1 => {
                    let end = (at + rng.below(40)).min(body.len());
                    body.drain(at..end);
                }
                2 => {
                    if let Some(b) = body.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
                _ => body.truncate(at),
            }
        }
        let ct = if round % 7 == 0 {
            "multipart/mixed;boundary=b"
        } else {
            "application/sdp"
        };
        let m = &ops[rng.below(ops.len())];
        let mut msg = testing::request(&invite_with(ct, ""));
        msg.set_body(&body).unwrap();
        assert_eq!(m.on_request(&mut msg).unwrap(), Verdict::Continue);
        let out = msg.body();
        if out != body {
            edited += 1;
            if ct == "application/sdp" {
                assert!(
                    only_deletes(&body, &out),
                    "round {round}: {:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        testing::take_logs();
    }
    assert!(
        edited > 1000,
        "the mutations should still leave many editable bodies: {edited}"
    );
}

#[test]
fn real_world_offers_are_edited_idempotently() {
    for params in property_configs() {
        for sdp in [OFFER, LINPHONE, WEBRTC, DESK_PHONE_LF] {
            let once = edit(params.clone(), sdp);
            let twice = edit(params.clone(), &once);
            assert_eq!(once, twice, "{params}");
            assert!(only_deletes(sdp.as_bytes(), once.as_bytes()), "{params}");
        }
    }
}

// === cost ===

/// Indicative native cost of `on_request` for the README INVITE (mobile profile):
/// `cargo test --release -p sdpops -- --ignored --nocapture on_request_cost`.
#[test]
#[ignore = "timing, run by hand"]
fn on_request_cost() {
    use std::time::Instant;
    const N: usize = 100_000;
    let ops = module(json!({ "keep_codecs_by_name": ["PCMA", "GSM"], "remove_media": ["video"] }));
    let text = invite(OFFER);
    let template = testing::request(&text);
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let mut msg = testing::request(&text);
        let start = Instant::now();
        let v = ops.on_request(&mut msg);
        times.push(start.elapsed().as_nanos());
        assert!(matches!(v, Ok(Verdict::Continue)));
    }
    drop(template);
    report("on_request", &mut times);

    // The editor alone (parse, apply, write), without the harness's header and body
    // copies.
    let ops = super::sdp::Ops {
        keep_names: Some(vec!["PCMA".into(), "GSM".into()]),
        remove_media: vec!["video".into()],
        ..Default::default()
    };
    times.clear();
    for _ in 0..N {
        let start = Instant::now();
        let mut sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        sdp.apply(&ops);
        let out = sdp.to_bytes();
        times.push(start.elapsed().as_nanos());
        assert_eq!(out.len(), OFFER_MOBILE.len());
    }
    report("SDP editor", &mut times);
}

fn report(what: &str, times: &mut [u128]) {
    times.sort_unstable();
    let n = times.len();
    let pct = |p: usize| times[(n * p / 100).min(n - 1)];
    println!(
        "sdpops {what} over {n} INVITEs: median {} ns, p90 {} ns, p99 {} ns",
        pct(50),
        pct(90),
        pct(99)
    );
}
