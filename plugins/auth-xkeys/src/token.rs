//! The token algorithms, byte for byte as Kamailio's auth_xkeys computes them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha384, Sha512};

// === Algorithm ===

/// A token algorithm (Kamailio's `alg` argument).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    /// SHA-256 over `<value>:<data>`, 64 lowercase hex digits.
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    /// SHA-384 over `<value>:<data>`, 96 lowercase hex digits.
    #[serde(rename = "sha384")]
    Sha384,
    /// SHA-512 over `<value>:<data>`, 128 lowercase hex digits.
    #[serde(rename = "sha512")]
    Sha512,
    /// HMAC-SHA256 with the key value as key over `<data>`, base64url without padding
    /// (43 characters). Kamailio can add it but not check it.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// The lengths of the hex tokens Kamailio's check accepts at all.
const HEX_LENGTHS: [usize; 3] = [64, 96, 128];

impl Algorithm {
    /// Kamailio's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
            Algorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// The token's length in characters.
    pub fn token_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
            Algorithm::HmacSha256 => 43,
        }
    }

    /// The token for one key `value` and the rendered `data`.
    pub fn token(self, value: &str, data: &str) -> String {
        match self {
            Algorithm::Sha256 => hex(&Sha256::digest(seed(value, data))),
            Algorithm::Sha384 => hex(&Sha384::digest(seed(value, data))),
            Algorithm::Sha512 => hex(&Sha512::digest(seed(value, data))),
            Algorithm::HmacSha256 => {
                // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
                match Hmac::<Sha256>::new_from_slice(value.as_bytes()) {
                    Ok(mut mac) => {
                        mac.update(data.as_bytes());
                        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
                    }
                    Err(_) => String::new(),
                }
            }
        }
    }
}

// === verification ===

/// Why a received token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header is absent.
    Missing,
    /// The header is present but empty after trimming.
    Empty,
    /// Its length is not one a token of the algorithm has.
    BadLength,
    /// No usable key of the group gives this token.
    NoMatch,
}

impl Refusal {
    /// A short phrase for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "no token header",
            Refusal::Empty => "empty token",
            Refusal::BadLength => "token length does not match the algorithm",
            Refusal::NoMatch => "no key matches the token",
        }
    }
}

/// Check a received (already trimmed) token against the tokens of `values`, newest
/// first, as Kamailio's `auth_xkeys_check`: hex tokens compare ignoring case (and a
/// length that is none of 64/96/128 fails before any key is tried); an HMAC token
/// (a Weir extension) compares exactly. Returns the index of the matching value.
pub fn verify<'k>(
    alg: Algorithm,
    received: &str,
    values: impl Iterator<Item = &'k str>,
    data: &str,
) -> Result<usize, Refusal> {
    if received.is_empty() {
        return Err(Refusal::Empty);
    }
    let hex_alg = alg != Algorithm::HmacSha256;
    if hex_alg && !HEX_LENGTHS.contains(&received.len()) || received.len() != alg.token_len() {
        return Err(Refusal::BadLength);
    }
    let received = if hex_alg {
        received.to_ascii_lowercase()
    } else {
        received.to_string()
    };
    for (i, value) in values.enumerate() {
        if constant_time_eq(alg.token(value, data).as_bytes(), received.as_bytes()) {
            return Ok(i);
        }
    }
    Err(Refusal::NoMatch)
}

/// Equal-length comparison whose time does not depend on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Kamailio's hashed bytes: `<value>:<data>`.
fn seed(value: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 1 + data.len());
    out.extend_from_slice(value.as_bytes());
    out.push(b':');
    out.extend_from_slice(data.as_bytes());
    out
}

/// Lowercase hex, as Kamailio's `compute_sha*` writes it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
