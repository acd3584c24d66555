//! The proxy response context (RFC 3261 §16.7) of one server transaction and its
//! branches, with Kamailio `tm`'s choices: which responses go up at once, when siblings
//! are CANCELled, and which final wins.

use std::sync::Arc;

use weir_message::{names_equal, reason_phrase, Message, Text};

use crate::build::cancel_reason;
use crate::error::{Error, Result};

/// Local status of a branch whose request could not be sent (Kamailio `E_SEND`).
pub const SEND_FAILED: u16 = 477;

/// What a branch ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A final response received from downstream (our Via already removed), shared
    /// with what went upstream.
    Received(Arc<Message>),
    /// A final made up locally: 408 on a timeout (487 once cancelled).
    Local(u16),
    /// A 2xx, relayed upstream at once: a 2xx never competes for the final, so only
    /// its code is kept (the message is not held while the transaction lingers).
    Relayed(u16),
}

impl Reply {
    /// Status code.
    pub fn code(&self) -> u16 {
        match self {
            Reply::Received(m) => m.status().unwrap_or(500),
            Reply::Local(c) | Reply::Relayed(c) => *c,
        }
    }
}

/// One branch as the context sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchSlot {
    /// The final, once there is one.
    pub reply: Option<Reply>,
    /// Highest provisional status seen (CANCEL is only allowed after one).
    pub provisional: Option<u16>,
    /// A CANCEL is owed as soon as a provisional arrives (Kamailio `cancel_b_method=1`).
    pub cancel_pending: bool,
    /// A CANCEL was requested for this branch.
    pub cancelled: bool,
    /// The final is a local timeout.
    pub timed_out: bool,
}

/// Which final goes upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Winner {
    /// The final of this branch.
    Branch(usize),
    /// A local reply with this code (no branch to take it from).
    Local(u16),
}

/// What the context decided; the owner turns these into messages and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtxAction {
    /// Send this response upstream now: a provisional, or a 2xx.
    Forward(Arc<Message>),
    /// Send a CANCEL on this branch, with this `Reason` value.
    Cancel {
        /// Branch index.
        branch: usize,
        /// `Reason` header value, if any.
        reason: Option<String>,
    },
    /// A branch ended without success (negative final, or timeout): Kamailio's
    /// `tm:branch-failure` event.
    BranchFailure {
        /// Branch index.
        branch: usize,
        /// The branch's final (408 for a timeout, 487 once cancelled).
        code: u16,
        /// The final is a local timeout.
        timeout: bool,
    },
    /// Every branch failed and the failure hook is armed: the TU now adds a serial leg,
    /// replies, or relays the best final ([`ResponseContext::finish`]).
    AwaitFailure {
        /// Code of the best final so far.
        code: u16,
    },
    /// Send this final upstream (build it with [`ResponseContext::final_response`]).
    Final(Winner),
}

/// Kamailio's reply priority (`t_pick_branch`): lower wins. 2xx < 6xx < 3xx < 4xx (401,
/// 407, 415, 420 and 484 ahead of the other 4xx) < 5xx < anything else.
pub fn priority(code: u16) -> u32 {
    let xx = u32::from(code % 100);
    match code {
        200..=299 => xx,
        600..=699 => 1000 + xx,
        300..=399 => 3000 + xx,
        401 | 407 | 415 | 420 | 484 => 4000 + xx,
        400..=499 => 4100 + xx,
        500..=599 => 5000 + xx,
        _ => 10_000 + u32::from(code),
    }
}

/// Options of [`ResponseContext::final_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalOptions {
    /// A winning 503 goes up as 500.
    pub remap_503_500: bool,
    /// Collect every challenge into a winning 401/407.
    pub aggregate_challenges: bool,
}

/// The §16.7 response context.
#[derive(Clone, Debug)]
pub struct ResponseContext {
    invite: bool,
    relay_100: bool,
    branches: Vec<BranchSlot>,
    /// First branch of the current serial leg: only its replies compete (Kamailio
    /// `failure_reply_mode=3`).
    leg_start: usize,
    cancelled: bool,
    cancel_reason: Option<String>,
    /// A 6xx arrived: no new branches (§16.7 step 5).
    blocked: bool,
    /// Final code sent upstream (the first 2xx for INVITE).
    answered: Option<u16>,
    failure_armed: bool,
    awaiting: bool,
    max_branches: usize,
}

impl ResponseContext {
    /// A context for an INVITE (or not), allowing up to `max_branches` branches.
    pub fn new(invite: bool, max_branches: usize, relay_100: bool) -> ResponseContext {
        ResponseContext {
            invite,
            relay_100,
            branches: Vec::new(),
            leg_start: 0,
            cancelled: false,
            cancel_reason: None,
            blocked: false,
            answered: None,
            failure_armed: false,
            awaiting: false,
            max_branches,
        }
    }

    /// The branches so far.
    pub fn branches(&self) -> &[BranchSlot] {
        &self.branches
    }

    /// Whether the request was cancelled upstream (`t_is_canceled`).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// The final code sent upstream, if any.
    pub fn answered(&self) -> Option<u16> {
        self.answered
    }

    /// Whether the TU is deciding after [`CtxAction::AwaitFailure`].
    pub fn is_awaiting_failure(&self) -> bool {
        self.awaiting
    }

    /// Whether some branch has no final yet.
    pub fn has_pending(&self) -> bool {
        self.branches.iter().any(|b| b.reply.is_none())
    }

    /// Arm the failure hook for when all current branches have failed (`t_on_failure`);
    /// it fires once, and must be armed again before each new leg to fire again.
    pub fn arm_failure(&mut self) {
        self.failure_armed = true;
    }

    /// Disarm the failure hook.
    pub fn disarm_failure(&mut self) {
        self.failure_armed = false;
    }

    /// Room for `n` more branches? Checks the same conditions as
    /// [`ResponseContext::add_branch`].
    pub fn can_add(&self, n: usize) -> Result<()> {
        if self.answered.is_some() {
            return Err(Error::Completed);
        }
        if self.cancelled {
            return Err(Error::Cancelled);
        }
        if self.blocked {
            return Err(Error::ForkingBlocked);
        }
        if self.branches.len().saturating_add(n) > self.max_branches {
            return Err(Error::TooManyBranches {
                max: self.max_branches,
            });
        }
        Ok(())
    }

    /// Add a branch. After [`CtxAction::AwaitFailure`] this starts a new serial leg:
    /// earlier branches no longer compete for the final.
    pub fn add_branch(&mut self) -> Result<usize> {
        self.can_add(1)?;
        if self.awaiting {
            self.awaiting = false;
            self.leg_start = self.branches.len();
        }
        self.branches.push(BranchSlot::default());
        Ok(self.branches.len() - 1)
    }

    /// A provisional reached branch `b`'s client transaction. Returns the CANCEL owed
    /// to the branch if the request was cancelled before the branch could be.
    pub fn provisional_seen(&mut self, b: usize, code: u16) -> Option<CtxAction> {
        let slot = self.branches.get_mut(b)?;
        slot.provisional = Some(slot.provisional.map_or(code, |p| p.max(code)));
        if slot.cancel_pending && slot.reply.is_none() {
            slot.cancel_pending = false;
            slot.cancelled = true;
            return Some(CtxAction::Cancel {
                branch: b,
                reason: self.cancel_reason.clone(),
            });
        }
        None
    }

    /// A response from branch `b` (after the reply chain), our Via removed.
    pub fn on_response(&mut self, b: usize, resp: Message) -> Vec<CtxAction> {
        let mut acts = Vec::new();
        let code = resp.status().unwrap_or(0);
        let Some(slot) = self.branches.get_mut(b) else {
            return acts;
        };
        let resp = Arc::new(resp);
        match code {
            100..=199
                if self.answered.is_none()
                    && slot.reply.is_none()
                    && (code != 100 || self.relay_100) =>
            {
                acts.push(CtxAction::Forward(resp));
            }
            200..=299 if self.invite => {
                // §16.7 step 5: every 2xx to an INVITE goes up, even late ones.
                if slot.reply.as_ref().is_none_or(|r| r.code() >= 300) {
                    slot.reply = Some(Reply::Relayed(code));
                    slot.timed_out = false;
                }
                let first = self.answered.is_none_or(|a| a >= 300);
                if first {
                    self.answered = Some(code);
                    self.awaiting = false;
                    self.cancel_pending(b, &cancel_reason(200), &mut acts);
                }
                acts.push(CtxAction::Forward(resp));
            }
            200..=299 => {
                if slot.reply.is_none() {
                    slot.reply = Some(Reply::Relayed(code));
                }
                if self.answered.is_none() {
                    self.answered = Some(code);
                    self.awaiting = false;
                    acts.push(CtxAction::Forward(resp));
                }
            }
            300..=699 => {
                if slot.reply.is_some() {
                    return acts;
                }
                slot.reply = Some(Reply::Received(resp));
                acts.push(CtxAction::BranchFailure {
                    branch: b,
                    code,
                    timeout: false,
                });
                if code >= 600 && !self.blocked && self.answered.is_none() {
                    self.blocked = true;
                    if self.invite {
                        self.cancel_pending(b, &cancel_reason(code), &mut acts);
                    }
                }
                self.check_complete(&mut acts);
            }
            _ => {}
        }
        acts
    }

    /// Branch `b`'s timer ran out: it ends with a local 408 (487 once cancelled), and a
    /// branch that had a provisional is CANCELled (§16.8).
    pub fn on_timeout(&mut self, b: usize) -> Vec<CtxAction> {
        let mut acts = Vec::new();
        let cancelled = self.cancelled;
        let invite = self.invite;
        let Some(slot) = self.branches.get_mut(b) else {
            return acts;
        };
        if slot.reply.is_some() {
            return acts;
        }
        let code = if cancelled { 487 } else { 408 };
        slot.reply = Some(Reply::Local(code));
        slot.timed_out = true;
        if invite && slot.provisional.is_some() && !slot.cancelled {
            slot.cancelled = true;
            acts.push(CtxAction::Cancel {
                branch: b,
                reason: None,
            });
        }
        acts.push(CtxAction::BranchFailure {
            branch: b,
            code,
            timeout: true,
        });
        self.check_complete(&mut acts);
        acts
    }

    /// Branch `b`'s request could not be sent: it ends at once (§16.9) with a local 477,
    /// Kamailio's status for "error on sending to next hop" (`E_SEND`), which
    /// `unregister_on` and failure chains can tell from a 503 the next hop sent.
    /// Nothing is CANCELled since nothing reached the next hop.
    pub fn on_transport_error(&mut self, b: usize) -> Vec<CtxAction> {
        let mut acts = Vec::new();
        let Some(slot) = self.branches.get_mut(b) else {
            return acts;
        };
        if slot.reply.is_some() {
            return acts;
        }
        slot.reply = Some(Reply::Local(SEND_FAILED));
        acts.push(CtxAction::BranchFailure {
            branch: b,
            code: SEND_FAILED,
            timeout: false,
        });
        self.check_complete(&mut acts);
        acts
    }

    /// A CANCEL for the request arrived (§16.10): CANCEL every branch that had a
    /// provisional; the others get theirs when one arrives. With no branch pending and
    /// no final sent yet, a local 487 goes up at once.
    pub fn cancel(&mut self, reason: Option<String>) -> Vec<CtxAction> {
        let mut acts = Vec::new();
        if self.cancelled {
            return acts;
        }
        self.cancelled = true;
        self.cancel_reason = reason;
        if self.answered.is_some() {
            return acts;
        }
        let reason = self.cancel_reason.clone();
        let mut pending = false;
        for (i, slot) in self.branches.iter_mut().enumerate() {
            if slot.reply.is_some() {
                continue;
            }
            pending = true;
            if slot.provisional.is_some() {
                slot.cancelled = true;
                acts.push(CtxAction::Cancel {
                    branch: i,
                    reason: reason.clone(),
                });
            } else {
                slot.cancel_pending = true;
            }
        }
        if !pending {
            self.awaiting = false;
            self.answered = Some(487);
            acts.push(CtxAction::Final(Winner::Local(487)));
        }
        acts
    }

    /// The TU answered itself with `code` (`t_reply`). Pending INVITE branches are
    /// CANCELled when the answer is final.
    pub fn answer(&mut self, code: u16) -> Vec<CtxAction> {
        let mut acts = Vec::new();
        if code < 200 || self.answered.is_some() {
            return acts;
        }
        self.answered = Some(code);
        self.awaiting = false;
        if self.invite {
            self.cancel_pending(usize::MAX, &cancel_reason(code), &mut acts);
        }
        acts
    }

    /// Send the best final now (the TU's failure hook did nothing, or the transaction's
    /// lifetime ran out with no branch left to wait for).
    pub fn finish(&mut self) -> Vec<CtxAction> {
        if self.answered.is_some() {
            return Vec::new();
        }
        self.awaiting = false;
        let w = self.winner();
        self.answered = Some(self.winner_code(&w));
        vec![CtxAction::Final(w)]
    }

    /// CANCEL every pending branch but `except`.
    fn cancel_pending(&mut self, except: usize, reason: &str, acts: &mut Vec<CtxAction>) {
        for (i, slot) in self.branches.iter_mut().enumerate() {
            if i == except || slot.reply.is_some() || slot.cancelled {
                continue;
            }
            if slot.provisional.is_some() {
                slot.cancelled = true;
                acts.push(CtxAction::Cancel {
                    branch: i,
                    reason: Some(reason.to_string()),
                });
            } else {
                slot.cancel_pending = true;
                if self.cancel_reason.is_none() {
                    self.cancel_reason = Some(reason.to_string());
                }
            }
        }
    }

    fn check_complete(&mut self, acts: &mut Vec<CtxAction>) {
        if self.answered.is_some() || self.awaiting || self.branches.is_empty() {
            return;
        }
        if self.has_pending() {
            return;
        }
        let w = self.winner();
        let code = self.winner_code(&w);
        if self.failure_armed && !self.cancelled {
            self.failure_armed = false;
            self.awaiting = true;
            acts.push(CtxAction::AwaitFailure { code });
        } else {
            self.answered = Some(code);
            acts.push(CtxAction::Final(w));
        }
    }

    /// The best final of the current leg (first one on ties).
    pub fn winner(&self) -> Winner {
        let best = self
            .branches
            .iter()
            .enumerate()
            .skip(self.leg_start)
            .filter_map(|(i, s)| s.reply.as_ref().map(|r| (i, priority(r.code()))))
            .fold(None::<(usize, u32)>, |best, (i, p)| match best {
                Some((_, bp)) if bp <= p => best,
                _ => Some((i, p)),
            });
        match best {
            Some((i, _)) => Winner::Branch(i),
            None if self.cancelled => Winner::Local(487),
            None => Winner::Local(500),
        }
    }

    fn winner_code(&self, w: &Winner) -> u16 {
        match w {
            Winner::Branch(i) => self
                .branches
                .get(*i)
                .and_then(|s| s.reply.as_ref())
                .map_or(500, Reply::code),
            Winner::Local(c) => *c,
        }
    }

    /// Build the final for `w`: the branch's response, or `local(code)` for a local one;
    /// challenges of every 401/407 branch of the leg added to a winning 401/407, and a
    /// 503 turned into 500.
    pub fn final_response(
        &self,
        w: &Winner,
        opts: FinalOptions,
        local: impl Fn(u16) -> Message,
    ) -> Arc<Message> {
        let (msg, winner_idx) = match w {
            Winner::Branch(i) => match self.branches.get(*i).and_then(|s| s.reply.as_ref()) {
                Some(Reply::Received(m)) => (Arc::clone(m), Some(*i)),
                // A 2xx went up when it came: never the final picked here.
                Some(Reply::Local(c) | Reply::Relayed(c)) => (Arc::new(local(*c)), Some(*i)),
                None => (Arc::new(local(500)), None),
            },
            Winner::Local(c) => (Arc::new(local(*c)), None),
        };
        let code = msg.status().unwrap_or(500);
        let aggregate = opts.aggregate_challenges && (code == 401 || code == 407);
        let remap = opts.remap_503_500 && code == 503;
        if !aggregate && !remap {
            // Goes up as received (or as made): no copy.
            return msg;
        }
        let mut msg = Arc::unwrap_or_clone(msg);
        if aggregate {
            for (i, slot) in self.branches.iter().enumerate().skip(self.leg_start) {
                if Some(i) == winner_idx {
                    continue;
                }
                let Some(Reply::Received(m)) = &slot.reply else {
                    continue;
                };
                if !matches!(m.status(), Some(401 | 407)) {
                    continue;
                }
                for h in m.headers.iter().filter(|h| {
                    names_equal(&h.name, "WWW-Authenticate")
                        || names_equal(&h.name, "Proxy-Authenticate")
                }) {
                    let dup = msg
                        .headers
                        .iter()
                        .any(|x| names_equal(&x.name, &h.name) && x.value == h.value);
                    if !dup {
                        msg.headers.push(h.name.clone(), h.value.clone());
                    }
                }
            }
        }
        if remap {
            msg.start = weir_message::StartLine::Response {
                code: 500,
                reason: Text::from_static(reason_phrase(500)),
            };
        }
        Arc::new(msg)
    }
}

#[cfg(test)]
mod tests;
