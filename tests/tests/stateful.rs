//! Transaction-stateful routes (`mode = "stateful"`, ADR 0005): calls through Weir's
//! transaction layer with sipp on both sides where sipp can express the flow, and the
//! raw test UA where it cannot (a CANCEL overtaking its INVITE, a next hop that never
//! answers, exact timer and header checks).
//!
//! What is checked: 100 Trying to the caller; retransmissions absorbed upstream and
//! made downstream under loss; CANCEL while ringing (200 at once, 487 from the callee,
//! the callee's 487 ACKed hop by hop) and before any provisional (held until the first
//! 1xx); CANCEL before INVITE (481, then 487 and nothing forwarded); serial forking over
//! `next_hop` groups (hop-by-hop ACK of the busy branch, only the last group's replies
//! compete, a refused TCP branch fails over at once); parallel forking (the ringing
//! sibling CANCELled with "Call completed elsewhere"); best-response selection, 503 as
//! 500, a 6xx cancelling siblings and stopping serial forking; `fr_timer` /
//! `fr_inv_timer` (global and per route, restarted by each 1xx) and
//! `max_inv_lifetime` ending in 408, a 2xx after that 408 still relayed; the failure
//! chain replying instead, or relaying the best reply; `capacity` (503 when full); the
//! transaction gauge draining to zero after load; a clean stop right after start.
//!
//! sipp scenarios are in `tests/scenarios/`. The sipp UASs never send 100, so a 100 the
//! caller sees (mandatory in `uac_call.xml`) comes from Weir.
//!
//! Forking routes take only INVITE; a second stateful route without `next_hop` sends
//! ACK and BYE by their Request-URI (the Contact of the UAS that answered, which
//! `uac_call.xml` puts there), so they reach the answering branch and not every group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use weir_system_tests::peer::UdpPeer;
use weir_system_tests::proxy::{HEADER_OPS, MISBEHAVE};
use weir_system_tests::sip::{param, via_sent_by};
use weir_system_tests::sipp::{self, Transport, Uac, UacResult, Uas, UasOptions};
use weir_system_tests::{conf, ports, Proxy, ProxyStats, SipMsg};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long a UAS that was given a number of calls may take to finish them once the
/// UAC is done.
const UAS_FINISH: Duration = Duration::from_secs(15);

// === Config ===

/// The test proxy: UDP and TCP on `127.0.0.1:port` (one UDP receive thread),
/// `[transaction]` settings (may be empty), the header-ops module as `headers`
/// (appends `X-Weir: stateful`, removes `X-Debug-*`) and the misbehave module as `deny`
/// (mode `reply`: 403 with `X-Why: misbehave`) and `pass` (mode `ok`: continue), and
/// `routes`.
fn config(port: u16, transaction: &str, routes: &str) -> String {
    let mut c = conf::header();
    if !transaction.is_empty() {
        c += &conf::transaction(transaction);
    }
    c += &conf::listeners(port);
    // A generous deadline: the default (10 ms) is met on an idle machine, but these
    // tests run side by side with sipp load on few cores, and a module timing out is
    // not what they are about.
    c += &format!(
        "[modules.headers]\ncomponent = \"{HEADER_OPS}\"\ntimeout_ms = 1000\n\
         [modules.headers.params]\n\
         remove_prefix = [\"X-Debug-\"]\nappend = [\"X-Weir: stateful\"]\n\n\
         [modules.deny]\ncomponent = \"{MISBEHAVE}\"\ntimeout_ms = 1000\n\
         [modules.deny.params]\nmode = \"reply\"\n\n\
         [modules.pass]\ncomponent = \"{MISBEHAVE}\"\ntimeout_ms = 1000\n\
         [modules.pass.params]\nmode = \"ok\"\n\n\
         [modules.note]\ncomponent = \"{MISBEHAVE}\"\ntimeout_ms = 1000\n\
         [modules.note.params]\nmode = \"note\"\n\n"
    );
    c + routes
}

fn start(transaction: &str, routes: &str) -> Proxy {
    Proxy::start_with(|port| config(port, transaction, routes))
}

/// A TOML string.
fn q(s: &str) -> String {
    format!("\"{s}\"")
}

/// Routes for forking: INVITEs fork to `next_hop`; everything else is stateful too and
/// goes by its Request-URI.
fn forking_routes(next_hop: &str) -> String {
    conf::stateful_route("fork", next_hop, "methods = [\"INVITE\"]")
        + &conf::stateful_route("dialog", "", "")
}

// === sipp ===

/// `calls` calls at `rate` cps of `scenario` (a file of `tests/scenarios/`).
fn uac(proxy: &Proxy, transport: Transport, scenario: &str, calls: u32, rate: u32) -> Uac {
    let mut u = Uac::new(proxy.addr(), transport, calls, rate);
    u.scenario = Some(sipp::scenario(scenario));
    u
}

/// A UAS running `scenario` for `calls` calls, then exiting.
fn uas_for(scenario: &str, calls: u32) -> Uas {
    Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: Some(sipp::scenario(scenario)),
            calls: Some(calls),
            args: Vec::new(),
        },
    )
}

/// Panic unless every one of `calls` calls succeeded at the UAC.
fn assert_all_succeeded(run: &UacResult, calls: u32, context: &str) {
    let verdict = format!("{}\n{context}", run.report);
    assert_eq!(run.successful, Some(u64::from(calls)), "{verdict}");
    assert_eq!(run.failed, Some(0), "{verdict}");
    assert_eq!(run.exit_code, Some(0), "sipp reports failures:\n{verdict}");
}

/// Wait for `uas` to finish its calls and panic unless all of them succeeded.
fn assert_uas_succeeded(uas: &mut Uas, calls: u32, what: &str) {
    let r = uas.finish(UAS_FINISH);
    let verdict = format!("{what}: {r:?}\n{}", uas.log());
    assert_eq!(r.successful, Some(u64::from(calls)), "{verdict}");
    assert_eq!(r.failed, Some(0), "{verdict}");
    assert_eq!(r.exit_code, Some(0), "{verdict}");
}

/// Requests Weir received but did not forward: retransmissions it absorbed (and ACKs
/// of non-2xx finals, CANCELs and requests it answered itself).
fn absorbed(stats: &ProxyStats) -> u64 {
    stats.get("requests").saturating_sub(stats.get("forwarded"))
}

// === Raw UA ===

/// The fake next hop answers `req` (as received from Weir) where its top Via says.
fn answer(hop: &UdpPeer, req: &SipMsg, code: u16, reason: &str, tag: &str) {
    let top = req.top_via().expect("forwarded request has a Via");
    let to: SocketAddr = via_sent_by(&top)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("Weir's Via is not ip:port: {top}"));
    hop.send(&req.reply(code, reason, Some(tag)), to);
}

/// The CANCEL of `invite` (RFC 3261 §9.1): same Request-URI, Via, From, To, Call-ID and
/// CSeq number.
fn cancel_of(invite: &SipMsg) -> SipMsg {
    let n = cseq_number(invite);
    SipMsg {
        start: invite.start.replacen("INVITE", "CANCEL", 1),
        ..invite.clone()
    }
    .set_header("CSeq", &format!("{n} CANCEL"))
    .without("Contact")
}

/// The ACK of a non-2xx final `resp` to `invite` (§17.1.1.3): the INVITE's Request-URI,
/// Via, From, Call-ID and CSeq number, the response's To.
fn ack_of(invite: &SipMsg, resp: &SipMsg) -> SipMsg {
    let n = cseq_number(invite);
    SipMsg {
        start: invite.start.replacen("INVITE", "ACK", 1),
        ..invite.clone()
    }
    .set_header("CSeq", &format!("{n} ACK"))
    .set_header("To", resp.header("To").expect("response has a To"))
    .without("Contact")
}

fn cseq_number(m: &SipMsg) -> String {
    m.header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .expect("CSeq")
        .to_string()
}

fn to_tag(m: &SipMsg) -> Option<String> {
    m.header("To").and_then(|t| param(t, "tag")).flatten()
}

/// Responses to the UA until a final one, within `limit`: (provisionals, final, when
/// the final came).
fn until_final(ua: &UdpPeer, limit: Duration, what: &str) -> (Vec<SipMsg>, SipMsg, Instant) {
    let end = Instant::now() + limit;
    let mut provisional = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Some((m, _)) = ua.recv(left) else {
            panic!("no final response for {what} within {limit:?}; provisionals: {provisional:?}");
        };
        match m.status() {
            Some(s) if s >= 200 => return (provisional, m, Instant::now()),
            Some(_) => provisional.push(m),
            None => panic!("UA got a request while waiting for {what}: {}", m.text()),
        }
    }
}

/// The next request the hop receives that is not a retransmission of `skip` (same
/// start line and branch), within `limit`.
fn next_new_request(hop: &UdpPeer, skip: &SipMsg, limit: Duration, what: &str) -> SipMsg {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Some((m, _)) = hop.recv(left) else {
            panic!("{} got no {what} within {limit:?}", hop.addr());
        };
        if m.start == skip.start && m.branch() == skip.branch() {
            continue;
        }
        return m;
    }
}

/// Prove nothing more is on its way to `ua`: Weir answers an OPTIONS to itself at once
/// (one receive thread: after everything it got before), and that answer must be the
/// next thing `ua` receives.
fn assert_next_is_sentinel(ua: &UdpPeer, proxy: &Proxy, unwanted: &str) {
    let ping = ua.request("OPTIONS", &format!("sip:{}", proxy.addr()));
    ua.send(&ping, proxy.addr());
    let (m, _) = ua.expect("200 to the sentinel OPTIONS");
    assert!(
        m.status() == Some(200) && m.header("Call-ID") == ping.header("Call-ID"),
        "{unwanted}:\n{}",
        m.text()
    );
}

// === 1. Calls ===

const CALLS: u32 = 200;
const RATE: u32 = 100;

fn calls_complete_with_100_trying(transport: Transport) {
    let uas = Uas::start(LOCAL, transport);
    let routes = conf::stateful_route(
        "default",
        &q(&uas.uri()),
        "request = [{ module = \"headers\", on_error = \"reply-500\" }]",
    );
    let proxy = start("", &routes);
    // uac_call.xml requires the 100 Trying, which only Weir sends.
    let run = uac(&proxy, transport, "uac_call.xml", CALLS, RATE).run();
    assert_all_succeeded(&run, CALLS, &uas.log());
    proxy.assert_running();
    let stats = proxy.stop();
    // INVITE, ACK and BYE of every call forwarded once; a retransmission (sipp's T1 is
    // 500 ms) would be absorbed, not forwarded.
    assert!(stats.get("forwarded") >= 3 * u64::from(CALLS), "{stats:?}");
    assert!(
        stats.get("responses_relayed") >= 3 * u64::from(CALLS),
        "{stats:?}"
    );
    for zero in ["module_failures", "local_replies", "branch_failures"] {
        assert_eq!(stats.get(zero), 0, "{zero}: {stats:?}");
    }
    if transport == Transport::Tcp {
        // Nothing is retransmitted on a reliable transport.
        assert_eq!(stats.get("requests"), 3 * u64::from(CALLS), "{stats:?}");
        assert_eq!(stats.get("forwarded"), 3 * u64::from(CALLS), "{stats:?}");
    }
}

#[test]
fn udp_calls_complete_and_the_caller_gets_100_trying() {
    calls_complete_with_100_trying(Transport::Udp);
}

#[test]
fn tcp_calls_complete_and_the_caller_gets_100_trying() {
    calls_complete_with_100_trying(Transport::Tcp);
}

// === 2. Retransmissions under loss ===

#[test]
fn lost_requests_and_responses_are_recovered_by_retransmission_and_absorbed() {
    // The UAS loses 10% of the INVITEs, ACKs and BYEs it receives; the UAC 10% of the
    // responses it receives. The UAC has its 100 Trying from Weir at once and never
    // retransmits an INVITE that Weir got, so an INVITE lost at the UAS is recovered
    // only by Weir's own retransmission (timer A), a BYE by timer E. What the UAC
    // retransmits (a lost 100/180/200, a lost 200 to its BYE) reaches Weir and must be
    // absorbed there: answered from the transaction, never forwarded, for as long as
    // the transaction is kept. That must outlast the UAC's retransmissions of a BYE:
    // at the default `wt_timer` (5 s, as in Kamailio) a call of 200 fails now and then
    // (seen: the UAS lost a BYE twice, so its 200 came 1.5 s into the UAC's schedule,
    // the UAC lost that 200 and the one re-sent for its 3.5 s retransmission, and its
    // 7.5 s retransmission came 5.9 s after the 200: a new request to a UAS past its
    // 4 s timewait, never answered; with no proxy the same losses fail the same call).
    // Here the transaction stays RFC 3261's 64*T1 (timer J), so no call may fail and
    // every UAC retransmission is absorbed.
    let uas = Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: Some(sipp::scenario("uas_lossy.xml")),
            ..UasOptions::default()
        },
    );
    let proxy = start(
        "wt_timer_ms = 32000",
        &conf::stateful_route("default", &q(&uas.uri()), ""),
    );
    let mut u = uac(&proxy, Transport::Udp, "uac_lossy.xml", CALLS, RATE);
    u.timeout = Duration::from_secs(40);
    let run = u.run();
    assert_all_succeeded(&run, CALLS, &uas.log());
    let stats = proxy.stop();
    let retrans = run.retransmissions.expect("sipp reports retransmissions");
    // Each forwarded request was an original: INVITE, ACK (and an ACK again for each
    // retransmitted 200, end to end), BYE. Everything else was a UAC retransmission.
    assert!(
        retrans > 0,
        "10% loss made the UAC retransmit nothing?\n{}",
        run.report
    );
    assert_eq!(
        absorbed(&stats),
        retrans,
        "every retransmission of the UAC absorbed, nothing else: {stats:?}"
    );
    assert!(stats.get("forwarded") >= 3 * u64::from(CALLS), "{stats:?}");
}

#[test]
fn calls_survive_sipp_lost_10_on_the_caller() {
    // sipp's own `-lost 10` on the built-in UAC: 10% of what it sends and of what it
    // receives is lost. Without a proxy this fails a few calls in 200 (a BYE whose 200
    // is lost three times outlives the UAS's 4 s timewait); through Weir the BYE's
    // server transaction answers its retransmissions for as long as it is kept. That is
    // `wt_timer` (Kamailio's 5 s by default, after which a late retransmission is a new
    // request that the UAS, out of its timewait, no longer answers: with 19% of each
    // BYE/200 round lost, some call of 200 needs its fourth try at 7.5 s in most runs).
    // Here it is RFC 3261's 64*T1 (timer J), so no call may fail.
    let uas = Uas::start(LOCAL, Transport::Udp);
    let proxy = start(
        "wt_timer_ms = 32000",
        &conf::stateful_route("default", &q(&uas.uri()), ""),
    );
    let mut u = Uac::new(proxy.addr(), Transport::Udp, CALLS, RATE);
    u.args = vec!["-lost".into(), "10".into()];
    u.timeout = Duration::from_secs(40);
    let run = u.run();
    assert_all_succeeded(&run, CALLS, &uas.log());
    let stats = proxy.stop();
    assert!(
        absorbed(&stats) > 0,
        "retransmissions absorbed: {stats:?}\n{}",
        run.report
    );
}

// === 3. CANCEL while ringing ===

#[test]
fn cancel_while_ringing_reaches_the_callee_and_the_invite_ends_with_487() {
    const N: u32 = 50;
    // The UAS rings, takes the CANCEL (200), answers the INVITE 487 and needs the ACK
    // of that 487, which comes from Weir. The UAC needs 100, 180, 200 to its CANCEL,
    // then 487, and ACKs it (absorbed by Weir).
    let mut uas = uas_for("uas_ring_cancel.xml", N);
    let proxy = start("", &conf::stateful_route("default", &q(&uas.uri()), ""));
    let run = uac(&proxy, Transport::Udp, "uac_cancel.xml", N, 50).run();
    assert_all_succeeded(&run, N, &uas.log());
    assert_uas_succeeded(&mut uas, N, "UAS: CANCEL answered 200, INVITE 487, ACK got");
    let stats = proxy.stop();
    // Each branch ended with the callee's 487.
    assert_eq!(stats.get("branch_failures"), u64::from(N), "{stats:?}");
}

// === 4. CANCEL before INVITE ===

#[test]
fn cancel_before_its_invite_gets_481_and_the_late_invite_487_without_reaching_the_callee() {
    let hop = UdpPeer::bind();
    let routes = conf::stateful_route(
        "default",
        &q(&hop.uri()),
        "request = [{ module = \"headers\" }]",
    );
    let proxy = start("", &routes);
    let ua = UdpPeer::bind();
    let invite = ua
        .request("INVITE", "sip:bob@example.com")
        .add_header("X-Debug-Trace", "1");
    let cancel = cancel_of(&invite);

    // The mobile hangs up at once and the CANCEL overtakes its INVITE.
    ua.send(&cancel, proxy.addr());
    let (r, _) = ua.expect("answer to the early CANCEL");
    assert_eq!(r.status(), Some(481), "{}", r.text());
    assert_eq!(r.header("CSeq"), Some("1 CANCEL"), "{}", r.text());
    assert_eq!(r.branch(), invite.branch(), "{}", r.text());
    assert!(
        to_tag(&r).is_some(),
        "a final reply has a To tag: {}",
        r.text()
    );

    // The INVITE comes: answered 487 at once, never routed.
    ua.send(&invite, proxy.addr());
    let (provisional, fin, _) = until_final(&ua, Duration::from_secs(5), "the late INVITE");
    assert_eq!(fin.status(), Some(487), "{}", fin.text());
    assert_eq!(fin.header("CSeq"), Some("1 INVITE"), "{}", fin.text());
    assert_eq!(fin.branch(), invite.branch(), "{}", fin.text());
    let tag = to_tag(&fin);
    assert!(tag.is_some(), "487 has a To tag: {}", fin.text());
    assert!(
        provisional.iter().all(|p| p.status() == Some(100)),
        "nothing rang: {provisional:?}"
    );

    // It has a transaction: its retransmission gets the 487 again (Completed state)...
    ua.send(&invite, proxy.addr());
    let (_, again, _) = until_final(&ua, Duration::from_secs(5), "the INVITE retransmission");
    assert_eq!(again.status(), Some(487), "{}", again.text());
    assert_eq!(to_tag(&again), tag, "same final again");
    // ...and its ACK is absorbed.
    ua.send(&ack_of(&invite, &fin), proxy.addr());

    // Sentinel: the first thing the callee gets is a later call. Neither the CANCEL,
    // nor the INVITE, nor its ACK reached it (one receive thread: in order).
    let sentinel = ua.request("INVITE", "sip:carol@example.com");
    ua.send(&sentinel, proxy.addr());
    let (first, _) = hop.expect("the sentinel INVITE");
    assert_eq!(
        first.header("Call-ID"),
        sentinel.header("Call-ID"),
        "the callee got something of the cancelled call first:\n{}",
        first.text()
    );
    // The request chain ran on it (header-ops on a stateful route).
    assert_eq!(first.header("X-Weir"), Some("stateful"), "{}", first.text());
    let stats = proxy.stop();
    assert_eq!(stats.get("forwarded"), 1, "only the sentinel: {stats:?}");
}

// === 5. Serial forking ===

#[test]
fn serial_forking_moves_to_the_next_group_after_486_and_acks_the_busy_branch() {
    const N: u32 = 50;
    // A answers 486 and needs an ACK; the caller never sees that 486, so its ACK can
    // only be Weir's hop-by-hop one. B answers the call.
    let mut busy = uas_for("uas_busy.xml", N);
    let answer = Uas::start(LOCAL, Transport::Udp);
    let hops = format!("[[{}], [{}]]", q(&busy.uri()), q(&answer.uri()));
    let proxy = start("", &forking_routes(&hops));
    let run = uac(&proxy, Transport::Udp, "uac_call.xml", N, 50).run();
    assert_all_succeeded(
        &run,
        N,
        &format!(
            "--- A (486) ---\n{}\n--- B ---\n{}",
            busy.log(),
            answer.log()
        ),
    );
    assert_uas_succeeded(&mut busy, N, "A: 486 sent, ACK got from Weir");
    let stats = proxy.stop();
    assert_eq!(stats.get("failovers"), u64::from(N), "{stats:?}");
    assert_eq!(stats.get("branch_failures"), u64::from(N), "{stats:?}");
}

// === 6. Parallel forking ===

#[test]
fn parallel_forking_completes_on_the_answer_and_cancels_the_ringing_sibling() {
    const N: u32 = 50;
    // A rings and answers after 300 ms; B rings until cancelled, requires
    // `Reason: SIP;cause=200;text="Call completed elsewhere"` on the CANCEL, answers it
    // 200 + 487, and needs Weir's ACK of the 487.
    let mut answers = uas_for("uas_ring_answer.xml", N);
    let mut rings = uas_for("uas_ring_cancel_elsewhere.xml", N);
    let hops = format!("[{}, {}]", q(&answers.uri()), q(&rings.uri()));
    let proxy = start("", &forking_routes(&hops));
    let run = uac(&proxy, Transport::Udp, "uac_call.xml", N, 50).run();
    assert_all_succeeded(
        &run,
        N,
        &format!(
            "--- A (answers) ---\n{}\n--- B (rings) ---\n{}",
            answers.log(),
            rings.log()
        ),
    );
    assert_uas_succeeded(&mut answers, N, "A: answered, ACK and BYE got");
    assert_uas_succeeded(&mut rings, N, "B: CANCEL got, 200 + 487 sent, ACK got");
    let stats = proxy.stop();
    // B's 487s: one failed branch per call, which did not decide the call.
    assert_eq!(stats.get("branch_failures"), u64::from(N), "{stats:?}");
}

// === Raw forking: final response selection ===

/// The INVITE each of `hops` got, in order.
fn invites_at(hops: &[&UdpPeer]) -> Vec<SipMsg> {
    hops.iter()
        .map(|h| {
            let (m, _) = h.expect("forked INVITE");
            assert_eq!(m.method(), Some("INVITE"), "{}", m.text());
            m
        })
        .collect()
}

/// `hop` answered `fwd` with a non-2xx final: the next new request it gets must be
/// Weir's ACK of it, on the INVITE's branch, with Weir's Via only.
fn expect_hop_ack(hop: &UdpPeer, fwd: &SipMsg, tag: &str) {
    let ack = next_new_request(hop, fwd, Duration::from_secs(5), "ACK of its final");
    assert_eq!(ack.method(), Some("ACK"), "{}", ack.text());
    assert_eq!(ack.branch(), fwd.branch(), "{}", ack.text());
    assert_eq!(ack.list("Via").len(), 1, "{}", ack.text());
    assert_eq!(to_tag(&ack).as_deref(), Some(tag), "{}", ack.text());
}

#[test]
fn the_best_final_response_goes_upstream_and_a_winning_503_as_500() {
    // Parallel branches, every one failing: the caller gets one final, chosen by
    // class (4xx before 5xx), and a 503 that wins is sent up as 500 (RFC 3261
    // §16.7 step 6: a proxy does not pass 503 upstream).
    let (a, b) = (UdpPeer::bind(), UdpPeer::bind());
    let hops = format!("[{}, {}]", q(&a.uri()), q(&b.uri()));
    let proxy = start("", &forking_routes(&hops));
    let ua = UdpPeer::bind();
    for (codes, want) in [((503, 486), 486), ((503, 503), 500)] {
        let invite = ua.request("INVITE", "sip:bob@example.com");
        ua.send(&invite, proxy.addr());
        let fwd = invites_at(&[&a, &b]);
        answer(&a, &fwd[0], codes.0, "A", "a");
        expect_hop_ack(&a, &fwd[0], "a");
        answer(&b, &fwd[1], codes.1, "B", "b");
        expect_hop_ack(&b, &fwd[1], "b");
        let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the forked INVITE");
        assert_eq!(fin.status(), Some(want), "{codes:?}: {}", fin.text());
        assert_eq!(fin.branch(), invite.branch());
        ua.send(&ack_of(&invite, &fin), proxy.addr());
        assert_next_is_sentinel(&ua, &proxy, "a second final response");
    }
}

#[test]
fn a_6xx_cancels_the_other_branches_and_stops_serial_forking() {
    // [[A, B], [C]]: A declines with 603 while B rings. B is CANCELled with the
    // 6xx as Reason, the caller gets the 603 (6xx beats B's 487), and C, the next
    // serial group, is never tried (RFC 3261 §16.7 step 5, Kamailio tm).
    let (a, b, c) = (UdpPeer::bind(), UdpPeer::bind(), UdpPeer::bind());
    let hops = format!("[[{}, {}], [{}]]", q(&a.uri()), q(&b.uri()), q(&c.uri()));
    let proxy = start("", &forking_routes(&hops));
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let fwd = invites_at(&[&a, &b]);
    answer(&b, &fwd[1], 180, "Ringing", "b");
    answer(&a, &fwd[0], 603, "Decline", "a");
    expect_hop_ack(&a, &fwd[0], "a");

    let cancel = next_new_request(&b, &fwd[1], Duration::from_secs(5), "CANCEL");
    assert_eq!(cancel.method(), Some("CANCEL"), "{}", cancel.text());
    assert_eq!(cancel.branch(), fwd[1].branch());
    let reason = cancel.header("Reason").unwrap_or_default();
    assert!(
        reason.contains("cause=603"),
        "CANCEL after a 6xx says so: {}",
        cancel.text()
    );
    answer(&b, &cancel, 200, "OK", "b");
    answer(&b, &fwd[1], 487, "Request Terminated", "b");
    expect_hop_ack(&b, &fwd[1], "b");

    let (provisional, fin, _) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(603), "{}", fin.text());
    assert!(
        provisional.iter().any(|p| p.status() == Some(180)),
        "{provisional:?}"
    );
    ua.send(&ack_of(&invite, &fin), proxy.addr());
    assert_next_is_sentinel(&ua, &proxy, "a second final response");
    let stats = proxy.stop();
    assert_eq!(
        stats.get("failovers"),
        0,
        "no serial group after a 6xx: {stats:?}"
    );
    assert!(
        c.recv(Duration::from_millis(100)).is_none(),
        "the next serial group got a request after a 6xx"
    );
}

#[test]
fn every_2xx_goes_upstream_even_after_the_final_408() {
    // The callee answers just as its branch timed out: Weir has sent 408 up and a
    // CANCEL down, and the 200 crosses that CANCEL. A 2xx is always forwarded (RFC
    // 3261 §16.7 step 5): the caller must get it, or the callee holds a call nobody
    // knows about.
    let hop = UdpPeer::bind();
    let proxy = start(
        SHORT_TIMERS,
        &conf::stateful_route("default", &q(&hop.uri()), "fr_inv_timer_ms = 1000"),
    );
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE");
    answer(&hop, &fwd, 180, "Ringing", "callee");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the ringing INVITE");
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
    ua.send(&ack_of(&invite, &fin), proxy.addr());
    let cancel = next_new_request(&hop, &fwd, Duration::from_secs(5), "CANCEL");
    assert_eq!(cancel.method(), Some("CANCEL"), "{}", cancel.text());
    answer(&hop, &cancel, 200, "OK", "callee");
    answer(&hop, &fwd, 200, "OK", "callee");
    let (late, _) = ua.expect("the late 200");
    assert_eq!(late.status(), Some(200), "{}", late.text());
    assert_eq!(late.header("CSeq"), Some("1 INVITE"), "{}", late.text());
    assert_eq!(late.branch(), invite.branch(), "{}", late.text());
    assert_eq!(to_tag(&late).as_deref(), Some("callee"), "{}", late.text());
}

#[test]
fn cancel_before_any_provisional_waits_for_the_first_1xx() {
    // The INVITE was forwarded, nothing came back yet, the caller CANCELs: Weir
    // answers the CANCEL at once but CANCELs the branch only once it has a
    // provisional (Kamailio cancel_b_method=1: a CANCEL may not overtake the INVITE
    // at the callee).
    let hop = UdpPeer::bind();
    let proxy = start("", &conf::stateful_route("default", &q(&hop.uri()), ""));
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE");
    let (trying, _) = ua.expect("100 Trying");
    assert_eq!(trying.status(), Some(100), "{}", trying.text());
    ua.send(&cancel_of(&invite), proxy.addr());
    let (ok, _) = ua.expect("200 to the CANCEL");
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_eq!(ok.header("CSeq"), Some("1 CANCEL"), "{}", ok.text());

    // Sentinel through the same route: the hop gets it before any CANCEL.
    let sentinel = ua.request("OPTIONS", "sip:carol@example.com");
    ua.send(&sentinel, proxy.addr());
    let first = next_new_request(&hop, &fwd, Duration::from_secs(5), "the sentinel");
    assert_eq!(
        first.header("Call-ID"),
        sentinel.header("Call-ID"),
        "a CANCEL went out before the branch had a provisional:\n{}",
        first.text()
    );

    // The 180 comes: now the CANCEL goes, and the 487 ends the call upstream.
    answer(&hop, &fwd, 180, "Ringing", "callee");
    let cancel = next_new_request(&hop, &fwd, Duration::from_secs(5), "CANCEL");
    assert_eq!(cancel.method(), Some("CANCEL"), "{}", cancel.text());
    assert_eq!(cancel.branch(), fwd.branch());
    answer(&hop, &cancel, 200, "OK", "callee");
    answer(&hop, &fwd, 487, "Request Terminated", "callee");
    expect_hop_ack(&hop, &fwd, "callee");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the cancelled INVITE");
    assert_eq!(fin.status(), Some(487), "{}", fin.text());
}

#[test]
fn a_full_table_answers_503_and_still_absorbs_retransmissions() {
    // `capacity` bounds the live transactions: beyond it a new request is answered
    // 503 statelessly and not forwarded; a retransmission of a live one is still
    // absorbed (and gets its 100 again), not refused.
    let silent = UdpPeer::bind();
    let proxy = start(
        "capacity = 2",
        &conf::stateful_route("default", &q(&silent.uri()), ""),
    );
    let ua = UdpPeer::bind();
    let first = ua.request("INVITE", "sip:bob@example.com");
    for inv in [&first, &ua.request("INVITE", "sip:bob@example.com")] {
        ua.send(inv, proxy.addr());
        let (r, _) = ua.expect("100 Trying");
        assert_eq!(r.status(), Some(100), "{}", r.text());
        assert_eq!(r.header("Call-ID"), inv.header("Call-ID"));
    }
    let third = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&third, proxy.addr());
    let (r, _) = ua.expect("503");
    assert_eq!(r.status(), Some(503), "{}", r.text());
    assert_eq!(r.header("Call-ID"), third.header("Call-ID"));
    ua.send(&first, proxy.addr());
    let (r, _) = ua.expect("100 again");
    assert_eq!(r.status(), Some(100), "{}", r.text());
    assert_eq!(r.header("Call-ID"), first.header("Call-ID"));
    let stats = proxy.stop();
    assert_eq!(stats.get("forwarded"), 2, "{stats:?}");
    assert_eq!(stats.get("transactions"), 2, "{stats:?}");
}

#[test]

fn a_branch_whose_transport_fails_ends_at_once_and_the_next_group_is_tried() {
    // RFC 3261 §16.9: a transport error on a forwarded request ends the branch at
    // once (as a local 477, Kamailio's send error). The first group is a TCP next hop where nothing listens
    // (connection refused): the second group must get the INVITE long before
    // fr_timer (30 s by default) would end the first branch.
    let dead = ports::free_port();
    let hop = UdpPeer::bind();
    let hops = format!(
        "[[\"sip:127.0.0.1:{dead};transport=tcp\"], [{}]]",
        q(&hop.uri())
    );
    let proxy = start("", &forking_routes(&hops));
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    let sent = Instant::now();
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE after the failed branch");
    assert_eq!(fwd.header("Call-ID"), invite.header("Call-ID"));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    answer(&hop, &fwd, 200, "OK", "callee");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(200), "{}", fin.text());
    let stats = proxy.stop();
    assert_eq!(stats.get("failovers"), 1, "{stats:?}");
}

#[test]
fn serial_forking_relays_the_best_reply_of_the_last_group_only() {
    // [[A], [B]]: A is busy (486), B fails with 503. Only the last leg's replies
    // compete (Kamailio failure_reply_mode=3), so the caller gets B's 503, as 500
    // (§16.7 step 6), and not A's better-ranked 486.
    let (a, b) = (UdpPeer::bind(), UdpPeer::bind());
    let hops = format!("[[{}], [{}]]", q(&a.uri()), q(&b.uri()));
    let proxy = start("", &forking_routes(&hops));
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let fwd_a = invites_at(&[&a]).remove(0);
    answer(&a, &fwd_a, 486, "Busy Here", "a");
    expect_hop_ack(&a, &fwd_a, "a");
    let fwd_b = invites_at(&[&b]).remove(0);
    assert_ne!(fwd_b.branch(), fwd_a.branch(), "a new leg, a new branch");
    assert_eq!(fwd_b.header("Call-ID"), invite.header("Call-ID"));
    answer(&b, &fwd_b, 503, "Service Unavailable", "b");
    expect_hop_ack(&b, &fwd_b, "b");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(500), "{}", fin.text());
}

#[test]
fn the_branch_failure_chain_sees_each_failed_branch_with_its_target_and_status() {
    // [[A, B], [C]]: A is busy (486), B's TCP connection is refused (477 at once),
    // C answers 200. The branch-failure chain (misbehave, mode note) logs each failed
    // branch with its status and request URI (next hops keep the caller's), and
    // nothing for the winner.
    let (a, c) = (UdpPeer::bind(), UdpPeer::bind());
    let dead = ports::free_port();
    let b_uri = format!("sip:127.0.0.1:{dead};transport=tcp");
    let hops = format!("[[{}, {}], [{}]]", q(&a.uri()), q(&b_uri), q(&c.uri()));
    let routes = conf::stateful_route(
        "fork",
        &hops,
        "methods = [\"INVITE\"]\nbranch_failure = [{ module = \"note\" }]",
    ) + &conf::stateful_route("dialog", "", "");
    let proxy = start("", &routes);
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let fwd_a = invites_at(&[&a]).remove(0);
    answer(&a, &fwd_a, 486, "Busy Here", "a");
    expect_hop_ack(&a, &fwd_a, "a");
    let fwd_c = invites_at(&[&c]).remove(0);
    answer(&c, &fwd_c, 200, "OK", "c");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(200), "{}", fin.text());
    let a_line =
        "note hook=Hook::BranchFailure failure=486 cancelled=false uri=sip:bob@example.com";
    let b_line =
        "note hook=Hook::BranchFailure failure=477 cancelled=false uri=sip:bob@example.com";
    assert!(
        proxy.wait_for_log(a_line, Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    assert!(
        proxy.wait_for_log(b_line, Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    let log = proxy.log();
    assert_eq!(log.matches("note hook=").count(), 2, "{log}");
    let stats = proxy.stop();
    assert_eq!(stats.get("branch_failures"), 2, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

#[test]
fn each_provisional_restarts_fr_inv_timer() {
    // fr_inv_timer 1 s, restarted by every 1xx (Kamailio restart_fr_on_each_reply):
    // a 180 at once and a 183 0.6 s later move the 408 to 1.6 s after the 180.
    let hop = UdpPeer::bind();
    let proxy = start(
        SHORT_TIMERS,
        &conf::stateful_route("default", &q(&hop.uri()), "fr_inv_timer_ms = 1000"),
    );
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE");
    answer(&hop, &fwd, 180, "Ringing", "callee");
    let rang = Instant::now();
    // Wait for the 180 at the caller, then 0.6 s more (the caller's clock, not a
    // sleep: nothing else may arrive meanwhile).
    let (r, _) = ua.expect("100");
    assert_eq!(r.status(), Some(100));
    let (r, _) = ua.expect("180");
    assert_eq!(r.status(), Some(180));
    let quiet = ua.recv(Duration::from_millis(600).saturating_sub(rang.elapsed()));
    assert!(quiet.is_none(), "before fr_inv_timer: {quiet:?}");
    answer(&hop, &fwd, 183, "Session Progress", "callee");
    let progressed = Instant::now();
    let (provisional, fin, at) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(
        provisional
            .iter()
            .filter_map(SipMsg::status)
            .collect::<Vec<_>>(),
        vec![183]
    );
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
    assert!(
        at - progressed >= Duration::from_millis(900),
        "timer C restarted on the 183: 408 {:?} after it",
        at - progressed
    );
}

#[test]
fn max_inv_lifetime_ends_a_call_that_keeps_ringing() {
    // Every 1xx restarts fr_inv_timer, so a callee that keeps sending 180 would hold
    // the transaction for ever; max_inv_lifetime (here 1.5 s) ends it: the branch
    // gives up as on timer C (CANCEL), and the caller gets 408.
    let hop = UdpPeer::bind();
    let proxy = start(
        "t1_ms = 100\nfr_inv_timer_ms = 1000\nmax_inv_lifetime_ms = 1500",
        &conf::stateful_route("default", &q(&hop.uri()), ""),
    );
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    let sent = Instant::now();
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE");
    // Ring every 300 ms until the CANCEL comes.
    let cancel = loop {
        answer(&hop, &fwd, 180, "Ringing", "callee");
        if let Some((m, _)) = hop.recv(Duration::from_millis(300)) {
            if m.method() == Some("CANCEL") {
                break m;
            }
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "no CANCEL within 5 s of a 1.5 s lifetime"
        );
    };
    assert_eq!(cancel.branch(), fwd.branch());
    let ended = sent.elapsed();
    assert!(
        ended >= Duration::from_millis(1400),
        "CANCEL at {ended:?}: before max_inv_lifetime"
    );
    answer(&hop, &cancel, 200, "OK", "callee");
    answer(&hop, &fwd, 487, "Request Terminated", "callee");
    let (_, fin, _) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
}

// === 7. Timeouts ===

/// Timer settings of the timeout tests: T1 100 ms (retransmissions at 100, 300, 700
/// ms), `fr_timer` 1 s, a long `fr_inv_timer` that routes override.
const SHORT_TIMERS: &str = "t1_ms = 100\nfr_timer_ms = 1000\nfr_inv_timer_ms = 20000";

#[test]
fn unanswered_requests_time_out_with_408_after_fr_timer() {
    let silent = UdpPeer::bind();
    let proxy = start(
        SHORT_TIMERS,
        &conf::stateful_route("default", &q(&silent.uri()), ""),
    );
    let ua = UdpPeer::bind();

    // INVITE: 100 at once, then nothing until timer B (fr_timer) gives 408.
    let invite = ua.request("INVITE", "sip:bob@example.com");
    let sent = Instant::now();
    ua.send(&invite, proxy.addr());
    let (provisional, fin, at) = until_final(&ua, Duration::from_secs(5), "the INVITE");
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
    assert_eq!(fin.branch(), invite.branch());
    assert!(to_tag(&fin).is_some(), "{}", fin.text());
    let waited = at - sent;
    assert!(
        waited >= Duration::from_millis(900),
        "408 after fr_timer (1 s), not after {waited:?}"
    );
    assert_eq!(
        provisional
            .iter()
            .filter_map(SipMsg::status)
            .collect::<Vec<_>>(),
        vec![100],
        "one 100 Trying"
    );
    // Meanwhile Weir retransmitted the INVITE on UDP (timer A: 0, 100, 300, 700 ms),
    // always the same branch.
    let (first, _) = silent.expect("INVITE");
    let mut copies = 1;
    while let Some((m, _)) = silent.recv(Duration::from_millis(50)) {
        assert_eq!(m.start, first.start, "{}", m.text());
        assert_eq!(
            m.branch(),
            first.branch(),
            "a retransmission keeps the branch"
        );
        copies += 1;
    }
    assert!(copies >= 3, "INVITE sent {copies} times before timer B");

    // The ACK of the 408 is Weir's (absorbed); then a MESSAGE, non-INVITE: no 100, 408
    // after timer F. It is also the sentinel: the first new request the hop gets.
    ua.send(&ack_of(&invite, &fin), proxy.addr());
    let message = ua.request("MESSAGE", "sip:bob@example.com");
    let sent = Instant::now();
    ua.send(&message, proxy.addr());
    let got = next_new_request(&silent, &first, Duration::from_secs(5), "the MESSAGE");
    assert_eq!(
        got.method(),
        Some("MESSAGE"),
        "the ACK of the 408 was not forwarded:\n{}",
        got.text()
    );
    let (provisional, fin, at) = until_final(&ua, Duration::from_secs(5), "the MESSAGE");
    assert!(
        provisional.is_empty(),
        "no 100 to a non-INVITE: {provisional:?}"
    );
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
    assert_eq!(fin.header("CSeq"), Some("1 MESSAGE"));
    assert!(at - sent >= Duration::from_millis(900), "{:?}", at - sent);

    // Both server transactions still wait for retransmissions (timers I and J): the
    // gauge counts them (which makes the soak test's `transactions=0` mean something).
    let stats = proxy.stop();
    assert!(stats.get("transactions") >= 1, "{stats:?}");
    assert!(stats.get("branch_failures") >= 2, "{stats:?}");
}

#[test]
fn ringing_without_answer_times_out_after_the_routes_fr_inv_timer_and_is_cancelled() {
    // The route overrides fr_inv_timer (global 20 s) with 1.5 s: timer C restarts on
    // the 180 and then gives 408 upstream and a CANCEL downstream; the callee's 487 is
    // ACKed by Weir.
    let hop = UdpPeer::bind();
    let proxy = start(
        SHORT_TIMERS,
        &conf::stateful_route("default", &q(&hop.uri()), "fr_inv_timer_ms = 1500"),
    );
    let ua = UdpPeer::bind();
    let invite = ua.request("INVITE", "sip:bob@example.com");
    ua.send(&invite, proxy.addr());
    let (fwd, _) = hop.expect("INVITE");
    answer(&hop, &fwd, 180, "Ringing", "callee");
    let rang = Instant::now();

    let (provisional, fin, at) = until_final(&ua, Duration::from_secs(6), "the ringing INVITE");
    let codes: Vec<u16> = provisional.iter().filter_map(SipMsg::status).collect();
    assert_eq!(codes, vec![100, 180], "{provisional:?}");
    assert_eq!(fin.status(), Some(408), "{}", fin.text());
    let waited = at - rang;
    assert!(
        waited >= Duration::from_millis(1400),
        "408 after the route's fr_inv_timer (1.5 s from the 180), not after {waited:?}"
    );
    ua.send(&ack_of(&invite, &fin), proxy.addr());

    // The CANCEL of the branch: the INVITE's branch, Request-URI and CSeq number, and
    // Weir's Via only.
    let cancel = next_new_request(&hop, &fwd, Duration::from_secs(5), "CANCEL");
    assert_eq!(cancel.method(), Some("CANCEL"), "{}", cancel.text());
    assert_eq!(cancel.ruri(), fwd.ruri());
    assert_eq!(
        cancel.branch(),
        fwd.branch(),
        "CANCEL has the INVITE's branch"
    );
    assert_eq!(cancel.list("Via").len(), 1, "{}", cancel.text());
    assert_eq!(
        cancel.header("CSeq").map(str::to_string),
        Some(format!("{} CANCEL", cseq_number(&fwd)))
    );
    answer(&hop, &cancel, 200, "OK", "callee");
    answer(&hop, &fwd, 487, "Request Terminated", "callee");

    // The ACK of that 487, hop by hop (§17.1.1.3).
    let ack = next_new_request(&hop, &fwd, Duration::from_secs(5), "ACK of the 487");
    assert_eq!(ack.method(), Some("ACK"), "{}", ack.text());
    assert_eq!(ack.ruri(), fwd.ruri());
    assert_eq!(
        ack.branch(),
        fwd.branch(),
        "ACK of a non-2xx: the INVITE's branch"
    );
    assert_eq!(ack.list("Via").len(), 1, "{}", ack.text());
    assert_eq!(to_tag(&ack).as_deref(), Some("callee"), "{}", ack.text());
    assert_eq!(
        ack.header("CSeq").map(str::to_string),
        Some(format!("{} ACK", cseq_number(&fwd)))
    );
    // The 487 went nowhere: the caller has its 408 already.
    assert_next_is_sentinel(&ua, &proxy, "the 487 relayed after the 408");
}

#[test]
fn failure_chain_replies_or_relays_the_408_when_every_branch_timed_out() {
    let silent = UdpPeer::bind();
    let hop = q(&silent.uri());
    // `deny.test`: the failure chain replies 403 (misbehave, mode reply).
    // `relay.test`: the failure chain continues, so the best reply (408) goes up.
    let routes = conf::stateful_route(
        "deny",
        &hop,
        "domains = [\"deny.test\"]\nfailure = [{ module = \"deny\" }]",
    ) + &conf::stateful_route(
        "relay",
        &hop,
        "domains = [\"relay.test\"]\nfailure = [{ module = \"pass\" }]",
    );
    let proxy = start(SHORT_TIMERS, &routes);
    let ua = UdpPeer::bind();

    for (domain, code) in [("deny.test", 403), ("relay.test", 408)] {
        let invite = ua.request("INVITE", &format!("sip:bob@{domain}"));
        let sent = Instant::now();
        ua.send(&invite, proxy.addr());
        let (fwd, _) = silent.expect("INVITE");
        assert_eq!(fwd.header("Call-ID"), invite.header("Call-ID"));
        let (provisional, fin, at) = until_final(&ua, Duration::from_secs(5), domain);
        assert_eq!(
            provisional
                .iter()
                .filter_map(SipMsg::status)
                .collect::<Vec<_>>(),
            vec![100]
        );
        assert_eq!(fin.status(), Some(code), "{domain}: {}", fin.text());
        assert_eq!(fin.branch(), invite.branch());
        assert!(to_tag(&fin).is_some(), "{}", fin.text());
        if code == 403 {
            // The module's reply, with its header: the failure chain ran.
            assert_eq!(fin.header("X-Why"), Some("misbehave"), "{}", fin.text());
        }
        // Only once the branch timed out (fr_timer 1 s), not when the INVITE came.
        assert!(at - sent >= Duration::from_millis(900), "{:?}", at - sent);
        ua.send(&ack_of(&invite, &fin), proxy.addr());
        // Drain the retransmissions of this INVITE before the next.
        while silent.recv(Duration::from_millis(50)).is_some() {}
    }
    let stats = proxy.stop();
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
}

// === 8. Soak ===

#[test]
fn transaction_gauge_returns_to_zero_after_load() {
    const LOAD: u32 = 1000;
    const CANCELS: u32 = 200;
    // Short timers so transactions end soon after their last message. No lifetime
    // cap is shortened: a transaction whose machines never end would outlive the wait
    // (max_inv_lifetime stays 180 s) and show in the gauge.
    const T1_MS: u64 = 25;
    const T4_MS: u64 = 100;
    let tx = format!("t1_ms = {T1_MS}\nt2_ms = 400\nt4_ms = {T4_MS}\nwt_timer_ms = 500");
    // Calls on the `udp` listener; calls cancelled while ringing on a second one.
    let calls_uas = Uas::start(LOCAL, Transport::Udp);
    let ring_uas = Uas::start_with(
        LOCAL,
        Transport::Udp,
        &UasOptions {
            scenario: Some(sipp::scenario("uas_ring_cancel.xml")),
            ..UasOptions::default()
        },
    );
    let cancel_port = ports::free_port();
    let routes =
        conf::stateful_route(
            "calls",
            &q(&calls_uas.uri()),
            "listeners = [\"udp\", \"tcp\"]",
        ) + &conf::stateful_route("cancels", &q(&ring_uas.uri()), "listeners = [\"cancel\"]");
    let proxy = Proxy::start_with(|port| {
        let listener = format!(
            "[[listen]]\nname = \"cancel\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{cancel_port}\"\n\n"
        );
        config(port, &tx, &(listener + &routes))
    });

    let calls = uac(&proxy, Transport::Udp, "uac_call.xml", LOAD, 200);
    let mut cancels = uac(&proxy, Transport::Udp, "uac_cancel.xml", CANCELS, 40);
    cancels.remote = SocketAddr::new(LOCAL, cancel_port);
    let cancelling = std::thread::spawn(move || cancels.run());
    let run = calls.run();
    let cancel_run = cancelling.join().expect("cancel UAC thread");
    assert_all_succeeded(&run, LOAD, &calls_uas.log());
    assert_all_succeeded(&cancel_run, CANCELS, &ring_uas.log());

    // Every machine ends by its own timer: the longest wait after a call's last
    // message is 64*T1 (timers H, J, L, M, and the guard after a timer C CANCEL), then
    // T4 (I, K). There is no gauge to poll, so wait out twice that and a second, then
    // stop Weir and read its final `transactions=` (the test above shows the gauge
    // counts live transactions).
    let drain = Duration::from_millis(2 * (64 * T1_MS + T4_MS) + 1000);
    std::thread::sleep(drain);
    proxy.assert_running();
    let stats = proxy.stop();
    assert!(
        stats.0.contains_key("transactions"),
        "the final stats line has the gauge: {stats:?}"
    );
    assert_eq!(
        stats.get("transactions"),
        0,
        "transactions alive {drain:?} after the load: {stats:?}"
    );
    assert!(
        stats.get("forwarded") >= 3 * u64::from(LOAD) + u64::from(CANCELS),
        "{stats:?}"
    );
}

// === Shutdown ===

#[test]
fn sigterm_right_after_start_stops_cleanly_with_the_final_stats() {
    // An operator (or a supervisor) may stop Weir as soon as it says it is running.
    // The window is short: try it 20 times (each lands in it about half the time).
    for _ in 0..20 {
        let proxy = Proxy::start_with(|port| {
            conf::header()
                + &conf::listeners(port)
                + &conf::stateful_route("default", "\"sip:127.0.0.1:9\"", "")
        });
        let stats = proxy.stop_at_once();
        assert!(stats.0.contains_key("transactions"), "{stats:?}");
    }
}
