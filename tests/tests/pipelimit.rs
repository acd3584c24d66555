//! The pipelimit module in the real proxy: a TAILDROP pipe of 20 initial requests per
//! 1 s window over all traffic. Driven by raw UDP peers (exact counts within one window,
//! every 503 checked) and by sipp at three times the limit (calls pass or get 503 with a
//! Retry-After in range, and no window passes more than the limit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sipp::{self, Transport, Uac, Uas};
use weir_system_tests::{conf, paths, Proxy, SipMsg};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Initial requests per window.
const LIMIT: u64 = 20;

/// The pipelimit module as `limit`: one TAILDROP pipe `all` of [`LIMIT`] per 1 s, 503
/// with a Retry-After in `retry` (seconds, inclusive).
fn pipelimit(retry: (u32, u32)) -> String {
    format!(
        "[modules.limit]\ncomponent = \"{}\"\ntimeout_ms = 1000\n\
         [modules.limit.params]\ntimer_interval = 1\n\
         retry_after_min = {}\nretry_after_max = {}\n\
         [modules.limit.params.pipes.all]\nalgorithm = \"TAILDROP\"\nlimit = {LIMIT}\n\n",
        paths::plugin_wasm("pipelimit").display(),
        retry.0,
        retry.1
    )
}

fn start(route: &str, retry: (u32, u32)) -> Proxy {
    Proxy::start_with(|port| {
        format!(
            "{}{}{}{route}",
            conf::header(),
            conf::listeners(port),
            pipelimit(retry)
        )
    })
}

fn now_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(d.as_millis()).unwrap()
}

/// Sleep until just after the next whole second (the module's windows are wall-clock
/// seconds), so what follows fits in one window.
fn wait_for_window_start() {
    let ms = now_ms() % 1000;
    std::thread::sleep(Duration::from_millis(1000 - ms + 20));
}

/// The Retry-After of a 503, checked to be in `range`.
fn retry_after(reply: &SipMsg, range: (u32, u32)) -> u32 {
    let value: u32 = reply
        .header("Retry-After")
        .unwrap_or_else(|| panic!("503 without Retry-After:\n{}", reply.text()))
        .trim()
        .parse()
        .unwrap();
    assert!(
        (range.0..=range.1).contains(&value),
        "Retry-After {value} outside {range:?}"
    );
    value
}

#[test]
fn taildrop_passes_the_limit_per_window_and_answers_the_rest_503() {
    let uas = UdpPeer::bind();
    let route = format!(
        "[[route]]\nname = \"default\"\nmode = \"stateless\"\nnext_hop = \"{}\"\n\
         request = [{{ module = \"limit\", on_error = \"reply-500\" }}]\n\n",
        uas.uri()
    );
    let range = (10, 309); // the module's default, Kamailio's 10 + random mod 300
    let proxy = start(&route, range);
    let ua = UdpPeer::bind();

    const SENT: u64 = LIMIT + 10;
    let mut seen = Vec::new();
    // A window can be cut short by a slow machine; try a few.
    for _ in 0..3 {
        wait_for_window_start();
        let started = now_ms();
        for _ in 0..SENT {
            ua.send(&ua.request("INVITE", "sip:bob@example.com"), proxy.addr());
        }
        let mut rejected = Vec::new();
        while let Some((reply, _)) = ua.recv(Duration::from_millis(500)) {
            assert_eq!(reply.status(), Some(503), "{}", reply.text());
            assert_eq!(reply.reason(), Some("Server Unavailable"));
            rejected.push(retry_after(&reply, range));
        }
        let mut forwarded = 0;
        while let Some((req, _)) = uas.recv(Duration::from_millis(200)) {
            assert_eq!(req.method(), Some("INVITE"));
            forwarded += 1;
        }
        assert_eq!(forwarded + rejected.len() as u64, SENT);
        // Exactly LIMIT pass iff all were counted in one window; split over two
        // windows (k and SENT - k, 10 <= k <= 20 or not), more pass, but never more
        // than LIMIT in either.
        if forwarded == LIMIT {
            seen.extend(rejected);
            break;
        }
        assert!(forwarded <= 2 * LIMIT, "{forwarded} forwarded");
        eprintln!(
            "the burst straddled a window boundary ({} ms in); again",
            now_ms() - started
        );
    }
    assert_eq!(
        seen.len() as u64,
        SENT - LIMIT,
        "no run fitted in one window"
    );

    // In-dialog requests and ACKs are not counted: they still pass.
    let mut bye = ua.request("BYE", "sip:bob@127.0.0.1");
    bye = bye.set_header("To", "<sip:bob@example.com>;tag=b1");
    ua.send(&bye, proxy.addr());
    assert_eq!(uas.expect("in-dialog BYE").0.method(), Some("BYE"));

    // The next window starts from 0.
    wait_for_window_start();
    ua.send(&ua.request("INVITE", "sip:bob@example.com"), proxy.addr());
    assert_eq!(
        uas.expect("INVITE of a new window").0.method(),
        Some("INVITE")
    );

    proxy.assert_running();
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

#[test]
fn sipp_calls_above_the_limit_pass_or_get_503_with_retry_after() {
    const CALLS: u32 = 180;
    const RATE: u32 = 60; // three times the limit
    let uas = Uas::start(LOCAL, Transport::Udp);
    let route = conf::stateful_route(
        "default",
        &format!("\"{}\"", uas.uri()),
        "request = [{ module = \"limit\", on_error = \"reply-500\" }]",
    );
    let proxy = start(&route, (10, 20));
    let mut uac = Uac::new(proxy.addr(), Transport::Udp, CALLS, RATE);
    uac.scenario = Some(sipp::scenario("pipelimit_uac.xml"));
    let run = uac.run();
    let report = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    // Both outcomes end the call normally; a Retry-After outside 10..=20 fails it.
    assert_eq!(run.exit_code, Some(0), "{report}");
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{report}");
    assert_eq!(run.failed, Some(0), "{report}");

    proxy.assert_running();
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    // Weir's only local replies here are the module's 503s.
    let limited = stats.get("local_replies");
    let passed = u64::from(CALLS) - limited;
    // The run touches at most ceil(elapsed) + 1 windows, each passing at most LIMIT.
    let windows = run.elapsed.as_secs() + 2;
    assert!(
        passed <= LIMIT * windows,
        "{passed} passed in {windows} windows, {stats:?}"
    );
    assert!(passed >= LIMIT, "{passed} passed, {stats:?}");
    assert!(
        limited >= u64::from(CALLS) / 3,
        "{limited} limited, {stats:?}"
    );
    // Every passed INVITE was forwarded, with its ACK and BYE.
    assert!(stats.get("forwarded") >= 3 * passed, "{stats:?}");
    eprintln!(
        "pipelimit: {passed} passed, {limited} got 503, in {:?} ({stats:?})",
        run.elapsed
    );
}
