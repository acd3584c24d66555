//! System-test harness for Weir: runs the real `weir` binary and drives it over loopback
//! UDP and TCP, with sipp for call load and a small raw-socket SIP peer for exact header
//! checks.
//!
//! This crate owns process and socket plumbing for tests: locating the binaries and
//! modules ([`paths`]), free loopback ports ([`ports`]), a running proxy that is killed
//! on drop ([`Proxy`]), sipp UAC/UAS ([`sipp`]), SIP text handling independent of
//! `weir-message` ([`sip`]), and UDP/TCP peers ([`peer`]). It must never send to a
//! non-loopback address and shares no code with the crates under test: a bug in the
//! proxy's parser must not be hidden by the same parser in the test.
//!
//! The shape of a test:
//!
//! ```no_run
//! use weir_system_tests::{conf, peer::UdpPeer, Proxy};
//!
//! let uas = UdpPeer::bind(); // fake UAS
//! let proxy = Proxy::start_with(|port| conf::standard(port, &uas.uri()));
//! let ua = UdpPeer::bind(); // test UA
//! ua.send(&ua.request("INVITE", "sip:bob@example.com"), proxy.addr());
//! let (invite, _) = uas.expect("forwarded INVITE");
//! assert_eq!(invite.header("Max-Forwards"), Some("69"));
//! ```
// Test harness: a panic is how a failed expectation is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![forbid(unsafe_code)]

pub mod conf;
pub mod paths;
pub mod peer;
pub mod ports;
pub mod proxy;
pub mod sip;
pub mod sipp;
pub mod wait;
pub mod zlib;

pub use proxy::{Proxy, ProxyStats};
pub use sip::SipMsg;

/// A unique-enough token for branches, tags and Call-IDs: random per process (std's
/// hasher keys), counted within it.
pub fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}
