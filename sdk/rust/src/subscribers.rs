//! Subscriber credentials from the host's subscriber store (Kamailio's auth_db): the
//! operator chooses the store (a credentials file, an embedded or Redis backend, with a
//! cache in front of slow ones); a module only asks. For digest authentication.
//!
//! ```
//! use weir_sdk::{subscribers, testing};
//!
//! testing::add_subscriber(subscribers::Credentials::with_password("alice", "example.com", "s3cret"));
//! let alice = subscribers::lookup("alice", "example.com")?.expect("alice exists");
//! assert_eq!(alice.password.as_deref(), Some("s3cret"));
//! assert_eq!(subscribers::lookup("mallory", "example.com")?, None);
//! # Ok::<(), weir_sdk::KvError>(())
//! ```
//!
//! In the native harness the store is empty until
//! [`testing::add_subscriber`](crate::testing::add_subscriber) fills it, and
//! [`testing::fail_subscribers`](crate::testing::fail_subscribers) makes lookups fail.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::subscribers as backend;
use crate::__private::bindings::weir::sip::subscribers::Credentials as WitCredentials;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::subscribers as backend;
use crate::KvError;

/// Digest credentials of one subscriber. The store guarantees at least one of
/// `password`, `ha1` and `ha1_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user part.
    pub username: String,
    /// The domain (the digest realm it authenticates in).
    pub domain: String,
    /// Plain-text password, when stored that way.
    pub password: Option<String>,
    /// MD5(username:domain:password), lowercase hex.
    pub ha1: Option<String>,
    /// SHA-256(username:domain:password), lowercase hex.
    pub ha1_sha256: Option<String>,
}

impl Credentials {
    /// Credentials holding a plain-text password.
    pub fn with_password(username: &str, domain: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            domain: domain.to_string(),
            password: Some(password.to_string()),
            ha1: None,
            ha1_sha256: None,
        }
    }
}

impl From<WitCredentials> for Credentials {
    fn from(c: WitCredentials) -> Credentials {
        Credentials {
            username: c.username,
            domain: c.domain,
            password: c.password,
            ha1: c.ha1,
            ha1_sha256: c.ha1_sha256,
        }
    }
}

impl From<Credentials> for WitCredentials {
    fn from(c: Credentials) -> WitCredentials {
        WitCredentials {
            username: c.username,
            domain: c.domain,
            password: c.password,
            ha1: c.ha1,
            ha1_sha256: c.ha1_sha256,
        }
    }
}

/// The credentials of `username` in `domain`, if that subscriber exists. Fails with
/// [`KvError::Backend`] when the store cannot answer and [`KvError::Limit`] when an
/// argument is too long for the host (512 bytes each).
pub fn lookup(username: &str, domain: &str) -> Result<Option<Credentials>, KvError> {
    backend::lookup(username, domain)
        .map(|found| found.map(Credentials::from))
        .map_err(KvError::from)
}
