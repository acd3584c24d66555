//! The module layer through `weir_sdk::testing`: selection, failover, reload, probing.

use std::time::Duration;

use weir_sdk::log::Level;
use weir_sdk::testing::{self, json};
use weir_sdk::{kv, Event, Module, SipResponse, Verdict};

use crate::health::DestHealth;
use crate::list::{FLAG_INACTIVE, FLAG_PROBING};
use crate::module::{HEALTH_GEN, VAR};
use crate::Dispatcher;

const A: &str = "sip:127.0.0.1:5071";
const B: &str = "sip:127.0.0.1:5072";
const C: &str = "sip:127.0.0.1:5073";

/// The three destinations in selection order A, B, C (equal priorities are listed in
/// reverse file order, as Kamailio does).
const LIST: &str = "\
# test list
1 sip:127.0.0.1:5073
1 sip:127.0.0.1:5072
1 sip:127.0.0.1:5071
";

fn invite(call_id: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{call_id}\r\n\
         From: <sip:alice@example.com>;tag=1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         \r\n"
    )
}

fn module(params: testing::JsonValue) -> Dispatcher {
    testing::set_file("list", LIST);
    testing::init(params).unwrap()
}

/// The target of a forward verdict.
fn target(v: &Verdict) -> String {
    match v {
        Verdict::Forward(t) if t.len() == 1 => t[0].clone(),
        other => panic!("expected a forward to one target, got {other:?}"),
    }
}

/// Write a destination state as the module does: the state, then a `hgen` bump.
fn set_state(uri: &str, flags: u32) {
    kv::set(&format!("h:{uri}"), DestHealth::new(flags).encode(), None).unwrap();
    kv::incr(HEALTH_GEN, 1, None).unwrap();
}

/// Forget a destination's state (back to the list file's flags), with a `hgen` bump.
fn clear_state(uri: &str) {
    kv::delete(&format!("h:{uri}")).unwrap();
    kv::incr(HEALTH_GEN, 1, None).unwrap();
}

fn state(uri: &str) -> Option<DestHealth> {
    kv::get_string(&format!("h:{uri}"))
        .unwrap()
        .and_then(|s| DestHealth::decode(&s))
}

fn response(id: u64, tag: &str, status: u16) -> Event {
    Event::Response(SipResponse {
        id,
        tag: tag.into(),
        status,
        reason: String::new(),
        headers: vec![],
    })
}

#[test]
fn round_robin_over_three_keeps_the_request_uri() {
    let ds = module(json!({}));
    let mut got = Vec::new();
    for i in 0..6 {
        let mut msg = testing::request(&invite(&format!("c{i}")));
        testing::set_transaction(&mut msg, i + 1);
        got.push(target(&ds.on_request(&mut msg).unwrap()));
        assert_eq!(msg.request_uri(), "sip:bob@example.com");
    }
    assert_eq!(got, [A, B, C, A, B, C]);
    // The failover list: the chosen one first, then the others in order.
    let mut msg = testing::request(&invite("x"));
    ds.on_request(&mut msg).unwrap();
    assert_eq!(msg.var(VAR).as_deref(), Some(&*format!("{A} {B} {C}")));
}

#[test]
fn an_inactive_destination_is_skipped() {
    let ds = module(json!({}));
    set_state(B, FLAG_INACTIVE | FLAG_PROBING);
    let mut got = Vec::new();
    for i in 0..4 {
        let mut msg = testing::request(&invite(&format!("c{i}")));
        let v = ds.on_request(&mut msg).unwrap();
        if i == 1 {
            // B was due: C is used, and B is not in the failover list.
            assert_eq!(msg.var(VAR).as_deref(), Some(&*format!("{C} {A}")));
        }
        got.push(target(&v));
    }
    // Kamailio moves the cursor past the entry it used: A and C alternate.
    assert_eq!(got, [A, C, A, C]);
}

#[test]
fn in_dialog_ack_and_cancel_pass() {
    let ds = module(json!({}));
    let bye = "BYE sip:bob@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n\
               From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
               Call-ID: d\r\nCSeq: 2 BYE\r\n\r\n";
    assert_eq!(
        ds.on_request(&mut testing::request(bye)).unwrap(),
        Verdict::Continue
    );
    let cancel = invite("k").replace("INVITE", "CANCEL");
    assert_eq!(
        ds.on_request(&mut testing::request(&cancel)).unwrap(),
        Verdict::Continue
    );
    // Nothing counted: the next initial request goes to the first destination.
    assert_eq!(
        target(&ds.on_request(&mut testing::request(&invite("a"))).unwrap()),
        A
    );
}

#[test]
fn failover_through_the_failure_chain() {
    let ds = module(json!({}));
    let mut msg = testing::request(&invite("f"));
    testing::set_transaction(&mut msg, 7);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);

    // A's leg timed out: A is marked inactive at once, B is next.
    testing::set_failure(&mut msg, 408);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), B);
    assert_eq!(msg.var(VAR).as_deref(), Some(&*format!("{B} {C}")));
    assert_eq!(state(A).unwrap().flags, FLAG_INACTIVE | FLAG_PROBING);
    assert!(testing::logs().iter().any(|l| l.level == Level::Info
        && l.message == format!("dispatcher: {A} down (inactive, leg failed with 408)")));

    // B answered 500: C.
    testing::set_failure(&mut msg, 500);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), C);
    assert_eq!(msg.var(VAR).as_deref(), Some(C));

    // New calls skip the marked ones.
    let mut next = testing::request(&invite("g"));
    assert_eq!(target(&ds.on_request(&mut next).unwrap()), C);
}

#[test]
fn failover_skips_destinations_that_went_down_meanwhile() {
    let ds = module(json!({}));
    let mut msg = testing::request(&invite("f"));
    ds.on_request(&mut msg).unwrap();
    set_state(B, FLAG_INACTIVE);
    testing::set_failure(&mut msg, 503);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), C);
}

#[test]
fn exhaustion_replies_503() {
    let ds = module(json!({}));
    let mut msg = testing::request(&invite("e"));
    ds.on_request(&mut msg).unwrap();
    for code in [503, 408] {
        testing::set_failure(&mut msg, code);
        assert!(matches!(
            ds.on_request(&mut msg).unwrap(),
            Verdict::Forward(_)
        ));
    }
    testing::set_failure(&mut msg, 500);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(503));
    // All three are now marked: nothing is usable for a new call.
    let mut next = testing::request(&invite("n"));
    assert_eq!(ds.on_request(&mut next).unwrap(), Verdict::reply(404));
}

#[test]
fn other_failures_and_cancelled_calls_are_not_failed_over() {
    let ds = module(json!({}));
    let mut msg = testing::request(&invite("b"));
    ds.on_request(&mut msg).unwrap();
    testing::set_failure(&mut msg, 486);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::Continue);
    testing::set_failure(&mut msg, 503);
    testing::set_cancelled(&mut msg, true);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(state(A), None);
    // Without the variable (not dispatched by us): continue.
    let mut other = testing::request(&invite("o"));
    testing::set_failure(&mut other, 503);
    assert_eq!(ds.on_request(&mut other).unwrap(), Verdict::Continue);
}

#[test]
fn configured_codes_and_no_marking() {
    let ds = module(json!({
        "failover_on": ["486"],
        "mark_on_failure": false,
        "no_destination_code": 480,
        "exhausted_code": 502,
    }));
    let mut msg = testing::request(&invite("b"));
    ds.on_request(&mut msg).unwrap();
    testing::set_failure(&mut msg, 503);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::Continue);
    for _ in 0..2 {
        testing::set_failure(&mut msg, 486);
        assert!(matches!(
            ds.on_request(&mut msg).unwrap(),
            Verdict::Forward(_)
        ));
    }
    testing::set_failure(&mut msg, 486);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(502));
    assert_eq!(state(A), None);
    for uri in [A, B, C] {
        set_state(uri, FLAG_INACTIVE);
    }
    let mut next = testing::request(&invite("n"));
    assert_eq!(ds.on_request(&mut next).unwrap(), Verdict::reply(480));
}

#[test]
fn without_the_failover_flag_there_is_no_alternative() {
    let ds = module(json!({ "flags": 0 }));
    let mut msg = testing::request(&invite("b"));
    ds.on_request(&mut msg).unwrap();
    assert_eq!(msg.var(VAR).as_deref(), Some(A));
    testing::set_failure(&mut msg, 503);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(503));
}

#[test]
fn domain_mode_rewrites_the_request_uri() {
    let ds = module(json!({ "mode": "domain" }));
    let mut msg = testing::request(&invite("d"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);
    assert_eq!(msg.request_uri(), "sip:bob@127.0.0.1:5071");
    testing::set_failure(&mut msg, 503);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), B);
    assert_eq!(msg.request_uri(), "sip:bob@127.0.0.1:5072");
}

#[test]
fn reload_on_a_new_version_keeps_health() {
    let ds = module(json!({}));
    set_state(C, FLAG_INACTIVE | FLAG_PROBING);
    // Drop A; D is new. Order: D, C, B.
    testing::set_file(
        "list",
        "1 sip:127.0.0.1:5072\n1 sip:127.0.0.1:5073\n1 sip:127.0.0.1:5074\n",
    );
    let mut got = Vec::new();
    for i in 0..4 {
        let mut msg = testing::request(&invite(&format!("r{i}")));
        got.push(target(&ds.on_request(&mut msg).unwrap()));
    }
    // C stays inactive (its state is kept by URI), A is gone.
    assert!(!got.iter().any(|u| u == A || u == C), "{got:?}");
    assert!(got.iter().any(|u| u == "sip:127.0.0.1:5074"));
    assert!(got.iter().any(|u| u == B));
}

#[test]
fn a_list_that_does_not_parse_keeps_the_previous_one() {
    let ds = module(json!({}));
    testing::set_file("list", "1 not-a-uri\n");
    let mut msg = testing::request(&invite("p"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);
    let errors: Vec<_> = testing::logs()
        .into_iter()
        .filter(|l| l.level == Level::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("line 1"),
        "{}",
        errors[0].message
    );
    // Logged once per version, not per request.
    ds.on_request(&mut testing::request(&invite("q"))).unwrap();
    assert_eq!(
        testing::logs()
            .iter()
            .filter(|l| l.level == Level::Error)
            .count(),
        1
    );
    // A new instance started now uses the last good list mirrored in kv.
    let other: Dispatcher = testing::init(json!({})).unwrap();
    assert!(matches!(
        other
            .on_request(&mut testing::request(&invite("r")))
            .unwrap(),
        Verdict::Forward(_)
    ));
}

#[test]
fn state_changes_reach_other_instances_through_hgen() {
    let params = json!({ "ping_interval": 5, "probing_mode": 1 });
    let ds = module(params.clone());
    let other: Dispatcher = testing::init(params).unwrap();
    // Both read the states once (all active) and keep them while hgen stays.
    let call = |d: &Dispatcher, id: &str| {
        target(&d.on_request(&mut testing::request(&invite(id))).unwrap())
    };
    assert_eq!(call(&other, "w1"), A);
    let gen = kv::get_string(HEALTH_GEN).unwrap();
    assert_eq!(call(&other, "w2"), B);
    assert_eq!(
        kv::get_string(HEALTH_GEN).unwrap(),
        gen,
        "selection writes no state"
    );

    // `ds` marks B down after a probe timeout: `other` sees it on its next request.
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    let sent = testing::sent_requests();
    let (id, _, _) = sent.iter().find(|(_, r, _)| r.uri == B).unwrap();
    ds.on_event(&response(*id, B, 408)).unwrap();
    assert_ne!(kv::get_string(HEALTH_GEN).unwrap(), gen);
    let got: Vec<String> = (0..4).map(|i| call(&other, &format!("x{i}"))).collect();
    assert!(!got.iter().any(|u| u == B), "{got:?}");

    // The failure chain of one instance marks for the others too.
    let mut msg = testing::request(&invite("f"));
    let first = target(&other.on_request(&mut msg).unwrap());
    testing::set_failure(&mut msg, 503);
    let next = target(&ds.on_request(&mut msg).unwrap());
    assert_ne!(next, first);
    let got: Vec<String> = (0..4).map(|i| call(&other, &format!("y{i}"))).collect();
    assert!(got.iter().all(|u| *u == next), "{got:?}");
}

#[test]
fn a_state_written_without_a_hgen_bump_waits_for_the_next_bump() {
    // The contract of the cache: writers bump hgen. A write without a bump is seen
    // once anything bumps it.
    let ds = module(json!({}));
    assert_eq!(
        target(&ds.on_request(&mut testing::request(&invite("a"))).unwrap()),
        A
    );
    kv::set(
        &format!("h:{C}"),
        DestHealth::new(FLAG_INACTIVE | FLAG_PROBING).encode(),
        None,
    )
    .unwrap();
    assert_eq!(
        target(&ds.on_request(&mut testing::request(&invite("b"))).unwrap()),
        B
    );
    kv::incr(HEALTH_GEN, 1, None).unwrap();
    // C is due but inactive now: A.
    assert_eq!(
        target(&ds.on_request(&mut testing::request(&invite("c"))).unwrap()),
        A
    );
}

#[test]
fn probing_marks_down_and_up() {
    let ds = module(json!({ "ping_interval": 5, "probing_mode": 1, "ping_timeout_ms": 1500 }));
    assert_eq!(
        testing::timers(),
        vec![("ping".to_string(), Duration::from_secs(5))]
    );
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    let sent = testing::sent_requests();
    assert_eq!(sent.len(), 3);
    let mut uris: Vec<&str> = sent.iter().map(|(_, r, _)| r.uri.as_str()).collect();
    uris.sort_unstable();
    assert_eq!(uris, [A, B, C]);
    for (_, req, tag) in &sent {
        assert_eq!(req.method, "OPTIONS");
        assert_eq!(req.destination.as_deref(), Some(req.uri.as_str()));
        assert_eq!(tag, &req.uri);
        assert_eq!(req.header_value("From"), Some("<sip:dispatcher@localhost>"));
        assert_eq!(req.header_value("To"), Some(&*format!("<{}>", req.uri)));
        assert_eq!(req.timeout, Duration::from_millis(1500));
    }
    let id_of = |uri: &str| sent.iter().find(|(_, r, _)| r.uri == uri).unwrap().0;

    // B times out: inactive (threshold 1), logged for operators.
    ds.on_event(&response(id_of(B), B, 408)).unwrap();
    assert_eq!(state(B).unwrap().flags, FLAG_INACTIVE | FLAG_PROBING);
    assert!(testing::logs().iter().any(|l| l.level == Level::Info
        && l.message == format!("dispatcher: {B} down (inactive, probe timed out)")));
    ds.on_event(&response(id_of(A), A, 200)).unwrap();
    ds.on_event(&response(id_of(C), C, 200)).unwrap();
    for i in 0..4 {
        let mut msg = testing::request(&invite(&format!("p{i}")));
        assert_ne!(target(&ds.on_request(&mut msg).unwrap()), B);
    }

    // B answers the next probe: active again.
    testing::take_logs();
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    let sent = testing::sent_requests();
    let (id, _, _) = sent.iter().rev().find(|(_, r, _)| r.uri == B).unwrap();
    ds.on_event(&response(*id, B, 200)).unwrap();
    assert_eq!(state(B).unwrap().flags, FLAG_PROBING);
    assert!(testing::logs()
        .iter()
        .any(|l| l.level == Level::Info && l.message == format!("dispatcher: {B} up (active)")));
    let mut got = Vec::new();
    for i in 0..3 {
        let mut msg = testing::request(&invite(&format!("u{i}")));
        got.push(target(&ds.on_request(&mut msg).unwrap()));
    }
    assert!(got.iter().any(|u| u == B), "{got:?}");
}

#[test]
fn probing_mode_0_probes_flagged_and_marked_destinations() {
    // Kamailio's default: only destinations with the probing flag (8) get OPTIONS.
    testing::set_file("list", "1 sip:127.0.0.1:5071 8\n1 sip:127.0.0.1:5072\n");
    let ds: Dispatcher = testing::init(json!({ "ping_interval": 1 })).unwrap();
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    let sent = testing::sent_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.uri, A);
    // A failed leg marks 5072 "ip": probed from then on.
    let mut msg = testing::request(&invite("m"));
    ds.on_request(&mut msg).unwrap();
    let first = msg.var(VAR).unwrap();
    let first = first.split(' ').next().unwrap().to_string();
    testing::set_failure(&mut msg, 503);
    ds.on_request(&mut msg).unwrap();
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    let sent = testing::sent_requests();
    assert!(sent[1..].iter().any(|(_, r, _)| r.uri == first), "{sent:?}");
}

#[test]
fn probe_thresholds_and_reply_codes() {
    let ds = module(json!({
        "ping_interval": 1,
        "probing_mode": 1,
        "probing_threshold": 2,
        "ping_reply_codes": "code=404",
    }));
    ds.on_event(&response(1, A, 404)).unwrap();
    // 404 counts as success (mode 1 keeps the probing flag).
    assert_eq!(state(A).unwrap(), DestHealth::new(FLAG_PROBING));
    ds.on_event(&response(2, A, 500)).unwrap();
    assert!(state(A).unwrap().is_usable(), "trying after one failure");
    ds.on_event(&response(3, A, 477)).unwrap();
    assert!(!state(A).unwrap().is_usable(), "inactive after two");
    // A probe outcome for a URI not in the list is ignored.
    ds.on_event(&response(4, "sip:192.0.2.99", 408)).unwrap();
    assert_eq!(state("sip:192.0.2.99"), None);
}

#[test]
fn a_probe_that_cannot_be_sent_counts_as_failed() {
    let ds = module(json!({ "ping_interval": 1, "probing_mode": 1 }));
    testing::fail_requests(Some("too many in flight".into()));
    ds.on_event(&Event::Timer("ping".into())).unwrap();
    assert!(!state(A).unwrap().is_usable());
}

#[test]
fn no_timer_without_ping_interval() {
    let _ds = module(json!({}));
    assert!(testing::timers().is_empty());
}

#[test]
fn hash_over_call_id_is_stable() {
    let ds = module(json!({ "alg": 0 }));
    let pick = |cid: &str| {
        let mut msg = testing::request(&invite(cid));
        target(&ds.on_request(&mut msg).unwrap())
    };
    let first = pick("same-call@example");
    for _ in 0..5 {
        assert_eq!(pick("same-call@example"), first);
    }
    // Kamailio's hash picks index hash % 3 of the set.
    let idx = (crate::hash::hash_callid("same-call@example") % 3) as usize;
    assert_eq!(first, [A, B, C][idx]);
    // Different calls spread.
    let mut seen: Vec<String> = (0..30).map(|i| pick(&format!("call-{i}"))).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

#[test]
fn hash_over_a_header() {
    let ds = module(json!({ "alg": 7, "hash_header": "X-Tenant" }));
    let with = |v: &str| {
        invite("h").replace(
            "CSeq: 1 INVITE\r\n",
            &format!("CSeq: 1 INVITE\r\nX-Tenant: {v}\r\n"),
        )
    };
    let idx = (crate::hash::hash_pvar("acme").unwrap() % 3) as usize;
    let mut msg = testing::request(&with("acme"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), [A, B, C][idx]);
    // Without the header the selection fails.
    let mut msg = testing::request(&invite("h"));
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(404));
}

#[test]
fn parallel_forks_to_all() {
    let ds = module(json!({ "alg": 12 }));
    let mut msg = testing::request(&invite("x"));
    assert_eq!(
        ds.on_request(&mut msg).unwrap(),
        Verdict::forward([A, B, C])
    );
}

#[test]
fn missing_set_or_empty_list() {
    let ds = module(json!({}));
    testing::set_file("list", "# empty\n");
    let mut msg = testing::request(&invite("x"));
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(404));
}

#[test]
fn config_errors_name_the_param() {
    testing::set_file("list", LIST);
    let err = |p| testing::init_err::<Dispatcher>(p);
    assert!(err(json!({ "alg": 16 })).contains("alg 16 is not supported"));
    assert!(err(json!({ "alg": 10, "hash_expire": 0 })).contains("hash_expire"));
    assert!(err(json!({ "alg": 10, "hash_initexpire": 9999999 })).contains("hash_initexpire"));
    assert!(err(json!({ "alg": 7 })).contains("hash_header"));
    assert!(err(json!({ "probing_mode": 4 })).contains("probing_mode"));
    assert!(err(json!({ "ping_timeout_ms": 50 })).contains("ping_timeout_ms"));
    assert!(err(json!({ "ping_method": "INVITE" })).contains("ping_method"));
    assert!(err(json!({ "ping_from": "dispatcher" })).contains("ping_from"));
    assert!(err(json!({ "failover_on": ["5xx", "oops"] })).contains("failover_on"));
    assert!(err(json!({ "exhausted_code": 200 })).contains("exhausted_code"));
    assert!(err(json!({ "mode": "uri" })).starts_with("param `mode`"));
    assert!(err(json!({ "pingo": 1 })).starts_with("param `pingo`: unknown field"));
    assert!(err(json!({ "set": 9 })).contains("set 9 is not in the list"));
    assert!(err(json!({ "list": "other" })).contains("\"other\""));
    testing::set_file("list", "x sip:a\n");
    assert!(err(json!({})).contains("line 1"));
}

// === Algorithm 10: call load ===

/// A, B, C in selection order with duids a, b, c; B takes at most 2 calls.
const LOAD_LIST: &str = "\
1 sip:127.0.0.1:5073 0 0 duid=c
1 sip:127.0.0.1:5072 0 0 duid=b;maxload=2
1 sip:127.0.0.1:5071 0 0 duid=a
";

fn load_module(params: testing::JsonValue) -> Dispatcher {
    testing::set_file("list", LOAD_LIST);
    let mut p = json!({ "alg": 10 });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), params.as_object()) {
        p.extend(extra.clone());
    }
    testing::init(p).unwrap()
}

fn call(ds: &Dispatcher, call_id: &str) -> String {
    target(
        &ds.on_request(&mut testing::request(&invite(call_id)))
            .unwrap(),
    )
}

fn in_dialog(method: &str, call_id: &str) -> String {
    format!(
        "{method} sip:bob@192.0.2.9 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{method}{call_id}\r\n\
         From: <sip:alice@example.com>;tag=1\r\n\
         To: <sip:bob@example.com>;tag=2\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 {method}\r\n\
         \r\n"
    )
}

/// The loads of a, b, c (default expiry).
fn loads(_: &Dispatcher) -> [i32; 3] {
    let l = crate::load::Loads::new(7200, 7200);
    let now = weir_sdk::clock::now_ms();
    ["a", "b", "c"].map(|d| l.load(d, now).unwrap())
}

#[test]
fn call_load_picks_the_least_loaded_and_respects_maxload() {
    let ds = load_module(json!({}));
    // Ties go to the first in set order.
    assert_eq!(call(&ds, "c1"), A);
    assert_eq!(call(&ds, "c2"), B);
    assert_eq!(call(&ds, "c3"), C);
    assert_eq!(call(&ds, "c4"), A);
    assert_eq!(loads(&ds), [2, 1, 1]);
    // The failover list skips full destinations only; here none is full.
    let mut msg = testing::request(&invite("c5"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), B);
    assert_eq!(msg.var(VAR).as_deref(), Some(&*format!("{B} {C} {A}")));
    // B is at its maxload of 2: never chosen, nor listed for failover.
    assert_eq!(call(&ds, "c6"), C);
    let mut msg = testing::request(&invite("c7"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);
    assert_eq!(msg.var(VAR).as_deref(), Some(&*format!("{A} {C}")));
    assert_eq!(loads(&ds), [3, 2, 2]);
    // Other methods go to the first entry and are not counted.
    let msg = invite("m1").replace("INVITE", "MESSAGE");
    assert_eq!(
        target(&ds.on_request(&mut testing::request(&msg)).unwrap()),
        A
    );
    assert_eq!(loads(&ds), [3, 2, 2]);
    // An inactive destination is skipped whatever its load.
    set_state(C, FLAG_INACTIVE | FLAG_PROBING);
    assert_eq!(call(&ds, "c8"), A);
}

#[test]
fn call_load_is_unset_by_bye_and_cancel() {
    let ds = load_module(json!({}));
    assert_eq!(call(&ds, "c1"), A);
    assert_eq!(call(&ds, "c2"), B);
    assert_eq!(call(&ds, "c3"), C);
    let bye = in_dialog("BYE", "c2");
    assert_eq!(
        ds.on_request(&mut testing::request(&bye)).unwrap(),
        Verdict::Continue
    );
    assert_eq!(loads(&ds), [1, 0, 1]);
    // A second BYE (retransmission, or both parties) changes nothing.
    ds.on_request(&mut testing::request(&bye)).unwrap();
    assert_eq!(loads(&ds), [1, 0, 1]);
    assert_eq!(call(&ds, "c4"), B);
    let cancel = invite("c1").replace("INVITE", "CANCEL");
    assert_eq!(
        ds.on_request(&mut testing::request(&cancel)).unwrap(),
        Verdict::Continue
    );
    assert_eq!(loads(&ds), [0, 1, 1]);
    // A Call-ID never counted is ignored.
    ds.on_request(&mut testing::request(&in_dialog("BYE", "zz")))
        .unwrap();
    assert_eq!(loads(&ds), [0, 1, 1]);
}

#[test]
fn call_load_moves_on_failover_and_is_unset_on_failure() {
    let ds = load_module(json!({}));
    let mut msg = testing::request(&invite("f1"));
    testing::set_transaction(&mut msg, 1);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);
    assert_eq!(loads(&ds), [1, 0, 0]);
    // A times out: the call moves to B (ds_load_replace).
    testing::set_failure(&mut msg, 408);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), B);
    assert_eq!(loads(&ds), [0, 1, 0]);
    // B answers 486: the call is over (ds_load_unset).
    testing::set_failure(&mut msg, 486);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(loads(&ds), [0, 0, 0]);

    // Exhausted after failover: unset as well.
    let mut msg = testing::request(&invite("f2"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), B);
    testing::set_failure(&mut msg, 500);
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), C);
    assert_eq!(loads(&ds), [0, 0, 1]);
    testing::set_failure(&mut msg, 503);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::reply(503));
    assert_eq!(loads(&ds), [0, 0, 0]);

    // A cancelled call (487 to the caller) is unset too.
    clear_state(A);
    clear_state(B);
    clear_state(C);
    let mut msg = testing::request(&invite("f3"));
    assert_eq!(target(&ds.on_request(&mut msg).unwrap()), A);
    testing::set_failure(&mut msg, 487);
    testing::set_cancelled(&mut msg, true);
    assert_eq!(ds.on_request(&mut msg).unwrap(), Verdict::Continue);
    assert_eq!(loads(&ds), [0, 0, 0]);
}

#[test]
fn call_load_expires_calls_never_ended() {
    let ds = load_module(json!({ "hash_expire": 100 }));
    assert_eq!(call(&ds, "e1"), A);
    assert_eq!(call(&ds, "e2"), B);
    testing::advance(Duration::from_secs(99));
    let l = crate::load::Loads::new(100, 100);
    let now = weir_sdk::clock::now_ms();
    assert_eq!(
        l.load("a", now).unwrap(),
        1,
        "still counted before hash_expire"
    );
    // Gone between hash_expire and hash_expire * 1.5.
    testing::advance(Duration::from_secs(51));
    let now = weir_sdk::clock::now_ms();
    assert_eq!(l.load("a", now).unwrap(), 0);
    assert_eq!(l.load("b", now).unwrap(), 0);
    // A late BYE does not drive the load below zero, nor touches newer calls.
    assert_eq!(call(&ds, "e3"), A);
    ds.on_request(&mut testing::request(&in_dialog("BYE", "e1")))
        .unwrap();
    assert_eq!(l.load("a", weir_sdk::clock::now_ms()).unwrap(), 1);
}

#[test]
fn call_load_unconfirmed_calls_expire_sooner() {
    let ds = load_module(json!({ "hash_expire": 3600, "hash_initexpire": 60 }));
    let l = crate::load::Loads::new(3600, 60);
    assert_eq!(call(&ds, "u1"), A);
    assert_eq!(call(&ds, "u2"), B);
    // u1 is answered: 2xx to the INVITE in the reply chain.
    let ok = "SIP/2.0 200 OK\r\n\
              Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKu1\r\n\
              From: <sip:alice@example.com>;tag=1\r\n\
              To: <sip:bob@example.com>;tag=2\r\n\
              Call-ID: u1\r\n\
              CSeq: 1 INVITE\r\n\
              \r\n";
    assert_eq!(
        ds.on_reply(&mut testing::reply(ok)).unwrap(),
        Verdict::Continue
    );
    ds.on_reply(&mut testing::reply(ok)).unwrap();
    let now = weir_sdk::clock::now_ms();
    assert_eq!(
        (l.load("a", now).unwrap(), l.load("b", now).unwrap()),
        (1, 1)
    );
    testing::advance(Duration::from_secs(91));
    let now = weir_sdk::clock::now_ms();
    // u2 was never answered: dropped after hash_initexpire; u1 stays.
    assert_eq!(
        (l.load("a", now).unwrap(), l.load("b", now).unwrap()),
        (1, 0)
    );
    // The BYE of the confirmed call uncounts it.
    ds.on_request(&mut testing::request(&in_dialog("BYE", "u1")))
        .unwrap();
    assert_eq!(l.load("a", weir_sdk::clock::now_ms()).unwrap(), 0);
}

#[test]
fn call_load_without_duid_is_classic_dispatching() {
    testing::set_file(
        "list",
        "1 sip:127.0.0.1:5072\n1 sip:127.0.0.1:5071 0 0 duid=a\n",
    );
    let ds: Dispatcher = testing::init(json!({ "alg": 10, "flags": 0 })).unwrap();
    assert!(testing::logs()
        .iter()
        .any(|l| l.level == Level::Warn && l.message.contains("no duid")));
    // Least loaded is A (first); counted.
    assert_eq!(call(&ds, "d1"), A);
    // Then B (load 0, no duid): used but not counted.
    assert_eq!(call(&ds, "d2"), B);
    assert_eq!(call(&ds, "d3"), B);
}
