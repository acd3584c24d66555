//! A key-value store with TTL, namespaced by the host per tenant and module: a module
//! never sees another namespace's keys. Use it for state shared between instances (the
//! host may run several instances of a module and drop them at will).
//!
//! ```
//! use std::time::Duration;
//! use weir_sdk::kv;
//!
//! let n = kv::incr("invites:alice", 1, Some(Duration::from_secs(60)))?;
//! kv::set("last:alice", "sip:alice@192.0.2.1", None)?;
//! assert_eq!(kv::get("last:alice")?.as_deref(), Some(&b"sip:alice@192.0.2.1"[..]));
//! assert!(kv::delete("last:alice")?);
//! # assert_eq!(n, 1);
//! # Ok::<(), weir_sdk::KvError>(())
//! ```

use std::time::Duration;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::kv as backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::kv as backend;
use crate::KvError;

/// The value of `key`, if present and not expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    backend::get(key).map_err(KvError::from)
}

/// The value of `key` as text, if present and not expired; a value that is not UTF-8 is
/// a [`KvError::Backend`] error.
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    match get(key)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| KvError::Backend(format!("value of `{key}` is not UTF-8"))),
        None => Ok(None),
    }
}

/// Store `value` under `key`, expiring after `ttl` (`None`: never). Sub-millisecond TTLs
/// are rounded up to a millisecond.
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) -> Result<(), KvError> {
    backend::set(key, value.as_ref(), ttl.map(millis)).map_err(KvError::from)
}

/// Atomically add `delta` to the decimal integer stored under `key` (absent counts as 0)
/// and return the new value. `ttl` applies when the key is created.
pub fn incr(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, KvError> {
    backend::incr(key, delta, ttl.map(millis)).map_err(KvError::from)
}

/// Remove `key`; true if it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    backend::delete(key).map_err(KvError::from)
}

/// Whole milliseconds, rounded up, saturating.
fn millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_nanos(1_000_001)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
