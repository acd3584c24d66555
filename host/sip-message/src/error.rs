//! Error types.

use std::fmt;

use crate::message::Message;
use crate::method::Method;

/// Error from parsing one header value (URI, Via, name-addr, CSeq, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required header is absent.
    #[error("missing {name} header")]
    Missing {
        /// Canonical header name, e.g. `"Call-ID"`.
        name: &'static str,
    },
    /// A value does not follow its grammar.
    #[error("malformed {what}: {detail}")]
    Invalid {
        /// What was being parsed, e.g. `"Via"`, `"URI"`, `"CSeq"`.
        what: &'static str,
        /// Short description of the problem.
        detail: &'static str,
    },
}

impl HeaderError {
    pub(crate) fn invalid(what: &'static str, detail: &'static str) -> Self {
        HeaderError::Invalid { what, detail }
    }
}

/// A request or response lacks something a proxy requires (RFC 3261 §8.2, §16.3).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// A mandatory header is absent.
    #[error("missing {header} header")]
    Missing {
        /// Canonical header name.
        header: &'static str,
    },
    /// A mandatory header is present but does not parse.
    #[error("malformed {header} header: {source}")]
    Invalid {
        /// Canonical header name.
        header: &'static str,
        /// The underlying value error.
        source: HeaderError,
    },
    /// The CSeq method differs from the request-line method.
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch {
        /// Request-line method.
        method: Method,
        /// CSeq method.
        cseq: Method,
    },
    /// `validate_request` called on a response or `validate_response` on a request.
    #[error("not a {expected}")]
    WrongKind {
        /// `"request"` or `"response"`.
        expected: &'static str,
    },
}

impl Malformed {
    /// A short phrase naming the problem, suitable as a 400 reason phrase.
    pub fn reason(&self) -> &str {
        self.reason_static()
    }

    pub(crate) fn reason_static(&self) -> &'static str {
        match self {
            Malformed::Missing { header } => match *header {
                "Via" => "Missing Via",
                "From" => "Missing From",
                "To" => "Missing To",
                "Call-ID" => "Missing Call-ID",
                "CSeq" => "Missing CSeq",
                _ => "Missing Header",
            },
            Malformed::Invalid { header, .. } => match *header {
                "Via" => "Malformed Via",
                "From" => "Malformed From",
                "To" => "Malformed To",
                "Call-ID" => "Malformed Call-ID",
                "CSeq" => "Malformed CSeq",
                "Max-Forwards" => "Malformed Max-Forwards",
                "Content-Length" => "Bad Content-Length",
                _ => "Malformed Header",
            },
            Malformed::CSeqMismatch { .. } => "CSeq Method Mismatch",
            Malformed::WrongKind { expected } => {
                if *expected == "request" {
                    "Not a Request"
                } else {
                    "Not a Response"
                }
            }
        }
    }
}

/// Stream framing errors. All are fatal for the connection: the byte stream can no longer
/// be delimited.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// RFC 3261 §18.3: Content-Length is mandatory on stream transports.
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// Content-Length is negative, not a number, overflowing or inconsistent.
    #[error("bad Content-Length: {detail}")]
    BadContentLength {
        /// Short description of the problem.
        detail: &'static str,
    },
    /// Header block or whole message exceeds the size limit.
    #[error("message too large: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Size seen or announced so far.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
}

/// Classification of a [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace / CRLF.
    Empty,
    /// Larger than `Limits::max_message_size` (proxy answers 513).
    TooLarge,
    /// More header lines than `Limits::max_headers`.
    TooManyHeaders,
    /// The header block is not terminated by an empty line.
    Truncated,
    /// Request-Line / Status-Line does not parse.
    StartLine,
    /// SIP version other than 2.0 (proxy answers 505 to requests).
    VersionNotSupported,
    /// Request-URI does not parse.
    RequestUri,
    /// A header line does not parse (no colon, bad name, bad UTF-8, NUL, stray CR, folding
    /// without a header).
    Header,
    /// Content-Length negative, non-numeric, larger than the body, or conflicting.
    ContentLength,
    /// A mandatory header is missing.
    MissingHeader,
    /// A mandatory header (Via, From, To, Call-ID, CSeq, Max-Forwards) does not parse.
    InvalidHeader,
    /// CSeq method differs from the request method.
    CSeqMismatch,
}

/// Why a message could not be parsed, plus (when possible) enough of it to answer.
#[derive(Clone, Debug)]
pub struct ParseError {
    kind: ParseErrorKind,
    reason: &'static str,
    partial: Option<Box<Message>>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, reason: &'static str) -> Self {
        ParseError {
            kind,
            reason,
            partial: None,
        }
    }

    pub(crate) fn with_partial(mut self, partial: Option<Box<Message>>) -> Self {
        self.partial = partial;
        self
    }

    /// A short phrase naming the problem, suitable as a reason phrase (e.g. "Bad
    /// Content-Length", "Missing Call-ID", "Message Too Large").
    pub fn reason(&self) -> &str {
        self.reason
    }

    /// The request as far as it could be parsed, when a reply can be routed: a request
    /// (other than ACK) with a parseable top Via and From, To, Call-ID and CSeq headers
    /// present. The body is empty. `None` for responses and hopeless input: count a drop.
    pub fn partial(&self) -> Option<&Message> {
        self.partial.as_deref()
    }

    /// Take the partial message out of the error.
    pub fn into_partial(self) -> Option<Message> {
        self.partial.map(|b| *b)
    }

    /// The error class.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The status code a proxy should answer with when `partial()` is `Some`: 513 for
    /// [`ParseErrorKind::TooLarge`], 505 for [`ParseErrorKind::VersionNotSupported`], 400
    /// otherwise.
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ParseErrorKind::TooLarge => 513,
            ParseErrorKind::VersionNotSupported => 505,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseError {}
