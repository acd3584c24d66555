//! Public result types: REGISTER outcome, events, lookup targets and fork plans.

use std::net::SocketAddr;

use weir_store::{Binding, StoreError};

/// Where and when a REGISTER arrived (everything the registrar needs besides the
/// message itself; no IO).
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    /// Source address of the REGISTER.
    pub source: SocketAddr,
    /// Transport it arrived on, lowercase: `udp`, `tcp`, `tls`, `ws`, `wss`, `sctp`.
    pub transport: &'a str,
    /// Name of the listener it arrived on.
    pub listener: Option<&'a str>,
    /// Wall clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// Per-call options of [`Registrar::register_with`](crate::Registrar::register_with)
/// (Kamailio `save()` flags and `uri` parameter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Take the AOR from this URI instead of the To header (`save(.., .., uri)`).
    pub aor_uri: Option<String>,
    /// Flag 0x04: one binding per AOR; the first contact that is saved replaces every
    /// other binding and the rest of the Contact list is ignored (max_contacts is
    /// not checked).
    pub single_binding: bool,
    /// Flag 0x08: no expires randomisation for this request.
    pub no_randomize: bool,
}

/// What a REGISTER did (Kamailio `save()` return value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveResult {
    /// 1: a binding was added (also: nothing changed, e.g. a retransmission).
    Inserted,
    /// 2: bindings were refreshed.
    Updated,
    /// 3: bindings were removed (`*`, or every contact with expires 0).
    Deleted,
    /// 4: no Contact; the bindings were only listed.
    Fetched,
    /// -1: rejected (4xx/5xx other than too many contacts).
    Error,
    /// -2: rejected because of `max_contacts`.
    TooMany,
}

impl SaveResult {
    /// Kamailio's numeric return code.
    pub fn code(self) -> i32 {
        match self {
            SaveResult::Inserted => 1,
            SaveResult::Updated => 2,
            SaveResult::Deleted => 3,
            SaveResult::Fetched => 4,
            SaveResult::Error => -1,
            SaveResult::TooMany => -2,
        }
    }
}

/// The reply the host must send to a REGISTER, and what changed.
///
/// The host builds the reply itself (Via, From, To with its tag, Call-ID, CSeq per
/// RFC 3261 §8.2.6) and appends `headers` in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    /// Status code: 200, 400, 420, 421, 423, 439, 500 or 503.
    pub status: u16,
    /// Reason phrase (Kamailio's: `OK`, `Bad Request`, `Interval Too Brief`, ...).
    pub reason: String,
    /// Reply headers to add, in order: Contact, Path, Require, Supported, Flow-Timer,
    /// Unsupported, Min-Expires, P-Registrar-Error, Retry-After (each only when it
    /// applies).
    pub headers: Vec<(String, String)>,
    /// Binding changes (empty on errors and retransmissions).
    pub events: Vec<Event>,
    /// Kamailio-style result.
    pub result: SaveResult,
    /// The normalised AOR, when it could be extracted.
    pub aor: Option<String>,
}

impl Registered {
    /// Value of the first reply header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What happened to a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new binding.
    Added,
    /// An existing binding was re-registered (new expiry, possibly new contact URI for
    /// the same `+sip.instance`).
    Refreshed,
    /// Removed by the UA (expires 0, `*`), by replacement (same instance with a new
    /// Call-ID, flag 0x04), or by the host (branch failure, unregister).
    Removed,
    /// Expired and purged.
    Expired,
}

/// A binding change, for modules (usrloc callbacks / `usrloc:contact-expired`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The AOR key.
    pub aor: String,
    /// The binding (for Removed/Expired: as it was before removal).
    pub binding: Binding,
}

/// One place to send a request for an AOR (one branch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// New Request-URI: the registered Contact URI.
    pub uri: String,
    /// Next hop (Kamailio `$du`): the first Path URI, else the `received` source
    /// address; `None`: resolve `uri`.
    pub destination: Option<String>,
    /// Route set to prepend (the stored Path, in order).
    pub route: Vec<String>,
    /// q*1000, if any.
    pub q: Option<u16>,
    /// The binding's unique id.
    pub ruid: String,
    /// The AOR key.
    pub aor: String,
    /// `+sip.instance`, as registered.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
    /// Listener the REGISTER arrived on (send from it).
    pub listener: Option<String>,
    /// Extra Contact params (e.g. RFC 8599 `pn-*`).
    pub params: Vec<(String, String)>,
    /// When the binding expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Last write of the binding; [`Registrar::branch_failed`](crate::Registrar::branch_failed)
    /// removes the binding only if it is unchanged since.
    pub updated_ms: u64,
}

/// Result of [`Registrar::lookup`](crate::Registrar::lookup).
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// Live bindings, ordered: q descending (no q last), equal q older first.
    Found(Vec<Target>),
    /// No binding and the user is not known: 404.
    NotFound,
    /// No binding, but the subscriber exists: `no_binding_reply` (404 or 480).
    NoBinding,
    /// The store failed: 500.
    Error(StoreError),
}

/// Targets arranged for forking (Kamailio `t_load_contacts()` mode 0 +
/// `t_next_contacts()`): each group is tried in parallel, groups one after another
/// (serially) when the previous one failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkPlan {
    /// Parallel groups in serial order (equal q in one group, q descending).
    pub groups: Vec<Vec<Target>>,
    /// Further flows of an instance that already has a branch (RFC 5626 reg-ids):
    /// try them, in order, only when that instance's branch fails
    /// (`t_next_contact_flow()`).
    pub flows: Vec<Target>,
}

impl ForkPlan {
    /// Groups of Request-URIs, the shape the proxy core's serial forking takes.
    pub fn uri_groups(&self) -> Vec<Vec<String>> {
        self.groups
            .iter()
            .map(|g| g.iter().map(|t| t.uri.clone()).collect())
            .collect()
    }

    /// The next deferred flow of `instance`, removed from the plan.
    pub fn next_flow(&mut self, instance: &str) -> Option<Target> {
        let i = self.flows.iter().position(|t| {
            t.instance
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(instance))
        })?;
        Some(self.flows.remove(i))
    }
}

/// Orders targets into a [`ForkPlan`]: consecutive targets with equal q form one
/// parallel group (input must already be ordered q descending, as
/// [`Lookup::Found`] is); a target whose `+sip.instance` already has a branch is
/// deferred to [`ForkPlan::flows`].
pub fn fork_plan(targets: Vec<Target>) -> ForkPlan {
    let mut plan = ForkPlan::default();
    let mut used: Vec<String> = Vec::new();
    let mut current_q: Option<Option<u16>> = None;
    for t in targets {
        if let Some(inst) = &t.instance {
            let lower = inst.to_ascii_lowercase();
            if used.contains(&lower) {
                plan.flows.push(t);
                continue;
            }
            used.push(lower);
        }
        match (current_q, plan.groups.last_mut()) {
            (Some(q), Some(g)) if q == t.q => g.push(t),
            _ => {
                current_q = Some(t.q);
                plan.groups.push(vec![t]);
            }
        }
    }
    plan
}

/// Which binding of an AOR to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingRef<'a> {
    /// By its unique id.
    Ruid(&'a str),
    /// By its Contact URI (exact match).
    Contact(&'a str),
}
