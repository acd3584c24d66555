//! Plain data types shared by the message API and verdicts.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

// === Transport ===

/// The transport a message arrived on (or should leave by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// The lower-case name used in the WIT contract and the config (`"udp"`, `"wss"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// True for connection-oriented transports (everything but UDP).
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// Which chain of a route is running the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// The request chain (`on_request`).
    Request,
    /// The reply chain (`on_reply`).
    Reply,
    /// The failure chain (`on_request` on a stateful route once every branch of a leg
    /// failed): [`Message::failure_status`](crate::Message::failure_status) tells how.
    Failure,
    /// The branch-failure chain (`on_request` on a stateful route once for each branch
    /// that ended without success, like Kamailio's `event_route[tm:branch-failure]`):
    /// the message is the request as sent on that branch (after a registrar lookup its
    /// request URI is the failed contact), and [`Message::failure_status`](crate::Message::failure_status)
    /// is the branch's final status (408 on timeout, 477 when it could not be sent).
    /// Edits have no effect; [`Verdict::Drop`](crate::Verdict) ends the chain, other
    /// verdicts continue it.
    BranchFailure,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === Address ===

/// An IP address and port, as the host prints it (`ip` is `1.2.3.4` or `::1`, no brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The IP address in text form.
    pub ip: String,
    /// The port.
    pub port: u16,
}

impl Address {
    /// Build an address from its parts.
    pub fn new(ip: impl Into<String>, port: u16) -> Self {
        Self {
            ip: ip.into(),
            port,
        }
    }

    /// The IP address parsed, if the host's text parses (it always should).
    pub fn ip_addr(&self) -> Option<IpAddr> {
        self.ip.parse().ok()
    }
}

/// `1.2.3.4:5060`, or `[::1]:5060` for IPv6.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ip.contains(':') {
            write!(f, "[{}]:{}", self.ip, self.port)
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

// === Header ===

/// One header line as a (name, value) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The name, spelled as in the message (or as given).
    pub name: String,
    /// The value, without the leading `: ` and the trailing CRLF.
    pub value: String,
}

impl Header {
    /// Build a header from its parts.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// True if this header is `name` (case-insensitive, compact forms equivalent).
    pub fn is(&self, name: &str) -> bool {
        crate::names::equivalent(&self.name, name)
    }
}

impl<N: Into<String>, V: Into<String>> From<(N, V)> for Header {
    fn from((name, value): (N, V)) -> Self {
        Header::new(name, value)
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_display_brackets_ipv6() {
        assert_eq!(
            Address::new("192.0.2.1", 5060).to_string(),
            "192.0.2.1:5060"
        );
        assert_eq!(Address::new("::1", 5061).to_string(), "[::1]:5061");
        assert!(Address::new("::1", 5061).ip_addr().is_some());
    }

    #[test]
    fn header_from_tuple_and_is() {
        let h: Header = ("m", "<sip:a@b>").into();
        assert!(h.is("Contact"));
        assert_eq!(h.to_string(), "m: <sip:a@b>");
    }
}

/// What happened to a registrar binding (see [`BindingEvent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindingChange {
    /// A new contact was registered.
    Added,
    /// An existing binding was registered again (new expiry).
    Refreshed,
    /// Removed: expires 0, `*`, replaced by a newer registration of the same device,
    /// or dropped after a failed branch.
    Removed,
    /// Expired.
    Expired,
}

/// A registrar binding event ([`Module::on_binding`](crate::Module::on_binding)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingEvent {
    /// What happened.
    pub change: BindingChange,
    /// The address of record, as the registrar keys it (`sip:alice@example.com`).
    pub aor: String,
    /// The Contact URI.
    pub contact: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// `+sip.instance` of the device, if any.
    pub instance: Option<String>,
    /// Other Contact params kept with the binding (e.g. RFC 8599 `pn-*`).
    pub params: Vec<Header>,
}

// === BranchTarget ===

/// One branch of a transaction: where a request goes. Used by [`Verdict::wait`](crate::Verdict::wait),
/// [`transactions::add_branch`](crate::transactions::add_branch) and
/// [`location::Binding::to_branch`](crate::location::Binding::to_branch).
///
/// ```
/// use weir_sdk::BranchTarget;
///
/// let b = BranchTarget::new("sip:alice@192.0.2.10:5060").via("sip:198.51.100.7:5060;transport=tcp");
/// assert_eq!(b.destination.as_deref(), Some("sip:198.51.100.7:5060;transport=tcp"));
/// assert!(b.path.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BranchTarget {
    /// The branch's request URI (e.g. a registered contact).
    pub uri: String,
    /// The next hop, when not the request URI (a SIP URI).
    pub destination: Option<String>,
    /// Route header values to put first in the branch's request (a Path).
    pub path: Vec<String>,
}

impl BranchTarget {
    /// A branch to `uri`, sent by the URI itself, with no Path.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            destination: None,
            path: Vec::new(),
        }
    }

    /// Send the branch to `destination` (a SIP URI, e.g. the address a NATed device
    /// registered from) instead of by its request URI.
    #[must_use]
    pub fn via(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }
}

// === Event ===

/// Something that happened asynchronously, delivered by
/// [`Module::on_event`](crate::Module::on_event): a timer tick, the outcome of a SIP or
/// HTTP request the module sent, or the end of a transaction it watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A timer of the module fired (its name, as given to
    /// [`timers::every`](crate::timers::every)).
    Timer(String),
    /// A SIP request the module sent ([`requests::send`](crate::requests::send)) has its
    /// final outcome.
    Response(SipResponse),
    /// An HTTP request the module sent ([`http::send`](crate::http::send)) has its outcome.
    Http(HttpOutcome),
    /// A transaction the module watches ([`transactions::watch`](crate::transactions::watch))
    /// ended (its id).
    TransactionDone(u64),
}

/// The outcome of a SIP request the module sent ([`Event::Response`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipResponse {
    /// The id [`requests::send`](crate::requests::send) returned.
    pub id: u64,
    /// The module's tag, as given to `send`.
    pub tag: String,
    /// The final status; 408 when it timed out, 477 when it could not be sent.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The response's headers (none for a local 408 or 477).
    pub headers: Vec<Header>,
}

impl SipResponse {
    /// The first value of the named header (case-insensitive, compact forms equivalent).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_str())
    }

    /// True for a 2xx final status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The outcome of an HTTP request the module sent ([`Event::Http`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOutcome {
    /// The id [`http::send`](crate::http::send) returned.
    pub id: u64,
    /// The module's tag, as given to `send`.
    pub tag: String,
    /// The response, or why there is none (timeout, connection refused, ...).
    pub response: Result<crate::http::Response, String>,
}

/// Whole milliseconds of `d` for a `u32` WIT field: rounded up, saturating (the host
/// refuses values beyond its bounds, so saturation never passes a wrong value on).
pub(crate) fn millis_u32(d: Duration) -> u32 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod service_type_tests {
    use super::*;

    #[test]
    fn sip_response_header_follows_name_rules() {
        let r = SipResponse {
            id: 1,
            tag: "probe".into(),
            status: 200,
            reason: "OK".into(),
            headers: vec![Header::new("m", "<sip:a@b>"), Header::new("Server", "x")],
        };
        assert_eq!(r.header("Contact"), Some("<sip:a@b>"));
        assert_eq!(r.header("server"), Some("x"));
        assert_eq!(r.header("Allow"), None);
        assert!(r.is_success());
    }

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis_u32(Duration::ZERO), 0);
        assert_eq!(millis_u32(Duration::from_micros(1)), 1);
        assert_eq!(millis_u32(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_u32(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn branch_target_builder() {
        let b = BranchTarget::new("sip:a@b").via("sip:10.0.0.1");
        assert_eq!(b.uri, "sip:a@b");
        assert_eq!(b.destination.as_deref(), Some("sip:10.0.0.1"));
    }
}
