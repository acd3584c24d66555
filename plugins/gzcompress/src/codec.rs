//! zlib (RFC 1950) streams, as Kamailio's gzcompress writes them with zlib's
//! `compress` and reads them with `uncompress`: a 2-byte header, raw deflate, and an
//! Adler-32 trailer. Neither raw deflate (RFC 1951) nor gzip (RFC 1952).

use miniz_oxide::inflate::TINFLStatus;

use crate::encoder;

/// Why a body did not inflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a complete, valid zlib stream (bad header, bad data, truncated, or a wrong
    /// Adler-32 checksum).
    Corrupt,
    /// It inflates to more than the limit.
    TooLarge,
}

/// Compress `data` into a zlib stream at `level` (1 to 9; 6 is zlib's default, which
/// Kamailio uses), with this crate's small-body encoder (see `encoder`): the effort per
/// level follows zlib's, the bytes may differ from C zlib's.
pub fn deflate(data: &[u8], level: u8) -> Vec<u8> {
    encoder::compress(data, level)
}

/// Inflate a zlib stream, producing at most `max` bytes: the output is bounded
/// while inflating, so a small "zip bomb" cannot make the module allocate more.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, max).map_err(|e| match e.status {
        TINFLStatus::HasMoreOutput => InflateError::TooLarge,
        _ => InflateError::Corrupt,
    })
}
