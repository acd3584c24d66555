//! Table and driver tests on tokio's paused clock: every timer path, retransmission
//! absorption, ACK and CANCEL handling, forking, and the table draining to zero.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_message::{Message, Method};

use crate::testutil::req;
use crate::*;

// === Harness ===

const CALLER: &str = "192.0.2.1:5060";

fn peer(addr: &str, transport: Transport) -> Peer {
    Peer {
        addr: addr.parse().unwrap(),
        transport,
        listener: 0,
    }
}

fn udp(addr: &str) -> Peer {
    peer(addr, Transport::Udp)
}

/// A table, its timer task, and a log of what the timers produced (with the time, in ms
/// since the start).
struct H {
    table: Arc<TransactionTable>,
    log: Arc<Mutex<Vec<(u64, Output)>>>,
    driver: JoinHandle<()>,
}

impl Drop for H {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn grid20(cfg: TableConfig) -> TableConfig {
    TableConfig {
        timer_resolution: Duration::from_millis(20),
        ..cfg
    }
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

impl H {
    /// A table on a 20 ms grid (not the default): the RFC timer values used here are
    /// multiples of it, so the tests read the exact times.
    fn new() -> H {
        H::with(grid20(TableConfig::default()))
    }

    fn with(cfg: TableConfig) -> H {
        let table = Arc::new(TransactionTable::new(cfg));
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let sink_log = log.clone();
        let driver = tokio::spawn(run_timers(table.clone(), move |out| {
            let ms = u64::try_from((Instant::now() - t0).as_millis()).unwrap();
            let mut log = sink_log.lock().unwrap();
            for o in out {
                log.push((ms, o));
            }
        }));
        H { table, log, driver }
    }

    /// Advance the clock by `ms`, stopping at every wake-up of the driver on the way so
    /// each timer fires at its own time (its deadline on the resolution grid). Returns what the timers produced.
    async fn advance(&self, ms: u64) -> Vec<(u64, Output)> {
        let target = Instant::now() + Duration::from_millis(ms);
        settle().await;
        for _ in 0..100_000 {
            match self.table.next_wake() {
                Some(at) if at <= target => {
                    let now = Instant::now();
                    if at > now {
                        tokio::time::advance(at - now).await;
                    }
                    settle().await;
                }
                _ => break,
            }
        }
        let now = Instant::now();
        if target > now {
            tokio::time::advance(target - now).await;
        }
        settle().await;
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn request(&self, m: &Message) -> Handled {
        self.table
            .on_request(m, udp(CALLER), Instant::now())
            .unwrap()
    }

    fn request_from(&self, m: &Message, from: Peer) -> Handled {
        self.table.on_request(m, from, Instant::now()).unwrap()
    }

    fn new_tx(&self, m: &Message) -> TxId {
        match self.request(m).outcome {
            RequestOutcome::New(tx) => tx,
            other => panic!("expected a new transaction, got {other:?}"),
        }
    }

    fn forward(&self, tx: TxId, targets: Vec<(Message, Peer)>) -> Vec<Output> {
        let targets = targets
            .into_iter()
            .map(|(request, to)| Target { request, to })
            .collect();
        self.table.forward(tx, targets, Instant::now()).unwrap()
    }

    /// Both response steps (no reply chain).
    fn respond(&self, m: Message) -> (ResponseOutcome, Vec<Output>) {
        self.table.on_response_relay(m, Instant::now())
    }
}

/// The request as the proxy would send it on a branch: our Via on top.
fn sent(m: &Message, branch: &str) -> Message {
    let mut s = m.clone();
    s.headers.insert(
        0,
        "Via",
        format!("SIP/2.0/UDP 198.51.100.1:5060;branch={branch}"),
    );
    s
}

fn statuses(out: &[Output]) -> Vec<u16> {
    out.iter()
        .filter_map(|o| match o {
            Output::Response { response, .. } => response.status(),
            _ => None,
        })
        .collect()
}

fn methods(out: &[Output]) -> Vec<(usize, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request {
                branch, request, ..
            } => request.method().map(|m| (*branch, m.to_string())),
            _ => None,
        })
        .collect()
}

fn only<T>(log: Vec<(u64, T)>) -> Vec<T> {
    log.into_iter().map(|(_, o)| o).collect()
}

/// Times (ms) at which a request with `method` went out on a branch.
fn request_times(log: &[(u64, Output)], method: &str) -> Vec<u64> {
    log.iter()
        .filter(|(_, o)| {
            matches!(o, Output::Request { request, .. } if request.method().map(Method::as_str) == Some(method))
        })
        .map(|(t, _)| *t)
        .collect()
}

fn response_times(log: &[(u64, Output)], code: u16) -> Vec<u64> {
    log.iter()
        .filter(|(_, o)| matches!(o, Output::Response { response, .. } if response.status() == Some(code)))
        .map(|(t, _)| *t)
        .collect()
}

fn terminated(out: &[Output], tx: TxId) -> bool {
    out.iter().any(|o| *o == Output::Terminated { tx })
}

fn response_of(out: &[Output], code: u16) -> Message {
    out.iter()
        .find_map(|o| match o {
            Output::Response { response, .. } if response.status() == Some(code) => {
                Some(Message::clone(response))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {code} in {out:?}"))
}

fn request_of(out: &[Output], method: &str) -> Message {
    out.iter()
        .find_map(|o| match o {
            Output::Request { request, .. }
                if request.method().map(Method::as_str) == Some(method) =>
            {
                Some(Message::clone(request))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {method} in {out:?}"))
}

/// The request the upstream client would send to ACK a non-2xx final.
fn upstream_ack(invite_branch: &str, final_resp: &Message) -> Message {
    let mut ack = req("ACK", invite_branch, "");
    ack.headers.set("To", final_resp.headers.get("To").unwrap());
    ack
}

// === 100 Trying and retransmissions ===

#[tokio::test(start_paused = true)]
async fn invite_gets_one_100_and_non_invite_none() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let first = h.request(&inv);
    assert!(matches!(first.outcome, RequestOutcome::New(_)));
    assert_eq!(statuses(&first.outputs), [100]);
    let trying = response_of(&first.outputs, 100);
    assert_eq!(
        trying.start.to_string(),
        format!("SIP/2.0 100 {TRYING_REASON}")
    );
    assert_eq!(trying.to_tag(), None, "no To tag on a 100");
    // The retransmission gets the same 100 again, not a second transaction.
    let again = h.request(&inv);
    assert!(matches!(again.outcome, RequestOutcome::Retransmission(_)));
    assert_eq!(statuses(&again.outputs), [100]);
    let opt = h.request(&req("OPTIONS", "z9hG4bK2", ""));
    assert!(matches!(opt.outcome, RequestOutcome::New(_)));
    assert!(opt.outputs.is_empty(), "no 100 for non-INVITE");
    assert_eq!(h.table.len(), 2);

    let quiet = H::with(TableConfig {
        auto_inv_100: false,
        ..TableConfig::default()
    });
    assert!(quiet.request(&inv).outputs.is_empty());
}

#[tokio::test(start_paused = true)]
async fn retransmissions_get_the_last_response_again() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let (_, out) = h.respond(s.reply(180, "", Some("b")));
    assert_eq!(statuses(&out), [180]);
    let up = response_of(&out, 180);
    assert_eq!(up.headers.get_all("Via").count(), 1, "our Via removed");
    assert_eq!(statuses(&h.request(&inv).outputs), [180]);
    let (_, out) = h.respond(s.reply(486, "", Some("b")));
    assert_eq!(statuses(&out), [486]);
    assert_eq!(statuses(&h.request(&inv).outputs), [486]);

    // Non-INVITE: absorbed silently until the TU answers, then the answer again.
    let opt = req("OPTIONS", "z9hG4bK2", "");
    let otx = h.new_tx(&opt);
    assert!(h.request(&opt).outputs.is_empty());
    let out = h.table.reply(otx, 200, "", &[], Instant::now()).unwrap();
    assert_eq!(statuses(&out), [200]);
    let again = h.request(&opt);
    assert_eq!(again.outcome, RequestOutcome::Retransmission(otx));
    assert_eq!(statuses(&again.outputs), [200]);
}

// === Client INVITE: A, B, C, D ===

#[tokio::test(start_paused = true)]
async fn timers_fire_in_batches_on_the_resolution_grid() {
    let h = H::with(TableConfig {
        timer_resolution: Duration::from_millis(20),
        ..TableConfig::default()
    });
    // Two INVITEs 4 ms apart, off the grid: each timer fires at the next multiple of
    // 20 ms, the two branches' together; each retransmission interval counts from the
    // (late) firing.
    h.advance(7).await;
    let a = req("INVITE", "z9hG4bK1", "");
    let ta = h.new_tx(&a);
    h.forward(ta, vec![(sent(&a, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    h.advance(4).await;
    let b = req("INVITE", "z9hG4bK2", "");
    let tb = h.new_tx(&b);
    h.forward(tb, vec![(sent(&b, "z9hG4bKw2"), udp("192.0.2.9:5060"))]);
    let log = h.advance(4_000).await;
    assert_eq!(
        request_times(&log, "INVITE"),
        [520, 520, 1520, 1520, 3520, 3520],
        "507 and 511 ms fire at 520 ms; 1,520 and 3,520 ms are on the grid"
    );
    let log = h.advance(26_100).await;
    assert_eq!(
        response_times(&log, 408),
        [30_020, 30_020],
        "fr_timer at 30,007 and 30,011 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn timer_a_doubles_to_t2_and_fr_timer_answers_408() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let out = h.forward(tx, vec![(sent(&inv, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    assert_eq!(methods(&out), [(0, "INVITE".to_string())]);
    let log = h.advance(30_000).await;
    assert_eq!(
        request_times(&log, "INVITE"),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500],
        "T1 doubling, capped at T2, until fr_timer"
    );
    assert_eq!(response_times(&log, 408), [30_000]);
    assert!(log.iter().any(|(_, o)| *o
        == Output::BranchFailure {
            tx,
            branch: 0,
            code: 408,
            timeout: true
        }));
    assert!(
        request_times(&log, "CANCEL").is_empty(),
        "no provisional: no CANCEL"
    );
    let r408 = response_of(&only(log), 408);
    assert_eq!(r408.start.to_string(), "SIP/2.0 408 Request Timeout");
    assert!(r408.to_tag().is_some());

    // Upstream ACKs the 408; timer I then ends the transaction.
    let ack = h.request(&upstream_ack("z9hG4bK1", &r408));
    assert_eq!(ack.outcome, RequestOutcome::AckAbsorbed(tx));
    assert!(ack.outputs.is_empty());
    let log = h.advance(5_000).await;
    assert_eq!(log.last().map(|(t, _)| *t), Some(35_000));
    assert!(terminated(&only(log), tx));
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn reliable_transports_do_not_retransmit() {
    let h = H::new();
    let caller = peer(CALLER, Transport::Tcp);
    let inv = req("INVITE", "z9hG4bK1", "");
    let RequestOutcome::New(tx) = h.request_from(&inv, caller).outcome else {
        panic!()
    };
    h.forward(
        tx,
        vec![(
            sent(&inv, "z9hG4bKw1"),
            peer("192.0.2.9:5060", Transport::Tcp),
        )],
    );
    let log = h.advance(40_000).await;
    assert!(
        request_times(&log, "INVITE").is_empty(),
        "no timer A on TCP"
    );
    assert_eq!(
        response_times(&log, 408),
        [30_000],
        "sent once: no timer G on TCP"
    );
    let r408 = response_of(&only(log), 408);
    // Timer I is zero on TCP: the ACK ends the transaction at once.
    let ack = h.request_from(&upstream_ack("z9hG4bK1", &r408), caller);
    assert!(terminated(&ack.outputs, tx));
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn a_provisional_switches_fr_to_fr_inv_restarted_on_each_1xx() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.advance(10_000).await;
    let (_, out) = h.respond(s.reply(180, "", Some("b")));
    assert_eq!(statuses(&out), [180]);
    let log = h.advance(40_000).await; // t = 50 s
    assert!(
        response_times(&log, 408).is_empty(),
        "fr_timer no longer applies"
    );
    assert!(
        request_times(&log, "INVITE").is_empty(),
        "no retransmission after a 1xx"
    );
    h.respond(s.reply(183, "", Some("b")));
    // fr_inv (120 s) restarted at 50 s: expiry at 170 s, before max_inv_lifetime.
    let log = h.advance(130_000).await;
    // First at 170 s, then retransmitted by timer G (nobody ACKs it here).
    assert_eq!(response_times(&log, 408)[..2], [170_000, 170_500]);
    let cancels = request_times(&log, "CANCEL");
    assert_eq!(cancels.first(), Some(&170_000), "§16.8: CANCEL the branch");
    assert_eq!(
        cancels.get(1),
        Some(&170_500),
        "retransmitted by its own timer E"
    );
    let cancel = request_of(&only(log), "CANCEL");
    assert_eq!(cancel.top_via().unwrap().branch(), Some("z9hG4bKw1"));
    assert_eq!(cancel.headers.get("Reason"), None);
    // The callee's 200 to the CANCEL and 487 to the INVITE are absorbed (487 ACKed).
    assert_eq!(
        h.respond(cancel.reply(200, "", Some("b"))).0,
        ResponseOutcome::Absorbed
    );
    let (_, out) = h.respond(s.reply(487, "", Some("b")));
    assert_eq!(methods(&out), [(0, "ACK".to_string())]);
    assert!(statuses(&out).is_empty(), "408 already went up");
}

#[tokio::test(start_paused = true)]
async fn max_inv_lifetime_caps_a_per_transaction_fr_inv() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    h.table
        .set_timers(
            tx,
            TimerConfig {
                fr_inv_timer: Duration::from_secs(600),
                ..TimerConfig::default()
            },
        )
        .unwrap();
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.respond(s.reply(180, "", Some("b")));
    let log = h.advance(200_000).await;
    assert_eq!(response_times(&log, 408).first(), Some(&180_000));
    assert_eq!(request_times(&log, "CANCEL").first(), Some(&180_000));
}

#[tokio::test(start_paused = true)]
async fn timer_c_guard_ends_a_branch_that_never_answers_its_cancel() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.respond(s.reply(180, "", Some("b")));
    let log = h.advance(120_000).await;
    let r408 = response_of(&only(log), 408);
    h.request(&upstream_ack("z9hG4bK1", &r408));
    // The callee never answers: CANCEL gives up after fr_timer, the INVITE branch after
    // 64*T1 more, and the table drains.
    let log = h.advance(40_000).await;
    assert!(log
        .iter()
        .all(|(_, o)| !matches!(o, Output::Response { .. })));
    assert!(terminated(&only(log), tx));
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn ack_to_a_non_2xx_is_absorbed_and_we_ack_downstream_timer_d() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "Route: <sip:p2.example.com;lr>\r\n");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let r = s.reply(486, "", Some("callee"));
    let (outcome, out) = h.respond(r.clone());
    assert!(matches!(outcome, ResponseOutcome::Branch(_)));
    let ack = request_of(&out, "ACK");
    assert_eq!(ack.request_uri(), s.request_uri());
    assert_eq!(
        ack.headers.get_all("Via").collect::<Vec<_>>(),
        ["SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKw1"],
        "top Via only"
    );
    assert_eq!(ack.headers.get("Route"), Some("<sip:p2.example.com;lr>"));
    assert_eq!(ack.to_tag().as_deref(), Some("callee"));
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    let up = response_of(&out, 486);
    // Retransmitted 486 within timer D: ACKed again, nothing goes up.
    let (outcome, out) = h.respond(r.clone());
    assert_eq!(outcome, ResponseOutcome::Absorbed);
    assert_eq!(methods(&out), [(0, "ACK".to_string())]);
    // Upstream ACK: absorbed, never forwarded.
    let a = h.request(&upstream_ack("z9hG4bK1", &up));
    assert_eq!(a.outcome, RequestOutcome::AckAbsorbed(tx));
    assert!(a.outputs.is_empty());
    assert!(h.request(&upstream_ack("z9hG4bK1", &up)).outputs.is_empty());
    // Server side ends after I (5 s = T4), the branch after D (wt_timer, 5 s).
    let log = h.advance(4_900).await;
    assert!(!terminated(&only(log), tx));
    let log = h.advance(100).await;
    assert_eq!(log, [(5_000, Output::Terminated { tx })]);
    assert_eq!(
        h.respond(r).0,
        ResponseOutcome::Unmatched(s.reply(486, "", Some("callee")))
    );
}

// === Server INVITE: G, H, I; RFC 6026 L and M ===

#[tokio::test(start_paused = true)]
async fn timer_g_retransmits_the_final_until_timer_h() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let out = h
        .table
        .reply(tx, 404, "Not Here", &[], Instant::now())
        .unwrap();
    assert_eq!(statuses(&out), [404]);
    let log = h.advance(40_000).await;
    assert_eq!(
        response_times(&log, 404),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        log.last(),
        Some(&(32_000, Output::Terminated { tx })),
        "timer H"
    );
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn two_xx_passes_end_to_end_until_timers_l_and_m() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let ok = s.reply(200, "", Some("b"));
    let (_, out) = h.respond(ok.clone());
    assert_eq!(statuses(&out), [200]);
    assert!(methods(&out).is_empty(), "no hop-by-hop ACK for a 2xx");
    // The UAS retransmits its 2xx: it goes up again. INVITE retransmissions absorbed.
    h.advance(500).await;
    let (_, out) = h.respond(ok.clone());
    assert_eq!(statuses(&out), [200]);
    assert!(h.request(&inv).outputs.is_empty());
    // The ACK of a 2xx is a new transaction of the UAC: not ours.
    let mut ack = req("ACK", "z9hG4bK2", "");
    ack.headers.set("To", ok.headers.get("To").unwrap());
    assert_eq!(h.request(&ack).outcome, RequestOutcome::Stateless);
    let log = h.advance(4_400).await;
    assert!(log.is_empty());
    let log = h.advance(200).await;
    assert!(
        terminated(&only(log), tx),
        "L and M end it at wt_timer (5 s)"
    );
    assert_drained(&h.table);
    assert!(matches!(h.respond(ok).0, ResponseOutcome::Unmatched(_)));
}

// === Client and server non-INVITE: E, F, K, J ===

#[tokio::test(start_paused = true)]
async fn timers_e_and_f_then_j() {
    let h = H::new();
    let opt = req("OPTIONS", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    h.forward(tx, vec![(sent(&opt, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    let log = h.advance(30_000).await;
    assert_eq!(
        request_times(&log, "OPTIONS"),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500]
    );
    assert_eq!(response_times(&log, 408), [30_000]);
    assert_eq!(h.table.len(), 1);
    // The server transaction absorbs retransmissions for timer J (wt_timer on UDP).
    assert_eq!(statuses(&h.request(&opt).outputs), [408]);
    let log = h.advance(5_000).await;
    assert_eq!(log, [(35_000, Output::Terminated { tx })]);
}

#[tokio::test(start_paused = true)]
async fn timer_e_runs_at_t2_once_proceeding_and_k_absorbs_finals() {
    let h = H::new();
    let opt = req("OPTIONS", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    let s = sent(&opt, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.advance(600).await;
    let (_, out) = h.respond(s.reply(100, "", None));
    assert!(out.is_empty(), "a 100 is not relayed");
    let log = h.advance(10_000).await;
    assert_eq!(request_times(&log, "OPTIONS"), [1500, 5500, 9500]);
    let ok = s.reply(200, "", Some("b"));
    let (_, out) = h.respond(ok.clone());
    assert_eq!(statuses(&out), [200]);
    assert_eq!(h.respond(ok).0, ResponseOutcome::Absorbed, "timer K");
    let log = h.advance(4_900).await;
    assert!(log.is_empty(), "K and J (5 s) are not over");
    let log = h.advance(100).await;
    assert!(terminated(&only(log), tx), "K (T4) and J (wt_timer) end it");
    assert_drained(&h.table);
}

// === CANCEL ===

#[tokio::test(start_paused = true)]
async fn cancel_before_any_branch_answers_487() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let c = h.request(&req("CANCEL", "z9hG4bK1", ""));
    assert_eq!(c.outcome, RequestOutcome::Cancelled { invite: tx });
    assert_eq!(statuses(&c.outputs), [200, 487]);
    let ok = response_of(&c.outputs, 200);
    assert_eq!(
        ok.start.to_string(),
        format!("SIP/2.0 200 {NO_MORE_BRANCHES_REASON}")
    );
    assert_eq!(ok.headers.get("CSeq"), Some("1 CANCEL"));
    let r487 = response_of(&c.outputs, 487);
    assert_eq!(r487.start.to_string(), "SIP/2.0 487 Request canceled");
    assert_eq!(ok.to_tag(), r487.to_tag(), "§9.2: same To tag");
    assert_eq!(h.table.is_cancelled(tx), Some(true));
    let late = h
        .table
        .forward(
            tx,
            vec![Target {
                request: sent(&inv, "z9hG4bKw1"),
                to: udp("192.0.2.9:5060"),
            }],
            Instant::now(),
        )
        .unwrap_err();
    assert!(matches!(late, Error::Completed));
    // A retransmitted CANCEL gets the 200 again.
    let again = h.request(&req("CANCEL", "z9hG4bK1", ""));
    assert!(matches!(again.outcome, RequestOutcome::Retransmission(_)));
    assert_eq!(statuses(&again.outputs), [200]);
    assert_eq!(
        h.request(&upstream_ack("z9hG4bK1", &r487)).outcome,
        RequestOutcome::AckAbsorbed(tx)
    );
    h.advance(40_000).await;
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn cancel_after_branches_cancels_each_once_it_may() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s0 = sent(&inv, "z9hG4bKw1.0");
    let s1 = sent(&inv, "z9hG4bKw1.1");
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    h.respond(s0.reply(180, "", Some("b0")));
    let c = h.request(&req("CANCEL", "z9hG4bK1", "Reason: Q.850;cause=16\r\n"));
    assert_eq!(c.outcome, RequestOutcome::Cancelled { invite: tx });
    assert_eq!(statuses(&c.outputs), [200]);
    assert_eq!(
        response_of(&c.outputs, 200).start.to_string(),
        format!("SIP/2.0 200 {CANCELING_REASON}")
    );
    assert_eq!(methods(&c.outputs), [(0, "CANCEL".to_string())]);
    let cancel0 = request_of(&c.outputs, "CANCEL");
    assert_eq!(
        cancel0.headers.get("Reason"),
        Some("Q.850;cause=16"),
        "e2e Reason"
    );
    // Branch 1 had no provisional: it keeps retransmitting its INVITE (and branch 0
    // its CANCEL) ...
    let log = h.advance(1_000).await;
    let mut sent_now = methods(&only(log));
    sent_now.sort();
    assert_eq!(
        sent_now,
        [(0, "CANCEL".to_string()), (1, "INVITE".to_string())]
    );
    // ... and is CANCELled when its first provisional arrives (cancel_b_method=1).
    let (_, out) = h.respond(s1.reply(100, "", None));
    assert_eq!(methods(&out), [(1, "CANCEL".to_string())]);
    // CANCEL retransmitted by timer E until its 200.
    let log = h.advance(1_000).await;
    assert_eq!(
        methods(&only(log)).len(),
        2,
        "both CANCELs retransmitted once"
    );
    for (s, tag) in [(&s0, "b0"), (&s1, "b1")] {
        let cancel = cancel_for(s, None);
        assert_eq!(
            h.respond(cancel.reply(200, "", Some(tag))).0,
            ResponseOutcome::Absorbed
        );
    }
    let (_, out) = h.respond(s0.reply(487, "", Some("b0")));
    assert!(statuses(&out).is_empty(), "waits for branch 1");
    let (_, out) = h.respond(s1.reply(487, "", Some("b1")));
    assert_eq!(statuses(&out), [487]);
    assert_eq!(methods(&out), [(1, "ACK".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn branches_that_name_their_transaction_match_without_the_index() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let named = |n| format!("z9hG4bKw0x1{}", BranchSuffix { tx, n });
    let s0 = sent(&inv, &named(7));
    let s1 = sent(&inv, &named(8));
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    assert_eq!(h.table.indexed_client_keys(), 0, "nothing in the index");
    // A branch that names the transaction but is none of its branches matches nothing.
    let forged = sent(&inv, &named(9)).reply(180, "", Some("x"));
    assert!(matches!(h.respond(forged).0, ResponseOutcome::Unmatched(_)));
    let (o, out) = h.respond(s1.reply(180, "", Some("b1")));
    assert!(matches!(
        o,
        ResponseOutcome::Branch(BranchResponse { branch: 1, .. })
    ));
    assert_eq!(statuses(&out), [180]);
    let c = h.request(&req("CANCEL", "z9hG4bK1", ""));
    assert_eq!(c.outcome, RequestOutcome::Cancelled { invite: tx });
    assert_eq!(methods(&c.outputs), [(1, "CANCEL".to_string())]);
    assert_eq!(
        h.table.indexed_client_keys(),
        0,
        "the CANCEL is not indexed either"
    );
    // The CANCEL's 200 finds the CANCEL client transaction through the INVITE's.
    let cancel1 = cancel_for(&s1, None);
    assert_eq!(
        h.respond(cancel1.reply(200, "", Some("b1"))).0,
        ResponseOutcome::Absorbed
    );
    let (_, out) = h.respond(s1.reply(487, "", Some("b1")));
    assert_eq!(methods(&out), [(1, "ACK".to_string())]);
    // Branch 0 answers 200 after all: relayed at once (the call won the race).
    let (o, out) = h.respond(s0.reply(200, "", Some("b0")));
    assert!(matches!(
        o,
        ResponseOutcome::Branch(BranchResponse { branch: 0, .. })
    ));
    assert_eq!(statuses(&out), [200]);
    // Once the transaction is gone, a 2xx retransmission is for the stateless path.
    let log = h.advance(6_000).await;
    assert!(terminated(&only(log), tx));
    assert_drained(&h.table);
    assert!(matches!(
        h.respond(s0.reply(200, "", Some("b0"))).0,
        ResponseOutcome::Unmatched(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn cancelled_branch_without_provisional_runs_to_fr_timer_then_487() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    h.forward(tx, vec![(sent(&inv, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    let c = h.request(&req("CANCEL", "z9hG4bK1", ""));
    assert!(
        methods(&c.outputs).is_empty(),
        "no provisional: no CANCEL yet"
    );
    let log = h.advance(30_000).await;
    assert_eq!(
        request_times(&log, "INVITE").len(),
        9,
        "INVITE still retransmitted"
    );
    assert!(request_times(&log, "CANCEL").is_empty());
    assert_eq!(response_times(&log, 487), [30_000]);
    assert!(response_times(&log, 408).is_empty());
}

#[tokio::test(start_paused = true)]
async fn unmatched_cancel_gets_481_and_the_late_invite_487() {
    let h = H::new();
    let cancel = req("CANCEL", "z9hG4bK1", "");
    let c = h.request(&cancel);
    assert_eq!(c.outcome, RequestOutcome::CancelUnmatched);
    assert_eq!(statuses(&c.outputs), [481]);
    assert!(matches!(
        h.request(&cancel).outcome,
        RequestOutcome::Retransmission(_)
    ));
    // The INVITE overtaken by its CANCEL ("fast hang-up"): answered 487, not routed.
    let inv = req("INVITE", "z9hG4bK1", "");
    let late = h.request(&inv);
    let RequestOutcome::CancelledBeforeArrival(tx) = late.outcome else {
        panic!("{:?}", late.outcome)
    };
    assert_eq!(statuses(&late.outputs), [487], "no 100 either");
    assert_eq!(statuses(&h.request(&inv).outputs), [487], "retransmission");
    let r487 = response_of(&late.outputs, 487);
    assert_eq!(
        h.request(&upstream_ack("z9hG4bK1", &r487)).outcome,
        RequestOutcome::AckAbsorbed(tx)
    );
    h.advance(40_000).await;
    assert_drained(&h.table);
}

#[tokio::test(start_paused = true)]
async fn cancel_memory_lasts_wt_timer() {
    let h = H::new();
    h.request(&req("CANCEL", "z9hG4bK1", ""));
    // A different request with the same branch is not that INVITE.
    let mut other = req("INVITE", "z9hG4bK1", "");
    other.headers.set("Call-ID", "another");
    h.advance(5_000).await;
    assert!(matches!(h.request(&other).outcome, RequestOutcome::New(_)));
    let h = H::new();
    h.request(&req("CANCEL", "z9hG4bK1", ""));
    h.advance(5_000).await;
    let inv = req("INVITE", "z9hG4bK1", "");
    assert!(
        matches!(h.request(&inv).outcome, RequestOutcome::New(_)),
        "forgotten after wt_timer"
    );
}

// === Forking and the response context ===

#[tokio::test(start_paused = true)]
async fn a_2xx_cancels_pending_siblings_with_reason() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s: Vec<Message> = (0..3)
        .map(|i| sent(&inv, &format!("z9hG4bKw1.{i}")))
        .collect();
    h.forward(
        tx,
        s.iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), udp(&format!("192.0.2.{}:5060", 10 + i))))
            .collect(),
    );
    h.respond(s[1].reply(180, "", Some("b1")));
    let (_, out) = h.respond(s[0].reply(200, "", Some("b0")));
    assert_eq!(statuses(&out), [200]);
    assert_eq!(methods(&out), [(1, "CANCEL".to_string())]);
    assert_eq!(
        request_of(&out, "CANCEL").headers.get("Reason"),
        Some(COMPLETED_ELSEWHERE)
    );
    // Branch 2 gets its CANCEL (same Reason) with its first provisional; its 180 does
    // not go up any more.
    let (_, out) = h.respond(s[2].reply(180, "", Some("b2")));
    assert!(statuses(&out).is_empty());
    assert_eq!(
        request_of(&out, "CANCEL").headers.get("Reason"),
        Some(COMPLETED_ELSEWHERE)
    );
    let (_, out) = h.respond(s[1].reply(487, "", Some("b1")));
    assert!(statuses(&out).is_empty(), "487 after a 2xx is absorbed");
    assert_eq!(methods(&out), [(1, "ACK".to_string())]);
    // While it lingers, the answered branch keeps no request; the failed ones do (for
    // the branch-failure chain).
    assert_eq!(h.table.branch_count(tx), 3);
    assert!(h.table.branch_request(tx, 0).is_none());
    assert_eq!(
        h.table.branch_request(tx, 1).map(|(m, _)| m),
        Some(s[1].clone())
    );
    assert!(h.table.branch_request(tx, 2).is_some());
    assert_eq!(h.table.branch_count(TxId::from_u64(u64::MAX)), 0);
}

#[tokio::test(start_paused = true)]
async fn a_6xx_cancels_siblings_and_wins() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s0 = sent(&inv, "z9hG4bKw1.0");
    let s1 = sent(&inv, "z9hG4bKw1.1");
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    h.respond(s1.reply(183, "", Some("b1")));
    let (_, out) = h.respond(s0.reply(603, "", Some("b0")));
    assert!(statuses(&out).is_empty(), "waits for the cancelled branch");
    assert_eq!(
        request_of(&out, "CANCEL").headers.get("Reason"),
        Some("SIP;cause=603")
    );
    let more = h.table.forward(
        tx,
        vec![Target {
            request: sent(&inv, "z9hG4bKw1.2"),
            to: udp("192.0.2.11:5060"),
        }],
        Instant::now(),
    );
    assert!(matches!(more, Err(Error::ForkingBlocked)));
    let (_, out) = h.respond(s1.reply(487, "", Some("b1")));
    assert_eq!(statuses(&out), [603]);
}

#[tokio::test(start_paused = true)]
async fn best_final_with_challenges_and_503_remap() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s: Vec<Message> = (0..3)
        .map(|i| sent(&inv, &format!("z9hG4bKw1.{i}")))
        .collect();
    h.forward(
        tx,
        s.iter()
            .map(|m| (m.clone(), udp("192.0.2.9:5060")))
            .collect(),
    );
    let mut r0 = s[0].reply(407, "", Some("b0"));
    r0.headers
        .push("Proxy-Authenticate", "Digest realm=\"one\"");
    let mut r1 = s[1].reply(401, "", Some("b1"));
    r1.headers.push("WWW-Authenticate", "Digest realm=\"two\"");
    h.respond(r0);
    h.respond(s[2].reply(503, "", Some("b2")));
    let (_, out) = h.respond(r1);
    let up = response_of(&out, 401);
    assert_eq!(
        up.headers.get("WWW-Authenticate"),
        Some("Digest realm=\"two\"")
    );
    assert_eq!(
        up.headers.get("Proxy-Authenticate"),
        Some("Digest realm=\"one\"")
    );

    let inv = req("INVITE", "z9hG4bK2", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw2");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let (_, out) = h.respond(s.reply(503, "", Some("b")));
    assert_eq!(statuses(&out), [500], "remap_503_500");
}

#[tokio::test(start_paused = true)]
async fn serial_forking_through_the_failure_hook() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    h.table.arm_failure(tx).unwrap();
    let s0 = sent(&inv, "z9hG4bKw1.0");
    h.forward(tx, vec![(s0.clone(), udp("192.0.2.9:5060"))]);
    let (_, out) = h.respond(s0.reply(486, "", Some("b0")));
    assert!(statuses(&out).is_empty(), "the TU decides");
    assert!(out.contains(&Output::BranchFailure {
        tx,
        branch: 0,
        code: 486,
        timeout: false
    }));
    assert!(out.contains(&Output::Failure { tx, code: 486 }));
    // Reusing a branch is refused; a new leg with a new branch is not.
    let dup = h.table.forward(
        tx,
        vec![Target {
            request: s0.clone(),
            to: udp("192.0.2.9:5060"),
        }],
        Instant::now(),
    );
    assert!(matches!(dup, Err(Error::BadBranch)));
    h.table.arm_failure(tx).unwrap();
    let s1 = sent(&inv, "z9hG4bKw1.1");
    let out = h.forward(tx, vec![(s1.clone(), udp("192.0.2.10:5060"))]);
    assert_eq!(methods(&out), [(1, "INVITE".to_string())]);
    // The second leg times out: the hook fires again.
    let log = h.advance(30_000).await;
    assert!(log
        .iter()
        .any(|(_, o)| *o == Output::Failure { tx, code: 408 }));
    assert!(response_times(&log, 408).is_empty());
    // The TU gives up: the best of the last leg only (408, not the first leg's 486).
    let out = h.table.relay_best(tx, Instant::now()).unwrap();
    assert_eq!(statuses(&out), [408]);
    assert!(matches!(
        h.table.relay_best(tx, Instant::now()),
        Err(Error::Completed)
    ));
}

#[tokio::test(start_paused = true)]
async fn failure_hook_can_reply_instead() {
    let h = H::new();
    let opt = req("MESSAGE", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    h.table.arm_failure(tx).unwrap();
    let s = sent(&opt, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let (_, out) = h.respond(s.reply(477, "", Some("b")));
    assert!(out.contains(&Output::BranchFailure {
        tx,
        branch: 0,
        code: 477,
        timeout: false
    }));
    let headers = [("Retry-After".to_string(), "30".to_string())];
    let out = h
        .table
        .reply(tx, 480, "", &headers, Instant::now())
        .unwrap();
    let r = response_of(&out, 480);
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    assert_eq!(r.start.to_string(), "SIP/2.0 480 Temporarily Unavailable");
}

#[tokio::test(start_paused = true)]
async fn a_local_final_cancels_pending_branches() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.respond(s.reply(180, "", Some("b")));
    let out = h
        .table
        .reply(tx, 603, "Decline", &[], Instant::now())
        .unwrap();
    assert_eq!(statuses(&out), [603]);
    assert_eq!(
        request_of(&out, "CANCEL").headers.get("Reason"),
        Some("SIP;cause=603")
    );
}

// === Matching details ===

#[tokio::test(start_paused = true)]
async fn rfc2543_ack_matches_only_with_our_to_tag() {
    let h = H::new();
    let inv = req("INVITE", "old-style", "");
    let tx = h.new_tx(&inv);
    let out = h.table.reply(tx, 404, "", &[], Instant::now()).unwrap();
    let r = response_of(&out, 404);
    let mut wrong = upstream_ack("old-style", &r);
    wrong.headers.set("To", "<sip:bob@example.com>;tag=other");
    assert_eq!(h.request(&wrong).outcome, RequestOutcome::Stateless);
    assert_eq!(
        h.request(&upstream_ack("old-style", &r)).outcome,
        RequestOutcome::AckAbsorbed(tx)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_responses_and_acks_are_stateless() {
    let h = H::new();
    let stray = sent(&req("INVITE", "z9hG4bK1", ""), "z9hG4bKnope").reply(200, "", Some("x"));
    assert!(matches!(h.respond(stray).0, ResponseOutcome::Unmatched(_)));
    assert_eq!(
        h.request(&req("ACK", "z9hG4bK9", "")).outcome,
        RequestOutcome::Stateless
    );
}

#[tokio::test(start_paused = true)]
async fn release_forgets_a_new_transaction() {
    let h = H::new();
    let opt = req("OPTIONS", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    let out = h.table.release(tx).unwrap();
    assert!(terminated(&out, tx));
    assert_drained(&h.table);
    assert!(matches!(h.request(&opt).outcome, RequestOutcome::New(_)));
}

#[tokio::test(start_paused = true)]
async fn lifetime_answers_a_transaction_the_tu_never_acted_on() {
    let h = H::new();
    let tx = h.new_tx(&req("OPTIONS", "z9hG4bK1", ""));
    let log = h.advance(32_000).await;
    assert_eq!(response_times(&log, 500), [32_000]);
    let log = h.advance(32_000).await;
    assert!(terminated(&only(log), tx));
}

// === Bounds ===

#[tokio::test(start_paused = true)]
async fn capacity_is_enforced_and_the_table_drains_to_zero() {
    let h = H::with(TableConfig {
        capacity: 2,
        shards: 4,
        ..TableConfig::default()
    });
    let a = req("INVITE", "z9hG4bKa", "");
    let b = req("OPTIONS", "z9hG4bKb", "");
    let ta = h.new_tx(&a);
    let tb = h.new_tx(&b);
    let err = h
        .table
        .on_request(&req("OPTIONS", "z9hG4bKc", ""), udp(CALLER), Instant::now())
        .unwrap_err();
    assert!(matches!(err, Error::Full { capacity: 2 }));
    assert_eq!(err.status(), 503);
    assert_eq!(h.table.len(), 2);
    // Retransmissions of live ones are still absorbed when full.
    assert!(matches!(
        h.request(&a).outcome,
        RequestOutcome::Retransmission(_)
    ));
    let sa = sent(&a, "z9hG4bKw.a");
    h.forward(ta, vec![(sa.clone(), udp("192.0.2.9:5060"))]);
    h.table.reply(tb, 200, "", &[], Instant::now()).unwrap();
    let (_, out) = h.respond(sa.reply(200, "", Some("x")));
    assert_eq!(statuses(&out), [200]);
    h.advance(40_000).await;
    assert_eq!(h.table.len(), 0);
    // What is left in the timer queue are the lifetimes of ended transactions; they
    // come up (and are dropped) by max_inv_lifetime.
    h.advance(150_000).await;
    assert_eq!(h.table.timer_entries(), 0, "no timer left behind");
    assert!(matches!(
        h.request(&req("OPTIONS", "z9hG4bKc", "")).outcome,
        RequestOutcome::New(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn many_transactions_drain() {
    let h = H::new();
    for i in 0..200 {
        let inv = req("INVITE", &format!("z9hG4bK{i}"), "");
        let tx = h.new_tx(&inv);
        let s = sent(&inv, &format!("z9hG4bKw{i}"));
        h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
        if i % 2 == 0 {
            h.respond(s.reply(180, "", Some("b")));
            h.respond(s.reply(486, "", Some("b")));
        }
    }
    assert_eq!(h.table.len(), 200);
    h.advance(80_000).await;
    assert_drained(&h.table);
}

// === More response-context paths ===

#[tokio::test(start_paused = true)]
async fn a_late_2xx_after_a_timeout_still_goes_up() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.respond(s.reply(180, "", Some("b")));
    let log = h.advance(120_000).await;
    assert_eq!(response_times(&log, 408).first(), Some(&120_000));
    // The callee answered just as we gave up: §16.7 step 5, every 2xx goes up.
    let (_, out) = h.respond(s.reply(200, "", Some("b")));
    assert_eq!(statuses(&out), [200]);
    assert!(
        methods(&out).is_empty(),
        "the 2xx is ACKed end to end, not by us"
    );
}

#[tokio::test(start_paused = true)]
async fn per_transaction_fr_timer() {
    let h = H::new();
    let opt = req("OPTIONS", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    let t = TimerConfig {
        fr_timer: Duration::from_secs(5),
        ..TimerConfig::default()
    };
    h.table.set_timers(tx, t).unwrap();
    h.forward(tx, vec![(sent(&opt, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    let log = h.advance(6_000).await;
    assert_eq!(response_times(&log, 408), [5_000]);
}

#[tokio::test(start_paused = true)]
async fn a_branch_failure_may_add_a_parallel_branch() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s0 = sent(&inv, "z9hG4bKw1.0");
    let s1 = sent(&inv, "z9hG4bKw1.1");
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    let (_, out) = h.respond(s0.reply(430, "Flow Failed", Some("b0")));
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::BranchFailure { code: 430, .. }))
            .count(),
        1
    );
    // RFC 5626 flow failover: another flow of the same contact, in parallel.
    let s2 = sent(&inv, "z9hG4bKw1.2");
    let out = h.forward(tx, vec![(s2.clone(), udp("192.0.2.11:5060"))]);
    assert_eq!(methods(&out), [(2, "INVITE".to_string())]);
    let (_, out) = h.respond(s1.reply(486, "", Some("b1")));
    assert!(statuses(&out).is_empty(), "branch 2 still pending");
    let (_, out) = h.respond(s2.reply(200, "", Some("b2")));
    assert_eq!(statuses(&out), [200]);
}

#[tokio::test(start_paused = true)]
async fn non_invite_forks_send_one_final() {
    let h = H::with(TableConfig {
        server_header: Some("Weir".into()),
        ..TableConfig::default()
    });
    let msg = req("MESSAGE", "z9hG4bK1", "");
    let tx = h.new_tx(&msg);
    let s0 = sent(&msg, "z9hG4bKw1.0");
    let s1 = sent(&msg, "z9hG4bKw1.1");
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    let (_, out) = h.respond(s0.reply(202, "", Some("b0")));
    assert_eq!(statuses(&out), [202]);
    let (_, out) = h.respond(s1.reply(200, "", Some("b1")));
    assert!(statuses(&out).is_empty());
    // Local replies carry the configured Server header.
    let inv = req("INVITE", "z9hG4bK2", "");
    let first = h.request(&inv);
    assert_eq!(
        response_of(&first.outputs, 100).headers.get("Server"),
        Some("Weir")
    );
}

#[tokio::test(start_paused = true)]
async fn the_reply_chain_sits_between_the_two_response_steps() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    let s = sent(&inv, "z9hG4bKw1");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    let (outcome, out) = h
        .table
        .on_response(s.reply(183, "", Some("b")), Instant::now());
    assert!(out.is_empty());
    let ResponseOutcome::Branch(mut br) = outcome else {
        panic!()
    };
    assert_eq!(br.branch, 0);
    assert_eq!(
        br.response.headers.get_all("Via").count(),
        1,
        "our Via is gone"
    );
    br.response.headers.push("X-Chain", "seen");
    let out = h.table.relay(br, Instant::now());
    assert_eq!(response_of(&out, 183).headers.get("X-Chain"), Some("seen"));
    // A provisional the chain drops is simply not relayed.
    let (outcome, _) = h
        .table
        .on_response(s.reply(180, "", Some("b")), Instant::now());
    assert!(matches!(outcome, ResponseOutcome::Branch(_)));
    assert_eq!(
        statuses(&h.request(&inv).outputs),
        [183],
        "last response sent is still the 183"
    );
}

#[tokio::test(start_paused = true)]
async fn per_transaction_lifetime_both_ways() {
    let h = H::new();
    let opt = req("OPTIONS", "z9hG4bK1", "");
    let tx = h.new_tx(&opt);
    let short = TimerConfig {
        max_noninv_lifetime: Duration::from_secs(10),
        ..TimerConfig::default()
    };
    h.table.set_timers(tx, short).unwrap();
    h.forward(tx, vec![(sent(&opt, "z9hG4bKw1"), udp("192.0.2.9:5060"))]);
    let log = h.advance(11_000).await;
    assert_eq!(response_times(&log, 408), [10_000]);

    // Longer than the default: the original 180 s deadline no longer applies.
    let inv = req("INVITE", "z9hG4bK2", "");
    let tx = h.new_tx(&inv);
    let long = TimerConfig {
        fr_inv_timer: Duration::from_secs(400),
        max_inv_lifetime: Duration::from_secs(300),
        ..TimerConfig::default()
    };
    h.table.set_timers(tx, long).unwrap();
    let s = sent(&inv, "z9hG4bKw2");
    h.forward(tx, vec![(s.clone(), udp("192.0.2.9:5060"))]);
    h.respond(s.reply(180, "", Some("b")));
    let log = h.advance(299_000).await;
    assert!(response_times(&log, 408).is_empty());
    let log = h.advance(1_000).await;
    assert_eq!(response_times(&log, 408).first(), Some(&311_000));
}

#[tokio::test(start_paused = true)]
async fn a_transport_error_ends_the_branch_as_477_at_once() {
    let h = H::new();
    let inv = req("INVITE", "z9hG4bK1", "");
    let tx = h.new_tx(&inv);
    h.table.arm_failure(tx).unwrap();
    let s0 = sent(&inv, "z9hG4bKw1.0");
    let s1 = sent(&inv, "z9hG4bKw1.1");
    h.forward(
        tx,
        vec![
            (s0.clone(), udp("192.0.2.9:5060")),
            (s1.clone(), udp("192.0.2.10:5060")),
        ],
    );
    let out = h.table.transport_error(tx, 0, Instant::now()).unwrap();
    assert_eq!(
        out,
        [Output::BranchFailure {
            tx,
            branch: 0,
            code: 477,
            timeout: false
        }],
        "one branch left: nothing goes up, nothing is CANCELled"
    );
    // A second report for the same branch changes nothing.
    assert!(h
        .table
        .transport_error(tx, 0, Instant::now())
        .unwrap()
        .is_empty());
    let out = h.table.transport_error(tx, 1, Instant::now()).unwrap();
    assert!(out.contains(&Output::Failure { tx, code: 477 }), "{out:?}");
    // No retransmission of the dead branches afterwards.
    let log = h.advance(2_000).await;
    assert!(
        !log.iter().any(|(_, o)| matches!(o, Output::Request { .. })),
        "{log:?}"
    );
    let out = h.table.relay_best(tx, Instant::now()).unwrap();
    assert_eq!(statuses(&out), [477], "as Kamailio answers a send error");
}

/// The table holds no transaction, and its server index no entry either.
fn assert_drained(table: &TransactionTable) {
    assert!(table.is_empty(), "transactions left: {}", table.len());
    assert_eq!(table.server_entries(), 0, "server index entries left");
}
