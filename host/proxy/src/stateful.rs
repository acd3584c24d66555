//! Stateful routes: the transaction table absorbs retransmissions and handles ACK and
//! CANCEL; new requests run the chain and fork to one or more targets; responses pass
//! their client transaction, the reply chain, then the response context; when every
//! branch failed, the failure chain and the route's next serial group get their turn.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tokio::time::Instant;
use weir_config::{Config, OnError};
use weir_message::{Message, Method, Uri};
use weir_transaction::{
    BranchSuffix, ClientKey, IdHash, Output, Peer, RequestOutcome, ResponseOutcome, TableConfig,
    Target, TimerConfig, TxId,
};
use weir_transport::{Destination, FailHook, Transport};
use weir_wasm::{Hook, Vars, Verdict};

use crate::chain::{Extra, Outcome};
use crate::resolve::{self, Target as Dest};
use crate::stats::inc;
use crate::{Core, Rx};

/// What a transaction with a failure hook needs to start another leg.
#[derive(Debug, Clone)]
pub(crate) struct TxCtx {
    /// The request after the request chain, before per-branch edits.
    req: Message,
    rx: Rx,
    route_idx: usize,
    max_forwards: Option<u32>,
    lh: u32,
    /// Next-hop group the current leg went to.
    group: usize,
    /// The current leg's targets came from the route's next hops.
    from_next_hops: bool,
    /// The variables the chains set (`message.set-var`).
    vars: Vars,
}

/// A transaction a module keeps pending (verdict `wait`) until its deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parked {
    /// The reply at the deadline when no branch ever started.
    code: u16,
    /// Every branch so far failed: the best status, held until the deadline.
    held: Option<u16>,
    /// Some branch was started.
    started: bool,
}

impl TxCtx {
    /// The context of the next leg: `req` as the failure chain left it.
    fn next_leg(&self, req: Message, group: usize, from_next_hops: bool, vars: Vars) -> TxCtx {
        TxCtx {
            req,
            rx: self.rx,
            route_idx: self.route_idx,
            max_forwards: self.max_forwards,
            lh: self.lh,
            group,
            from_next_hops,
            vars,
        }
    }
}

/// One branch of a leg: where it goes, and what differs in its copy of the request.
#[derive(Debug, Clone)]
pub(crate) struct BranchTarget {
    /// The next hop (Kamailio's destination URI).
    pub(crate) hop: Uri,
    /// The branch's own request URI (a registered contact); `None` keeps the request's.
    pub(crate) ruri: Option<String>,
    /// Route header values put first in the branch's request (a binding's Path).
    pub(crate) route: Vec<String>,
}

impl BranchTarget {
    /// A branch to `hop` with the request as it is.
    pub(crate) fn to(hop: Uri) -> BranchTarget {
        BranchTarget {
            hop,
            ruri: None,
            route: Vec::new(),
        }
    }

    /// A branch a module asked for: to `destination` (else the URI), with the URI as
    /// the branch's request URI and `path` as its first Route values.
    pub(crate) fn of_module(t: weir_wasm::BranchTarget) -> Option<BranchTarget> {
        let hop = Uri::parse(t.destination.as_deref().unwrap_or(&t.uri)).ok()?;
        Some(BranchTarget {
            hop,
            ruri: Some(t.uri),
            route: t.path,
        })
    }

    /// A branch to a registered contact: the contact as request URI, its Path as
    /// Route set, its `received` address or first Path hop as next hop. `None` when
    /// that next hop does not parse.
    pub(crate) fn of_binding(t: &weir_registrar::Target) -> Option<BranchTarget> {
        let hop = t.destination.as_deref().unwrap_or(&t.uri);
        Some(BranchTarget {
            hop: Uri::parse(hop).ok()?,
            ruri: Some(t.uri.clone()),
            // Path elements as registered, brackets included.
            route: t.route.clone(),
        })
    }

    /// Apply the branch's edits to its copy of the request.
    pub(crate) fn edit(&self, req: &mut Message) {
        if let Some(u) = &self.ruri {
            req.set_request_uri(u.clone());
        }
        for (i, r) in self.route.iter().enumerate() {
            let at = req
                .headers
                .iter()
                .position(|h| weir_message::names_equal(&h.name, "Route"))
                .map_or(req.headers.len(), |first| first + i);
            req.headers.insert(at, "Route", r.clone());
        }
    }
}

/// The transaction table's settings from the config.
pub(crate) fn table_config(cfg: &Config) -> TableConfig {
    let t = &cfg.transaction;
    TableConfig {
        capacity: t.capacity,
        timers: TimerConfig {
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
            fr_timer: t.fr_timer,
            fr_inv_timer: t.fr_inv_timer,
            max_inv_lifetime: t.max_inv_lifetime,
            max_noninv_lifetime: t.max_noninv_lifetime,
            wt_timer: t.wt_timer,
        },
        server_header: Some(cfg.proxy.server_header.clone()),
        auto_inv_100: t.auto_inv_100,
        timer_resolution: t.timer_resolution,
        ..TableConfig::default()
    }
}

fn tsx_transport(t: Transport) -> weir_transaction::Transport {
    match t {
        Transport::Udp => weir_transaction::Transport::Udp,
        Transport::Tcp => weir_transaction::Transport::Tcp,
    }
}

fn net_transport(t: weir_transaction::Transport) -> Transport {
    match t {
        weir_transaction::Transport::Udp => Transport::Udp,
        _ => Transport::Tcp,
    }
}

fn peer(rx: Rx) -> Peer {
    Peer {
        addr: rx.src,
        transport: tsx_transport(rx.transport),
        listener: rx.listener,
    }
}

impl Core {
    fn contexts(&self) -> MutexGuard<'_, std::collections::HashMap<TxId, Arc<TxCtx>, IdHash>> {
        // Every critical section is one insert, get or remove: a poisoned map is whole.
        self.tx_ctx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carry out what the transaction table asks for.
    pub(crate) fn execute(&self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Response { to, response, .. } => {
                    let rx = Rx {
                        src: to.addr,
                        listener: to.listener,
                        transport: net_transport(to.transport),
                        conn: 0,
                    };
                    self.send_response(response, rx);
                }
                Output::Request {
                    tx,
                    branch,
                    to,
                    request,
                } => {
                    let dest = Destination {
                        transport: net_transport(to.transport),
                        addr: to.addr,
                    };
                    self.send_branch(tx, branch, dest, to.listener, &request);
                }
                Output::BranchFailure {
                    tx,
                    branch,
                    code,
                    timeout,
                } => {
                    inc(&self.stats.branch_failures);
                    tracing::debug!(?tx, branch, code, timeout, "branch failed");
                    self.branch_failed(tx, branch, code, timeout);
                }
                Output::Failure { tx, code } => self.on_failure(tx, code),
                Output::Terminated { tx } => {
                    self.contexts().remove(&tx);
                    self.forget_lookup(tx);
                    self.unpark_entry(tx);
                    if let Some(s) = self.services.get().and_then(std::sync::Weak::upgrade) {
                        s.transaction_ended(tx);
                    }
                }
            }
        }
    }

    /// Send a branch's request. If it cannot leave (no route, queue full, or its TCP
    /// connection refused, which is known only later), the branch ends at once as a local 477 (Kamailio's send error)
    /// instead of waiting for its timer (§16.9). Our ACKs and CANCELs have no
    /// transaction of their own to fail.
    fn send_branch(
        &self,
        tx: TxId,
        branch: usize,
        dest: Destination,
        listener: weir_transport::ListenerId,
        req: &Message,
    ) {
        let data = crate::serialize(req);
        if matches!(req.method(), Some(Method::Ack | Method::Cancel)) {
            self.send_bytes(dest, listener, data);
            return;
        }
        let me = self.me.clone();
        let on_fail: FailHook = Box::new(move || {
            if let Some(core) = me.upgrade() {
                core.branch_unsent(tx, branch);
            }
        });
        if let Err(e) = self.transports.send_notify(dest, listener, data, on_fail) {
            inc(&self.stats.send_failed);
            tracing::debug!(dest = %dest.addr, error = %e, "send failed");
            self.branch_unsent(tx, branch);
        }
    }

    /// A branch ended without success: the registrar may drop its binding, then the
    /// route's branch-failure chain, if it has one, runs on a copy of the request as
    /// sent on the failed branch. Only `drop` (end the chain) means anything there.
    fn branch_failed(&self, tx: TxId, branch: usize, code: u16, timeout: bool) {
        let chains = self.routes.iter().any(|r| !r.branch_failure.is_empty());
        let lookups = self
            .registrar
            .as_ref()
            .is_some_and(|r| !r.config().unregister_on.is_empty());
        if !chains && !lookups {
            return;
        }
        let Some((mut req, from)) = self.tsx.branch_request(tx, branch) else {
            return;
        };
        if lookups {
            if let Some(ruri) = req.request_uri() {
                let ruri = ruri.to_string();
                self.lookup_branch_failed(tx, &ruri, code, timeout);
            }
        }
        let route = crate::ident::route_of(&req).and_then(|r| self.routes.get(r));
        let Some(route) = route.filter(|r| !r.branch_failure.is_empty()) else {
            return;
        };
        let cancelled = self.tsx.is_cancelled(tx).unwrap_or(false);
        let rx = Rx {
            src: from.addr,
            listener: from.listener,
            transport: net_transport(from.transport),
            conn: 0,
        };
        for entry in &route.branch_failure {
            let extra = Extra {
                failure_status: code,
                cancelled,
                tx: tx.as_u64(),
                vars: None,
            };
            match self.call_entry(entry, &mut req, rx, Hook::BranchFailure, extra) {
                Ok(Verdict::Drop) => break,
                Ok(_) => {}
                Err(failure) => {
                    self.failed(&route.name, entry, &failure);
                    if entry.on_error != OnError::Skip {
                        break;
                    }
                }
            }
        }
    }

    fn branch_unsent(&self, tx: TxId, branch: usize) {
        tracing::debug!(?tx, branch, "branch request not sent: 477");
        if let Ok(out) = self.tsx.transport_error(tx, branch, Instant::now()) {
            self.execute(out);
        }
    }

    /// A request of a stateful route, after the local checks.
    pub(crate) fn stateful_request(
        &self,
        req: Message,
        rx: Rx,
        route_idx: usize,
        max_forwards: Option<u32>,
        lh: u32,
    ) {
        let handled = match self.tsx.on_request(&req, peer(rx), Instant::now()) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "no transaction for request");
                self.reply(&req, rx, e.status(), "", &[]);
                return;
            }
        };
        self.execute(handled.outputs);
        match handled.outcome {
            RequestOutcome::New(tx) => {
                self.new_transaction(tx, req, rx, route_idx, max_forwards, lh)
            }
            // The ACK of a 2xx is end to end: forward it like a stateless request.
            RequestOutcome::Stateless => self.route_stateless(req, rx, route_idx, max_forwards, lh),
            RequestOutcome::Retransmission(_)
            | RequestOutcome::AckAbsorbed(_)
            | RequestOutcome::Cancelled { .. }
            | RequestOutcome::CancelUnmatched
            | RequestOutcome::CancelledBeforeArrival(_) => {}
        }
    }

    fn new_transaction(
        &self,
        tx: TxId,
        mut req: Message,
        rx: Rx,
        route_idx: usize,
        max_forwards: Option<u32>,
        lh: u32,
    ) {
        let Some(route) = self.routes.get(route_idx) else {
            return;
        };
        if route.fr_timer.is_some() || route.fr_inv_timer.is_some() {
            let mut timers = self.tsx.config().timers;
            timers.fr_timer = route.fr_timer.unwrap_or(timers.fr_timer);
            timers.fr_inv_timer = route.fr_inv_timer.unwrap_or(timers.fr_inv_timer);
            let _ = self.tsx.set_timers(tx, timers);
        }
        let first_leg = |req, from_next_hops, vars| TxCtx {
            req,
            rx,
            route_idx,
            max_forwards,
            lh,
            group: 0,
            from_next_hops,
            vars,
        };
        let vars = std::cell::RefCell::new(Vars::default());
        let extra = Extra {
            tx: tx.as_u64(),
            vars: Some(&vars),
            ..Extra::default()
        };
        let explicit = match self.request_chain(route, &mut req, rx, extra) {
            Outcome::Continue => {
                if let Some(r) = self.save_if_registrar(&req, rx, route_idx) {
                    self.tx_reply(tx, r.status, &r.reason, &r.headers);
                    return;
                }
                match self.lookup_if_location(&req, route_idx) {
                    None => None,
                    Some(Ok((branches, targets))) => {
                        self.remember_lookup(tx, targets);
                        Some(branches)
                    }
                    Some(Err((code, reason))) => {
                        self.tx_reply(tx, code, reason, &[]);
                        return;
                    }
                }
            }
            Outcome::Forward(targets) => {
                let uris: Vec<BranchTarget> = targets
                    .iter()
                    .filter_map(|t| Uri::parse(t).ok())
                    .map(BranchTarget::to)
                    .collect();
                if uris.is_empty() {
                    inc(&self.stats.module_failures);
                    tracing::warn!(route = %route.name, ?targets, "module gave no usable forward target");
                    self.tx_reply(tx, 500, "Bad Forward Target", &[]);
                    return;
                }
                Some(uris)
            }
            Outcome::Reply {
                code,
                reason,
                headers,
            } => {
                self.tx_reply(tx, code, &reason, &headers);
                return;
            }
            Outcome::Drop => {
                inc(&self.stats.module_dropped);
                let out = self.tsx.release(tx).unwrap_or_default();
                self.execute(out);
                return;
            }
            Outcome::Wait {
                branches,
                timeout,
                code,
            } => {
                let ctx = first_leg(req, false, vars.into_inner());
                return self.park(tx, ctx, branches, timeout, code);
            }
        };
        let ctx = first_leg(req, explicit.is_none(), vars.into_inner());
        self.fork(tx, ctx, explicit);
    }

    fn parked(&self) -> MutexGuard<'_, std::collections::HashMap<TxId, Parked, IdHash>> {
        // Every critical section is one insert, get or remove: a poisoned map is whole.
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `tx` is parked; without taking the lock while nothing is (the usual
    /// case on the per-transaction path).
    fn is_parked(&self, tx: TxId) -> bool {
        self.parked_len.load(Ordering::Relaxed) > 0 && self.parked().contains_key(&tx)
    }

    /// Take `tx` out of the parked table, if it is there.
    fn unpark_entry(&self, tx: TxId) -> Option<Parked> {
        if self.parked_len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut parked = self.parked();
        let p = parked.remove(&tx);
        self.parked_len.store(parked.len(), Ordering::Relaxed);
        p
    }

    /// A module's `wait`: keep the INVITE transaction open until `timeout`, forking to
    /// `branches` now; later branches come from `transactions.add-branch` /
    /// `append-contacts`.
    fn park(
        &self,
        tx: TxId,
        ctx: TxCtx,
        branches: Vec<weir_wasm::BranchTarget>,
        timeout: std::time::Duration,
        code: u16,
    ) {
        if ctx.req.method() != Some(&Method::Invite) {
            inc(&self.stats.module_failures);
            tracing::warn!("module verdict `wait` on a non-INVITE request");
            return self.tx_reply(tx, 500, "Wait Needs An INVITE", &[]);
        }
        inc(&self.stats.parked);
        let branches: Vec<BranchTarget> = branches
            .into_iter()
            .filter_map(BranchTarget::of_module)
            .collect();
        {
            let mut parked = self.parked();
            parked.insert(
                tx,
                Parked {
                    code,
                    held: None,
                    started: !branches.is_empty(),
                },
            );
            self.parked_len.store(parked.len(), Ordering::Relaxed);
        }
        let me = self.me.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(core) = me.upgrade() {
                core.unpark(tx);
            }
        });
        if branches.is_empty() {
            if self.tsx.arm_failure(tx).is_ok() {
                self.contexts().insert(tx, Arc::new(ctx));
            }
        } else {
            self.fork(tx, ctx, Some(branches));
        }
    }

    /// The deadline of a parked transaction: what every branch failed with goes
    /// upstream (through the failure chain), or the `wait` code when none started.
    fn unpark(&self, tx: TxId) {
        let Some(p) = self.unpark_entry(tx) else {
            return;
        };
        if self.tsx.is_answered(tx) != Some(false) {
            return;
        }
        if let Some(code) = p.held {
            self.on_failure(tx, code);
        } else if !p.started {
            inc(&self.stats.park_timeouts);
            self.tx_reply(tx, p.code, "", &[]);
        }
        // Otherwise branches are pending: they end the transaction as usual.
    }

    /// Fork a pending transaction to more targets (`transactions.add-branch`).
    pub(crate) fn add_branches(
        &self,
        tx: TxId,
        targets: Vec<weir_wasm::BranchTarget>,
    ) -> Result<(), String> {
        let branches: Vec<BranchTarget> = targets
            .into_iter()
            .filter_map(BranchTarget::of_module)
            .collect();
        if branches.is_empty() {
            return Err("no usable target".into());
        }
        self.append(tx, branches)
    }

    fn append(&self, tx: TxId, branches: Vec<BranchTarget>) -> Result<(), String> {
        match (self.tsx.is_answered(tx), self.tsx.is_cancelled(tx)) {
            (Some(false), Some(false)) => {}
            (None, _) | (_, None) => return Err("no such transaction".into()),
            (_, Some(true)) => return Err("the transaction was cancelled".into()),
            (Some(true), _) => return Err("the transaction was answered".into()),
        }
        let Some(ctx) = self.contexts().get(&tx).cloned() else {
            return Err(
                "the transaction cannot take branches (not kept pending or watched)".into(),
            );
        };
        if let Some(p) = self.parked().get_mut(&tx) {
            p.held = None;
            p.started = true;
        }
        inc(&self.stats.late_branches);
        let req = ctx.req.clone();
        let next = ctx.next_leg(req, ctx.group, false, ctx.vars.clone());
        self.fork(tx, next, Some(branches));
        Ok(())
    }

    /// Kamailio's `ts_append`: fork a pending transaction to the AOR's contacts that
    /// are not one of its branches yet (only to `contact` when given).
    pub(crate) fn append_contacts(
        &self,
        tx: TxId,
        aor: &str,
        contact: Option<&str>,
    ) -> Result<u32, String> {
        let registrar = self
            .registrar
            .as_ref()
            .ok_or("no registrar in this proxy")?;
        let targets = match registrar.lookup(aor, weir_store::now_ms()) {
            weir_registrar::Lookup::Found(t) => t,
            weir_registrar::Lookup::Error(e) => return Err(format!("location store: {e}")),
            _ => return Ok(0),
        };
        let existing: Vec<String> = (0..self.tsx.branch_count(tx))
            .filter_map(|b| self.tsx.branch_request(tx, b))
            .map(|(req, _)| req.request_uri().unwrap_or_default().to_string())
            .collect();
        let branches: Vec<BranchTarget> = targets
            .iter()
            .filter(|t| contact.is_none_or(|c| t.uri == c))
            .filter(|t| !existing.contains(&t.uri))
            .filter_map(BranchTarget::of_binding)
            .collect();
        let n = u32::try_from(branches.len()).unwrap_or(u32::MAX);
        if n > 0 {
            self.append(tx, branches)?;
        }
        Ok(n)
    }

    /// Answer a transaction locally (`t_reply`).
    fn tx_reply(&self, tx: TxId, code: u16, reason: &str, headers: &[(String, String)]) {
        let out = self
            .tsx
            .reply(tx, code, reason, headers, Instant::now())
            .unwrap_or_default();
        inc(&self.stats.local_replies);
        self.execute(out);
    }

    /// Start a leg: resolve the destinations, build one branch per destination, arm the
    /// failure hook when something could follow, and hand the branches to the table.
    pub(crate) fn fork(&self, tx: TxId, mut ctx: TxCtx, explicit: Option<Vec<BranchTarget>>) {
        ctx.from_next_hops &= self
            .next_hops
            .get(ctx.route_idx)
            .is_some_and(|g| !g.is_empty());
        // The leg's own copy of the request, made here only when the destinations
        // rewrite it (a strict router); otherwise below, once it is known whether the
        // context keeps the request.
        let mut edited = None;
        let (branches, keep_transport) = match explicit {
            Some(b) => (b, false),
            None => {
                let (uris, keep) = match self.loose_destinations(&ctx.req, ctx.route_idx, ctx.group)
                {
                    Some(d) => d,
                    None => {
                        let mut req = ctx.req.clone();
                        let d = self.destinations(&mut req, ctx.route_idx, None, ctx.group);
                        edited = Some(req);
                        d
                    }
                };
                (uris.into_iter().map(BranchTarget::to).collect(), keep)
            }
        };
        let mut targets = Vec::with_capacity(branches.len());
        for b in branches {
            match resolve::of_uri(&b.hop) {
                Ok(t) if keep_transport => targets.push((t.with_transport(ctx.rx.transport), b)),
                Ok(t) => targets.push((t, b)),
                Err(e) => tracing::debug!(uri = %b.hop, reason = e.reason, "target skipped"),
            }
        }
        if targets.is_empty() {
            self.tx_reply(tx, 478, "Unresolvable Destination", &[]);
            return;
        }
        let ready = targets.iter().all(|(t, _)| matches!(t, Dest::Ready(_)));
        // Starting now: whether the context stays is known now, and if it does not,
        // the leg takes its request instead of a copy. After a name lookup it is
        // decided then, as the leg starts.
        let keep = ready.then(|| self.keeps_context(tx, &ctx));
        let mut req = match edited {
            Some(req) => req,
            // The context is dropped when the leg starts: an empty request stays in it.
            None if keep == Some(false) => std::mem::replace(
                &mut ctx.req,
                Message::new_request(Method::Options, String::new()),
            ),
            None => ctx.req.clone(),
        };
        let record_route = self.prepare_forward(&mut req, ctx.route_idx, ctx.max_forwards);
        if ready {
            let dests = targets
                .into_iter()
                .filter_map(|(t, b)| match t {
                    Dest::Ready(d) => Some((d, b)),
                    Dest::Lookup { .. } => None,
                })
                .collect();
            self.start_leg(tx, ctx, req, dests, record_route, keep);
            return;
        }
        // Some names to look up first: do it off the message path, then start the leg.
        let Some(core) = self.me.upgrade() else {
            return;
        };
        self.runtime.spawn(async move {
            let mut dests = Vec::new();
            for (t, b) in targets {
                match t {
                    Dest::Ready(d) => dests.push((d, b)),
                    Dest::Lookup {
                        host,
                        port,
                        transport,
                    } => {
                        let found = tokio::time::timeout(
                            resolve::LOOKUP_TIMEOUT,
                            tokio::net::lookup_host((host.as_str(), port)),
                        )
                        .await;
                        match found.ok().and_then(Result::ok).and_then(|mut a| a.next()) {
                            Some(addr) => dests.push((Destination { transport, addr }, b)),
                            None => inc(&core.stats.unresolvable),
                        }
                    }
                }
            }
            if dests.is_empty() {
                core.tx_reply(tx, 478, "Unresolvable Destination", &[]);
            } else {
                core.start_leg(tx, ctx, req, dests, record_route, None);
            }
        });
    }

    fn start_leg(
        &self,
        tx: TxId,
        ctx: TxCtx,
        req: Message,
        dests: Vec<(Destination, BranchTarget)>,
        record_route: bool,
        keep: Option<bool>,
    ) {
        let mut targets = Vec::with_capacity(dests.len());
        let mut looped = false;
        // The last branch takes the leg's request itself, the others a copy.
        let mut req = Some(req);
        let last = dests.len().saturating_sub(1);
        for (i, (dest, branch)) in dests.into_iter().enumerate() {
            if self.is_own_listener(dest) {
                looped = true;
                continue;
            }
            let Some(out) =
                self.transports
                    .pick_listener(dest.transport, dest.addr, Some(ctx.rx.listener))
            else {
                inc(&self.stats.unresolvable);
                continue;
            };
            let n = self.branch_seq.fetch_add(1, Ordering::Relaxed);
            let copy = if i == last { req.take() } else { req.clone() };
            let Some(mut copy) = copy else {
                continue;
            };
            branch.edit(&mut copy);
            let Some(request) = self.outgoing(
                copy,
                ctx.rx,
                out,
                ctx.route_idx,
                ctx.lh,
                record_route,
                Some(BranchSuffix { tx, n }),
            ) else {
                continue;
            };
            targets.push(Target {
                request,
                to: Peer {
                    addr: dest.addr,
                    transport: tsx_transport(dest.transport),
                    listener: out,
                },
            });
        }
        if targets.is_empty() {
            if looped {
                inc(&self.stats.loops);
                self.tx_reply(tx, 482, "Loop Detected", &[]);
            } else {
                self.tx_reply(tx, 503, "Transport Not Available", &[]);
            }
            return;
        }
        let n = targets.len();
        let keep = keep.unwrap_or_else(|| self.keeps_context(tx, &ctx));
        if keep && self.tsx.arm_failure(tx).is_ok() {
            self.contexts().insert(tx, Arc::new(ctx));
        }
        match self.tsx.forward(tx, targets, Instant::now()) {
            Ok(out) => {
                self.stats.forwarded.add(n as u64);
                self.execute(out);
            }
            Err(e) => {
                tracing::debug!(?tx, error = %e, "cannot fork");
                self.tx_reply(tx, e.status(), "", &[]);
            }
        }
    }

    /// Whether `tx` keeps its context (for a failure chain, the route's next group, or
    /// later branches) when a leg starts.
    fn keeps_context(&self, tx: TxId, ctx: &TxCtx) -> bool {
        let more_groups = ctx.from_next_hops
            && self
                .next_hops
                .get(ctx.route_idx)
                .is_some_and(|g| ctx.group + 1 < g.len());
        let has_failure_chain = self
            .routes
            .get(ctx.route_idx)
            .is_some_and(|r| !r.failure.is_empty());
        more_groups
            || has_failure_chain
            || self.is_parked(tx)
            || self
                .services
                .get()
                .and_then(std::sync::Weak::upgrade)
                .is_some_and(|s| s.is_watched(tx))
    }

    /// Every branch of the current leg failed and the hook was armed: the failure chain
    /// decides, then the route's next serial group, else the best reply goes upstream.
    fn on_failure(&self, tx: TxId, code: u16) {
        if self.is_parked(tx) {
            if let Some(p) = self.parked().get_mut(&tx) {
                // Kept pending: more branches may come before the deadline.
                p.held = Some(code);
                return;
            }
        }
        let Some(ctx) = self.contexts().get(&tx).cloned() else {
            self.relay_best(tx);
            return;
        };
        let Some(route) = self.routes.get(ctx.route_idx) else {
            self.relay_best(tx);
            return;
        };
        if (600..700).contains(&code) {
            self.relay_best(tx);
            return;
        }
        let mut req = ctx.req.clone();
        let cancelled = self.tsx.is_cancelled(tx).unwrap_or(false);
        let vars = std::cell::RefCell::new(ctx.vars.clone());
        for entry in &route.failure {
            let extra = Extra {
                failure_status: code,
                cancelled,
                tx: tx.as_u64(),
                vars: Some(&vars),
            };
            let verdict = match self.call_entry(entry, &mut req, ctx.rx, Hook::Failure, extra) {
                Ok(v) => v,
                Err(failure) => {
                    self.failed(&route.name, entry, &failure);
                    match entry.on_error {
                        OnError::Skip => continue,
                        OnError::Drop => return self.relay_best(tx),
                        OnError::Reply(c) => return self.tx_reply(tx, c, "", &[]),
                    }
                }
            };
            match verdict {
                Verdict::Continue => continue,
                Verdict::Drop => return self.relay_best(tx),
                Verdict::Reply {
                    code,
                    reason,
                    headers,
                } => return self.tx_reply(tx, code, &reason, &headers),
                Verdict::Forward(targets) => {
                    let uris: Vec<BranchTarget> = targets
                        .iter()
                        .filter_map(|t| Uri::parse(t).ok())
                        .map(BranchTarget::to)
                        .collect();
                    if uris.is_empty() {
                        return self.relay_best(tx);
                    }
                    inc(&self.stats.failovers);
                    let next = ctx.next_leg(req, ctx.group, false, vars.into_inner());
                    return self.fork(tx, next, Some(uris));
                }
                Verdict::Wait {
                    branches,
                    timeout,
                    code,
                } => {
                    let next = ctx.next_leg(req, ctx.group, false, vars.into_inner());
                    return self.park(tx, next, branches, timeout, code);
                }
            }
        }
        let more = ctx.from_next_hops
            && self
                .next_hops
                .get(ctx.route_idx)
                .is_some_and(|g| ctx.group + 1 < g.len());
        if more {
            inc(&self.stats.failovers);
            let next = ctx.next_leg(req, ctx.group + 1, true, vars.into_inner());
            self.fork(tx, next, None);
        } else {
            self.relay_best(tx);
        }
    }

    fn relay_best(&self, tx: TxId) {
        let out = self.tsx.relay_best(tx, Instant::now()).unwrap_or_default();
        self.execute(out);
    }

    /// A response: its client transaction first. Returns it back when no transaction
    /// of ours matches, for the stateless path.
    pub(crate) fn stateful_response(&self, resp: Message, rx: Rx) -> Option<Message> {
        // The top Via is read once: for the client transaction and for our route.
        let Ok(key) = ClientKey::of_response(&resp) else {
            return Some(resp);
        };
        let route = crate::ident::parse_branch(&key.branch).map(|(r, _)| r);
        let (outcome, out) = self.tsx.on_keyed_response(resp, key, Instant::now());
        self.execute(out);
        match outcome {
            ResponseOutcome::Unmatched(resp) => Some(resp),
            ResponseOutcome::Absorbed => None,
            ResponseOutcome::Branch(mut br) => {
                let provisional = br.response.status().is_some_and(|c| c < 200);
                if let Some(route) = route.and_then(|r| self.routes.get(r)) {
                    if !route.reply.is_empty()
                        && !self.reply_chain(route, &mut br.response, rx)
                        && provisional
                    {
                        // Only provisionals may be dropped; finals decide the call.
                        inc(&self.stats.module_dropped);
                        return None;
                    }
                }
                inc(&self.stats.responses_relayed);
                let out = self.tsx.relay(br, Instant::now());
                self.execute(out);
                None
            }
        }
    }
}
