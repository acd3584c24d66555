//! Responses: check the top Via is ours, remove it, run the reply chain of the route
//! that forwarded the request, and relay by the next Via (RFC 3261 §16.7 stateless, §18).

use weir_message::{Message, Via, ViaRef};

use crate::ident::parse_branch;
use crate::resolve;
use crate::stats::inc;
use crate::{Core, Rx};

impl Core {
    pub(crate) fn on_response(&self, mut resp: Message, rx: Rx) {
        // `Message::parse` already checked Via, From, To, Call-ID and CSeq.
        inc(&self.stats.responses);
        if self.uac_response(&resp) {
            return;
        }
        if self.has_stateful {
            match self.stateful_response(resp, rx) {
                Some(r) => resp = r,
                None => return,
            }
        }
        let Some(pos) = resp.headers.position("Via") else {
            inc(&self.stats.responses_dropped);
            return;
        };
        // Our own Via, read borrowed (from a shared handle on the line, which changes
        // below).
        let Some(line) = resp.headers.get_at(pos).map(|h| h.value.clone()) else {
            inc(&self.stats.responses_dropped);
            return;
        };
        let Ok(top) = ViaRef::parse(&line) else {
            inc(&self.stats.responses_dropped);
            return;
        };
        let tls = top.transport.eq_ignore_ascii_case("TLS");
        if !self.ident.is_me(top.host, top.port, tls) {
            // §18.1.2: a response whose top Via is not ours is discarded.
            inc(&self.stats.responses_dropped);
            tracing::debug!(src = %rx.src, "response not for us dropped");
            return;
        }
        let route = top.branch().and_then(parse_branch).map(|(r, _)| r);
        if !top.more {
            // Alone on its line (we insert it so): the line goes.
            resp.headers.remove_at(pos);
        } else {
            // Several via-parms on our line (SIPp's UAS echoes every Via on one): the
            // others stay as they were written.
            let Some(rest) = Via::rest_after_parsed_first(&line) else {
                inc(&self.stats.responses_dropped);
                return;
            };
            resp.headers.set_value_at(pos, rest);
        }
        // The next Via (now the top one) says where the response goes.
        let Ok(next) = resp.top_via_ref().map(|v| resolve::of_via_ref(&v)) else {
            // It answered a request we originated: nothing to relay.
            inc(&self.stats.responses_dropped);
            return;
        };
        self.relay_response(resp, rx, route, next);
    }

    /// Run the reply chain of `route` (the route index in our branch) and relay the
    /// response, our Via removed, to `target` (from its new top Via; `None`: none
    /// usable).
    fn relay_response(
        &self,
        mut resp: Message,
        rx: Rx,
        route: Option<usize>,
        target: Option<resolve::Target>,
    ) {
        if let Some(route) = route.and_then(|r| self.routes.get(r)) {
            if !route.reply.is_empty() && !self.reply_chain(route, &mut resp, rx) {
                inc(&self.stats.module_dropped);
                return;
            }
        }
        let Some(target) = target else {
            inc(&self.stats.responses_dropped);
            return;
        };
        inc(&self.stats.responses_relayed);
        self.send_response_to(resp, rx, target);
    }
}
