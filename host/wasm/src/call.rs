//! What goes into and comes out of a module call.

use std::net::SocketAddr;

/// Where the message being processed came from.
#[derive(Clone, Copy, Debug)]
pub struct CallContext<'a> {
    /// Source address of the message.
    pub source: SocketAddr,
    /// Transport it arrived on.
    pub transport: Transport,
    /// Name of the listener it arrived on (as in the config).
    pub listener: &'a str,
    /// Which chain is calling.
    pub hook: Hook,
    /// In a failure chain, the best final status of the failed leg; 0 otherwise.
    pub failure_status: u16,
    /// Whether the request's transaction was cancelled upstream.
    pub cancelled: bool,
    /// The stream connection (TCP, TLS, WS) the message arrived on, as the transport
    /// numbers them (`weir_transport::Inbound::conn`; never reused); 0 for UDP. Modules
    /// read it as `message.connection-id` and key `connections` bindings by it.
    pub connection: u64,
    /// The request's transaction on stateful routes (`message.transaction-id`); 0
    /// otherwise.
    pub transaction: u64,
    /// The variables of the request's processing (`message.get-var` / `set-var`): the
    /// call starts with a copy, and a successful call writes its changes back. `None`
    /// gives the call an empty set whose changes are dropped.
    pub vars: Option<&'a std::cell::RefCell<Vars>>,
}

/// Longest variable name.
pub const MAX_VAR_NAME: usize = 64;
/// Longest variable value.
pub const MAX_VAR_VALUE: usize = 4096;
/// Most variables.
pub const MAX_VARS: usize = 32;

/// Variables of one request's processing (Kamailio's AVPs): a small bounded map,
/// kept with the transaction so a failure chain sees what the request chain set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Set `name`; false (nothing changed) if the name or value is out of bounds or
    /// the set is full.
    pub fn set(&mut self, name: String, value: String) -> bool {
        if name.is_empty() || name.len() > MAX_VAR_NAME || value.len() > MAX_VAR_VALUE {
            return false;
        }
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
            return true;
        }
        if self.0.len() >= MAX_VARS {
            return false;
        }
        self.0.push((name, value));
        true
    }

    /// Remove every variable.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// True when none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> CallContext<'a> {
    /// A request-chain context (no failure status, not cancelled, connection 0).
    pub fn new(source: SocketAddr, transport: Transport, listener: &'a str) -> Self {
        CallContext {
            source,
            transport,
            listener,
            hook: Hook::Request,
            failure_status: 0,
            cancelled: false,
            connection: 0,
            transaction: 0,
            vars: None,
        }
    }
}

/// Which chain of a route is calling, as in the WIT `hook`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// The request chain.
    Request,
    /// The reply chain.
    Reply,
    /// The failure chain.
    Failure,
    /// The branch-failure chain.
    BranchFailure,
}

/// A SIP transport, as in the WIT `transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

/// What a module decided, checked by the host (see [`ModuleFailure::BadVerdict`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the next module (or forward at the end of the chain).
    Continue,
    /// Answer locally. `code` is within 100..=699, `reason` may be empty (standard
    /// phrase), `headers` are valid and none of Via, CSeq, Call-ID, Content-Length,
    /// From or To (the host copies those from the request).
    Reply {
        /// Status code.
        code: u16,
        /// Reason phrase; empty means the standard phrase.
        reason: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// Forward to these targets (1 to 16 SIP/SIPS/TEL URIs that parse).
    Forward(Vec<String>),
    /// Discard silently.
    Drop,
    /// Keep the transaction pending (stateful routes, initial INVITE): fork to
    /// `branches` now, wait up to `timeout` for more, then reply `code` if nothing
    /// answered.
    Wait {
        /// Branches to start now.
        branches: Vec<crate::services::BranchTarget>,
        /// How long to keep the transaction open.
        timeout: std::time::Duration,
        /// Reply at the deadline when no branch answered (400..=699).
        code: u16,
    },
}

/// Why a call produced no verdict. On every failure the message is left exactly as
/// it was before the call (the module's edits are rolled back).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModuleFailure {
    /// The guest trapped (`unreachable`, out-of-bounds access, a WASI call the host
    /// refuses, a panic...). The instance was discarded.
    #[error("trap: {0}")]
    Trap(String),
    /// The call ran past its timeout. The instance was discarded.
    #[error("timed out")]
    Timeout,
    /// The guest tried to grow its memory past its limit. The instance was discarded.
    #[error("out of memory")]
    OutOfMemory,
    /// The module returned an error (the instance is kept).
    #[error("module error: {0}")]
    Error(String),
    /// Every instance the module may have is busy.
    #[error("no instance available")]
    Busy,
    /// The module returned a verdict the host refuses (the instance is kept).
    #[error("bad verdict: {0}")]
    BadVerdict(String),
}

/// Counters of one loaded module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleStats {
    /// Calls attempted (`on_request` and `on_reply`).
    pub calls: u64,
    /// Calls where the module returned an error ([`ModuleFailure::Error`]).
    pub errors: u64,
    /// Calls refused for a bad verdict.
    pub bad_verdicts: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls that ran out of memory.
    pub oom: u64,
    /// Calls refused because no instance could be had.
    pub busy: u64,
    /// Instances created (the one made by `load` included).
    pub instances_created: u64,
    /// Instances discarded after a trap, timeout or out-of-memory; each is replaced
    /// by a fresh one when the next call finds the pool empty.
    pub instances_replaced: u64,
    /// Instances waiting in the pool now.
    pub idle_instances: usize,
    /// Instances alive now (idle and in a call).
    pub live_instances: usize,
}

/// What happened to a registrar binding, as in the WIT `binding-change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingChange {
    /// A new contact was registered.
    Added,
    /// An existing binding was registered again.
    Refreshed,
    /// The binding was removed.
    Removed,
    /// The binding expired.
    Expired,
}

/// A registrar binding event for a module's `on-binding`, as in the WIT
/// `binding-event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingEvent {
    /// What happened.
    pub change: BindingChange,
    /// The AOR key (`sip:alice@example.com`).
    pub aor: String,
    /// The Contact URI.
    pub contact: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// `+sip.instance`, if any.
    pub instance: Option<String>,
    /// Other Contact params kept with the binding.
    pub params: Vec<(String, String)>,
}
