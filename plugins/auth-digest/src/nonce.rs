//! Nonces in Kamailio's format (auth module, `nonce.c`, with no `auth_checks_*`, no
//! `nonce_count` and no `one_time_nonce`):
//!
//! ```text
//! nonce = base64( expire(4, big-endian) | since(4, big-endian) | MD5(expire | since | secret) )
//! ```
//!
//! `since` is the creation time and `expire = since + nonce_expire`, both in seconds
//! since the Unix epoch (32 bits, as Kamailio). The MD5 over the first 8 bytes and the
//! secret protects both times: a node holding the same secret accepts the nonce until
//! it expires, as many times as a client presents it (mobile clients reuse a nonce
//! across wake-ups). Base64 is the standard alphabet with padding (32 characters, none
//! of them padding, for these 24 bytes), as Kamailio's `base64_enc`.

use std::cell::Cell;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::digest::{ct_eq, md5_parts};

/// Bytes of a decoded nonce.
pub const NONCE_BYTES: usize = 24;

/// What a presented nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by a node with our secret and still valid.
    Valid,
    /// Issued by a node with our secret but expired, or created too far in the future
    /// (Kamailio -4): challenge again with `stale=true`.
    Stale,
    /// Not a nonce of ours: undecodable, wrong length or integrity hash mismatch
    /// (Kamailio -1).
    Invalid,
}

/// Creates and checks nonces with one secret.
#[derive(Clone)]
pub struct NonceKey {
    secret: Vec<u8>,
    /// The last `(times, integrity hash)` computed: nonces made in the same second share
    /// their times, so under load most challenges and checks need no MD5. (A module
    /// instance is single-threaded.)
    last: Cell<Option<([u8; 8], [u8; 16])>>,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("NonceKey").finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A key over `secret` (the bytes of Kamailio's `secret` modparam).
    pub fn new(secret: &[u8]) -> NonceKey {
        NonceKey {
            secret: secret.to_vec(),
            last: Cell::new(None),
        }
    }

    fn integrity(&self, times: &[u8; 8]) -> [u8; 16] {
        if let Some((t, hash)) = self.last.get() {
            if t == *times {
                return hash;
            }
        }
        let hash = md5_parts(&[times, &self.secret]);
        self.last.set(Some((*times, hash)));
        hash
    }

    /// A nonce created at `now_s` and valid for `expire_s` seconds.
    pub fn create(&self, now_s: u64, expire_s: u64) -> String {
        let since = clamp32(now_s);
        let expire = clamp32(now_s.saturating_add(expire_s));
        let mut times = [0u8; 8];
        times[..4].copy_from_slice(&expire.to_be_bytes());
        times[4..].copy_from_slice(&since.to_be_bytes());
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&times);
        raw[8..].copy_from_slice(&self.integrity(&times));
        STANDARD.encode(raw)
    }

    /// Check a nonce presented at `now_s`, accepting a creation time up to `drift_s`
    /// seconds in the future (clock skew between nodes).
    pub fn check(&self, nonce: &str, now_s: u64, drift_s: u64) -> NonceCheck {
        // Longer input cannot be ours: refuse before decoding it.
        if nonce.len() > 64 {
            return NonceCheck::Invalid;
        }
        // 64 base64 characters decode to at most 48 bytes.
        let mut buf = [0u8; 48];
        let Ok(n) = STANDARD.decode_slice(nonce, &mut buf) else {
            return NonceCheck::Invalid;
        };
        let Some(raw) = buf.get(..n).filter(|r| r.len() == NONCE_BYTES) else {
            return NonceCheck::Invalid;
        };
        let mut times = [0u8; 8];
        times.copy_from_slice(&raw[..8]);
        if !ct_eq(&raw[8..], &self.integrity(&times)) {
            return NonceCheck::Invalid;
        }
        let expire = u64::from(u32::from_be_bytes([times[0], times[1], times[2], times[3]]));
        let since = u64::from(u32::from_be_bytes([times[4], times[5], times[6], times[7]]));
        if expire < now_s || since > now_s.saturating_add(drift_s) {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

fn clamp32(s: u64) -> u32 {
    u32::try_from(s).unwrap_or(u32::MAX)
}
