use super::*;
use crate::{kv, log, EditError, Header, NoConfig, Verdict};

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
f: Alice <sip:alice@example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@192.0.2.1>\r\n\
Contact: <sip:alice@198.51.100.1>\r\n\
X-Foo: a, b\r\n\
Subject: lunch\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\n";

#[test]
fn parses_request_and_reads_headers() {
    let msg = request(INVITE);
    assert!(msg.is_request());
    assert_eq!(msg.method(), "INVITE");
    assert_eq!(msg.status(), 0);
    assert_eq!(msg.reason(), "");
    assert_eq!(msg.request_uri(), "sip:bob@example.com");
    assert_eq!(msg.body(), b"v=0\n");
    assert_eq!(
        msg.header("call-id").as_deref(),
        Some("a84b4c76e66710@pc33.example.com")
    );
    assert_eq!(msg.header("F"), msg.header("From"));
    assert_eq!(
        msg.header_values("Contact"),
        vec!["<sip:alice@192.0.2.1>", "<sip:alice@198.51.100.1>"]
    );
    assert_eq!(msg.header_values("VIA").len(), 2);
    assert_eq!(msg.header_values("x-foo"), vec!["a, b"]);
    assert_eq!(msg.header_names()[1], "v");
    assert_eq!(
        msg.headers()[0],
        Header::new("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds")
    );
    assert!(msg.has_header("content-type"));
    assert!(!msg.has_header("Route"));
    assert_eq!(msg.source(), Address::new("192.0.2.1", 5060));
    assert_eq!(msg.transport(), Transport::Udp);
    assert_eq!(msg.listener(), "default");
}

#[test]
fn parses_reply_and_takes_method_from_cseq() {
    let msg = reply("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCSeq: 7 INVITE\n\n");
    assert!(msg.is_reply());
    assert_eq!(msg.status(), 180);
    assert_eq!(msg.reason(), "Ringing");
    assert_eq!(msg.method(), "INVITE");
    assert_eq!(msg.request_uri(), "");
}

#[test]
fn folded_lines_are_joined_and_bad_text_is_refused() {
    let msg =
        request("OPTIONS sip:a@b SIP/2.0\r\nSubject: I know you're there,\r\n  pick up\r\n\r\n");
    assert_eq!(
        msg.header("s").as_deref(),
        Some("I know you're there, pick up")
    );
    assert_eq!(parse("HELLO\r\n\r\n").unwrap_err().line, 1);
    assert_eq!(parse("SIP/2.0 99 Odd\r\n\r\n").unwrap_err().line, 1);
    let err = parse("OPTIONS sip:a@b SIP/2.0\r\nVia x\r\n\r\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(parse("OPTIONS sip:a@b SIP/2.0\r\n folded\r\n\r\n").is_err());
    assert!(parse("OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n").is_err());
}

#[test]
fn serialize_round_trips() {
    let msg = request(INVITE);
    assert_eq!(serialize(&msg), INVITE);
    // Written as the host writes it: CRLF, and a Content-Length matching the body.
    let lf = "OPTIONS sip:a@b SIP/2.0\nTo: <sip:a@b>\n\n";
    assert_eq!(
        serialize(&request(lf)),
        "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nContent-Length: 0\r\n\r\n"
    );
    let wrong = "OPTIONS sip:a@b SIP/2.0\r\nl: 99\r\n\r\nhi";
    assert_eq!(
        serialize(&request(wrong)),
        "OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi"
    );
}

#[test]
fn protected_headers_cannot_be_added_set_or_removed() {
    let mut msg = request(INVITE);
    for name in [
        "Via",
        "v",
        "Content-Length",
        "l",
        "CSeq",
        "cseq",
        "Call-ID",
        "I",
    ] {
        assert_eq!(
            msg.add_header(name, "x"),
            Err(EditError::ProtectedHeader(name.into()))
        );
        assert_eq!(
            msg.set_header(name, "x"),
            Err(EditError::ProtectedHeader(name.into()))
        );
        assert_eq!(
            msg.remove_header(name),
            Err(EditError::ProtectedHeader(name.into()))
        );
    }
    assert_eq!(serialize(&msg), INVITE);
}

#[test]
fn rename_is_allowed_within_one_header_only() {
    let mut msg = request(INVITE);
    assert_eq!(msg.rename_header("Via", "v"), Ok(2));
    assert_eq!(msg.rename_header("Call-ID", "i"), Ok(1));
    assert_eq!(msg.rename_header("m", "Contact"), Ok(2));
    assert_eq!(msg.header_names()[..2], ["v", "v"]);
    assert_eq!(
        msg.rename_header("X-Foo", "Via"),
        Err(EditError::ProtectedHeader("Via".into()))
    );
    assert_eq!(
        msg.rename_header("v", "X-Via"),
        Err(EditError::ProtectedHeader("v".into()))
    );
    assert!(matches!(
        msg.rename_header("X-Foo", "X Bar"),
        Err(EditError::Invalid(_))
    ));
    assert_eq!(msg.rename_header("X-Foo", "X-Bar"), Ok(1));
    assert_eq!(msg.rename_header("X-Missing", "X-Other"), Ok(0));
}

#[test]
fn add_set_remove_follow_compact_forms() {
    let mut msg = request(INVITE);
    assert_eq!(msg.remove_header("Contact"), Ok(2));
    assert!(!msg.has_header("m"));
    assert_eq!(msg.remove_header("contact"), Ok(0));
    msg.set_header("Subject", "dinner").unwrap();
    assert_eq!(msg.header_values("s"), vec!["dinner"]);
    msg.add_header("s", "again").unwrap();
    msg.set_header("S", "once").unwrap();
    assert_eq!(msg.header_values("Subject"), vec!["once"]);
    // set_header keeps the position of the first line.
    let names = msg.header_names();
    let subject = names.iter().position(|n| n == "S").unwrap();
    assert_eq!(names[subject - 1], "X-Foo");
    msg.set_header("X-New", "1").unwrap();
    assert_eq!(msg.header_names().last().map(String::as_str), Some("X-New"));
    msg.add_header("X-Weir", "mobile").unwrap();
    assert_eq!(msg.headers().last(), Some(&Header::new("X-Weir", "mobile")));
}

#[test]
fn invalid_edits_are_refused() {
    let mut msg = request(INVITE);
    assert!(matches!(
        msg.add_header("X Bad", "1"),
        Err(EditError::Invalid(_))
    ));
    assert!(matches!(
        msg.add_header("", "1"),
        Err(EditError::Invalid(_))
    ));
    assert!(matches!(
        msg.add_header("X-Ok", "1\r\nVia: evil"),
        Err(EditError::Invalid(_))
    ));
    assert!(matches!(
        msg.set_request_uri("not a uri"),
        Err(EditError::Invalid(_))
    ));
    assert!(matches!(
        msg.set_request_uri("bob"),
        Err(EditError::Invalid(_))
    ));
    msg.set_request_uri("sip:bob@10.0.0.2:5060;transport=tcp")
        .unwrap();
    assert_eq!(msg.request_uri(), "sip:bob@10.0.0.2:5060;transport=tcp");
    let mut r = reply("SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n");
    assert!(matches!(
        r.set_request_uri("sip:a@b"),
        Err(EditError::Invalid(_))
    ));
}

#[test]
fn set_body_keeps_content_length_right_on_the_wire() {
    let mut msg = request(INVITE);
    msg.set_body("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n").unwrap();
    assert_eq!(msg.body().len(), 31);
    // As in the host, the header is fixed when the message is written.
    assert_eq!(msg.header("Content-Length").as_deref(), Some("4"));
    assert!(serialize(&msg).contains("\r\nl: 31\r\n\r\nv=0\r\n"));
    let mut bare = request("OPTIONS sip:a@b SIP/2.0\r\n\r\n");
    bare.set_body(b"hi").unwrap();
    assert_eq!(
        serialize(&bare),
        "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhi"
    );
}

#[test]
fn edits_past_the_size_limit_are_refused() {
    let mut msg = request(INVITE);
    set_max_size(&mut msg, INVITE.len() + 10);
    assert_eq!(
        msg.add_header("X-Big", &"x".repeat(20)),
        Err(EditError::TooLarge)
    );
    assert_eq!(serialize(&msg), INVITE);
    msg.add_header("X-A", "1").unwrap();
    set_max_size(&mut msg, 10);
    // Shrinking is always allowed.
    assert_eq!(msg.remove_header("X-A"), Ok(1));
}

#[test]
fn source_transport_listener_can_be_set() {
    let mut msg = request(INVITE);
    set_source(&mut msg, Address::new("2001:db8::1", 5062));
    set_transport(&mut msg, Transport::Wss);
    set_listener(&mut msg, "ws-public");
    assert_eq!(msg.source().to_string(), "[2001:db8::1]:5062");
    assert_eq!(msg.transport(), Transport::Wss);
    assert_eq!(msg.listener(), "ws-public");
}

#[test]
fn logs_are_recorded() {
    log::info!("hello {}", 42);
    log::error!("plain");
    log::write(Level::Trace, "t");
    let lines = take_logs();
    assert_eq!(
        lines,
        vec![
            LogLine {
                level: Level::Info,
                message: "hello 42".into()
            },
            LogLine {
                level: Level::Error,
                message: "plain".into()
            },
            LogLine {
                level: Level::Trace,
                message: "t".into()
            },
        ]
    );
    assert!(logs().is_empty());
}

#[test]
fn kv_mock_expires_and_counts() {
    kv::set("a", "1", Some(Duration::from_secs(1))).unwrap();
    assert_eq!(kv::get_string("a").unwrap().as_deref(), Some("1"));
    assert_eq!(kv::incr("a", 5, None), Ok(6));
    advance(Duration::from_millis(999));
    assert!(kv::get("a").unwrap().is_some());
    advance(Duration::from_millis(1));
    assert_eq!(kv::get("a"), Ok(None));
    assert_eq!(kv::delete("a"), Ok(false));
    assert_eq!(kv::incr("n", -2, Some(Duration::from_secs(5))), Ok(-2));
    kv::set("s", "abc", None).unwrap();
    assert_eq!(kv::incr("s", 1, None), Err(KvError::NotANumber));
    assert_eq!(kv::delete("s"), Ok(true));
    fail_kv(Some(KvError::Backend("down".into())));
    assert_eq!(kv::get("n"), Err(KvError::Backend("down".into())));
    fail_kv(None);
    assert_eq!(kv::get_string("n").unwrap().as_deref(), Some("-2"));
    reset();
    assert_eq!(kv::get("n"), Ok(None));
}

#[test]
fn clocks_move_only_when_told() {
    assert_eq!(crate::clock::now_ms(), mock::START_MS);
    let t0 = crate::clock::monotonic();
    advance(Duration::from_millis(1500));
    assert_eq!(crate::clock::monotonic() - t0, Duration::from_millis(1500));
    assert_eq!(crate::clock::now_ms(), mock::START_MS + 1500);
    set_now_ms(0);
    assert_eq!(crate::clock::now(), std::time::SystemTime::UNIX_EPOCH);
}

#[test]
fn load_is_zero_until_set() {
    use crate::system::{self, Load};
    assert_eq!(system::load(), Load::default());
    let busy = Load {
        cpu: 0.75,
        rx_queue_bytes: 4096,
    };
    set_load(busy);
    assert_eq!(system::load(), busy);
    reset();
    assert_eq!(system::load(), Load::default());
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cfg {
    greeting: String,
    limits: Limits,
    #[serde(default)]
    ports: Vec<u16>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    burst: u32,
}

struct Greeter(Cfg);

impl Module for Greeter {
    type Config = Cfg;
    fn init(config: Cfg) -> Result<Self, Error> {
        if config.greeting.is_empty() {
            return Err(Error::new("greeting must not be empty"));
        }
        Ok(Greeter(config))
    }
    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        msg.add_header("X-Greeting", &self.0.greeting)?;
        Ok(Verdict::Continue)
    }
}

#[test]
fn init_goes_through_the_host_param_path() {
    let g: Greeter =
        init(json!({ "greeting": "hi", "limits": { "burst": 3 }, "ports": [5060] })).unwrap();
    assert_eq!(g.0.limits.burst, 3);
    assert_eq!(g.0.ports, vec![5060]);
    let mut msg = request(INVITE);
    assert_eq!(g.on_request(&mut msg).unwrap(), Verdict::Continue);
    // on_reply defaults to Continue.
    assert_eq!(g.on_reply(&mut msg).unwrap(), Verdict::Continue);

    let err = init_err::<Greeter>(json!({ "greeting": "hi", "limits": { "burst": "x" } }));
    assert!(
        err.starts_with("param `limits.burst`: invalid type"),
        "{err}"
    );
    let err = init_err::<Greeter>(json!({ "greeting": "", "limits": { "burst": 1 } }));
    assert_eq!(err, "greeting must not be empty");
    let err = init_err::<Greeter>(json!({ "greeting": "hi", "limits": { "burst": 1 }, "x": null }));
    assert!(err.contains("`x`"), "{err}");
    let err =
        init_err::<Greeter>(json!({ "greeting": "hi", "limits": { "burst": 1 }, "x": [1, "a"] }));
    assert!(err.contains("`x`"), "{err}");
    assert!(init::<NoConfig2>(json!({})).is_ok());
    assert!(init::<NoConfig2>(json!({ "a": 1 })).is_err());
}

struct NoConfig2;

impl Module for NoConfig2 {
    type Config = NoConfig;
    fn init(_: NoConfig) -> Result<Self, Error> {
        Ok(NoConfig2)
    }
    fn on_request(&self, _: &mut Message) -> Result<Verdict, Error> {
        Ok(Verdict::Drop)
    }
}

#[test]
fn hook_failure_status_and_cancelled_follow_the_harness() {
    let mut msg = request(
        "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\r\n",
    );
    assert_eq!(msg.hook(), crate::Hook::Request);
    assert_eq!(msg.failure_status(), 0);
    assert!(!msg.is_cancelled());
    set_failure(&mut msg, 486);
    set_cancelled(&mut msg, true);
    assert_eq!(msg.hook(), crate::Hook::Failure);
    assert_eq!(msg.failure_status(), 486);
    assert!(msg.is_cancelled());
    let r = reply("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\r\n");
    assert_eq!(r.hook(), crate::Hook::Reply);
}

#[test]
fn subscribers_and_connections_follow_the_harness() {
    use crate::subscribers::{self, Credentials};
    use crate::{connections, KvError};

    assert_eq!(subscribers::lookup("alice", "example.com"), Ok(None));
    add_subscriber(Credentials::with_password("alice", "example.com", "pw"));
    let found = subscribers::lookup("alice", "example.com")
        .unwrap()
        .unwrap();
    assert_eq!(found.password.as_deref(), Some("pw"));
    assert_eq!(subscribers::lookup("alice", "example.org"), Ok(None));
    assert!(matches!(
        subscribers::lookup(&"a".repeat(513), "example.com"),
        Err(KvError::Limit(_))
    ));
    fail_subscribers(Some(KvError::Backend("down".into())));
    assert_eq!(
        subscribers::lookup("alice", "example.com"),
        Err(KvError::Backend("down".into()))
    );
    fail_subscribers(None);
    assert!(remove_subscriber("alice", "example.com"));
    assert!(!remove_subscriber("alice", "example.com"));

    let mut msg = request(INVITE);
    assert_eq!(msg.connection_id(), 0);
    set_connection(&mut msg, 9);
    assert_eq!(msg.connection_id(), 9);
    assert!(!connections::bind(0, "alice@example.com"));
    assert!(!connections::bind(9, ""));
    assert!(connections::bind(9, "alice@example.com"));
    assert_eq!(
        connections::identity(9).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        connection_identities(),
        vec![(9, "alice@example.com".into())]
    );
    add_subscriber(Credentials::with_password("bob", "example.com", "pw"));
    reset();
    assert_eq!(connections::identity(9), None);
    assert_eq!(subscribers::lookup("bob", "example.com"), Ok(None));
}

#[test]
fn transaction_id_and_vars_follow_the_host_bounds() {
    let mut msg = request(INVITE);
    assert_eq!(msg.transaction_id(), 0);
    set_transaction(&mut msg, 42);
    assert_eq!(msg.transaction_id(), 42);

    assert_eq!(msg.var("gw"), None);
    assert!(msg.set_var("gw", "sip:10.0.0.1"));
    assert!(msg.set_var("gw", "sip:10.0.0.2"));
    assert_eq!(msg.var("gw").as_deref(), Some("sip:10.0.0.2"));
    assert_eq!(msg.var("GW"), None); // names are exact
    assert!(!msg.set_var("", "x"));
    assert!(msg.set_var(&"n".repeat(64), ""));
    assert!(!msg.set_var(&"n".repeat(65), "x"));
    assert!(msg.set_var("big", &"v".repeat(4096)));
    assert!(!msg.set_var("bigger", &"v".repeat(4097)));
    for i in 3..32 {
        assert!(msg.set_var(&format!("v{i}"), "x"), "{i}");
    }
    assert!(!msg.set_var("one-too-many", "x"));
    assert!(msg.set_var("gw", "replacing is fine when full"));
    assert_eq!(msg.var("one-too-many"), None);
}

#[test]
fn timers_mock_checks_like_the_host() {
    use crate::timers;
    timers::every("a", Duration::from_secs(1)).unwrap();
    timers::every("b", Duration::from_micros(10_500)).unwrap();
    timers::every("a", Duration::from_secs(2)).unwrap();
    assert_eq!(
        super::timers(),
        vec![
            ("a".to_string(), Duration::from_secs(2)),
            ("b".to_string(), Duration::from_millis(11)),
        ]
    );
    let err = timers::every("c", Duration::from_millis(9)).unwrap_err();
    assert!(err.is::<crate::HostError>());
    assert!(
        err.to_string().starts_with("timers.every refused: "),
        "{err}"
    );
    assert!(timers::every("c", Duration::from_secs(86_401)).is_err());
    assert!(timers::every("", Duration::from_secs(1)).is_err());
    assert!(timers::every(&"x".repeat(65), Duration::from_secs(1)).is_err());
    for i in 2..16 {
        timers::every(&format!("t{i}"), Duration::from_secs(1)).unwrap();
    }
    assert!(timers::every("t16", Duration::from_secs(1)).is_err());
    assert!(timers::cancel("a"));
    assert!(!timers::cancel("a"));
    assert_eq!(super::timers().len(), 15);
    reset();
    assert!(super::timers().is_empty());
}

#[test]
fn requests_mock_records_checks_and_fails() {
    use crate::requests::{self, Request};
    let probe = Request::new("OPTIONS", "sip:gw1.example.com").destination("sip:10.0.0.1:5060");
    assert_eq!(requests::send(&probe, "gw1").unwrap(), 1);
    let msg = Request::new("MESSAGE", "sip:bob@example.com").body("text/plain", "hi");
    assert_eq!(requests::send(&msg, "m").unwrap(), 2);
    assert_eq!(
        sent_requests(),
        vec![
            (1, probe.clone(), "gw1".to_string()),
            (2, msg, "m".to_string())
        ]
    );
    for bad in [
        Request::new("INVITE", "sip:a@b"),
        Request::new("cancel", "sip:a@b"),
        Request::new("BAD METHOD", "sip:a@b"),
        Request::new("OPTIONS", "not a uri"),
        Request::new("OPTIONS", "sip:a@b").destination("nowhere"),
        Request::new("OPTIONS", "sip:a@b").header("v", "SIP/2.0/UDP x"),
        Request::new("OPTIONS", "sip:a@b").header("Max-Forwards", "1"),
        Request::new("OPTIONS", "sip:a@b").header("X-A", "a\r\nb"),
        Request::new("OPTIONS", "sip:a@b").timeout(Duration::from_millis(99)),
        Request::new("OPTIONS", "sip:a@b").timeout(Duration::from_secs(33)),
    ] {
        let err = requests::send(&bad, "t").unwrap_err();
        assert!(
            err.to_string().starts_with("requests.send refused: "),
            "{err}"
        );
    }
    assert!(requests::send(&probe, &"t".repeat(257)).is_err());
    fail_requests(Some("too many requests in flight".into()));
    let err = requests::send(&probe, "gw1").unwrap_err();
    assert_eq!(
        err.downcast_ref::<crate::HostError>()
            .map(|e| e.message.as_str()),
        Some("too many requests in flight")
    );
    fail_requests(None);
    assert_eq!(requests::send(&probe, "gw1").unwrap(), 3);
    assert_eq!(sent_requests().len(), 3);
}

#[test]
fn http_mock_needs_a_grant_and_shares_ids() {
    use crate::http::{self, Request};
    use crate::requests;
    let push = Request::post("http://127.0.0.1:8080/push/apns", "application/json", "{}");
    let err = http::send(&push, "p").unwrap_err();
    assert!(err.to_string().contains("not granted"), "{err}");
    grant_http("http://127.0.0.1:8080/push/");
    assert_eq!(
        requests::send(&requests::Request::new("OPTIONS", "sip:a@b"), "").unwrap(),
        1
    );
    assert_eq!(http::send(&push, "p").unwrap(), 2);
    assert_eq!(http_requests(), vec![(2, push.clone(), "p".to_string())]);
    assert!(http::send(&Request::get("http://127.0.0.1:8080/admin"), "x").is_err());
    assert!(http::send(&push.clone().timeout(Duration::from_secs(61)), "x").is_err());
    assert!(http::send(&push.clone().header("Bad Name", "x"), "x").is_err());
    fail_http(Some("connection pool exhausted".into()));
    assert!(http::send(&push, "p").is_err());
    fail_http(None);
    assert_eq!(http::send(&push, "p").unwrap(), 3);
}

#[test]
fn transactions_mock_follows_states_and_appends_contacts() {
    use crate::location::Binding;
    use crate::transactions::{self, State};

    assert_eq!(transactions::state(5), State::Gone);
    assert!(!transactions::watch(5));
    let err = transactions::add_branch(5, &BranchTarget::new("sip:a@b")).unwrap_err();
    assert!(err.to_string().contains("not pending"), "{err}");

    set_tx_state(5, State::Pending);
    assert!(transactions::watch(5));
    assert!(transactions::watch(5));
    assert_eq!(watched(), vec![5]);
    transactions::add_branch(5, &BranchTarget::new("sip:alice@192.0.2.10")).unwrap();
    assert!(transactions::add_branch(5, &BranchTarget::new("nope")).is_err());
    let mut long_path = BranchTarget::new("sip:a@b");
    long_path.path = vec!["<sip:p;lr>".into(); 9];
    assert!(transactions::add_branch(5, &long_path).is_err());

    let mut nated = Binding::new("sip:alice@10.1.1.1:5060");
    nated.destination = Some("sip:198.51.100.1:40000".into());
    set_bindings(
        "sip:alice@example.com",
        vec![
            Binding::new("sip:alice@192.0.2.10"),
            nated.clone(),
            Binding::new("sip:alice@192.0.2.12"),
        ],
    );
    assert_eq!(
        transactions::append_contacts(5, "sip:alice@example.com", Some("sip:alice@10.1.1.1:5060"))
            .unwrap(),
        1
    );
    // The first binding is a branch already, the second was just added.
    assert_eq!(
        transactions::append_contacts(5, "sip:alice@example.com", None).unwrap(),
        1
    );
    assert_eq!(
        transactions::append_contacts(5, "sip:alice@example.com", None).unwrap(),
        0
    );
    assert_eq!(
        transactions::append_contacts(5, "sip:nobody@example.com", None).unwrap(),
        0
    );
    assert_eq!(
        added_branches(),
        vec![
            (5, BranchTarget::new("sip:alice@192.0.2.10")),
            (5, nated.to_branch()),
            (5, BranchTarget::new("sip:alice@192.0.2.12")),
        ]
    );
    assert_eq!(appended().len(), 4);
    assert_eq!(
        appended()[0],
        (
            5,
            "sip:alice@example.com".to_string(),
            Some("sip:alice@10.1.1.1:5060".to_string())
        )
    );

    set_tx_state(5, State::Answered);
    assert_eq!(transactions::state(5), State::Answered);
    assert!(transactions::append_contacts(5, "sip:alice@example.com", None).is_err());
    assert!(transactions::add_branch(5, &BranchTarget::new("sip:x@y")).is_err());
    set_tx_state(6, State::Pending);
    fail_location(Some("no registrar".into()));
    assert!(transactions::append_contacts(6, "sip:alice@example.com", None).is_err());
    assert_eq!(appended().len(), 4);
    reset();
    assert!(added_branches().is_empty() && watched().is_empty());
    assert_eq!(transactions::state(6), State::Gone);
}

#[test]
fn location_mock_returns_what_was_set() {
    use crate::location::{self, Binding};
    assert_eq!(location::lookup("sip:alice@example.com").unwrap(), vec![]);
    let mut b = Binding::new("sip:alice@192.0.2.10");
    b.q = Some(500);
    b.params.push(Header::new("pn-provider", "fcm"));
    set_bindings("sip:alice@example.com", vec![b.clone()]);
    assert_eq!(location::lookup("sip:alice@example.com").unwrap(), vec![b]);
    fail_location(Some("the proxy runs no registrar".into()));
    let err = location::lookup("sip:alice@example.com").unwrap_err();
    assert_eq!(
        err.to_string(),
        "location.lookup refused: the proxy runs no registrar"
    );
    fail_location(None);
    set_bindings("sip:alice@example.com", vec![]);
    assert!(location::lookup("sip:alice@example.com")
        .unwrap()
        .is_empty());
}

#[test]
fn files_mock_bumps_versions() {
    use crate::files;
    assert_eq!(files::version("list"), None);
    let err = files::read("list").unwrap_err();
    assert!(err.to_string().contains("no file is granted"), "{err}");
    set_file("list", "a");
    assert_eq!(files::version("list"), Some(1));
    set_file("list", String::from("b"));
    let f = files::read("list").unwrap();
    assert_eq!((f.version, f.content), (2, b"b".to_vec()));
    reset();
    assert_eq!(files::version("list"), None);
}

#[test]
fn on_event_defaults_to_ok() {
    let g: Greeter = init(json!({ "greeting": "hi", "limits": { "burst": 3 } })).unwrap();
    assert!(g.on_event(&crate::Event::Timer("t".into())).is_ok());
    assert!(g.on_event(&crate::Event::TransactionDone(1)).is_ok());
}

#[test]
fn header_set_reads_several_headers_at_once() {
    let msg = request(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
         From: <sip:a@example.com>;tag=1\r\n\
         To: <sip:a@example.com>\r\n\
         Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\
         m: <sip:a@192.0.2.1>\r\n\
         Subject:\r\n\
         Contact: <sip:a@192.0.2.2>;expires=0\r\n\r\n",
    );
    let set = msg.header_set("Contact,subject,X-None, t ,from");
    // Every line of a header, compact form included, in message order.
    assert_eq!(
        set.values(0).collect::<Vec<_>>(),
        ["<sip:a@192.0.2.1>", "<sip:a@192.0.2.2>;expires=0"]
    );
    // An empty value is a value; an absent header has none.
    assert_eq!(set.values(1).collect::<Vec<_>>(), [""]);
    assert_eq!(set.first(2), None);
    assert_eq!(set.first(3), Some("<sip:a@example.com>"));
    assert_eq!(set.first(4), Some("<sip:a@example.com>;tag=1"));
    // Beyond the names asked for: nothing.
    assert_eq!(set.first(5), None);
    // The same answers as one call per name.
    for (i, name) in ["Contact", "subject", "X-None", "To", "from"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            set.values(i).map(str::to_string).collect::<Vec<_>>(),
            msg.header_values(name)
        );
    }
    assert_eq!(msg.header_set("").first(0), None);
}
