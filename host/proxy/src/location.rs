//! The registrar and location service on a route: `registrar = true` saves REGISTERs
//! (Kamailio `save("location")`), `lookup = true` turns an initial request's URI into
//! its registered contacts (`lookup("location")`), and a lookup branch that fails with
//! one of the registrar's `unregister_on` statuses can remove its binding.
//!
//! The registrar itself (weir-registrar) is sans-IO; this module feeds it what the
//! transport saw and maps its answers onto replies and branches.

use std::collections::HashMap;
use std::sync::MutexGuard;

use weir_message::{Message, Method};
use weir_registrar::{Event, EventKind, Lookup, Registered, RequestContext, Target};
use weir_store::now_ms;
use weir_transaction::{IdHash, TxId};
use weir_wasm::{BindingChange, BindingEvent};

use crate::stateful::BranchTarget;
use crate::stats::inc;
use crate::{Core, Rx};

/// What a lookup forked to, kept while the transaction lives when branch failures may
/// unregister contacts.
#[derive(Debug)]
pub(crate) struct LookupBranches {
    targets: Vec<Target>,
}

/// A lookup's branches, and the bindings they came from.
pub(crate) type Found = (Vec<BranchTarget>, Vec<Target>);

/// Whether an initial request of this method is looked up (not REGISTER, not the
/// hop-by-hop or transaction-bound ones).
fn looked_up(req: &Message) -> bool {
    req.to_tag().is_none()
        && !matches!(
            req.method(),
            Some(Method::Register | Method::Ack | Method::Cancel) | None
        )
}

impl Core {
    fn lookups(&self) -> MutexGuard<'_, HashMap<TxId, LookupBranches, IdHash>> {
        // Every critical section is one insert, get or remove: a poisoned map is whole.
        self.lookup_branches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Save a REGISTER if `route_idx` is a registrar route; the reply to send.
    pub(crate) fn save_if_registrar(
        &self,
        req: &Message,
        rx: Rx,
        route_idx: usize,
    ) -> Option<Registered> {
        let registrar = self.registrar.as_ref()?;
        let route = self.routes.get(route_idx)?;
        if !route.registrar || req.method() != Some(&Method::Register) {
            return None;
        }
        let listeners = self.transports.listeners();
        let ctx = RequestContext {
            source: rx.src,
            transport: rx.transport.as_str(),
            listener: listeners.get(rx.listener).map(|l| l.name.as_str()),
            now_ms: now_ms(),
        };
        let r = registrar.register(req, &ctx, &mut rand::thread_rng());
        inc(&self.stats.registrations);
        if r.status >= 300 {
            inc(&self.stats.registrations_refused);
        }
        self.binding_events(&r.events);
        Some(r)
    }

    /// Look the request URI up if `route_idx` is a lookup route and the request is an
    /// initial one: `None` when not applicable, else the branches or the reply.
    pub(crate) fn lookup_if_location(
        &self,
        req: &Message,
        route_idx: usize,
    ) -> Option<Result<Found, (u16, &'static str)>> {
        let registrar = self.registrar.as_ref()?;
        let route = self.routes.get(route_idx)?;
        if !route.lookup || !looked_up(req) {
            return None;
        }
        let ruri = req.request_uri().unwrap_or_default();
        let found = registrar.lookup(ruri, now_ms());
        inc(&self.stats.lookups);
        let targets = match found {
            Lookup::Found(t) => t,
            other => {
                inc(&self.stats.lookups_not_found);
                let reply = registrar
                    .lookup_reply(&other)
                    .unwrap_or((500, "Server Internal Error"));
                return Some(Err(reply));
            }
        };
        let branches: Vec<BranchTarget> = targets
            .iter()
            .filter_map(|t| {
                let b = BranchTarget::of_binding(t);
                if b.is_none() {
                    tracing::debug!(contact = %t.uri, "registered contact does not parse");
                }
                b
            })
            .collect();
        if branches.is_empty() {
            inc(&self.stats.lookups_not_found);
            return Some(Err((480, "Temporarily Unavailable")));
        }
        Some(Ok((branches, targets)))
    }

    /// Remember a lookup's targets for `unregister_on`, if the registrar has any.
    pub(crate) fn remember_lookup(&self, tx: TxId, targets: Vec<Target>) {
        if self
            .registrar
            .as_ref()
            .is_some_and(|r| !r.config().unregister_on.is_empty())
        {
            self.lookups().insert(tx, LookupBranches { targets });
        }
    }

    /// The transaction is gone.
    pub(crate) fn forget_lookup(&self, tx: TxId) {
        if self.registrar.is_some() {
            self.lookups().remove(&tx);
        }
    }

    /// A branch of a looked-up request failed: the registrar may remove its binding
    /// (`unregister_on`, e.g. 477 or a timeout without any reply).
    pub(crate) fn lookup_branch_failed(&self, tx: TxId, ruri: &str, code: u16, timeout: bool) {
        let Some(registrar) = self.registrar.as_ref() else {
            return;
        };
        let target = self
            .lookups()
            .get(&tx)
            .and_then(|l| l.targets.iter().find(|t| t.uri == ruri).cloned());
        let Some(target) = target else {
            return;
        };
        match registrar.branch_failed(&target, code, !timeout, now_ms()) {
            Ok(Some(e)) => {
                inc(&self.stats.unregistered);
                tracing::info!(aor = %e.aor, contact = %e.binding.contact, code, "binding removed after branch failure");
                self.binding_events(std::slice::from_ref(&e));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove binding"),
        }
    }
}

impl Core {
    /// Purge expired bindings and tell the `[events] binding` modules. Blocking (the
    /// store may be remote): call it off the async workers.
    pub fn purge_bindings(&self) {
        let Some(registrar) = self.registrar.as_ref() else {
            return;
        };
        match registrar.purge(now_ms()) {
            Ok(events) => self.binding_events(&events),
            Err(e) => tracing::warn!(error = %e, "cannot purge expired bindings"),
        }
    }

    /// Hand registrar events to the `[events] binding` modules, in order. A module
    /// failure is logged and counted; it changes nothing else.
    pub(crate) fn binding_events(&self, events: &[Event]) {
        for e in events {
            tracing::debug!(kind = ?e.kind, aor = %e.aor, contact = %e.binding.contact, "binding");
            inc(&self.stats.binding_events);
        }
        if self.binding_modules.is_empty() {
            return;
        }
        for e in events {
            let ev = BindingEvent {
                change: match e.kind {
                    EventKind::Added => BindingChange::Added,
                    EventKind::Refreshed => BindingChange::Refreshed,
                    EventKind::Removed => BindingChange::Removed,
                    EventKind::Expired => BindingChange::Expired,
                },
                aor: e.aor.clone(),
                contact: e.binding.contact.clone(),
                expires_at_ms: e.binding.expires_at_ms,
                instance: e.binding.instance.clone(),
                params: e.binding.params.clone(),
            };
            for entry in &self.binding_modules {
                let outcome = match self.registry.get(&entry.module) {
                    Some(m) => m.on_binding(&ev),
                    None => Err(weir_wasm::ModuleFailure::Error(format!(
                        "module {} is not loaded",
                        entry.module
                    ))),
                };
                if let Err(failure) = outcome {
                    self.failed("events.binding", entry, &failure);
                }
            }
        }
    }
}
