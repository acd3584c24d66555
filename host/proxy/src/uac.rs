//! Requests that modules originate (`weir:sip/requests`): OPTIONS probes and the like,
//! sent as RFC 3261 §17.1.2 non-INVITE client transactions without a server side.
//!
//! Each request gets its own branch (`z9hG4bKu<hex id>.<random>`), is retransmitted over
//! UDP (timer E: T1 doubling up to T2, every T2 once a provisional came) until a final
//! response or the module's timeout (timer F), and ends in exactly one outcome: the
//! final response, a local 408 at the timeout, or a local 477 when it cannot be sent.
//! Responses are recognised by their top Via before any other processing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use tokio::sync::oneshot;
use weir_message::{Message, NameAddr, Uri};
use weir_transport::Transport;
use weir_wasm::OutgoingRequest;

use crate::resolve;
use crate::stats::inc;
use crate::Core;

/// Marks a branch of a module-originated request.
const UAC_MARK: &str = "z9hG4bKu";

/// A final outcome: status, reason, headers.
pub(crate) type Outcome = (u16, String, Vec<(String, String)>);

struct Pending {
    done: oneshot::Sender<Outcome>,
    /// A provisional came: retransmit every T2 from now on.
    provisional: Arc<std::sync::atomic::AtomicBool>,
}

/// The client transactions of module-originated requests, by branch.
#[derive(Default)]
pub(crate) struct Uac {
    pending: Mutex<HashMap<String, Pending>>,
    /// `pending.len()`, readable without the lock on the response path.
    count: AtomicUsize,
}

impl std::fmt::Debug for Uac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uac")
            .field("pending", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Uac {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        // Every critical section is one insert, get or remove: a poisoned map is whole.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, branch: String, p: Pending) {
        let mut m = self.lock();
        m.insert(branch, p);
        self.count.store(m.len(), Ordering::Relaxed);
    }

    fn remove(&self, branch: &str) -> Option<Pending> {
        let mut m = self.lock();
        let p = m.remove(branch);
        self.count.store(m.len(), Ordering::Relaxed);
        p
    }

    /// Requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn has_tag(name_addr: &str) -> bool {
    NameAddr::parse(name_addr).is_ok_and(|na| na.tag().is_some())
}

impl Core {
    /// A response to a module-originated request? Then it is consumed here.
    pub(crate) fn uac_response(&self, resp: &Message) -> bool {
        if self.uac.len() == 0 {
            return false;
        }
        let Ok(top) = resp.top_via() else {
            return false;
        };
        let Some(branch) = top.branch().filter(|b| b.starts_with(UAC_MARK)) else {
            return false;
        };
        if !self.ident.is_my_via(&top) {
            return false;
        }
        let Some(code) = resp.status() else {
            return true;
        };
        if code < 200 {
            if let Some(p) = self.uac.lock().get(branch) {
                p.provisional.store(true, Ordering::Relaxed);
            }
            return true;
        }
        if let Some(p) = self.uac.remove(branch) {
            let reason = match &resp.start {
                weir_message::StartLine::Response { reason, .. } => reason.to_string(),
                weir_message::StartLine::Request { .. } => String::new(),
            };
            let headers = resp
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_string()))
                .collect();
            let _ = p.done.send((code, reason, headers));
        }
        // A late retransmission of the final: absorbed.
        true
    }

    /// Send `req` for a module; `then` gets the outcome (on a runtime task). The id is
    /// only used in the branch, for traces.
    pub(crate) fn uac_send<F>(&self, id: u64, req: OutgoingRequest, then: F)
    where
        F: FnOnce(Outcome) + Send + 'static,
    {
        let dest_uri = req.destination.as_deref().unwrap_or(&req.uri);
        let target = match Uri::parse(dest_uri)
            .map_err(|_| ())
            .and_then(|u| resolve::of_uri(&u).map_err(|_| ()))
        {
            Ok(t) => t,
            Err(()) => {
                let runtime = self.runtime.clone();
                runtime.spawn(
                    async move { then((477, "Unresolvable Destination".into(), Vec::new())) },
                );
                return;
            }
        };
        let Some(core) = self.me.upgrade() else {
            return;
        };
        let timeout = req.timeout;
        let (done_tx, done_rx) = oneshot::channel::<Outcome>();
        let branch = format!("{UAC_MARK}{id:x}.{}", random_token(8));
        let provisional = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.uac.insert(
            branch.clone(),
            Pending {
                done: done_tx,
                provisional: provisional.clone(),
            },
        );
        let t1 = self.tsx.config().timers.t1;
        let t2 = self.tsx.config().timers.t2;
        self.runtime.spawn(async move {
            let (wire_tx, wire_rx) = oneshot::channel::<Option<(weir_transport::Destination, weir_transport::ListenerId, bytes::Bytes)>>();
            let b = branch.clone();
            core.resolve_then(target, move |core, dest| {
                let _ = wire_tx.send(core.uac_build(&req, &b, dest));
            });
            let deadline = tokio::time::Instant::now() + timeout;
            let outcome = tokio::select! {
                o = async {
                    let wire = match wire_rx.await {
                        Ok(Some(w)) => w,
                        // Unresolvable (resolve_then gave up) or unbuildable.
                        _ => return (477, "Cannot Send".to_string(), Vec::new()),
                    };
                    let (dest, listener, data) = wire;
                    if !core.send_bytes(dest, listener, data.clone()) {
                        return (477, "Cannot Send".to_string(), Vec::new());
                    }
                    let mut interval = t1;
                    let mut done_rx = done_rx;
                    loop {
                        if dest.transport != Transport::Udp {
                            return match done_rx.await {
                                Ok(o) => o,
                                Err(_) => (408, "Request Timeout".to_string(), Vec::new()),
                            };
                        }
                        tokio::select! {
                            o = &mut done_rx => {
                                return o.unwrap_or((408, "Request Timeout".to_string(), Vec::new()));
                            }
                            () = tokio::time::sleep(interval) => {
                                interval = if provisional.load(Ordering::Relaxed) {
                                    t2
                                } else {
                                    (interval * 2).min(t2)
                                };
                                core.send_bytes(dest, listener, data.clone());
                            }
                        }
                    }
                } => o,
                () = tokio::time::sleep_until(deadline) => (408, "Request Timeout".to_string(), Vec::new()),
            };
            core.uac.remove(&branch);
            if outcome.0 == 408 {
                inc(&core.stats.module_request_timeouts);
            }
            then(outcome);
        });
    }

    /// The request on the wire for `dest`: listener, Via with `branch`, From/To filled.
    fn uac_build(
        &self,
        req: &OutgoingRequest,
        branch: &str,
        dest: weir_transport::Destination,
    ) -> Option<(
        weir_transport::Destination,
        weir_transport::ListenerId,
        bytes::Bytes,
    )> {
        let out = self
            .transports
            .pick_listener(dest.transport, dest.addr, None)?;
        let info = self.transports.listeners().get(out)?;
        let proto = match info.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        let host = &info.host;
        let mut text = String::with_capacity(512 + req.body.len());
        let from = req
            .headers
            .iter()
            .find(|(n, _)| weir_message::names_equal(n, "From"))
            .map(|(_, v)| v.clone());
        let to = req
            .headers
            .iter()
            .find(|(n, _)| weir_message::names_equal(n, "To"))
            .map(|(_, v)| v.clone());
        let from = match from {
            Some(f) if has_tag(&f) => f,
            Some(f) => format!("{f};tag={}", random_token(10)),
            None => format!("<sip:weir@{host}>;tag={}", random_token(10)),
        };
        let to = to.unwrap_or_else(|| format!("<{}>", req.uri));
        text.push_str(&format!(
            "{} {} SIP/2.0\r\nVia: SIP/2.0/{proto} {host}:{};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}@{host}\r\n\
             CSeq: 1 {}\r\n",
            req.method,
            req.uri,
            info.port,
            random_token(16),
            req.method
        ));
        for (n, v) in &req.headers {
            if weir_message::names_equal(n, "From") || weir_message::names_equal(n, "To") {
                continue;
            }
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str(&format!(
            "User-Agent: {}\r\nContent-Length: {}\r\n\r\n",
            self.server_header,
            req.body.len()
        ));
        let mut wire = text.into_bytes();
        wire.extend_from_slice(&req.body);
        // Parse what we built: what goes out is a valid message or nothing.
        match Message::parse(&wire, &self.limits) {
            Ok(_) => Some((dest, out, bytes::Bytes::from(wire))),
            Err(e) => {
                tracing::warn!(error = %e, "module request does not form a valid message");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_after_the_uri() {
        assert!(has_tag("<sip:a@b>;tag=1"));
        assert!(has_tag("sip:a@b;TAG=1"));
        assert!(!has_tag("<sip:a@b;tag=1>"));
        assert!(!has_tag("<sip:a@b>"));
    }
}
