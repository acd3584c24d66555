//! Weir's outbound HTTP client: small, bounded HTTP/1.1 over plain TCP or TLS (rustls),
//! for the host capability through which modules call push-notification services.
//!
//! # What it owns
//!
//! - [`Client`]: one request per connection (`Connection: close`), `http://` and
//!   `https://` URLs, hosts given as IPv4, `[IPv6]` literals or DNS names. TLS uses rustls
//!   with the ring provider and the Mozilla roots from `webpki-roots`.
//! - Bounds on everything a server controls: the whole exchange (resolve, connect, TLS,
//!   write, read) is bounded by [`ClientConfig::timeout`], the body by
//!   [`ClientConfig::max_response_bytes`], the response head by a fixed 16 KiB and 100
//!   header lines; concurrent requests by [`ClientConfig::max_concurrent`], beyond which
//!   a request fails at once with [`HttpError::Busy`] rather than queueing.
//! - Response framing by RFC 9112 §6.3: no body (HEAD, 1xx, 204, 304), chunked transfer
//!   coding, `Content-Length`, or read to close. Interim 1xx responses are skipped.
//! - [`Allowlist`]: URL prefixes that the host grants to a module; the check is a prefix
//!   match of the normalised URL against normalised prefixes.
//!
//! # What it never does
//!
//! - Panic on any server input or guest-supplied request: malformed input becomes an
//!   [`HttpError`].
//! - Follow redirects (a 3xx is returned as is, so a redirect cannot lead past the
//!   allowlist), keep connections alive, or pool them.
//! - Let the caller write the framing: `Host`, `Content-Length`, `Connection` and the
//!   other hop-by-hop headers are the client's; a request that sets them, or puts CR/LF
//!   in a header, is refused with [`HttpError::InvalidRequest`].
//!
//! # Limits to know
//!
//! - HTTP/1.1 only. FCM's v1 API and most webhook-style push gateways accept it; Apple's
//!   APNs provider API requires HTTP/2 and cannot be called directly with this client.
//! - DNS names go to the system resolver (`tokio::net::lookup_host`) and every address is
//!   tried in order. An allowlist entry trusts that name's DNS: it does not stop a name
//!   from resolving to a private or loopback address.
//! - The request body is not bounded here; the host capability bounds what a module may
//!   pass in (guest memory limits already cap it).
//!
//! # Example
//!
//! ```
//! use weir_http::{Allowlist, HttpRequest};
//!
//! let grant = Allowlist::new(["https://fcm.googleapis.com/v1/projects/demo/"]).unwrap();
//! assert!(grant.permits("https://FCM.googleapis.com:443/v1/projects/demo/messages:send"));
//! assert!(!grant.permits("https://fcm.googleapis.com/v1/projects/other/messages:send"));
//! assert!(!grant.permits("https://fcm.googleapis.com/v1/projects/demo/../other/x"));
//! assert!(!Allowlist::default().permits("https://fcm.googleapis.com/"));
//!
//! let req = HttpRequest::post("https://fcm.googleapis.com/v1/projects/demo/messages:send", b"{}".to_vec())
//!     .header("content-type", "application/json");
//! assert_eq!(req.method, "POST");
//! // `Client::new(ClientConfig::default()).send(req).await` performs it.
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod allowlist;
mod client;
mod url;
mod wire;

pub use allowlist::Allowlist;
pub use client::{Client, ClientConfig};

/// An outbound request. The URL decides scheme, host, port and target; the client adds
/// `Host`, `User-Agent: weir` (unless given), `Connection: close` and `Content-Length`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Method token, e.g. `POST`.
    pub method: String,
    /// `http://host[:port]/path?query` or `https://...`.
    pub url: String,
    /// Extra headers, in order. Framing and hop-by-hop headers are refused.
    pub headers: Vec<(String, String)>,
    /// Request body, sent with `Content-Length`.
    pub body: Vec<u8>,
}

/// A final response (interim 1xx responses are skipped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code, 200..=599.
    pub status: u16,
    /// Headers as received (names keep their case; values are trimmed, non-UTF-8 bytes
    /// replaced by U+FFFD).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked; at most `max_response_bytes`.
    pub body: Vec<u8>,
}

/// Why a request failed. Each variant is a different answer for the caller: refuse the
/// request (`InvalidUrl`, `InvalidRequest`, `NotAllowed`), retry later (`Busy`,
/// `Timeout`, `Connect`), or treat the server as broken (`Protocol`, `TooLarge`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used: wrong scheme, bad host or port, userinfo, dot segments,
    /// or characters that are not printable ASCII.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The request itself is malformed: bad method token, bad header name or value, or a
    /// header that the client sets itself.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The URL is outside the caller's [`Allowlist`].
    #[error("url not allowed: {0}")]
    NotAllowed(String),
    /// Name resolution, TCP connect or TLS handshake failed, or the connection broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The whole exchange did not finish within [`ClientConfig::timeout`].
    #[error("timed out")]
    Timeout,
    /// The server's response is not valid HTTP/1.x.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The response body exceeds `max_response_bytes`, or its head exceeds 16 KiB or 100
    /// header lines.
    #[error("response too large")]
    TooLarge,
    /// `max_concurrent` requests are already in flight.
    #[error("too many concurrent requests")]
    Busy,
}

// === HttpRequest ===

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// `POST url` with `body`.
    pub fn post(url: impl Into<String>, body: Vec<u8>) -> Self {
        Self {
            body,
            ..Self::new("POST", url)
        }
    }

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

// === HttpResponse ===

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
