use weir_sdk::testing::{self, json};
use weir_sdk::{EditError, Message, Module, Verdict};

use super::HeaderOps;

/// A mobile-link INVITE as a UE sends it (also the README example).
const MOBILE_INVITE: &str = "INVITE sip:+4930123456@ims.example.net;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK-524287-1-abc;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:pcscf.ims.example.net;lr>\r\n\
Contact: <sip:alice@10.20.30.40:5060>;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\"\r\n\
To: <sip:+4930123456@ims.example.net;user=phone>\r\n\
From: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@10.20.30.40\r\n\
CSeq: 1 INVITE\r\n\
User-Agent: ExamplePhone/2.1\r\n\
Supported: 100rel, timer\r\n\
Session-Expires: 1800\r\n\
Allow: INVITE, ACK, CANCEL, BYE, UPDATE\r\n\
P-Preferred-Identity: <sip:alice@ims.example.net>\r\n\
P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=2620100000000001\r\n\
X-Debug-Trace: 7f3a\r\n\
x-carrier-hint: lab\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 125\r\n\
\r\n\
v=0\r\n\
o=- 3785 3785 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 49152 RTP/AVP 96\r\n\
a=rtpmap:96 AMR-WB/16000\r\n";

/// The same INVITE after the README's chain entry.
const MOBILE_INVITE_AFTER: &str = "INVITE sip:+4930123456@ims.example.net;user=phone SIP/2.0\r\n\
v: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK-524287-1-abc;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:pcscf.ims.example.net;lr>\r\n\
m: <sip:alice@10.20.30.40:5060>;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\"\r\n\
t: <sip:+4930123456@ims.example.net;user=phone>\r\n\
f: <sip:alice@ims.example.net>;tag=a73kszlfl\r\n\
i: 1j9FpLxk3uxtm8tn@10.20.30.40\r\n\
CSeq: 1 INVITE\r\n\
User-Agent: ExamplePhone/2.1\r\n\
c: application/sdp\r\n\
l: 125\r\n\
X-Weir: mobile\r\n\
\r\n\
v=0\r\n\
o=- 3785 3785 IN IP4 10.20.30.40\r\n\
s=-\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 49152 RTP/AVP 96\r\n\
a=rtpmap:96 AMR-WB/16000\r\n";

/// Compact and long forms mixed, duplicates, and a few extension headers.
const MIXED: &str = "MESSAGE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: 77@192.0.2.1\r\n\
CSeq: 2 MESSAGE\r\n\
m: <sip:alice@192.0.2.1>\r\n\
Contact: <sip:alice@198.51.100.7>\r\n\
s: hello\r\n\
k: path\r\n\
User-Agent: Test/1.0\r\n\
X-Foo: 1\r\n\
Proxy-Require: foo\r\n\
P-Asserted-Identity: <sip:alice@example.com>\r\n\
c: text/plain\r\n\
l: 2\r\n\
\r\n\
hi";

fn module(params: weir_sdk::testing::JsonValue) -> HeaderOps {
    match testing::init::<HeaderOps>(params) {
        Ok(m) => m,
        Err(e) => panic!("init failed: {e}"),
    }
}

fn run(params: weir_sdk::testing::JsonValue, text: &str) -> Message<'static> {
    let ops = module(params);
    let mut msg = testing::request(text);
    assert_eq!(ops.on_request(&mut msg).unwrap(), Verdict::Continue);
    msg
}

/// The header names in order, joined by spaces.
fn names(msg: &Message) -> String {
    msg.header_names().join(" ")
}

#[test]
fn readme_example_mobile_invite() {
    let msg = run(
        json!({
            "keep": ["User-Agent"],
            "remove_prefix": ["X-", "P-"],
            "append": ["X-Weir: mobile"],
            "compact": true,
        }),
        MOBILE_INVITE,
    );
    assert_eq!(testing::serialize(&msg), MOBILE_INVITE_AFTER);
    assert!(testing::logs().is_empty());
}

#[test]
fn no_params_is_a_no_op() {
    let msg = run(json!({}), MIXED);
    assert_eq!(testing::serialize(&msg), MIXED);
}

#[test]
fn remove_takes_every_line_and_both_forms() {
    let msg = run(json!({ "remove": ["Contact", "subject", "K"] }), MIXED);
    assert_eq!(
        names(&msg),
        "v Via f t i CSeq User-Agent X-Foo Proxy-Require P-Asserted-Identity c l"
    );
    // A compact name in the config removes long-form lines too.
    let msg = run(json!({ "remove": ["m"] }), MOBILE_INVITE);
    assert!(!msg.has_header("Contact"));
}

#[test]
fn remove_prefix_is_case_insensitive_and_sees_both_forms() {
    let msg = run(json!({ "remove_prefix": ["x-", "P-"] }), MOBILE_INVITE);
    assert_eq!(
        names(&msg),
        "Via Max-Forwards Route Contact To From Call-ID CSeq User-Agent Supported \
         Session-Expires Allow Content-Type Content-Length"
    );
    // `P-` is a prefix of `P-Asserted-Identity`, not of `Proxy-Require`.
    let msg = run(json!({ "remove_prefix": ["P-"] }), MIXED);
    assert!(msg.has_header("Proxy-Require"));
    assert!(!msg.has_header("P-Asserted-Identity"));
    // `Sub` matches Subject even when spelled `s:`.
    let msg = run(json!({ "remove_prefix": ["Sub"] }), MIXED);
    assert!(!msg.has_header("Subject"));
}

#[test]
fn keep_removes_everything_else_but_the_always_kept_set() {
    // Always kept, in whichever form they are spelled.
    let msg = run(json!({ "keep": [] }), MIXED);
    assert_eq!(names(&msg), "v Via f t i CSeq m Contact c l");
    let msg = run(json!({ "keep": [] }), MOBILE_INVITE);
    assert_eq!(
        names(&msg),
        "Via Max-Forwards Route Contact To From Call-ID CSeq Content-Type Content-Length"
    );
    let msg = run(
        json!({ "keep": [] }),
        "BYE sip:a@b SIP/2.0\r\nRecord-Route: <sip:p1;lr>\r\nX-A: 1\r\nCSeq: 3 BYE\r\n\r\n",
    );
    assert_eq!(names(&msg), "Record-Route CSeq");
}

#[test]
fn keep_list_uses_compact_equivalence() {
    // `Subject` keeps `s:`, `k` keeps `Supported` spelled `k:`, names ignore case.
    let msg = run(json!({ "keep": ["Subject", "k", "user-agent"] }), MIXED);
    assert_eq!(names(&msg), "v Via f t i CSeq m Contact s k User-Agent c l");
}

#[test]
fn keep_regex_is_unanchored_and_case_insensitive() {
    // `AGENT` matches inside `User-Agent`; `^x-` only at the start.
    let msg = run(json!({ "keep_regex": "AGENT|^x-" }), MIXED);
    assert_eq!(
        names(&msg),
        "v Via f t i CSeq m Contact User-Agent X-Foo c l"
    );
    // The regex also sees the long form of a compact header.
    let msg = run(json!({ "keep_regex": "^subject$" }), MIXED);
    assert!(msg.has_header("Subject"));
    assert!(!msg.has_header("Supported"));
    // A list and a regex together keep the union.
    let msg = run(
        json!({ "keep": ["Supported"], "keep_regex": "^proxy-" }),
        MIXED,
    );
    assert_eq!(
        names(&msg),
        "v Via f t i CSeq m Contact k Proxy-Require c l"
    );
}

#[test]
fn append_adds_after_the_last_header() {
    let msg = run(
        json!({ "append": ["X-Weir: mobile", "X-Empty:", "Subject:  spaced  "] }),
        MIXED,
    );
    let headers = msg.headers();
    let tail: Vec<String> = headers[headers.len() - 3..]
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(tail, ["X-Weir: mobile", "X-Empty: ", "Subject: spaced"]);
}

#[test]
fn append_runs_after_the_removal_steps() {
    let msg = run(
        json!({ "remove_prefix": ["X-"], "keep": [], "append": ["X-Weir: 1"] }),
        MIXED,
    );
    assert_eq!(msg.header("X-Weir").as_deref(), Some("1"));
    assert!(!msg.has_header("X-Foo"));
}

#[test]
fn compact_rewrites_every_header_with_a_compact_form() {
    let long = "NOTIFY sip:a@b SIP/2.0\r\n\
Via: v1\r\nCall-ID: i1\r\nContact: m1\r\nContent-Encoding: e1\r\nContent-Length: 0\r\n\
Content-Type: c1\r\nFrom: f1\r\nSubject: s1\r\nSupported: k1\r\nTo: t1\r\nEvent: o1\r\n\
Allow-Events: u1\r\nRefer-To: r1\r\nReferred-By: b1\r\nSession-Expires: x1\r\nIdentity: y1\r\n\
Accept-Contact: a1\r\nReject-Contact: j1\r\nRequest-Disposition: d1\r\n\
CSeq: 1 NOTIFY\r\nMax-Forwards: 70\r\nIdentity-Info: n1\r\nVIA: v2\r\n\r\n";
    let msg = run(json!({ "compact": true }), long);
    // CSeq and Max-Forwards have no compact form; Identity-Info's `n` is obsolete and
    // not used.
    assert_eq!(
        names(&msg),
        "v i m e l c f s k t o u r b x y a j d CSeq Max-Forwards Identity-Info v"
    );
    // Values are kept, and every line of a header is renamed.
    assert_eq!(msg.header_values("Via"), ["v1", "v2"]);
    assert_eq!(msg.header("d").as_deref(), Some("d1"));
}

#[test]
fn compact_covers_appended_headers_and_is_idempotent() {
    let params = json!({ "append": ["Subject: hi"], "compact": true });
    let msg = run(params, MIXED);
    assert!(names(&msg).ends_with(" s"));
    let again = run(json!({ "compact": true }), &testing::serialize(&msg));
    assert_eq!(testing::serialize(&again), testing::serialize(&msg));
}

#[test]
fn apply_to_selects_requests_replies_or_both() {
    let reply_text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Foo: 1\r\nCSeq: 1 INVITE\r\n\r\n";
    let request_text = "OPTIONS sip:a@b SIP/2.0\r\nX-Foo: 1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    for (apply_to, edits_requests, edits_replies) in [
        (None, true, false),
        (Some("requests"), true, false),
        (Some("replies"), false, true),
        (Some("both"), true, true),
    ] {
        let mut params = json!({ "remove": ["X-Foo"] });
        if let Some(a) = apply_to {
            params["apply_to"] = json!(a);
        }
        let ops = module(params);
        let mut req = testing::request(request_text);
        let mut rep = testing::reply(reply_text);
        assert_eq!(ops.on_request(&mut req).unwrap(), Verdict::Continue);
        assert_eq!(ops.on_reply(&mut rep).unwrap(), Verdict::Continue);
        assert_eq!(!req.has_header("X-Foo"), edits_requests, "{apply_to:?}");
        assert_eq!(!rep.has_header("X-Foo"), edits_replies, "{apply_to:?}");
    }
}

#[test]
fn refused_edits_are_logged_and_returned() {
    let ops = module(json!({ "append": ["X-Weir: mobile"] }));
    let mut msg = testing::request(MIXED);
    testing::set_max_size(&mut msg, MIXED.len());
    let err = ops.on_request(&mut msg).unwrap_err();
    assert_eq!(err.downcast_ref::<EditError>(), Some(&EditError::TooLarge));
    assert!(
        err.to_string().starts_with("header-ops: append `X-Weir`"),
        "{err}"
    );
    let logs = testing::take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, weir_sdk::log::Level::Error);
}

#[test]
fn config_errors_name_the_problem() {
    let cases = [
        (
            json!({ "remove": ["Via"] }),
            "remove: `Via` is owned by the host",
        ),
        (
            json!({ "remove": ["l"] }),
            "remove: `l` is owned by the host",
        ),
        (
            json!({ "remove": ["call-id"] }),
            "remove: `call-id` is owned by the host",
        ),
        (
            json!({ "remove": ["X Foo"] }),
            "remove: `X Foo` is not a valid header name",
        ),
        (
            json!({ "remove_prefix": ["C"] }),
            "remove_prefix: `C` would remove `Content-Length`",
        ),
        (
            json!({ "remove_prefix": ["v"] }),
            "remove_prefix: `v` would remove `Via`",
        ),
        (
            json!({ "remove_prefix": ["i"] }),
            "remove_prefix: `i` would remove `i`",
        ),
        (
            json!({ "remove_prefix": [""] }),
            "remove_prefix: `` is not a valid header name",
        ),
        (
            json!({ "keep": ["Bad:Name"] }),
            "keep: `Bad:Name` is not a valid header name",
        ),
        (
            json!({ "keep_regex": "(" }),
            "keep_regex: `(` does not compile",
        ),
        (
            json!({ "append": ["X-Weir mobile"] }),
            "append: `X-Weir mobile`: expected `Name: value`",
        ),
        (
            json!({ "append": ["Via: SIP/2.0/UDP x"] }),
            "append: `Via: SIP/2.0/UDP x`: the header is owned by the host",
        ),
        (
            json!({ "append": [": x"] }),
            "append: `: x`: invalid header name",
        ),
        (
            json!({ "keep": "User-Agent" }),
            "param `keep`: invalid type: string",
        ),
        (
            json!({ "apply_to": "sometimes" }),
            "param `apply_to`: unknown variant `sometimes`",
        ),
        (
            json!({ "compact": 1 }),
            "param `compact`: invalid type: integer",
        ),
        (
            json!({ "remov": ["X"] }),
            "param `remov`: unknown field `remov`",
        ),
    ];
    for (params, expected) in cases {
        let err = testing::init_err::<HeaderOps>(params.clone());
        assert!(
            err.starts_with(expected),
            "{params}: got {err:?}, want {expected:?}"
        );
    }
}

#[test]
fn valid_configs_are_accepted() {
    // Route and Max-Forwards may be removed: only the host-owned four are refused.
    module(json!({ "remove": ["Route", "Max-Forwards", "m"] }));
    module(
        json!({ "remove_prefix": ["X-", "P-", "Proxy-"], "keep": ["User-Agent"], "keep_regex": "^x-", "compact": false, "apply_to": "both" }),
    );
}
