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
//! A digest check needs the HA1 alone: [`ha1`] asks for it, and the answer is a
//! fixed-size value, so nothing is allocated for it and the password never enters the
//! module:
//!
//! ```
//! use weir_sdk::subscribers::{self, Ha1Lookup, HashAlgorithm};
//! use weir_sdk::testing;
//!
//! testing::add_subscriber(subscribers::Credentials::with_password("bob", "example.com", "b0b"));
//! let Ha1Lookup::Found(ha1) = subscribers::ha1("bob", "example.com", HashAlgorithm::Md5)? else {
//!     panic!("bob has a password");
//! };
//! // MD5("bob:example.com:b0b")
//! assert_eq!(ha1.as_bytes()[..4], [0xf3, 0x28, 0x10, 0x35]);
//! assert_eq!(subscribers::ha1("mallory", "example.com", HashAlgorithm::Md5)?, Ha1Lookup::Unknown);
//! # Ok::<(), weir_sdk::KvError>(())
//! ```
//!
//! In the native harness the store is empty until
//! [`testing::add_subscriber`](crate::testing::add_subscriber) fills it, and
//! [`testing::fail_subscribers`](crate::testing::fail_subscribers) makes lookups fail.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::subscribers as backend;
use crate::__private::bindings::weir::sip::subscribers::{
    Credentials as WitCredentials, DigestAlgorithm as WitAlgorithm, Ha1Bytes as WitHa1,
    Ha1Lookup as WitHa1Lookup,
};
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

/// A digest hash algorithm, for [`ha1`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// MD5 (RFC 2617): a 16-byte HA1.
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760): a 32-byte HA1.
    Sha256,
}

impl HashAlgorithm {
    /// Bytes of a hash (16 or 32).
    pub fn hash_len(self) -> usize {
        match self {
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Sha256 => 32,
        }
    }
}

impl From<HashAlgorithm> for WitAlgorithm {
    fn from(a: HashAlgorithm) -> WitAlgorithm {
        match a {
            HashAlgorithm::Md5 => WitAlgorithm::Md5,
            HashAlgorithm::Sha256 => WitAlgorithm::Sha256,
        }
    }
}

/// A subscriber's HA1 (`H(username:realm:password)`) as raw bytes, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ha1 {
    bytes: [u8; 32],
    len: usize,
}

impl Ha1 {
    /// The HA1 of `algorithm` held in the first bytes of `bytes`.
    pub fn new(algorithm: HashAlgorithm, bytes: [u8; 32]) -> Ha1 {
        Ha1 {
            bytes,
            len: algorithm.hash_len(),
        }
    }

    /// The hash: 16 bytes for MD5, 32 for SHA-256.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    fn from_wit(algorithm: HashAlgorithm, w: WitHa1) -> Ha1 {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip([w.w0, w.w1, w.w2, w.w3]) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Ha1::new(algorithm, bytes)
    }
}

impl std::fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password equivalent: never printed.
        f.debug_struct("Ha1").finish_non_exhaustive()
    }
}

/// What [`ha1`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ha1Lookup {
    /// No such subscriber.
    Unknown,
    /// The subscriber exists but has neither a password nor a stored HA1 of the
    /// algorithm (or the stored one is not hex of the algorithm's length).
    NoHa1,
    /// The subscriber's HA1 for the algorithm.
    Found(Ha1),
}

/// The digest HA1 of `username` in `domain` for `algorithm`: `H(username:domain:password)`
/// computed by the host over the names given here when a password is stored (a password
/// wins over a stored HA1), else the stored HA1 of that algorithm. Fails as [`lookup`].
/// Cheaper than [`lookup`]: one fixed-size answer, no strings.
pub fn ha1(username: &str, domain: &str, algorithm: HashAlgorithm) -> Result<Ha1Lookup, KvError> {
    match backend::ha1(username, domain, algorithm.into()) {
        Ok(WitHa1Lookup::Unknown) => Ok(Ha1Lookup::Unknown),
        Ok(WitHa1Lookup::NoHa1) => Ok(Ha1Lookup::NoHa1),
        Ok(WitHa1Lookup::Found(w)) => Ok(Ha1Lookup::Found(Ha1::from_wit(algorithm, w))),
        Err(e) => Err(KvError::from(e)),
    }
}
