//! Digest math (RFC 2617 §3.2.2, RFC 7616 §3.4, RFC 8760): HA1, HA2 and the response
//! for MD5 and SHA-256 with `qop=auth` or without qop, lowercase hex, and a
//! constant-time comparison.

use md5::{Digest as _, Md5};
use serde::Deserialize;
use sha2::Sha256;

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

    /// Length of a hash in lowercase hex (32 for MD5, 64 for SHA-256).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lowercase hex of the hash of the `:`-joined parts.
    pub fn hash(self, parts: &[&str]) -> String {
        match self {
            Algorithm::Md5 => hex(&joined::<Md5>(parts)),
            Algorithm::Sha256 => hex(&joined::<Sha256>(parts)),
        }
    }

    /// HA1 = H(username:realm:password).
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&[username, realm, password])
    }

    /// The expected `response` for HA1, the request `method` and the digest `uri`, with
    /// `qop=auth` (`Some((nc, cnonce))`) or without qop (`None`).
    pub fn response(
        self,
        ha1: &str,
        nonce: &str,
        method: &str,
        uri: &str,
        qop_auth: Option<(&str, &str)>,
    ) -> String {
        let ha2 = self.hash(&[method, uri]);
        match qop_auth {
            Some((nc, cnonce)) => self.hash(&[ha1, nonce, nc, cnonce, "auth", &ha2]),
            None => self.hash(&[ha1, nonce, &ha2]),
        }
    }
}

fn joined<D: md5::Digest>(parts: &[&str]) -> Vec<u8> {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    d.finalize().to_vec()
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

/// MD5 of `data` (the nonce's integrity hash).
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
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
