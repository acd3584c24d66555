//! Client transactions: RFC 3261 §17.1.1 (INVITE, with the RFC 6026 Accepted state) and
//! §17.1.2 (non-INVITE), with Kamailio's branch timers (`fr_timer`, `fr_inv_timer`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_message::Message;

use crate::action::{Action, Timer, TimerSet};
use crate::build::ack_for;
use crate::config::TimerConfig;

/// What a client transaction reacts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response matched to this transaction.
    Response(Message),
    /// A timer fired.
    Timer(Timer),
    /// The whole proxy transaction ran out of time (`max_inv_lifetime` /
    /// `max_noninv_lifetime`): behave as if the state's give-up timer fired now.
    Expire,
}

// === ClientInvite ===

/// States of [`ClientInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet: retransmitting (A) until `fr_timer` (B).
    Calling,
    /// A provisional arrived: waiting up to `fr_inv_timer` (C), restarted on each 1xx.
    Proceeding,
    /// A non-2xx final arrived and was ACKed; absorbing its retransmissions (D).
    Completed,
    /// A 2xx arrived (RFC 6026): its retransmissions go up too, until M.
    Accepted,
    /// Over.
    Terminated,
}

/// INVITE client transaction (one proxy branch).
#[derive(Clone, Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    /// The INVITE as sent; released once a 2xx arrives (nothing is retransmitted,
    /// ACKed or CANCELled on this branch after that), so the transaction lingers light.
    request: Option<Arc<Message>>,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerSet,
    a_interval: Duration,
    ack: Option<Arc<Message>>,
    /// Timer C fired once; the next expiry ends the transaction (see [`Timer::C`]).
    c_fired: bool,
}

impl ClientInvite {
    /// Start the transaction: the INVITE is sent, A (UDP) and B are armed.
    pub fn start(
        request: Message,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> ClientInvite {
        let request = Arc::new(request);
        out.push(Action::Send(Arc::clone(&request)));
        let mut c = ClientInvite {
            state: ClientInviteState::Calling,
            request: Some(request),
            reliable,
            cfg,
            timers: TimerSet::default(),
            a_interval: cfg.t1,
            ack: None,
            c_fired: false,
        };
        if !reliable {
            c.timers.start(Timer::A, c.a_interval, now, out);
        }
        c.timers.start(Timer::B, cfg.fr_timer, now, out);
        c
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE as sent; `None` once a 2xx released it.
    pub fn request(&self) -> Option<&Message> {
        self.request.as_deref()
    }

    /// Replace the timers used from now on.
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        self.cfg = cfg;
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(out);
        self.state = ClientInviteState::Terminated;
        out.push(Action::Terminated);
    }

    /// The give-up timer of the current state fired (or the lifetime ran out).
    fn give_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            ClientInviteState::Calling => {
                // No provisional: nothing to CANCEL, just stop (Kamailio: local 408).
                out.push(Action::Timeout(Timer::B));
                self.terminate(out);
            }
            ClientInviteState::Proceeding if !self.c_fired => {
                // §16.8: the branch counts as 408 and gets CANCELled; this transaction
                // stays to ACK the 487 that should follow, guarded by one more 64*T1.
                self.c_fired = true;
                out.push(Action::Timeout(Timer::C));
                self.timers.start(Timer::C, self.cfg.t1x64(), now, out);
            }
            ClientInviteState::Proceeding => self.terminate(out),
            _ => {}
        }
    }

    /// Feed one event; the actions are appended to `out`.
    pub fn on_event(&mut self, ev: ClientEvent, now: Instant, out: &mut Vec<Action>) {
        use ClientInviteState as S;
        match ev {
            ClientEvent::Response(resp) => {
                let code = resp.status().unwrap_or(0);
                match (self.state, code) {
                    (S::Calling | S::Proceeding, 100..=199) => {
                        if self.state == S::Calling {
                            self.timers.cancel(Timer::A, out);
                            self.timers.cancel(Timer::B, out);
                            self.state = S::Proceeding;
                        }
                        // restart_fr_on_each_reply=1: every 1xx restarts fr_inv.
                        if !self.c_fired {
                            self.timers.start(Timer::C, self.cfg.fr_inv_timer, now, out);
                        }
                        out.push(Action::Deliver(resp));
                    }
                    (S::Calling | S::Proceeding | S::Accepted, 200..=299) => {
                        if self.state != S::Accepted {
                            self.timers.cancel(Timer::A, out);
                            self.timers.cancel(Timer::B, out);
                            self.timers.cancel(Timer::C, out);
                            self.state = S::Accepted;
                            self.timers.start(Timer::M, self.cfg.linger(), now, out);
                            // Freed here, on the thread that handled the 2xx while the
                            // request is still in its cache, rather than at M.
                            self.request = None;
                        }
                        out.push(Action::Deliver(resp));
                    }
                    (S::Calling | S::Proceeding, 300..=699) => {
                        self.timers.cancel(Timer::A, out);
                        self.timers.cancel(Timer::B, out);
                        self.timers.cancel(Timer::C, out);
                        if let Some(req) = &self.request {
                            let ack = Arc::new(ack_for(req, &resp));
                            out.push(Action::Send(Arc::clone(&ack)));
                            self.ack = Some(ack);
                        }
                        out.push(Action::Deliver(resp));
                        self.state = S::Completed;
                        if self.reliable {
                            self.terminate(out);
                        } else {
                            self.timers.start(Timer::D, self.cfg.linger(), now, out);
                        }
                    }
                    (S::Completed, 300..=699) => {
                        // A retransmitted final: ACK it again, the TU does not see it.
                        if let Some(ack) = &self.ack {
                            out.push(Action::Send(Arc::clone(ack)));
                        }
                    }
                    _ => {}
                }
            }
            ClientEvent::Timer(t) => {
                if !self.timers.due(t, now, out) {
                    return;
                }
                match (self.state, t) {
                    (S::Calling, Timer::A) => {
                        if let Some(req) = &self.request {
                            out.push(Action::Send(Arc::clone(req)));
                        }
                        self.a_interval = self.cfg.backoff(self.a_interval);
                        self.timers.start(Timer::A, self.a_interval, now, out);
                    }
                    (S::Calling, Timer::B) | (S::Proceeding, Timer::C) => self.give_up(now, out),
                    (S::Completed, Timer::D) | (S::Accepted, Timer::M) => self.terminate(out),
                    _ => {}
                }
            }
            ClientEvent::Expire => self.give_up(now, out),
        }
    }
}

// === ClientNonInvite ===

/// States of [`ClientNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent: retransmitting (E) until `fr_timer` (F).
    Trying,
    /// A provisional arrived: retransmitting every T2.
    Proceeding,
    /// The final arrived; absorbing its retransmissions (K).
    Completed,
    /// Over.
    Terminated,
}

/// Non-INVITE client transaction (a proxy branch, or the CANCEL of one).
#[derive(Clone, Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    /// The request as sent; released once a 2xx arrives (a failed branch keeps it
    /// for the branch-failure chain).
    request: Option<Arc<Message>>,
    reliable: bool,
    cfg: TimerConfig,
    timers: TimerSet,
    e_interval: Duration,
}

impl ClientNonInvite {
    /// Start the transaction: the request is sent, E (UDP) and F are armed.
    pub fn start(
        request: Message,
        reliable: bool,
        cfg: TimerConfig,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> ClientNonInvite {
        let request = Arc::new(request);
        out.push(Action::Send(Arc::clone(&request)));
        let mut c = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            request: Some(request),
            reliable,
            cfg,
            timers: TimerSet::default(),
            e_interval: cfg.t1,
        };
        if !reliable {
            c.timers.start(Timer::E, c.e_interval, now, out);
        }
        c.timers.start(Timer::F, cfg.fr_timer, now, out);
        c
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// The request as sent; `None` once a 2xx released it.
    pub fn request(&self) -> Option<&Message> {
        self.request.as_deref()
    }

    /// Replace the timers used from now on.
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        self.cfg = cfg;
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(out);
        self.state = ClientNonInviteState::Terminated;
        out.push(Action::Terminated);
    }

    /// Feed one event; the actions are appended to `out`.
    pub fn on_event(&mut self, ev: ClientEvent, now: Instant, out: &mut Vec<Action>) {
        use ClientNonInviteState as S;
        match ev {
            ClientEvent::Response(resp) => {
                let code = resp.status().unwrap_or(0);
                match (self.state, code) {
                    (S::Trying | S::Proceeding, 100..=199) => {
                        self.state = S::Proceeding;
                        out.push(Action::Deliver(resp));
                    }
                    (S::Trying | S::Proceeding, 200..=699) => {
                        self.timers.cancel(Timer::E, out);
                        self.timers.cancel(Timer::F, out);
                        out.push(Action::Deliver(resp));
                        self.state = S::Completed;
                        if (200..300).contains(&code) {
                            self.request = None;
                        }
                        if self.reliable {
                            self.terminate(out);
                        } else {
                            self.timers.start(Timer::K, self.cfg.t4, now, out);
                        }
                    }
                    // Completed: retransmitted finals absorbed.
                    _ => {}
                }
            }
            ClientEvent::Timer(t) => {
                if !self.timers.due(t, now, out) {
                    return;
                }
                match (self.state, t) {
                    (S::Trying | S::Proceeding, Timer::E) => {
                        if let Some(req) = &self.request {
                            out.push(Action::Send(Arc::clone(req)));
                        }
                        self.e_interval = if self.state == S::Proceeding {
                            self.cfg.t2
                        } else {
                            self.cfg.backoff(self.e_interval)
                        };
                        self.timers.start(Timer::E, self.e_interval, now, out);
                    }
                    (S::Trying | S::Proceeding, Timer::F) => {
                        out.push(Action::Timeout(Timer::F));
                        self.terminate(out);
                    }
                    (S::Completed, Timer::K) => self.terminate(out),
                    _ => {}
                }
            }
            ClientEvent::Expire => {
                if matches!(self.state, S::Trying | S::Proceeding) {
                    out.push(Action::Timeout(Timer::F));
                    self.terminate(out);
                }
            }
        }
    }
}

// === Either ===

/// A client transaction of either kind.
#[derive(Clone, Debug)]
pub enum ClientTx {
    /// INVITE.
    Invite(ClientInvite),
    /// Anything else.
    NonInvite(ClientNonInvite),
}

impl ClientTx {
    /// Feed one event.
    pub fn on_event(&mut self, ev: ClientEvent, now: Instant, out: &mut Vec<Action>) {
        match self {
            ClientTx::Invite(c) => c.on_event(ev, now, out),
            ClientTx::NonInvite(c) => c.on_event(ev, now, out),
        }
    }

    /// The request as sent; `None` once a 2xx released it.
    pub fn request(&self) -> Option<&Message> {
        match self {
            ClientTx::Invite(c) => c.request(),
            ClientTx::NonInvite(c) => c.request(),
        }
    }

    /// Whether the machine is over.
    pub fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(c) => c.state() == ClientInviteState::Terminated,
            ClientTx::NonInvite(c) => c.state() == ClientNonInviteState::Terminated,
        }
    }

    /// Replace the timers used from now on.
    pub fn set_timers(&mut self, cfg: TimerConfig) {
        match self {
            ClientTx::Invite(c) => c.set_timers(cfg),
            ClientTx::NonInvite(c) => c.set_timers(cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::req;

    fn timers_started(acts: &[Action]) -> Vec<(Timer, Duration)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::StartTimer { timer, after } => Some((*timer, *after)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reliable_invite_has_no_timer_a_and_no_timer_d() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let inv = req("INVITE", "z9hG4bKw1", "");
        let mut c = ClientInvite::start(inv.clone(), true, TimerConfig::default(), t0, &mut out);
        assert_eq!(timers_started(&out), [(Timer::B, Duration::from_secs(30))]);
        out.clear();
        c.on_event(
            ClientEvent::Response(inv.reply(404, "", Some("x"))),
            t0,
            &mut out,
        );
        assert!(out.iter().any(
            |a| matches!(a, Action::Send(m) if m.method() == Some(&weir_message::Method::Ack))
        ));
        assert_eq!(out.last(), Some(&Action::Terminated), "D is zero on TCP");
    }

    #[test]
    fn a_2xx_releases_the_request_a_failure_keeps_it() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let inv = req("INVITE", "z9hG4bKw1", "");
        let mut c = ClientInvite::start(inv.clone(), false, TimerConfig::default(), t0, &mut out);
        c.on_event(
            ClientEvent::Response(inv.reply(200, "", Some("x"))),
            t0,
            &mut out,
        );
        assert_eq!(c.state(), ClientInviteState::Accepted);
        assert!(c.request().is_none());
        // Timer A's stale deadline finds nothing to retransmit.
        out.clear();
        c.on_event(
            ClientEvent::Timer(Timer::A),
            t0 + Duration::from_millis(500),
            &mut out,
        );
        assert!(!out.iter().any(|a| matches!(a, Action::Send(_))));

        let mut c = ClientInvite::start(inv.clone(), false, TimerConfig::default(), t0, &mut out);
        c.on_event(
            ClientEvent::Response(inv.reply(486, "", Some("x"))),
            t0,
            &mut out,
        );
        assert!(c.request().is_some(), "kept for the branch-failure chain");

        let r = req("BYE", "z9hG4bKw2", "");
        let mut n = ClientNonInvite::start(r.clone(), false, TimerConfig::default(), t0, &mut out);
        n.on_event(ClientEvent::Response(r.reply(200, "", None)), t0, &mut out);
        assert!(n.request().is_none());
        let mut n = ClientNonInvite::start(r.clone(), false, TimerConfig::default(), t0, &mut out);
        n.on_event(ClientEvent::Response(r.reply(403, "", None)), t0, &mut out);
        assert!(n.request().is_some());
    }

    #[test]
    fn provisional_switches_fr_to_fr_inv() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let inv = req("INVITE", "z9hG4bKw1", "");
        let mut c = ClientInvite::start(inv.clone(), false, TimerConfig::default(), t0, &mut out);
        out.clear();
        c.on_event(
            ClientEvent::Response(inv.reply(100, "", None)),
            t0,
            &mut out,
        );
        assert!(out.contains(&Action::CancelTimer(Timer::A)));
        assert!(out.contains(&Action::CancelTimer(Timer::B)));
        assert_eq!(timers_started(&out), [(Timer::C, Duration::from_secs(120))]);
        assert_eq!(c.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn non_invite_retransmits_at_t2_once_proceeding() {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let r = req("OPTIONS", "z9hG4bKw1", "");
        let mut c = ClientNonInvite::start(r.clone(), false, TimerConfig::default(), t0, &mut out);
        out.clear();
        c.on_event(ClientEvent::Response(r.reply(180, "", None)), t0, &mut out);
        out.clear();
        c.on_event(
            ClientEvent::Timer(Timer::E),
            t0 + Duration::from_millis(500),
            &mut out,
        );
        assert_eq!(timers_started(&out), [(Timer::E, Duration::from_secs(4))]);
    }
}
