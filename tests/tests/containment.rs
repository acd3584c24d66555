//! Containment: modules that trap, spin, allocate without bound or fail are cut off by
//! their limits, the route's `on_error` policy decides the request's fate, and the
//! proxy keeps serving with fresh instances. Routes are picked by R-URI domain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use weir_system_tests::conf;
use weir_system_tests::peer::{TcpPeer, UdpPeer};
use weir_system_tests::proxy::MISBEHAVE;
use weir_system_tests::sip::param;
use weir_system_tests::Proxy;

/// Rounds per failure mode: a broken instance must be replaced, not reused.
const ROUNDS: usize = 3;

fn module(name: &str, mode: &str, limits: &str) -> String {
    format!(
        "[modules.{name}]\ncomponent = \"{MISBEHAVE}\"\n{limits}\n[modules.{name}.params]\nmode = \"{mode}\"\n\n"
    )
}

fn route(name: &str, domain: &str, chain: &str, next_hop: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nnext_hop = \"{next_hop}\"\nrequest = [{chain}]\n\n"
    )
}

/// One proxy with a route per behaviour, all forwarding to `uas`.
fn proxy_to(uas: &UdpPeer) -> Proxy {
    let hop = uas.uri();
    Proxy::start_with(|port| {
        let mut c = conf::header() + &conf::listeners(port);
        c += &module("ok", "ok", "");
        // One instance each: an instance that is broken but not replaced would make
        // the next call fail as "no instance available" instead of failing the same way.
        c += &module(
            "trap",
            "trap",
            "timeout_ms = 200\nmemory_mb = 8\nmax_instances = 1",
        );
        c += &module(
            "spin",
            "loop",
            "timeout_ms = 50\nmemory_mb = 8\nmax_instances = 1",
        );
        c += &module(
            "hog",
            "alloc",
            "timeout_ms = 2000\nmemory_mb = 8\nmax_instances = 1",
        );
        c += &module("fail", "error", "timeout_ms = 200\nmax_instances = 1");
        c += &module("deny", "reply", "");
        c += &module("viacut", "edit-via", "");
        c += &route("trap", "trap.test", r#"{ module = "trap" }"#, &hop);
        c += &route("loop", "loop.test", r#"{ module = "spin" }"#, &hop);
        c += &route("alloc", "alloc.test", r#"{ module = "hog" }"#, &hop);
        c += &route("error", "error.test", r#"{ module = "fail" }"#, &hop);
        c += &route(
            "skip",
            "skip.test",
            r#"{ module = "trap", on_error = "skip" }, { module = "spin", on_error = "skip" }, { module = "ok" }"#,
            &hop,
        );
        c += &route(
            "drop",
            "drop.test",
            r#"{ module = "spin", on_error = "drop" }"#,
            &hop,
        );
        c += &route(
            "custom",
            "custom.test",
            r#"{ module = "fail", on_error = "reply-503" }"#,
            &hop,
        );
        c += &route("deny", "deny.test", r#"{ module = "deny" }"#, &hop);
        c += &route(
            "viacut",
            "viacut.test",
            r#"{ module = "viacut", on_error = "skip" }, { module = "ok" }"#,
            &hop,
        );
        c += &route("ok", "ok.test", r#"{ module = "ok" }"#, &hop);
        c
    })
}

/// The proxy answers a keep-alive and a call through the `ok` route reaches the UAS
/// (with the module's mark) and is answered.
fn still_serving(proxy: &Proxy, ua: &UdpPeer, uas: &UdpPeer, after: &str) {
    proxy.assert_running();
    let ka = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    let resp = ua.transact(&ka, proxy.addr(), &format!("keep-alive 200 after {after}"));
    assert_eq!(resp.status(), Some(200), "after {after}: {}", resp.text());
    assert_eq!(
        resp.header("Call-ID"),
        ka.header("Call-ID"),
        "after {after}"
    );
    let invite = ua.request("INVITE", "sip:bob@ok.test");
    ua.send(&invite, proxy.addr());
    let (fwd, from) = uas.expect(&format!("INVITE through the ok route after {after}"));
    assert_eq!(
        fwd.header("Call-ID"),
        invite.header("Call-ID"),
        "after {after}: unexpected request at the UAS: {}",
        fwd.text()
    );
    assert_eq!(fwd.header("X-Ok"), Some("1"), "ok module ran");
    uas.send(&fwd.reply(200, "OK", Some("ok")), from);
    let (ok, _) = ua.expect(&format!("200 through the ok route after {after}"));
    assert_eq!(ok.status(), Some(200), "after {after}: {}", ok.text());
}

/// Each round: a request to `domain` gets `code`, and the proxy keeps serving.
fn answered_each_round(domain: &str, code: u16) -> Proxy {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    for round in 0..ROUNDS {
        let req = ua.request("INVITE", &format!("sip:bob@{domain}"));
        let started = Instant::now();
        let resp = ua.transact(&req, proxy.addr(), &format!("{code} from {domain}"));
        assert_eq!(
            resp.status(),
            Some(code),
            "{domain} round {round}: {}",
            resp.text()
        );
        assert_eq!(resp.header("Call-ID"), req.header("Call-ID"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{domain}: answer took {:?}",
            started.elapsed()
        );
        still_serving(&proxy, &ua, &uas, &format!("{domain} round {round}"));
    }
    proxy
}

/// The proxy logged `n` failures of `module`, each saying `why` (so every call got a
/// working instance to fail in, never "no instance available").
fn failures_logged(proxy: &Proxy, module: &str, why: &str, n: usize) {
    let tag = format!("module={module} ");
    let lines = || -> Vec<String> {
        proxy
            .log()
            .lines()
            .filter(|l| l.contains("module failed") && l.contains(&tag))
            .map(str::to_string)
            .collect()
    };
    let got = weir_system_tests::wait::until(Duration::from_secs(5), || {
        let l = lines();
        (l.len() >= n).then_some(l)
    })
    .unwrap_or_else(|| panic!("{n} failures of {module} not logged:\n{}", proxy.log()));
    assert_eq!(got.len(), n, "{got:#?}");
    for l in &got {
        assert!(l.contains(why), "{module} should fail with {why:?}: {l}");
    }
}

#[test]
fn trapping_module_gets_500_and_is_replaced() {
    let proxy = answered_each_round("trap.test", 500);
    // Over TCP too, on the same connection.
    let mut conn = TcpPeer::connect(proxy.addr());
    conn.send(&conn.request("INVITE", "sip:bob@trap.test"));
    assert_eq!(conn.expect("500 over TCP").status(), Some(500));
    failures_logged(&proxy, "trap", "trap", ROUNDS + 1);
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), ROUNDS as u64 + 1, "{stats:?}");
}

#[test]
fn spinning_module_is_stopped_by_its_deadline_with_500() {
    let proxy = answered_each_round("loop.test", 500);
    failures_logged(&proxy, "spin", "timed out", ROUNDS);
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), ROUNDS as u64, "{stats:?}");
}

#[test]
fn allocating_module_hits_its_memory_limit_with_500() {
    let proxy = answered_each_round("alloc.test", 500);
    failures_logged(&proxy, "hog", "out of memory", ROUNDS);
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), ROUNDS as u64, "{stats:?}");
}

#[test]
fn module_error_gets_500() {
    let proxy = answered_each_round("error.test", 500);
    failures_logged(&proxy, "fail", "asked to fail", ROUNDS);
}

#[test]
fn reply_policy_uses_the_configured_code() {
    answered_each_round("custom.test", 503);
}

#[test]
fn module_reply_verdict_is_sent_with_its_headers() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let req = ua.request("INVITE", "sip:bob@deny.test");
    let resp = ua.transact(&req, proxy.addr(), "403 from the module");
    assert_eq!(resp.status(), Some(403), "{}", resp.text());
    assert_eq!(resp.reason(), Some("Forbidden"));
    assert_eq!(resp.header("X-Why"), Some("misbehave"));
    assert_eq!(resp.branch(), req.branch());
    still_serving(&proxy, &ua, &uas, "a module reply");
}

#[test]
fn skip_policy_forwards_past_broken_modules() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    for round in 0..ROUNDS {
        let req = ua.request("INVITE", "sip:bob@skip.test");
        ua.send(&req, proxy.addr());
        let (fwd, from) = uas.expect(&format!("INVITE past skipped modules, round {round}"));
        assert_eq!(fwd.header("Call-ID"), req.header("Call-ID"));
        assert_eq!(
            fwd.header("X-Ok"),
            Some("1"),
            "later module ran: {}",
            fwd.text()
        );
        uas.send(&fwd.reply(200, "OK", Some("s")), from);
        let (ok, _) = ua.expect("200 past skipped modules");
        assert_eq!(ok.status(), Some(200));
        still_serving(&proxy, &ua, &uas, &format!("skip round {round}"));
    }
    let stats = proxy.stop();
    // Two failures (trap, spin) per round, none elsewhere.
    assert_eq!(stats.get("module_failures"), 2 * ROUNDS as u64, "{stats:?}");
}

#[test]
fn drop_policy_answers_nothing_and_forwards_nothing() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    for round in 0..ROUNDS {
        let req = ua.request("INVITE", "sip:bob@drop.test");
        ua.send(&req, proxy.addr());
        // One receive thread: the keep-alive's 200 is the first thing the UA gets, and
        // the ok route's INVITE the first thing the UAS gets (both in still_serving).
        still_serving(&proxy, &ua, &uas, &format!("drop round {round}"));
    }
    let stats = proxy.stop();
    assert_eq!(stats.get("module_dropped"), ROUNDS as u64, "{stats:?}");
}

#[test]
fn module_cannot_remove_via() {
    let uas = UdpPeer::bind();
    let proxy = proxy_to(&uas);
    let ua = UdpPeer::bind();
    let req = ua.request("INVITE", "sip:bob@viacut.test");
    ua.send(&req, proxy.addr());
    let (fwd, _) = uas.expect("INVITE past the refused edit");
    let vias = fwd.list("Via");
    assert_eq!(vias.len(), 2, "Weir's Via and the UA's: {vias:?}");
    assert_eq!(
        param(&vias[1], "branch"),
        param(&req.top_via().unwrap(), "branch")
    );
    assert_eq!(fwd.header("X-Ok"), Some("1"));
    still_serving(&proxy, &ua, &uas, "a refused Via edit");
}
