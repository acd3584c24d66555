//! What the state machines ask of their environment, and the timers they use.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_message::Message;

/// RFC 3261 §17 timers (Table 4), plus L and M from RFC 6026.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Client INVITE: request retransmission (UDP).
    A,
    /// Client INVITE: no provisional in time (Kamailio `fr_timer`).
    B,
    /// Client INVITE: no final after a provisional (Kamailio `fr_inv_timer`, §16.6
    /// step 11).
    C,
    /// Client INVITE: absorb final retransmissions after the ACK.
    D,
    /// Client non-INVITE: request retransmission (UDP).
    E,
    /// Client non-INVITE: no final in time (Kamailio `fr_timer`).
    F,
    /// Server INVITE: final response retransmission (UDP).
    G,
    /// Server INVITE: the ACK never came.
    H,
    /// Server INVITE: absorb ACK retransmissions.
    I,
    /// Server non-INVITE: absorb request retransmissions.
    J,
    /// Client non-INVITE: absorb response retransmissions.
    K,
    /// Server INVITE (RFC 6026 Accepted): forward 2xx retransmissions, absorb the INVITE's.
    L,
    /// Client INVITE (RFC 6026 Accepted): pass 2xx retransmissions up.
    M,
}

/// One thing a state machine wants done. Machines never perform IO or read a clock:
/// they are given `now` and return these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand this message to the transport: a request (client transactions) or a
    /// response (server transactions), to the transaction's peer. Shared with the
    /// machine, which keeps it for retransmission.
    Send(Arc<Message>),
    /// Arm `timer` to fire `after` from now (replacing an earlier arming).
    StartTimer {
        /// Which timer.
        timer: Timer,
        /// Delay from the `now` of the call that returned this action.
        after: Duration,
    },
    /// Disarm `timer`. Drivers may ignore this: a machine ignores a timer it did not
    /// arm, or that fires before its deadline (it re-announces the deadline instead).
    CancelTimer(Timer),
    /// Pass a message up to the transaction user: a response (client) or an ACK for a
    /// 2xx (server, RFC 6026 Accepted).
    Deliver(Message),
    /// The transaction timed out (`B`, `C`, `F`, `H`); the TU decides what that means.
    Timeout(Timer),
    /// The transaction is over; it will produce nothing more.
    Terminated,
}

/// Deadlines of the armed timers of one machine.
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerSet {
    armed: Vec<(Timer, Instant)>,
}

impl TimerSet {
    /// Arm (or re-arm) `timer`.
    pub(crate) fn start(
        &mut self,
        timer: Timer,
        after: Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let at = now + after;
        match self.armed.iter_mut().find(|(t, _)| *t == timer) {
            Some(slot) => slot.1 = at,
            None => self.armed.push((timer, at)),
        }
        out.push(Action::StartTimer { timer, after });
    }

    /// Disarm `timer` if armed.
    pub(crate) fn cancel(&mut self, timer: Timer, out: &mut Vec<Action>) {
        let before = self.armed.len();
        self.armed.retain(|(t, _)| *t != timer);
        if self.armed.len() != before {
            out.push(Action::CancelTimer(timer));
        }
    }

    /// Disarm everything (on termination).
    pub(crate) fn clear(&mut self, out: &mut Vec<Action>) {
        for (t, _) in self.armed.drain(..) {
            out.push(Action::CancelTimer(t));
        }
    }

    /// Whether `timer` is due at `now` (it is then disarmed). A timer armed for later
    /// is announced again, so a driver that keeps one entry per timer (the earliest)
    /// still learns about a deadline that moved later.
    pub(crate) fn due(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) -> bool {
        let Some(pos) = self.armed.iter().position(|(t, _)| *t == timer) else {
            return false;
        };
        let at = self.armed.get(pos).map_or(now, |(_, at)| *at);
        if at <= now {
            self.armed.swap_remove(pos);
            true
        } else {
            out.push(Action::StartTimer {
                timer,
                after: at - now,
            });
            false
        }
    }
}
