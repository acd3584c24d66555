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

use crate::digest::{ct_eq, md5_parts};

/// Bytes of a decoded nonce.
pub const NONCE_BYTES: usize = 24;
/// Characters of a nonce: the base64 of [`NONCE_BYTES`] bytes (a multiple of 3: no
/// padding).
pub const NONCE_CHARS: usize = NONCE_BYTES / 3 * 4;

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
        encode(&raw)
    }

    /// Check a nonce presented at `now_s`, accepting a creation time up to `drift_s`
    /// seconds in the future (clock skew between nodes).
    pub fn check(&self, nonce: &str, now_s: u64, drift_s: u64) -> NonceCheck {
        let Some(raw) = decode(nonce) else {
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

/// The standard base64 alphabet (RFC 4648 §4, Kamailio's `base64_enc`).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The base64 of a nonce's bytes: [`NONCE_CHARS`] characters, no padding needed.
fn encode(raw: &[u8; NONCE_BYTES]) -> String {
    let mut out = [0u8; NONCE_CHARS];
    for (c, o) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        o[0] = ALPHABET[(n >> 18) as usize & 63];
        o[1] = ALPHABET[(n >> 12) as usize & 63];
        o[2] = ALPHABET[(n >> 6) as usize & 63];
        o[3] = ALPHABET[n as usize & 63];
    }
    // Only alphabet characters (ASCII) were written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// The bytes of a presented nonce, if it is the base64 of [`NONCE_BYTES`] bytes. Only
/// [`NONCE_CHARS`] characters of the alphabet decode to that many (padding would make
/// fewer, more characters more), so anything else is not a nonce of ours.
fn decode(nonce: &str) -> Option<[u8; NONCE_BYTES]> {
    let b = nonce.as_bytes();
    if b.len() != NONCE_CHARS {
        return None;
    }
    let mut raw = [0u8; NONCE_BYTES];
    // The OR of every character's value: bit 0x80 if one is not in the alphabet.
    let mut bad = 0u8;
    for (quad, out) in b.chunks_exact(4).zip(raw.chunks_exact_mut(3)) {
        let mut n = 0u32;
        for &c in quad {
            let v = DECODE[usize::from(c)];
            bad |= v;
            n = n << 6 | u32::from(v & 63);
        }
        out.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    (bad & 0x80 == 0).then_some(raw)
}

/// The value of each base64 character, 0xff for bytes outside the alphabet.
static DECODE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn clamp32(s: u64) -> u32 {
    u32::try_from(s).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    /// The previous decoding (the `base64` crate), the reference for [`decode`].
    fn previous_decode(nonce: &str) -> Option<[u8; NONCE_BYTES]> {
        if nonce.len() > 64 {
            return None;
        }
        let mut buf = [0u8; 48];
        let n = STANDARD.decode_slice(nonce, &mut buf).ok()?;
        buf.get(..n)?.try_into().ok()
    }

    #[test]
    fn encoding_is_standard_base64() {
        let mut rng = Rng::new(0x5eed_0003);
        for _ in 0..10_000 {
            let mut raw = [0u8; NONCE_BYTES];
            raw.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            let nonce = encode(&raw);
            assert_eq!(nonce, STANDARD.encode(raw));
            assert_eq!(decode(&nonce), Some(raw));
        }
        assert_eq!(encode(&[0xff; NONCE_BYTES]), "/".repeat(NONCE_CHARS));
        assert_eq!(
            decode(&"+".repeat(NONCE_CHARS)),
            Some([0xfb, 0xef, 0xbe].repeat(8).try_into().unwrap())
        );
    }

    #[test]
    fn decoding_agrees_with_the_base64_crate() {
        // Valid nonces with one character changed, cut, lengthened or padded, and
        // random text over the alphabet, padding and other bytes.
        let mut rng = Rng::new(0x5eed_0004);
        const OTHER: &[u8] = b"=-_ .\0\xff\xc3";
        for _ in 0..100_000 {
            let mut raw = [0u8; NONCE_BYTES];
            raw.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            let mut n = encode(&raw).into_bytes();
            match rng.below(6) {
                0 => n[rng.below(NONCE_CHARS)] = OTHER[rng.below(OTHER.len())],
                1 => n.truncate(rng.below(NONCE_CHARS)),
                2 => n.extend_from_slice(b"=="),
                3 => {
                    n.truncate(NONCE_CHARS - 2);
                    n.extend_from_slice(b"==");
                }
                4 => n.push(ALPHABET[rng.below(64)]),
                _ => {}
            }
            let n = String::from_utf8_lossy(&n).into_owned();
            assert_eq!(decode(&n), previous_decode(&n), "{n:?}");
        }
        for _ in 0..100_000 {
            let len = NONCE_CHARS - 4 + rng.below(9);
            let n: Vec<u8> = (0..len)
                .map(|_| match rng.below(20) {
                    0 => OTHER[rng.below(OTHER.len())],
                    _ => ALPHABET[rng.below(64)],
                })
                .collect();
            let n = String::from_utf8_lossy(&n).into_owned();
            assert_eq!(decode(&n), previous_decode(&n), "{n:?}");
        }
        assert_eq!(decode(""), None);
        assert_eq!(decode(&"A".repeat(100)), None);
    }
}
