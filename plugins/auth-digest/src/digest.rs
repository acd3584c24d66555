//! Digest math (RFC 2617 §3.2.2, RFC 7616 §3.4, RFC 8760): HA1, HA2 and the response
//! for MD5 and SHA-256 with `qop=auth` or without qop, lowercase hex, and a
//! constant-time comparison.

use md5::{Digest as _, Md5};
use serde::Deserialize;
use sha2::Sha256;
use weir_sdk::subscribers::HashAlgorithm;

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
    pub fn hash(self, parts: &[&str]) -> HexHash {
        match self {
            Algorithm::Md5 => HexHash::new(&joined::<Md5>(parts)),
            Algorithm::Sha256 => HexHash::new(&joined::<Sha256>(parts)),
        }
    }

    /// HA1 = H(username:realm:password).
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&[username, realm, password]).as_str().to_owned()
    }

    /// The expected `response` for HA1, the request `method` and the digest `uri`, with
    /// `qop=auth` (`Some((nc, cnonce))`) or without qop (`None`), on the stack.
    pub fn response(
        self,
        ha1: &str,
        nonce: &str,
        method: &str,
        uri: &str,
        qop_auth: Option<(&str, &str)>,
    ) -> HexHash {
        let ha2 = self.hash(&[method, uri]);
        match qop_auth {
            Some((nc, cnonce)) => self.hash(&[ha1, nonce, nc, cnonce, "auth", ha2.as_str()]),
            None => self.hash(&[ha1, nonce, ha2.as_str()]),
        }
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
        let mut len = 0;
        for (b, out) in bytes.iter().zip(buf.chunks_exact_mut(2)) {
            out[0] = DIGITS[usize::from(b >> 4)];
            out[1] = DIGITS[usize::from(b & 0x0f)];
            len += 2;
        }
        HexHash { buf, len }
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Debug for HexHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn joined<D: md5::Digest>(parts: &[&str]) -> md5::digest::Output<D> {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
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
    let diff = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (x, y)| acc | (x ^ y.to_ascii_lowercase()));
    std::hint::black_box(diff) == 0
}
