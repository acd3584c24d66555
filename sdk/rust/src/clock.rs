//! Clocks, from the host. Use these rather than `std::time`, which needs WASI clock
//! imports a module is not granted. In the native harness both clocks are mocks that
//! only move with [`testing::advance`](crate::testing::advance).

use std::time::{Duration, SystemTime};

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::clock as backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::clock as backend;

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    backend::now_ms()
}

/// Monotonic time in nanoseconds from an arbitrary origin: for measuring intervals.
pub fn monotonic_ns() -> u64 {
    backend::monotonic_ns()
}

/// Wall-clock time as a [`SystemTime`].
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms())
}

/// Monotonic time as a [`Duration`] from an arbitrary origin.
pub fn monotonic() -> Duration {
    Duration::from_nanos(monotonic_ns())
}
