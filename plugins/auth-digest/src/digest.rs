//! Digest math (RFC 2617 §3.2.2, RFC 7616 §3.4, RFC 8760): HA1, HA2 and the response
//! for MD5 and SHA-256 with `qop=auth` or without qop, lowercase hex, and a
//! constant-time comparison.

use md5::{Digest as _, Md5};
use serde::Deserialize;
use sha2::Sha256;
use weir_sdk::subscribers::HashAlgorithm;

use crate::bytes::{word, EACH, HIGH};

/// A digest algorithm, as named in `algorithm=` (case-insensitive on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    /// MD5 (RFC 2617), the default when a challenge or credentials name none.
    #[serde(rename = "MD5")]
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl Algorithm {
    /// The token printed in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm=` value (case-insensitive). `-sess` variants and others are
    /// not supported.
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The same algorithm as the subscriber store names it.
    pub fn hash_algorithm(self) -> HashAlgorithm {
        match self {
            Algorithm::Md5 => HashAlgorithm::Md5,
            Algorithm::Sha256 => HashAlgorithm::Sha256,
        }
    }

    /// Length of a hash in lowercase hex (32 for MD5, 64 for SHA-256).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lowercase hex of the hash of the `:`-joined parts, on the stack.
    pub fn hash<P: AsRef<[u8]>>(self, parts: &[P]) -> HexHash {
        match self {
            Algorithm::Md5 => HexHash::new(&joined::<Md5, P>(parts)),
            Algorithm::Sha256 => HexHash::new(&joined::<Sha256, P>(parts)),
        }
    }

    /// HA1 = H(username:realm:password).
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&[username, realm, password]).as_str().to_owned()
    }

    /// The expected `response` for HA1 (lowercase hex: a `&str` or a [`HexHash`]), the
    /// request `method` and the digest `uri`, with `qop=auth` (`Some((nc, cnonce))`) or
    /// without qop (`None`), on the stack.
    pub fn response(
        self,
        ha1: impl AsRef<[u8]>,
        nonce: &str,
        method: &str,
        uri: &str,
        qop_auth: Option<(&str, &str)>,
    ) -> HexHash {
        self.response_with_ha2(ha1, nonce, &self.hash(&[method, uri]), qop_auth)
    }

    /// [`response`](Self::response) with HA2 = H(method:uri) given (from an
    /// [`Ha2Cache`]).
    pub fn response_with_ha2(
        self,
        ha1: impl AsRef<[u8]>,
        nonce: &str,
        ha2: &HexHash,
        qop_auth: Option<(&str, &str)>,
    ) -> HexHash {
        let ha1 = ha1.as_ref();
        match qop_auth {
            Some((nc, cnonce)) => self.hash(&[
                ha1,
                nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ]),
            None => self.hash(&[ha1, nonce.as_bytes(), ha2.as_bytes()]),
        }
    }
}

/// The last HA2 = H(method:uri) computed, for the next request: every REGISTER to a
/// registrar names the same method and digest URI (`REGISTER`, `sip:example.com`), so
/// their HA2 is the same. One entry; a miss computes and replaces it (its strings keep
/// their capacity, so a miss allocates only when a longer URI comes).
#[derive(Debug, Default)]
pub struct Ha2Cache {
    entry: Option<(Algorithm, String, String, HexHash)>,
}

impl Ha2Cache {
    /// HA2 of `method` and `uri` under `alg`.
    pub fn get(&mut self, alg: Algorithm, method: &str, uri: &str) -> HexHash {
        if let Some((a, m, u, ha2)) = &self.entry {
            if *a == alg && m == method && u == uri {
                return *ha2;
            }
        }
        let ha2 = alg.hash(&[method, uri]);
        let (a, m, u, h) = self
            .entry
            .get_or_insert_with(|| (alg, String::new(), String::new(), ha2));
        *a = alg;
        m.clear();
        m.push_str(method);
        u.clear();
        u.push_str(uri);
        *h = ha2;
        ha2
    }
}

/// A hash in lowercase hex, kept on the stack (up to SHA-256's 64 digits).
#[derive(Clone, Copy)]
pub struct HexHash {
    buf: [u8; 64],
    len: usize,
}

impl HexHash {
    /// The lowercase hex of `bytes` (at most 32 of them; more are cut).
    pub fn new(bytes: &[u8]) -> HexHash {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        let bytes = bytes.get(..32).unwrap_or(bytes);
        for (b, out) in bytes.iter().zip(buf.chunks_exact_mut(2)) {
            out[0] = DIGITS[usize::from(b >> 4)];
            out[1] = DIGITS[usize::from(b & 0x0f)];
        }
        HexHash {
            buf,
            len: 2 * bytes.len(),
        }
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The hex digits as bytes (no UTF-8 check: what the hashing and the comparison
    /// need).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl AsRef<[u8]> for HexHash {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for HexHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash of the `:`-joined parts.
fn joined<D: md5::Digest, P: AsRef<[u8]>>(parts: &[P]) -> md5::digest::Output<D> {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_ref());
    }
    d.finalize()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// MD5 of the concatenation of `parts` (the nonce's integrity hash).
pub fn md5_parts(parts: &[&[u8]]) -> [u8; 16] {
    let mut d = Md5::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// Equality of two byte strings in time that depends on their lengths only.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the comparison from being short-circuited by the optimiser.
    std::hint::black_box(diff) == 0
}

/// [`ct_eq`] of `expected` and `given` with `given`'s ASCII letters lowercased (hex
/// digests compare case-insensitively; `expected` is lowercase).
pub fn ct_eq_lowercase(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    // Eight bytes at a time, then the rest one by one.
    let mut e = expected.chunks_exact(8);
    let mut g = given.chunks_exact(8);
    let mut diff = 0u64;
    for (x, y) in (&mut e).zip(&mut g) {
        diff |= word(x) ^ lowercase_word(word(y));
    }
    let tail = e
        .remainder()
        .iter()
        .zip(g.remainder())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y.to_ascii_lowercase()));
    std::hint::black_box(diff | u64::from(tail)) == 0
}

/// [`u8::to_ascii_lowercase`] of each byte of a word, without branches (so in constant
/// time): a byte below 0x80 whose low seven bits are in `A..=Z` gets bit 0x20.
fn lowercase_word(w: u64) -> u64 {
    // Each byte's low seven bits: adding at most 0x7f + 0x3f carries into no other byte.
    let low = w & !HIGH;
    // High bit set where the low bits are >= `A` (0x41), and where they are > `Z` (0x5a).
    let from_a = low.wrapping_add(EACH * (0x80 - 0x41));
    let after_z = low.wrapping_add(EACH * (0x80 - 0x5b));
    let upper = from_a & !after_z & !w & HIGH;
    w | (upper >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    #[test]
    fn lowercase_comparison_agrees_with_bytewise() {
        let bytewise = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == y.to_ascii_lowercase())
        };
        // Every byte value against every byte value, at every position of a word.
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for pos in [0, 3, 7, 8] {
                    let mut e = *b"0123456789";
                    let mut g = e;
                    e[pos] = x;
                    g[pos] = y;
                    assert_eq!(ct_eq_lowercase(&e, &g), bytewise(&e, &g), "{x} {y} {pos}");
                }
            }
        }
        let mut rng = Rng::new(0x5eed_0005);
        for _ in 0..20_000 {
            let e = HexHash::new(&rng.bytes(32));
            let mut g = e.as_bytes().to_vec();
            for b in &mut g {
                match rng.below(4) {
                    0 => *b = b.to_ascii_uppercase(),
                    1 if rng.below(8) == 0 => *b = rng.next_u64() as u8,
                    _ => {}
                }
            }
            assert_eq!(
                ct_eq_lowercase(e.as_bytes(), &g),
                bytewise(e.as_bytes(), &g)
            );
        }
    }

    #[test]
    fn hashes_of_str_and_byte_parts_agree() {
        let parts = ["REGISTER", "sip:example.com"];
        let bytes: [&[u8]; 2] = [b"REGISTER", b"sip:example.com"];
        assert_eq!(
            Algorithm::Md5.hash(&parts).as_str(),
            Algorithm::Md5.hash(&bytes).as_str()
        );
        assert_eq!(
            Algorithm::Md5.hash(&parts).as_str(),
            hex(&Md5::digest(b"REGISTER:sip:example.com"))
        );
        assert_eq!(HexHash::new(&[0xab; 40]).as_str(), "ab".repeat(32));
    }
}
