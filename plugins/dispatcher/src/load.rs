//! Algorithm 10 (call load): Kamailio's call table (`_dsht_load`: Call-ID → `duid`) and
//! per-destination `dload` counters, kept in the host's kv store so that every instance
//! (and, on Redis, every node) shares them, without key scans.
//!
//! * `lc:<call-id>` = `<i|c> <start_ms> <duid>`: the call, unconfirmed (`i`) or confirmed
//!   by a 2xx (`c`), and when it was counted. Its TTL is the end of the time it counts.
//! * `ld:<duid>:<bucket>` (and `li:<duid>:<bucket>` for unconfirmed calls when
//!   `hash_initexpire < hash_expire`): the number of calls that started in time bucket
//!   `bucket` (`start_ms / B`) and are still up. A destination's load is the sum of the
//!   live buckets of its series.
//!
//! A series with window `W` (`hash_expire`, resp. `hash_initexpire`) has buckets of
//! `B = W / SLICES`. Bucket `b` is live while `now < (b + 1) * B + W`: a call that is
//! never ended stops counting between `W` and `W + B` after it started (Kamailio drops
//! it between `W` and `W + ds_hash_check_interval`). Reading a load costs at most
//! `SLICES + 1` kv reads per destination and series; bucket keys expire by TTL.
//!
//! Ending a call (BYE, CANCEL, failed INVITE) deletes `lc:` first; only the instance
//! whose delete removed it decrements, so a call is never uncounted twice.

use std::ops::RangeInclusive;
use std::time::Duration;

use weir_sdk::{kv, log, KvError};

/// Buckets per window (see the module doc).
pub const SLICES: u64 = 2;
/// Extra lifetime of bucket and call keys past the end of their window, for clock skew
/// between nodes sharing a store.
const KEY_MARGIN_MS: u64 = 60_000;
/// Longest Call-ID used as is in a key (the store bounds keys, 256 bytes by default);
/// longer ones are hashed.
const MAX_CALLID_IN_KEY: usize = 200;

/// One series of per-destination counters (confirmed or initial calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    prefix: &'static str,
    window_ms: u64,
    bucket_ms: u64,
}

impl Series {
    fn new(prefix: &'static str, window_ms: u64) -> Series {
        Series {
            prefix,
            window_ms,
            bucket_ms: window_ms.div_ceil(SLICES).max(1),
        }
    }

    fn bucket(&self, t_ms: u64) -> u64 {
        t_ms / self.bucket_ms
    }

    /// The buckets counted at `now`.
    fn live(&self, now: u64) -> RangeInclusive<u64> {
        self.bucket(now.saturating_sub(self.window_ms))..=self.bucket(now)
    }

    /// When a call started at `start` stops counting (exclusive).
    fn end(&self, start: u64) -> u64 {
        (self.bucket(start) + 1)
            .saturating_mul(self.bucket_ms)
            .saturating_add(self.window_ms)
    }

    fn key(&self, duid: &str, bucket: u64) -> String {
        format!("{}:{duid}:{bucket}", self.prefix)
    }

    /// Calls of `duid` counted now (never below 0).
    fn load(&self, duid: &str, now: u64) -> Result<i64, KvError> {
        let mut sum = 0i64;
        for b in self.live(now) {
            if let Some(v) = kv::get_string(&self.key(duid, b))? {
                sum = sum.saturating_add(v.trim().parse::<i64>().unwrap_or(0));
            }
        }
        Ok(sum.max(0))
    }

    /// Add `delta` to the bucket of a call started at `start`, unless that bucket is no
    /// longer counted.
    fn add(&self, duid: &str, start: u64, delta: i64, now: u64) -> Result<(), KvError> {
        let end = self.end(start);
        if now >= end {
            return Ok(());
        }
        let ttl = Duration::from_millis(end - now + KEY_MARGIN_MS);
        kv::incr(&self.key(duid, self.bucket(start)), delta, Some(ttl)).map(|_| ())
    }
}

/// A tracked call (the value of `lc:<call-id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub duid: String,
    pub start_ms: u64,
    pub confirmed: bool,
}

impl Call {
    fn encode(&self) -> String {
        let state = if self.confirmed { 'c' } else { 'i' };
        format!("{state} {} {}", self.start_ms, self.duid)
    }

    fn decode(s: &str) -> Option<Call> {
        let mut it = s.splitn(3, ' ');
        let confirmed = match it.next()? {
            "c" => true,
            "i" => false,
            _ => return None,
        };
        let start_ms = it.next()?.parse().ok()?;
        let duid = it.next()?.to_string();
        (!duid.is_empty()).then_some(Call {
            duid,
            start_ms,
            confirmed,
        })
    }
}

/// 64-bit FNV-1a, for Call-IDs too long for a key.
fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn call_key(call_id: &str) -> String {
    if call_id.len() <= MAX_CALLID_IN_KEY {
        format!("lc:{call_id}")
    } else {
        format!("lc#{:016x}:{}", fnv64(call_id), call_id.len())
    }
}

/// The call-load tracker (`ds_hash_expire`, `ds_hash_initexpire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loads {
    confirmed: Series,
    /// Unconfirmed calls, when they expire sooner than confirmed ones.
    initial: Option<Series>,
}

impl Loads {
    /// `expire_s`: lifetime of a call (`ds_hash_expire`); `initexpire_s`: of a call not
    /// confirmed by a 2xx (`ds_hash_initexpire`). Both at least 1.
    pub fn new(expire_s: u64, initexpire_s: u64) -> Loads {
        let expire = expire_s.max(1).saturating_mul(1000);
        let init = initexpire_s.max(1).saturating_mul(1000);
        Loads {
            confirmed: Series::new("ld", expire),
            initial: (init < expire).then(|| Series::new("li", init)),
        }
    }

    /// Whether a 2xx changes anything (the calls of a 2xx move to the longer window).
    pub fn needs_confirm(&self) -> bool {
        self.initial.is_some()
    }

    fn series(&self, confirmed: bool) -> &Series {
        match &self.initial {
            Some(s) if !confirmed => s,
            _ => &self.confirmed,
        }
    }

    /// The current load (`dload`) of the destination `duid`.
    pub fn load(&self, duid: &str, now: u64) -> Result<i32, KvError> {
        let mut n = self.confirmed.load(duid, now)?;
        if let Some(s) = &self.initial {
            n = n.saturating_add(s.load(duid, now)?);
        }
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// The call `call_id`, if tracked.
    pub fn call(&self, call_id: &str) -> Result<Option<Call>, KvError> {
        Ok(kv::get_string(&call_key(call_id))?.and_then(|s| Call::decode(&s)))
    }

    fn store(&self, call_id: &str, call: &Call, now: u64) -> Result<(), KvError> {
        let end = self.series(call.confirmed).end(call.start_ms);
        let ttl = Duration::from_millis(end.saturating_sub(now).max(1) + KEY_MARGIN_MS);
        kv::set(&call_key(call_id), call.encode(), Some(ttl))
    }

    /// `ds_load_add`: count `call_id` on `duid` from `now`. A Call-ID already counted
    /// (a new INVITE of the same call, e.g. after a 407) is moved.
    pub fn add(&self, call_id: &str, duid: &str, now: u64) -> Result<(), KvError> {
        self.remove(call_id, now)?;
        let call = Call {
            duid: duid.to_string(),
            start_ms: now,
            confirmed: false,
        };
        self.series(false).add(duid, now, 1, now)?;
        if let Err(e) = self.store(call_id, &call, now) {
            let _ = self.series(false).add(duid, now, -1, now);
            return Err(e);
        }
        Ok(())
    }

    /// `ds_load_unset` / `ds_load_update` on BYE and CANCEL: uncount `call_id`; the
    /// call it was, if this instance removed it.
    pub fn remove(&self, call_id: &str, now: u64) -> Result<Option<Call>, KvError> {
        let key = call_key(call_id);
        let Some(call) = kv::get_string(&key)?.and_then(|s| Call::decode(&s)) else {
            return Ok(None);
        };
        if !kv::delete(&key)? {
            // Another instance ended it meanwhile.
            return Ok(None);
        }
        self.series(call.confirmed)
            .add(&call.duid, call.start_ms, -1, now)?;
        Ok(Some(call))
    }

    /// `ds_load_replace` (`ds_next_dst`): move `call_id` to `duid`, counted from `now`.
    pub fn replace(&self, call_id: &str, duid: &str, now: u64) -> Result<(), KvError> {
        self.add(call_id, duid, now)
    }

    /// `ds_load_update` on a 2xx to the INVITE: the call is confirmed and lives
    /// `hash_expire` from its start instead of `hash_initexpire`.
    pub fn confirm(&self, call_id: &str, now: u64) -> Result<(), KvError> {
        let Some(initial) = &self.initial else {
            return Ok(());
        };
        let Some(mut call) = self.call(call_id)? else {
            return Ok(());
        };
        if call.confirmed {
            return Ok(());
        }
        // Several 2xx (forks, retransmissions) may arrive at once on several
        // instances: only the first moves the call.
        let guard = format!("{}!", call_key(call_id));
        let ttl = Duration::from_millis(self.confirmed.window_ms + KEY_MARGIN_MS);
        if kv::incr(&guard, 1, Some(ttl))? != 1 {
            return Ok(());
        }
        call.confirmed = true;
        self.store(call_id, &call, now)?;
        initial.add(&call.duid, call.start_ms, -1, now)?;
        self.confirmed.add(&call.duid, call.start_ms, 1, now)?;
        log::debug!("dispatcher: call {call_id} on {} confirmed", call.duid);
        Ok(())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn buckets_cover_the_window() {
        let s = Series::new("ld", 7_200_000);
        assert_eq!(s.bucket_ms, 3_600_000);
        // A call counts at least W and less than W + B after it started.
        for start in [0, 1, 3_599_999, 3_600_000, 10_000_123] {
            let end = s.end(start);
            assert!(end > start + s.window_ms, "{start}");
            assert!(end <= start + s.window_ms + s.bucket_ms, "{start}");
            assert!(s.live(end - 1).contains(&s.bucket(start)));
            assert!(!s.live(end).contains(&s.bucket(start)));
        }
        // At most SLICES + 1 buckets are read.
        for now in [0, 5, 7_200_000, 7_200_001, 123_456_789] {
            assert!(s.live(now).count() as u64 <= SLICES + 1);
        }
    }

    #[test]
    fn call_records_round_trip() {
        let c = Call {
            duid: "gw 1".into(),
            start_ms: 42,
            confirmed: true,
        };
        assert_eq!(Call::decode(&c.encode()), Some(c));
        assert_eq!(Call::decode("x 1 a"), None);
        assert_eq!(Call::decode("i 1 "), None);
        assert!(call_key(&"x".repeat(300)).len() < 40);
        assert_eq!(call_key("abc@h"), "lc:abc@h");
    }
}
