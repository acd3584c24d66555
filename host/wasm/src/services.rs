//! What modules ask of the proxy around them: timers, originated SIP requests,
//! transaction control, the location service and outbound HTTP. The runtime only checks
//! and copies what a guest asks for; the proxy ([`Services`], set with
//! [`Runtime::set_services`](crate::Runtime::set_services)) does the work and later
//! calls the module back with [`LoadedModule::on_event`](crate::LoadedModule::on_event).
//!
//! Every method is called on the message path (from inside a guest call): it must not
//! block. Work that waits (a probe's response, an HTTP exchange) is started and
//! answered later through an [`Event`].

use std::time::Duration;

/// A SIP request a module wants sent (WIT `requests.outgoing-request`), checked by the
/// runtime: method a token other than INVITE/ACK/CANCEL, URI and destination parse,
/// headers valid and not host-owned, timeout within bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// The method.
    pub method: String,
    /// The request URI.
    pub uri: String,
    /// Extra headers (From/To allowed; the host fills them in when absent).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Next hop, when not the request URI.
    pub destination: Option<String>,
    /// When to give up (local 408).
    pub timeout: Duration,
}

/// One branch to add to a transaction (WIT `types.branch-target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchTarget {
    /// The branch's request URI.
    pub uri: String,
    /// The next hop, when not the request URI.
    pub destination: Option<String>,
    /// Route values to put first (a Path).
    pub path: Vec<String>,
}

/// Where a transaction stands (WIT `transactions.tx-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxState {
    /// No final response upstream yet.
    Pending,
    /// A final response went upstream.
    Answered,
    /// Cancelled upstream.
    Cancelled,
    /// Unknown or ended.
    Gone,
}

/// A registered contact (WIT `location.binding`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationBinding {
    /// Contact URI.
    pub contact: String,
    /// Where requests go when not to the contact (received address), as a SIP URI.
    pub destination: Option<String>,
    /// Path route set.
    pub path: Vec<String>,
    /// `+sip.instance`.
    pub instance: Option<String>,
    /// q times 1000.
    pub q: Option<u16>,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Other kept Contact params.
    pub params: Vec<(String, String)>,
}

/// An outbound HTTP request (WIT `http.http-request`), checked and granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// URL (a granted prefix).
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Bound of the whole exchange.
    pub timeout: Duration,
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (bounded by the host).
    pub body: Vec<u8>,
}

/// Something delivered to a module later (WIT `types.event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A timer of the module fired.
    Timer(String),
    /// A request the module sent ended.
    Response {
        /// The id `send` returned.
        id: u64,
        /// The module's tag.
        tag: String,
        /// Final status (408 timeout, 477 not sent).
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Response headers.
        headers: Vec<(String, String)>,
    },
    /// An HTTP request the module sent ended.
    Http {
        /// The id `send` returned.
        id: u64,
        /// The module's tag.
        tag: String,
        /// The response or why there is none.
        response: Result<HttpResponse, String>,
    },
    /// A watched transaction ended.
    TransactionDone(u64),
}

/// The proxy side of the module services. `module` is always the caller's module
/// name (its `[modules.NAME]`, unique in a config, [`LoadedModule::name`](crate::LoadedModule::name)),
/// the key it is registered under in the [`ModuleRegistry`](crate::ModuleRegistry), so
/// events go to the version of the module in service when they fire.
pub trait Services: Send + Sync {
    /// Start or re-time a module timer.
    fn timer_every(&self, module: &str, name: &str, every: Duration) -> Result<(), String>;
    /// Stop a module timer; true if it ran.
    fn timer_cancel(&self, module: &str, name: &str) -> bool;
    /// Send a request; its outcome comes back as [`Event::Response`].
    fn send_request(&self, module: &str, req: OutgoingRequest, tag: String) -> Result<u64, String>;
    /// State of a transaction.
    fn tx_state(&self, tx: u64) -> TxState;
    /// Add a branch to a pending transaction.
    fn add_branch(&self, tx: u64, target: BranchTarget) -> Result<(), String>;
    /// Fork a pending transaction to the AOR's contacts not yet branched.
    fn append_contacts(&self, tx: u64, aor: &str, contact: Option<&str>) -> Result<u32, String>;
    /// Deliver [`Event::TransactionDone`] to `module` when `tx` ends.
    fn watch(&self, module: &str, tx: u64) -> bool;
    /// Live bindings of an AOR.
    fn location(&self, aor: &str) -> Result<Vec<LocationBinding>, String>;
    /// Start an HTTP request (already granted); its outcome comes back as
    /// [`Event::Http`].
    fn http_send(&self, module: &str, req: HttpRequest, tag: String) -> Result<u64, String>;
}

/// The services before the proxy sets its own: everything is unavailable.
pub(crate) struct NoServices;

const UNAVAILABLE: &str = "not available in this host";

impl Services for NoServices {
    fn timer_every(&self, _: &str, _: &str, _: Duration) -> Result<(), String> {
        Err(UNAVAILABLE.into())
    }
    fn timer_cancel(&self, _: &str, _: &str) -> bool {
        false
    }
    fn send_request(&self, _: &str, _: OutgoingRequest, _: String) -> Result<u64, String> {
        Err(UNAVAILABLE.into())
    }
    fn tx_state(&self, _: u64) -> TxState {
        TxState::Gone
    }
    fn add_branch(&self, _: u64, _: BranchTarget) -> Result<(), String> {
        Err(UNAVAILABLE.into())
    }
    fn append_contacts(&self, _: u64, _: &str, _: Option<&str>) -> Result<u32, String> {
        Err(UNAVAILABLE.into())
    }
    fn watch(&self, _: &str, _: u64) -> bool {
        false
    }
    fn location(&self, _: &str) -> Result<Vec<LocationBinding>, String> {
        Err("no registrar in this proxy".into())
    }
    fn http_send(&self, _: &str, _: HttpRequest, _: String) -> Result<u64, String> {
        Err(UNAVAILABLE.into())
    }
}
