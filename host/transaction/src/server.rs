//! Server transactions: RFC 3261 §17.2.1 (INVITE, with the RFC 6026 Accepted state) and
//! §17.2.2 (non-INVITE).

use std::sync::Arc;

use tokio::time::Instant;
use weir_message::{Message, Method};

use crate::action::{Action, Timer, TimerSet};
use crate::config::TimerConfig;

/// What a server transaction reacts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A request matched to this transaction after it was created: a retransmission, or
    /// (INVITE) the ACK.
    Request(Message),
    /// A response from the TU to send upstream (kept, shared, for retransmission).
    Respond(Arc<Message>),
    /// A timer fired.
    Timer(Timer),
}

fn is_final(code: u16) -> bool {
    code >= 200
}

// === ServerInvite ===

/// States of [`ServerInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Waiting for the TU's final; provisionals go up.
    Proceeding,
    /// A non-2xx final went up; retransmitting it (G) until the ACK (H).
    Completed,
    /// The ACK arrived; absorbing its retransmissions (I).
    Confirmed,
    /// A 2xx went up (RFC 6026); INVITE retransmissions absorbed, 2xx retransmissions
    /// from the TU forwarded, until L.
    Accepted,
    /// Over.
    Terminated,
}

/// INVITE server transaction.
#[derive(Clone, Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerSet,
    last: Option<Arc<Message>>,
    g_interval: std::time::Duration,
}

impl ServerInvite {
    /// A transaction for an INVITE just received. The caller sends the 100 (if any)
    /// through [`ServerEvent::Respond`].
    pub fn new(reliable: bool, cfg: TimerConfig) -> ServerInvite {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            cfg,
            timers: TimerSet::default(),
            last: None,
            g_interval: cfg.t1,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The last response sent upstream.
    pub fn last_response(&self) -> Option<&Message> {
        self.last.as_deref()
    }

    /// Replace the timers used from now on (running timers keep their deadlines).
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        self.cfg = cfg;
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(out);
        self.state = ServerInviteState::Terminated;
        out.push(Action::Terminated);
    }

    /// Feed one event; the actions are appended to `out`.
    pub fn on_event(&mut self, ev: ServerEvent, now: Instant, out: &mut Vec<Action>) {
        use ServerInviteState as S;
        match (self.state, ev) {
            (S::Proceeding | S::Completed, ServerEvent::Request(r))
                if r.method() == Some(&Method::Invite) =>
            {
                // §17.2.1: a retransmitted INVITE gets the last response again.
                if let Some(last) = &self.last {
                    out.push(Action::Send(Arc::clone(last)));
                }
            }
            (S::Completed, ServerEvent::Request(r)) if r.method() == Some(&Method::Ack) => {
                self.timers.cancel(Timer::G, out);
                self.timers.cancel(Timer::H, out);
                self.state = S::Confirmed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.timers.start(Timer::I, self.cfg.t4, now, out);
                }
            }
            (S::Accepted, ServerEvent::Request(r)) if r.method() == Some(&Method::Ack) => {
                // RFC 6026 §8.7: an ACK matching an Accepted transaction goes to the TU.
                out.push(Action::Deliver(r));
            }
            // Confirmed: ACK retransmissions absorbed. Accepted: INVITE retransmissions
            // absorbed (the UAS retransmits its 2xx, not us).
            (_, ServerEvent::Request(_)) => {}
            (S::Proceeding, ServerEvent::Respond(resp)) => {
                let code = resp.status().unwrap_or(0);
                if (200..300).contains(&code) {
                    // Accepted re-sends nothing (the UAS retransmits its 2xx, RFC
                    // 6026): nothing to keep while the transaction lingers.
                    out.push(Action::Send(resp));
                    self.last = None;
                    self.state = S::Accepted;
                    self.timers.start(Timer::L, self.cfg.linger(), now, out);
                } else {
                    out.push(Action::Send(Arc::clone(&resp)));
                    self.last = Some(resp);
                }
                if is_final(code) && self.state == S::Proceeding {
                    self.state = S::Completed;
                    if !self.reliable {
                        self.g_interval = self.cfg.t1;
                        self.timers.start(Timer::G, self.g_interval, now, out);
                    }
                    self.timers.start(Timer::H, self.cfg.t1x64(), now, out);
                }
            }
            (S::Accepted, ServerEvent::Respond(resp))
                if resp.status().is_some_and(|c| (200..300).contains(&c)) =>
            {
                // 2xx retransmissions (or 2xx from other branches) pass through.
                out.push(Action::Send(resp));
            }
            (_, ServerEvent::Respond(_)) => {}
            (state, ServerEvent::Timer(t)) => {
                if !self.timers.due(t, now, out) {
                    return;
                }
                match (state, t) {
                    (S::Completed, Timer::G) => {
                        if let Some(last) = &self.last {
                            out.push(Action::Send(Arc::clone(last)));
                        }
                        self.g_interval = self.cfg.backoff(self.g_interval);
                        self.timers.start(Timer::G, self.g_interval, now, out);
                    }
                    (S::Completed, Timer::H) => {
                        out.push(Action::Timeout(Timer::H));
                        self.terminate(out);
                    }
                    (S::Confirmed, Timer::I) | (S::Accepted, Timer::L) => self.terminate(out),
                    _ => {}
                }
            }
        }
    }
}

// === ServerNonInvite ===

/// States of [`ServerNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Nothing sent yet; retransmissions absorbed silently.
    Trying,
    /// A provisional went up; retransmissions get it again.
    Proceeding,
    /// The final went up; retransmissions get it again until J.
    Completed,
    /// Over.
    Terminated,
}

/// Non-INVITE server transaction.
#[derive(Clone, Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerSet,
    last: Option<Arc<Message>>,
}

impl ServerNonInvite {
    /// A transaction for a request just received.
    pub fn new(reliable: bool, cfg: TimerConfig) -> ServerNonInvite {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            cfg,
            timers: TimerSet::default(),
            last: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The last response sent upstream.
    pub fn last_response(&self) -> Option<&Message> {
        self.last.as_deref()
    }

    /// Replace the timers used from now on.
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        self.cfg = cfg;
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(out);
        self.state = ServerNonInviteState::Terminated;
        out.push(Action::Terminated);
    }

    /// Feed one event; the actions are appended to `out`.
    pub fn on_event(&mut self, ev: ServerEvent, now: Instant, out: &mut Vec<Action>) {
        use ServerNonInviteState as S;
        match (self.state, ev) {
            (S::Proceeding | S::Completed, ServerEvent::Request(_)) => {
                if let Some(last) = &self.last {
                    out.push(Action::Send(Arc::clone(last)));
                }
            }
            (_, ServerEvent::Request(_)) => {}
            (S::Trying | S::Proceeding, ServerEvent::Respond(resp)) => {
                let code = resp.status().unwrap_or(0);
                out.push(Action::Send(Arc::clone(&resp)));
                self.last = Some(resp);
                if is_final(code) {
                    self.state = S::Completed;
                    if self.reliable {
                        self.terminate(out);
                    } else {
                        self.timers.start(Timer::J, self.cfg.linger(), now, out);
                    }
                } else {
                    self.state = S::Proceeding;
                }
            }
            (_, ServerEvent::Respond(_)) => {}
            (S::Completed, ServerEvent::Timer(Timer::J)) => {
                if self.timers.due(Timer::J, now, out) {
                    self.terminate(out);
                }
            }
            (_, ServerEvent::Timer(t)) => {
                // Not a timer of this state: drop it (re-announcing if it is armed).
                let _ = self.timers.due(t, now, out);
            }
        }
    }
}

// === Either ===

/// A server transaction of either kind.
#[derive(Clone, Debug)]
pub enum ServerTx {
    /// INVITE.
    Invite(ServerInvite),
    /// Anything else but ACK.
    NonInvite(ServerNonInvite),
}

impl ServerTx {
    /// The right machine for `method`.
    pub fn new(method: &Method, reliable: bool, cfg: TimerConfig) -> ServerTx {
        if *method == Method::Invite {
            ServerTx::Invite(ServerInvite::new(reliable, cfg))
        } else {
            ServerTx::NonInvite(ServerNonInvite::new(reliable, cfg))
        }
    }

    /// Feed one event.
    pub fn on_event(&mut self, ev: ServerEvent, now: Instant, out: &mut Vec<Action>) {
        match self {
            ServerTx::Invite(s) => s.on_event(ev, now, out),
            ServerTx::NonInvite(s) => s.on_event(ev, now, out),
        }
    }

    /// Whether a response from the TU would still be sent: no final yet, or (INVITE) a
    /// 2xx in Accepted.
    pub fn can_send(&self, code: u16) -> bool {
        match self {
            ServerTx::Invite(s) => match s.state() {
                ServerInviteState::Proceeding => true,
                ServerInviteState::Accepted => (200..300).contains(&code),
                _ => false,
            },
            ServerTx::NonInvite(s) => matches!(
                s.state(),
                ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
            ),
        }
    }

    /// Whether an ACK would be absorbed here: INVITE, non-2xx final sent (Completed or
    /// Confirmed).
    pub fn absorbs_ack(&self) -> bool {
        matches!(
            self,
            ServerTx::Invite(s) if matches!(
                s.state(),
                ServerInviteState::Completed | ServerInviteState::Confirmed
            )
        )
    }

    /// Whether a final response has gone upstream.
    pub fn final_sent(&self) -> bool {
        match self {
            ServerTx::Invite(s) => s.state() != ServerInviteState::Proceeding,
            ServerTx::NonInvite(s) => !matches!(
                s.state(),
                ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
            ),
        }
    }

    /// Whether the machine is over.
    pub fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(s) => s.state() == ServerInviteState::Terminated,
            ServerTx::NonInvite(s) => s.state() == ServerNonInviteState::Terminated,
        }
    }

    /// The last response sent upstream.
    pub fn last_response(&self) -> Option<&Message> {
        match self {
            ServerTx::Invite(s) => s.last_response(),
            ServerTx::NonInvite(s) => s.last_response(),
        }
    }

    /// Replace the timers used from now on.
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        match self {
            ServerTx::Invite(s) => s.set_timers(cfg),
            ServerTx::NonInvite(s) => s.set_timers(cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testutil::req;

    fn run(s: &mut ServerInvite, ev: ServerEvent, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        s.on_event(ev, now, &mut out);
        out
    }

    fn sends(acts: &[Action]) -> Vec<u16> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Send(m) => m.status(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn invite_server_pure_machine() {
        let t0 = Instant::now();
        let inv = req("INVITE", "z9hG4bK1", "");
        let mut s = ServerInvite::new(false, TimerConfig::default());
        // Retransmission before any response: nothing to resend.
        assert!(run(&mut s, ServerEvent::Request(inv.clone()), t0).is_empty());
        let acts = run(
            &mut s,
            ServerEvent::Respond(inv.reply(100, "", None).into()),
            t0,
        );
        assert_eq!(sends(&acts), [100]);
        assert_eq!(
            sends(&run(&mut s, ServerEvent::Request(inv.clone()), t0)),
            [100]
        );
        let acts = run(
            &mut s,
            ServerEvent::Respond(inv.reply(486, "", Some("x")).into()),
            t0,
        );
        assert_eq!(sends(&acts), [486]);
        assert!(acts.contains(&Action::StartTimer {
            timer: Timer::G,
            after: Duration::from_millis(500)
        }));
        assert_eq!(s.state(), ServerInviteState::Completed);
        // A timer that fires early is re-announced, not acted on.
        let early = run(
            &mut s,
            ServerEvent::Timer(Timer::G),
            t0 + Duration::from_millis(100),
        );
        assert_eq!(
            early,
            [Action::StartTimer {
                timer: Timer::G,
                after: Duration::from_millis(400)
            }]
        );
        let acts = run(
            &mut s,
            ServerEvent::Timer(Timer::G),
            t0 + Duration::from_millis(500),
        );
        assert_eq!(sends(&acts), [486]);
        let ack = req("ACK", "z9hG4bK1", "");
        let acts = run(
            &mut s,
            ServerEvent::Request(ack.clone()),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(s.state(), ServerInviteState::Confirmed);
        assert!(acts.contains(&Action::CancelTimer(Timer::G)));
        // Retransmitted ACK absorbed.
        assert!(run(
            &mut s,
            ServerEvent::Request(ack),
            t0 + Duration::from_secs(2)
        )
        .is_empty());
        let acts = run(
            &mut s,
            ServerEvent::Timer(Timer::I),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(acts.last(), Some(&Action::Terminated));
    }

    #[test]
    fn invite_server_keeps_nothing_once_accepted() {
        let t0 = Instant::now();
        let inv = req("INVITE", "z9hG4bK1", "");
        let mut s = ServerInvite::new(false, TimerConfig::default());
        run(
            &mut s,
            ServerEvent::Respond(inv.reply(180, "", Some("x")).into()),
            t0,
        );
        assert_eq!(s.last_response().and_then(Message::status), Some(180));
        let acts = run(
            &mut s,
            ServerEvent::Respond(inv.reply(200, "", Some("x")).into()),
            t0,
        );
        assert_eq!(sends(&acts), [200]);
        assert_eq!(s.state(), ServerInviteState::Accepted);
        assert!(s.last_response().is_none(), "the 2xx is not held for L");
        // A late 2xx of another branch still goes up, and is not kept either.
        let acts = run(
            &mut s,
            ServerEvent::Respond(inv.reply(200, "", Some("y")).into()),
            t0,
        );
        assert_eq!(sends(&acts), [200]);
        assert!(s.last_response().is_none());
        // A retransmitted INVITE is absorbed (RFC 6026): nothing to re-send.
        assert!(run(&mut s, ServerEvent::Request(inv), t0).is_empty());
    }

    #[test]
    fn non_invite_server_reliable_terminates_on_final() {
        let t0 = Instant::now();
        let r = req("OPTIONS", "z9hG4bK1", "");
        let mut s = ServerNonInvite::new(true, TimerConfig::default());
        let mut out = Vec::new();
        s.on_event(ServerEvent::Request(r.clone()), t0, &mut out);
        assert!(out.is_empty(), "Trying absorbs silently");
        s.on_event(
            ServerEvent::Respond(r.reply(200, "", Some("t")).into()),
            t0,
            &mut out,
        );
        assert_eq!(s.state(), ServerNonInviteState::Terminated);
        assert_eq!(out.last(), Some(&Action::Terminated));
    }
}
