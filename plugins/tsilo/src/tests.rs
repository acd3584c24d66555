use weir_sdk::location::Binding;
use weir_sdk::testing::{self, json};
use weir_sdk::transactions::State;
use weir_sdk::{BindingChange, BindingEvent, Event, Header, Message, Module, Verdict};

use super::{json_str, key_of, Tsilo};

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

const AOR: &str = "sip:bob@example.com";

fn invite(tx: u64) -> Message<'static> {
    let mut m = testing::request(INVITE);
    testing::set_transaction(&mut m, tx);
    m
}

fn module(params: weir_sdk::testing::JsonValue) -> Tsilo {
    testing::reset();
    testing::init(params).unwrap()
}

fn event(change: BindingChange, contact: &str) -> BindingEvent {
    BindingEvent {
        change,
        aor: AOR.into(),
        contact: contact.into(),
        expires_at_ms: 0,
        instance: None,
        params: Vec::new(),
    }
}

fn push_binding(contact: &str) -> Binding {
    let mut b = Binding::new(contact);
    b.params = vec![
        Header::new("pn-provider", "fcm"),
        Header::new("pn-prid", "tok\"en"),
        Header::new("pn-param", "proj"),
    ];
    b
}

#[test]
fn keys_follow_use_domain() {
    assert_eq!(key_of("sip:bob@example.com", false).as_deref(), Some("bob"));
    assert_eq!(
        key_of("<sips:Bob;x=1@EXAMPLE.com:5061;transport=tcp>", true).as_deref(),
        Some("Bob@example.com")
    );
    assert_eq!(
        key_of("sip:bob@[::1]:5070", true).as_deref(),
        Some("bob@::1")
    );
    assert_eq!(key_of("sip:example.com", false), None);
    assert_eq!(key_of("tel:+123", false), None);
}

#[test]
fn json_strings_are_escaped() {
    assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

#[test]
fn bad_params_are_refused() {
    testing::reset();
    assert!(testing::init_err::<Tsilo>(json!({ "wait_ms": 400000 })).contains("wait_ms"));
    assert!(testing::init_err::<Tsilo>(json!({ "wait_code": 200 })).contains("wait_code"));
    assert!(
        testing::init_err::<Tsilo>(json!({ "push": { "url": "ftp://x" } })).contains("push.url")
    );
    assert!(testing::init_err::<Tsilo>(json!({ "bogus": 1 })).contains("bogus"));
}

#[test]
fn invite_with_contacts_is_stored_and_left_to_the_lookup() {
    let m = module(json!({}));
    testing::set_bindings(AOR, vec![Binding::new("sip:bob@192.0.2.5")]);
    testing::set_tx_state(7, State::Pending);
    assert_eq!(m.on_request(&mut invite(7)).unwrap(), Verdict::Continue);
    assert_eq!(testing::watched(), vec![7]);
    // A second device registers: the pending INVITE forks to it.
    testing::set_bindings(
        AOR,
        vec![
            Binding::new("sip:bob@192.0.2.5"),
            Binding::new("sip:bob@192.0.2.6"),
        ],
    );
    m.on_binding(&event(BindingChange::Added, "sip:bob@192.0.2.6"))
        .unwrap();
    let added = testing::added_branches();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].0, 7);
    assert_eq!(added[0].1.uri, "sip:bob@192.0.2.6");
    assert_eq!(
        testing::appended(),
        vec![(7, AOR.to_string(), Some("sip:bob@192.0.2.6".to_string()))]
    );
}

#[test]
fn callee_without_contact_waits_and_rings_when_registering() {
    let m = module(json!({ "wait_ms": 5000 }));
    testing::set_tx_state(9, State::Pending);
    match m.on_request(&mut invite(9)).unwrap() {
        Verdict::Wait(w) => {
            assert!(w.branches.is_empty());
            assert_eq!((w.timeout_ms, w.code), (5000, 480));
        }
        other => panic!("{other:?}"),
    }
    testing::set_bindings(AOR, vec![Binding::new("sip:bob@192.0.2.9")]);
    m.on_binding(&event(BindingChange::Added, "sip:bob@192.0.2.9"))
        .unwrap();
    assert_eq!(testing::added_branches().len(), 1);
    // Removed and expired bindings add nothing.
    m.on_binding(&event(BindingChange::Removed, "sip:bob@192.0.2.9"))
        .unwrap();
    assert_eq!(testing::appended().len(), 1);
}

#[test]
fn without_wait_a_callee_without_contact_is_left_to_the_lookup() {
    let m = module(json!({}));
    testing::set_tx_state(3, State::Pending);
    assert_eq!(m.on_request(&mut invite(3)).unwrap(), Verdict::Continue);
}

#[test]
fn ended_transactions_leave_the_silo() {
    let m = module(json!({ "wait_ms": 5000 }));
    testing::set_tx_state(11, State::Pending);
    m.on_request(&mut invite(11)).unwrap();
    m.on_event(&Event::TransactionDone(11)).unwrap();
    testing::set_bindings(AOR, vec![Binding::new("sip:bob@192.0.2.9")]);
    m.on_binding(&event(BindingChange::Added, "sip:bob@192.0.2.9"))
        .unwrap();
    assert!(testing::appended().is_empty());
    // A transaction answered meanwhile is dropped from the silo on the next event.
    testing::set_tx_state(12, State::Answered);
    m.on_request(&mut invite(12)).unwrap();
    m.on_binding(&event(BindingChange::Refreshed, "sip:bob@192.0.2.9"))
        .unwrap();
    assert!(testing::appended().is_empty());
    assert!(weir_sdk::kv::get("x:12").unwrap().is_none());
}

#[test]
fn push_devices_get_a_push_and_the_call_waits() {
    let m = module(json!({
        "push": { "url": "http://127.0.0.1:8090/push", "wait_ms": 20000 }
    }));
    testing::grant_http("http://127.0.0.1:8090/");
    testing::set_tx_state(5, State::Pending);
    testing::set_bindings(
        AOR,
        vec![
            push_binding("sip:bob@192.0.2.7:5060"),
            Binding::new("sip:bob@192.0.2.8"),
        ],
    );
    match m.on_request(&mut invite(5)).unwrap() {
        Verdict::Wait(w) => {
            // The desk phone rings at once; the mobile after its re-registration.
            assert_eq!(w.branches.len(), 1);
            assert_eq!(w.branches[0].uri, "sip:bob@192.0.2.8");
            assert_eq!(w.timeout_ms, 20000);
        }
        other => panic!("{other:?}"),
    }
    let pushes = testing::http_requests();
    assert_eq!(pushes.len(), 1);
    let body = String::from_utf8(pushes[0].1.body.clone()).unwrap();
    assert!(body.contains("\"pn-provider\":\"fcm\""), "{body}");
    assert!(body.contains("\"pn-prid\":\"tok\\\"en\""), "{body}");
    assert!(body.contains("\"call-id\":\"1@192.0.2.1\""), "{body}");
    assert_eq!(pushes[0].1.method, "POST");
    // The woken phone refreshes its binding: it is forked to.
    m.on_binding(&event(BindingChange::Refreshed, "sip:bob@192.0.2.7:5060"))
        .unwrap();
    let added = testing::added_branches();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].1.uri, "sip:bob@192.0.2.7:5060");
}

#[test]
fn requests_other_than_initial_invites_pass() {
    let m = module(json!({ "wait_ms": 5000 }));
    let mut bye = testing::request(&INVITE.replace("INVITE", "BYE"));
    testing::set_transaction(&mut bye, 4);
    assert_eq!(m.on_request(&mut bye).unwrap(), Verdict::Continue);
    let mut reinvite = testing::request(&INVITE.replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=b1",
    ));
    testing::set_transaction(&mut reinvite, 4);
    assert_eq!(m.on_request(&mut reinvite).unwrap(), Verdict::Continue);
    // Stateless route: no transaction id.
    assert_eq!(
        m.on_request(&mut testing::request(INVITE)).unwrap(),
        Verdict::Continue
    );
    assert!(testing::watched().is_empty());
}
