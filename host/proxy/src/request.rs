//! Requests: sanity, local answers, route selection, the module chain and stateless
//! forwarding (RFC 3261 §16.3–16.6, §16.11).

use std::borrow::Borrow;
use std::net::IpAddr;

use bytes::Bytes;

use weir_config::{Mode, Route};
use weir_message::{
    host_ip, push_dec, reason_phrase, Message, Method, NameAddr, ParseError, Text, Uri, Via,
};
use weir_transport::{Destination, ListenerId, Transport};

use crate::chain::Outcome;
use crate::ident::{self, loop_hash, parse_branch, push_branch, to_tag, to_tag_with};
use crate::resolve;
use crate::stats::inc;
use crate::{serialize, Core, Rx};

/// Max-Forwards put on requests that carry none (RFC 3261 §16.6 step 3).
const DEFAULT_MAX_FORWARDS: u32 = 70;

/// Methods whose initial requests create dialogs and so get a Record-Route.
fn forms_dialog(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
    )
}

// === Header helpers ===

/// Rewrite the first via-parm of the first Via line.
fn edit_top_via(msg: &mut Message, f: impl FnOnce(&mut Via)) {
    let Some(pos) = msg.headers.position("Via") else {
        return;
    };
    let Some(h) = msg.headers.get_at(pos) else {
        return;
    };
    let Ok(mut vias) = Via::parse_list(&h.value) else {
        return;
    };
    if let Some(top) = vias.first_mut() {
        f(top);
    }
    msg.headers.set_value_at(pos, join(&vias));
}

pub(crate) fn join<T: std::fmt::Display>(items: &[T]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{it}");
    }
    out
}

/// Remove the first entry of a list header (`Via`, `Route`), returning it.
pub(crate) fn pop_first<T, P>(msg: &mut Message, name: &str, parse: P) -> Option<T>
where
    T: std::fmt::Display,
    P: Fn(&str) -> Option<Vec<T>>,
{
    let pos = msg.headers.position(name)?;
    let h = msg.headers.get_at(pos)?;
    if !h.value.contains(',') {
        // One entry on the line (the usual case): no need to re-serialise the rest.
        let first = parse(&h.value)?.into_iter().next()?;
        msg.headers.remove_at(pos);
        return Some(first);
    }
    let mut items = parse(&h.value)?;
    if items.is_empty() {
        return None;
    }
    let first = items.remove(0);
    if items.is_empty() {
        msg.headers.remove_at(pos);
    } else {
        msg.headers.set_value_at(pos, join(&items));
    }
    Some(first)
}

fn routes_of(v: &str) -> Option<Vec<NameAddr>> {
    NameAddr::parse_list(v).ok()
}

/// The first Route entry.
fn first_route(msg: &Message) -> Option<NameAddr> {
    let v = msg.headers.get("Route")?;
    routes_of(v)?.into_iter().next()
}

/// Remove the first Route entry, known to parse ([`first_route`] found it): alone on
/// its line, the line goes without a second parse.
fn drop_first_route(msg: &mut Message) {
    let Some(pos) = msg.headers.position("Route") else {
        return;
    };
    if msg
        .headers
        .get_at(pos)
        .is_some_and(|h| !h.value.contains(','))
    {
        msg.headers.remove_at(pos);
    } else {
        pop_first(msg, "Route", routes_of);
    }
}

/// Remove the last Route entry (§16.4 strict-router recovery).
fn pop_last_route(msg: &mut Message) -> Option<NameAddr> {
    let positions: Vec<usize> = msg
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| weir_message::names_equal(&h.name, "Route"))
        .map(|(i, _)| i)
        .collect();
    let pos = *positions.last()?;
    let h = msg.headers.get_at(pos)?;
    let mut items = routes_of(&h.value)?;
    let last = items.pop()?;
    if items.is_empty() {
        msg.headers.remove_at(pos);
    } else {
        msg.headers.set_value_at(pos, join(&items));
    }
    Some(last)
}

/// §16.6 step 3: set Max-Forwards to `n`, rewriting the one line in place when there is
/// one (what `Headers::set` does, without a new string).
fn set_max_forwards(msg: &mut Message, n: u32) {
    let mut lines = msg
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| weir_message::names_equal(&h.name, "Max-Forwards"))
        .map(|(i, _)| i);
    match (lines.next(), lines.next()) {
        (Some(pos), None) => {
            msg.headers.set_value_at(pos, Text::number(n));
        }
        _ => msg.headers.set("Max-Forwards", Text::number(n)),
    }
}

/// Put `value` first among the lines of `name` (or first of all headers if none).
fn insert_first(msg: &mut Message, name: &str, value: String) {
    let pos = msg.headers.position(name).unwrap_or(0);
    msg.headers.insert(pos, name, value);
}

fn same_ip(host: &str, ip: IpAddr) -> bool {
    host_ip(host) == Some(ip)
}

// === Requests ===

impl Core {
    /// Something that did not parse: answer it if a reply can be routed, else count a drop.
    pub(crate) fn on_parse_error(&self, e: ParseError, rx: Rx) {
        let code = e.status_code();
        let reason = e.reason().to_string();
        match e.into_partial() {
            Some(mut req) => {
                inc(&self.stats.malformed_replied);
                tracing::debug!(src = %rx.src, %reason, "malformed request answered");
                self.stamp_via(&mut req, rx);
                self.reply(&req, rx, code, &reason, &[]);
            }
            None => {
                inc(&self.stats.parse_dropped);
                tracing::debug!(src = %rx.src, %reason, "unparseable message dropped");
            }
        }
    }

    /// RFC 3261 §18.2.1 and RFC 3581: note where the request really came from. On
    /// streams the source is always recorded, so replies find the connection again.
    fn stamp_via(&self, req: &mut Message, rx: Rx) {
        let stream = rx.transport != Transport::Udp;
        // Most requests need no stamp: leave the Via text alone then.
        if !stream {
            let Ok(top) = req.top_via_ref() else { return };
            if same_ip(top.host, rx.src.ip()) && top.rport().is_none() && top.received().is_none() {
                return;
            }
        }
        edit_top_via(req, |via| {
            // A `received` the client wrote itself must not steer our replies (§18.2.1:
            // the server writes it), so any existing one is overwritten.
            if stream || !same_ip(&via.host, rx.src.ip()) || via.received().is_some() {
                via.set_param("received", Some(rx.src.ip().to_string()));
            }
            if stream || via.rport().is_some() {
                via.set_param("rport", Some(rx.src.port().to_string()));
            }
        });
    }

    pub(crate) fn on_request(&self, mut req: Message, rx: Rx) {
        // `Message::parse` already ran the §16.3 sanity checks (Via, From, To, Call-ID,
        // CSeq, Max-Forwards); failures arrive through `on_parse_error`.
        inc(&self.stats.requests);
        if req.method() == Some(&Method::Ack) && self.acks_own_reply(&req) {
            // The ACK of a non-2xx we answered statelessly (483, 404 from a lookup...):
            // it ends here, as Kamailio's sl module absorbs it.
            inc(&self.stats.acks_absorbed);
            return;
        }
        self.stamp_via(&mut req, rx);
        let is_options = req.method() == Some(&Method::Options);
        // Parsed only when something below reads it: the keep-alive check of OPTIONS, a
        // loose-routing `lr` (a param, so a `;`), or a route that matches domains.
        let ruri = req
            .request_uri()
            .filter(|u| {
                is_options || u.contains(';') || self.routes.iter().any(|r| !r.domains.is_empty())
            })
            .and_then(|u| Uri::parse(u).ok());

        // Keep-alive / monitoring OPTIONS to the proxy itself (Kamailio's default config).
        if is_options
            && !req.headers.contains("Route")
            && ruri
                .as_ref()
                .is_some_and(|u| u.user.is_none() && self.ident.is_my_uri(u))
        {
            let allow = [
                ("Accept".to_string(), "*/*".to_string()),
                ("Accept-Language".to_string(), "en".to_string()),
            ];
            self.reply(&req, rx, 200, "Keepalive", &allow);
            return;
        }

        let max_forwards = match req.max_forwards() {
            Ok(mf) => mf,
            Err(_) => {
                self.reply(&req, rx, 400, "Malformed Max-Forwards", &[]);
                return;
            }
        };
        if max_forwards == Some(0) {
            inc(&self.stats.too_many_hops);
            self.reply(&req, rx, 483, "Too Many Hops", &[]);
            return;
        }

        let ruri = if self.preprocess_routes(&mut req, ruri.as_ref()) {
            req.request_uri().and_then(|u| Uri::parse(u).ok())
        } else {
            ruri
        };

        let lh = loop_hash(&req);
        if self.is_loop(&req, lh) {
            inc(&self.stats.loops);
            self.reply(&req, rx, 482, "Loop Detected", &[]);
            return;
        }

        let Some((route_idx, route)) = self.select_route(&req, ruri.as_ref(), rx) else {
            inc(&self.stats.no_route);
            self.reply(&req, rx, 404, "No Route", &[]);
            return;
        };

        if route.mode == Mode::Stateful {
            self.stateful_request(req, rx, route_idx, max_forwards, lh);
            return;
        }
        self.route_stateless(req, rx, route_idx, max_forwards, lh);
    }

    /// Run the chain of a stateless route and act on its verdict.
    pub(crate) fn route_stateless(
        &self,
        mut req: Message,
        rx: Rx,
        route_idx: usize,
        max_forwards: Option<u32>,
        lh: u32,
    ) {
        let Some(route) = self.routes.get(route_idx) else {
            return;
        };
        let vars = std::cell::RefCell::new(weir_wasm::Vars::default());
        let extra = crate::chain::Extra {
            vars: Some(&vars),
            ..crate::chain::Extra::default()
        };
        match self.request_chain(route, &mut req, rx, extra) {
            Outcome::Continue => {
                if let Some(r) = self.save_if_registrar(&req, rx, route_idx) {
                    return self.reply(&req, rx, r.status, &r.reason, &r.headers);
                }
                match self.lookup_if_location(&req, route_idx) {
                    None => self.forward(req, rx, route_idx, None, max_forwards, lh),
                    // Stateless: the first contact only (forking needs a transaction).
                    Some(Ok((mut branches, _))) => {
                        if branches.is_empty() {
                            return self.reply(&req, rx, 480, "Temporarily Unavailable", &[]);
                        }
                        let first = branches.swap_remove(0);
                        first.edit(&mut req);
                        self.forward(req, rx, route_idx, Some(first.hop), max_forwards, lh)
                    }
                    Some(Err((code, reason))) => self.reply(&req, rx, code, reason, &[]),
                }
            }
            Outcome::Forward(targets) => {
                let target = targets.first().and_then(|t| Uri::parse(t).ok());
                match target {
                    Some(t) => self.forward(req, rx, route_idx, Some(t), max_forwards, lh),
                    None => {
                        inc(&self.stats.module_failures);
                        tracing::warn!(route = %route.name, ?targets, "module gave no usable forward target");
                        self.reply(&req, rx, 500, "Bad Forward Target", &[]);
                    }
                }
            }
            Outcome::Reply {
                code,
                reason,
                headers,
            } => self.reply(&req, rx, code, &reason, &headers),
            Outcome::Drop => inc(&self.stats.module_dropped),
            Outcome::Wait { .. } => {
                // Nothing to keep pending without a transaction.
                inc(&self.stats.module_failures);
                tracing::warn!(route = %route.name, "module verdict `wait` on a stateless route");
                self.reply(&req, rx, 500, "Wait Needs A Stateful Route", &[]);
            }
        }
    }

    /// Whether `ack` acknowledges a reply we sent statelessly: same Via branch as the
    /// request (RFC 3261 §17.1.1.3), so the same [`to_tag`], which it echoes.
    fn acks_own_reply(&self, ack: &Message) -> bool {
        match ack.to_tag_ref() {
            Some(t) if t.starts_with('w') => t == to_tag(ack),
            _ => false,
        }
    }

    /// §16.4: undo a strict router's rewrite, then strip our own Route entries. True
    /// when the request URI changed.
    fn preprocess_routes(&self, req: &mut Message, ruri: Option<&Uri>) -> bool {
        let mut rewritten = false;
        if let Some(u) = ruri {
            if u.user.is_none() && u.has_lr() && self.ident.is_my_uri(u) {
                if let Some(last) = pop_last_route(req) {
                    req.set_request_uri(last.uri.to_string());
                    rewritten = true;
                }
            }
        }
        if !req.headers.contains("Route") {
            return rewritten;
        }
        // At most two: a double Record-Route (transport change) put two of ours in.
        for _ in 0..2 {
            match first_route(req) {
                Some(r) if self.ident.is_my_uri(&r.uri) => drop_first_route(req),
                _ => break,
            }
        }
        rewritten
    }

    /// §16.3 step 4: a Via of ours whose loop hash matches this request means a loop;
    /// a different hash is a spiral and fine.
    fn is_loop(&self, req: &Message, lh: u32) -> bool {
        // Only a branch Weir generated can reveal a loop; most requests carry none.
        if !req
            .headers
            .get_all("Via")
            .any(|v| v.contains(crate::ident::MARK))
        {
            return false;
        }
        let Ok(vias) = req.vias() else { return false };
        vias.iter().skip(1).any(|v| {
            self.ident.is_my_via(v)
                && v.branch()
                    .and_then(parse_branch)
                    .is_some_and(|(_, h)| h == lh)
        })
    }

    fn select_route(&self, req: &Message, ruri: Option<&Uri>, rx: Rx) -> Option<(usize, &Route)> {
        let method = req.method()?.as_str();
        let host = ruri.map(|u| u.host.as_str());
        let listener = self.transports.listeners().get(rx.listener)?.name.as_str();
        // Looked up once, only when some route asks.
        let mut in_dialog = None;
        self.routes.iter().enumerate().find(|(_, r)| {
            (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
                && (r.domains.is_empty()
                    || host.is_some_and(|h| r.domains.iter().any(|d| d.eq_ignore_ascii_case(h))))
                && (r.listeners.is_empty() || r.listeners.iter().any(|l| l == listener))
                && r.in_dialog.is_none_or(|want| {
                    want == *in_dialog.get_or_insert_with(|| req.to_tag_ref().is_some())
                })
        })
    }

    /// §16.6 steps 6–7: where the request goes. A module's targets win; else the first
    /// Route entry (a strict router gets the request URI rewritten, step 6); else the
    /// route's next hops of `group`; else the request URI. The flag says whether the
    /// targets may keep the transport the request came in on (a next hop without
    /// `transport=`).
    pub(crate) fn destinations(
        &self,
        req: &mut Message,
        route_idx: usize,
        explicit: Option<Vec<Uri>>,
        group: usize,
    ) -> (Vec<Uri>, bool) {
        if let Some(u) = explicit {
            return (u, false);
        }
        match first_route(req) {
            Some(r) if r.uri.has_lr() => (vec![r.uri], false),
            Some(r) => {
                if let Some(old) = req.request_uri().map(str::to_string) {
                    req.headers.push("Route", format!("<{old}>"));
                }
                pop_first(req, "Route", routes_of);
                req.set_request_uri(r.uri.to_string());
                (vec![r.uri], false)
            }
            None => self.next_hop_destinations(req, route_idx, group),
        }
    }

    /// [`Core::destinations`] without explicit targets, for a request it would leave
    /// unchanged; `None` when it would rewrite it (a strict router first).
    pub(crate) fn loose_destinations(
        &self,
        req: &Message,
        route_idx: usize,
        group: usize,
    ) -> Option<(Vec<Uri>, bool)> {
        match first_route(req) {
            Some(r) if r.uri.has_lr() => Some((vec![r.uri], false)),
            Some(_) => None,
            None => Some(self.next_hop_destinations(req, route_idx, group)),
        }
    }

    /// With no Route: the route's next hops of `group`, else the request URI.
    fn next_hop_destinations(
        &self,
        req: &Message,
        route_idx: usize,
        group: usize,
    ) -> (Vec<Uri>, bool) {
        match self.next_hops.get(route_idx).and_then(|g| g.get(group)) {
            Some(hops) => {
                let keep = hops.iter().all(|u| u.transport().is_none());
                (hops.clone(), keep)
            }
            None => (
                req.request_uri()
                    .and_then(|u| Uri::parse(u).ok())
                    .into_iter()
                    .collect(),
                false,
            ),
        }
    }

    /// §16.6 step 3 and the Record-Route decision, shared by both modes.
    pub(crate) fn prepare_forward(
        &self,
        req: &mut Message,
        route_idx: usize,
        max_forwards: Option<u32>,
    ) -> bool {
        let new_mf = max_forwards.map_or(DEFAULT_MAX_FORWARDS, |n| n.saturating_sub(1));
        set_max_forwards(req, new_mf);
        self.routes.get(route_idx).is_some_and(|r| r.record_route)
            && req.method().is_some_and(forms_dialog)
            && req.to_tag().is_none()
    }

    /// Stateless §16.6: pick the destination, then resolve it and send.
    fn forward(
        &self,
        mut req: Message,
        rx: Rx,
        route_idx: usize,
        explicit: Option<Uri>,
        max_forwards: Option<u32>,
        lh: u32,
    ) {
        let (dests, keep_transport) =
            self.destinations(&mut req, route_idx, explicit.map(|u| vec![u]), 0);
        let Some(dest_uri) = dests.into_iter().next() else {
            self.reply(&req, rx, 416, "Unsupported URI Scheme", &[]);
            return;
        };
        let target = match resolve::of_uri(&dest_uri) {
            Ok(t) if keep_transport => t.with_transport(rx.transport),
            Ok(t) => t,
            Err(u) => {
                self.reply(&req, rx, u.code, u.reason, &[]);
                return;
            }
        };
        let record_route = self.prepare_forward(&mut req, route_idx, max_forwards);
        self.resolve_then(target, move |core, dest| {
            core.send_request(req, rx, dest, route_idx, lh, record_route);
        });
    }

    fn send_request(
        &self,
        req: Message,
        rx: Rx,
        dest: Destination,
        route_idx: usize,
        lh: u32,
        record_route: bool,
    ) {
        let Some(out) = self
            .transports
            .pick_listener(dest.transport, dest.addr, Some(rx.listener))
        else {
            inc(&self.stats.unresolvable);
            self.reply(&req, rx, 503, "Transport Not Available", &[]);
            return;
        };
        if self.is_own_listener(dest) {
            inc(&self.stats.loops);
            self.reply(&req, rx, 482, "Loop Detected", &[]);
            return;
        }
        // A request too big for a datagram goes by TCP where we can, and falls back to
        // UDP if the next hop takes no TCP connection (§18.1.1).
        if dest.transport == Transport::Udp
            && self.udp_mtu > 0
            && approx_size(&req) + VIA_AND_RR_ALLOWANCE > self.udp_mtu
        {
            if let Some(tcp_out) = self
                .transports
                .pick_listener(Transport::Tcp, dest.addr, None)
            {
                let Some(udp) = self.finish(req.clone(), rx, out, route_idx, lh, record_route)
                else {
                    return;
                };
                let Some(tcp) = self.finish(req, rx, tcp_out, route_idx, lh, record_route) else {
                    return;
                };
                match self
                    .transports
                    .send_upgraded(dest.addr, tcp_out, tcp, out, udp)
                {
                    Ok(()) => inc(&self.stats.forwarded),
                    Err(e) => {
                        inc(&self.stats.send_failed);
                        tracing::debug!(dest = %dest.addr, error = %e, "send failed");
                    }
                }
                return;
            }
        }
        let Some(data) = self.finish(req, rx, out, route_idx, lh, record_route) else {
            return;
        };
        if self.send_bytes(dest, out, data) {
            inc(&self.stats.forwarded);
        }
    }

    /// Add Record-Route and our Via for listener `out`, and serialise.
    fn finish(
        &self,
        req: Message,
        rx: Rx,
        out: ListenerId,
        route_idx: usize,
        lh: u32,
        record_route: bool,
    ) -> Option<Bytes> {
        self.outgoing(req, rx, out, route_idx, lh, record_route, None)
            .map(|m| serialize(&m))
    }

    /// The request as it leaves by listener `out`: Record-Route and our Via added. A
    /// stateful branch gets `suffix` appended to the branch so every client transaction
    /// has its own, naming its transaction (responses find it without an index).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outgoing(
        &self,
        mut req: Message,
        rx: Rx,
        out: ListenerId,
        route_idx: usize,
        lh: u32,
        record_route: bool,
        suffix: Option<weir_transaction::BranchSuffix>,
    ) -> Option<Message> {
        if record_route {
            self.record_route(&mut req, rx.listener, out);
        }
        let top = req.top_via_ref().ok()?;
        let via = self.via_for(
            out,
            |via| push_branch(via, &req, &top, route_idx, lh),
            suffix,
        );
        req.headers.insert(0, "Via", via);
        Some(req)
    }

    /// Whether `dest` is one of our own listeners (a request sent there would loop).
    pub(crate) fn is_own_listener(&self, dest: Destination) -> bool {
        self.transports
            .listeners()
            .iter()
            .any(|l| l.local == dest.addr && l.transport == dest.transport)
    }

    /// Our Via for a request leaving by listener `out`, `branch` writing the branch; a
    /// stateful branch gets its suffix appended.
    fn via_for(
        &self,
        out: ListenerId,
        branch: impl FnOnce(&mut String),
        suffix: Option<weir_transaction::BranchSuffix>,
    ) -> String {
        let (proto, host, port) = self.advertised(out);
        // One allocation of the right size: "SIP/2.0/UDP " host ":" port ";branch="
        // and the branch (mark, route, 24 hex digits, suffix).
        let mut via = String::with_capacity(
            12 + host.len()
                + 6
                + 8
                + ident::MARK.len()
                + 21
                + 24
                + weir_transaction::BranchSuffix::MAX_LEN,
        );
        via.push_str("SIP/2.0/");
        via.push_str(proto);
        via.push(' ');
        via.push_str(host);
        via.push(':');
        push_dec(&mut via, u64::from(port));
        via.push_str(";branch=");
        branch(&mut via);
        if let Some(suffix) = suffix {
            suffix.push_to(&mut via);
        }
        via
    }

    fn advertised(&self, l: ListenerId) -> (&'static str, &str, u16) {
        match self.transports.listeners().get(l) {
            Some(info) => (
                match info.transport {
                    Transport::Udp => "UDP",
                    Transport::Tcp => "TCP",
                },
                info.host.as_str(),
                info.port,
            ),
            None => ("UDP", "127.0.0.1", 5060),
        }
    }

    /// Record-Route, doubled when the request changes listener (transport or family),
    /// so each side of the dialog reaches us on its own side (RFC 5658 `r2=on`).
    pub(crate) fn record_route(
        &self,
        req: &mut Message,
        inbound: ListenerId,
        outbound: ListenerId,
    ) {
        let rr = |l: ListenerId, r2: bool| {
            let (proto, host, port) = self.advertised(l);
            // `<sip:{host}:{port}{transport};lr{r2}>`, without core::fmt.
            let mut v = String::with_capacity(host.len() + 40);
            v.push_str("<sip:");
            v.push_str(host);
            v.push(':');
            push_dec(&mut v, u64::from(port));
            if proto != "UDP" {
                v.push_str(";transport=tcp");
            }
            v.push_str(";lr");
            if r2 {
                v.push_str(";r2=on");
            }
            v.push('>');
            v
        };
        if inbound == outbound {
            insert_first(req, "Record-Route", rr(outbound, false));
        } else {
            insert_first(req, "Record-Route", rr(inbound, true));
            insert_first(req, "Record-Route", rr(outbound, true));
        }
    }

    /// Answer a request statelessly, routed back by its (stamped) top Via. ACKs are
    /// never answered.
    pub(crate) fn reply(
        &self,
        req: &Message,
        rx: Rx,
        code: u16,
        reason: &str,
        headers: &[(String, String)],
    ) {
        if req.method() == Some(&Method::Ack) {
            return;
        }
        let reason = if reason.is_empty() {
            reason_phrase(code)
        } else {
            reason
        };
        // The reply carries the request's Vias: its top Via, parsed once, gives both the
        // To tag and where the reply goes (as `send_response` would find it).
        let top = req.top_via_ref().ok();
        let tag = to_tag_with(req, top.as_ref());
        let target = top.as_ref().and_then(resolve::of_via_ref);
        inc(&self.stats.local_replies);
        let Some(target) = target else {
            inc(&self.stats.responses_dropped);
            return;
        };
        // Written straight from the request: sent once, never kept.
        let mut out = Vec::new();
        let extra = std::iter::once(("Server", self.server_header.as_str()))
            .chain(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        req.write_reply(code, reason, Some(tag.as_str()), extra, &mut out);
        self.send_bytes_to(Bytes::from(out), rx, target);
    }

    /// Send a response to where its top Via says (on streams: the connection it came
    /// in on, whose address the stamped Via carries). The response may be shared (the
    /// transaction layer keeps the one it hands over for retransmission).
    pub(crate) fn send_response<M>(&self, resp: M, rx: Rx)
    where
        M: Borrow<Message> + Send + 'static,
    {
        let target = match resp.borrow().top_via_ref() {
            Ok(top) => resolve::of_via_ref(&top),
            Err(_) => None,
        };
        let Some(target) = target else {
            inc(&self.stats.responses_dropped);
            return;
        };
        self.send_response_to(resp, rx, target);
    }

    /// Send a response to a destination already taken from its top Via.
    pub(crate) fn send_response_to<M>(&self, resp: M, rx: Rx, target: resolve::Target)
    where
        M: Borrow<Message> + Send + 'static,
    {
        self.send_bytes_to(serialize(resp.borrow()), rx, target);
    }

    /// Send a response already in wire form to a destination taken from its top Via.
    fn send_bytes_to(&self, data: Bytes, rx: Rx, target: resolve::Target) {
        self.resolve_then(target, move |core, dest| {
            let Some(out) =
                core.transports
                    .pick_listener(dest.transport, dest.addr, Some(rx.listener))
            else {
                inc(&core.stats.responses_dropped);
                return;
            };
            core.send_bytes(dest, out, data);
        });
    }
}

/// Room for the Via and Record-Route entries Weir adds.
const VIA_AND_RR_ALLOWANCE: usize = 200;

/// Size of the request on the wire, near enough to decide UDP or TCP, without writing it.
fn approx_size(req: &Message) -> usize {
    let headers: usize = req
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum();
    req.request_uri().map_or(0, str::len) + 32 + headers + req.body.len() + 2
}
