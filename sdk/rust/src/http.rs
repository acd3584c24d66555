//! Outbound HTTP(S) requests, e.g. to a push notification service. Only a module the
//! config grants it may use it, and only to the granted URL prefixes (`http_allow =
//! ["http://127.0.0.1:8080/push/"]` in its `[modules.NAME]` table). [`send`] returns an
//! id at once; the outcome comes later to [`Module::on_event`](crate::Module::on_event)
//! as [`Event::Http`](crate::Event::Http) with that id and the tag given to `send`. The
//! host bounds each exchange by the request's timeout and the response body by 64 KiB.
//!
//! ```
//! use std::time::Duration;
//! use weir_sdk::{http, testing};
//!
//! testing::grant_http("http://127.0.0.1:8080/push/");
//!
//! let push = http::Request::post(
//!     "http://127.0.0.1:8080/push/apns",
//!     "application/json",
//!     r#"{"prid":"abc"}"#,
//! )
//! .header("Authorization", "Bearer t0ken")
//! .timeout(Duration::from_secs(3));
//! let id = http::send(&push, "call-7")?;
//! assert_eq!(testing::http_requests(), vec![(id, push, "call-7".to_string())]);
//!
//! // Not granted: refused at once, like the host does.
//! assert!(http::send(&http::Request::get("http://127.0.0.1:8080/admin"), "x").is_err());
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! In the native harness nothing is sent: [`testing::grant_http`](crate::testing::grant_http)
//! grants prefixes, [`testing::http_requests`](crate::testing::http_requests) lists what
//! was sent, and a test calls `on_event` with the [`HttpOutcome`](crate::HttpOutcome) it
//! wants to check.

use std::time::Duration;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::http as backend;
use crate::__private::bindings::weir::sip::http::HttpRequest as WitRequest;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::http as backend;
use crate::{Error, Header};

/// Longest tag, in bytes.
pub const MAX_TAG: usize = 256;
/// Shortest timeout the host accepts.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest timeout the host accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP request to make. Build with [`Request::get`] or [`Request::post`] and the
/// builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `http://host[:port]/path` or `https://...`, under a granted prefix.
    pub url: String,
    /// Header lines.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
    /// Bound of the whole exchange ([`MIN_TIMEOUT`] to [`MAX_TIMEOUT`]).
    pub timeout: Duration,
}

impl Request {
    /// A `method` request to `url`, with no headers and no body, timing out after 5 s.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }

    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A POST of `body` (with its `Content-Type`) to `url`.
    pub fn post(
        url: impl Into<String>,
        content_type: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        let mut r = Self::new("POST", url).header("Content-Type", content_type);
        r.body = body.into();
        r
    }

    /// Add a header line.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Bound the exchange by `timeout` (rounded up to whole milliseconds).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl From<&Request> for WitRequest {
    fn from(r: &Request) -> Self {
        WitRequest {
            method: r.method.clone(),
            url: r.url.clone(),
            headers: crate::convert::headers(r.headers.clone()),
            body: r.body.clone(),
            timeout_ms: crate::types::millis_u32(r.timeout),
        }
    }
}

impl From<WitRequest> for Request {
    fn from(r: WitRequest) -> Self {
        Request {
            method: r.method,
            url: r.url,
            headers: crate::convert::headers(r.headers),
            body: r.body,
            timeout: Duration::from_millis(u64::from(r.timeout_ms)),
        }
    }
}

/// An HTTP response (in [`HttpOutcome`](crate::HttpOutcome)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header lines.
    pub headers: Vec<Header>,
    /// The body (at most 64 KiB; the host cuts the exchange off beyond).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the named header (ASCII case ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Start `req`, tagging its outcome with `tag` (at most [`MAX_TAG`] bytes). Returns the
/// id the outcome's [`HttpOutcome`](crate::HttpOutcome) carries. Fails at once with a
/// [`HostError`](crate::HostError) when the URL is not under a granted prefix, the
/// request is invalid (method, headers, timeout out of bounds, body over 64 KiB), or the
/// module has too many requests in flight (256).
pub fn send(req: &Request, tag: &str) -> Result<u64, Error> {
    crate::error::host("http.send", backend::send(&WitRequest::from(req), tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_wit_round_trip() {
        let r = Request::post("https://push.example.com/v1", "application/json", "{}")
            .header("X-Key", "k")
            .timeout(Duration::from_millis(2500));
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.headers[0],
            Header::new("Content-Type", "application/json")
        );
        let w = WitRequest::from(&r);
        assert_eq!((w.timeout_ms, w.headers.len()), (2500, 2));
        assert_eq!(Request::from(w), r);
        let g = Request::get("http://a/");
        assert_eq!(
            (g.method.as_str(), g.timeout),
            ("GET", Duration::from_secs(5))
        );
        let resp = Response {
            status: 204,
            headers: vec![Header::new("Retry-After", "3")],
            body: vec![],
        };
        assert_eq!(resp.header("retry-after"), Some("3"));
        assert!(resp.is_success());
    }
}
