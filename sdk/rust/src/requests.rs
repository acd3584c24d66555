//! SIP requests that a module originates (e.g. OPTIONS probes of a dispatcher's
//! gateways). The host sends each as a non-INVITE client transaction (RFC 3261
//! §17.1.2: retransmitted over UDP, given up after the request's timeout) and never
//! blocks message processing for it. [`send`] returns an id at once; the outcome comes
//! later to [`Module::on_event`](crate::Module::on_event) as
//! [`Event::Response`](crate::Event::Response) with that id and the tag given to `send`:
//! the final response, or a local 408 (timeout) or 477 (could not be sent).
//!
//! ```
//! use std::time::Duration;
//! use weir_sdk::{requests, testing, Event, SipResponse};
//!
//! let probe = requests::Request::new("OPTIONS", "sip:gw1.example.com")
//!     .destination("sip:10.0.0.1:5060;transport=tcp")
//!     .header("Max-Breadth", "1")
//!     .timeout(Duration::from_secs(2));
//! let id = requests::send(&probe, "gw1")?;
//! assert_eq!(testing::sent_requests(), vec![(id, probe, "gw1".to_string())]);
//!
//! // Later the host delivers the outcome to `on_event`, e.g.:
//! let outcome = Event::Response(SipResponse {
//!     id,
//!     tag: "gw1".into(),
//!     status: 200,
//!     reason: "OK".into(),
//!     headers: vec![],
//! });
//! # let _ = outcome;
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! In the native harness nothing is sent: [`testing::sent_requests`](crate::testing::sent_requests)
//! lists what was, [`testing::fail_requests`](crate::testing::fail_requests) makes sends
//! fail, and a test calls `on_event` with the outcome it wants to check.

use std::time::Duration;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::requests as backend;
use crate::__private::bindings::weir::sip::requests::OutgoingRequest as WitRequest;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::requests as backend;
use crate::{names, Error, Header};

/// Longest tag, in bytes.
pub const MAX_TAG: usize = 256;
/// Shortest timeout the host accepts.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest timeout the host accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(32);

/// A SIP request to originate. Build with [`Request::new`] and the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Any method but INVITE, ACK and CANCEL.
    pub method: String,
    /// The request URI.
    pub uri: String,
    /// Extra headers. `From` and `To` may be given (a From tag is added if missing);
    /// otherwise From is `<sip:weir@HOST>` with a random tag and To is the request URI.
    /// Via, Call-ID, CSeq, Max-Forwards and Content-Length are the host's (refused here).
    pub headers: Vec<Header>,
    /// The body; give a `Content-Type` with it ([`Request::body`] does).
    pub body: Vec<u8>,
    /// Where to send it (a SIP URI, e.g. `sip:10.0.0.1:5060;transport=tcp`); `None`
    /// sends by the request URI.
    pub destination: Option<String>,
    /// Give up after this long ([`MIN_TIMEOUT`] to [`MAX_TIMEOUT`]): the outcome is
    /// then a local 408.
    pub timeout: Duration,
}

impl Request {
    /// A `method` request to `uri`, with no extra headers, no body, sent by the URI,
    /// timing out after 5 s.
    pub fn new(method: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
            destination: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Add a header line.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Send to `destination` (a SIP URI) instead of by the request URI.
    #[must_use]
    pub fn destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// Give up after `timeout` (rounded up to whole milliseconds).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set the body and its `Content-Type` (replacing an earlier one).
    #[must_use]
    pub fn body(mut self, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        self.headers.retain(|h| !h.is("Content-Type"));
        self.headers.push(Header::new("Content-Type", content_type));
        self.body = body.into();
        self
    }

    /// The first value of the named header (case-insensitive, compact forms equivalent).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| names::equivalent(&h.name, name))
            .map(|h| h.value.as_str())
    }
}

impl From<&Request> for WitRequest {
    fn from(r: &Request) -> Self {
        WitRequest {
            method: r.method.clone(),
            uri: r.uri.clone(),
            headers: crate::convert::headers(r.headers.clone()),
            body: r.body.clone(),
            destination: r.destination.clone(),
            timeout_ms: crate::types::millis_u32(r.timeout),
        }
    }
}

impl From<WitRequest> for Request {
    fn from(r: WitRequest) -> Self {
        Request {
            method: r.method,
            uri: r.uri,
            headers: crate::convert::headers(r.headers),
            body: r.body,
            destination: r.destination,
            timeout: Duration::from_millis(u64::from(r.timeout_ms)),
        }
    }
}

/// Send `req`, tagging its outcome with `tag` (at most [`MAX_TAG`] bytes, free for the
/// module's use, e.g. the gateway probed). Returns the id the outcome's
/// [`SipResponse`](crate::SipResponse) carries. Fails at once with a
/// [`HostError`](crate::HostError), sending nothing, when the request is invalid (a
/// method the host refuses, a URI that does not parse, a host-owned header, a timeout
/// out of bounds) or the module has too many requests in flight (1024).
pub fn send(req: &Request, tag: &str) -> Result<u64, Error> {
    crate::error::host("requests.send", backend::send(&WitRequest::from(req), tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_wit_round_trip() {
        let r = Request::new("MESSAGE", "sip:bob@example.com")
            .header("From", "<sip:weir@example.com>")
            .body("text/plain", "hi")
            .body("text/html", b"<b>hi</b>".to_vec())
            .destination("sip:10.0.0.1")
            .timeout(Duration::from_micros(2_000_500));
        assert_eq!(r.header_value("c"), Some("text/html"));
        assert_eq!(r.headers.len(), 2);
        let w = WitRequest::from(&r);
        assert_eq!(w.timeout_ms, 2001);
        assert_eq!(w.headers[1].name, "Content-Type");
        let back = Request::from(w);
        assert_eq!(back.timeout, Duration::from_millis(2001));
        assert_eq!((back.body, back.destination), (r.body, r.destination));
        assert_eq!(
            Request::new("OPTIONS", "sip:a").timeout,
            Duration::from_secs(5)
        );
    }
}
