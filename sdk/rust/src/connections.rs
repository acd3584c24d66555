//! Identities bound to stream connections (TCP, TLS, WS), for connection-id trust: a
//! module that authenticated a request [`bind`]s the identity to the connection it came
//! on ([`Message::connection_id`](crate::Message::connection_id)), and may trust later
//! requests on that connection from the same identity without challenging them again.
//!
//! ```
//! use weir_sdk::{connections, testing};
//!
//! let mut msg = testing::request(
//!     "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
//!      Call-ID: 1@a\r\nCSeq: 1 OPTIONS\r\n\r\n",
//! );
//! testing::set_connection(&mut msg, 42);
//! assert!(connections::bind(msg.connection_id(), "alice@example.com"));
//! assert_eq!(connections::identity(42).as_deref(), Some("alice@example.com"));
//! assert!(!connections::bind(0, "alice@example.com")); // UDP: no connection
//! ```
//!
//! The host's table is shared by every module and bounded: the least recently used
//! bindings are forgotten first, so a module must treat a missing binding as "not
//! trusted yet", never as an error. Connection ids are never reused within a run of the
//! proxy, so a binding never applies to another connection.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::connections as backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::connections as backend;

/// Longest identity the host binds.
pub const MAX_IDENTITY: usize = 512;

/// The identity bound to connection `id`, if any; always `None` for 0 (UDP).
pub fn identity(id: u64) -> Option<String> {
    backend::identity(id)
}

/// Bind `identity` (e.g. `alice@example.com`) to connection `id`, replacing any earlier
/// binding. False, binding nothing, if `id` is 0 (UDP) or `identity` is empty or longer
/// than [`MAX_IDENTITY`] bytes.
pub fn bind(id: u64, identity: &str) -> bool {
    backend::bind(id, identity)
}
