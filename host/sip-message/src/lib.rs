//! # weir-message — the SIP message layer of Weir
//!
//! This crate owns the representation of SIP messages as the proxy sees them:
//!
//! * **parsing** requests and responses from bytes ([`Message::parse`]): start line,
//!   headers (any letter case, compact forms, line folding, unknown headers and methods
//!   kept intact) and the body as bytes, lenient where RFC 3261 allows and strict where
//!   it requires, with a reason phrase naming the problem and, when a reply can be routed,
//!   the partially parsed request ([`ParseError::partial`]);
//! * **serialising** them back ([`Message::write_to`]) with a correct Content-Length;
//! * **stream framing** ([`frame`]): finding message boundaries on TCP/TLS by
//!   Content-Length, and RFC 5626 CRLF keep-alives;
//! * **header value grammars** a proxy needs: [`Uri`], [`Via`], [`NameAddr`], [`CSeq`],
//!   plus [`Message::reply`] (RFC 3261 §8.2.6) and request/response sanity checks.
//!
//! What it must never do: perform IO (no sockets, files, clocks, threads, logging or
//! global state), panic on any input, allocate in proportion to a length claimed by the
//! input before checking it against [`Limits`], or use `unsafe`. Transport, transaction
//! and routing logic live in other crates.
//!
//! ```
//! use weir_message::{Limits, Message, Method};
//!
//! let wire = b"INVITE sip:bob@example.com SIP/2.0\r\n\
//!     v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n\
//!     Max-Forwards: 70\r\n\
//!     f: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
//!     t: <sip:bob@example.com>\r\n\
//!     i: 3848276298220188511@192.0.2.1\r\n\
//!     CSeq: 1 INVITE\r\n\
//!     Subject: folded\r\n  value\r\n\
//!     l: 4\r\n\
//!     \r\n\
//!     v=0\n";
//! let msg = Message::parse(wire, &Limits::default()).unwrap();
//! assert_eq!(msg.method(), Some(&Method::Invite));
//! assert_eq!(msg.call_id(), Some("3848276298220188511@192.0.2.1"));
//! assert_eq!(msg.headers.get("Subject"), Some("folded value"));
//! assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bK74bf9"));
//! assert_eq!(&msg.body[..], b"v=0\n");
//!
//! // Round trip: same start line, headers and body.
//! let again = Message::parse(&msg.to_bytes(), &Limits::default()).unwrap();
//! assert_eq!(again, msg);
//!
//! // A malformed request names its problem and can still be answered.
//! let bad = b"OPTIONS sip:example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
//!     To: <sip:example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: -5\r\n\r\n";
//! let err = Message::parse(bad, &Limits::default()).unwrap_err();
//! assert_eq!(err.reason(), "Bad Content-Length");
//! let reply = err.partial().unwrap().reply(400, err.reason(), Some("t1"));
//! assert_eq!(reply.status(), Some(400));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod chars;
mod digits;
mod error;
mod frame;
mod headers;
mod ip;
mod message;
mod method;
mod nameaddr;
mod reason;
mod scan;
mod span;
mod text;
mod uri;
mod via;

pub use digits::{push_dec, push_hex};
pub use error::{FrameError, HeaderError, Malformed, ParseError, ParseErrorKind};
pub use frame::{frame, Frame};
pub use headers::{
    canonical_name, compact_form, is_valid_header_name, is_valid_header_value, names_equal, Header,
    Headers,
};
pub use ip::host_ip;
pub use message::{CSeq, Limits, Message, StartLine};
pub use method::Method;
pub use nameaddr::NameAddr;
pub use reason::reason_phrase;
pub use text::Text;
pub use uri::{Scheme, Uri, UriRef};
pub use via::{Via, ViaRef};
