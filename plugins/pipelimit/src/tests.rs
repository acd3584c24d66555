use std::time::Duration;

use weir_sdk::log::Level;
use weir_sdk::system::Load;
use weir_sdk::testing::{self, json, JsonValue};
use weir_sdk::{kv, Address, KvError, Message, Module, Reply, Verdict};

use super::algo::{self, PidGains, PidState};
use super::fields::{digest_param, has_tag, name_addr_uri, uri_host, uri_user};
use super::PipeLimit;

/// The README's INVITE.
const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: 1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060>\r\n\
Content-Length: 0\r\n\
\r\n";

const IN_DIALOG_BYE: &str = "BYE sip:bob@192.0.2.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-2\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b2\r\n\
Call-ID: 1@192.0.2.1\r\n\
CSeq: 2 BYE\r\n\
\r\n";

fn request(method: &str) -> Message<'static> {
    testing::request(&INVITE.replace("INVITE", method))
}

fn from(user: &str) -> Message<'static> {
    testing::request(&INVITE.replace(
        "sip:alice@example.com>",
        &format!("sip:{user}@example.com>"),
    ))
}

/// A module with one pipe `p` of `algorithm`/`limit`, a 1 s window and `extra` params.
fn module(algorithm: &str, limit: i64, extra: JsonValue) -> PipeLimit {
    let mut params = json!({
        "timer_interval": 1,
        "pipes": { "p": { "algorithm": algorithm, "limit": limit } },
    });
    if let (Some(p), JsonValue::Object(extra)) = (params.as_object_mut(), extra) {
        for (k, v) in extra {
            p.insert(k, v);
        }
    }
    testing::init(params).unwrap()
}

fn is_pass(v: &Verdict) -> bool {
    *v == Verdict::Continue
}

/// Send `n` requests built by `make`; how many passed.
fn passed(m: &PipeLimit, n: usize, make: impl Fn() -> Message<'static>) -> usize {
    (0..n)
        .filter(|_| is_pass(&m.on_request(&mut make()).unwrap()))
        .count()
}

fn retry_after(v: &Verdict) -> u32 {
    match v {
        Verdict::Reply(Reply { headers, .. }) => headers
            .iter()
            .find(|h| h.name == "Retry-After")
            .map(|h| h.value.parse().unwrap())
            .expect("a Retry-After header"),
        other => panic!("not a reply: {other:?}"),
    }
}

fn next_window() {
    testing::advance(Duration::from_secs(1));
}

// === TAILDROP ===

#[test]
fn taildrop_passes_the_limit_then_replies_503_until_the_window_ends() {
    let m = module("TAILDROP", 3, json!({}));
    for _ in 0..3 {
        assert_eq!(
            m.on_request(&mut request("INVITE")).unwrap(),
            Verdict::Continue
        );
    }
    let v = m.on_request(&mut request("INVITE")).unwrap();
    let Verdict::Reply(reply) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(
        (reply.code, reply.reason.as_str()),
        (503, "Server Unavailable")
    );
    assert!((10..=309).contains(&retry_after(&v)));
    // Drops count too (Kamailio increments before it compares).
    assert!(!is_pass(&m.on_request(&mut request("INVITE")).unwrap()));
    assert_eq!(
        kv::get_string("p:1700000000:all").unwrap().as_deref(),
        Some("5")
    );
    // One warning per window and instance.
    let logs = testing::take_logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, Level::Warn);
    assert!(
        logs[0]
            .message
            .contains("pipe `p` over its limit for `all` (TAILDROP, 3 per 1 s)"),
        "{}",
        logs[0].message
    );

    // A new window starts from 0.
    next_window();
    assert_eq!(passed(&m, 5, || request("INVITE")), 3);
    assert_eq!(testing::take_logs().len(), 1);
}

#[test]
fn the_window_follows_timer_interval_and_counters_expire() {
    let m: PipeLimit = testing::init(json!({
        "pipes": { "p": { "algorithm": "TAILDROP", "limit": 2 } },
    }))
    .unwrap();
    // Default interval: 10 s. The mock clock starts on a 10 s boundary.
    assert_eq!(passed(&m, 4, || request("INVITE")), 2);
    testing::advance(Duration::from_millis(9_999));
    assert_eq!(passed(&m, 1, || request("INVITE")), 0);
    testing::advance(Duration::from_millis(1));
    assert_eq!(passed(&m, 4, || request("INVITE")), 2);
    // Old counters expire after two windows and a second.
    assert!(kv::get("p:170000000:all").unwrap().is_some());
    testing::advance(Duration::from_secs(11));
    assert!(kv::get("p:170000000:all").unwrap().is_none());
}

#[test]
fn instances_share_the_counters() {
    let a = module("TAILDROP", 4, json!({}));
    let b = module("TAILDROP", 4, json!({}));
    assert_eq!(passed(&a, 3, || request("INVITE")), 3);
    assert_eq!(passed(&b, 3, || request("INVITE")), 1);
}

// === RED ===

#[test]
fn red_load_is_the_previous_window_over_the_limit() {
    assert_eq!(algo::red_load(0, 10), 0);
    assert_eq!(algo::red_load(19, 10), 1);
    assert_eq!(algo::red_load(20, 10), 2);
    assert_eq!(algo::red_load(35, 10), 3);
    assert_eq!(algo::red_load(-5, 10), 0);
    assert_eq!(algo::red_load(5, 0), 0);
    // Load 0 and 1 pass everything; load n passes every n-th.
    assert!((1..50).all(|c| algo::red_passes(c, 0) && algo::red_passes(c, 1)));
    let pattern: Vec<bool> = (1..=6).map(|c| algo::red_passes(c, 3)).collect();
    assert_eq!(pattern, [false, false, true, false, false, true]);
}

#[test]
fn red_drops_only_after_a_window_of_twice_the_limit() {
    let m = module("RED", 2, json!({}));
    // No previous window: everything passes, however many.
    assert_eq!(passed(&m, 3, || request("INVITE")), 3);
    // Previous 3 < 2*2: load 1, everything passes.
    next_window();
    assert_eq!(passed(&m, 5, || request("INVITE")), 5);
    // Previous 5: load 2, every second passes (counts 2, 4, 6).
    next_window();
    let pattern: Vec<bool> = (0..6)
        .map(|_| is_pass(&m.on_request(&mut request("INVITE")).unwrap()))
        .collect();
    assert_eq!(pattern, [false, true, false, true, false, true]);
    // Previous 6: load 3, counts 3 and 6 pass.
    next_window();
    assert_eq!(passed(&m, 6, || request("INVITE")), 2);
    // A quiet window: the load falls back to 0.
    next_window();
    next_window();
    assert_eq!(passed(&m, 6, || request("INVITE")), 6);
}

#[test]
fn red_reads_the_previous_window_once_per_window() {
    let m = module("RED", 1, json!({}));
    assert_eq!(passed(&m, 4, || request("INVITE")), 4);
    next_window();
    // The first request reads the load (4) ...
    assert!(!is_pass(&m.on_request(&mut request("INVITE")).unwrap()));
    // ... and later ones use the cached value, so deleting it changes nothing.
    assert!(kv::delete("p:1700000000:all").unwrap());
    let pattern: Vec<bool> = (0..3)
        .map(|_| is_pass(&m.on_request(&mut request("INVITE")).unwrap()))
        .collect();
    assert_eq!(pattern, [false, false, true]);
}

// === NETWORK ===

#[test]
fn network_limits_on_the_bytes_queued_and_never_touches_the_store() {
    let m = module("NETWORK", 10_000, json!({}));
    // A store that fails would show: NETWORK does not count.
    testing::fail_kv(Some(KvError::Backend("down".into())));
    assert!(is_pass(&m.on_request(&mut request("INVITE")).unwrap()));
    testing::set_load(Load {
        cpu: 0.0,
        rx_queue_bytes: 10_000,
    });
    assert!(is_pass(&m.on_request(&mut request("INVITE")).unwrap()));
    testing::set_load(Load {
        cpu: 0.0,
        rx_queue_bytes: 10_001,
    });
    assert!(!is_pass(&m.on_request(&mut request("INVITE")).unwrap()));
    assert!(testing::logs()
        .iter()
        .all(|l| !l.message.contains("store failed")));
    assert!(testing::logs()[0]
        .message
        .contains("(NETWORK, 10000 queued bytes)"));
}

// === FEEDBACK ===

#[test]
fn pid_step_follows_kamailio() {
    // Loads and setpoints exact in binary, so the whole-percent cuts are exact too.
    let gains = PidGains::default();
    assert_eq!((gains.kp, gains.ki, gains.kd), (0.0, -25.0, 0.0));
    // Below the setpoint from the start: no credit builds up, nothing drops.
    let s = PidState::default().step(gains, 0.75, 0.5, 1);
    assert_eq!((s.int_err, s.drop_rate, s.window), (0.0, 0, 1));
    // Over it: the integral goes negative and ki * integral drops a share.
    let s = s.step(gains, 0.75, 0.875, 2);
    assert_eq!(s.int_err, -0.125);
    assert_eq!(s.drop_rate, 3); // 3.125 cut to a whole percent
    let s = s.step(gains, 0.75, 0.875, 3);
    assert_eq!((s.int_err, s.drop_rate), (-0.25, 6));
    // Back under: the integral shrinks again while it is negative.
    let s = s.step(gains, 0.75, 0.625, 4);
    assert_eq!((s.int_err, s.drop_rate), (-0.125, 3));
    let s = s.step(gains, 0.75, 0.5, 5);
    assert_eq!((s.int_err, s.drop_rate), (0.125, 0));
    // ... and stops growing once it is positive and the error too.
    let s = s.step(gains, 0.75, 0.5, 6);
    assert_eq!(s.int_err, 0.125);
    // P and D terms, and the 0..=100 bounds.
    let pd = PidGains {
        kp: -100.0,
        ki: 0.0,
        kd: -50.0,
    };
    let s = PidState::default().step(pd, 0.5, 0.75, 1);
    assert_eq!((s.last_err, s.drop_rate), (-0.25, 37)); // -100 * -0.25 + -50 * -0.25
    let s = s.step(pd, 0.5, 0.75, 2);
    assert_eq!(s.drop_rate, 25); // no change in the error: no D term
    let s = PidState::default().step(pd, 0.0, 1.0, 1);
    assert_eq!(s.drop_rate, 100);
    assert_eq!(PidState::default().step(pd, 0.0, f64::NAN, 1).drop_rate, 0);
}

#[test]
fn pid_state_round_trips_through_the_store_text() {
    let s = PidState {
        window: 42,
        int_err: -0.30000000000000004,
        last_err: -0.1,
        drop_rate: 7,
    };
    assert_eq!(PidState::decode(&s.encode()), Some(s));
    for bad in ["", "1 2 3", "1 x 3 4", "1 NaN 0 0", "1 0 0 0 5"] {
        assert_eq!(PidState::decode(bad), None, "{bad:?}");
    }
}

#[test]
fn feedback_slots_drop_exactly_the_rate_per_hundred() {
    let mut slots: Vec<i64> = (0..100).map(algo::feedback_slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..100).collect::<Vec<_>>());
    for rate in [0, 1, 7, 50, 100] {
        let dropped = (1..=100)
            .filter(|&c| !algo::feedback_passes(c, rate))
            .count();
        assert_eq!(dropped, usize::try_from(rate).unwrap());
    }
}

#[test]
fn feedback_drops_a_share_set_by_the_cpu_load() {
    let busy = Load {
        cpu: 0.875,
        rx_queue_bytes: 0,
    };
    let m = module("FEEDBACK", 75, json!({}));
    testing::set_load(busy);
    // First window at 87.5% CPU with a 75% setpoint: 3 of each 100 drop.
    assert_eq!(passed(&m, 100, || request("INVITE")), 97);
    // A second instance reads the same controller state rather than stepping again.
    let other = module("FEEDBACK", 75, json!({}));
    assert_eq!(passed(&other, 100, || request("INVITE")), 97);
    next_window();
    assert_eq!(passed(&m, 100, || request("INVITE")), 94);
    testing::set_load(Load {
        cpu: 0.5,
        rx_queue_bytes: 0,
    });
    next_window();
    assert_eq!(passed(&other, 100, || request("INVITE")), 100);
    assert!(testing::logs()[0]
        .message
        .contains("(FEEDBACK, CPU setpoint 75%)"));
}

#[test]
fn feedback_gains_are_configurable() {
    let m = module(
        "FEEDBACK",
        50,
        json!({ "pid": { "kp": -100, "ki": 0.0, "kd": 0 } }),
    );
    testing::set_load(Load {
        cpu: 0.625,
        rx_queue_bytes: 0,
    });
    // -100 * (0.5 - 0.625) = 12.5: 12 of each 100 drop.
    assert_eq!(passed(&m, 100, || request("INVITE")), 88);
}

// === NOP ===

#[test]
fn nop_always_passes_without_the_store() {
    let m: PipeLimit = testing::init(json!({
        "pipes": { "p": { "algorithm": "NOP" } },
    }))
    .unwrap();
    testing::fail_kv(Some(KvError::Backend("down".into())));
    assert_eq!(passed(&m, 50, || request("INVITE")), 50);
    assert!(testing::logs().is_empty());
}

// === what happens over the limit ===

#[test]
fn retry_after_stays_in_its_range() {
    let m = module(
        "TAILDROP",
        1,
        json!({ "retry_after_min": 5, "retry_after_max": 7 }),
    );
    m.on_request(&mut request("INVITE")).unwrap();
    let mut seen = [false; 3];
    for _ in 0..300 {
        let secs = retry_after(&m.on_request(&mut request("INVITE")).unwrap());
        assert!((5..=7).contains(&secs), "{secs}");
        seen[usize::try_from(secs - 5).unwrap()] = true;
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn default_retry_after_is_10_plus_random_mod_300() {
    let m = module("TAILDROP", 1, json!({}));
    m.on_request(&mut request("INVITE")).unwrap();
    let values: Vec<u32> = (0..500)
        .map(|_| retry_after(&m.on_request(&mut request("INVITE")).unwrap()))
        .collect();
    assert!(values.iter().all(|v| (10..=309).contains(v)));
    // Spread over the range, not stuck.
    assert!(values.iter().any(|&v| v < 60) && values.iter().any(|&v| v > 260));
}

#[test]
fn retry_after_can_be_fixed_or_left_out_and_the_reply_configured() {
    let fixed = module(
        "TAILDROP",
        1,
        json!({ "retry_after_min": 30, "retry_after_max": 30 }),
    );
    fixed.on_request(&mut request("INVITE")).unwrap();
    assert_eq!(
        fixed.on_request(&mut request("INVITE")).unwrap(),
        Verdict::reply_with(503, "Server Unavailable", [("Retry-After", "30")])
    );
    testing::reset();
    let none = module(
        "TAILDROP",
        1,
        json!({ "retry_after_min": 0, "retry_after_max": 0, "reply_code": 486, "reply_reason": "" }),
    );
    none.on_request(&mut request("INVITE")).unwrap();
    assert_eq!(
        none.on_request(&mut request("INVITE")).unwrap(),
        Verdict::reply(486)
    );
}

#[test]
fn redirect_sends_the_caller_to_another_node_keeping_the_user() {
    let m = module(
        "TAILDROP",
        1,
        json!({ "action": "redirect", "redirect_uri": "sip:node2.example.net:5070;transport=tcp" }),
    );
    m.on_request(&mut request("INVITE")).unwrap();
    assert_eq!(
        m.on_request(&mut request("INVITE")).unwrap(),
        Verdict::reply_with(
            302,
            "",
            [("Contact", "<sip:bob@node2.example.net:5070;transport=tcp>")]
        )
    );
    assert_eq!(
        super::with_user("sip:carol@node2", "sip:bob@example.com"),
        "sip:carol@node2"
    );
    assert_eq!(
        super::with_user("sip:node2", "sip:example.com"),
        "sip:node2"
    );
    assert_eq!(
        super::with_user("sips:node2", "tel:+4930123;phone-context=x"),
        "sips:+4930123@node2"
    );
}

#[test]
fn redirect_can_use_the_uri_as_it_is() {
    let m = module(
        "TAILDROP",
        1,
        json!({ "action": "redirect", "redirect_uri": "sip:10.0.0.2", "redirect_keep_user": false }),
    );
    m.on_request(&mut request("INVITE")).unwrap();
    assert_eq!(
        m.on_request(&mut request("INVITE")).unwrap(),
        Verdict::reply_with(302, "", [("Contact", "<sip:10.0.0.2>")])
    );
}

#[test]
fn drop_discards_silently() {
    let m = module("TAILDROP", 1, json!({ "action": "drop" }));
    assert_eq!(
        m.on_request(&mut request("INVITE")).unwrap(),
        Verdict::Continue
    );
    assert_eq!(m.on_request(&mut request("INVITE")).unwrap(), Verdict::Drop);
}

// === which requests count ===

#[test]
fn ack_cancel_and_in_dialog_requests_are_not_counted_by_default() {
    let m = module("TAILDROP", 1, json!({}));
    for method in ["ACK", "CANCEL"] {
        assert_eq!(passed(&m, 3, || request(method)), 3);
    }
    assert_eq!(passed(&m, 3, || testing::request(IN_DIALOG_BYE)), 3);
    assert!(kv::get("p:1700000000:all").unwrap().is_none());
    // Any other initial request counts: REGISTER, OPTIONS, extensions.
    assert_eq!(passed(&m, 1, || request("OPTIONS")), 1);
    assert_eq!(passed(&m, 1, || request("REGISTER")), 0);
    // Failure chains see the request again: it was counted already.
    let mut again = request("INVITE");
    testing::set_failure(&mut again, 408);
    assert!(is_pass(&m.on_request(&mut again).unwrap()));
}

#[test]
fn methods_and_initial_only_choose_what_counts() {
    let m = module(
        "TAILDROP",
        1,
        json!({ "methods": ["invite", "BYE"], "initial_only": false }),
    );
    assert_eq!(passed(&m, 3, || request("REGISTER")), 3);
    assert_eq!(passed(&m, 1, || request("INVITE")), 1);
    assert_eq!(passed(&m, 1, || testing::request(IN_DIALOG_BYE)), 0);
}

#[test]
fn to_tags_are_found_outside_the_uri_only() {
    assert!(has_tag("<sip:bob@example.com>;tag=b2"));
    assert!(has_tag("Bob <sip:bob@example.com> ; TAG = x"));
    assert!(has_tag("sip:bob@example.com;tag=x"));
    assert!(!has_tag("<sip:bob@example.com;tag=in-uri>"));
    assert!(!has_tag("<sip:bob@example.com>;tagged=1"));
    assert!(!has_tag("\"Bob\" <sip:bob@example.com>"));
}

// === keys ===

#[test]
fn a_pipe_keyed_by_source_ip_limits_each_source_alone() {
    let m: PipeLimit = testing::init(json!({
        "timer_interval": 1,
        "pipes": { "ip": { "algorithm": "TAILDROP", "limit": 2, "key": "$si" } },
    }))
    .unwrap();
    assert_eq!(passed(&m, 3, || request("INVITE")), 2);
    let other = || {
        let mut msg = request("INVITE");
        testing::set_source(&mut msg, Address::new("2001:db8::7", 5060));
        msg
    };
    assert_eq!(passed(&m, 3, other), 2);
    assert!(kv::get("ip:1700000000:2001:db8::7").unwrap().is_some());
}

#[test]
fn a_pipe_keyed_by_from_user_limits_each_user_alone() {
    let m: PipeLimit = testing::init(json!({
        "pipes": { "user": { "algorithm": "TAILDROP", "limit": 1, "key": "$fU" } },
    }))
    .unwrap();
    assert_eq!(passed(&m, 2, || from("alice")), 1);
    assert_eq!(passed(&m, 2, || from("carol")), 1);
}

#[test]
fn requests_without_the_field_are_skipped_or_share_one_pipe() {
    let with_auth = || {
        testing::request(&INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nProxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:bob@example.com\", response=\"r\"\r\n",
        ))
    };
    let skip: PipeLimit = testing::init(json!({
        "pipes": { "au": { "algorithm": "TAILDROP", "limit": 1, "key": "$au" } },
    }))
    .unwrap();
    assert_eq!(passed(&skip, 3, || request("INVITE")), 3);
    assert_eq!(passed(&skip, 3, with_auth), 1);
    assert!(kv::get("au:170000000:alice").unwrap().is_some());

    testing::reset();
    let shared: PipeLimit = testing::init(json!({
        "pipes": { "au": { "algorithm": "TAILDROP", "limit": 2, "key": "$au", "missing": "shared" } },
    }))
    .unwrap();
    assert_eq!(passed(&shared, 3, || request("INVITE")), 2);
    assert!(kv::get("au:170000000:-").unwrap().is_some());
}

#[test]
fn pipes_are_checked_in_name_order_and_the_first_over_wins() {
    let m: PipeLimit = testing::init(json!({
        "timer_interval": 1,
        "pipes": {
            "b-all": { "algorithm": "TAILDROP", "limit": 3 },
            "a-user": { "algorithm": "TAILDROP", "limit": 1, "key": "$fU" },
        },
        "action": "drop",
    }))
    .unwrap();
    assert_eq!(passed(&m, 2, || from("alice")), 1);
    assert_eq!(passed(&m, 2, || from("carol")), 1);
    // Two passed through `b-all`; one more fits.
    assert_eq!(passed(&m, 1, || from("dave")), 1);
    assert_eq!(passed(&m, 1, || from("erin")), 0);
}

#[test]
fn fields_are_parsed_from_uris_and_credentials() {
    assert_eq!(name_addr_uri("\"A\" <sip:a@b;x=1>;tag=2"), "sip:a@b;x=1");
    assert_eq!(name_addr_uri("sip:a@b;tag=2"), "sip:a@b");
    assert_eq!(uri_user("sip:alice@example.com").as_deref(), Some("alice"));
    assert_eq!(
        uri_user("sips:alice:pw@example.com").as_deref(),
        Some("alice")
    );
    assert_eq!(uri_user("sip:example.com"), None);
    assert_eq!(
        uri_user("tel:+4930123;phone-context=x").as_deref(),
        Some("+4930123")
    );
    assert_eq!(uri_user("mailto:a@b"), None);
    assert_eq!(
        uri_host("sip:alice@Example.COM:5060;transport=tcp").as_deref(),
        Some("example.com")
    );
    assert_eq!(
        uri_host("sip:[2001:db8::1]:5060").as_deref(),
        Some("[2001:db8::1]")
    );
    assert_eq!(uri_host("sip:a@b?subject=x").as_deref(), Some("b"));
    let creds = r#"Digest realm="ex, ample", username="al\"ice", nonce=abc, uri="sip:b""#;
    assert_eq!(digest_param(creds, "username").as_deref(), Some("al\"ice"));
    assert_eq!(digest_param(creds, "realm").as_deref(), Some("ex, ample"));
    assert_eq!(digest_param(creds, "nonce").as_deref(), Some("abc"));
    assert_eq!(digest_param(creds, "cnonce"), None);
    assert_eq!(digest_param("Basic YWxpY2U6cHc=", "username"), None);
    assert_eq!(
        digest_param("Digest username=\"unterminated", "username"),
        None
    );
}

#[test]
fn long_key_values_are_cut() {
    let m: PipeLimit = testing::init(json!({
        "pipes": { "u": { "algorithm": "TAILDROP", "limit": 1, "key": "$fU" } },
    }))
    .unwrap();
    let long = "é".repeat(200);
    assert!(is_pass(&m.on_request(&mut from(&long)).unwrap()));
    let key = format!("u:170000000:{}", "é".repeat(128));
    assert!(kv::get(&key).unwrap().is_some());
}

// === store failures ===

#[test]
fn a_failing_store_fails_open_by_default_and_logs_once_per_window() {
    let m = module("TAILDROP", 1, json!({}));
    testing::fail_kv(Some(KvError::Backend("connection refused".into())));
    assert_eq!(passed(&m, 5, || request("INVITE")), 5);
    let logs = testing::take_logs();
    assert_eq!(logs.len(), 1);
    assert!(
        logs[0].message.contains("store failed"),
        "{}",
        logs[0].message
    );
    assert!(logs[0].message.contains("letting requests pass"));
    next_window();
    assert_eq!(passed(&m, 1, || request("INVITE")), 1);
    assert_eq!(testing::take_logs().len(), 1);
}

#[test]
fn a_failing_store_can_fail_closed_or_fail_the_hook() {
    let closed = module(
        "TAILDROP",
        100,
        json!({ "on_store_error": "limit", "action": "drop" }),
    );
    testing::fail_kv(Some(KvError::Backend("down".into())));
    assert_eq!(
        closed.on_request(&mut request("INVITE")).unwrap(),
        Verdict::Drop
    );

    let error = module("RED", 100, json!({ "on_store_error": "error" }));
    let err = error.on_request(&mut request("INVITE")).unwrap_err();
    assert!(err.to_string().contains("pipe `p`"), "{err}");
    assert!(err.is::<KvError>());
}

// === the README's exchange ===

#[test]
fn readme_example_invite_gets_503_with_retry_after() {
    // config/pipelimit.toml: one TAILDROP pipe of 500 initial requests per second.
    let m: PipeLimit = testing::init(json!({
        "timer_interval": 1,
        "pipes": { "all": { "algorithm": "TAILDROP", "limit": 500 } },
    }))
    .unwrap();
    assert_eq!(passed(&m, 500, || testing::request(INVITE)), 500);
    let v = m.on_request(&mut testing::request(INVITE)).unwrap();
    let secs = retry_after(&v);
    assert!((10..=309).contains(&secs));
    assert_eq!(
        v,
        Verdict::reply_with(
            503,
            "Server Unavailable",
            [("Retry-After", secs.to_string())]
        )
    );
    next_window();
    assert!(is_pass(
        &m.on_request(&mut testing::request(INVITE)).unwrap()
    ));
}

// === config errors ===

fn init_err(params: JsonValue) -> String {
    testing::init_err::<PipeLimit>(params)
}

fn with_pipe(pipe: JsonValue) -> JsonValue {
    json!({ "pipes": { "p": pipe } })
}

#[test]
fn bad_config_is_refused_with_the_param_named() {
    assert!(init_err(json!({})).starts_with("pipes: at least one pipe"));
    let err = init_err(with_pipe(json!({ "algorithm": "taildrop", "limit": 1 })));
    assert!(
        err.starts_with("param `pipes.p.algorithm`: unknown variant `taildrop`"),
        "{err}"
    );
    let err = init_err(with_pipe(json!({ "algorithm": "TAILDROP" })));
    assert_eq!(
        err,
        "pipes.p.limit: TAILDROP needs a limit of at least 1 (requests per timer_interval)"
    );
    let err = init_err(with_pipe(json!({ "algorithm": "NETWORK", "limit": 0 })));
    assert!(err.contains("(queued bytes)"), "{err}");
    let err = init_err(with_pipe(json!({ "algorithm": "FEEDBACK", "limit": 101 })));
    assert!(
        err.starts_with("pipes.p.limit: FEEDBACK needs the CPU setpoint"),
        "{err}"
    );
    let err = init_err(with_pipe(
        json!({ "algorithm": "RED", "limit": 5, "key": "$xy" }),
    ));
    assert!(err.starts_with("pipes.p.key: unknown field `$xy`"), "{err}");
    let err = init_err(with_pipe(
        json!({ "algorithm": "RED", "limit": 5, "key": "" }),
    ));
    assert!(err.starts_with("pipes.p.key: must not be empty"), "{err}");
    let err = init_err(with_pipe(
        json!({ "algorithm": "RED", "limit": 5, "keys": "$si" }),
    ));
    assert!(
        err.starts_with("param `pipes.p.keys`: unknown field"),
        "{err}"
    );
    let err = init_err(with_pipe(
        json!({ "algorithm": "RED", "limit": 5, "missing": "no" }),
    ));
    assert!(
        err.starts_with("param `pipes.p.missing`: unknown variant"),
        "{err}"
    );
    let err = init_err(json!({ "pipes": { "a:b": { "algorithm": "NOP" } } }));
    assert!(err.starts_with("pipes: name `a:b` must be"), "{err}");

    let ok_pipe = json!({ "p": { "algorithm": "NOP" } });
    let with = |k: &str, v: JsonValue| {
        let mut params = json!({ "pipes": ok_pipe.clone() });
        params.as_object_mut().unwrap().insert(k.to_string(), v);
        init_err(params)
    };
    assert!(with("timer_interval", json!(0)).starts_with("timer_interval must be 1 to 3600"));
    assert!(with("timer_interval", json!(-1)).starts_with("param `timer_interval`: invalid value"));
    assert_eq!(
        with("reply_code", json!(200)),
        "reply_code must be 400 to 699"
    );
    assert!(with("reply_reason", json!("a\r\nX: y")).starts_with("reply_reason must not"));
    assert!(
        with("retry_after_min", json!(400)).starts_with("retry_after_min (400) must be at most")
    );
    assert!(with("retry_after_max", json!(100_000)).contains("at most 86400"));
    assert_eq!(
        with("action", json!("redirect")),
        "action = \"redirect\" needs redirect_uri"
    );
    assert!(with("action", json!("reject")).starts_with("param `action`: unknown variant"));
    assert!(with("methods", json!(["IN VITE"])).starts_with("methods: `IN VITE` is not"));
    assert!(with("on_store_error", json!("maybe")).starts_with("param `on_store_error`"));
    assert!(with("limit", json!(5)).starts_with("param `limit`: unknown field"));
    assert!(with("pid", json!({ "ki": "x" })).starts_with("param `pid.ki`: invalid type"));
    for bad in ["http://x", "sip:", "sip:a b", "sip:<x>", "node2"] {
        let mut params = json!({ "pipes": ok_pipe.clone(), "action": "redirect" });
        params
            .as_object_mut()
            .unwrap()
            .insert("redirect_uri".into(), json!(bad));
        assert!(init_err(params).starts_with("redirect_uri: `"), "{bad}");
    }
}
