//! One proxy transaction (Kamailio's `struct cell`): the server transaction, its
//! response context and one client transaction per branch (plus each branch's CANCEL),
//! wired together. Everything here runs under the shard lock and only records what
//! must happen; the table performs it after unlocking.

use std::sync::Arc;

use tokio::time::Instant;
use weir_message::{reason_phrase, Message, Method};

use crate::action::{Action, Timer};
use crate::build::{
    cancel_for, local_reply, pop_parsed_top_via, reply_source, CANCELED_REASON, TRYING_REASON,
};
use crate::client::{ClientEvent, ClientInvite, ClientNonInvite, ClientNonInviteState, ClientTx};
use crate::config::{TableConfig, TimerConfig};
use crate::context::{CtxAction, FinalOptions, ResponseContext};
use crate::driver::Slot;
use crate::error::{Error, Result};
use crate::key::{BranchSuffix, ClientKey, Peer, ServerKey, TxId};
use crate::server::{ServerEvent, ServerTx};
use crate::table::{Output, Target};

/// Which client transaction of a branch a response or timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The forwarded request.
    Main,
    /// Its CANCEL.
    Cancel,
}

/// Where a client key points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientRef {
    pub tx: TxId,
    pub branch: usize,
    pub role: Role,
}

/// Effects collected under the lock, performed by the table afterwards.
#[derive(Debug, Default)]
pub(crate) struct Fx {
    pub out: Vec<Output>,
    /// Deadlines to queue for these transactions (each its new earliest).
    pub timers: Vec<(Instant, TxId)>,
    pub new_keys: Vec<(ClientKey, ClientRef)>,
    pub dead_keys: Vec<(ClientKey, TxId)>,
    /// The earliest deadline queued (to wake the timer driver for, after unlocking).
    pub earliest: Option<Instant>,
}

/// What an ACK matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckMatch {
    /// ACK of a non-2xx final: hop-by-hop, absorbed.
    Absorbed,
    /// Not ours to absorb (ACK of a 2xx): the TU forwards it end to end.
    Stateless,
}

struct Branch {
    key: ClientKey,
    /// The key names this transaction ([`BranchSuffix`]): responses find the branch
    /// through the transaction, and the key is not in the table's client index.
    direct: bool,
    peer: Peer,
    client: ClientTx,
    cancel: Option<ClientNonInvite>,
}

pub(crate) struct Cell {
    pub id: TxId,
    pub key: ServerKey,
    /// [`ServerKey::table_hash`] of `key`, set by the table that indexes the cell.
    pub key_hash: u64,
    invite: bool,
    /// What local replies are built from: the request's start line and the lines a
    /// reply copies ([`reply_source`]). Released once a final went upstream: no local
    /// reply can follow it, and the lingering transaction then holds no part of the
    /// request's datagram.
    request: Option<Message>,
    peer: Peer,
    server: ServerTx,
    ctx: ResponseContext,
    branches: Vec<Branch>,
    cfg: Arc<TableConfig>,
    timers: TimerConfig,
    /// To tag of our local replies (RFC 3261 §8.2.6.2), also used for the CANCEL's 200,
    /// when set ([`Cell::set_to_tag`]); else [`Cell::to_tag`] makes the transaction's own.
    to_tag: Option<String>,
    /// Random per table; part of the transaction's own To tag.
    tag_seed: u32,
    /// To tag of the final sent upstream (RFC 2543 ACK matching).
    final_to_tag: Option<String>,
    /// An empty buffer for the actions of the next machine event (its capacity reused).
    acts: Vec<Action>,
    /// The TU dropped the request ([`Cell::release`]).
    released: bool,
    /// Every armed timer of the transaction's machines (and its lifetime): the
    /// machines' own deadlines, mirrored from their start and cancel actions.
    armed: Vec<(Slot, Instant)>,
    /// The deadline of the transaction's live entry in the shard's timer queue (the
    /// earliest armed when it was queued); entries with another deadline are stale.
    queued: Option<Instant>,
    created: Instant,
    /// When the whole transaction gives up; `None` once it did.
    lifetime_at: Option<Instant>,
}

fn lifetime_of(invite: bool, t: &TimerConfig) -> std::time::Duration {
    if invite {
        t.max_inv_lifetime
    } else {
        t.max_noninv_lifetime
    }
}

fn slot_index(b: usize) -> u16 {
    u16::try_from(b).unwrap_or(u16::MAX)
}

impl Cell {
    /// A transaction for `request` received from `peer`; the lifetime timer is armed.
    /// Its local To tag is made from `tag_seed` and `id` (unique across restarts too:
    /// ids restart from 1, the seed does not repeat).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: TxId,
        key: ServerKey,
        request: &Message,
        peer: Peer,
        cfg: Arc<TableConfig>,
        tag_seed: u32,
        now: Instant,
        fx: &mut Fx,
    ) -> Cell {
        let method = request.method().cloned().unwrap_or(Method::Options);
        let invite = method == Method::Invite;
        let timers = cfg.timers;
        let lifetime_at = now + lifetime_of(invite, &timers);
        let mut cell = Cell {
            id,
            key,
            key_hash: 0,
            invite,
            request: Some(reply_source(request)),
            peer,
            server: ServerTx::new(&method, peer.transport.is_reliable(), timers),
            ctx: ResponseContext::new(invite, cfg.max_branches, cfg.relay_100),
            branches: Vec::new(),
            to_tag: None,
            tag_seed,
            cfg,
            timers,
            final_to_tag: None,
            acts: Vec::new(),
            released: false,
            // Lifetime, the server's and a branch's timers, without regrowing.
            armed: Vec::with_capacity(6),
            queued: None,
            created: now,
            lifetime_at: Some(lifetime_at),
        };
        cell.arm(Slot::Lifetime, lifetime_at, fx);
        cell
    }

    /// Arm (or re-arm) a timer; the transaction's queue entry moves earlier if needed.
    fn arm(&mut self, slot: Slot, at: Instant, fx: &mut Fx) {
        match self.armed.iter_mut().find(|(s, _)| *s == slot) {
            Some(e) => e.1 = at,
            None => self.armed.push((slot, at)),
        }
        if self.queued.is_none_or(|q| at < q) {
            self.queued = Some(at);
            fx.timers.push((at, self.id));
        }
    }

    /// A machine stopped a timer. The queue entry stays: when it comes up, the
    /// transaction fires what is due by then (perhaps nothing) and queues its next.
    fn disarm(&mut self, slot: Slot) {
        self.armed.retain(|(s, _)| *s != slot);
    }

    /// The deadline of this transaction's live queue entry.
    pub fn queued_at(&self) -> Option<Instant> {
        self.queued
    }

    /// The queue entry for `at` came up: fire every timer due at `now`, earliest first,
    /// and queue the next deadline. An entry that is not the live one is ignored.
    pub fn fire(&mut self, at: Instant, now: Instant, fx: &mut Fx) {
        if self.queued != Some(at) {
            return;
        }
        self.queued = None;
        // A timer a firing arms for `now` (zero-length over reliable transports) fires
        // in this pass too; the bound only guards against a machine that keeps doing so.
        for _ in 0..64 {
            let next = self
                .armed
                .iter()
                .enumerate()
                .filter(|(_, (_, t))| *t <= now)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let (slot, _) = self.armed.swap_remove(i);
            self.on_timer(slot, now, fx);
        }
        let next = self.armed.iter().map(|(_, t)| *t).min();
        if let Some(next) = next {
            if self.queued.is_none_or(|q| next < q) {
                self.queued = Some(next);
                fx.timers.push((next, self.id));
            }
        }
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    pub fn is_answered(&self) -> bool {
        self.server.final_sent()
    }

    pub fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    /// Whether a CANCEL would find a branch to cancel.
    pub fn has_pending_branches(&self) -> bool {
        self.ctx.has_pending() && self.ctx.answered().is_none()
    }

    /// The To tag of this transaction's local replies.
    pub fn to_tag(&self) -> String {
        match &self.to_tag {
            Some(t) => t.clone(),
            None => format!("w{:08x}{:x}", self.tag_seed, self.id.0),
        }
    }

    /// Use `tag` as the To tag of local replies (a CANCEL's 200 carries its INVITE's).
    pub fn set_to_tag(&mut self, tag: String) {
        self.to_tag = Some(tag);
    }

    /// The automatic `100 trying -- your call is important to us`.
    pub fn send_trying(&mut self, now: Instant, fx: &mut Fx) {
        // A 100 carries no To tag.
        let Some(request) = &self.request else {
            return;
        };
        let trying = local_reply(
            request,
            100,
            TRYING_REASON,
            "",
            self.cfg.server_header.as_deref(),
        );
        self.server_event(ServerEvent::Respond(Arc::new(trying)), now, fx);
    }

    /// Whether every machine of the transaction is over.
    pub fn is_done(&self) -> bool {
        self.released
            || self.server.is_terminated()
                && self.branches.iter().all(|b| {
                    b.client.is_terminated()
                        && b.cancel
                            .as_ref()
                            .is_none_or(|c| c.state() == ClientNonInviteState::Terminated)
                })
    }

    /// The client keys this transaction put in the index, moved out of the cell (which
    /// is being removed).
    pub fn take_client_keys(&mut self) -> impl Iterator<Item = ClientKey> + '_ {
        self.branches
            .iter_mut()
            .filter(|b| !b.direct)
            .flat_map(|b| {
                let cancel = b.cancel.as_ref().map(|_| ClientKey {
                    branch: b.key.branch.clone(),
                    method: Method::Cancel,
                });
                let key = ClientKey {
                    branch: std::mem::take(&mut b.key.branch),
                    method: b.key.method.clone(),
                };
                std::iter::once(key).chain(cancel)
            })
    }

    /// New timers for this transaction; a changed lifetime counts from its creation.
    pub fn set_timers(&mut self, t: TimerConfig, fx: &mut Fx) {
        self.timers = t;
        let at = self.created + lifetime_of(self.invite, &t);
        if self.lifetime_at.is_some_and(|old| old != at) {
            self.lifetime_at = Some(at);
            self.arm(Slot::Lifetime, at, fx);
        }
        self.server.set_timers(t);
        for b in &mut self.branches {
            b.client.set_timers(t);
            if let Some(c) = &mut b.cancel {
                c.set_timers(t);
            }
        }
    }

    pub fn arm_failure(&mut self) {
        self.ctx.arm_failure();
    }

    /// A local reply. After the final went upstream (the request released) there is
    /// nothing to build it from, and nothing may be sent: the bare status line made
    /// then is dropped by the server transaction, which takes no second final.
    fn local(&self, code: u16) -> Message {
        let reason = match code {
            487 => CANCELED_REASON,
            c => reason_phrase(c),
        };
        let Some(request) = &self.request else {
            return Message {
                start: weir_message::StartLine::Response {
                    code,
                    reason: weir_message::Text::from_static(reason),
                },
                headers: weir_message::Headers::new(),
                body: Default::default(),
            };
        };
        local_reply(
            request,
            code,
            reason,
            &self.to_tag(),
            self.cfg.server_header.as_deref(),
        )
    }

    // === Server side ===

    fn server_event(&mut self, ev: ServerEvent, now: Instant, fx: &mut Fx) -> bool {
        let mut acts = std::mem::take(&mut self.acts);
        self.server.on_event(ev, now, &mut acts);
        let mut delivered = false;
        for a in acts.drain(..) {
            match a {
                Action::Send(m) => {
                    if m.status().is_some_and(|c| c >= 200) {
                        // Only RFC 2543 ACK matching looks at it.
                        if self.key.is_rfc2543() {
                            self.final_to_tag = m.to_tag();
                        }
                        self.request = None;
                    }
                    fx.out.push(Output::Response {
                        tx: self.id,
                        to: self.peer,
                        response: m,
                    });
                }
                Action::StartTimer { timer, after } => {
                    self.arm(Slot::Server(timer), now + after, fx);
                }
                Action::Deliver(_) => delivered = true,
                Action::Timeout(t) => {
                    tracing::debug!(tx = %self.id, timer = ?t, "no ACK for the final response");
                }
                Action::CancelTimer(timer) => self.disarm(Slot::Server(timer)),
                Action::Terminated => {}
            }
        }
        // Emptied: kept for the next event.
        self.acts = acts;
        delivered
    }

    /// A retransmission of the request (or of the CANCEL, for a CANCEL transaction).
    pub fn on_retransmission(&mut self, req: &Message, now: Instant, fx: &mut Fx) {
        self.server_event(ServerEvent::Request(req.clone()), now, fx);
    }

    pub fn on_ack(&mut self, ack: &Message, now: Instant, fx: &mut Fx) -> AckMatch {
        if self.key.is_rfc2543() && ack.to_tag() != self.final_to_tag {
            // RFC 3261 §17.2.3: a 2543 ACK matches only with the To tag of our final.
            return AckMatch::Stateless;
        }
        let absorbs = self.server.absorbs_ack();
        // Accepted passes the ACK up (RFC 6026); the TU forwards it end to end.
        self.server_event(ServerEvent::Request(ack.clone()), now, fx);
        if absorbs {
            AckMatch::Absorbed
        } else {
            AckMatch::Stateless
        }
    }

    /// Send `m` upstream: through the server transaction while it can take it, or (a
    /// late 2xx to an INVITE, §16.7 step 5 / RFC 6026) straight to the transport.
    fn send_upstream(&mut self, m: Arc<Message>, now: Instant, fx: &mut Fx) {
        let code = m.status().unwrap_or(0);
        if self.server.can_send(code) {
            self.server_event(ServerEvent::Respond(m), now, fx);
        } else if self.invite && (200..300).contains(&code) {
            fx.out.push(Output::Response {
                tx: self.id,
                to: self.peer,
                response: m,
            });
        }
    }

    /// A reply from the TU (`t_reply`).
    pub fn reply(
        &mut self,
        code: u16,
        reason: &str,
        headers: &[(String, String)],
        now: Instant,
        fx: &mut Fx,
    ) -> Result<()> {
        if self.server.final_sent() {
            return Err(Error::Completed);
        }
        let reason = if reason.is_empty() {
            reason_phrase(code)
        } else {
            reason
        };
        let mut m = local_reply(
            self.request.as_ref().ok_or(Error::Completed)?,
            code,
            reason,
            &self.to_tag(),
            self.cfg.server_header.as_deref(),
        );
        for (n, v) in headers {
            m.headers.push(n.as_str(), v.as_str());
        }
        let acts = self.ctx.answer(code);
        self.send_upstream(Arc::new(m), now, fx);
        self.apply(acts, now, fx);
        Ok(())
    }

    /// Answer 487 at once (a late INVITE whose CANCEL came first).
    pub fn reply_cancelled(&mut self, now: Instant, fx: &mut Fx) {
        let acts = self.ctx.cancel(None);
        self.apply(acts, now, fx);
    }

    // === Branches ===

    /// Fork to `targets`; `keys[i]` is the client key of `targets[i]`'s request
    /// ([`ClientKey::of_request`], which the table already computed).
    pub fn forward(
        &mut self,
        targets: Vec<Target>,
        keys: Vec<ClientKey>,
        now: Instant,
        fx: &mut Fx,
    ) -> Result<()> {
        if self.server.final_sent() {
            return Err(Error::Completed);
        }
        self.ctx.can_add(targets.len())?;
        if keys.len() != targets.len() {
            return Err(Error::BadBranch);
        }
        for (i, (t, k)) in targets.iter().zip(&keys).enumerate() {
            if t.request.method() != self.request.as_ref().and_then(Message::method) {
                return Err(Error::WrongKind("branch method differs from the request's"));
            }
            let dup = keys.get(..i).is_some_and(|earlier| earlier.contains(k));
            if dup || self.branches.iter().any(|b| &b.key == k) {
                return Err(Error::BadBranch);
            }
        }
        // Exactly what is needed: a branch is ~470 bytes, and the default growth to four
        // would ask for a large block (glibc's slow path) for the usual single branch.
        self.branches.reserve_exact(targets.len());
        for (t, key) in targets.into_iter().zip(keys) {
            let b = self.ctx.add_branch()?;
            let reliable = t.to.transport.is_reliable();
            let mut acts = std::mem::take(&mut self.acts);
            let client = if self.invite {
                ClientTx::Invite(ClientInvite::start(
                    t.request,
                    reliable,
                    self.timers,
                    now,
                    &mut acts,
                ))
            } else {
                ClientTx::NonInvite(ClientNonInvite::start(
                    t.request,
                    reliable,
                    self.timers,
                    now,
                    &mut acts,
                ))
            };
            let direct = BranchSuffix::tx_of(&key.branch) == Some(self.id);
            if !direct {
                fx.new_keys.push((
                    key.clone(),
                    ClientRef {
                        tx: self.id,
                        branch: b,
                        role: Role::Main,
                    },
                ));
            }
            self.branches.push(Branch {
                key,
                direct,
                peer: t.to,
                client,
                cancel: None,
            });
            self.client_actions(b, Role::Main, acts, now, fx);
        }
        Ok(())
    }

    /// The request as sent on branch `b`, and the peer the transaction's request came
    /// from; `None` for no such branch or one whose 2xx released its request.
    pub fn branch_request(&self, b: usize) -> Option<(Message, Peer)> {
        let br = self.branches.get(b)?;
        Some((br.client.request()?.clone(), self.peer))
    }

    /// How many branches the transaction has had.
    pub fn branch_count(&self) -> usize {
        self.branches.len()
    }

    /// Turn a client machine's actions into outputs; returns what it delivered.
    fn client_actions(
        &mut self,
        b: usize,
        role: Role,
        mut acts: Vec<Action>,
        now: Instant,
        fx: &mut Fx,
    ) -> Option<Message> {
        let peer = self.branches.get(b).map(|br| br.peer)?;
        let mut delivered = None;
        let mut timed_out = false;
        for a in acts.drain(..) {
            match a {
                Action::Send(m) => fx.out.push(Output::Request {
                    tx: self.id,
                    branch: b,
                    to: peer,
                    request: m,
                }),
                Action::StartTimer { timer, after } => {
                    let slot = match role {
                        Role::Main => Slot::Branch(slot_index(b), timer),
                        Role::Cancel => Slot::Cancel(slot_index(b), timer),
                    };
                    self.arm(slot, now + after, fx);
                }
                Action::Deliver(m) => delivered = Some(m),
                Action::Timeout(_) => timed_out = true,
                Action::CancelTimer(timer) => {
                    let slot = match role {
                        Role::Main => Slot::Branch(slot_index(b), timer),
                        Role::Cancel => Slot::Cancel(slot_index(b), timer),
                    };
                    self.disarm(slot);
                }
                Action::Terminated => {}
            }
        }
        // Emptied: kept for the next event.
        self.acts = acts;
        if timed_out && role == Role::Main {
            let acts = self.ctx.on_timeout(b);
            self.apply(acts, now, fx);
        }
        delivered
    }

    /// Branch `b`'s request could not be sent: its client transaction ends (nothing to
    /// retransmit, nothing to CANCEL) and the branch counts as a local 477.
    pub fn on_transport_error(&mut self, b: usize, now: Instant, fx: &mut Fx) {
        let mut acts = std::mem::take(&mut self.acts);
        match self.branches.get_mut(b) {
            Some(br) => br.client.on_event(ClientEvent::Expire, now, &mut acts),
            None => return,
        }
        // Not a timeout: the context hears of it as a 477 below.
        acts.retain(|a| !matches!(a, Action::Timeout(_)));
        self.client_actions(b, Role::Main, acts, now, fx);
        let acts = self.ctx.on_transport_error(b);
        self.apply(acts, now, fx);
    }

    fn send_cancel(&mut self, b: usize, reason: Option<String>, now: Instant, fx: &mut Fx) {
        let Some(br) = self.branches.get(b) else {
            return;
        };
        if br.cancel.is_some() || br.client.is_terminated() {
            return;
        }
        // A branch that answered 2xx has no request left, and nothing to cancel.
        let Some(req) = br.client.request() else {
            return;
        };
        let cancel = cancel_for(req, reason.as_deref());
        let reliable = br.peer.transport.is_reliable();
        let key = (!br.direct).then(|| ClientKey {
            branch: br.key.branch.clone(),
            method: Method::Cancel,
        });
        let mut acts = std::mem::take(&mut self.acts);
        let tx = ClientNonInvite::start(cancel, reliable, self.timers, now, &mut acts);
        if let Some(br) = self.branches.get_mut(b) {
            br.cancel = Some(tx);
        }
        if let Some(key) = key {
            fx.new_keys.push((
                key,
                ClientRef {
                    tx: self.id,
                    branch: b,
                    role: Role::Cancel,
                },
            ));
        }
        self.client_actions(b, Role::Cancel, acts, now, fx);
    }

    /// The client transaction `key` (a response's) is exactly, among this
    /// transaction's branches and their CANCELs.
    pub fn find_branch(&self, key: &ClientKey) -> Option<(usize, Role)> {
        let (b, br) = self
            .branches
            .iter()
            .enumerate()
            .find(|(_, b)| b.key.branch == key.branch)?;
        if key.method == br.key.method {
            Some((b, Role::Main))
        } else if key.method == Method::Cancel && br.cancel.is_some() {
            Some((b, Role::Cancel))
        } else {
            None
        }
    }

    /// Step 1 of a branch response: its client transaction. Returns the response for
    /// the TU's reply chain (our Via removed) unless the transaction absorbed it.
    pub fn on_branch_response(
        &mut self,
        b: usize,
        role: Role,
        resp: Message,
        now: Instant,
        fx: &mut Fx,
    ) -> Option<Message> {
        let mut acts = std::mem::take(&mut self.acts);
        {
            let br = self.branches.get_mut(b)?;
            match role {
                Role::Main => br
                    .client
                    .on_event(ClientEvent::Response(resp), now, &mut acts),
                Role::Cancel => {
                    // The answer to our CANCEL ends there (§16.10).
                    br.cancel
                        .as_mut()?
                        .on_event(ClientEvent::Response(resp), now, &mut acts);
                }
            }
        }
        let mut delivered = self.client_actions(b, role, acts, now, fx);
        if role == Role::Cancel {
            return None;
        }
        if let Some(code) = delivered.as_ref().and_then(Message::status) {
            if code < 200 {
                if let Some(CtxAction::Cancel { branch, reason }) =
                    self.ctx.provisional_seen(b, code)
                {
                    self.send_cancel(branch, reason, now, fx);
                }
            }
        }
        if let Some(m) = delivered.as_mut() {
            pop_parsed_top_via(m);
        }
        delivered
    }

    /// Step 2: the response, after the reply chain, goes through the response context.
    pub fn relay(&mut self, b: usize, resp: Message, now: Instant, fx: &mut Fx) {
        let acts = self.ctx.on_response(b, resp);
        self.apply(acts, now, fx);
    }

    /// A CANCEL for this INVITE arrived upstream.
    pub fn cancel(&mut self, reason: Option<String>, now: Instant, fx: &mut Fx) {
        let acts = self.ctx.cancel(reason);
        self.apply(acts, now, fx);
    }

    /// The TU's failure hook relays the best final (`t_on_failure` doing nothing).
    pub fn finish(&mut self, now: Instant, fx: &mut Fx) -> Result<()> {
        if self.ctx.answered().is_some() || self.server.final_sent() {
            return Err(Error::Completed);
        }
        if self.ctx.has_pending() {
            return Err(Error::HasBranches);
        }
        let acts = self.ctx.finish();
        self.apply(acts, now, fx);
        Ok(())
    }

    /// Drop a transaction the TU decided not to answer (no branches, no final).
    pub fn release(&mut self) -> Result<()> {
        if !self.branches.is_empty() {
            return Err(Error::HasBranches);
        }
        if self.server.final_sent() {
            return Err(Error::Completed);
        }
        // At most a 100 went up: ending here is what a stateless drop does.
        self.released = true;
        Ok(())
    }

    fn apply(&mut self, acts: Vec<CtxAction>, now: Instant, fx: &mut Fx) {
        for a in acts {
            match a {
                CtxAction::Forward(m) => self.send_upstream(m, now, fx),
                CtxAction::Cancel { branch, reason } => self.send_cancel(branch, reason, now, fx),
                CtxAction::BranchFailure {
                    branch,
                    code,
                    timeout,
                } => fx.out.push(Output::BranchFailure {
                    tx: self.id,
                    branch,
                    code,
                    timeout,
                }),
                CtxAction::AwaitFailure { code } => {
                    fx.out.push(Output::Failure { tx: self.id, code })
                }
                CtxAction::Final(w) => {
                    let opts = FinalOptions {
                        remap_503_500: self.cfg.remap_503_500,
                        aggregate_challenges: self.cfg.aggregate_challenges,
                    };
                    let m = self.ctx.final_response(&w, opts, |c| self.local(c));
                    self.send_upstream(m, now, fx);
                }
            }
        }
    }

    // === Timers ===

    fn on_timer(&mut self, slot: Slot, now: Instant, fx: &mut Fx) {
        match slot {
            Slot::Server(t) => {
                self.server_event(ServerEvent::Timer(t), now, fx);
            }
            Slot::Branch(b, t) => self.client_timer(usize::from(b), Role::Main, t, now, fx),
            Slot::Cancel(b, t) => self.client_timer(usize::from(b), Role::Cancel, t, now, fx),
            Slot::Lifetime => match self.lifetime_at {
                Some(at) if at <= now => {
                    self.lifetime_at = None;
                    self.expire(now, fx);
                }
                // Moved later by set_timers: wait for the new deadline.
                Some(at) => self.arm(Slot::Lifetime, at, fx),
                None => {}
            },
        }
    }

    fn client_timer(&mut self, b: usize, role: Role, t: Timer, now: Instant, fx: &mut Fx) {
        let mut acts = std::mem::take(&mut self.acts);
        {
            let Some(br) = self.branches.get_mut(b) else {
                return;
            };
            match role {
                Role::Main => br.client.on_event(ClientEvent::Timer(t), now, &mut acts),
                Role::Cancel => match br.cancel.as_mut() {
                    Some(c) => c.on_event(ClientEvent::Timer(t), now, &mut acts),
                    None => return,
                },
            }
        }
        self.client_actions(b, role, acts, now, fx);
    }

    /// `max_inv_lifetime` / `max_noninv_lifetime`: every pending branch gives up now,
    /// and whatever is best goes upstream.
    fn expire(&mut self, now: Instant, fx: &mut Fx) {
        if self.server.final_sent() || self.ctx.answered().is_some() {
            return;
        }
        tracing::debug!(tx = %self.id, "transaction lifetime over");
        // No failure hook now: the final goes up with this expiry.
        self.ctx.disarm_failure();
        for b in 0..self.branches.len() {
            let pending = self
                .ctx
                .branches()
                .get(b)
                .is_some_and(|s| s.reply.is_none());
            if !pending {
                continue;
            }
            let mut acts = std::mem::take(&mut self.acts);
            if let Some(br) = self.branches.get_mut(b) {
                br.client.on_event(ClientEvent::Expire, now, &mut acts);
            }
            self.client_actions(b, Role::Main, acts, now, fx);
            // A final the TU never relayed leaves the slot pending: close it too.
            let acts = self.ctx.on_timeout(b);
            self.apply(acts, now, fx);
        }
        let acts = self.ctx.finish();
        self.apply(acts, now, fx);
    }
}
